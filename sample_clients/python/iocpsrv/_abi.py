"""The ctypes mirror of api/iocpsrv.h: constants, enums, structs, callback
types and function prototypes, nothing else.

The header is the truth. test/check/abi_mirror.py imports this file on its
own (it needs only ctypes and struct, and loads no library) and compares
every constant and struct layout with what the build's compiler sees; a new
code, enum or struct in the header fails that check until it is added here.
"""

import ctypes
import struct

# The header version this module was written against (IOCP_VERSION_*): the
# package's version too (__version__), and meson.build's project version,
# which the abi-mirror check holds the header to.
VERSION_MAJOR = 1
VERSION_MINOR = 2
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
ETLS = -21         # 1.2, TLS
EPKCS12 = -22
EPASSWORD = -23
ENOKEY = -24
ECERTVERIFY = -25
ENOTLS = -26

# enum iocp_reason, passed to on_disconnect.
REASON_PEER_CLOSED = 1
REASON_RESET = 2
REASON_LOCAL_CLOSE = 3
REASON_DESTROY = 4
REASON_IDLE_TIMEOUT = 5
REASON_STOP_DEADLINE = 6
REASON_TLS_TRUNCATED = 7   # 1.2, TLS
REASON_TLS_ERROR = 8

# enum iocp_tls_version (1.2).
TLS_1_2 = 0x0303
TLS_1_3 = 0x0304

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
        ("tls_pkcs12", ctypes.c_void_p),          # 1.2, TLS
        ("tls_pkcs12_len", ctypes.c_uint32),
        ("tls_min_version", ctypes.c_uint32),
        ("tls_password", ctypes.c_char_p),
        ("tls_alpn", ctypes.c_char_p),
        ("tls_handshake_timeout_ms", ctypes.c_uint32),
        ("reserved5_", ctypes.c_uint32),
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
        ("tls_handshakes", ctypes.c_uint64),          # 1.2
        ("tls_handshake_failures", ctypes.c_uint64),
        ("tls_handshake_timeouts", ctypes.c_uint64),
    ]


class _TlsClient(ctypes.Structure):
    """struct iocp_tls_client (1.2): iocp_connect_tls() options."""
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("no_verify", ctypes.c_uint32),
        ("server_name", ctypes.c_char_p),
        ("ca_pem", ctypes.c_void_p),
        ("ca_pem_len", ctypes.c_uint32),
        ("min_version", ctypes.c_uint32),
        ("alpn", ctypes.c_char_p),
        ("handshake_timeout_ms", ctypes.c_uint32),
        ("reserved_", ctypes.c_uint32),
    ]


class _TlsInfo(ctypes.Structure):
    """struct iocp_tls_info (1.2): iocp_tls_get_info()."""
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("version", ctypes.c_uint32),
        ("cipher", ctypes.c_char * 64),
        ("alpn", ctypes.c_char * 256),
    ]



# The prototypes of the exported functions, applied by _loader.load().
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
    # 1.2, TLS
    "iocp_connect_tls": (ctypes.c_int, [_server_p, ctypes.c_char_p, ctypes.c_uint16,
                                        ctypes.POINTER(_TlsClient), ctypes.POINTER(_conn_id)]),
    "iocp_tls_get_info": (ctypes.c_int, [_server_p, _conn_id, ctypes.POINTER(_TlsInfo)]),
    # 1.2
    "iocp_local_address": (ctypes.c_int, [_server_p, _conn_id, ctypes.c_char_p, ctypes.c_size_t,
                                          ctypes.POINTER(ctypes.c_uint16)]),
    "iocp_wait_handle": (ctypes.c_int, [_server_p, ctypes.POINTER(ctypes.c_ssize_t)]),
}
