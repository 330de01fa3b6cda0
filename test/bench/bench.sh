#!/usr/bin/env bash
# Benchmarks; prints Markdown tables. Three sections (--only picks some):
#
#   echo  iocpsrv's C echo sample against the minimal IOCP echo
#         (test/bench/baseline_iocp.c), and the C echo in queue mode
#         (test/bench/queue_echo.c), all under the same Wine; and, if
#         build/linux exists (or LINUX_ECHO_SERVER names a binary), the
#         Linux build's echo sample against a one-thread epoll echo
#         (test/bench/baseline_epoll.c). Configurations: --configs.
#   uv    natively, the echo sample (its default worker count, and one
#         worker) against a libuv echo written as careful libuv users write
#         it (test/bench/baseline_uv.c): echoes/s and the server's CPU time
#         per echo. Configurations: --uv-configs.
#   lang  natively, the wrappers: the Python sample (echo_server.py) in queue
#         (batched) and callback mode, and uvloop, against an asyncio
#         Protocol echo (test/bench/asyncio_echo.py), all on Debian's
#         /usr/bin/python3; and the C# sample on Mono in both modes and
#         the C echo in queue mode (test/bench/queue_echo.c: the library's
#         own cost of iocp_wait) against the C sample. Echoes/s and the
#         server's CPU time per echo.
#         Configurations: --lang-configs.
#   live  natively, the uv section's servers, but each started once per
#         configuration and kept running: every round drives each in turn for
#         D seconds after W of warm-up (order reversed every round), so the
#         host's drift between rounds (rates here swing 1.5x over minutes)
#         falls on all alike. Reports the median and quartiles of the paired
#         (same-round) ratios of echoes/s and of CPU per echo. Slices of
#         1-3 s and 20 or more rounds tell 2-3% apart. --uv-configs.
#   live-wine  the same for the echo section's Wine servers: the echo sample
#         and the minimal IOCP echo, under one Wine. --configs.
#   live-http  the same for the http section: nginx and the HTTP sample kept
#         running, a wrk run on each in turn. --http-conns.
#   http  natively, the HTTP sample (sample_clients/c/http_server.c) against
#         nginx (`return 200 "Hello, World!"`, the same number of workers,
#         --http-threads) under wrk (--wrk-threads threads, --http-conns
#         connections): requests/s and the server's CPU time per request.
#
#   bash test/bench/bench.sh [--rounds R] [--seconds D] [--warmup W]
#       [--only "echo uv live live-wine http live-http"] [--configs "1x64 50x64 50x16384"] [--extra] [--win-tools]
#       [--uv-configs "100x64 1000x64 100x65536x4"] [--lang-configs "100x64 1000x64"]
#       [--http-conns "100 1000"] [--http-threads 2] [--wrk-threads 1]
#       [--client epoll|uring]
#
# An echo configuration CxM[xK] is C connections each keeping K (default 1)
# M-byte messages in flight, driven by one native client
# (test/bench/loadgen.c) for every server: with epoll (two system calls per
# echo, like the servers', so on 2 cores it runs a whole processor and sets
# the rate itself), or with --client uring through io_uring (a few system
# calls per hundred echoes: it leaves the server what it does not need, so
# the server sets the rate). For each configuration the
# servers run in turn, R rounds, the order reversed every round (A B, B A,
# ...) so drift hits all alike; each run is a fresh server process, warmed up
# for W seconds, measured for D. Under Wine absolute numbers mean little
# (see "How to read it" in test/bench/README.md): read the ratio, a median
# over rounds. CPU per echo or request is the server's user + system time
# (all its threads and processes, from /proc/PID/stat) over the measured
# seconds.
#
# --extra adds variants to the echo section: baseline with
# GetQueuedCompletionStatusEx (64 per call), and both with one worker thread.
# --win-tools adds the Windows engine with each of its completion tools
# turned on (both are off by default, see dll/win/eng.h; knobs read from the
# environment when a server starts): sockets that skip the port when an
# operation succeeds at once (IOCPSRV_SKIP_ON_SUCCESS=1), and up to 16
# (BENCH_BATCH) packets per GetQueuedCompletionStatusEx
# (IOCPSRV_DEQUEUE_BATCH=16).
#
# This is a benchmark, run on purpose; it asserts nothing and is not a test.
# Servers are stopped by closing their standard input (nginx: SIGQUIT to its
# master, which this script started); nginx listens on a fixed port
# (NGINX_PORT, default 23080) with a private prefix under build/; the Wine
# prefix is a private one (build/win64/wineprefix-bench) whose wineserver is
# ended at the end, so nothing is left running.
set -euo pipefail

