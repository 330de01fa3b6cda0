#!/usr/bin/env bash
# The long runs, run on purpose (CI runs the same programs at a
# small size in every build):
#   - a 10-minute chaos run (test_chaos: a seeded random mix of clients
#     while an application thread calls the per-connection controls, half
#     the time in callback mode and half in queue mode, with idle timeouts,
#     max_connections and graceful stops; the seed is printed first,
#     replay a failure with IOCP_CHAOS_SEED=N),
#   - 100,000 connect-and-reset cycles while a normal client is served,
#   - 1,000 create / load / destroy cycles, no growth in memory, handles
#     or threads,
#   - with --bigsend, a 4.6 GiB queue on one connection, byte for byte
#     (needs about 10 GiB of free memory; CI sends 1.1 GiB).
#
#   bash test/tools/longrun.sh [--bigsend] [BUILD...]    (default: linux win64)
#
# BUILD is a directory under build/ that test-all.sh made (linux, asan,
# tsan, win64: win64 runs under Wine). Sizes can be changed through
# IOCP_CHAOS_SECONDS, IOCP_CHAOS_RESETS, IOCP_CHAOS_CYCLES, IOCP_BIGSEND_MIB.
# Prints one line per run, its memory and handles at the start and end (and
# the log has them every minute), and 'N passed, M failed' at the end. The machine
# may be shared: the runs only check correctness, they time nothing.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"

bigsend=0
if [ "${1:-}" = "--bigsend" ]; then
  bigsend=1
  shift
fi
builds=("$@")
[ ${#builds[@]} -gt 0 ] || builds=(linux win64)

export IOCP_CHAOS_SECONDS=${IOCP_CHAOS_SECONDS:-600}
export IOCP_CHAOS_RESETS=${IOCP_CHAOS_RESETS:-100000}
export IOCP_CHAOS_CYCLES=${IOCP_CHAOS_CYCLES:-1000}
export WINEDEBUG=-all
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true

passed=0
failed=0
run() { # build, program, log name
  local b=$1 prog=$2 name=$3 log="build/$1/longrun-$3.log" rc
  if [ "$b" = win64 ]; then
    WINEPREFIX="$top/build/win64/wineprefix" wine "build/$b/test/c/$prog.exe" >"$log" 2>&1
  else
    "build/$b/test/c/$prog" >"$log" 2>&1
  fi
  rc=$?
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
    echo "ok    $b $name ($(head -n 1 "$log"))"
    grep -E '^(callback|queue) mode|^controls:|resets, |cycles: ' "$log" | sed 's/^/        /'
  else
    failed=$((failed + 1))
    echo "FAIL  $b $name: see $log"
    tail -n 15 "$log"
  fi
}

for b in "${builds[@]}"; do
  if [ ! -f "build/$b/build.ninja" ]; then
    echo "FAIL  build/$b does not exist: run test/tools/test-all.sh first"
    failed=$((failed + 1))
    continue
  fi
  ninja -C "build/$b" >"build/$b/longrun-build.log" 2>&1 || {
    echo "FAIL  $b: build failed (build/$b/longrun-build.log)"
    failed=$((failed + 1))
    continue
  }
  run "$b" test_chaos chaos
  if [ $bigsend -eq 1 ]; then
    IOCP_BIGSEND_MIB=${IOCP_BIGSEND_MIB:-4700} run "$b" test_bigsend bigsend
  fi
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
