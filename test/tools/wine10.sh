#!/usr/bin/env bash
# Runs a Windows x64 program under Debian 13's Wine 10.0, in the chroot that
# install-wine10.sh makes (Wine 10's SChannel has the server side Debian 12's
# Wine 8 lacks):
#
#   wine10.sh PROGRAM.exe [ARGS...]
#
# The current folder (meson runs tests in the build folder) is bound into the
# chroot at the same path and the program runs there, so the program, its
# DLLs, its data and WINEPREFIX must lie under it; the environment is kept.
# The mounts live in a private mount namespace and go with the program. Run
# as root.
set -euo pipefail

root=/var/cache/iocpsrv/trixie
if [ ! -f "$root/.iocpsrv-wine10" ]; then
  echo "wine10.sh: no Wine 10 chroot at $root (run test/tools/install-wine10.sh)" >&2
  exit 2
fi
here=$PWD
export WINEPATH="Z:$here${WINEPATH:+;$WINEPATH}"
# The chroot's own /tmp (not a fresh one) holds wineserver's socket, so the
# next program finds a wineserver that is still running for the prefix.
exec unshare --mount --propagation private sh -c '
  root=$1 here=$2; shift 2
  mkdir -p "$root$here"
  mount --bind "$here" "$root$here"
  mount --rbind /dev "$root/dev"
  mount -t proc proc "$root/proc"
  cd "$here"
  exec chroot "$root" sh -c "cd \"\$0\" && exec /usr/lib/wine/wine64 \"\$@\"" "$here" "$@"
' wine10 "$root" "$here" "$@"
