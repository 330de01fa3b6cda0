"""The errors the package raises: IocpError for the library's negative
return codes (named and described by the library itself), LibraryError
when the library cannot be used at all."""

from __future__ import annotations

import enum
import errno as _errno
from typing import Dict, Optional

from . import _abi
from ._loader import LibraryError, load

__all__ = ["IocpError", "LibraryError", "strerror", "err_name", "ErrorCode", "Reason"]

ErrorCode = enum.IntEnum("ErrorCode", [  # type: ignore[misc]
    (name, getattr(_abi, name)) for name in (
        "OK", "EINVAL", "ENOMEM", "ENOTFOUND", "ESHUTDOWN", "EQUEUEFULL", "EADDRINUSE",
        "EADDRNOTAVAIL", "EVERSION", "EINCALLBACK", "ESYSTEM", "EACCES", "EAFNOSUPPORT",
        "ECLOSED", "EMODE", "EBUSY", "ECONNREFUSED", "ETIMEDOUT", "EUNREACH", "EMFILE",
        "ESTOPPED")], module=__name__)
ErrorCode.__doc__ = "The library's return codes (IOCP_OK, IOCP_E*), by name."

Reason = enum.IntEnum("Reason", [  # type: ignore[misc]
    (name[len("REASON_"):], getattr(_abi, name)) for name in (
        "REASON_PEER_CLOSED", "REASON_RESET", "REASON_LOCAL_CLOSE", "REASON_DESTROY",
        "REASON_IDLE_TIMEOUT", "REASON_STOP_DEADLINE")], module=__name__)
Reason.__doc__ = "Why a connection ended (on_disconnect's reason), by name."

# The system's errno for the codes that stand for one.
_ERRNO: Dict[int, int] = {
    _abi.EINVAL: _errno.EINVAL, _abi.ENOMEM: _errno.ENOMEM,
    _abi.ESHUTDOWN: _errno.ESHUTDOWN, _abi.EADDRINUSE: _errno.EADDRINUSE,
    _abi.EADDRNOTAVAIL: _errno.EADDRNOTAVAIL, _abi.EACCES: _errno.EACCES,
    _abi.EAFNOSUPPORT: _errno.EAFNOSUPPORT, _abi.EBUSY: _errno.EBUSY,
    _abi.ECONNREFUSED: _errno.ECONNREFUSED, _abi.ETIMEDOUT: _errno.ETIMEDOUT,
    _abi.EUNREACH: _errno.EHOSTUNREACH, _abi.EMFILE: _errno.EMFILE,
}


class IocpError(OSError):
    """A negative return code of the library, as an OSError.

    ``code`` is the number (e.g. -3), ``name`` its name ("IOCP_ENOTFOUND") and
    ``text`` the library's iocp_strerror() description; ``errno`` is the
    system's number where the code stands for one (IOCP_EADDRINUSE:
    errno.EADDRINUSE, ...), else None, so ``except OSError`` catches a port
    in use.
    """

    def __init__(self, code: int, what: Optional[str] = None) -> None:
        self.code = code
        self.name = err_name(code)
        self.text = strerror(code)
        self.what = what
        prefix = f"{what}: " if what else ""
        message = f"{prefix}{self.text} ({self.name}, {code})"
        number = _ERRNO.get(code)
        if number is None:
            super().__init__(message)
        else:
            super().__init__(number, message)

    def __str__(self) -> str:
        return self.strerror if self.errno is not None else str(self.args[0])

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.code, self.what))


def strerror(code: int) -> str:
    """iocp_strerror(code) as str."""
    return load().iocp_strerror(code).decode()


def err_name(code: int) -> str:
    """iocp_err_name(code) as str, e.g. "IOCP_ENOTFOUND"."""
    return load().iocp_err_name(code).decode()


def check(rc: int, what: str) -> int:
    """Returns rc, or raises IocpError(rc, what) when it is negative."""
    if rc < 0:
        raise IocpError(rc, what)
    return rc