rounds=5 seconds=3 warmup=1 extra=0 win_tools=0
only="echo uv http"
configs="1x64 50x64 50x16384"
uv_configs="100x64 1000x64 100x65536x4"
lang_configs="100x64 1000x64"
http_conns="100 1000"
http_threads=2 wrk_threads=1
client=epoll
nginx_port=${NGINX_PORT:-23080}
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    --uv-configs) uv_configs=$2; shift 2 ;;
    --lang-configs) lang_configs=$2; shift 2 ;;
    --http-conns) http_conns=$2; shift 2 ;;
    --http-threads) http_threads=$2; shift 2 ;;
    --wrk-threads) wrk_threads=$2; shift 2 ;;
    --client) client=$2; shift 2 ;;
    --extra) extra=1; shift ;;
    --win-tools) win_tools=1; shift ;;
    -h|--help) sed -n '2,73p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$client" in epoll|uring) ;; *) echo "bench.sh: --client is epoll or uring" >&2; exit 2 ;; esac
want() { [[ " $only " == *" $1 "* ]]; }
want_wine() { want echo || want live-wine; }
for sec in $only; do
  case "$sec" in echo|uv|live|live-wine|lang|http|live-http) ;; *) echo "bench.sh: unknown section $sec" >&2; exit 2 ;; esac
done
# The effective command, defaults spelled out, for the report.
cmdline="bash test/bench/bench.sh --rounds $rounds --seconds $seconds --warmup $warmup --only \"$only\""
{ want echo || want live-wine; } && cmdline+=" --configs \"$configs\""
{ want uv || want live; } && cmdline+=" --uv-configs \"$uv_configs\""
want lang && cmdline+=" --lang-configs \"$lang_configs\""
{ want http || want live-http; } && cmdline+=" --http-conns \"$http_conns\" --http-threads $http_threads --wrk-threads $wrk_threads"
if [ "$extra" = 1 ]; then cmdline+=" --extra"; fi
if [ "$win_tools" = 1 ]; then cmdline+=" --win-tools"; fi
if [ "$client" != epoll ]; then cmdline+=" --client $client"; fi

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
tools="meson ninja cc python3"
want_wine && tools+=" x86_64-w64-mingw32-gcc wine wineserver"
{ want http || want live-http; } && tools+=" wrk curl"
for tool in $tools; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool missing (see test/tools/install-deps.sh)" >&2; exit 1; }
done
nginx=/usr/sbin/nginx
if { want http || want live-http; } && [ ! -x "$nginx" ]; then
  echo "bench.sh: $nginx missing (Debian's nginx-light, see test/tools/install-deps.sh)" >&2; exit 1
fi

# ---- Build ----------------------------------------------------------------
# The native programs (loadgen, the baselines, the Linux library and its
# samples) come from build/linux, made if missing: the uv and http sections
# need it; the echo section uses it when it is there.
native=0
if want uv || want live || want http || want live-http || want lang; then
  [ -f build/linux/build.ninja ] || meson setup build/linux >&2
fi
if [ -f build/linux/build.ninja ]; then
  ninja -C build/linux test/bench/loadgen test/bench/baseline_epoll sample_clients/echo_server \
    sample_clients/http_server test/bench/queue_echo >&2
  if want lang; then
    ninja -C build/linux >&2 # the library, and the C# sample when mcs is there
    for mod in uvloop; do
      /usr/bin/python3 -c "import $mod" 2>/dev/null ||
        { echo "bench.sh: /usr/bin/python3 lacks $mod (python3-uvloop, test/tools/install-deps.sh)" >&2; exit 1; }
    done
  fi
  if want uv || want live; then
    ninja -C build/linux test/bench/baseline_uv >&2 ||
      { echo "bench.sh: no baseline_uv: is libuv1-dev installed? (test/tools/install-deps.sh)" >&2; exit 1; }
  fi
  native=1
