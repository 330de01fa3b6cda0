/*
 * iocpsrv: a scalable TCP server core on Windows I/O Completion Ports.
 *
 * Copyright the iocpsrv authors.
 * Distributed under the Boost Software License, Version 1.0
 * (see LICENSE_1_0.txt or https://www.boost.org/LICENSE_1_0.txt).
 *
 * This is the one public header. Everything a caller needs to know about the
 * library is documented here.
 *
 * Design in one paragraph
 * -----------------------
 * iocpsrv is a proactor: you describe what to do when something completes
 * (a connection arrives, bytes arrive, queued bytes went out, the peer closed,
 * the connection ended) and the library owns the sockets, the buffers, the
 * worker threads and the connection lifecycle. A server is an opaque handle
 * (iocp_server *); a connection is a 64-bit id (iocp_conn_id) that is never
 * reused, so a stale id can never reach a newer client.
 *
 * Calling convention
 * ------------------
 * Every function and every callback type uses IOCP_CALL, which is __cdecl on
 * Windows (x86 and x64 alike) and the platform default elsewhere. Exported
 * names are undecorated on every architecture. From .NET declare
 * [DllImport("iocpsrv", CallingConvention = CallingConvention.Cdecl)] and
 * [UnmanagedFunctionPointer(CallingConvention.Cdecl)] on callback delegates;
 * from Python use ctypes.CDLL and ctypes.CFUNCTYPE.
 *
 * Threads
 * -------
 * - Callbacks run on the library's own worker threads, never on the thread
 *   that called iocp_create().
 * - Callbacks of one connection never overlap and arrive in order:
 *   on_connect first, then on_data / on_sent / on_peer_closed, and
 *   on_disconnect last, exactly once. Different connections run in parallel.
 * - iocp_send(), iocp_shutdown(), iocp_close(), iocp_port() and the other
 *   per-connection functions may be called from any thread, including from
 *   inside any callback (of any connection).
 * - iocp_destroy() must not be called from inside a callback: it returns
 *   IOCP_EINCALLBACK at once there instead of deadlocking.
 * - iocp_destroy() may race calls on other threads: it waits for the calls
 *   to that server already in progress, and every call that begins while it
 *   runs, or after it returned, fails cleanly: IOCP_ECLOSED from the
 *   per-connection functions, 0 from iocp_port() and
 *   iocp_connection_count() (see iocp_destroy() for the one exception).
 *   So a sender thread may be stopped after destroy, not necessarily
 *   before.
 * - A callback should not block for long: it holds one worker thread.
 *
 * Platforms
 * ---------
 * iocpsrv.dll (Windows, I/O completion ports) is the product; libiocpsrv.so
 * (Linux, epoll) implements the same ABI with the same guarantees. Where
 * the two cannot behave the same:
 * - Binding: Windows binds with SO_EXCLUSIVEADDRUSE, Linux with SO_REUSEADDR;
 *   both fail with IOCP_EADDRINUSE while another socket listens on the port,
 *   but Windows may also refuse a port whose old connections are still in
 *   TIME_WAIT, where Linux accepts it.
 * - An IPv6 address ("::", "::1") listens on IPv6 only on both.
 * - Under Wine (not Windows) a peer's reset can reach the library as an
 *   orderly end of stream, so on_disconnect may say IOCP_REASON_PEER_CLOSED
 *   where Windows says IOCP_REASON_RESET.
 *
 * Memory
 * ------
 * - iocp_send() copies the bytes; the caller may reuse its buffer as soon as
 *   the call returns.
 * - The bytes passed to on_data and the address passed to on_connect are valid
 *   only during the callback: copy what you keep.
 * - The config and callbacks structs are copied by iocp_create(); the caller
 *   may free them once it returns (strings included).
 * - Foreign callers (.NET, ctypes) must keep their callback objects alive until
 *   iocp_destroy() has returned.
 */
#ifndef IOCPSRV_H
#define IOCPSRV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Linkage and calling convention ------------------------------------ */

#if defined(_WIN32)
#  define IOCP_CALL __cdecl
#  if defined(IOCPSRV_BUILDING)
#    define IOCP_API __declspec(dllexport)
#  elif defined(IOCPSRV_STATIC)
#    define IOCP_API
#  else
#    define IOCP_API __declspec(dllimport)
#  endif
#else
#  define IOCP_CALL
#  if defined(IOCPSRV_BUILDING) && defined(__GNUC__)
#    define IOCP_API __attribute__((visibility("default")))
#  else
#    define IOCP_API
#  endif
#endif

/* ---- Version ------------------------------------------------------------ */

#define IOCP_VERSION_MAJOR 1
#define IOCP_VERSION_MINOR 1
#define IOCP_VERSION_PATCH 0
/* 0xMMmmpp: 1.1.0 is 0x010100. */
#define IOCP_VERSION_NUMBER \
  ((IOCP_VERSION_MAJOR << 16) | (IOCP_VERSION_MINOR << 8) | IOCP_VERSION_PATCH)

