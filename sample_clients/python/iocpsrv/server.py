"""The Server class: one iocp_server handle, its configuration, lifetime,
per-connection calls and controls. Delivery is left to the dispatchers:
_queue.py (queue mode, the default), _asyncio.py (serve_async) and
_callbacks.py (callback mode).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import sys
import threading
import traceback
import weakref
from typing import Any, Awaitable, Callable, Dict, List, NamedTuple, Optional, Set, Tuple, Union

from . import _asyncio, _queue
from ._abi import (ADDRSTRLEN, DELIVERY_QUEUE, EINCALLBACK, EINVAL, ENOTFOUND,
                   EVENT_DRAIN, EVENT_LOG, EVENT_PEER_CLOSED, EVENT_SENT, EVENT_SIZE,
                   MAX_TIMEOUT_MS, _Config, _conn_id, _server_p, _Statistics)
from ._callbacks import make_callbacks, running_callbacks
from ._loader import load
from ._tls import TlsClient, TlsConfig, TlsInfo, as_server_tls, read_info
from .errors import IocpError, error
from .errors import check as _check

# Handlers may be coroutine functions under serve_async (an Awaitable result).
Handled = Optional[Awaitable[None]]
ConnectHandler = Callable[["Server", int, str, int], Union[None, bool, Awaitable[None]]]
DataHandler = Callable[["Server", int, bytes], Handled]
SentHandler = Callable[["Server", int, int], Handled]
PeerClosedHandler = Callable[["Server", int], Handled]
DisconnectHandler = Callable[["Server", int, int], Handled]
ConnectFailedHandler = Callable[["Server", int, int], Handled]
LogHandler = Callable[["Server", int, int, str], None]
DrainHandler = Callable[["Server", int, int], Handled]
ErrorHandler = Callable[["Server", str, BaseException], None]
Buffer = Union[bytes, bytearray, memoryview]


class Statistics(NamedTuple):
    """A server's counters since it started (iocp_stats), a snapshot."""
    connections_accepted: int
    connections_refused: int
    connections_open: int
    bytes_received: int
    bytes_sent: int
    bytes_queued: int
    accept_errors: int
    system_errors: int
    tls_handshakes: int
    tls_handshake_failures: int
    tls_handshake_timeouts: int


# The fields are struct iocp_statistics' after size and reserved_, in order.
assert Statistics._fields == tuple(name for name, _ in _Statistics._fields_[2:])


def _default_on_error(server: Server, where: str, exc: BaseException) -> None:
    print(f"iocpsrv: exception in {where} callback (ignored):", file=sys.stderr)
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


# Callback objects of servers whose handle could not be destroyed (a Server
# garbage-collected on a worker thread): kept forever, since native code may
# still call them. Empty in correct programs.
_immortal: List[Tuple[Any, Any]] = []


def _finalize(lib: ctypes.CDLL, ptr: ctypes.c_void_p, keepalive: List[Any],
              serving: Optional[threading.Event] = None) -> None:
    # Runs when a Server is garbage-collected or at interpreter exit without
    # close(): the library must stop calling into Python before the callback
    # objects go away, and a drain loop must have left iocp_wait for good.
    if ptr.value is None:
        return
    if serving is not None:
        lib.iocp_stop(ptr)
        if not serving.wait(10):
            _immortal.append((ptr, keepalive))  # a handler never returned
            return
    rc = lib.iocp_destroy(ptr)
    if rc == EINCALLBACK:
        _immortal.append((ptr, keepalive))
        return
    ptr.value = None


