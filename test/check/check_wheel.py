#!/usr/bin/python3
"""The iocpsrv wheel installs and works from a fresh virtual environment.

  check_wheel.py --wheel W --version X.Y.Z --library-name NAME --package DIR
                 [--venv-dir DIR --fake-library FAKE]

Always checks the wheel's contents (every module of the package in DIR,
the native library beside them, py.typed, the version and platform tag). With --venv-dir (a native
build): creates a virtual environment with Debian's python3-venv, installs
the wheel offline with its pip, and from a folder without the sources
checks that `import iocpsrv` comes from the environment, loads the library
shipped beside it (even with LD_LIBRARY_PATH pointing at another one), echoes
bytes over loopback, and that IOCPSRV_LIBRARY still wins (a library claiming
2.0.0 is refused). Prints one line per check and 'N passed, M failed'."""
import argparse
import os
import shutil
import subprocess
import sys
import zipfile

from checks import ECHO_PROBE, check, finish


OVERRIDE = r'''
import iocpsrv
try:
    iocpsrv.load()
    print("loaded", iocpsrv.version_string())
except iocpsrv.LibraryError as e:
    print("refused", e)
'''


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    return p.returncode, (p.stdout + p.stderr).strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--library-name", required=True)
    ap.add_argument("--package", required=True, help="the package's source folder")
    ap.add_argument("--venv-dir")
    ap.add_argument("--fake-library")
    a = ap.parse_args()

    with zipfile.ZipFile(a.wheel) as z:
        names = set(z.namelist())
        dist = f"iocpsrv-{a.version}.dist-info"
        modules = {f"iocpsrv/{f}" for f in os.listdir(a.package) if f.endswith(".py")}
        want = modules | {f"iocpsrv/{a.library_name}", "iocpsrv/py.typed",
                          f"{dist}/METADATA", f"{dist}/WHEEL", f"{dist}/RECORD"}
        check(f"the wheel holds the package ({len(modules)} modules), the library beside it "
              "and py.typed", "iocpsrv/__init__.py" in modules and want <= names,
              f"missing {sorted(want - names)}")
        meta = z.read(f"{dist}/METADATA").decode() if f"{dist}/METADATA" in names else ""
        check(f"its metadata says version {a.version} and the BSL-1.0 license",
              f"\nVersion: {a.version}\n" in meta and "BSL-1.0" in meta)
        check("it carries the license text", any(n.startswith(dist) and "LICENSE" in n for n in names))
        tag = os.path.basename(a.wheel)[:-4].split("-")[-3:]
        wheel = z.read(f"{dist}/WHEEL").decode() if f"{dist}/WHEEL" in names else ""
        check("it is tagged for one platform, any Python 3 (py3-none-PLAT, not pure)",
              tag[:2] == ["py3", "none"] and "Root-Is-Purelib: false" in wheel
              and f"Tag: {'-'.join(tag)}" in wheel, wheel)

    if a.venv_dir:
        shutil.rmtree(a.venv_dir, ignore_errors=True)
        rc, out = run([sys.executable, "-m", "venv", a.venv_dir])
        if not check("a fresh virtual environment (python3 -m venv)", rc == 0, out):
            return 1
        py = os.path.join(a.venv_dir, "bin", "python")
        rc, out = run([py, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check",
                       "-q", a.wheel])
        check("pip installs the wheel offline", rc == 0, out)
        empty = os.path.join(a.venv_dir, "cwd")
        os.makedirs(empty, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "IOCPSRV_LIBRARY")}
        if a.fake_library:  # another library on the search path must not be taken
            env["LD_LIBRARY_PATH"] = os.path.dirname(os.path.abspath(a.fake_library))
        rc, out = run([py, "-c", ECHO_PROBE, "wheel"], cwd=empty, env=env)
        lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
        site = os.path.realpath(a.venv_dir)
        check("import iocpsrv comes from the environment",
              os.path.realpath(lines.get("module", "")).startswith(site), out)
        pkg_dir = os.path.dirname(os.path.realpath(lines.get("module", "/")))
        check("it loads the library shipped beside it, not the one on LD_LIBRARY_PATH "
              "(its version and the package's are meson.build's)",
              os.path.realpath(lines.get("library", "")) == os.path.join(pkg_dir, a.library_name)
              and lines.get("version") == a.version and lines.get("package") == a.version, out)
        check("and echoes over loopback", rc == 0 and lines.get("echo") == "wheel", out)
        if a.fake_library:
            env["IOCPSRV_LIBRARY"] = os.path.abspath(a.fake_library)
            rc, out = run([py, "-c", OVERRIDE], cwd=empty, env=env)
            check("IOCPSRV_LIBRARY still wins (a 2.0.0 library named there is refused)",
                  out.startswith("refused") and "2.0.0" in out, out)

    return finish()


if __name__ == "__main__":
    sys.exit(main())