/*
 * Returns IOCP_VERSION_NUMBER of the library actually loaded. A program built
 * against this header works with any library of the same major version and an
 * equal or newer minor version: check with IOCP_VERSION_COMPATIBLE().
 */
IOCP_API uint32_t IOCP_CALL iocp_version(void);

/* Returns the loaded library's version as text, e.g. "1.1.0". Static storage. */
IOCP_API const char *IOCP_CALL iocp_version_string(void);

#define IOCP_VERSION_COMPATIBLE(loaded)                \
  ((((loaded) >> 16) & 0xff) == IOCP_VERSION_MAJOR &&  \
   ((loaded) & 0xffff00u) >= (IOCP_VERSION_NUMBER & 0xffff00u))

/* ---- Errors -------------------------------------------------------------- */

/*
 * Every function that can fail returns 0 on success or one of these negative
 * codes. Codes are never renumbered; retired ones stay reserved.
 */
#define IOCP_ERRNO_MAP(X)                                                        \
  X(EINVAL,       -1,  "invalid argument")                                       \
  X(ENOMEM,       -2,  "out of memory")                                          \
  X(ENOTFOUND,    -3,  "unknown or stale connection id")                         \
  X(ESHUTDOWN,    -4,  "connection is shut down for sending")                    \
  X(EQUEUEFULL,   -5,  "send queue limit reached")                               \
  X(EADDRINUSE,   -6,  "address already in use")                                 \
  X(EADDRNOTAVAIL,-7,  "address not available")                                  \
  X(EVERSION,     -8,  "struct size or library version mismatch")               \
  X(EINCALLBACK,  -9,  "not allowed from inside a callback")                     \
  X(ESYSTEM,      -10, "operating system error")                                 \
  X(EACCES,       -11, "permission denied")                                      \
  X(EAFNOSUPPORT, -12, "address family not supported")                           \
  X(ECLOSED,      -13, "connection is closing")

enum iocp_errno {
  IOCP_OK = 0,
#define IOCP_ERRNO_ENUM_(name, code, text) IOCP_##name = (code),
  IOCP_ERRNO_MAP(IOCP_ERRNO_ENUM_)
#undef IOCP_ERRNO_ENUM_
  IOCP_ERRNO_LAST_ = -13
};

/* A short English description of an error code ("unknown error" otherwise).
 * Static storage; never NULL. */
IOCP_API const char *IOCP_CALL iocp_strerror(int err);

/* The code's name, e.g. "IOCP_ENOTFOUND" ("IOCP_UNKNOWN" otherwise). */
IOCP_API const char *IOCP_CALL iocp_err_name(int err);

/* ---- Handles ------------------------------------------------------------- */

typedef struct iocp_server iocp_server;

/* A connection id: never 0, never reused within a process. */
typedef uint64_t iocp_conn_id;

/* Why a connection ended, passed to on_disconnect. */
enum iocp_reason {
  /* Graceful end: the peer sent FIN and every byte queued before
   * iocp_shutdown() (or the automatic shutdown) went out, then our FIN. */
  IOCP_REASON_PEER_CLOSED = 1,
  /* The peer reset the connection, or an I/O error ended it. */
  IOCP_REASON_RESET = 2,
  /* iocp_close() was called (abortive close; queued data dropped). */
  IOCP_REASON_LOCAL_CLOSE = 3,
  /* iocp_destroy() closed it (abortive close; queued data dropped). */
  IOCP_REASON_DESTROY = 4
};

/* ---- Callbacks ----------------------------------------------------------- */

/*
 * A connection was accepted. `address` is the peer's IP address as text
 * ("127.0.0.1", "::1"), valid during the call; `port` is the peer's port.
 * Return 0 to keep the connection, anything else to refuse it: the socket is
 * closed and no other callback runs for this id (not even on_disconnect).
 * Sends issued inside on_connect are queued and go out if the connection is
 * kept. When on_connect is NULL every connection is kept.
 */
typedef int(IOCP_CALL *iocp_on_connect_fn)(iocp_server *server, void *user,
                                           iocp_conn_id id, const char *address,
                                           uint16_t port);

/*
 * Bytes arrived. `data` is valid only during the call. The next receive on
 * this connection is posted only after on_data returns, so a slow callback
 * slows its own peer (TCP flow control) and nobody else.
 */
typedef void(IOCP_CALL *iocp_on_data_fn)(iocp_server *server, void *user,
                                         iocp_conn_id id, const uint8_t *data,
                                         size_t len);

/*
 * `bytes` more of this connection's queued bytes were handed to the
 * operating system. Completions may be merged, so count bytes, not calls.
 */
