"""The optional C accelerator (_speedups.c): the hot path of the asyncio
layer, the same work as the pure-Python code of _transport.py, in C.

`speedups(lib)` is the bound extension module, or None: when the package
was installed without a compiler (setuptools builds it optionally), when
IOCPSRV_PURE_PYTHON=1 asks for the pure-Python path, or when it cannot be
loaded. IOCPSRV_SPEEDUPS_DIR names a folder to take it from instead of the
package's own (the meson build's folder, where a build for every Python it
tests is); the file for the running Python is picked by its suffix. The
extension links nothing: it is handed the addresses of iocp_wait and
iocp_send from the library _loader.py loaded.
"""

import ctypes
import importlib.machinery
import importlib.util
import os
import threading
from types import ModuleType
from typing import Optional

_lock = threading.Lock()
_module: Optional[ModuleType] = None
_tried = False


def _find() -> Optional[ModuleType]:
    if os.environ.get("IOCPSRV_PURE_PYTHON"):
        return None
    folder = os.environ.get("IOCPSRV_SPEEDUPS_DIR")
    if not folder:
        try:
            from . import _speedups
        except ImportError:
            return None
        return _speedups
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "_speedups" + suffix)
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("iocpsrv._speedups", path)
            if spec is None or spec.loader is None:
                return None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    return None


def speedups(lib: ctypes.CDLL) -> Optional[ModuleType]:
    """The extension bound to `lib` (iocp_wait, iocp_send), or None."""
    global _module, _tried
    with _lock:
        if not _tried:
            _tried = True
            module = _find()
            if module is not None:
                module.bind(ctypes.cast(lib.iocp_wait, ctypes.c_void_p).value,
                            ctypes.cast(lib.iocp_send, ctypes.c_void_p).value)
            _module = module
        return _module
