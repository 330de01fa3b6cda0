"""Queue mode (mode="queue", the default): the library queues events and
one Python thread takes them in batches (one iocp_wait per batch, decoded
with struct) and calls the handlers. That thread is the package's own
(serve_weakly), or the caller's (Server.serve_forever), or a helper of
serve_async (_asyncio.py), which reuses drain() and accepted() here.
"""

from __future__ import annotations

import ctypes
import functools
import struct
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Optional, Tuple

from ._abi import (EBUSY, ECLOSED, EMODE, EVENT_ACCEPTED, EVENT_CONNECT_FAILED, EVENT_DATA,
                   EVENT_DISCONNECTED, EVENT_DRAIN, EVENT_FORMAT, EVENT_LOG, EVENT_PEER_CLOSED,
                   EVENT_SENT, EVENT_SIZE)
from .errors import IocpError

if TYPE_CHECKING:
    import weakref

    from .server import Server

# One raw event as struct.iter_unpack gives it (a tuple of Any): type,
# value, id, data, len, context, all integers.
RawEvent = Tuple[Any, ...]
Handler = Callable[..., Any]


def begin_serving(server: Server) -> None:
    """Makes the calling thread `server`'s one drainer (serve_forever and
    serve_async), or raises: EMODE, EBUSY, or RuntimeError when the
    server has its own thread."""
    if server.mode != "queue":
        raise IocpError(EMODE, "serve_forever")
    if server._thread is not None and threading.current_thread() is not server._thread:
        raise RuntimeError("this server is drained by its own thread (thread=True)")
    server._handle()
    with server._serve_lock:
        if not server._serving.is_set() and threading.current_thread() is not server._thread:
            raise IocpError(EBUSY, "serve_forever")  # one drainer at a time
        server._serving.clear()
    server._drainer = threading.get_ident()


def serve_forever(server: Server) -> None:
    """Server.serve_forever: drains on the calling thread until IOCP_ECLOSED."""
    begin_serving(server)
    try:
        drain(server, functools.partial(dispatch_batch, server))
    finally:
        server._drainer = None
        server._serving.set()


def drain(server: Server, dispatch: Callable[[Iterator[RawEvent]], None]) -> None:
    """The hot loop: one iocp_wait per batch, decoded with struct and passed
    to dispatch(events), until the server is closed (IOCP_ECLOSED)."""
    wait = server._lib.iocp_wait
    ptr = server._ptr
    buf = server._events
    addr = ctypes.addressof(buf)
    view = memoryview(buf).cast("B")
    batch = server._batch
    iter_unpack = struct.Struct(EVENT_FORMAT).iter_unpack
    while True:
        n = wait(ptr, addr, batch, -1)
        if n > 0:
            dispatch(iter_unpack(view[:n * EVENT_SIZE]))
        elif n == ECLOSED:
            return
        elif n < 0:
            raise IocpError(n, "iocp_wait")


def dispatch_batch(server: Server, events: Iterable[RawEvent]) -> None:
    """Calls the handlers for one batch of raw events, in order."""
    (on_connect, on_data, on_sent, on_peer_closed, on_disconnect, on_connect_failed,
     on_log, on_drain) = server._handlers
    string_at = ctypes.string_at
    for t, value, id, data, length, ctx in events:
        try:
            if t == EVENT_DATA:
                if on_data is not None:
                    on_data(server, id, string_at(data, length))
            elif t == EVENT_ACCEPTED:
                accepted(server, on_connect, id, string_at(data, length), value)
            elif t == EVENT_DISCONNECTED:
                last(server, on_disconnect, id, value, ctx)
            # SENT, DRAIN, PEER_CLOSED and LOG are queued only when their
            # handler is set (queue_events).
            elif t == EVENT_SENT:
                if on_sent is not None:
                    on_sent(server, id, length)
            elif t == EVENT_DRAIN:
                if on_drain is not None:
                    on_drain(server, id, length)
            elif t == EVENT_PEER_CLOSED:
                if on_peer_closed is not None:
                    on_peer_closed(server, id)
            elif t == EVENT_CONNECT_FAILED:
                last(server, on_connect_failed, id, value, ctx)
            elif t == EVENT_LOG:
                if on_log is not None:
                    on_log(server, value, signed64(ctx), log_text(data, length))
            # Unknown types are skipped, as the header asks.
        except BaseException as e:
            server._report(EVENT_NAMES.get(t, "event"), e)


def last(server: Server, fn: Optional[Handler], id: int, value: int, ctx: int) -> None:
    """A connection's last event (DISCONNECTED, CONNECT_FAILED): the event
    carries its context token, released once the handler returned."""
    server._user_paused.discard(id)
    if not ctx:
        if fn is not None:
            fn(server, id, value)
        return
    with server._context_lock:
        server._ending[id] = server._contexts.get(ctx)
    try:
        if fn is not None:
            fn(server, id, value)
    finally:
        end_context(server, id, ctx)


def end_context(server: Server, id: int, ctx: int) -> None:
    """Forgets a connection's context once its last handler returned."""
    with server._context_lock:
        server._ending.pop(id, None)
        server._contexts.pop(ctx, None)


def accepted(server: Server, on_connect: Optional[Handler], id: int, address: bytes, port: int,
             refusals: Optional[List[int]] = None,
             started: Optional[Callable[[int, Any], Any]] = None) -> None:
    """An ACCEPTED event: on_connect decides whether to keep the connection.
    serve_async passes `started` (its answer is on_connect's result: a
    coroutine is scheduled there and keeps the connection) and `refusals`
    (the connections its helper thread closes)."""
    keep = True
    if on_connect is not None:
        try:
            keep = on_connect(server, id, address.decode("ascii"), port)
            if started is not None:
                keep = started(id, keep)
            keep = keep is None or bool(keep)
        except BaseException as e:
            server._report("on_connect", e)
            keep = False
    if not keep:
        # Refused: closed before the batch is released by the thread
        # holding it, so no other event comes for this id (not even
        # on_disconnect).
        server._release_context(id)
        if refusals is not None:
            refusals.append(id)   # serve_async: the helper thread closes it
        else:
            server._lib.iocp_close(server._ptr, id)


EVENT_NAMES = {EVENT_ACCEPTED: "on_connect", EVENT_DATA: "on_data", EVENT_SENT: "on_sent",
               EVENT_PEER_CLOSED: "on_peer_closed", EVENT_DISCONNECTED: "on_disconnect",
               EVENT_CONNECT_FAILED: "on_connect_failed", EVENT_LOG: "on_log",
               EVENT_DRAIN: "on_drain"}


def signed64(v: int) -> int:
    """A LOG event's code, which travels as a uint64."""
    return v - (1 << 64) if v >= 1 << 63 else v


def log_text(data: int, length: int) -> str:
    """A LOG event's message."""
    return ctypes.string_at(data, length).decode("utf-8", "replace")


def serve_weakly(ref: weakref.ref[Server]) -> None:
    """The package's drain thread: holds the Server strongly only while it
    serves, which is until the server is destroyed (the finalizer of an
    abandoned server destroys it; the wait then returns IOCP_ECLOSED)."""
    server = ref()
    if server is None:
        return
    try:
        server.serve_forever()
    except BaseException as e:
        server._report("iocp_wait", e)

