#!/usr/bin/env bash
# Runs a Windows test program under Wine and passes its output and exit
# status through: the x64 cross file's exe_wrapper (the cmocka suites) and
# abi-mirror's dump program.
#
#   wine-run.sh PROGRAM.exe [ARGS...]
#
# Debian 12's Wine 8 now and then exits with status 1 before the program
# runs, printing nothing at all (two CI runs of about 60 Wine programs each
# out of the last four; 600 starts in a row here, alone or four at a time,
# did not reproduce it, and the cause is not known). Every program this
# wraps prints before it can fail, so a run that ended with status 1 and no
# output at all never started: it is started once more, and stderr says so.
# The output is held until the program ends (these programs are not
# interactive), and shown also when the run is killed (a time-out).
set -u
out=$(mktemp) err=$(mktemp)
show() { cat "$out"; cat "$err" >&2; rm -f "$out" "$err"; }
trap 'show; exit 143' TERM INT
for attempt in 1 2; do
  wine "$@" >"$out" 2>"$err"
  rc=$?
  if [ "$rc" -ne 1 ] || [ -s "$out" ] || [ -s "$err" ] || [ "$attempt" -eq 2 ]; then
    break
  fi
  echo "wine-run.sh: Wine exited 1 with no output before $1 ran; starting it again" >&2
done
show
exit "$rc"
