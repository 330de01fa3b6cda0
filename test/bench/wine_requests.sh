#!/usr/bin/env bash
# Counts wineserver requests per echo: under Wine every socket operation and
# every packet taken from a completion port is one or more requests to the
# single-threaded wineserver, so this is the Windows engine's cost there,
# counted rather than timed (a busy machine changes it little).
#
#   bash test/bench/wine_requests.sh [CxM] [SECONDS]      (default 50x64 2)
#
# For each server (the echo sample with neither completion tool, without
# its immediate sends (IOCPSRV_TRY_SEND=0), with IOCPSRV_SKIP_ON_SUCCESS=1,
# with IOCPSRV_DEQUEUE_BATCH=16, and the minimal
# IOCP echo test/bench/baseline_iocp.c), a fresh wineserver traces every
# request (-d1) while the native client (test/bench/loadgen.c) runs C
# connections of M-byte echoes for SECONDS; prints requests per echo and
# the most frequent requests. Uses build/win64 and build/linux (bench.sh
# builds both) and a private Wine prefix, build/win64/wineprefix-requests,
# whose wineserver it ends. A measurement, not a test.
set -euo pipefail
cfg=${1:-50x64} secs=${2:-2}
IFS=x read -r conns size <<<"$cfg"
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
loadgen=build/linux/test/bench/loadgen
for f in "$loadgen" build/win64/sample_clients/echo_server.exe build/win64/test/bench/baseline_iocp.exe; do
  [ -e "$f" ] || { echo "wine_requests.sh: $f missing (run test/bench/bench.sh --only echo once)" >&2; exit 1; }
done
export WINEDEBUG=-all WINEPREFIX="$top/build/win64/wineprefix-requests"
export WINEPATH="Z:${top//\//\\}\\build\\win64"
[ -d "$WINEPREFIX" ] || wineboot -i >/dev/null 2>&1 || true
log=$(mktemp)
trap 'wineserver -k 2>/dev/null || true; rm -f "$log"' EXIT
# A request is "ID: name( ... )"; its reply "ID: name() = STATUS { ... }".
requests() { grep -E '^[0-9a-f]+: [a-z_]+\(' "$log" | grep -v ') = ' || true; }
echo "| server | $cfg: echoes | wineserver requests per echo | most frequent, per echo |"
echo "|---|---:|---:|---|"
for v in "echo sample||sample_clients/echo_server.exe" \
         "echo sample, no immediate send|IOCPSRV_TRY_SEND=0|sample_clients/echo_server.exe" \
         "echo sample, skip port on success|IOCPSRV_SKIP_ON_SUCCESS=1|sample_clients/echo_server.exe" \
         "echo sample, GQCSEx 16|IOCPSRV_DEQUEUE_BATCH=16|sample_clients/echo_server.exe" \
         "baseline_iocp||test/bench/baseline_iocp.exe"; do
  IFS='|' read -r label env prog <<<"$v"
  wineserver -k 2>/dev/null || true
  wineserver -f -p -d1 2>"$log" &
  coproc SRV { exec env $env wine "build/win64/$prog" --port 0 2>/dev/null; }
  read -t 120 -r line <&"${SRV[0]}" || line=""
  line=${line%$'\r'} port=${line##* }
  sleep 1 # start-up requests settle
  before=$(requests | wc -l)
  res=$("$loadgen" --port "$port" --conns "$conns" --size "$size" --seconds "$secs" --warmup 0 2>/dev/null) || res=""
  mapfile -t measured < <(requests | tail -n +"$((before + 1))")
  exec {SRV[1]}>&-
  wait "$SRV_PID" 2>/dev/null || true
  echoes=$(grep -o ' echoes=[0-9]*' <<<"$res" | cut -d= -f2)
  printf '%s\n' "${measured[@]}" | python3 -c '
import collections, sys
label, echoes = sys.argv[1], int(sys.argv[2] or 0)
names = [l.split(": ", 1)[1].split("(", 1)[0] for l in sys.stdin if ": " in l]
top = ", ".join(f"{n} {c / max(echoes, 1):.2f}" for n, c in collections.Counter(names).most_common(5))
print(f"| {label} | {echoes:,} | {len(names) / max(echoes, 1):.2f} | {top} |")' "$label" "${echoes:-0}"
done
