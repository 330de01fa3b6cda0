"""The asyncio layer of queue mode (Server.serve_async): a helper thread
takes the batches (drain() of _queue.py) and hands copies to the running
event loop, which calls the handlers. A handler may be a coroutine
function: its coroutine runs as a task after the previous handler of the
same connection finished, so one connection's handlers still run in order
and never overlap while different connections proceed concurrently.
While a connection's on_data coroutine runs, the connection is paused in
the library, so a slow handler slows its own peer (TCP flow control) and
holds at most one received chunk.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from ._abi import (EVENT_ACCEPTED, EVENT_CONNECT_FAILED, EVENT_DATA, EVENT_DISCONNECTED,
                   EVENT_DRAIN, EVENT_LOG, EVENT_PEER_CLOSED, EVENT_SENT)
from ._queue import (EVENT_NAMES, Handler, RawEvent, accepted, begin_serving, drain, end_context,
                     log_text, signed64)

if TYPE_CHECKING:
    from .server import Server

# A connection's id, or "log" for the chain of on_log calls.
Key = Union[int, str]
Tails = Dict[Key, "asyncio.Future[None]"]
# One event as the helper copies it: (type, id, argument, context).
Decoded = Tuple[int, int, Any, int]


async def serve_async(server: Server) -> None:
    """Server.serve_async: a helper thread drains, the loop runs handlers."""
    begin_serving(server)
    loop = asyncio.get_running_loop()
    server._loop_thread = threading.get_ident()
    tails: Tails = {}
    server._holds = {}   # id -> its on_data tasks not finished (see hold())
    done = asyncio.Event()
    ready = threading.Event()

    refusals: List[int] = []

    def deliver(batch: List[Decoded]) -> None:
        try:
            dispatch_events(server, batch, tails, refusals)
        finally:
            ready.set()

    def take(events: Iterable[RawEvent]) -> None:
        # On the helper thread: the handlers get copies (bytes), so the
        # batch may be released as soon as the loop has taken it. A
        # refusal is the close of the thread holding the batch: this one.
        batch = [decode(e) for e in events]
        ready.clear()
        loop.call_soon_threadsafe(deliver, batch)
        ready.wait()
        for id in refusals:
            server._lib.iocp_close(server._ptr, id)
        refusals.clear()

    def run() -> None:
        try:
            drain(server, take)
        except BaseException as e:
            server._report("iocp_wait", e)
        finally:
            loop.call_soon_threadsafe(done.set)

    helper = threading.Thread(target=run, name=f"iocpsrv-async:{server.port}", daemon=True)
    try:
        helper.start()
        server._drainer = helper.ident
        await done.wait()
        # Every handler's task has finished (each removes itself).
        while tails:
            await asyncio.wait(list(tails.values()))
    finally:
        helper.join()
        server._drainer = None
        server._loop_thread = None
        server._serving.set()


def decode(event: RawEvent) -> Decoded:
    """One raw event as (type, id, arg, context), with copies, so that the
    batch may be released at once."""
    t, value, id, data, length, ctx = event
    if t == EVENT_DATA:
        return t, id, ctypes.string_at(data, length), ctx
    if t == EVENT_ACCEPTED:
        return t, id, (ctypes.string_at(data, length), value), ctx
    if t == EVENT_SENT or t == EVENT_DRAIN:
        return t, id, length, ctx
    if t == EVENT_LOG:
        return t, id, (value, signed64(ctx), log_text(data, length)), 0
    return t, id, value, ctx


def dispatch_events(server: Server, batch: List[Decoded], tails: Tails,
                    refusals: List[int]) -> None:
    """In the loop: calls the handlers for decoded events, chaining the
    coroutines of each connection (`tails`: id -> its last task)."""
    (on_connect, on_data, on_sent, on_peer_closed, on_disconnect, on_connect_failed,
     on_log, on_drain) = server._handlers
    fn: Optional[Handler]
    args: Tuple[Any, ...]
    key: Key
    for t, id, arg, ctx in batch:
        key = id
        if t == EVENT_ACCEPTED:
            # on_connect decides at once (the batch is released next).
            accepted(server, on_connect, id, arg[0], arg[1], refusals,
                     lambda id, keep: started(server, tails, id, keep))
            continue
        if t == EVENT_DATA:
            if on_data is None:
                continue
            task = schedule(server, tails, id, "on_data", on_data, (arg,))
            if task is not None:
                hold(server, tails, id, task)
            continue
        elif t == EVENT_SENT:
            fn, args = on_sent, (arg,)
        elif t == EVENT_DRAIN:
            fn, args = on_drain, (arg,)
        elif t == EVENT_PEER_CLOSED:
            fn, args = on_peer_closed, ()
        elif t == EVENT_DISCONNECTED or t == EVENT_CONNECT_FAILED:
            fn = on_disconnect if t == EVENT_DISCONNECTED else on_connect_failed
            server._user_paused.discard(id)
            after: Optional[Callable[[], None]] = None
            if ctx:
                with server._context_lock:
                    server._ending[id] = server._contexts.get(ctx)
                after = functools.partial(end_context, server, id, ctx)
            task = schedule(server, tails, id, EVENT_NAMES[t], fn, (arg,), after) if fn else None
            if after is not None and task is None:
                after()
            continue
        elif t == EVENT_LOG:
            # Not a connection's: in order among log messages only.
            if on_log is None:
                continue
            fn, args = functools.partial(call_log, on_log), arg
            key = "log"
        else:
            continue
        if fn is None:
            continue
        schedule(server, tails, key, EVENT_NAMES[t], fn, args)


def call_log(on_log: Handler, server: Server, _key: Key, *args: Any) -> Any:
    """on_log(server, level, code, text), scheduled as the "log" chain's."""
    return on_log(server, *args)


