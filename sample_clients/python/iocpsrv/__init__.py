"""iocpsrv from Python: a small ctypes binding of api/iocpsrv.h.

    import iocpsrv

    def on_data(server, conn, data):
        server.send(conn, data)            # echo

    with iocpsrv.Server(port=0, on_data=on_data) as server:
        print("listening on port", server.port)
        input()

The library is ``iocpsrv.dll`` on Windows and ``libiocpsrv.so`` elsewhere.
The environment variable ``IOCPSRV_LIBRARY``, when set, names the file to
load; otherwise the module's own folder comes first (the wheel ships the
library there), then the platform's normal search (the program's folder and
PATH on Windows; LD_LIBRARY_PATH and the system's folders on Linux, where
the installed ``libiocpsrv.so.1`` is tried before the development link
``libiocpsrv.so``). It is loaded on first use (or by
calling :func:`load`), and refused with :class:`LibraryError` unless its
``iocp_version()`` is compatible with the header this module mirrors: same
major version, equal or newer minor (the header's IOCP_VERSION_COMPATIBLE).

Two delivery modes (the library's iocp_config.delivery):

- ``mode="queue"`` (the default): the library queues events and one Python
  thread takes them in batches (one foreign call per batch, iocp_wait), then
  calls your handlers. By default that thread is the module's own, started
  with the server; with ``thread=False`` run the loop yourself with
  :meth:`Server.serve_forever` (blocking) or ``await server.serve_async()``
  (asyncio: handlers may be coroutines, awaited in order per connection).
  This is several times faster than callbacks: no thread has to win the GIL
  once per event.
- ``mode="callbacks"``: ctypes callbacks on the library's worker threads
  (ctypes takes the GIL for each callback and releases it during every call
  into the library).

In both modes handlers of one connection never overlap and arrive in order
(on_connect, then on_data/on_sent/on_peer_closed, then on_disconnect exactly
once), and handlers may call send(), shutdown(), close(id) and queued() for
any connection. Keep handlers short: in queue mode they share one thread.

Exceptions never cross into native code: each callback is wrapped, and an
exception is passed to the ``on_error`` hook (default: print a traceback to
stderr). An exception in ``on_connect`` refuses that connection.

Only the standard library is used (Python 3.11).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import os
import struct
import sys
import threading
import traceback
import weakref
from typing import Any, Callable, Optional, Tuple, Union

__all__ = [
    "VERSION_MAJOR", "VERSION_MINOR", "VERSION_PATCH", "VERSION_NUMBER",
    "version_compatible", "load", "version", "version_string", "strerror", "err_name",
    "IocpError", "LibraryError", "Server",
    "REASON_PEER_CLOSED", "REASON_RESET", "REASON_LOCAL_CLOSE", "REASON_DESTROY",
    "EVENT_ACCEPTED", "EVENT_DATA", "EVENT_SENT", "EVENT_PEER_CLOSED", "EVENT_DISCONNECTED",
    "EVENT_CONNECT_FAILED", "EVENT_LOG", "EVENT_DRAIN",
    "LOG_ERROR", "LOG_WARN", "LOG_INFO", "ADDRSTRLEN",
    "REASON_IDLE_TIMEOUT", "REASON_STOP_DEADLINE", "MAX_TIMEOUT_MS", "MAX_KEEPALIVE_MS",
]

# ---- Mirror of the header --------------------------------------------------

# The header version this module was written against (IOCP_VERSION_*).
VERSION_MAJOR = 1
VERSION_MINOR = 1
VERSION_PATCH = 0
VERSION_NUMBER = (VERSION_MAJOR << 16) | (VERSION_MINOR << 8) | VERSION_PATCH

# enum iocp_errno (codes are never renumbered).
OK = 0
EINVAL = -1
ENOMEM = -2
ENOTFOUND = -3
ESHUTDOWN = -4
EQUEUEFULL = -5
EADDRINUSE = -6
EADDRNOTAVAIL = -7
EVERSION = -8
EINCALLBACK = -9
ESYSTEM = -10
EACCES = -11
EAFNOSUPPORT = -12
ECLOSED = -13
EMODE = -14
EBUSY = -15
ECONNREFUSED = -16
ETIMEDOUT = -17
EUNREACH = -18
EMFILE = -19
ESTOPPED = -20

# enum iocp_reason, passed to on_disconnect.
REASON_PEER_CLOSED = 1
REASON_RESET = 2
REASON_LOCAL_CLOSE = 3
REASON_DESTROY = 4
REASON_IDLE_TIMEOUT = 5
REASON_STOP_DEADLINE = 6

# Limits of the 1.1 controls (IOCP_MAX_TIMEOUT_MS, IOCP_MAX_KEEPALIVE_MS).
MAX_TIMEOUT_MS = 2147483647
MAX_KEEPALIVE_MS = 32767000

# enum iocp_delivery (iocp_config.delivery).
DELIVERY_CALLBACKS = 0
DELIVERY_QUEUE = 1

# enum iocp_event_type (iocp_event.type); IOCP_EVENT_BIT(t) is 1 << t.
EVENT_ACCEPTED = 1
EVENT_DATA = 2
EVENT_SENT = 3
EVENT_PEER_CLOSED = 4
EVENT_DISCONNECTED = 5
EVENT_CONNECT_FAILED = 6
EVENT_LOG = 7
EVENT_DRAIN = 8

# IOCP_LOG_QUEUE_MAX: LOG events waiting at once at most.
LOG_QUEUE_MAX = 16

# struct iocp_event: 40 bytes, the same layout on every platform
# (uint32 type, int32 value, uint64 id, uint64 data, uint64 len, uint64
# context), native byte order, no padding. Decoded with struct rather than a
# ctypes Structure: one unpack per event instead of one attribute access per
# field.
EVENT_FORMAT = "=IiQQQQ"
EVENT_SIZE = struct.calcsize(EVENT_FORMAT)
assert EVENT_SIZE == 40
# enum iocp_log_level, passed to on_log (lower is more severe).
LOG_ERROR = 1
LOG_WARN = 2
LOG_INFO = 3

# IOCP_ADDRSTRLEN: room for any address iocp_listen_address() writes.
ADDRSTRLEN = 64


def version_compatible(loaded: int) -> bool:
    """IOCP_VERSION_COMPATIBLE(loaded): same major, equal or newer minor."""
    return (((loaded >> 16) & 0xFF) == VERSION_MAJOR
            and (loaded & 0xFFFF00) >= (VERSION_NUMBER & 0xFFFF00))


# The callbacks Server takes (connection ids are ints); see Server.
ConnectHandler = Callable[["Server", int, str, int], Optional[bool]]
DataHandler = Callable[["Server", int, bytes], None]
SentHandler = Callable[["Server", int, int], None]
PeerClosedHandler = Callable[["Server", int], None]
DisconnectHandler = Callable[["Server", int, int], None]
ConnectFailedHandler = Callable[["Server", int, int], None]
LogHandler = Callable[["Server", int, int, str], None]
DrainHandler = Callable[["Server", int, int], None]
ErrorHandler = Callable[["Server", str, BaseException], None]
Buffer = Union[bytes, bytearray, memoryview]

# iocp_server * is opaque: a c_void_p. iocp_conn_id is uint64_t.
_server_p = ctypes.c_void_p
_conn_id = ctypes.c_uint64

# Callback types: IOCP_CALL is cdecl, which is what CFUNCTYPE produces.
# Pointers the callback only looks at are declared c_void_p so that ctypes
# hands Python a plain address (no automatic conversion of the buffer).
ON_CONNECT = ctypes.CFUNCTYPE(ctypes.c_int, _server_p, ctypes.c_void_p, _conn_id,
                              ctypes.c_void_p, ctypes.c_uint16)
ON_DATA = ctypes.CFUNCTYPE(None, _server_p, ctypes.c_void_p, _conn_id,
                           ctypes.c_void_p, ctypes.c_size_t)
ON_SENT = ctypes.CFUNCTYPE(None, _server_p, ctypes.c_void_p, _conn_id, ctypes.c_uint64)
ON_PEER_CLOSED = ctypes.CFUNCTYPE(None, _server_p, ctypes.c_void_p, _conn_id)
ON_DISCONNECT = ctypes.CFUNCTYPE(None, _server_p, ctypes.c_void_p, _conn_id, ctypes.c_int)
ON_LOG = ctypes.CFUNCTYPE(None, _server_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                          ctypes.c_void_p)
ON_CONNECT_FAILED = ctypes.CFUNCTYPE(None, _server_p, ctypes.c_void_p, _conn_id, ctypes.c_int)


ON_DRAIN = ctypes.CFUNCTYPE(None, _server_p, ctypes.c_void_p, _conn_id, ctypes.c_uint64)


class _Callbacks(ctypes.Structure):
    """struct iocp_callbacks (72 bytes on 64-bit, 40 on 32-bit)."""
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("reserved_", ctypes.c_uint32),
        ("on_connect", ON_CONNECT),
        ("on_data", ON_DATA),
        ("on_sent", ON_SENT),
        ("on_peer_closed", ON_PEER_CLOSED),
        ("on_disconnect", ON_DISCONNECT),
        ("on_log", ON_LOG),                        # 1.1
        ("on_connect_failed", ON_CONNECT_FAILED),  # 1.1
        ("on_drain", ON_DRAIN),                    # 1.1
    ]


class _Event(ctypes.Structure):
    """struct iocp_event (40 bytes everywhere). The layout's record: the
    drain loop reads the array with EVENT_FORMAT, which must agree."""
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("value", ctypes.c_int32),
        ("id", ctypes.c_uint64),
        ("data", ctypes.c_uint64),
        ("len", ctypes.c_uint64),
        ("context", ctypes.c_uint64),
    ]


assert ctypes.sizeof(_Event) == EVENT_SIZE


class _Config(ctypes.Structure):
    """struct iocp_config (88 bytes on 64-bit; the uint64s are 8-aligned)."""
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("port", ctypes.c_uint16),
        ("reserved_", ctypes.c_uint16),
        ("bind_address", ctypes.c_char_p),
        ("threads", ctypes.c_uint32),
        ("backlog", ctypes.c_uint32),
        ("accepts_posted", ctypes.c_uint32),
        ("recv_buffer_size", ctypes.c_uint32),
        ("max_send_queue", ctypes.c_uint64),
        ("nodelay", ctypes.c_uint32),
        ("reserved2_", ctypes.c_uint32),
        ("dual_stack", ctypes.c_uint32),           # 1.1
        ("reserved3_", ctypes.c_uint32),
        # 1.1
        ("idle_timeout_ms", ctypes.c_uint32),
        ("max_connections", ctypes.c_uint32),
        ("keepalive", ctypes.c_uint32),
        ("keepalive_idle_ms", ctypes.c_uint32),
        ("keepalive_interval_ms", ctypes.c_uint32),
        ("reserved4_", ctypes.c_uint32),
        ("drain_mark", ctypes.c_uint64),
        ("delivery", ctypes.c_uint32),             # 1.1, batched events
        ("queue_events", ctypes.c_uint32),
    ]


class _Statistics(ctypes.Structure):
    """struct iocp_statistics (72 bytes everywhere)."""
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("reserved_", ctypes.c_uint32),
        ("connections_accepted", ctypes.c_uint64),
        ("connections_refused", ctypes.c_uint64),
        ("connections_open", ctypes.c_uint64),
        ("bytes_received", ctypes.c_uint64),
        ("bytes_sent", ctypes.c_uint64),
        ("bytes_queued", ctypes.c_uint64),
        ("accept_errors", ctypes.c_uint64),
        ("system_errors", ctypes.c_uint64),
    ]


Statistics = collections.namedtuple(
    "Statistics", [name for name, _ in _Statistics._fields_[2:]])
Statistics.__doc__ = """A server's counters since it started (iocp_stats), a snapshot."""


