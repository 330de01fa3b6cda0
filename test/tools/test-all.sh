#!/usr/bin/env bash
# The README's test command: installs what is needed (Debian 12, as root),
# builds every variant and runs every test suite, then prints one summary
# line 'N passed, M failed'.
#
#   build/win64  iocpsrv.dll for Windows x64 (mingw-w64); tests under Wine
#   build/win32  iocpsrv.dll for Windows x86: builds everything, ABI checks
#   build/linux  libiocpsrv.so; tests natively
#   build/asan   libiocpsrv.so with AddressSanitizer + UBSan; tests natively
#   build/tsan   libiocpsrv.so with ThreadSanitizer; tests natively
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"

bash test/tools/install-deps.sh || { echo "dependency install failed"; echo "0 passed, 1 failed"; exit 1; }

export WINEDEBUG=-all
# The x64 cross file's exe_wrapper (wine-run.sh: Wine, with a second start
# when Wine exits before the program runs).
export PATH="$top/test/tools:$PATH"
# Thousands of loopback connections in the stress tests, for us and Wine.
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true

status=0
setup() { # dir, extra meson args...
  local dir=$1; shift
  # Since 1.1 libiocpsrv.so is a link meson makes at setup (to .so.1, the
  # SONAME). A build folder from before still lists it in .ninja_log as a
  # built file, so the `ninja -t cleandead` of every regeneration would
  # delete the link: forget that entry.
  [ -f "$dir/.ninja_log" ] && sed -i '/\tlibiocpsrv\.so\t/d' "$dir/.ninja_log"
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$@" >"$dir.setup.log" 2>&1
  else
    mkdir -p "$(dirname "$dir")"
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1
  fi || { cat "$dir.setup.log"; return 1; }
}

builds=()
setup build/win64 --cross-file test/cross/mingw-w64-x86_64.txt && builds+=(build/win64) || status=1
setup build/win32 --cross-file test/cross/mingw-w64-i686.txt && builds+=(build/win32) || status=1
if [ -f dll/linux/engine.c ]; then
  setup build/linux && builds+=(build/linux) || status=1
  setup build/asan -Db_sanitize=address,undefined -Db_lundef=false && builds+=(build/asan) || status=1
  setup build/tsan -Db_sanitize=thread -Db_lundef=false && builds+=(build/tsan) || status=1
fi

ran=()
for b in "${builds[@]}"; do
  if ! ninja -C "$b" >"$b.build.log" 2>&1; then
    tail -n 40 "$b.build.log"
    echo "$b: build failed"
    status=1
    continue
  fi
  case "$b" in
    build/win64)
      export WINEPREFIX="$top/$b/wineprefix"
      [ -d "$WINEPREFIX" ] || wineboot -i >/dev/null 2>&1 || true
      # One wineserver for the whole run: otherwise each suite's programs
      # start one, and it lingers 3 s after the last exits, so a program
      # may start while the previous wineserver shuts down.
      wineserver -p >/dev/null 2>&1 || true
      ;;
  esac
  echo "== $b: meson test"
  if [ "$b" = build/asan ]; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      meson test -C "$b" --print-errorlogs --no-rebuild || status=1
  elif [ "$b" = build/tsan ]; then
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
      meson test -C "$b" --print-errorlogs --no-rebuild || status=1
  else
    meson test -C "$b" --print-errorlogs --no-rebuild || status=1
  fi
  [ "$b" = build/win64 ] && { wineserver -k >/dev/null 2>&1 || true; }
  ran+=("$b")
done

echo "== summary"
python3 test/check/summarize.py "${ran[@]}" || status=1
exit $status
