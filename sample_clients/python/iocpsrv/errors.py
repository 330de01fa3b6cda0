"""The errors the package raises: IocpError for the library's negative
return codes (named and described by the library itself), LibraryError
when the library cannot be used at all."""

from __future__ import annotations

import enum
import errno as _errno
from typing import Dict, Optional, Tuple

from . import _abi
from ._loader import LibraryError, load

__all__ = ["IocpError", "TlsError", "TlsIdentityError", "LibraryError", "strerror", "err_name",
           "ErrorCode", "Reason"]

class ErrorCode(enum.IntEnum):
    """The library's return codes (IOCP_OK, IOCP_E*), by name."""
    OK = _abi.OK
    EINVAL = _abi.EINVAL
    ENOMEM = _abi.ENOMEM
    ENOTFOUND = _abi.ENOTFOUND
    ESHUTDOWN = _abi.ESHUTDOWN
    EQUEUEFULL = _abi.EQUEUEFULL
    EADDRINUSE = _abi.EADDRINUSE
    EADDRNOTAVAIL = _abi.EADDRNOTAVAIL
    EVERSION = _abi.EVERSION
    EINCALLBACK = _abi.EINCALLBACK
    ESYSTEM = _abi.ESYSTEM
    EACCES = _abi.EACCES
    EAFNOSUPPORT = _abi.EAFNOSUPPORT
    ECLOSED = _abi.ECLOSED
    EMODE = _abi.EMODE
    EBUSY = _abi.EBUSY
    ECONNREFUSED = _abi.ECONNREFUSED
    ETIMEDOUT = _abi.ETIMEDOUT
    EUNREACH = _abi.EUNREACH
    EMFILE = _abi.EMFILE
    ESTOPPED = _abi.ESTOPPED
    ETLS = _abi.ETLS               # 1.2, TLS
    EPKCS12 = _abi.EPKCS12
    EPASSWORD = _abi.EPASSWORD
    ENOKEY = _abi.ENOKEY
    ECERTVERIFY = _abi.ECERTVERIFY
    ENOTLS = _abi.ENOTLS


class Reason(enum.IntEnum):
    """Why a connection ended (on_disconnect's reason), by name."""
    PEER_CLOSED = _abi.REASON_PEER_CLOSED
    RESET = _abi.REASON_RESET
    LOCAL_CLOSE = _abi.REASON_LOCAL_CLOSE
    DESTROY = _abi.REASON_DESTROY
    IDLE_TIMEOUT = _abi.REASON_IDLE_TIMEOUT
    STOP_DEADLINE = _abi.REASON_STOP_DEADLINE
    TLS_TRUNCATED = _abi.REASON_TLS_TRUNCATED   # 1.2: FIN without close_notify
    TLS_ERROR = _abi.REASON_TLS_ERROR           # 1.2: a bad record


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

    def __reduce__(self) -> Tuple[type, Tuple[int, Optional[str]]]:
        return (type(self), (self.code, self.what))


try:
    from ssl import SSLError as _SSLError
except ImportError:   # a Python built without ssl
    _SSLError = OSError  # type: ignore[misc, assignment]


class TlsError(IocpError, _SSLError):
    """A TLS code (ETLS, ECERTVERIFY, ENOTLS, and TlsIdentityError's): an
    IocpError that is also an ssl.SSLError, so ``except ssl.SSLError`` in
    code written for Python's ssl module catches it too."""


class TlsIdentityError(TlsError):
    """A server's PKCS#12 identity cannot be used (EPKCS12: not a PKCS#12
    blob, no certificate in it, or a certificate whose key usage forbids
    signing or extended key usage forbids a TLS server; EPASSWORD: wrong password; ENOKEY: no
    private key, or one not matching the certificate): the server was not
    created."""


# The codes raised as a subclass of IocpError (error() picks it).
_SUBCLASS = {_abi.ETLS: TlsError, _abi.ECERTVERIFY: TlsError, _abi.ENOTLS: TlsError,
             _abi.EPKCS12: TlsIdentityError, _abi.EPASSWORD: TlsIdentityError,
             _abi.ENOKEY: TlsIdentityError}


def error(code: int, what: Optional[str] = None) -> IocpError:
    """IocpError(code, what), as the subclass the code has (TLS codes:
    TlsError, TlsIdentityError)."""
    return _SUBCLASS.get(code, IocpError)(code, what)


def strerror(code: int) -> str:
    """iocp_strerror(code) as str."""
    text: bytes = load().iocp_strerror(code)
    return text.decode()


def err_name(code: int) -> str:
    """iocp_err_name(code) as str, e.g. "IOCP_ENOTFOUND"."""
    name: bytes = load().iocp_err_name(code)
    return name.decode()


def check(rc: int, what: str) -> int:
    """Returns rc, or raises error(rc, what) when it is negative."""
    if rc < 0:
        raise error(rc, what)
    return rc

