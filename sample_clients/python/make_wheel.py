#!/usr/bin/python3
"""Builds the iocpsrv wheel: the ctypes module as the package `iocpsrv`, with
the native library beside it (the module loads it from its own folder first).

  make_wheel.py --module iocpsrv.py --library LIB --version X.Y.Z
                --plat linux_x86_64|win_amd64|win32 --out iocpsrv-X.Y.Z-py3-none-PLAT.whl
                [--license LICENSE_1_0.txt]

Offline, with Debian's python3-setuptools and python3-wheel (so run it with
/usr/bin/python3): the package is staged in a folder beside --out and
`setup.py bdist_wheel` turns it into the wheel. The version comes from
meson.build, like every other version of the project.
"""
import argparse
import os
import shutil
import subprocess
import sys

SETUP_PY = '''\
from setuptools import setup
from setuptools.dist import Distribution
from wheel.bdist_wheel import bdist_wheel


class NativeDistribution(Distribution):
    def has_ext_modules(self):  # it carries a native library: not pure
        return True


class PlatformWheel(bdist_wheel):
    def get_tag(self):  # ctypes only: any Python 3, one platform
        return "py3", "none", {plat!r}


setup(
    name="iocpsrv",
    version={version!r},
    description="A scalable TCP server core on I/O completion ports, from Python (ctypes)",
    long_description=open("README.txt", encoding="utf-8").read(),
    license="BSL-1.0",
    classifiers=["License :: OSI Approved :: Boost Software License 1.0 (BSL-1.0)",
                 "Programming Language :: Python :: 3"],
    python_requires=">=3.8",
    packages=["iocpsrv"],
    package_data={{"iocpsrv": [{library!r}, "py.typed"]}},
    distclass=NativeDistribution,
    cmdclass={{"bdist_wheel": PlatformWheel}},
    zip_safe=False,
)
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", required=True)
    ap.add_argument("--library", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--plat", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--license", help="the license text, shipped in the wheel")
    a = ap.parse_args()

    out = os.path.abspath(a.out)
    stage = out + ".stage"
    shutil.rmtree(stage, ignore_errors=True)
    pkg = os.path.join(stage, "iocpsrv")
    os.makedirs(pkg)
    shutil.copyfile(a.module, os.path.join(pkg, "__init__.py"))
    # One file per platform, under the name the module looks for first.
    library = "iocpsrv.dll" if a.plat.startswith("win") else "libiocpsrv.so"
    shutil.copyfile(a.library, os.path.join(pkg, library))
    if a.license:  # setuptools puts LICEN[CS]E* files into .dist-info
        shutil.copyfile(a.license, os.path.join(stage, os.path.basename(a.license)))
    open(os.path.join(pkg, "py.typed"), "w").close()  # PEP 561: it has type hints
    with open(os.path.join(stage, "README.txt"), "w", encoding="utf-8") as f:
        f.write(open(a.module, encoding="utf-8").read().split('"""')[1].strip() + "\n")
    with open(os.path.join(stage, "setup.py"), "w", encoding="utf-8") as f:
        f.write(SETUP_PY.format(plat=a.plat, version=a.version, library=library))
    dist = os.path.join(stage, "dist")
    env = dict(os.environ, SOURCE_DATE_EPOCH=os.environ.get("SOURCE_DATE_EPOCH", "315532800"))
    p = subprocess.run([sys.executable, "setup.py", "-q", "bdist_wheel", "-d", dist],
                       cwd=stage, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        return 1
    built = os.listdir(dist)
    if built != [os.path.basename(out)]:
        sys.stderr.write(f"expected {os.path.basename(out)}, setuptools made {built}\n")
        return 1
    shutil.move(os.path.join(dist, built[0]), out)
    shutil.rmtree(stage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
