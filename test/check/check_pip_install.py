#!/usr/bin/python3
"""`pip install ./sample_clients/python` works offline into a fresh virtual
environment, with build isolation, and the package it installs uses this
build's library through IOCPSRV_LIBRARY.

  check_pip_install.py --project sample_clients/python --library LIB
                       --version X.Y.Z --work DIR [--license LICENSE_1_0.txt]

In DIR: a copy of the project (so the build leaves nothing in the sources),
a venv made with Debian's python3 -m venv, and
`pip install --no-index --find-links /usr/share/python-wheels PROJECT`
(the build requirements come from Debian's python3-setuptools-whl and
python3-wheel-whl). Then, from a folder without the sources and with no
LD_LIBRARY_PATH: the installed package is meson.build's version and carries
no library of its own (without IOCPSRV_LIBRARY it raises LibraryError),
and with IOCPSRV_LIBRARY=LIB it loads LIB and echoes bytes over loopback;
pip built the C accelerator (iocpsrv/_speedups.c, with gcc and the
headers of the Python it installs into), which the installed package's
asyncio layer uses for an echo.
Prints one line per check and 'N passed, M failed'."""
import argparse
import filecmp
import os
import shutil
import subprocess
import sys

from checks import ECHO_PROBE, check, finish

WHEELS = "/usr/share/python-wheels"

# An asyncio Protocol echo on iocpsrv.create_server: prints "speedups" and
# the accelerator's file (or None), then the "echo" of argv[1].
ASYNC_PROBE = r'''
import asyncio, sys
import iocpsrv

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)

async def main():
    server = await iocpsrv.create_server(Echo, "127.0.0.1", 0)
    sp = server._speedups
    print("speedups", sp.__file__ if sp is not None else None)
    r, w = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    w.write(sys.argv[1].encode())
    print("echo", (await r.readexactly(len(sys.argv[1]))).decode())
    w.close()
    server.close()
    server.abort_clients()
    await server.wait_closed()

asyncio.run(asyncio.wait_for(main(), 20))
'''

def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, **kw)
    return p.returncode, (p.stdout + p.stderr).strip()


def probe(py, cwd, env):
    rc, out = run([py, "-c", ECHO_PROBE, "pip install"], cwd=cwd, env=env)
    return rc, out, dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--project", required=True)
    ap.add_argument("--library", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--license", help="the project's license, which the package's copy must be")
    a = ap.parse_args()

    if a.license:
        copy = os.path.join(a.project, os.path.basename(a.license))
        check("the package's license file is the project's",
              os.path.isfile(copy) and filecmp.cmp(copy, a.license, shallow=False),
              f"copy {a.license} to {copy}")

    shutil.rmtree(a.work, ignore_errors=True)
    project = os.path.join(a.work, "python")
    shutil.copytree(a.project, project, ignore=shutil.ignore_patterns(
        "__pycache__", "build", "dist", "*.egg-info", "*.so", "*.so.*", "*.dll"))
    venv = os.path.join(a.work, "venv")
    rc, out = run([sys.executable, "-m", "venv", venv])
    if not check("a fresh virtual environment (python3 -m venv)", rc == 0, out):
        return finish()
    py = os.path.join(venv, "bin", "python")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "IOCPSRV_LIBRARY", "LD_LIBRARY_PATH")
           and not k.startswith("PIP_")}
    rc, out = run([py, "-m", "pip", "install", "--no-index", "--find-links", WHEELS,
                   "--no-cache-dir", "--disable-pip-version-check", project], env=env)
    if not check("pip installs the project offline, with build isolation "
                 f"(setuptools and wheel from {WHEELS})", rc == 0, out):
        return finish()

    empty = os.path.join(a.work, "cwd")
    os.makedirs(empty, exist_ok=True)
    rc, out, lines = probe(py, empty, env)
    check("import iocpsrv comes from the environment",
          os.path.realpath(lines.get("module", "")).startswith(os.path.realpath(venv)), out)
    check(f"its __version__ is meson.build's {a.version}", lines.get("package") == a.version, out)
    check("it carries no library: without IOCPSRV_LIBRARY, LibraryError",
          rc == 0 and lines.get("library") == "none", out)

    env["IOCPSRV_LIBRARY"] = os.path.abspath(a.library)
    rc, out, lines = probe(py, empty, env)
    check("IOCPSRV_LIBRARY names this build's library, which it loads",
          lines.get("library") == env["IOCPSRV_LIBRARY"] and lines.get("version") == a.version, out)
    check("and echoes over loopback", rc == 0 and lines.get("echo") == "pip install", out)

    rc, out = run([py, "-c", ASYNC_PROBE, "accelerated"], cwd=empty, env=env)
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    check("pip built the C accelerator, which the installed asyncio layer uses",
          os.path.realpath(lines.get("speedups", "")).startswith(os.path.realpath(venv)), out)
    check("and an asyncio echo goes through it", rc == 0 and lines.get("echo") == "accelerated",
          out)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
