"""The errors the package raises: IocpError for the library's negative
return codes (named and described by the library itself), LibraryError
when the library cannot be used at all."""

from __future__ import annotations

from typing import Optional

from ._loader import LibraryError, load

__all__ = ["IocpError", "LibraryError", "strerror", "err_name"]


class IocpError(Exception):
    """A negative return code of the library.

    ``code`` is the number (e.g. -3), ``name`` its name ("IOCP_ENOTFOUND") and
    ``text`` the library's iocp_strerror() description.
    """

    def __init__(self, code: int, what: Optional[str] = None) -> None:
        self.code = code
        self.name = err_name(code)
        self.text = strerror(code)
        self.what = what
        prefix = f"{what}: " if what else ""
        super().__init__(f"{prefix}{self.text} ({self.name}, {code})")


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

