#!/usr/bin/env bash
# Echo benchmark: iocpsrv's C echo sample against the minimal IOCP echo
# (test/bench/baseline_iocp.c), both under the same Wine, both driven by the
# same native epoll client (test/bench/loadgen.c). Prints a Markdown table.
#
#   bash test/tools/bench.sh [--rounds R] [--seconds D] [--warmup W]
#                            [--configs "1x64 50x64 50x16384"] [--extra]
#
# A configuration CxM is C connections each keeping one M-byte message in
# flight. For each one the servers run in turn, R rounds, the order reversed
# every round (A B, B A, ...) so drift hits both alike; each run is a fresh
# server process. Under Wine absolute numbers mean little (see "How to read
# it" in test/bench/README.md): read the ratio, a median over rounds.
#
# --extra adds variants of both servers: baseline with
# GetQueuedCompletionStatusEx (64 per call), and both with one worker thread.
#
# If a native Linux build of the library exists (build/linux, or the binary
# named by LINUX_ECHO_SERVER), rows comparing its echo sample with a minimal
# epoll echo (test/bench/baseline_epoll.c) are added.
#
# This is a benchmark, run on purpose; it asserts nothing and is not a test.
# Servers are stopped by closing their standard input; the Wine prefix is a
# private one (build/win64/wineprefix-bench) whose wineserver is ended at the
# end, so nothing is left running.
set -euo pipefail

rounds=5 seconds=3 warmup=1 extra=0
configs="1x64 50x64 50x16384"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    --extra) extra=1; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
# The effective command, defaults spelled out, for the report.
cmdline="bash test/tools/bench.sh --rounds $rounds --seconds $seconds --warmup $warmup --configs \"$configs\""
if [ "$extra" = 1 ]; then cmdline+=" --extra"; fi

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
for tool in x86_64-w64-mingw32-gcc wine wineserver meson ninja cc python3; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool missing (see test/tools/install-deps.sh)" >&2; exit 1; }
done

# ---- Build ----------------------------------------------------------------
if [ ! -f build/win64/build.ninja ]; then
  meson setup build/win64 --cross-file test/cross/mingw-w64-x86_64.txt >&2
fi
ninja -C build/win64 iocpsrv.dll sample_clients/echo_server.exe \
  test/bench/baseline_iocp.exe test/bench/loadgen test/bench/baseline_epoll >&2
loadgen=build/win64/test/bench/loadgen
# A native Linux build of the library (being written in parallel): only if
# it is there and builds; its rows then compare it with baseline_epoll.
# LINUX_ECHO_SERVER=path picks another native echo_server binary.
native=0
linux_echo=${LINUX_ECHO_SERVER:-build/linux/sample_clients/echo_server}
if [ -n "${LINUX_ECHO_SERVER:-}" ]; then
  [ -x "$linux_echo" ] && native=1
elif [ -f build/linux/build.ninja ] && ninja -C build/linux sample_clients/echo_server >&2 &&
     [ -x "$linux_echo" ]; then
  native=1
fi

# ---- Environment ------------------------------------------------------------
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then hard=65536; fi
ulimit -n "$hard"
export WINEDEBUG=-all WINEPREFIX="$top/build/win64/wineprefix-bench"
export WINEPATH="Z:${top//\//\\}\\build\\win64"
out="$top/build/win64/bench/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
raw="$out/raw.txt"
: >"$raw"

srv_pid=""
stop_server() {
  # Closing stdin is the contract; a server that does not exit in 10 s is
  # killed (by its own pid) and the run marked as such.
  [ -n "$srv_pid" ] || return 0
  if [ -n "${SRV[1]:-}" ]; then exec {SRV[1]}>&-; fi
  local i
  for i in $(seq 100); do
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$srv_pid" 2>/dev/null; then
    echo "bench.sh: server $srv_pid did not exit on stdin EOF; killing it" >&2
    kill "$srv_pid" 2>/dev/null || true
  fi
  wait "$srv_pid" 2>/dev/null || true
  srv_pid=""
}
cleanup() {
  stop_server
  # Only our private prefix: ends its persistent wineserver and any Wine
  # process still attached to it.
  [ -d "$WINEPREFIX" ] && wineserver -k 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -d "$WINEPREFIX" ]; then
  echo "bench.sh: creating the Wine prefix (once, ~10 s)" >&2
  wineboot -i >/dev/null 2>&1 || true
fi
# One wineserver for the whole run, so no run pays for its start-up.
wineserver -p

