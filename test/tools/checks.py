"""The one reporting style of the check scripts in test/tools: one line per
check ('ok: ...' or 'FAIL: ... -- detail'), then 'N passed, M failed', which
test/tools/summarize.py counts."""

RESULTS = []


def check(name, ok, detail=""):
    """Records and prints one check; returns whether it passed."""
    ok = bool(ok)
    RESULTS.append(ok)
    print(f"{'ok' if ok else 'FAIL'}: {name}{'' if ok or not detail else ' -- ' + str(detail)}")
    return ok


def finish():
    """Prints the summary line; returns the exit status (0 when all passed)."""
    passed = sum(RESULTS)
    print(f"{passed} passed, {len(RESULTS) - passed} failed")
    return 0 if RESULTS and passed == len(RESULTS) else 1