# ---- Loading ---------------------------------------------------------------

class LibraryError(RuntimeError):
    """The library could not be loaded, lacks a function, or is incompatible."""


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


_SIGNATURES = {
    # name: (restype, argtypes)
    "iocp_version": (ctypes.c_uint32, []),
    "iocp_version_string": (ctypes.c_char_p, []),
    "iocp_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "iocp_err_name": (ctypes.c_char_p, [ctypes.c_int]),
    "iocp_config_init": (ctypes.c_int, [ctypes.POINTER(_Config), ctypes.c_uint32]),
    "iocp_create": (ctypes.c_int, [ctypes.POINTER(_Config), ctypes.POINTER(_Callbacks),
                                   ctypes.c_void_p, ctypes.POINTER(_server_p)]),
    "iocp_send": (ctypes.c_int, [_server_p, _conn_id, ctypes.c_char_p, ctypes.c_size_t]),
    "iocp_shutdown": (ctypes.c_int, [_server_p, _conn_id]),
    "iocp_close": (ctypes.c_int, [_server_p, _conn_id]),
    "iocp_queued": (ctypes.c_int, [_server_p, _conn_id, ctypes.POINTER(ctypes.c_uint64)]),
    "iocp_port": (ctypes.c_uint16, [_server_p]),
    "iocp_connection_count": (ctypes.c_uint64, [_server_p]),
    "iocp_destroy": (ctypes.c_int, [_server_p]),
    "iocp_wait": (ctypes.c_int, [_server_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int32]),
    "iocp_wake": (ctypes.c_int, [_server_p]),
    "iocp_stop": (ctypes.c_int, [_server_p]),
    "iocp_stats": (ctypes.c_int, [_server_p, ctypes.POINTER(_Statistics)]),
    "iocp_listen_address": (ctypes.c_int, [_server_p, ctypes.c_char_p, ctypes.c_size_t,
                                           ctypes.POINTER(ctypes.c_uint16)]),
    "iocp_connect": (ctypes.c_int, [_server_p, ctypes.c_char_p, ctypes.c_uint16,
                                    ctypes.POINTER(_conn_id)]),
    # 1.1
    "iocp_set_context": (ctypes.c_int, [_server_p, _conn_id, ctypes.c_void_p]),
    "iocp_get_context": (ctypes.c_int, [_server_p, _conn_id, ctypes.POINTER(ctypes.c_void_p)]),
    "iocp_pause_recv": (ctypes.c_int, [_server_p, _conn_id]),
    "iocp_resume_recv": (ctypes.c_int, [_server_p, _conn_id]),
    "iocp_set_drain_mark": (ctypes.c_int, [_server_p, _conn_id, ctypes.c_uint64]),
    "iocp_set_idle_timeout": (ctypes.c_int, [_server_p, _conn_id, ctypes.c_uint32]),
    "iocp_stop_graceful": (ctypes.c_int, [_server_p, ctypes.c_uint32]),
    "iocp_refused_count": (ctypes.c_uint64, [_server_p]),
}