fi
if want_wine; then
  if [ ! -f build/win64/build.ninja ]; then
    meson setup build/win64 --cross-file test/cross/mingw-w64-x86_64.txt >&2
  fi
  ninja -C build/win64 iocpsrv.dll sample_clients/echo_server.exe test/bench/queue_echo.exe \
    test/bench/baseline_iocp.exe test/bench/loadgen test/bench/baseline_epoll >&2
fi
nat=build/linux
if [ "$native" = 1 ]; then loadgen=$nat/test/bench/loadgen; else loadgen=build/win64/test/bench/loadgen; fi
# LINUX_ECHO_SERVER=path picks another native echo_server binary.
linux_echo=${LINUX_ECHO_SERVER:-$nat/sample_clients/echo_server}
[ -x "$linux_echo" ] || native=0

# ---- Environment ------------------------------------------------------------
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then hard=65536; fi
ulimit -n "$hard"
export WINEDEBUG=-all WINEPREFIX="$top/build/win64/wineprefix-bench"
export WINEPATH="Z:${top//\//\\}\\build\\win64"
out="$top/build/bench/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
raw="$out/raw.txt"
: >"$raw"
clk_tck=$(getconf CLK_TCK)

srv_pid="" srv_signal=""
stop_server() {
  # Closing stdin is the contract (nginx: SIGQUIT, a graceful stop); a
  # server that does not exit in 10 s is killed (by its own pid).
  [ -n "$srv_pid" ] || return 0
  if [ -n "$srv_signal" ]; then
    kill "-$srv_signal" "$srv_pid" 2>/dev/null || true
  elif [ -n "${SRV[1]:-}" ]; then
    exec {SRV[1]}>&-
  fi
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
  srv_pid="" srv_signal=""
}
cleanup() {
  stop_server
  if [ -n "$live_nginx" ]; then
    kill -QUIT "$live_nginx" 2>/dev/null || true
    wait "$live_nginx" 2>/dev/null || true
  fi
  # Only our private prefix: ends its persistent wineserver and any Wine
  # process still attached to it.
  if want_wine; then
    [ -d "$WINEPREFIX" ] && wineserver -k 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if want_wine; then
  if [ ! -d "$WINEPREFIX" ]; then
    echo "bench.sh: creating the Wine prefix (once, ~10 s)" >&2
    wineboot -i >/dev/null 2>&1 || true
  fi
  # One wineserver for the whole run, so no run pays for its start-up.
  wineserver -p
fi

# cpu_ticks PID: user + system clock ticks of PID and its child processes
# (nginx's workers), all threads included.
cpu_ticks() {
  local p t=0 s
  for p in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    s=$(cat /proc/"$p"/stat 2>/dev/null) || continue
    s=${s##*) } # fields from the 3rd on; the name may hold spaces
    # shellcheck disable=SC2086
    set -- $s
    t=$((t + ${12} + ${13}))
  done
  echo "$t"
}

# start_server LABEL COMMAND...: a fresh server on port 0; sets $port.
start_server() {
  local label=$1 line; shift
  coproc SRV { exec "$@" --port 0 2>>"$out/servers.err"; }
  srv_pid=$SRV_PID
  if ! read -t 60 -r line <&"${SRV[0]}"; then line=""; fi
  line=${line%$'\r'} # Wine's console output ends lines with CR LF
  port=${line##* }
  if [[ "$line" != "listening on port "* ]] || ! [[ "$port" =~ ^[0-9]+$ ]]; then
    echo "bench.sh: $label did not start (got '$line')" >&2
    stop_server
    return 1
  fi
}

# start_nginx THREADS: nginx with its own configuration in a private prefix,
# in the foreground (daemon off) as our child; waits until it answers.
start_nginx() {
  local prefix="$out/nginx" i
  mkdir -p "$prefix/logs" "$prefix/tmp"
  cat >"$prefix/nginx.conf" <<NGINX
# Written by test/bench/bench.sh. Tuned as for a benchmark: no access log,
# keep-alive without a request limit.
worker_processes $1;
daemon off;
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log warn;
events { worker_connections 8192; }
worker_rlimit_nofile 20000;
http {
  access_log off;
  default_type text/plain;
  keepalive_requests 100000000;
  client_body_temp_path $prefix/tmp/body;
  proxy_temp_path $prefix/tmp/proxy;
  fastcgi_temp_path $prefix/tmp/fastcgi;
  uwsgi_temp_path $prefix/tmp/uwsgi;
  scgi_temp_path $prefix/tmp/scgi;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { return 200 "Hello, World!"; }
  }
}
NGINX
  "$nginx" -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" \
    </dev/null 2>>"$out/servers.err" &
  srv_pid=$! srv_signal=QUIT
  port=$nginx_port
  for i in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench.sh: nginx did not start on port $port (see $out/servers.err)" >&2
  stop_server
  return 1
}

# run_one GROUP LABEL CONFIG COMMAND...: one fresh echo server, one loadgen
# run (CONFIG is CxM or CxMxK).
run_one() {
  local group=$1 label=$2 cfg=$3; shift 3
  local conns size inflight=1 result port
  IFS=x read -r conns size inflight <<<"$cfg"
  if ! start_server "$label" "$@"; then
    echo "group=$group label=$label cfg=$cfg errors=1 failed=start" >>"$raw"
    return 0
  fi
  result=$("$loadgen" --port "$port" --conns "$conns" --size "$size" --inflight "${inflight:-1}" \
             --seconds "$seconds" --warmup "$warmup" --cpu-pid "$srv_pid" --io "$client" \
             2>>"$out/loadgen.err") || true
  stop_server
  [ -n "$result" ] || result="errors=1 failed=loadgen"
  echo "group=$group label=$label cfg=$cfg $result" >>"$raw"
  echo "  $cfg $label: $result" >&2
}

# run_http GROUP LABEL CONNS COMMAND... (or "nginx"): one fresh server, a
# wrk warm-up, then the measured wrk run with the server's CPU read around it.
run_http() {
  local label=$2 conns=$3; shift 3
  local port
  if [ "$1" = nginx ]; then start_nginx "$http_threads" || port=""; else start_server "$label" "$@" || port=""; fi
  if [ -z "$port" ]; then
    echo "group=http label=$label cfg=${conns}c errors=1 failed=start" >>"$raw"
    return 0
  fi
  measure_http http "$label" "$conns" "$port" "$srv_pid"
  stop_server
}

# whole_s X: X seconds rounded up to a whole second (wrk takes no fractions).
whole_s() { awk -v x="$1" 'BEGIN { d = int(x); if (d < x) d++; if (d < 1) d = 1; print d }'; }

# measure_http GROUP LABEL CONNS PORT PID: a wrk warm-up, then the measured
# wrk run with the server's CPU read around it.
measure_http() {
  local group=$1 label=$2 conns=$3 port=$4 pid=$5
  local t0 t1 c0 c1 w rps p99 non2xx sockerr result
  local url="http://127.0.0.1:$port/"
  if [ "$warmup" != 0 ]; then
    wrk -t "$wrk_threads" -c "$conns" -d "$(whole_s "$warmup")s" "$url" >/dev/null 2>>"$out/wrk.err" || true
  fi
  c0=$(cpu_ticks "$pid") t0=$(date +%s.%N)
  w=$(wrk -t "$wrk_threads" -c "$conns" -d "$(whole_s "$seconds")s" --latency "$url" 2>>"$out/wrk.err") || w=""
  c1=$(cpu_ticks "$pid") t1=$(date +%s.%N)
  echo "$w" >>"$out/wrk.txt"
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$w")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$w")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$w")
  sockerr=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$w")
  if [ -z "$rps" ]; then
    result="errors=1 failed=wrk"
  else
    result=$(python3 -c 'import sys
rps, c0, c1, t0, t1, tck, p99 = sys.argv[1:8]
cpu = (int(c1) - int(c0)) / int(tck); wall = float(t1) - float(t0); req = float(rps) * wall
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
p = next((float(p99[:-len(u)]) * f for u, f in unit.items() if p99.endswith(u) and p99[:-len(u)].replace(".", "").isdigit()), float("nan"))
print(f"echoes_per_s={rps} server_cpu_pct={cpu / wall * 100:.1f} server_cpu_us_per_echo={cpu * 1e6 / req:.3f} p99_us={p * 1e3:.1f}")' \
      "$rps" "$c0" "$c1" "$t0" "$t1" "$clk_tck" "${p99:-nan}")
    result+=" errors=$(( ${non2xx:-0} + ${sockerr:-0} ))"
  fi
  echo "group=$group label=$label cfg=${conns}c $result" >>"$raw"
  echo "  ${conns}c $label: $result" >&2
}

# live_http CONNS: nginx and the HTTP sample started once and kept running;
# R rounds measure each in turn (order reversed every other round).
live_nginx=""
live_http() {
  local conns=$1 hpid hport r
  start_nginx "$http_threads" || return 0
  live_nginx=$srv_pid srv_pid="" srv_signal="" # stopped below, or by cleanup
  if start_server "iocpsrv http_server" "$nat/sample_clients/http_server" --threads "$http_threads"; then
    hpid=$srv_pid hport=$port
    for r in $(seq "$rounds"); do
      if [ $((r % 2)) = 1 ]; then
        measure_http live-http nginx "$conns" "$nginx_port" "$live_nginx"
        measure_http live-http "iocpsrv http_server" "$conns" "$hport" "$hpid"
      else
        measure_http live-http "iocpsrv http_server" "$conns" "$hport" "$hpid"
        measure_http live-http nginx "$conns" "$nginx_port" "$live_nginx"
      fi
    done
    stop_server
  fi
  kill -QUIT "$live_nginx" 2>/dev/null || true
  wait "$live_nginx" 2>/dev/null || true
  live_nginx=""
}

# run_rounds RUNNER CONFIG VARIANT...: R rounds of every variant
# ("group|label|command"; the first of a group is the baseline the others
# are divided by), the order reversed every other round.
run_rounds() {
  local runner=$1 cfg=$2; shift 2
  local vs=("$@") order r i v group label command
  for r in $(seq "$rounds"); do
    order=("${vs[@]}")
    if [ $((r % 2)) = 0 ]; then
      order=()
      for ((i = ${#vs[@]} - 1; i >= 0; i--)); do order+=("${vs[i]}"); done
    fi
    for v in "${order[@]}"; do
      IFS='|' read -r group label command <<<"$v"
      # shellcheck disable=SC2086 # the command is split on purpose
      "$runner" "$group" "$label" "$cfg" $command
    done
  done
}

started=$(date -u +'%Y-%m-%d %H:%M:%S UTC')
if want echo; then
  variants=(
    "wine|baseline_iocp|wine build/win64/test/bench/baseline_iocp.exe"
    "wine|iocpsrv|wine build/win64/sample_clients/echo_server.exe"
    "wine|iocpsrv queue mode (queue_echo)|wine build/win64/test/bench/queue_echo.exe"
  )
  if [ "$extra" = 1 ]; then
    variants+=(
      "wine|baseline_iocp GQCSEx|wine build/win64/test/bench/baseline_iocp.exe --batch 64"
      "wine|baseline_iocp 1 thread|wine build/win64/test/bench/baseline_iocp.exe --threads 1"
      "wine|iocpsrv 1 thread|wine build/win64/sample_clients/echo_server.exe --threads 1"
    )
  fi
  if [ "$win_tools" = 1 ]; then
    variants+=(
      "wine|iocpsrv skip port on success|env IOCPSRV_SKIP_ON_SUCCESS=1 wine build/win64/sample_clients/echo_server.exe"
      "wine|iocpsrv GQCSEx ${BENCH_BATCH:-16}|env IOCPSRV_DEQUEUE_BATCH=${BENCH_BATCH:-16} wine build/win64/sample_clients/echo_server.exe"
    )
  fi
  if [ "$native" = 1 ]; then
    variants+=(
      "native|baseline_epoll|$nat/test/bench/baseline_epoll"
      "native|iocpsrv (Linux)|$linux_echo"
    )
  fi
  for cfg in $configs; do
    [[ "$cfg" =~ ^[0-9]+x[0-9]+(x[0-9]+)?$ ]] ||
      { echo "bench.sh: bad configuration $cfg (want CxM or CxMxK)" >&2; exit 2; }
    echo "bench.sh: echo $cfg" >&2
    run_rounds run_one "$cfg" "${variants[@]}"
  done
fi
if want uv; then
  variants=(
    "uv|libuv|$nat/test/bench/baseline_uv"
    "uv|iocpsrv (Linux)|$linux_echo"
    "uv|iocpsrv (Linux) 1 worker|$linux_echo --threads 1"
  )
  for cfg in $uv_configs; do
    [[ "$cfg" =~ ^[0-9]+x[0-9]+(x[0-9]+)?$ ]] ||
      { echo "bench.sh: bad configuration $cfg (want CxM or CxMxK)" >&2; exit 2; }
    echo "bench.sh: uv $cfg" >&2
    run_rounds run_one "$cfg" "${variants[@]}"
  done
fi
# wineserver_pid: our private prefix's wineserver (others may be running).
wineserver_pid() {
  local p
  for p in $(pgrep wineserver); do # wineserver64 on Debian
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qxF "WINEPREFIX=$WINEPREFIX" &&
      { echo "$p"; return; }
  done
  echo 0
}

# run_live GROUP CONFIG WATCH VARIANT...: every variant ("label|command")
# started once and kept running, idle but for the one being driven; R rounds
# drive each in turn (order reversed every other round) with one loadgen
# run. WATCH: a process whose CPU share loadgen reports too (0: none).
run_live() {
  local group=$1 cfg=$2 watch=$3; shift 3
  [[ "$cfg" =~ ^[0-9]+x[0-9]+(x[0-9]+)?$ ]] ||
    { echo "bench.sh: bad configuration $cfg (want CxM or CxMxK)" >&2; exit 2; }
  echo "bench.sh: $group $cfg" >&2
  python3 - "$raw" "$group" "$cfg" "$rounds" "$seconds" "$warmup" "$loadgen" "$out/servers.err" \
    "$watch" "$client" "$@" <<'PY'
import subprocess, sys
raw, group, cfg, rounds, seconds, warmup, loadgen, errlog, watch, client = sys.argv[1:11]
conns, size, *k = cfg.split("x")
servers = []
err = open(errlog, "a")
try:
    for v in sys.argv[11:]:
        label, cmd = v.split("|", 1)
        p = subprocess.Popen(cmd.split() + ["--port", "0"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=err, text=True)
        line = p.stdout.readline().strip() # Wine ends it with CR LF
        if not line.startswith("listening on port "):
            sys.exit(f"bench.sh: {label} did not start (got {line!r})")
        servers.append((label, p, line.split()[-1]))
    for r in range(int(rounds)):
        for label, p, port in (servers if r % 2 == 0 else servers[::-1]):
            res = subprocess.run([loadgen, "--port", port, "--conns", conns, "--size", size,
                                  "--inflight", k[0] if k else "1", "--seconds", seconds,
                                  "--warmup", warmup, "--cpu-pid", str(p.pid), "--io", client]
                                 + (["--watch-pid", watch] if watch != "0" else []),
                                 capture_output=True, text=True).stdout.strip() or "errors=1 failed=loadgen"
            with open(raw, "a") as f:
                f.write(f"group={group} label={label} cfg={cfg} {res}\n")
            print(f"  {cfg} {label}: {res}", file=sys.stderr)
finally:
    for label, p, port in servers:
        p.stdin.close()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            print(f"bench.sh: {label} did not exit on stdin EOF; killing it", file=sys.stderr)
            p.kill()
            p.wait()
PY
}

if want live; then
  for cfg in $uv_configs; do
    run_live live "$cfg" 0 "libuv|$nat/test/bench/baseline_uv" "iocpsrv (Linux)|$linux_echo" \
      "iocpsrv (Linux) 1 worker|$linux_echo --threads 1"
  done
fi
if want live-wine; then
  for cfg in $configs; do
    run_live live-wine "$cfg" "$(wineserver_pid)" "baseline_iocp|wine build/win64/test/bench/baseline_iocp.exe" \
      "iocpsrv|wine build/win64/sample_clients/echo_server.exe"
  done
fi
if want lang; then
  export LD_LIBRARY_PATH="$top/$nat"
  py=/usr/bin/python3 # Debian's: python3-uvloop is built for it
  variants=(
    "py|asyncio Protocol|$py test/bench/asyncio_echo.py"
    "py|uvloop Protocol|$py test/bench/asyncio_echo.py --uvloop"
    "py|iocpsrv.py queue|$py sample_clients/python/echo_server.py --mode queue"
    "py|iocpsrv.py callbacks|$py sample_clients/python/echo_server.py --mode callbacks"
  )
  if command -v mono >/dev/null && [ -f "$nat/sample_clients/csharp/EchoServer.exe" ]; then
    variants+=(
      "cs|C echo_server|$linux_echo"
      "cs|C queue_echo (iocp_wait)|$nat/test/bench/queue_echo"
      "cs|C# queue (Mono)|mono $nat/sample_clients/csharp/EchoServer.exe --mode queue"
      "cs|C# callbacks (Mono)|mono $nat/sample_clients/csharp/EchoServer.exe --mode callbacks"
    )
  fi
  for cfg in $lang_configs; do
    [[ "$cfg" =~ ^[0-9]+x[0-9]+(x[0-9]+)?$ ]] ||
      { echo "bench.sh: bad configuration $cfg (want CxM or CxMxK)" >&2; exit 2; }
    echo "bench.sh: lang $cfg" >&2
    run_rounds run_one "$cfg" "${variants[@]}"
  done
fi
if want http; then
  variants=(
    "http|nginx|nginx"
    "http|iocpsrv http_server|$nat/sample_clients/http_server --threads $http_threads"
  )
  for conns in $http_conns; do
    [[ "$conns" =~ ^[0-9]+$ ]] || { echo "bench.sh: bad connection count $conns" >&2; exit 2; }
    echo "bench.sh: http $conns connections" >&2
    run_rounds run_http "$conns" "${variants[@]}"
  done
fi
if want live-http; then
  for conns in $http_conns; do
    [[ "$conns" =~ ^[0-9]+$ ]] || { echo "bench.sh: bad connection count $conns" >&2; exit 2; }
    echo "bench.sh: live-http $conns connections" >&2
    live_http "$conns"
  done
fi

# ---- Report -----------------------------------------------------------------
wine_version=unknown
if want_wine; then wine_version=$(wine --version 2>/dev/null || echo unknown); fi
python3 - "$raw" "$cmdline" "$started" "$wine_version" "$seconds" "$warmup" "$rounds" \
  "$http_threads" "$wrk_threads" <<'EOF'
import statistics, sys
raw, cmdline, started, winever, seconds, warmup, rounds, http_threads, wrk_threads = sys.argv[1:]
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

def vals(rs, key, scale=1.0):
    return [float(r[key]) * scale for r in rs if ok(r) and key in r]

def rows(groups):
    """(cfg, baseline label, its runs, label, its runs) for each non-baseline label."""
    seen = []
    for r in runs:
        key = (r["cfg"], r["group"])
        if r["group"] in groups and key not in seen:
            seen.append(key)
    for cfg, group in seen:
        rs = [r for r in runs if r["cfg"] == cfg and r["group"] == group]
        labels = list(dict.fromkeys(r["label"] for r in rs))
        b = [r for r in rs if r["label"] == labels[0]]
        for lab in labels[1:]:
            yield cfg, labels[0], b, lab, [r for r in rs if r["label"] == lab]

def compare(b, s):
    """Median rates, the server's range, the ratio, and the paired ratios'
    range (the i-th run of each ran next to each other)."""
    b_eps, s_eps = vals(b, "echoes_per_s"), vals(s, "echoes_per_s")
    pairs = [float(y["echoes_per_s"]) / float(x["echoes_per_s"])
             for x, y in zip(b, s) if ok(x) and ok(y) and float(x["echoes_per_s"]) > 0]
    rng = f"{min(s_eps):,.0f}-{max(s_eps):,.0f}" if s_eps else "-"
    prng = f"{min(pairs):.2f}-{max(pairs):.2f}" if pairs else "-"
    ratio = med(s_eps) / med(b_eps) if b_eps and s_eps and med(b_eps) > 0 else float("nan")
    return f"{med(b_eps):,.0f} | {med(s_eps):,.0f} ({rng}) | {ratio:.2f} | {prng}"

def p99s(b, s):
    return f"{med(vals(b, 'p99_us', 1e-3)):.2f} | {med(vals(s, 'p99_us', 1e-3)):.2f}"

def conf(cfg):
    if cfg.endswith("c"):
        return f"{cfg[:-1]} conns"
    c, m, *k = cfg.split("x")
    return f"{c} conns x {m} B" + (f", {k[0]} in flight" if k else "")

print(f"Benchmarks, {started}; {seconds} s measured after {warmup} s warm-up; "
      f"median of {rounds} rounds, servers alternated.")
print()
print(f"    {cmdline}")
if any(r["group"] in ("wine", "native") for r in runs):
    print()
    print(f"Echo ({winever}; natively: the Linux build):")
    print()
    print("| configuration | server | baseline echoes/s | server echoes/s (min-max) | ratio server/baseline | "
          "paired ratios (min-max) | baseline p99 ms | server p99 ms | failed runs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for cfg, base, b, lab, s in rows(("wine", "native")):
        failed = sum(not ok(r) for r in b + s)
        print(f"| {conf(cfg)} | {lab} vs {base} | {compare(b, s)} | {p99s(b, s)} | {failed} |")
for group, title, unit, one in (
        ("uv", "Echo against libuv, natively", "echoes", "echo"),
        ("py", "Python echo servers, natively (Debian's python3)", "echoes", "echo"),
        ("cs", "The C# sample on Mono against the C sample, natively", "echoes", "echo"),
        ("http", f"HTTP against nginx, natively (wrk -t {wrk_threads}; {http_threads} workers each)",
         "requests", "request")):
    if not any(r["group"] == group for r in runs):
        continue
    print()
    print(f"{title}; CPU is the server's user + system time per {one}:")
    print()
    print(f"| configuration | server | baseline {unit}/s | server {unit}/s (min-max) | ratio server/baseline | "
          f"paired ratios (min-max) | baseline CPU us/{one} | server CPU us/{one} | "
          "CPU ratio server/baseline | baseline p99 ms | server p99 ms | failed runs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cfg, base, b, lab, s in rows((group,)):
        b_cpu, s_cpu = med(vals(b, "server_cpu_us_per_echo")), med(vals(s, "server_cpu_us_per_echo"))
        failed = sum(not ok(r) for r in b + s)
        print(f"| {conf(cfg)} | {lab} vs {base} | {compare(b, s)} | {b_cpu:.2f} | {s_cpu:.2f} | "
              f"{s_cpu / b_cpu if b_cpu > 0 else float('nan'):.2f} | {p99s(b, s)} | {failed} |")
def quart(xs):
    xs = sorted(xs)
    if not xs:
        return "-"
    q = lambda f: xs[round(f * (len(xs) - 1))]
    return f"{med(xs):.3f} ({q(0.25):.3f}-{q(0.75):.3f})"

for group, title, unit, one in (
        ("live", "Echo against libuv, natively", "echoes", "echo"),
        ("live-wine", f"Echo against the minimal IOCP echo ({winever})", "echoes", "echo"),
        ("live-http", f"HTTP against nginx, natively (wrk -t {wrk_threads}; {http_threads} workers each)",
         "requests", "request")):
    if not any(r["group"] == group for r in runs):
        continue
    print()
    # Where the rate is set: a client (or, under Wine, a wineserver) that
    # runs all the time is the bottleneck (test/bench/README.md).
    shares = [("client_cpu_pct", "client")] if group != "live-http" else []
    if group == "live-wine":
        shares.append(("watched_cpu_pct", "wineserver"))
    print(f"{title}, servers kept running and driven in turn "
          "(paired ratios: the same round's runs; median, and quartiles in brackets"
          + ("; CPU %: median share of one processor, baseline / server" if shares else "") + "):")
    print()
    print(f"| configuration | server | baseline {unit}/s | server {unit}/s | paired ratio of {unit}/s | "
          f"baseline CPU us/{one} | server CPU us/{one} | paired ratio of CPU per {one} | "
          + "".join(f"{who} CPU % | " for _, who in shares) + "rounds | failed runs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(shares) + "---:|---:|")
    for cfg, base, b, lab, s in rows((group,)):
        both = [(x, y) for x, y in zip(b, s) if ok(x) and ok(y)]
        rate = [float(y["echoes_per_s"]) / float(x["echoes_per_s"]) for x, y in both
                if float(x["echoes_per_s"]) > 0]
        cpu = [float(y["server_cpu_us_per_echo"]) / float(x["server_cpu_us_per_echo"]) for x, y in both
               if float(x.get("server_cpu_us_per_echo", 0)) > 0 and "server_cpu_us_per_echo" in y]
        failed = sum(not ok(r) for r in b + s)
        print(f"| {conf(cfg)} | {lab} vs {base} | {med(vals(b, 'echoes_per_s')):,.0f} | "
              f"{med(vals(s, 'echoes_per_s')):,.0f} | {quart(rate)} | "
              f"{med(vals(b, 'server_cpu_us_per_echo')):.2f} | {med(vals(s, 'server_cpu_us_per_echo')):.2f} | "
              f"{quart(cpu)} | "
              + "".join(f"{med(vals(b, k)):.0f} / {med(vals(s, k)):.0f} | " for k, _ in shares)
              + f"{len(both)} | {failed} |")
print()
print(f"Raw results: {raw}")
EOF
