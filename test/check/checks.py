"""What the check scripts in test/tools share: one reporting style (one line
per check, 'ok: ...' or 'FAIL: ... -- detail', then 'N passed, M failed',
which test/check/summarize.py counts) and importing a module from its file."""
import importlib.util

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


def import_file(path, name):
    """Imports the Python file `path` as module `name` (the wrapper is only
    imported: it loads the native library on first use, not here)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