_lib = None
_lib_lock = threading.Lock()


def _library_names():
    """The files to try, in order: IOCPSRV_LIBRARY alone when it is set, else
    the library in this module's folder, else the platform's search."""
    override = os.environ.get("IOCPSRV_LIBRARY")
    if override:
        return [override]
    names = ["iocpsrv.dll"] if sys.platform == "win32" else ["libiocpsrv.so.1", "libiocpsrv.so"]
    here = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(here, n) for n in names if os.path.isfile(os.path.join(here, n))] + names


def load() -> ctypes.CDLL:
    """Loads the library once and returns the ctypes.CDLL.

    Raises LibraryError when it cannot be found, lacks a function, or its
    version is not compatible with this module.
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
    return load().iocp_version()


def version_string() -> str:
    """iocp_version_string() of the loaded library, e.g. "1.1.0"."""
    return load().iocp_version_string().decode()


def strerror(code: int) -> str:
    """iocp_strerror(code) as str."""
    return load().iocp_strerror(code).decode()


def err_name(code: int) -> str:
    """iocp_err_name(code) as str, e.g. "IOCP_ENOTFOUND"."""
    return load().iocp_err_name(code).decode()


def _check(rc, what):
    if rc < 0:
        raise IocpError(rc, what)
    return rc


def _default_on_error(server, where, exc):
    print(f"iocpsrv: exception in {where} callback (ignored):", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)


# Callback objects of servers whose handle could not be destroyed (a Server
# garbage-collected on a worker thread): kept forever, since native code may
# still call them. Empty in correct programs.
_immortal = []


def _finalize(lib, ptr, keepalive, serving=None):
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
      mode="queue" or "callbacks" (see the module's documentation),
      thread=True (queue mode: drain on a thread of this module; False: call
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
                 on_drain: Optional[DrainHandler] = None) -> None:
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

        # Contexts: a token (the native context pointer) -> the Python object.
        self._contexts = {}
        self._context_seq = 0
        self._context_lock = threading.Lock()

        keepalive = []
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
            self._ending = {}   # id -> context object, during its last handler
        else:
            callbacks = self._callbacks(keepalive, on_connect, on_data, on_sent,
                                        on_peer_closed, on_disconnect, on_connect_failed, on_log,
                                        on_drain)
        self._keepalive = keepalive

        # The library stores the handle here before any callback can run, so
        # callbacks that fire before iocp_create() returns can already use it.
        self._ptr = _server_p()
        self._destroy_lock = threading.Lock()
        self._serve_lock = threading.Lock()
        self._drainer = None          # thread ident of the queue's drainer
        self._loop_thread = None      # serve_async: the event loop's thread
        self._serving = threading.Event()
        self._serving.set()           # set while nobody drains
        self._thread = None
        self._send = lib.iocp_send
        rc = lib.iocp_create(ctypes.byref(config),
                             ctypes.byref(callbacks) if callbacks is not None else None,
                             None, ctypes.byref(self._ptr))
        if rc < 0:
            self._ptr.value = None
            raise IocpError(rc, f"cannot listen on {bind} port {port}")
        self._finalizer = weakref.finalize(self, _finalize, lib, self._ptr, keepalive,
                                           self._serving if mode == "queue" else None)
        if mode == "queue" and thread:
            self._thread = threading.Thread(target=_serve_weakly, args=(weakref.ref(self),),
                                            name=f"iocpsrv:{self.port}", daemon=True)
            self._serving.clear()
            self._thread.start()

    def _callbacks(self, keepalive, on_connect=None, on_data=None, on_sent=None,
                   on_peer_closed=None, on_disconnect=None, on_connect_failed=None,
                   on_log=None, on_drain=None):
        # Callback mode. The trampolines refer to this object only weakly, so
        # an abandoned Server can still be collected (and then destroyed by
        # the finalizer).
        ref = weakref.ref(self)
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

    # -- queue mode: the drain loop --

    def _begin_serving(self):
        if self.mode != "queue":
            raise IocpError(EMODE, "serve_forever")
        if self._thread is not None and threading.current_thread() is not self._thread:
            raise RuntimeError("this server is drained by its own thread (thread=True)")
        self._handle()
        with self._serve_lock:
            if not self._serving.is_set() and threading.current_thread() is not self._thread:
                raise IocpError(EBUSY, "serve_forever")  # one drainer at a time
            self._serving.clear()
        self._drainer = threading.get_ident()

    def serve_forever(self) -> None:
        """Queue mode with thread=False: drains events on the calling thread
        and calls the handlers until the server is destroyed (from another
        thread, or stopped with stop()); every on_disconnect has run when it
        returns. Raises IocpError(EBUSY) if another thread is draining."""
        self._begin_serving()
        try:
            self._drain(self._dispatch_batch)
        finally:
            self._drainer = None
            self._serving.set()

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
        self._begin_serving()
        loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        tails = {}
        done = asyncio.Event()
        ready = threading.Event()

        refusals = []

        def deliver(batch):
            try:
                self._dispatch_events(batch, tails, refusals)
            finally:
                ready.set()

        def take(events):
            # On the helper thread: the handlers get copies (bytes), so the
            # batch may be released as soon as the loop has taken it. A
            # refusal is the close of the thread holding the batch: this one.
            batch = [self._decode(e) for e in events]
            ready.clear()
            loop.call_soon_threadsafe(deliver, batch)
            ready.wait()
            for id in refusals:
                self._lib.iocp_close(self._ptr, id)
            refusals.clear()

        def run():
            try:
                self._drain(take)
            except BaseException as e:
                self._report("iocp_wait", e)
            finally:
                loop.call_soon_threadsafe(done.set)

        helper = threading.Thread(target=run, name=f"iocpsrv-async:{self.port}", daemon=True)
        try:
            helper.start()
            self._drainer = helper.ident
            await done.wait()
            while tails:
                await asyncio.gather(*list(tails.values()), return_exceptions=True)
        finally:
            helper.join()
            self._drainer = None
            self._loop_thread = None
            self._serving.set()

    async def aclose(self) -> None:
        """For serve_async: closes every connection (abort()), waits (without
        blocking the loop) until every on_disconnect ran and serve_async
        ended, then destroys it."""
        self.abort()
        while not self._serving.is_set():
            await asyncio.sleep(0.005)  # serve_async ends on its own after stop()
        self.destroy()

    def _drain(self, dispatch):
        """The hot loop: one iocp_wait per batch, decoded with struct."""
        wait = self._lib.iocp_wait
        ptr = self._ptr
        buf = self._events
        addr = ctypes.addressof(buf)
        view = memoryview(buf).cast("B")
        batch = self._batch
        iter_unpack = struct.Struct(EVENT_FORMAT).iter_unpack
        while True:
            n = wait(ptr, addr, batch, -1)
            if n > 0:
                dispatch(iter_unpack(view[:n * EVENT_SIZE]))
            elif n == ECLOSED:
                return
            elif n < 0:
                raise IocpError(n, "iocp_wait")

    def _decode(self, event):
        # For serve_async: turn one event into (type, id, arg, context) with
        # copies, so the batch may be released at once.
        t, value, id, data, length, ctx = event
        if t == EVENT_DATA:
            return t, id, ctypes.string_at(data, length), ctx
        if t == EVENT_ACCEPTED:
            return t, id, (ctypes.string_at(data, length), value), ctx
        if t == EVENT_SENT or t == EVENT_DRAIN:
            return t, id, length, ctx
        if t == EVENT_LOG:
            return t, id, (value, _signed64(ctx), _log_text(data, length)), 0
        return t, id, value, ctx

    def _dispatch_batch(self, events):
        (on_connect, on_data, on_sent, on_peer_closed, on_disconnect, on_connect_failed,
         on_log, on_drain) = self._handlers
        string_at = ctypes.string_at
        for t, value, id, data, length, ctx in events:
            try:
                if t == EVENT_DATA:
                    if on_data is not None:
                        on_data(self, id, string_at(data, length))
                elif t == EVENT_ACCEPTED:
                    self._accepted(on_connect, id, string_at(data, length), value)
                elif t == EVENT_DISCONNECTED:
                    self._last(on_disconnect, id, value, ctx)
                elif t == EVENT_SENT:
                    on_sent(self, id, length)
                elif t == EVENT_DRAIN:
                    on_drain(self, id, length)
                elif t == EVENT_PEER_CLOSED:
                    on_peer_closed(self, id)
                elif t == EVENT_CONNECT_FAILED:
                    self._last(on_connect_failed, id, value, ctx)
                elif t == EVENT_LOG:
                    on_log(self, value, _signed64(ctx), _log_text(data, length))
                # Unknown types are skipped, as the header asks.
            except BaseException as e:
                self._report(_EVENT_NAMES.get(t, "event"), e)

    def _last(self, fn, id, value, ctx):
        # A connection's last event (DISCONNECTED, CONNECT_FAILED): the event
        # carries its context token, released once the handler returned.
        if not ctx:
            if fn is not None:
                fn(self, id, value)
            return
        with self._context_lock:
            self._ending[id] = self._contexts.get(ctx)
        try:
            if fn is not None:
                fn(self, id, value)
        finally:
            self._end_context(id, ctx)

    def _end_context(self, id, ctx):
        with self._context_lock:
            self._ending.pop(id, None)
            self._contexts.pop(ctx, None)

    def _accepted(self, on_connect, id, address, port, tails=None, refusals=None):
        keep = True
        if on_connect is not None:
            try:
                keep = on_connect(self, id, address.decode("ascii"), port)
                if tails is not None and asyncio.iscoroutine(keep):
                    self._schedule(tails, id, "on_connect", lambda _s, _i, c=keep: c, ())
                    keep = True
                keep = keep is None or bool(keep)
            except BaseException as e:
                self._report("on_connect", e)
                keep = False
        if not keep:
            # Refused: closed before the batch is released by the thread
            # holding it, so no other event comes for this id (not even
            # on_disconnect).
            self._release_context(id)
            if refusals is not None:
                refusals.append(id)   # serve_async: the helper thread closes it
            else:
                self._lib.iocp_close(self._ptr, id)

    def _dispatch_events(self, batch, tails, refusals):
        # serve_async, in the loop: decoded events, coroutines chained per id.
        (on_connect, on_data, on_sent, on_peer_closed, on_disconnect, on_connect_failed,
         on_log, on_drain) = self._handlers
        for t, id, arg, ctx in batch:
            if t == EVENT_ACCEPTED:
                # on_connect decides at once (the batch is released next).
                self._accepted(on_connect, id, arg[0], arg[1], tails, refusals)
                continue
            if t == EVENT_DATA:
                fn, args = on_data, (arg,)
            elif t == EVENT_SENT:
                fn, args = on_sent, (arg,)
            elif t == EVENT_DRAIN:
                fn, args = on_drain, (arg,)
            elif t == EVENT_PEER_CLOSED:
                fn, args = on_peer_closed, ()
            elif t == EVENT_DISCONNECTED or t == EVENT_CONNECT_FAILED:
                fn = on_disconnect if t == EVENT_DISCONNECTED else on_connect_failed
                if ctx:
                    with self._context_lock:
                        self._ending[id] = self._contexts.get(ctx)
                task = self._schedule(tails, id, _EVENT_NAMES[t], fn, (arg,)) if fn else None
                if ctx and task is None:
                    self._end_context(id, ctx)
                elif ctx:
                    task.add_done_callback(lambda _f, id=id, ctx=ctx: self._end_context(id, ctx))
                continue
            elif t == EVENT_LOG:
                # Not a connection's: in order among log messages only.
                fn, args = (lambda srv, _key, *a: on_log(srv, *a)), arg
                id = "log"
            else:
                continue
            if fn is None:
                continue
            self._schedule(tails, id, _EVENT_NAMES[t], fn, args)

    def _schedule(self, tails, id, where, fn, args):
        prev = tails.get(id)
        if prev is None:
            try:
                result = fn(self, id, *args)
            except BaseException as e:
                self._report(where, e)
                return
            if not asyncio.iscoroutine(result):
                return None
            task = asyncio.ensure_future(self._guard(where, None, result))
        else:
            task = asyncio.ensure_future(self._guard(where, prev, (fn, id, args)))
        tails[id] = task
        task.add_done_callback(lambda f, id=id: tails.get(id) is f and tails.pop(id))
        return task

    async def _guard(self, where, prev, work):
        # Runs one handler after the connection's previous one finished.
        if prev is not None:
            await asyncio.gather(prev, return_exceptions=True)
        try:
            if isinstance(work, tuple):
                fn, id, args = work
                work = fn(self, id, *args)
            if asyncio.iscoroutine(work):
                await work
        except BaseException as e:
            self._report(where, e)

    # -- lifetime --

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
        if self in _running_callbacks() or (
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
                        self._drain(self._dispatch_batch)
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
                 tb: object) -> bool:
        """Destroys the server (see destroy()); exceptions propagate."""
        self.destroy()
        return False

    @property
    def closed(self) -> bool:
        """True once the server is destroyed."""
        return self._ptr.value is None

    def _handle(self):
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
        with self._context_lock:
            return self._contexts.get(token)

    def pause_reading(self, id: int) -> None:
        """Stops receiving on `id` (iocp_pause_recv): the peer's bytes stay in
        the kernel and TCP flow control slows it down. Inside this
        connection's on_data, no more data arrives until resume_reading()."""
        _check(self._lib.iocp_pause_recv(self._handle(), id), "iocp_pause_recv")

    def resume_reading(self, id: int) -> None:
        """Receives again after pause_reading() (iocp_resume_recv)."""
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
            return _check(self._lib.iocp_stop_graceful(ptr, ms), "iocp_stop_graceful")
        me = threading.get_ident()
        if me in (self._drainer, self._loop_thread):
            raise IocpError(EINCALLBACK, "iocp_stop_graceful")  # it would wait for itself
        with self._serve_lock:
            nobody = self._thread is None and self._serving.is_set()
            if nobody:
                self._serving.clear()
        if not nobody:
            return _check(self._lib.iocp_stop_graceful(ptr, ms), "iocp_stop_graceful")
        result = []
        stopper = threading.Thread(
            target=lambda: result.append(self._lib.iocp_stop_graceful(ptr, ms)),
            name=f"iocpsrv-stop:{self.port}", daemon=True)
        self._drainer = me
        try:
            stopper.start()
            self._drain(self._dispatch_batch)   # until IOCP_ECLOSED
        finally:
            stopper.join()
            self._drainer = None
            self._serving.set()
        return _check(result[0], "iocp_stop_graceful")

    async def astop(self, timeout: float = 5.0) -> int:
        """stop() for asyncio (serve_async): runs it on a helper thread so
        the loop keeps running the handlers meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(None, self.stop, timeout)

    @property
    def refused_count(self) -> int:
        """Connections refused because max_connections was reached."""
        return self._lib.iocp_refused_count(self._handle())

    def _context_token(self, id, missing_ok=False):
        p = ctypes.c_void_p()
        rc = self._lib.iocp_get_context(self._handle(), id, ctypes.byref(p))
        if rc < 0:
            if missing_ok:
                return None
            raise IocpError(rc, "iocp_get_context")
        return p.value

    def _release_token(self, token):
        if token is not None:
            with self._context_lock:
                self._contexts.pop(token, None)

    def _release_context(self, id):
        # In the connection's last callback: the library hands the token back
        # without a lookup; afterwards nobody can reach it.
        try:
            self._release_token(self._context_token(id, missing_ok=True))
        except BaseException as e:  # never into native code
            self._report("context release", e)

    @property
    def port(self) -> int:
        """The port listened on (useful after port=0)."""
        return self._lib.iocp_port(self._handle())

    def connect(self, host: str, port: int) -> int:
        """Opens an outbound connection (iocp_connect) and returns its id.

        `host` is a numeric IPv4 or IPv6 address ("127.0.0.1", "::1"): the
        library does no DNS; resolve names first, e.g. with
        socket.getaddrinfo(). The id gets the same callbacks as an accepted
        connection (on_connect once established, ...), or on_connect_failed
        as its only one. The id is returned before any callback for it can
        run in the sense that the library stores it first; take your own lock
        around connect() if callbacks look it up in your tables. Raises
        ValueError for a port outside 1..65535 and IocpError: EINVAL (not a
        numeric address), ECLOSED, EMFILE, ENOMEM, ESYSTEM."""
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} is not 1..65535")
        cid = _conn_id()
        _check(self._lib.iocp_connect(self._handle(), host.encode("ascii"), port,
                                      ctypes.byref(cid)), f"iocp_connect {host} port {port}")
        return cid.value

    @property
    def listen_address(self) -> Tuple[str, int]:
        """(address, port) the server listens on, e.g. ("::", 50000)."""
        buf = ctypes.create_string_buffer(ADDRSTRLEN)
        port = ctypes.c_uint16()
        _check(self._lib.iocp_listen_address(self._handle(), buf, ADDRSTRLEN,
                                             ctypes.byref(port)), "iocp_listen_address")
        return buf.value.decode("ascii"), port.value

    @property
    def connection_count(self) -> int:
        """Connections currently open."""
        return self._lib.iocp_connection_count(self._handle())

    def stats(self) -> Statistics:
        """The server's counters (a Statistics named tuple)."""
        st = _Statistics()
        st.size = ctypes.sizeof(st)
        _check(self._lib.iocp_stats(self._handle(), ctypes.byref(st)), "iocp_stats")
        return Statistics(*(getattr(st, name) for name in Statistics._fields))

    def _report(self, where, exc):
        try:
            self._on_error(self, where, exc)
        except BaseException as e2:  # the hook itself must not escape either
            _default_on_error(self, where + " on_error", e2)


