#!/usr/bin/python3
"""The meson build's wheel: this folder's package (pyproject.toml) with the
build's native library beside the package.

  stage_wheel.py --library LIB --out iocpsrv-X.Y.Z-py3-none-PLAT.whl

Copies the project (pyproject.toml, setup.py, README.md, the license and
iocpsrv/) next to --out, puts LIB into the copy as iocpsrv/iocpsrv.dll or
iocpsrv/libiocpsrv.so (the name the package loads first), and runs
`python -m pip wheel --no-build-isolation --no-deps` on it: offline, with
the running Python's setuptools and wheel (Debian's /usr/bin/python3).
setup.py tags the wheel with the library's platform; the name it makes must
be --out's, whose version is meson.build's.
"""
import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = ["pyproject.toml", "setup.py", "README.md", "LICENSE_1_0.txt"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    out = os.path.abspath(a.out)
    stage = out + ".stage"
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(stage)
    for name in PROJECT:
        shutil.copyfile(os.path.join(HERE, name), os.path.join(stage, name))
    # The package's own files only: no library or bytecode left in the source folder.
    shutil.copytree(os.path.join(HERE, "iocpsrv"), os.path.join(stage, "iocpsrv"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.so.*", "*.dll"))
    library = "iocpsrv.dll" if a.library.endswith(".dll") else "libiocpsrv.so"
    shutil.copyfile(a.library, os.path.join(stage, "iocpsrv", library))

    dist = os.path.join(stage, "dist")
    # IOCPSRV_NO_SPEEDUPS: no C accelerator in this wheel, which suits any Python 3.
    env = dict(os.environ, SOURCE_DATE_EPOCH=os.environ.get("SOURCE_DATE_EPOCH", "315532800"),
               IOCPSRV_NO_SPEEDUPS="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation",
                        "--no-deps", "--no-cache-dir", "-w", dist, stage],
                       cwd=stage, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        return 1
    built = os.listdir(dist)
    if built != [os.path.basename(out)]:
        sys.stderr.write(f"expected {os.path.basename(out)} (meson.build's version, the build's "
                         f"platform), pip made {built}: is VERSION_* in iocpsrv/_abi.py the "
                         "header's?\n")
        return 1
    shutil.move(os.path.join(dist, built[0]), out)
    shutil.rmtree(stage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
