"""Callback mode (mode="callbacks"): the library calls Python on its worker
threads through ctypes callbacks (ctypes takes the GIL for each one).

The trampolines never let an exception into native code: a handler's
exception goes to the server's on_error hook. They hold the Server only
weakly, so an abandoned Server can still be collected (and then destroyed
by its finalizer).
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

from ._abi import (ON_CONNECT, ON_CONNECT_FAILED, ON_DATA, ON_DISCONNECT, ON_DRAIN, ON_LOG,
                   ON_PEER_CLOSED, ON_SENT, _Callbacks)

if TYPE_CHECKING:
    from .server import Server

ServerRef = Callable[[], Optional["Server"]]   # a weakref.ref to the Server
Handler = Callable[..., Any]                   # one of the Server's on_* handlers


def make_callbacks(server: Server, keepalive: List[Any], on_connect: Optional[Handler] = None,
                   on_data: Optional[Handler] = None, on_sent: Optional[Handler] = None,
                   on_peer_closed: Optional[Handler] = None,
                   on_disconnect: Optional[Handler] = None,
                   on_connect_failed: Optional[Handler] = None,
                   on_log: Optional[Handler] = None,
                   on_drain: Optional[Handler] = None) -> _Callbacks:
    """The struct iocp_callbacks for `server`; the callback objects are
    appended to `keepalive`, which must outlive the native server."""
    ref: ServerRef = weakref.ref(server)
    callbacks = _Callbacks()
    callbacks.size = ctypes.sizeof(callbacks)
    callbacks.reserved_ = 0
    # on_connect and on_disconnect are always set: they release the
    # context of a refused or ended connection.
    keepalive.append(ON_CONNECT(_connect_trampoline(ref, on_connect)))
    callbacks.on_connect = keepalive[-1]
    if on_data is not None:
        keepalive.append(ON_DATA(_data_trampoline(ref, on_data)))
        callbacks.on_data = keepalive[-1]
    if on_sent is not None:
        keepalive.append(ON_SENT(_simple_trampoline(ref, on_sent, "on_sent")))
        callbacks.on_sent = keepalive[-1]
    if on_peer_closed is not None:
        keepalive.append(ON_PEER_CLOSED(
            _simple_trampoline(ref, on_peer_closed, "on_peer_closed")))
        callbacks.on_peer_closed = keepalive[-1]
    keepalive.append(ON_DISCONNECT(_disconnect_trampoline(ref, on_disconnect)))
    callbacks.on_disconnect = keepalive[-1]
    keepalive.append(ON_CONNECT_FAILED(_disconnect_trampoline(ref, on_connect_failed,
                                                              "on_connect_failed")))
    callbacks.on_connect_failed = keepalive[-1]
    if on_log is not None:
        keepalive.append(ON_LOG(_log_trampoline(ref, on_log)))
        callbacks.on_log = keepalive[-1]
    if on_drain is not None:
        keepalive.append(ON_DRAIN(_simple_trampoline(ref, on_drain, "on_drain")))
        callbacks.on_drain = keepalive[-1]
    return callbacks


# ---- Trampolines: native -> Python, never letting an exception through ------

_tls = threading.local()


def running_callbacks() -> List[Server]:
    """The Servers whose callbacks are running on this thread (innermost last)."""
    stack: Optional[List[Server]] = getattr(_tls, "servers", None)
    if stack is None:
        stack = _tls.servers = []
    return stack


def _invoke(ref: ServerRef, where: str, fn: Callable[..., Any], args: Tuple[Any, ...],
            failed: Any) -> Any:
    """Calls fn(server, *args) on a worker thread; returns `failed` when the
    Server is gone or fn raised (the exception goes to on_error)."""
    server = ref()
    if server is None:
        return failed
    stack = running_callbacks()
    stack.append(server)
    try:
        return fn(server, *args)
    except BaseException as e:
        server._report(where, e)
        return failed
    finally:
        stack.pop()


def _connect_trampoline(ref: ServerRef, fn: Optional[Handler]) -> Callable[..., int]:
    def call(server: Server, id: int, address: Optional[int], port: int) -> int:
        if fn is None:
            return 0
        addr = ctypes.string_at(address).decode("ascii") if address else ""
        keep = fn(server, id, addr, port)
        return 0 if keep is None or keep else 1

    def on_connect(_server: Any, _user: Any, id: int, address: Optional[int], port: int) -> int:
        # A failing on_connect refuses: it never decided to keep the peer.
        refuse = int(_invoke(ref, "on_connect", call, (id, address, port), 1))
        if refuse:
            # No on_disconnect follows a refusal: release a context here.
            server = ref()
            if server is not None:
                server._release_context(id)
        return refuse
    return on_connect


def _disconnect_trampoline(ref: ServerRef, fn: Optional[Handler],
                           where: str = "on_disconnect") -> Callable[..., None]:
    # The connection's last callback (on_disconnect, on_connect_failed):
    # its context is released after it.
    def last(_server: Any, _user: Any, id: int, value: int) -> None:
        if fn is not None:
            _invoke(ref, where, fn, (id, value), None)
        server = ref()
        if server is not None:
            server._user_paused.discard(id)
            server._release_context(id)
    return last


def _data_trampoline(ref: ServerRef, fn: Handler) -> Callable[..., None]:
    def call(server: Server, id: int, data: Optional[int], length: int) -> None:
        # The buffer is valid only during the call: copy it into bytes.
        fn(server, id, ctypes.string_at(data, length) if data and length else b"")

    def on_data(_server: Any, _user: Any, id: int, data: Optional[int], length: int) -> None:
        _invoke(ref, "on_data", call, (id, data, length), None)
    return on_data


def _simple_trampoline(ref: ServerRef, fn: Handler, where: str) -> Callable[..., None]:
    def callback(_server: Any, _user: Any, id: int, *args: Any) -> None:
        _invoke(ref, where, fn, (id,) + args, None)
    return callback


def _log_trampoline(ref: ServerRef, fn: Handler) -> Callable[..., None]:
    def call(server: Server, level: int, code: int, text: Optional[int]) -> None:
        fn(server, level, code, ctypes.string_at(text).decode("utf-8", "replace") if text else "")

    def on_log(_server: Any, _user: Any, level: int, code: int, text: Optional[int]) -> None:
        _invoke(ref, "on_log", call, (level, code, text), None)
    return on_log
