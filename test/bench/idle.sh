#!/usr/bin/env bash
# Idle connections: what each costs the server in resident memory, and that
# each still echoes afterwards. A measurement, run on purpose; not a test.
#
#   bash test/bench/idle.sh [--conns N] [--wine] [--warm] [--server "COMMAND"]
#
# Starts the echo sample (natively: build/linux/sample_clients/echo_server;
# with --wine: build/win64/sample_clients/echo_server.exe under Wine), or the
# given server command (it must print "listening on port N" and exit when
# its standard input ends), reads its resident set (VmRSS) once it listens,
# opens N idle connections with test/bench/idle.c, waits until the server's
# resident set stops growing, reads it again, then has every connection echo
# 32 bytes and checks them. With --warm every connection echoes 32 bytes
# once before the measurement: connections that were busy, then went idle
# (the Windows engine's adaptive receive may keep a buffer posted on a
# few, within its budget). Prints one line:
#
#   server=... conns=N rss_before_kib=A rss_after_kib=B bytes_per_conn=C echo=ok
#
# Under Wine the server's RSS is the Windows process's own (the socket state
# Wine keeps in wineserver is printed apart as wineserver_bytes_per_conn).
# Defaults: 15,000 connections natively, 10,000 under Wine (the process
# descriptor limit here is 20,000, and Wine needs some for itself).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"

wine=0 conns="" server="" warm=0
while [ $# -gt 0 ]; do
  case "$1" in
    --conns) conns=$2; shift 2 ;;
    --wine) wine=1; shift ;;
    --warm) warm=1; shift ;;
    --server) server=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "idle.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$conns" ] || conns=$([ "$wine" = 1 ] && echo 10000 || echo 15000)

hard=$(ulimit -Hn)
[ "$hard" = unlimited ] || [ "$hard" -gt 65536 ] && hard=65536
ulimit -n "$hard"
if [ "$wine" = 1 ]; then
  ninja -C build/win64 sample_clients/echo_server.exe test/bench/idle >&2
  client=build/win64/test/bench/idle
  export WINEDEBUG=-all WINEPREFIX="$top/build/win64/wineprefix-bench"
  export WINEPATH="Z:${top//\//\\}\\build\\win64"
  [ -n "$server" ] || server="wine build/win64/sample_clients/echo_server.exe"
else
  ninja -C build/linux sample_clients/echo_server test/bench/idle >&2
  client=build/linux/test/bench/idle
  [ -n "$server" ] || server="build/linux/sample_clients/echo_server"
fi

work=$(mktemp -d)
trap 'exec 3>&- 4>&- 2>/dev/null || true; rm -rf "$work"' EXIT
mkfifo "$work/srv.in" "$work/cli.in"
# shellcheck disable=SC2086
$server --port 0 <"$work/srv.in" >"$work/srv.out" 2>"$work/srv.err" &
srv_pid=$!
exec 3>"$work/srv.in"

wait_for() { # file, regex, seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -Eq "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "idle.sh: no '$2' in $1 after $3 s: $(cat "$work/srv.err")" >&2
  return 1
}
wait_for "$work/srv.out" "listening on port [0-9]+" 240
port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$work/srv.out" | head -1)

# The process that runs the server: under Wine the launcher execs into it,
# or it is the one child whose command line names the .exe.
pid=$srv_pid
if [ "$wine" = 1 ] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q '\.exe'; then
  for p in $(pgrep -P "$srv_pid" || true); do pid=$p; done
fi
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
wineserver_pid() { # the one serving our prefix
  local p
  for p in $(pgrep wineserver || true); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "WINEPREFIX=$WINEPREFIX"; then
      echo "$p"
    fi
  done | tail -1
}

before=$(rss "$pid")
ws=$([ "$wine" = 1 ] && wineserver_pid || true)
ws_before=$([ -n "$ws" ] && rss "$ws" || echo 0)

"$client" --port "$port" --conns "$conns" --warm "$warm" <"$work/cli.in" >"$work/cli.out" 2>"$work/cli.err" &
cli_pid=$!
exec 4>"$work/cli.in"
wait_for "$work/cli.out" "^connected" 600
# The server accepts behind the client's connects: wait until its resident
# set has not grown for two seconds.
last=-1 still=0
for ((i = 0; i < 600 && still < 4; i++)); do
  now=$(rss "$pid")
  if [ "$now" -le "$last" ]; then still=$((still + 1)); else still=0; fi
  last=$now
  sleep 0.5
done
after=$(rss "$pid")
ws_after=$([ -n "$ws" ] && rss "$ws" || echo 0)

echo go >&4
exec 4>&-
wait "$cli_pid" || true
echo_result=$(cat "$work/cli.out" | tail -1)
exec 3>&-
wait "$srv_pid" || true

per=$(( (after - before) * 1024 / conns ))
line="server=\"$server\" conns=$conns warm=$warm rss_before_kib=$before rss_after_kib=$after bytes_per_conn=$per"
if [ "$wine" = 1 ]; then
  line+=" wineserver_bytes_per_conn=$(( (ws_after - ws_before) * 1024 / conns ))"
fi
case "$echo_result" in
  "echoed $conns ok") line+=" echo=ok" ;;
  *) line+=" echo=FAILED($echo_result)" ;;
esac
echo "$line"
