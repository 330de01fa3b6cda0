"""asyncio's own server API on the core: create_server() gives protocols
transports that implement asyncio.Transport, start_server() gives asyncio's
StreamReader/StreamWriter over them, and install() routes a program's
loop.create_server here.

How events travel: on a loop that watches file descriptors (Linux: the
standard loop, uvloop) the loop's own thread drains the library's queue.
The server's wait handle (iocp_wait_handle, a descriptor) is one of the
loop's readers; when it is ready the loop takes a batch with iocp_wait
without waiting, which also serves the I/O that is ready (the receives
whose events it then takes), delivers it, lets the loop run what that made
ready (the streams' tasks, say) and takes the next batch, until one comes
back empty. So one thread does everything, as uvloop's does, and the
library's worker stays out of the way while the loop keeps up.

Elsewhere (Windows' proactor loop has no readers for a handle; or with
IOCPSRV_ASYNCIO_HELPER=1) one helper thread per server waits for a batch
with iocp_wait, hands it to the event loop with one call_soon_threadsafe
and waits until the loop has delivered it (copying the bytes) before
releasing it with the next iocp_wait. While events keep coming the loop
takes the next batches itself (iocp_wait without waiting, after each
delivery), and hands waiting back to the helper when none is queued.

Either way the library queues at most one
event per connection until its batch is released, so a protocol that calls
pause_reading() in data_received() stops the very next receive, and a loop
that falls behind slows the peers (TCP flow control) instead of buffering
their bytes in this process.

Writes wait in the transport until the loop's turn ends (one call_soon
per turn for all of a server's connections, as uvloop flushes its writes
once per turn), then go to iocp_send, a connection's writes of the turn
joined into one call when small. A streams echo's tasks each write once per
turn; sending each at once cost about a fifth more CPU per echo than
sending them together after the turn. close() and write_eof() send what
waits first; abort() drops it. What the library's queue (max_send_queue)
cannot take waits in the transport and goes out on the DRAIN event, which
fires when the queue falls to the low-water mark (the library's drain mark).

With the optional C accelerator (_speedups.c, see _accel.py) the hot path
is the same in C: iocp_wait, the batch's DATA events straight to
protocol.data_received(), and the turn's writes straight to iocp_send; the
state and every other event stay here.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import ctypes
import logging
import os
import socket
import struct
import sys
import threading
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional, Set, Tuple, Union

from ._accel import speedups
from ._abi import (ECLOSED, ETLS, EQUEUEFULL, EVENT_ACCEPTED, EVENT_DATA, EVENT_DISCONNECTED,
                   EVENT_DRAIN, EVENT_FORMAT, EVENT_PEER_CLOSED, EVENT_SIZE, REASON_RESET,
                   REASON_IDLE_TIMEOUT, REASON_TLS_ERROR, REASON_TLS_TRUNCATED)
from ._queue import begin_serving
from ._tls import TlsConfig, as_server_tls, extra_info, read_info
from .errors import IocpError, error

logger = logging.getLogger("iocpsrv")

HIGH_WATER = 64 * 1024          # asyncio's default write buffer limits
LOW_WATER = HIGH_WATER // 4
CLOSE_LINGER = 10.0             # close(): a peer that never closes is reset after this
LOST_WRITES_WARNING = 5         # asyncio's threshold for "socket.send() raised exception."
FLUSH_JOIN = 64 * 1024          # a turn's writes up to this size go out as one iocp_send

ProtocolFactory = Callable[[], asyncio.BaseProtocol]
ClientConnected = Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                           Union[None, Awaitable[None]]]


class ListenSocket:
    """What IocpServer.sockets holds: the listening address as a socket-like
    object (getsockname(), family, type); the socket itself is the
    library's."""

    def __init__(self, family: int, address: Tuple[Any, ...]) -> None:
        self.family = family
        self.type = socket.SOCK_STREAM
        self.proto = socket.IPPROTO_TCP
        self._address = address

    def getsockname(self) -> Tuple[Any, ...]:
        """The listening address, as socket.getsockname() gives it."""
        return self._address

    def fileno(self) -> int:
        """Always -1: the library owns the socket."""
        return -1

    def __repr__(self) -> str:
        return f"<iocpsrv.ListenSocket {self._address!r}>"


