#!/usr/bin/env bash
# The README's first command: builds iocpsrv.dll and runs the C echo server
# sample on it (under Wine on Linux). Arguments go to the server:
#   --port N (default 50000, 0 = any)  --bind ADDR (default 127.0.0.1)  --threads N
# It prints "listening on port N"; press Enter (or end stdin) to stop it.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
bash test/tools/install-deps.sh >&2
if [ ! -f build/win64/build.ninja ]; then
  meson setup build/win64 --cross-file test/cross/mingw-w64-x86_64.txt >&2
fi
ninja -C build/win64 sample_clients/echo_server.exe >&2
export WINEDEBUG=-all WINEPREFIX="$top/build/win64/wineprefix"
export WINEPATH="Z:${top//\//\\}\\build\\win64"
[ -d "$WINEPREFIX" ] || wineboot -i >/dev/null 2>&1 || true
exec wine build/win64/sample_clients/echo_server.exe "$@"