def hold(server: Server, tails: Tails, id: int, task: asyncio.Future[None]) -> None:
    """Backpressure: while an on_data coroutine of a connection has not
    finished, the connection receives nothing (paused in the library
    before this batch is released, so exactly). It resumes when its last
    on_data task is done, unless the program paused it itself."""
    lib, ptr, holds = server._lib, server._ptr, server._holds
    lib.iocp_pause_recv(ptr, id)
    holds[id] = holds.get(id, 0) + 1

    def done(_f: asyncio.Future[None]) -> None:
        left = holds.pop(id) - 1
        if left:
            holds[id] = left
        elif id not in server._user_paused:
            lib.iocp_resume_recv(ptr, id)
    task.add_done_callback(done)


def started(server: Server, tails: Tails, id: int, keep: Any) -> Any:
    """on_connect's result: a coroutine runs as the connection's first task
    and keeps it; anything else decides as in the other modes."""
    if asyncio.iscoroutine(keep):
        schedule(server, tails, id, "on_connect", lambda _s, _i, c=keep: c, ())
        return True
    return keep


def schedule(server: Server, tails: Tails, id: Key, where: str, fn: Handler,
             args: Tuple[Any, ...],
             after: Optional[Callable[[], None]] = None) -> Optional[asyncio.Future[None]]:
    """Calls fn(server, id, *args) now when the connection has no task
    running, else after its last one; returns the task, if any (which
    calls after() when done; without a task the caller does)."""
    prev = tails.get(id)
    if prev is None:
        try:
            result = fn(server, id, *args)
        except BaseException as e:
            server._report(where, e)
            return None
        if not asyncio.iscoroutine(result):
            return None
        task = asyncio.ensure_future(guard(server, where, None, result, tails, id, after))
    else:
        task = asyncio.ensure_future(guard(server, where, prev, (fn, id, args), tails, id, after))
    tails[id] = task
    return task


async def guard(server: Server, where: str, prev: Optional[asyncio.Future[None]], work: Any,
                tails: Tails, key: Key, after: Optional[Callable[[], None]]) -> None:
    """Runs one handler after the connection's previous one finished; then
    after(), and forgets itself as the connection's last task (here, not in
    a done-callback, so that serve_async sees the state once every task
    is done)."""
    try:
        if prev is not None:
            await asyncio.gather(prev, return_exceptions=True)
        if isinstance(work, tuple):
            fn, id, args = work
            work = fn(server, id, *args)
        if asyncio.iscoroutine(work):
            await work
    except BaseException as e:
        server._report(where, e)
    finally:
        if after is not None:
            after()
        if tails.get(key) is asyncio.current_task():
            tails.pop(key)