class IocpTransport(asyncio.Transport):
    """One connection, as asyncio.Transport (see the module's text)."""

    def __init__(self, server: IocpServer, id: int, protocol: asyncio.BaseProtocol,
                 extra: Dict[str, Any]) -> None:
        super().__init__(extra)
        self._server = server
        self._loop = server._loop
        self._id = id
        self._protocol = protocol
        self._native = server._native
        self._send = server._native._lib.iocp_send
        self._ptr = server._native._ptr
        self._csend = server._csend      # the accelerator's send, or None
        self._ptrv = server._ptrv        # the handle as an integer (for _csend)
        self._closing = False        # close() or abort() was called
        self._ended = False          # connection_lost has run (or is due)
        self._eof_written = False
        self._shutdown_due = False   # shut down once the backlog is out
        self._reading_paused = False
        self._eof_due = False
        self._held: Deque[bytes] = collections.deque()  # arrived while paused
        self._backlog: Deque[bytes] = collections.deque()  # the library's queue was full
        self._backlog_size = 0
        self._pending: List[bytes] = []  # written this turn, sent when it ends (_flush)
        self._pending_size = 0
        self._unsure = 0             # bytes written since the queue was last known small
        self._high = server._high
        self._low = server._low
        self._writing_paused = False
        self._lost_writes = 0
        self._linger: Optional[asyncio.TimerHandle] = None

    def __repr__(self) -> str:
        state = "closing" if self._closing else "open"
        return f"<iocpsrv.IocpTransport id={self._id} {state}>"

    # -- asyncio.BaseTransport --

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol this transport delivers to."""
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Deliver to another protocol from now on."""
        self._protocol = protocol

    def is_closing(self) -> bool:
        """True once close() or abort() ran or the connection ended."""
        return self._closing

    def close(self) -> None:
        """Sends what is buffered, then FIN; connection_lost(None) follows
        when the connection has ended (the peer closes in turn; one that
        does not is reset after CLOSE_LINGER seconds)."""
        if self._closing:
            return
        self._closing = True
        self._held.clear()
        if not self._eof_written:
            self._eof_written = True
            self._shutdown_soon()
        self._linger = self._loop.call_later(CLOSE_LINGER, self.abort)

    def abort(self) -> None:
        """Drops what is buffered and resets the connection (RST)."""
        self._closing = True
        self._held.clear()
        self._backlog.clear()
        self._backlog_size = 0
        self._pending.clear()
        self._pending_size = 0
        if not self._ended:
            self._server._close_conn(self._id)

    # -- asyncio.ReadTransport --

    def is_reading(self) -> bool:
        """True unless reading is paused or the transport is closing."""
        return not self._reading_paused and not self._closing

    def pause_reading(self) -> None:
        """Stop receiving in the library: the peer is held back by TCP."""
        if self._closing or self._reading_paused:
            return
        self._reading_paused = True
        self._native._lib.iocp_pause_recv(self._ptr, self._id)

    def resume_reading(self) -> None:
        """Receive again after pause_reading()."""
        if self._closing or not self._reading_paused:
            return
        self._reading_paused = False
        if self._held or self._eof_due:
            self._loop.call_soon(self._deliver_held)
        else:
            self._native._lib.iocp_resume_recv(self._ptr, self._id)

    def _deliver_held(self) -> None:
        while self._held and not self._reading_paused and not self._closing:
            self._protocol_data(self._held.popleft())
        if not self._held and not self._reading_paused and not self._closing:
            if self._eof_due:
                self._eof_due = False
                self._eof_received()
            else:
                self._native._lib.iocp_resume_recv(self._ptr, self._id)

    # -- asyncio.WriteTransport --

    def write(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Queue bytes for the peer, in order; never blocks (see drain marks).
        They are sent when the loop's turn ends."""
        if (type(data) is bytes and data and not self._backlog
                and not (self._eof_written or self._closing or self._ended)):
            # The common case: _pend, inline.
            pending = self._pending
            if not pending:
                self._server._to_flush(self)
            pending.append(data)
            n = len(data)
            self._pending_size += n
            self._unsure += n
            if self._unsure + self._backlog_size > self._high:
                self._check_high()
            return
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if self._eof_written and not self._closing:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._closing or self._ended:
            # As asyncio: ignored, with a warning after a few.
            if self._lost_writes >= LOST_WRITES_WARNING:
                logger.warning("socket.send() raised exception.")
            self._lost_writes += 1
            return
        if type(data) is not bytes:
            data = bytes(data)
        if self._backlog:
            self._backlog.append(data)
            self._backlog_size += len(data)
            if self._unsure + self._backlog_size > self._high:
                self._check_high()
        else:
            self._pend(data)

    def _pend(self, data: bytes) -> None:
        """Keeps data for the end of the turn (the server's _flush)."""
        if not self._pending:
            self._server._to_flush(self)
        self._pending.append(data)
        self._pending_size += len(data)
        self._unsure += len(data)
        if self._unsure + self._backlog_size > self._high:
            self._check_high()

    def _flush(self) -> None:
        """Hands what this turn wrote to the library: joined into one
        iocp_send when small; what the queue cannot take waits in the
        backlog for DRAIN."""
        pending = self._pending
        if not pending or self._ended:
            return
        self._pending = []
        size, self._pending_size = self._pending_size, 0
        if len(pending) > 1 and size <= FLUSH_JOIN:
            pending = [b"".join(pending)]
        csend = self._csend
        for data in pending:
            if self._backlog:
                self._backlog.append(data)
                self._backlog_size += len(data)
                continue
            if csend is not None:
                rc = csend(self._ptrv, self._id, data)
            else:
                rc = self._send(self._ptr, self._id, data, len(data))
            if rc:
                self._unsent(data, rc)
                if rc != EQUEUEFULL:
                    return

    def _unsent(self, data: bytes, rc: int) -> None:
        """iocp_send refused data: the queue is full (it waits in the
        backlog for DRAIN), or the connection is ending (lost, as asyncio
        loses it, without an exception)."""
        if rc == EQUEUEFULL:
            self._backlog.append(data)
            self._backlog_size += len(data)
        else:
            self._lost_writes += 1

    def writelines(self, list_of_data: Any) -> None:
        """Write the concatenation of an iterable of bytes."""
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        """Half-close: send FIN after the queued bytes; receiving goes on."""
        if self._closing or self._eof_written:
            return
        self._eof_written = True
        self._shutdown_soon()

    def can_write_eof(self) -> bool:
        """Always True: TCP half-close is supported."""
        return True

    def get_write_buffer_size(self) -> int:
        """Bytes queued in the library and not yet sent."""
        if self._ended:
            return 0
        n = ctypes.c_uint64()
        if self._native._lib.iocp_queued(self._ptr, self._id, ctypes.byref(n)) < 0:
            return self._backlog_size + self._pending_size
        return n.value + self._backlog_size + self._pending_size

    def get_write_buffer_limits(self) -> Tuple[int, int]:
        """The (low, high) marks of pause_writing/resume_writing."""
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: Optional[int] = None,
                                low: Optional[int] = None) -> None:
        """Set the marks (as asyncio does: high defaults to HIGH_WATER or 4 * low, low to high // 4)."""
        if high is None:
            high = 4 * low if low is not None else HIGH_WATER
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        if not self._ended:
            self._native._lib.iocp_set_drain_mark(self._ptr, self._id, low)
        self._unsure = self._high + 1   # look at the queue now
        self._check_high()

    # -- internals --

    def _shutdown_soon(self) -> None:
        self._flush()                   # this turn's writes go before the FIN
        if self._backlog:
            self._shutdown_due = True   # after the backlog (_drained)
        elif not self._ended:
            self._native._lib.iocp_shutdown(self._ptr, self._id)

    def _check_high(self) -> None:
        if self._writing_paused or self._ended:
            return
        size = self.get_write_buffer_size()
        self._unsure = size - self._backlog_size
        if size > self._high:
            self._writing_paused = True
            self._call("pause_writing")

    def _drained(self, queued: int) -> None:
        """DRAIN: the library's queue fell to the low mark (or has room
        again after EQUEUEFULL)."""
        sent = 0
        while self._backlog:
            data = self._backlog[0]
            rc = self._send(self._ptr, self._id, data, len(data))
            if rc == EQUEUEFULL:
                break                   # another DRAIN follows
            self._backlog.popleft()
            self._backlog_size -= len(data)
            if rc:
                self._backlog.clear()
                self._backlog_size = 0
                break
            sent += len(data)
        self._unsure = queued + sent
        if not self._backlog and self._shutdown_due:
            self._shutdown_due = False
            self._native._lib.iocp_shutdown(self._ptr, self._id)
        if self._writing_paused and queued + sent + self._backlog_size <= self._low:
            self._writing_paused = False
            self._call("resume_writing")

    def _data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._reading_paused or self._held:
            self._held.append(data)     # at most one receive after pause_reading
            return
        self._protocol_data(data)

    def _protocol_data(self, data: bytes) -> None:
        try:
            self._protocol.data_received(data)  # type: ignore[attr-defined]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal(exc, "Fatal error: protocol.data_received() call failed.")

    def _eof_received(self) -> None:
        if self._closing:
            return
        if self._held or self._reading_paused:
            self._eof_due = True        # after the bytes held while paused
            return
        try:
            keep_open = self._protocol.eof_received()  # type: ignore[attr-defined]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    def _connection_lost(self, reason: int) -> None:
        self._ended = True
        if reason == REASON_TLS_TRUNCATED and not self._closing:
            self._truncated()
        self._closing = True
        self._held.clear()
        self._backlog.clear()
        self._pending.clear()
        self._pending_size = 0
        if self._linger is not None:
            self._linger.cancel()
        exc: Optional[Exception] = None
        if reason == REASON_RESET:
            exc = ConnectionResetError("Connection reset by peer")
        elif reason == REASON_IDLE_TIMEOUT:
            exc = TimeoutError("idle timeout")
        elif reason == REASON_TLS_ERROR:
            exc = error(ETLS, "TLS record failed")     # a TlsError: an ssl.SSLError
        try:
            self._protocol.connection_lost(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as e:
            self._loop.call_exception_handler({
                "message": "Exception in protocol.connection_lost()", "exception": e,
                "transport": self, "protocol": self._protocol})

    def _truncated(self) -> None:
        """TLS: the peer's FIN came without close_notify. Its bytes held
        while paused, then eof_received(), as asyncio's own TLS transports
        report a FIN (the Server API's on_disconnect tells it apart:
        Reason.TLS_TRUNCATED); connection_lost(None) follows."""
        while self._held and not self._closing:
            self._protocol_data(self._held.popleft())
        if not self._closing:
            self._call("eof_received")

    def _call(self, name: str) -> None:
        try:
            getattr(self._protocol, name)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({
                "message": f"protocol.{name}() failed.", "exception": exc,
                "transport": self, "protocol": self._protocol})

    def _fatal(self, exc: BaseException, message: str) -> None:
        self._loop.call_exception_handler({
            "message": message, "exception": exc, "transport": self,
            "protocol": self._protocol})
        self.abort()


class IocpServer(asyncio.AbstractServer):
    """What create_server() returns: asyncio.Server's interface over one
    library server (close, wait_closed, serve_forever, start_serving,
    is_serving, sockets, get_loop, async with), plus close_clients(),
    abort_clients() and a graceful stop(timeout).

    close() stops taking connections (new ones are refused) and leaves the
    open ones to their protocols, as asyncio's does; once the last has
    ended the library server is destroyed and wait_closed() returns.
    Cancelling serve_forever() closes the server and aborts its
    connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol_factory: ProtocolFactory,
                 native: Any, family: int, address: Tuple[Any, ...]) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._native = native
        self._lib = native._lib
        self._listener = ListenSocket(family, address)
        self._conns: Dict[int, IocpTransport] = {}
        self._high, self._low = HIGH_WATER, LOW_WATER
        self._closed = False
        self._stopped = False          # iocp_stop called
        self._helper: Optional[threading.Thread] = None
        self._fd: Optional[int] = None  # the wait handle, when the loop drains (see above)
        # Released by the loop when it has delivered a batch; the helper
        # takes it before releasing the batch (the next iocp_wait).
        self._delivered = threading.Lock()
        self._delivered.acquire()
        self._view = memoryview(native._events).cast("B")
        self._events_addr = ctypes.addressof(native._events)
        self._unpack = struct.Struct(EVENT_FORMAT).iter_unpack
        self._refusals: List[int] = []
        # The loop's own batches: ids accepted in the one it holds, closes
        # waiting for its release (_close_conn), whether a _poll is owed.
        self._fresh: Set[int] = set()
        self._deferred: List[int] = []
        self._owed = False
        self._inline = False
        # The C accelerator (_accel.py), or None: the pure-Python path.
        self._speedups = speedups(self._lib)
        self._ptrv: int = native._ptr.value or 0
        self._csend = self._speedups.send if self._speedups is not None else None
        self._flushing: List[IocpTransport] = []  # transports with writes this turn
        self._done: asyncio.Future[None] = loop.create_future()
        self._serving_forever: Optional[asyncio.Future[None]] = None

    def __repr__(self) -> str:
        return f"<iocpsrv.IocpServer sockets={self.sockets!r}>"

    # -- asyncio.Server --

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the server runs on."""
        return self._loop

    @property
    def sockets(self) -> Tuple[ListenSocket, ...]:
        """The listening socket (a stand-in; the library owns it), empty once closed."""
        return () if self._closed else (self._listener,)

    def is_serving(self) -> bool:
        """True while the server accepts connections."""
        return (self._helper is not None or self._fd is not None) and not self._closed

    async def start_serving(self) -> None:
        """Start accepting; returns at once (idempotent)."""
        self._start()
        await asyncio.sleep(0)

    async def serve_forever(self) -> None:
        """Serve until cancelled; cancelling closes the server."""
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        self._start()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                self.abort_clients()
                await asyncio.shield(self._done)
            finally:
                raise
        finally:
            self._serving_forever = None

    def close(self) -> None:
        """Stops taking connections; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()
        if not self._conns:
            self._stop()
        self._kick()

    def close_clients(self) -> None:
        """Close every connection gracefully (half-close, then close)."""
        for tr in list(self._conns.values()):
            tr.close()

    def abort_clients(self) -> None:
        """Reset every connection at once."""
        for tr in list(self._conns.values()):
            tr.abort()
        self._kick()

    async def wait_closed(self) -> None:
        """As the running Python's asyncio.Server.wait_closed(): from 3.12
        on, returns once the server is closed and its connections have
        ended (the library server is then released); before 3.12, as soon
        as it is closed, leaving open connections to their protocols.
        Idempotent."""
        if sys.version_info < (3, 12) and self._closed and self._conns:
            return
        await asyncio.shield(self._done)

    async def stop(self, timeout: float = 5.0) -> None:
        """Graceful stop: close(), close every connection (buffered bytes go
        out, then FIN), wait up to `timeout` seconds for them to end, then
        abort the rest. Returns when the server is released."""
        self.close()
        self.close_clients()
        try:
            await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except asyncio.TimeoutError:
            self.abort_clients()
            await asyncio.shield(self._done)

    async def __aenter__(self) -> IocpServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    # -- the helper thread and the loop's side --

    def _start(self) -> None:
        if self._helper is not None or self._fd is not None or self._closed:
            return
        if _loop_drains(self._loop):
            fd = ctypes.c_ssize_t(-1)
            rc = self._lib.iocp_wait_handle(self._native._ptr, ctypes.byref(fd))
            if rc < 0:
                raise IocpError(rc, "iocp_wait_handle")
            self._loop.add_reader(fd.value, self._ready)
            self._fd = fd.value
            return
        self._helper = threading.Thread(target=self._drain, daemon=True,
                                        name=f"iocpsrv-asyncio:{self._listener._address[1]}")
        self._helper.start()

    def _stop(self) -> None:
        """iocp_stop: every connection ends, the helper takes the last events
        and returns (IOCP_ECLOSED); then the server is destroyed."""
        if self._stopped:
            return
        self._stopped = True
        self._lib.iocp_stop(self._native._ptr)
        if self._helper is None and self._fd is None:
            self._release()

    def _release(self) -> None:
        if not self._native.closed:
            self._native.destroy()
        if not self._done.done():
            self._done.set_result(None)

    def _drain(self) -> None:
        """The helper thread (see the module's text). It only waits: the
        loop decodes the batch it is handed (the bytes stay valid until the
        next iocp_wait, which waits for the loop), so a batch costs one
        call_soon_threadsafe and one lock hand-over, and no event is copied
        twice."""
        native = self._native
        loop = self._loop
        lib = self._lib
        wait = lib.iocp_wait
        ptr: Any = native._ptr
        if self._speedups is not None:
            wait, ptr = self._speedups.wait, self._ptrv
        addr = ctypes.addressof(native._events)
        batch = native._batch
        delivered = self._delivered
        deliver = self._deliver
        lost = False
        try:
            begin_serving(native)
            while True:
                n = wait(ptr, addr, batch, -1)
                if n == ECLOSED:
                    break
                if n < 0:
                    raise IocpError(n, "iocp_wait")
                if n == 0 or lost:
                    continue
                try:
                    loop.call_soon_threadsafe(deliver, n)
                except RuntimeError:    # the loop is closed: end everything
                    lost = True
                    lib.iocp_stop(ptr)
                    continue
                while not delivered.acquire(timeout=0.25):
                    if loop.is_closed():
                        lost = True
                        lib.iocp_stop(ptr)
                        break
                for id in self._refusals:   # on the thread holding the batch
                    lib.iocp_close(ptr, id)
                self._refusals.clear()
        except BaseException as exc:
            print(f"iocpsrv: the asyncio helper thread failed: {exc!r}", file=sys.stderr)
            lib.iocp_stop(ptr)
        finally:
            native._drainer = None
            native._serving.set()
            try:
                loop.call_soon_threadsafe(self._helper_done)
            except RuntimeError:
                pass

    def _to_flush(self, tr: IocpTransport) -> None:
        """tr has its first write of this turn: _flush them all when it ends."""
        if not self._flushing:
            self._loop.call_soon(self._flush)
        self._flushing.append(tr)

    def _flush(self) -> None:
        """The turn has ended: its writes go to the library (a connection's
        one write straight to the accelerator's send; the rest through the
        transport's _flush)."""
        flushing, self._flushing = self._flushing, []
        csend, ptrv = self._csend, self._ptrv
        for tr in flushing:
            pending = tr._pending
            if (csend is not None and len(pending) == 1 and not tr._backlog
                    and not tr._ended):
                tr._pending = []
                tr._pending_size = 0
                rc = csend(ptrv, tr._id, pending[0])
                if rc:
                    tr._unsent(pending[0], rc)
            else:
                tr._flush()

    def _ready(self) -> None:
        """In the loop: the wait handle is ready (see the module's text)."""
        self._owed = False
        n = self._wait_inline()
        if n < 0:
            self._handle_done(n)
        elif n > 0:
            self._take(n, True)

    def _wait_inline(self) -> int:
        """iocp_wait(0) on the loop's thread: releases the batch the loop
        holds, then closes the connections whose close waited for that
        (_close_conn), and takes the next batch."""
        self._fresh.clear()
        n = ECLOSED
        try:
            if self._speedups is not None:
                n = self._speedups.wait(self._ptrv, self._events_addr, self._native._batch, 0)
            else:
                n = self._lib.iocp_wait(self._native._ptr, self._events_addr,
                                        self._native._batch, 0)
        finally:
            deferred, self._deferred = self._deferred, []
            for id in deferred:
                self._lib.iocp_close(self._native._ptr, id)
        return n

    def _close_conn(self, id: int) -> None:
        """A transport's reset. The thread that holds a batch refuses a
        connection whose ACCEPTED is in it by closing it (no event follows,
        not even DISCONNECTED): so a connection accepted in the batch the
        loop holds is closed once the batch is released, soon."""
        if id in self._fresh:
            self._deferred.append(id)
            self._owe_poll()
        else:
            self._lib.iocp_close(self._native._ptr, id)

    def _kick(self) -> None:
        """On the way out (close, abort_clients): makes sure the batch the
        loop holds is released soon even if the _poll scheduled for it was
        cut short (a KeyboardInterrupt raised inside it before 3.11's
        asyncio.run turned Ctrl-C into a cancellation): the events that end
        the connections come only after the release."""
        if self._fd is not None:
            self._owe_poll()                     # always safe: _ready
        elif self._owed:
            self._loop.call_soon(self._poll)     # the helper waits for it

    def _owe_poll(self) -> None:
        """Schedules _poll, which releases the batch the loop holds (or
        hands it back to the helper). Safe to call more often than needed
        (_poll does nothing when nothing is owed), so paths that must not
        depend on a scheduled _poll having run (one a KeyboardInterrupt cut
        short, say) call it again."""
        self._owed = True
        self._loop.call_soon(self._poll)

    def _handle_done(self, n: int) -> None:
        """The loop drained the last events (IOCP_ECLOSED), or iocp_wait
        failed: no more reading; the server is destroyed."""
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None
        if n != ECLOSED:
            self._loop.call_exception_handler({
                "message": "iocpsrv: iocp_wait failed; the server stops",
                "exception": IocpError(n, "iocp_wait")})
            self._lib.iocp_stop(self._native._ptr)
        self._helper_done()

    def _helper_done(self) -> None:
        for tr in list(self._conns.values()):   # only when the helper failed
            tr._connection_lost(0)
        self._conns.clear()
        self._release()

    def _deliver(self, n: int) -> None:
        """In the loop: the batch of n events the helper took."""
        self._take(n, False)

    def _take(self, n: int, inline: bool) -> None:
        """Delivers a batch, then lets the loop run what it made ready (the
        streams' tasks, say) and takes the next batch itself with
        iocp_wait(0) (_poll): while events keep coming, the helper and its
        hand-over (a self-pipe write and two thread wake-ups per batch)
        stay out of the way. `inline`: this thread took the batch (and so
        refuses the connections it turned down itself)."""
        self._inline = inline
        handed_back = False
        try:
            self._deliver_batch(n)
            if self._refusals and not inline:
                handed_back = True      # the helper holds this batch: it refuses them
                self._delivered.release()
                return
            for id in self._refusals:
                self._lib.iocp_close(self._native._ptr, id)
            self._refusals.clear()
        finally:
            if not handed_back:
                self._owe_poll()        # also when a handler raised through

    def _poll(self) -> None:
        """Releases the batch delivered last and takes the next one, if any
        is queued; else hands waiting back to the helper (or to the wait
        handle's reader). Nothing when nothing is owed."""
        if not self._owed:
            return
        self._owed = False
        if self._fd is not None:
            self._ready()
            return
        n = ECLOSED
        try:
            n = self._wait_inline()
        finally:
            if n <= 0:
                self._delivered.release()
        if n > 0:
            self._take(n, True)

    def _deliver_batch(self, n: int) -> None:
        if self._speedups is not None:
            # DATA in C, the rest through _event.
            self._speedups.deliver(self._conns, self._events_addr, n, self._event)
            return
        conns = self._conns
        string_at = ctypes.string_at
        for t, value, id, data, length, _ctx in self._unpack(self._view[:n * EVENT_SIZE]):
            if t == EVENT_DATA:
                tr = conns.get(id)
                if tr is not None:
                    tr._data_received(string_at(data, length))
            else:
                self._event(t, value, id, data, length)

    def _event(self, t: int, value: int, id: int, data: int, length: int) -> None:
        """One event other than DATA (from _deliver_batch's loop, or the
        accelerator's way to Python)."""
        conns = self._conns
        if t == EVENT_ACCEPTED:
            self._accept(id, ctypes.string_at(data, length).decode("ascii"), value)
        elif t == EVENT_DRAIN:
            tr = conns.get(id)
            if tr is not None:
                tr._drained(length)
        elif t == EVENT_PEER_CLOSED:
            tr = conns.get(id)
            if tr is not None:
                tr._eof_received()
        elif t == EVENT_DISCONNECTED:
            tr = conns.pop(id, None)
            if tr is not None:
                tr._connection_lost(value)
            if self._closed and not conns:
                self._stop()

    def _accept(self, id: int, host: str, port: int) -> None:
        if self._closed:
            self._refusals.append(id)
            return
        try:
            protocol = self._factory()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({
                "message": "protocol_factory() failed; connection refused", "exception": exc})
            self._refusals.append(id)
            return
        peer: Tuple[Any, ...] = (host, port, 0, 0) if ":" in host else (host, port)
        sockname: Tuple[Any, ...] = self._listener.getsockname()
        try:
            local, lport = self._native.local_address(id)
            sockname = (local, lport, 0, 0) if ":" in local else (local, lport)
        except IocpError:
            pass  # closing already: the listening address will do
        extra = {"peername": peer, "sockname": sockname, "socket": None}
        if self._native.tls is not None:
            _rc, info = read_info(self._lib, self._native._ptr, id)
            if info is not None:
                extra.update(extra_info(info))
        tr = IocpTransport(self, id, protocol, extra)
        self._conns[id] = tr
        if self._inline:
            self._fresh.add(id)         # see _close_conn
        try:
            protocol.connection_made(tr)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            tr._fatal(exc, "protocol.connection_made() failed.")


def _loop_drains(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the loop's own thread drains (a loop that watches
    descriptors, off Windows), rather than a helper thread."""
    if sys.platform == "win32" or os.environ.get("IOCPSRV_ASYNCIO_HELPER") == "1":
        return False
    try:
        add_reader = type(loop).add_reader
    except AttributeError:
        return False
    return add_reader is not asyncio.AbstractEventLoop.add_reader


async def _resolve(loop: asyncio.AbstractEventLoop, host: Optional[str],
                   port: int) -> Tuple[str, int, bool]:
    """(numeric address, family, dual_stack) for `host`: None or "" listen
    on every address (IPv6 and IPv4 when the system has IPv6); a name is
    resolved with the loop's getaddrinfo, IPv4 preferred. One address only:
    a sequence of hosts is refused (TypeError)."""
    if not isinstance(host, (str, type(None))):
        raise TypeError(f"iocpsrv listens on one address: host must be a str or None, "
                        f"not {type(host).__name__}")
    if host is None or host == "":
        return "::", socket.AF_INET6, True
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}) returned nothing")
    for family, _t, _p, _c, sockaddr in infos:
        if family == socket.AF_INET:
            return sockaddr[0], family, False
    family, _t, _p, _c, sockaddr = infos[0]
    return sockaddr[0], family, False


async def create_server(protocol_factory: ProtocolFactory, host: Optional[str] = None,
                        port: int = 0, *, backlog: int = 100, start_serving: bool = True,
                        threads: int = 0, recv_buffer_size: int = 0,
                        max_send_queue: int = 0, ssl: Optional[TlsConfig] = None,
                        ssl_handshake_timeout: Optional[float] = None,
                        **ignored: Any) -> IocpServer:
    """loop.create_server() on the core: a TCP server on `host` (a name,
    a numeric address, or None for every address) and `port` (0 picks
    one: read it from server.sockets[0].getsockname()[1]). Each connection
    gets protocol_factory()'s protocol and an IocpTransport. Keyword
    arguments of loop.create_server that only tune sockets (reuse_address,
    reuse_port, family, flags, ssl_shutdown_timeout) are accepted and
    ignored; sock is not supported (TypeError).

    ssl=iocpsrv.TlsConfig(pkcs12, password) serves TLS, done by the
    library: connection_made comes after the handshake, and
    get_extra_info() has "ssl_object" (an iocpsrv.TlsInfo answering as
    ssl.SSLObject does), "cipher", "tls_version" and "alpn". A peer's
    close_notify is eof_received(); a FIN without it, too (as asyncio's
    TLS transports do), then connection_lost(None). ssl_handshake_timeout
    (seconds) overrides the TlsConfig's. An ssl.SSLContext cannot be used
    (TypeError): Python's ssl module takes no part."""
    if ignored.get("sock") is not None:
        raise TypeError("iocpsrv.create_server does not support sock=")
    tls = as_server_tls(ssl, "ssl")
    if ssl_handshake_timeout is not None:
        if tls is None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        tls = copy.copy(tls)
        tls.handshake_timeout = ssl_handshake_timeout
    from .server import Server
    loop = asyncio.get_running_loop()
    address, family, dual = await _resolve(loop, host, port)
    native = Server(port=port, bind=address, dual_stack=dual, thread=False, threads=threads,
                    backlog=backlog, recv_buffer_size=recv_buffer_size,
                    max_send_queue=max_send_queue, drain_mark=LOW_WATER,
                    on_peer_closed=_unused, on_drain=_unused, tls=tls)
    bound = native.listen_address
    sockname: Tuple[Any, ...] = (bound[0], bound[1], 0, 0) if ":" in bound[0] else bound
    server = IocpServer(loop, protocol_factory, native, family, sockname)
    if start_serving:
        server._start()
    return server


def _unused(*_args: Any) -> None:
    """Asks the library for PEER_CLOSED and DRAIN events (IocpServer handles
    them itself)."""


async def start_server(client_connected_cb: ClientConnected, host: Optional[str] = None,
                       port: int = 0, *, limit: int = 2 ** 16, **kwds: Any) -> IocpServer:
    """asyncio.start_server() on the core: client_connected_cb(reader, writer)
    gets asyncio's own StreamReader and StreamWriter; `limit` is the
    reader's buffer limit, past which it pauses reading (and so the
    library stops receiving from that peer). Other keywords are
    create_server's: ssl=iocpsrv.TlsConfig(...) serves TLS
    (writer.get_extra_info("ssl_object").version() ...)."""
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.BaseProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await create_server(factory, host, port, **kwds)