_EVENT_NAMES = {EVENT_ACCEPTED: "on_connect", EVENT_DATA: "on_data", EVENT_SENT: "on_sent",
                EVENT_PEER_CLOSED: "on_peer_closed", EVENT_DISCONNECTED: "on_disconnect",
                EVENT_CONNECT_FAILED: "on_connect_failed", EVENT_LOG: "on_log",
                EVENT_DRAIN: "on_drain"}


def _signed64(v):
    # A LOG event's code travels as a uint64.
    return v - (1 << 64) if v >= 1 << 63 else v


def _log_text(data, length):
    return ctypes.string_at(data, length).decode("utf-8", "replace")


def _serve_weakly(ref):
    # The module's drain thread: holds the Server strongly only while it
    # serves, which is until the server is destroyed (the finalizer of an
    # abandoned server destroys it; the wait then returns IOCP_ECLOSED).
    server = ref()
    if server is None:
        return
    try:
        server.serve_forever()
    except BaseException as e:
        server._report("iocp_wait", e)


# ---- Trampolines: native -> Python, never letting an exception through ------

_tls = threading.local()


def _running_callbacks():
    """The Servers whose callbacks are running on this thread (innermost last)."""
    stack = getattr(_tls, "servers", None)
    if stack is None:
        stack = _tls.servers = []
    return stack


