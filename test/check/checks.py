"""What the check scripts in test/tools share: one reporting style (one line
per check, 'ok: ...' or 'FAIL: ... -- detail', then 'N passed, M failed',
which test/check/summarize.py counts) and importing a module from its file."""
import importlib.util

RESULTS = []


# Python source for `python -c ECHO_PROBE MESSAGE`, run inside a virtual
# environment where iocpsrv is installed: prints "module", "package", then
# "library none" (and exits 0) when no library loads, else "library",
# "version" and the "echo" of MESSAGE through a server on loopback. The
# package checks read its lines as "key value".
ECHO_PROBE = r'''
import socket, sys
import iocpsrv
print("module", iocpsrv.__file__)
print("package", iocpsrv.__version__)
try:
    iocpsrv.load()
except iocpsrv.LibraryError:
    print("library none")
    sys.exit(0)
message = sys.argv[1].encode()
def on_data(server, conn, data):
    server.send(conn, data)
with iocpsrv.Server(port=0, on_data=on_data) as srv:
    print("library", iocpsrv.load()._name)
    print("version", iocpsrv.version_string())
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as c:
        c.sendall(message)
        got = b""
        while len(got) < len(message):
            chunk = c.recv(len(message) - len(got))
            if not chunk:
                break
            got += chunk
    print("echo", got.decode())
'''


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
