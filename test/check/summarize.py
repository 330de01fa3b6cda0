#!/usr/bin/env python3
"""Adds up the results of every meson test run named on the command line
(build directories) and prints one line 'N passed, M failed'.

A cmocka suite counts its test cases ("[       OK ]" / "[  FAILED  ]"); a
script that ends with its own 'N passed, M failed' line counts those, a
pytest run its summary line (a skipped test counts as failed: none may
be skipped); any other test counts as one. A suite that crashed or timed out before printing
its counts adds one failure, so a run that executed nothing is visible."""
import json
import os
import re
import sys


def count(entry):
    out = entry.get("stdout") or ""
    ok = len(re.findall(r"^\[       OK \]", out, flags=re.M))
    bad = len(re.findall(r"^\[  FAILED  \] (?!\d+ test)", out, flags=re.M))
    m = re.findall(r"^(\d+) passed, (\d+) failed", out, flags=re.M)
    # pytest's last line: "3 failed, 20 passed, 1 error in 2.04s" (-q), or
    # the same between '=' rules.
    py = re.findall(r"^=*\s*((?:\d+ [a-z]+(?:, )?)+) in [\d.]+s", out, flags=re.M)
    if ok or bad:
        p, f = ok, bad
    elif m:
        p, f = int(m[-1][0]), int(m[-1][1])
    elif py:
        counts = {w.rstrip("s"): int(n) for n, w in re.findall(r"(\d+) ([a-z]+)", py[-1])}
        p = counts.get("passed", 0)
        f = counts.get("failed", 0) + counts.get("error", 0) + counts.get("skipped", 0)
    else:
        p, f = (1, 0) if entry["result"] == "OK" else (0, 1)
    if entry["result"] != "OK" and f == 0:
        f = 1  # crashed, timed out or exited non-zero without saying why
    return p, f


def main():
    passed = failed = 0
    for build in sys.argv[1:]:
        log = os.path.join(build, "meson-logs", "testlog.json")
        if not os.path.exists(log):
            print(f"{build}: no test log")
            failed += 1
            continue
        with open(log, encoding="utf-8") as f:
            for line in f:
                entry = json.loads(line)
                p, fl = count(entry)
                print(f"{build}: {entry['name']}: {p} passed, {fl} failed")
                passed += p
                failed += fl
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