# run_one GROUP LABEL CONFIG COMMAND...: one fresh server, one loadgen run.
run_one() {
  local group=$1 label=$2 cfg=$3; shift 3
  local conns=${cfg%x*} size=${cfg#*x} line port result
  coproc SRV { exec "$@" --port 0 2>>"$out/servers.err"; }
  srv_pid=$SRV_PID
  if ! read -t 60 -r line <&"${SRV[0]}"; then line=""; fi
  line=${line%$'\r'} # Wine's console output ends lines with CR LF
  port=${line##* }
  if [[ "$line" != "listening on port "* ]] || ! [[ "$port" =~ ^[0-9]+$ ]]; then
    echo "bench.sh: $label did not start (got '$line')" >&2
    stop_server
    echo "group=$group label=$label cfg=$cfg errors=1 failed=start" >>"$raw"
    return 0
  fi
  result=$("$loadgen" --port "$port" --conns "$conns" --size "$size" \
             --seconds "$seconds" --warmup "$warmup" 2>>"$out/loadgen.err") || true
  stop_server
  [ -n "$result" ] || result="errors=1 failed=loadgen"
  echo "group=$group label=$label cfg=$cfg $result" >>"$raw"
  echo "  $cfg $label: $result" >&2
}

# Server variants: "group|label|command". The first of each group is the
# baseline the others are divided by.
variants=(
  "wine|baseline_iocp|wine build/win64/test/bench/baseline_iocp.exe"
  "wine|iocpsrv|wine build/win64/sample_clients/echo_server.exe"
)
if [ "$extra" = 1 ]; then
  variants+=(
    "wine|baseline_iocp GQCSEx|wine build/win64/test/bench/baseline_iocp.exe --batch 64"
    "wine|baseline_iocp 1 thread|wine build/win64/test/bench/baseline_iocp.exe --threads 1"
    "wine|iocpsrv 1 thread|wine build/win64/sample_clients/echo_server.exe --threads 1"
  )
fi
if [ "$native" = 1 ]; then
  variants+=(
    "native|baseline_epoll|build/win64/test/bench/baseline_epoll"
    "native|iocpsrv (Linux)|$linux_echo"
  )
fi

started=$(date -u +'%Y-%m-%d %H:%M:%S UTC')
for cfg in $configs; do
  [[ "$cfg" =~ ^[0-9]+x[0-9]+$ ]] || { echo "bench.sh: bad configuration $cfg (want CxM)" >&2; exit 2; }
  echo "bench.sh: $cfg" >&2
  for r in $(seq "$rounds"); do
    order=("${variants[@]}")
    if [ $((r % 2)) = 0 ]; then # reverse every other round
      order=()
      for ((i = ${#variants[@]} - 1; i >= 0; i--)); do order+=("${variants[i]}"); done
    fi
    for v in "${order[@]}"; do
      IFS='|' read -r group label command <<<"$v"
      # shellcheck disable=SC2086 # the command is split on purpose
      run_one "$group" "$label" "$cfg" $command
    done
  done
done

# ---- Report -----------------------------------------------------------------
wine_version=$(wine --version 2>/dev/null || echo unknown)
python3 - "$raw" "$cmdline" "$started" "$wine_version" "$seconds" "$warmup" "$rounds" <<'EOF'
import statistics, sys
raw, cmdline, started, winever, seconds, warmup, rounds = sys.argv[1:]
runs = []
for line in open(raw):
    head, _, rest = line.partition(" label=")
    label, _, rest = rest.partition(" cfg=")
    d = dict(kv.split("=", 1) for kv in rest.split()[1:] if "=" in kv)
    d.update(group=head.split("=", 1)[1], label=label, cfg=rest.split()[0])
    runs.append(d)

def med(xs):
    return statistics.median(xs) if xs else float("nan")

def ok(r):
    return r.get("errors") == "0" and "echoes_per_s" in r

print(f"Echo benchmark, {started}; {winever}; {seconds} s measured after {warmup} s warm-up; "
      f"median of {rounds} rounds, servers alternated.")
print()
print(f"    {cmdline}")
print()
print("| configuration | server | baseline echoes/s | server echoes/s (min-max) | ratio server/baseline | "
      "paired ratios (min-max) | baseline p99 ms | server p99 ms | failed runs |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
seen = []
for r in runs:
    key = (r["cfg"], r["group"])
    if key not in seen:
        seen.append(key)
for cfg, group in seen:
    rs = [r for r in runs if r["cfg"] == cfg and r["group"] == group]
    labels = []
    for r in rs:
        if r["label"] not in labels:
            labels.append(r["label"])
    base = labels[0]
    b = [r for r in rs if r["label"] == base]
    b_eps = [float(r["echoes_per_s"]) for r in b if ok(r)]
    b_p99 = [float(r["p99_us"]) / 1000 for r in b if ok(r)]
    c, m = cfg.split("x")
    for lab in labels[1:]:
        s = [r for r in rs if r["label"] == lab]
        s_eps = [float(r["echoes_per_s"]) for r in s if ok(r)]
        s_p99 = [float(r["p99_us"]) / 1000 for r in s if ok(r)]
        # Paired: the i-th run of each, which ran next to each other.
        pairs = [float(y["echoes_per_s"]) / float(x["echoes_per_s"])
                 for x, y in zip(b, s) if ok(x) and ok(y) and float(x["echoes_per_s"]) > 0]
        failed = sum(not ok(r) for r in b + s)
        rng = f"{min(s_eps):,.0f}-{max(s_eps):,.0f}" if s_eps else "-"
        prng = f"{min(pairs):.2f}-{max(pairs):.2f}" if pairs else "-"
        ratio = med(s_eps) / med(b_eps) if b_eps and s_eps and med(b_eps) > 0 else float("nan")
        print(f"| {c} conns x {m} B | {lab} vs {base} | {med(b_eps):,.0f} | {med(s_eps):,.0f} ({rng}) | "
              f"{ratio:.2f} | {prng} | {med(b_p99):.2f} | {med(s_p99):.2f} | {failed} |")
print()
print(f"Raw results: {raw}")
EOF