typedef void(IOCP_CALL *iocp_on_sent_fn)(iocp_server *server, void *user,
                                         iocp_conn_id id, uint64_t bytes);

/*
 * The peer sent FIN: no more bytes will arrive, but this side may still send.
 * Finish with iocp_shutdown() or iocp_close(). When on_peer_closed is NULL
 * the library does what the original library's default handler did: it sends
 * whatever is queued, then closes (an automatic iocp_shutdown()).
 */
typedef void(IOCP_CALL *iocp_on_peer_closed_fn)(iocp_server *server, void *user,
                                                iocp_conn_id id);

/*
 * The connection ended; `reason` is an enum iocp_reason. Called exactly once
 * for every connection that on_connect kept, always as its last callback. The
 * id is stale as soon as this callback starts: functions given it return
 * IOCP_ENOTFOUND.
 */
typedef void(IOCP_CALL *iocp_on_disconnect_fn)(iocp_server *server, void *user,
                                               iocp_conn_id id, int reason);

/*
 * The callbacks. Set `size` to sizeof(iocp_callbacks) (fields may be appended
 * in later minor versions; the library reads only the fields `size` covers).
 * Any callback may be NULL.
 */
typedef struct iocp_callbacks {
  uint32_t size;
  uint32_t reserved_; /* set to 0 */
  iocp_on_connect_fn on_connect;
  iocp_on_data_fn on_data;
  iocp_on_sent_fn on_sent;
  iocp_on_peer_closed_fn on_peer_closed;
  iocp_on_disconnect_fn on_disconnect;
} iocp_callbacks;

/* ---- Configuration ------------------------------------------------------- */

/*
 * Server configuration. Fill it with iocp_config_init(), then change fields.
 * `size` must be sizeof(iocp_config) as this header declares it.
 */
typedef struct iocp_config {
  uint32_t size;
  /* TCP port to listen on; 0 picks a free port (read it with iocp_port()). */
  uint16_t port;
  uint16_t reserved_; /* set to 0 */
  /* IPv4 or IPv6 address as text to bind to: "127.0.0.1" (default), "::1",
   * "0.0.0.0" (all IPv4), "::" (all IPv6). Copied by iocp_create(). */
  const char *bind_address;
  /* Worker threads; 0 (default) = one per processor; at most 1024. */
  uint32_t threads;
  /* listen() backlog; 0 (default) = the system maximum. */
  uint32_t backlog;
  /* Accepts kept posted at all times (AcceptEx on Windows; on Linux the most
   * connections one wake-up accepts, capped at 64); 1 to 4096, default 16. */
  uint32_t accepts_posted;
  /* Receive buffer per connection in bytes; 64 to 64 MiB (67108864),
   * default 16384. */
  uint32_t recv_buffer_size;
  /* Per-connection limit on bytes queued and not yet sent; iocp_send()
   * returns IOCP_EQUEUEFULL rather than exceed it. At least 1, no upper
   * limit (queues past 4 GiB work: the library sends at most 1 GiB per
   * operation). Default 8 MiB. */
  uint64_t max_send_queue;
  /* 1 (default): TCP_NODELAY on accepted connections, so small writes go
   * out at once instead of waiting for Nagle's algorithm; 0: leave Nagle on.
   * (Added in 1.0; a caller whose struct ends before it gets the default.) */
  uint32_t nodelay;
  uint32_t reserved2_; /* set to 0 */
} iocp_config;

/*
 * Fills `config` with defaults. `size` must be sizeof(*config) as the caller
 * sees it. Returns IOCP_EINVAL when config is NULL, IOCP_EVERSION when size
 * is smaller than the first library release's struct.
 */
IOCP_API int IOCP_CALL iocp_config_init(iocp_config *config, uint32_t size);

/* ---- Server -------------------------------------------------------------- */

/*
 * Creates a server: binds, listens and starts the worker pool (Winsock is set
 * up and torn down by the library). On success *server is set before any
 * callback can run, and every callback receives that same handle; `user` is
 * passed to every callback untouched. `config` may be NULL for all defaults.
 *
 * Returns 0, or: IOCP_EINVAL (server or callbacks NULL, bad address text,
 * a config field outside the limits written beside it), IOCP_EVERSION (a struct's size is not one this library
 * knows), IOCP_EADDRINUSE (port taken), IOCP_EADDRNOTAVAIL (address not on
 * this machine), IOCP_EACCES, IOCP_EAFNOSUPPORT, IOCP_ENOMEM, IOCP_ESYSTEM.
 * On failure *server is set to NULL and nothing is left behind.
 * Any thread may call it, including a callback of another server.
 */
IOCP_API int IOCP_CALL iocp_create(const iocp_config *config,
                                   const iocp_callbacks *callbacks, void *user,
                                   iocp_server **server);

