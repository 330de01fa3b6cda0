"""iocpsrv from Python: a small ctypes binding of api/iocpsrv.h.

    import iocpsrv

    def on_data(server, conn, data):
        server.send(conn, data)            # echo

    with iocpsrv.Server(port=0, on_data=on_data) as server:
        print("listening on port", server.port)
        input()

The library is ``iocpsrv.dll`` on Windows and ``libiocpsrv.so`` elsewhere.
The environment variable ``IOCPSRV_LIBRARY``, when set, names the file to
load; otherwise the package's own folder comes first (the wheel ships the
library there), then the platform's normal search (the program's folder and
PATH on Windows; LD_LIBRARY_PATH and the system's folders on Linux, where
the installed ``libiocpsrv.so.1`` is tried before the development link
``libiocpsrv.so``). It is loaded on first use (or by
calling :func:`load`), and refused with :class:`LibraryError` unless its
``iocp_version()`` is compatible with the header this package mirrors: same
major version, equal or newer minor (the header's IOCP_VERSION_COMPATIBLE).

TLS is the library's own (OpenSSL 3 on Linux, SChannel on Windows): give
a server its PKCS#12 identity, and the handlers still see plaintext::

    tls = iocpsrv.TlsConfig("server.p12", "secret", alpn=["http/1.1"])
    iocpsrv.Server(port=443, tls=tls, on_data=...)
    await iocpsrv.start_server(handle, "0.0.0.0", 443, ssl=tls)

Two delivery modes (the library's iocp_config.delivery):

- ``mode="queue"`` (the default): the library queues events and one Python
  thread takes them in batches (one foreign call per batch, iocp_wait), then
  calls your handlers. By default that thread is the package's own, started
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

Only the standard library is used; CPython 3.9 to 3.13 are tested.

The package, by concern: _abi (the ctypes mirror of api/iocpsrv.h),
_loader (finding, loading and version-checking the library), errors,
server (the Server class), _queue and _asyncio (queue mode, drained by a
thread or by asyncio), _callbacks (callback mode).
"""

from ._abi import (  # noqa: F401  (the public names: the header's constants and types)
    ADDRSTRLEN, DELIVERY_CALLBACKS, DELIVERY_QUEUE, EACCES, EADDRINUSE, EADDRNOTAVAIL,
    EAFNOSUPPORT, EBUSY, ECLOSED, ECONNREFUSED, EINCALLBACK, EINVAL, EMFILE, EMODE, ENOMEM,
    ENOTFOUND, EQUEUEFULL, ESHUTDOWN, ESTOPPED, ESYSTEM, ETIMEDOUT, EUNREACH, EVENT_ACCEPTED,
    EVENT_CONNECT_FAILED, EVENT_DATA, EVENT_DISCONNECTED, EVENT_DRAIN, EVENT_FORMAT, EVENT_LOG,
    EVENT_PEER_CLOSED, EVENT_SENT, EVENT_SIZE, EVERSION, LOG_ERROR, LOG_INFO, LOG_QUEUE_MAX,
    LOG_WARN, MAX_KEEPALIVE_MS, MAX_TIMEOUT_MS, OK, ON_CONNECT, ON_CONNECT_FAILED, ON_DATA,
    ON_DISCONNECT, ON_DRAIN, ON_LOG, ON_PEER_CLOSED, ON_SENT, REASON_DESTROY,
    REASON_IDLE_TIMEOUT, REASON_LOCAL_CLOSE, REASON_PEER_CLOSED, REASON_RESET,
    REASON_STOP_DEADLINE, VERSION_MAJOR, VERSION_MINOR, VERSION_NUMBER, VERSION_PATCH,
    version_compatible)
# 1.2: TLS (Server(tls=...), create_server(ssl=...), Server.connect(tls=...)).
from ._abi import (  # noqa: F401
    ECERTVERIFY, ENOKEY, ENOTLS, EPASSWORD, EPKCS12, ETLS, REASON_TLS_ERROR,
    REASON_TLS_TRUNCATED, TLS_1_2, TLS_1_3)
from ._loader import LibraryError, load, version, version_string
from ._tls import TlsClient, TlsConfig, TlsInfo
from .errors import ErrorCode, IocpError, Reason, TlsError, TlsIdentityError, err_name, strerror
from ._transport import IocpServer, IocpTransport, ListenSocket, create_server, start_server
from ._policy import IocpEventLoop, IocpEventLoopPolicy, install, new_event_loop, run
from .server import (  # noqa: F401
    Buffer, ConnectFailedHandler, ConnectHandler, DataHandler, DisconnectHandler, DrainHandler,
    ErrorHandler, LogHandler, PeerClosedHandler, SentHandler, Server, Statistics)

# The package's version: the header version it mirrors (_abi.py), which the
# abi-mirror check holds to meson.build's project version; pyproject.toml
# reads it from here.
__version__ = f"{VERSION_MAJOR}.{VERSION_MINOR}.{VERSION_PATCH}"

__all__ = [
    "VERSION_MAJOR", "VERSION_MINOR", "VERSION_PATCH", "VERSION_NUMBER",
    "version_compatible", "load", "version", "version_string", "strerror", "err_name",
    "IocpError", "LibraryError", "Server", "ErrorCode", "Reason", "__version__",
    "create_server", "start_server", "IocpServer", "IocpTransport", "ListenSocket",
    "install", "run", "new_event_loop", "IocpEventLoop", "IocpEventLoopPolicy",
    "REASON_PEER_CLOSED", "REASON_RESET", "REASON_LOCAL_CLOSE", "REASON_DESTROY",
    "EVENT_ACCEPTED", "EVENT_DATA", "EVENT_SENT", "EVENT_PEER_CLOSED", "EVENT_DISCONNECTED",
    "EVENT_CONNECT_FAILED", "EVENT_LOG", "EVENT_DRAIN",
    "LOG_ERROR", "LOG_WARN", "LOG_INFO", "ADDRSTRLEN",
    "REASON_IDLE_TIMEOUT", "REASON_STOP_DEADLINE", "MAX_TIMEOUT_MS", "MAX_KEEPALIVE_MS",
    "TlsConfig", "TlsClient", "TlsInfo", "TlsError", "TlsIdentityError",
    "TLS_1_2", "TLS_1_3", "REASON_TLS_TRUNCATED", "REASON_TLS_ERROR",
]

# The public classes are documented, printed and pickled as iocpsrv.NAME,
# the name users import them by.
for _cls in (LibraryError, IocpError, Server, Statistics, IocpServer, IocpTransport,
             ListenSocket, IocpEventLoop, IocpEventLoopPolicy, TlsConfig, TlsClient, TlsInfo,
             TlsError, TlsIdentityError):
    _cls.__module__ = __name__
del _cls