def _invoke(ref, where, fn, args, failed):
    """Calls fn(server, *args) on a worker thread; returns `failed` when the
    Server is gone or fn raised (the exception goes to on_error)."""
    server = ref()
    if server is None:
        return failed
    stack = _running_callbacks()
    stack.append(server)
    try:
        return fn(server, *args)
    except BaseException as e:
        server._report(where, e)
        return failed
    finally:
        stack.pop()


def _connect_trampoline(ref, fn):
    def call(server, id, address, port):
        if fn is None:
            return 0
        addr = ctypes.string_at(address).decode("ascii") if address else ""
        keep = fn(server, id, addr, port)
        return 0 if keep is None or keep else 1

    def on_connect(_server, _user, id, address, port):
        # A failing on_connect refuses: it never decided to keep the peer.
        refuse = _invoke(ref, "on_connect", call, (id, address, port), 1)
        if refuse:
            # No on_disconnect follows a refusal: release a context here.
            server = ref()
            if server is not None:
                server._release_context(id)
        return refuse
    return on_connect


def _disconnect_trampoline(ref, fn, where="on_disconnect"):
    # The connection's last callback (on_disconnect, on_connect_failed):
    # its context is released after it.
    def last(_server, _user, id, value):
        if fn is not None:
            _invoke(ref, where, fn, (id, value), None)
        server = ref()
        if server is not None:
            server._release_context(id)
    return last


def _data_trampoline(ref, fn):
    def call(server, id, data, length):
        # The buffer is valid only during the call: copy it into bytes.
        fn(server, id, ctypes.string_at(data, length) if length else b"")

    def on_data(_server, _user, id, data, length):
        _invoke(ref, "on_data", call, (id, data, length), None)
    return on_data


def _simple_trampoline(ref, fn, where):
    def callback(_server, _user, id, *args):
        _invoke(ref, where, fn, (id,) + args, None)
    return callback


def _log_trampoline(ref, fn):
    def call(server, level, code, text):
        fn(server, level, code, ctypes.string_at(text).decode("utf-8", "replace") if text else "")

    def on_log(_server, _user, level, code, text):
        _invoke(ref, "on_log", call, (level, code, text), None)
    return on_log