/*
 * Queues a copy of `len` bytes for connection `id`. Bytes of one connection go
 * out in call order. Any thread, including inside callbacks.
 *
 * Returns 0, or: IOCP_EINVAL (server NULL, or data NULL with len > 0),
 * IOCP_ENOTFOUND (unknown or stale id), IOCP_ESHUTDOWN (iocp_shutdown() was
 * called, or the library is finishing after the peer closed),
 * IOCP_ECLOSED (the connection is being torn down, or the server: see
 * iocp_destroy()), IOCP_EQUEUEFULL (the
 * queued bytes would exceed max_send_queue; nothing was queued: wait for
 * on_sent and try again), IOCP_ENOMEM. A failed call queues nothing.
 * len == 0 is a successful no-op.
 */
IOCP_API int IOCP_CALL iocp_send(iocp_server *server, iocp_conn_id id,
                                 const void *data, size_t len);

/*
 * Graceful half-close: every byte already queued is sent, then FIN. Bytes
 * from the peer keep arriving (on_data) until it closes too, then
 * on_disconnect(IOCP_REASON_PEER_CLOSED). Later iocp_send() calls return
 * IOCP_ESHUTDOWN. Calling it twice is a successful no-op.
 * Returns 0, IOCP_EINVAL, IOCP_ENOTFOUND or IOCP_ECLOSED.
 */
IOCP_API int IOCP_CALL iocp_shutdown(iocp_server *server, iocp_conn_id id);

/*
 * Abortive close: queued bytes are dropped and the peer sees a reset (RST).
 * on_disconnect(IOCP_REASON_LOCAL_CLOSE) follows on a worker thread (after
 * the current callback returns, when called from one of this connection's
 * callbacks). Returns 0, IOCP_EINVAL, IOCP_ENOTFOUND or IOCP_ECLOSED.
 */
IOCP_API int IOCP_CALL iocp_close(iocp_server *server, iocp_conn_id id);

/*
 * Bytes queued for `id` and not yet handed to the operating system, in
 * *queued. Returns 0, IOCP_EINVAL, IOCP_ENOTFOUND or IOCP_ECLOSED (the server
 * is destroyed).
 */
IOCP_API int IOCP_CALL iocp_queued(iocp_server *server, iocp_conn_id id,
                                   uint64_t *queued);

/* The port the server listens on (useful after binding port 0); 0 if server
 * is NULL or destroyed. */
IOCP_API uint16_t IOCP_CALL iocp_port(iocp_server *server);

/* Connections currently open: accepted (including one whose on_connect is
 * still running) and whose on_disconnect has not started; a refused one
 * leaves the count before its peer sees the reset. 0 if server is NULL or
 * destroyed. */
IOCP_API uint64_t IOCP_CALL iocp_connection_count(iocp_server *server);

/*
 * Destroys the server, the original library's "lenient destructor": stops
 * accepting, closes every connection at once (abortive; queued bytes are
 * dropped), cancels pending I/O and joins the workers. Every open connection
 * gets its on_disconnect(IOCP_REASON_DESTROY) before iocp_destroy() returns,
 * and no callback runs after it returns.
 *
 * Calls on other threads: destroy first waits for every call to this server
 * already in progress on another thread (they take moments: no call blocks).
 * Calls that begin once destroy has started, and calls made with the handle
 * after destroy returned, fail cleanly: IOCP_ECLOSED from iocp_send(),
 * iocp_shutdown(), iocp_close(), iocp_queued() and a second iocp_destroy();
 * 0 from iocp_port() and iocp_connection_count(). Inside this server's own
 * callbacks (which run during destroy, e.g. on_disconnect) every function
 * keeps working as documented. This holds because the library never gives
 * a server's memory back to the allocator: it keeps destroyed servers' small
 * structs in a pool (never more than the most servers alive at once) and a
 * later iocp_create() reuses one. The one exception follows from that: once
 * a later iocp_create() has returned the same handle, calls with the old
 * handle reach the new server (connection ids are never reused, so a stale
 * id still gets IOCP_ENOTFOUND there, but a second destroy would destroy
 * the new server). Stop using a handle once its destroy has returned.
 *
 * Cost: a call from outside the server's workers adds one atomic increment
 * and one decrement of a per-server counter; calls from inside callbacks
 * add nothing. (No lock is shared between calls.)
 *
 * Returns 0; IOCP_OK for NULL (a no-op); IOCP_EINCALLBACK at once when called
 * from inside a callback of this server (nothing is destroyed: call it from
 * another thread); IOCP_ECLOSED when the server is already destroyed or being
 * destroyed by another thread (this call waits for nothing).
 */
IOCP_API int IOCP_CALL iocp_destroy(iocp_server *server);

#ifdef __cplusplus
}
#endif

#endif /* IOCPSRV_H */
