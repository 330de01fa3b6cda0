"""Finding and loading the native library, once, and refusing an
incompatible one.

The file is ``iocpsrv.dll`` on Windows and ``libiocpsrv.so`` elsewhere. The
environment variable ``IOCPSRV_LIBRARY``, when set, names the one file to
load; otherwise this package's own folder comes first (the wheel ships the
library there), then the platform's normal search (the program's folder
and PATH on Windows; LD_LIBRARY_PATH and the system's folders on Linux,
where the installed ``libiocpsrv.so.1`` is tried before the development
link ``libiocpsrv.so``). The library is refused unless its iocp_version()
is compatible with the header _abi.py mirrors (IOCP_VERSION_COMPATIBLE).
"""

import ctypes
import os
import sys
import threading
from typing import List, Optional

from ._abi import _SIGNATURES, VERSION_MAJOR, VERSION_MINOR, version_compatible


class LibraryError(RuntimeError):
    """The library could not be loaded, lacks a function, or is incompatible."""


_lib: Optional[ctypes.CDLL] = None
_lib_lock = threading.Lock()


def _library_names() -> List[str]:
    """The files to try, in order: IOCPSRV_LIBRARY alone when it is set, else
    the library in this package's folder, else the platform's search."""
    override = os.environ.get("IOCPSRV_LIBRARY")
    if override:
        return [override]
    names = ["iocpsrv.dll"] if sys.platform == "win32" else ["libiocpsrv.so.1", "libiocpsrv.so"]
    here = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(here, n) for n in names if os.path.isfile(os.path.join(here, n))] + names


def load() -> ctypes.CDLL:
    """Loads the library once and returns the ctypes.CDLL.

    Raises LibraryError when it cannot be found, lacks a function, or its
    version is not compatible with this package.
    """
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        names = _library_names()
        lib, e = None, None
        for name in names:
            try:
                # CDLL: cdecl (IOCP_CALL), and the GIL is released during calls,
                # which iocp_destroy() needs to join workers that are calling back.
                lib = ctypes.CDLL(name)
                break
            except OSError as err:
                e = err
        if lib is None:
            name = " or ".join(names)
            if os.environ.get("IOCPSRV_LIBRARY"):
                hint = "IOCPSRV_LIBRARY names it"
            elif sys.platform == "win32":
                hint = "put it next to the program or on PATH, or set IOCPSRV_LIBRARY to its path"
            else:
                hint = "add its folder to LD_LIBRARY_PATH, or set IOCPSRV_LIBRARY to its path"
            raise LibraryError(f"cannot load {name} ({e}): {hint}") from None
        # The version first: it is the one function every release has, so an
        # old or newer library is reported as such, not as a missing symbol.
        order = ["iocp_version", "iocp_version_string"]
        order += [f for f in _SIGNATURES if f not in order]
        for fname in order:
            restype, argtypes = _SIGNATURES[fname]
            try:
                fn = getattr(lib, fname)
            except AttributeError:
                raise LibraryError(f"{name} has no function {fname}: "
                                   "not an iocpsrv library, or too old") from None
            fn.restype = restype
            fn.argtypes = argtypes
            if fname == "iocp_version_string":
                loaded = lib.iocp_version()
                if not version_compatible(loaded):
                    raise LibraryError(
                        f"iocpsrv {lib.iocp_version_string().decode()} loaded from {name}, but "
                        f"this module needs {VERSION_MAJOR}.{VERSION_MINOR} or newer "
                        f"{VERSION_MAJOR}.x")
        _lib = lib
        return lib


def version() -> int:
    """iocp_version() of the loaded library, e.g. 0x010100."""
    number: int = load().iocp_version()
    return number


def version_string() -> str:
    """iocp_version_string() of the loaded library, e.g. "1.1.0"."""
    text: bytes = load().iocp_version_string()
    return text.decode()