class Server:
    """One iocpsrv server: an opaque iocp_server handle.

    Keyword arguments (all optional):
      port=50000 (0 picks a free port; read it back from .port),
      bind="127.0.0.1", threads=0 (one per processor; queue mode: one fewer,
      at least 1), backlog=0,
      accepts_posted=0, recv_buffer_size=0, max_send_queue=0, nodelay=True
      (0 keeps the library default), dual_stack=False (True: an IPv6 bind
      address such as "::" takes IPv4 connections too), the 1.1 controls,
      all off by default:
      idle_timeout_ms=0 (end a connection silent that long with
      REASON_IDLE_TIMEOUT), max_connections=0 (refuse past it, counted in
      refused_count), keepalive=False, keepalive_idle_ms=0,
      keepalive_interval_ms=0 (TCP keep-alive; 0 = system value),
      drain_mark=0 (on_drain fires when a queue falls to it);
      tls=None (an iocpsrv.TlsConfig: speak TLS on every connection, the
      library doing it; the handlers see plaintext, on_connect comes after
      the handshake, shutdown() sends close_notify then FIN, and a peer's
      FIN without close_notify ends with REASON_TLS_TRUNCATED; the
      server's .tls is it);
      mode="queue" or "callbacks" (see the package's documentation),
      thread=True (queue mode: drain on a thread of this package; False: call
      serve_forever() or serve_async() yourself), batch=256 (events per
      iocp_wait); and the handlers:

      on_connect(server, id, address: str, port: int) -> bool | None
          Return False (or raise) to refuse the connection; None or a true
          value keeps it.
      on_data(server, id, data: bytes)
      on_sent(server, id, nbytes: int)
      on_peer_closed(server, id)
          Left out: the library finishes the connection itself (sends what is
          queued, then closes).
      on_disconnect(server, id, reason: int)   # a REASON_* constant
      on_connect_failed(server, id, error: int)
          An outbound connection from connect() could not be established
          (ECONNREFUSED, ETIMEDOUT, EUNREACH, ECLOSED, ...): its only callback.
      on_log(server, level: int, code: int, text: str)
          What the library worked around or could not do (LOG_* levels):
          failed accepts, running out of descriptors, a worker leaving.
          Queue mode: delivered like the other handlers (LOG events, at most
          LOG_QUEUE_MAX waiting; a note says how many were lost past that),
          and silent about the constructor's own failure (IocpError says
          it). Callback mode: may run on several threads at once, and on
          the creating thread during the constructor (then `server` is not
          usable yet).
      on_drain(server, id, queued: int)
          The queue fell from above the connection's drain mark to at or
          below it (also after send() raised EQUEUEFULL): produce again.
      on_error(server, where: str, exc: BaseException)
          Called when a handler raised; default prints to stderr.

    Every handler receives this Server object and may call send(),
    shutdown(), close(id), queued(), the per-connection controls
    (set_context(), context(), pause_reading(), resume_reading(),
    set_drain_mark(), set_idle_timeout()), connect(), port and
    connection_count. It must not destroy or stop the server itself:
    destroy() and stop() raise IocpError(EINCALLBACK) there. In callback mode
    handlers run on library worker threads (ctypes takes the GIL); in queue
    mode on the one draining thread (or in the asyncio loop).

    Use it as a context manager, or call destroy() when done: it ends every
    connection, and on_disconnect(REASON_DESTROY) runs for each open one
    before it returns, in both modes.
    """

    def __init__(self, *, port: int = 50000, bind: str = "127.0.0.1", threads: int = 0,
                 backlog: int = 0, accepts_posted: int = 0, recv_buffer_size: int = 0,
                 max_send_queue: int = 0, nodelay: bool = True,
                 idle_timeout_ms: int = 0, max_connections: int = 0, keepalive: bool = False,
                 keepalive_idle_ms: int = 0, keepalive_interval_ms: int = 0,
                 drain_mark: int = 0,
                 mode: str = "queue", thread: bool = True, batch: int = 256,
                 on_connect: Optional[ConnectHandler] = None,
                 on_data: Optional[DataHandler] = None,
                 on_sent: Optional[SentHandler] = None,
                 on_peer_closed: Optional[PeerClosedHandler] = None,
                 on_disconnect: Optional[DisconnectHandler] = None,
                 on_error: Optional[ErrorHandler] = None, dual_stack: bool = False,
                 on_connect_failed: Optional[ConnectFailedHandler] = None,
                 on_log: Optional[LogHandler] = None,
                 on_drain: Optional[DrainHandler] = None,
                 tls: Optional[TlsConfig] = None) -> None:
        tls = as_server_tls(tls, "tls")
        lib = load()
        self._lib = lib
        self._on_error = on_error or _default_on_error
        if mode not in ("queue", "callbacks"):
            raise ValueError(f"mode {mode!r} is not 'queue' or 'callbacks'")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.mode = mode

        config = _Config()
        _check(lib.iocp_config_init(ctypes.byref(config), ctypes.sizeof(config)),
               "iocp_config_init")
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is not 0..65535")
        config.port = port
        bind_bytes = bind.encode("ascii")   # copied by iocp_create()
        config.bind_address = bind_bytes
        config.threads = threads
        if backlog:
            config.backlog = backlog
        if accepts_posted:
            config.accepts_posted = accepts_posted
        if recv_buffer_size:
            config.recv_buffer_size = recv_buffer_size
        if max_send_queue:
            config.max_send_queue = max_send_queue
        config.nodelay = 1 if nodelay else 0
        config.dual_stack = 1 if dual_stack else 0
        # Out-of-range values are left to iocp_create (IOCP_EINVAL); ctypes
        # would silently truncate them, so range-check the widths here.
        for name, value, top in (("idle_timeout_ms", idle_timeout_ms, 0xFFFFFFFF),
                                 ("max_connections", max_connections, 0xFFFFFFFF),
                                 ("keepalive_idle_ms", keepalive_idle_ms, 0xFFFFFFFF),
                                 ("keepalive_interval_ms", keepalive_interval_ms, 0xFFFFFFFF),
                                 ("drain_mark", drain_mark, 0xFFFFFFFFFFFFFFFF)):
            if not 0 <= value <= top:
                raise ValueError(f"{name} {value} is out of range")
            setattr(config, name, value)
        config.keepalive = 1 if keepalive else 0
        tls_keep: List[Any] = []   # what config's tls_ fields point to, until iocp_create returns
        if tls is not None:
            tls._apply(config, tls_keep)
        self.tls = tls

        # Contexts: a token (the native context pointer) -> the Python object.
        self._contexts: Dict[int, Any] = {}
        self._context_seq = 0
        self._context_lock = threading.Lock()
        self._set_lock = threading.Lock()   # serialises set_context()
        self._stopped = False   # a graceful stop() has finished
        self._user_paused: Set[int] = set()   # ids paused with pause_reading (serve_async resumes others)

        keepalive_refs: List[Any] = []
        callbacks = None
        if mode == "queue":
            config.delivery = DELIVERY_QUEUE
            # No callback at all: every event, log messages included, comes
            # through the queue (on_log is then silent about iocp_create's
            # own failures; the IocpError raised says what failed).
            config.queue_events = ((1 << EVENT_SENT if on_sent else 0)
                                   | (1 << EVENT_PEER_CLOSED if on_peer_closed else 0)
                                   | (1 << EVENT_DRAIN if on_drain else 0)
                                   | (1 << EVENT_LOG if on_log else 0))
            self._handlers = (on_connect, on_data, on_sent, on_peer_closed, on_disconnect,
                              on_connect_failed, on_log, on_drain)
            self._events = ctypes.create_string_buffer(EVENT_SIZE * batch)
            self._batch = batch
            self._ending: Dict[int, Any] = {}   # id -> context object, during its last handler
        else:
            callbacks = make_callbacks(self, keepalive_refs, on_connect, on_data, on_sent,
                                       on_peer_closed, on_disconnect, on_connect_failed, on_log,
                                       on_drain)
        self._keepalive = keepalive_refs

        # The library stores the handle here before any callback can run, so
        # callbacks that fire before iocp_create() returns can already use it.
        self._ptr = _server_p()
        self._destroy_lock = threading.Lock()
        self._serve_lock = threading.Lock()
        self._drainer: Optional[int] = None      # thread ident of the queue's drainer
        self._loop_thread: Optional[int] = None  # serve_async: the event loop's thread
        self._holds: Dict[int, int] = {}         # serve_async: id -> on_data tasks running
        self._serving = threading.Event()
        self._serving.set()           # set while nobody drains
        self._thread: Optional[threading.Thread] = None
        self._send = lib.iocp_send
        rc = lib.iocp_create(ctypes.byref(config),
                             ctypes.byref(callbacks) if callbacks is not None else None,
                             None, ctypes.byref(self._ptr))
        del tls_keep
        if rc < 0:
            self._ptr.value = None
            raise error(rc, f"cannot listen on {bind} port {port}")
        self._finalizer = weakref.finalize(self, _finalize, lib, self._ptr, keepalive_refs,
                                           self._serving if mode == "queue" else None)
        if mode == "queue" and thread:
            self._thread = threading.Thread(target=_queue.serve_weakly, args=(weakref.ref(self),),
                                            name=f"iocpsrv:{self.port}", daemon=True)
            self._serving.clear()
            self._thread.start()

    # -- queue mode: draining (_queue.py, _asyncio.py) --

    def serve_forever(self) -> None:
        """Queue mode with thread=False: drains events on the calling thread
        and calls the handlers until the server is destroyed (from another
        thread, or stopped with stop()); every on_disconnect has run when it
        returns. Raises IocpError(EBUSY) if another thread is draining."""
        _queue.serve_forever(self)

    async def serve_async(self) -> None:
        """Queue mode with thread=False, for asyncio: takes batches on a
        helper thread and runs the handlers in the running event loop. A
        handler may be a coroutine function: its coroutine runs as a task,
        after the previous handler of the same connection finished, so one
        connection's handlers still run in order and never overlap, while
        different connections proceed concurrently (on_connect decides at
        once; a coroutine it returns keeps the connection and runs first).
        Returns when the server is stopped or destroyed, after every handler
        finished. From the loop, end it with ``await server.aclose()``."""
        await _asyncio.serve_async(self)

    async def aclose(self) -> None:
        """For serve_async: closes every connection (abort()), waits (without
        blocking the loop) until every on_disconnect ran and serve_async
        ended, then destroys it. Idempotent."""
        if self.closed:
            return
        self.abort()
        while not self._serving.is_set():
            await asyncio.sleep(0.005)  # serve_async ends on its own after stop()
        self.destroy()

    def abort(self) -> None:
        """iocp_stop(): stops accepting and closes every connection at once
        (REASON_DESTROY), without waiting; in queue mode the drain loop
        delivers every on_disconnect, then returns. Any thread, handlers
        included. The handle stays valid until destroy()."""
        _check(self._lib.iocp_stop(self._handle()), "iocp_stop")

    def destroy(self) -> None:
        """Closes every connection (on_disconnect with REASON_DESTROY runs
        for each before this returns) and joins the workers; in queue mode
        it first lets the drain loop deliver every disconnect and waits for
        it to end. No handler runs after it returns. A no-op when already
        destroyed. From inside a handler it raises IocpError(EINCALLBACK)
        and destroys nothing: call it from another thread."""
        if self in running_callbacks() or (
                threading.get_ident() in (self._drainer, self._loop_thread)):
            if self.mode == "queue":
                raise IocpError(EINCALLBACK, "iocp_destroy")
            # Inside one of our own callbacks: the library refuses at once
            # (taking the lock here could deadlock with a destroy() waiting
            # for this very callback to return).
            _check(self._lib.iocp_destroy(self._handle()), "iocp_destroy")
            self._ptr.value = None  # not reached with a conforming library
            self._finalizer.detach()
            return
        with self._destroy_lock:
            if self._ptr.value is None:
                return
            if self.mode == "queue":
                # Every disconnect is delivered by whoever drains: stop, then
                # wait for the loop to see the end (iocp_wait: IOCP_ECLOSED),
                # or drain here when nobody does.
                _check(self._lib.iocp_stop(self._ptr), "iocp_stop")
                if self._thread is None and self._serving.is_set():
                    self._drainer = threading.get_ident()
                    try:
                        _queue.drain(self, functools.partial(_queue.dispatch_batch, self))
                    finally:
                        self._drainer = None
                self._serving.wait()
                if self._thread is not None:
                    self._thread.join()
            _check(self._lib.iocp_destroy(self._ptr), "iocp_destroy")
            self._ptr.value = None
            self._finalizer.detach()

    def close(self, id: Optional[int] = None) -> None:
        """close(id): abortive close of one connection (iocp_close).
        close() with no id: destroy the server (same as destroy())."""
        if id is None:
            self.destroy()
        else:
            _check(self._lib.iocp_close(self._handle(), id), "iocp_close")

    def __enter__(self) -> Server:
        """The server itself: `with Server(...) as server:`."""
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException],
                 tb: object) -> None:
        """Destroys the server (see destroy()); exceptions propagate."""
        self.destroy()

    @property
    def closed(self) -> bool:
        """True once the server is destroyed."""
        return self._ptr.value is None

    def _handle(self) -> ctypes.c_void_p:
        if self._ptr.value is None:
            raise ValueError("server is destroyed")
        return self._ptr

    # -- per connection; any thread, including handlers --

    def send(self, id: int, data: Buffer) -> None:
        """Queues a copy of `data` (bytes-like) for connection `id`.
        Raises IocpError: ENOTFOUND, ESHUTDOWN, ECLOSED, EQUEUEFULL (nothing
        queued: wait for on_sent), ENOMEM."""
        if type(data) is not bytes:
            data = bytes(data)
        rc = self._send(self._ptr, id, data, len(data))
        if rc:
            self._handle()  # a destroyed server: ValueError
            raise IocpError(rc, "iocp_send")

    def shutdown(self, id: int) -> None:
        """Graceful half-close: queued bytes go out, then FIN."""
        _check(self._lib.iocp_shutdown(self._handle(), id), "iocp_shutdown")

    def queued(self, id: int) -> int:
        """Bytes queued for `id` and not yet handed to the system."""
        n = ctypes.c_uint64()
        _check(self._lib.iocp_queued(self._handle(), id, ctypes.byref(n)), "iocp_queued")
        return n.value

    # -- 1.1 controls; any thread, including callbacks --

    def set_context(self, id: int, obj: Any) -> None:
        """Attaches any object to connection `id` (None clears it); context(id)
        returns it until the connection's on_disconnect has returned (there
        included). Raises IocpError(ENOTFOUND) for an unknown or stale id."""
        token = None
        if obj is not None:
            with self._context_lock:
                self._context_seq += 1
                token = self._context_seq
                self._contexts[token] = obj
        # Read-then-replace must be one step: two setters reading the same
        # old token would each release it and leak what the other stored.
        with self._set_lock:
            old = self._context_token(id, missing_ok=True)
            rc = self._lib.iocp_set_context(self._handle(), id, token)
        if rc < 0:
            self._release_token(token)
            raise IocpError(rc, "iocp_set_context")
        if old != token:
            self._release_token(old)

    def context(self, id: int) -> Any:
        """The object set with set_context(), or None."""
        try:
            token = self._context_token(id)
        except IocpError as e:
            # Queue mode: inside on_disconnect (or on_connect_failed) the id
            # is stale for the library, but the event carried the context.
            with self._context_lock:
                if e.code == ENOTFOUND and self.mode == "queue" and id in self._ending:
                    return self._ending[id]
            raise
        if token is None:
            return None
        with self._context_lock:
            return self._contexts.get(token)

    def pause_reading(self, id: int) -> None:
        """Stops receiving on `id` (iocp_pause_recv): the peer's bytes stay in
        the kernel and TCP flow control slows it down. Inside this
        connection's on_data, no more data arrives until resume_reading()."""
        _check(self._lib.iocp_pause_recv(self._handle(), id), "iocp_pause_recv")
        self._user_paused.add(id)

    def resume_reading(self, id: int) -> None:
        """Receives again after pause_reading() (iocp_resume_recv)."""
        self._user_paused.discard(id)
        _check(self._lib.iocp_resume_recv(self._handle(), id), "iocp_resume_recv")

    def set_drain_mark(self, id: int, mark: int) -> None:
        """on_drain fires when `id`'s queue falls to `mark` bytes (0: empty).
        Raises IocpError(EINVAL) when mark >= max_send_queue."""
        if not 0 <= mark <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError(f"mark {mark} is out of range")
        _check(self._lib.iocp_set_drain_mark(self._handle(), id, mark), "iocp_set_drain_mark")

    def set_idle_timeout(self, id: int, timeout_ms: int) -> None:
        """Idle timeout of this connection in ms (0: none); its clock restarts.
        Raises IocpError(EINVAL) above MAX_TIMEOUT_MS."""
        if not 0 <= timeout_ms <= 0xFFFFFFFF:
            raise IocpError(EINVAL, "iocp_set_idle_timeout")
        _check(self._lib.iocp_set_idle_timeout(self._handle(), id, timeout_ms),
               "iocp_set_idle_timeout")

    def stop(self, timeout: float = 5.0) -> int:
        """Graceful stop (iocp_stop_graceful): stops accepting, half-closes
        every connection after its queued bytes, waits up to `timeout`
        seconds for the peers to finish, then closes the rest
        (REASON_STOP_DEADLINE). Every on_disconnect has run when it returns.
        Returns how many were closed at the deadline. Not from inside a
        handler (IocpError EINCALLBACK; from asyncio use astop()); call
        destroy() afterwards (or leave the with block). In queue mode with
        nobody draining (thread=False and no serve_forever running), this
        thread drains while the stop runs."""
        ms = int(timeout * 1000)
        if not 0 <= ms <= MAX_TIMEOUT_MS:
            raise IocpError(EINVAL, "iocp_stop_graceful")
        ptr = self._handle()
        if self.mode != "queue":
            closed = _check(self._lib.iocp_stop_graceful(ptr, ms), "iocp_stop_graceful")
            self._stopped = True
            return closed
        me = threading.get_ident()
        if me in (self._drainer, self._loop_thread):
            raise IocpError(EINCALLBACK, "iocp_stop_graceful")  # it would wait for itself
        with self._serve_lock:
            nobody = self._thread is None and self._serving.is_set()
            if nobody:
                self._serving.clear()
        if not nobody:
            closed = _check(self._lib.iocp_stop_graceful(ptr, ms), "iocp_stop_graceful")
            self._stopped = True
            return closed
        result: List[int] = []
        stopper = threading.Thread(
            target=lambda: result.append(self._lib.iocp_stop_graceful(ptr, ms)),
            name=f"iocpsrv-stop:{self.port}", daemon=True)
        self._drainer = me
        try:
            stopper.start()
            _queue.drain(self, functools.partial(_queue.dispatch_batch, self))  # until ECLOSED
        finally:
            stopper.join()
            self._drainer = None
            self._serving.set()
        self._stopped = True
        return _check(result[0], "iocp_stop_graceful")

    async def astop(self, timeout: float = 5.0) -> int:
        """stop() for asyncio (serve_async): runs it on a helper thread so
        the loop keeps running the handlers meanwhile. A second call (or one
        after destroy) returns 0."""
        if self._stopped or self.closed:
            return 0   # idempotent, unlike stop() (IocpError ESTOPPED)
        return await asyncio.get_running_loop().run_in_executor(None, self.stop, timeout)

    @property
    def refused_count(self) -> int:
        """Connections refused because max_connections was reached."""
        return int(self._lib.iocp_refused_count(self._handle()))

    def _context_token(self, id: int, missing_ok: bool = False) -> Optional[int]:
        p = ctypes.c_void_p()
        rc = self._lib.iocp_get_context(self._handle(), id, ctypes.byref(p))
        if rc < 0:
            if missing_ok:
                return None
            raise IocpError(rc, "iocp_get_context")
        return p.value

    def _release_token(self, token: Optional[int]) -> None:
        if token is not None:
            with self._context_lock:
                self._contexts.pop(token, None)

    def _release_context(self, id: int) -> None:
        # In the connection's last callback: the library hands the token back
        # without a lookup; afterwards nobody can reach it.
        try:
            self._release_token(self._context_token(id, missing_ok=True))
        except BaseException as e:  # never into native code
            self._report("context release", e)

    @property
    def port(self) -> int:
        """The port listened on (useful after port=0)."""
        return int(self._lib.iocp_port(self._handle()))

    def connect(self, host: str, port: int, *, tls: Optional[TlsClient] = None) -> int:
        """Opens an outbound connection (iocp_connect) and returns its id;
        with tls=iocpsrv.TlsClient(...) it speaks TLS as a client
        (iocp_connect_tls): on_connect comes after the handshake, and a
        failed one is on_connect_failed(ECERTVERIFY, ETIMEDOUT or ETLS).

        `host` is a numeric IPv4 or IPv6 address ("127.0.0.1", "::1"): the
        library does no DNS; resolve names first, e.g. with
        socket.getaddrinfo(). The id gets the same callbacks as an accepted
        connection (on_connect once established, ...), or on_connect_failed
        as its only one. The id is returned before any callback for it can
        run in the sense that the library stores it first; take your own lock
        around connect() if callbacks look it up in your tables. Raises
        ValueError for a port outside 1..65535 and IocpError: EINVAL (not a
        numeric address), ECLOSED, EMFILE, ENOMEM, ESYSTEM; TlsError (ETLS:
        the TLS options were refused, on_log says why)."""
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} is not 1..65535")
        cid = _conn_id()
        if tls is None:
            _check(self._lib.iocp_connect(self._handle(), host.encode("ascii"), port,
                                          ctypes.byref(cid)), f"iocp_connect {host} port {port}")
            return cid.value
        if not isinstance(tls, TlsClient):
            raise TypeError(f"tls must be an iocpsrv.TlsClient, not {type(tls).__name__}")
        keep: List[Any] = []
        options = tls._struct(keep)
        _check(self._lib.iocp_connect_tls(self._handle(), host.encode("ascii"), port,
                                          ctypes.byref(options), ctypes.byref(cid)),
               f"iocp_connect_tls {host} port {port}")
        return cid.value

    def tls_info(self, id: int) -> TlsInfo:
        """What connection `id`'s TLS handshake settled: protocol, cipher and
        ALPN (iocp_tls_get_info), from on_connect on. Raises TlsError
        (ENOTLS) for a plain TCP connection, IocpError (ENOTFOUND) for an
        unknown or stale id."""
        rc, info = read_info(self._lib, self._handle(), id)
        if info is None:
            raise error(rc, "iocp_tls_get_info")
        return info

    @property
    def listen_address(self) -> Tuple[str, int]:
        """(address, port) the server listens on, e.g. ("::", 50000)."""
        buf = ctypes.create_string_buffer(ADDRSTRLEN)
        port = ctypes.c_uint16()
        _check(self._lib.iocp_listen_address(self._handle(), buf, ADDRSTRLEN,
                                             ctypes.byref(port)), "iocp_listen_address")
        return buf.value.decode("ascii"), port.value

    def local_address(self, id: int) -> Tuple[str, int]:
        """(address, port) of connection `id`'s own end, as the system
        reports it: the address the peer reached, or for an outbound
        connection the port the system chose. Raises IocpError (ENOTFOUND
        for an unknown or ended id, ECLOSED once it is closing)."""
        buf = ctypes.create_string_buffer(ADDRSTRLEN)
        port = ctypes.c_uint16()
        _check(self._lib.iocp_local_address(self._handle(), id, buf, ADDRSTRLEN,
                                            ctypes.byref(port)), "iocp_local_address")
        return buf.value.decode("ascii"), port.value

    @property
    def connection_count(self) -> int:
        """Connections currently open."""
        return int(self._lib.iocp_connection_count(self._handle()))

    def stats(self) -> Statistics:
        """The server's counters (a Statistics named tuple)."""
        st = _Statistics()
        st.size = ctypes.sizeof(st)
        _check(self._lib.iocp_stats(self._handle(), ctypes.byref(st)), "iocp_stats")
        return Statistics(*(getattr(st, name) for name in Statistics._fields))

    def _report(self, where: str, exc: BaseException) -> None:
        try:
            self._on_error(self, where, exc)
        except BaseException as e2:  # the hook itself must not escape either
            _default_on_error(self, where + " on_error", e2)

