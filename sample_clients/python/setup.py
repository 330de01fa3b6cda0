"""The wheel's tag; everything else is in pyproject.toml.

The package loads the library with ctypes, so a wheel suits any Python 3.
With the native library beside the package (iocpsrv/iocpsrv.dll or
iocpsrv/libiocpsrv.so) the wheel is for that library's platform only
(py3-none-PLAT, not pure): a DLL's platform is read from its PE header, so
a Windows wheel can be made on Linux; a shared object's is this machine's;
`--plat-name` still wins. Without a library the wheel is pure
(py3-none-any) and the library is found at run time.

The optional C accelerator (iocpsrv/_speedups.c) is built when a compiler
and the Python's headers are there (`optional=True`: without them the
package installs pure, and works the same, slower); such a wheel is for
that CPython (cpXY-cpXY-PLAT). IOCPSRV_NO_SPEEDUPS=1 leaves it out: the
meson build's wheel (stage_wheel.py), which carries the library and suits
any Python 3, does.
"""
import glob
import os
import struct

from setuptools import Extension, setup
from setuptools.dist import Distribution
from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARIES = sorted(p for pattern in ("*.dll", "*.so", "*.so.*")
                   for p in glob.glob(os.path.join(HERE, "iocpsrv", pattern))
                   if not os.path.basename(p).startswith("_speedups"))

# IMAGE_FILE_HEADER.Machine -> wheel platform.
PE_PLATFORMS = {0x8664: "win_amd64", 0x014C: "win32", 0xAA64: "win_arm64"}


def dll_platform(path):
    """The wheel platform of a Windows DLL, from its PE header."""
    with open(path, "rb") as f:
        head = f.read(4096)
    pe = struct.unpack_from("<I", head, 0x3C)[0]
    if head[:2] != b"MZ" or head[pe:pe + 4] != b"PE\0\0":
        raise SystemExit(f"{path} is not a Windows DLL")
    machine = struct.unpack_from("<H", head, pe + 4)[0]
    if machine not in PE_PLATFORMS:
        raise SystemExit(f"{path}: unknown machine 0x{machine:04x}")
    return PE_PLATFORMS[machine]


SPEEDUPS = [] if os.environ.get("IOCPSRV_NO_SPEEDUPS") else [
    Extension("iocpsrv._speedups", ["iocpsrv/_speedups.c"], optional=True)]


class NativeDistribution(Distribution):
    def has_ext_modules(self):  # a native library or the accelerator inside: not pure
        return bool(LIBRARIES) or bool(SPEEDUPS)


class PlatformWheel(bdist_wheel):
    def get_tag(self):
        if not LIBRARIES:
            return super().get_tag()  # py3-none-any, or cpXY-cpXY-PLAT with the accelerator
        if self.plat_name_supplied:
            plat = self.plat_name
        elif LIBRARIES[0].endswith(".dll"):
            plat = dll_platform(LIBRARIES[0])
        else:
            plat = super().get_tag()[2]
        return "py3", "none", plat.lower().replace("-", "_").replace(".", "_")


setup(distclass=NativeDistribution, cmdclass={"bdist_wheel": PlatformWheel},
      ext_modules=SPEEDUPS)
