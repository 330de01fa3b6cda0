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
 * Two delivery modes
 * ------------------
 * A server reports events either by calling back (the default, described
 * below) or, when created with config.delivery = IOCP_DELIVERY_QUEUE, by
 * queueing them for the caller's own thread to take in batches with
 * iocp_wait() (see "Batched events"; meant for .NET, Python and other
 * callers for whom each call from a foreign thread is costly). The worker
 * pool does all the I/O in both modes, with the same ordering guarantees.
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
 *   TIME_WAIT, where Linux accepts it. If SO_EXCLUSIVEADDRUSE cannot be set,
 *   iocp_create() fails (and on_log says so) rather than listen on a port
 *   another process could take over.
 * - An IPv6 address ("::", "::1") listens on IPv6 only on both, unless
 *   config.dual_stack asks for IPv4 too; if IPV6_V6ONLY cannot be set as
 *   asked, iocp_create() fails.
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
 * codes. Codes are never renumbered; retired ones stay reserved. Codes added
 * in 1.1: IOCP_ECONNREFUSED, IOCP_ETIMEDOUT and IOCP_EUNREACH (outbound
 * connections), IOCP_EMFILE (the process ran out of sockets or descriptors;
 * 1.0 said IOCP_ENOMEM there).
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
  X(ECLOSED,      -13, "connection is closing")                                 \
  X(EMODE,        -14, "not available in this server's delivery mode")          \
  X(EBUSY,        -15, "another thread is waiting on this server's events")     \
  X(ECONNREFUSED, -16, "connection refused")                                     \
  X(ETIMEDOUT,    -17, "connection timed out")                                   \
  X(EUNREACH,     -18, "network or host unreachable")                            \
  X(EMFILE,       -19, "out of sockets or file descriptors")

enum iocp_errno {
  IOCP_OK = 0,
#define IOCP_ERRNO_ENUM_(name, code, text) IOCP_##name = (code),
  IOCP_ERRNO_MAP(IOCP_ERRNO_ENUM_)
#undef IOCP_ERRNO_ENUM_
  IOCP_ERRNO_LAST_ = -19
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

/* Levels of on_log messages: lower is more severe. */
enum iocp_log_level {
  /* Something failed that the library cannot work around: a worker thread
   * ended because its completion port or epoll set broke, or iocp_create()
   * fails (e.g. SO_EXCLUSIVEADDRUSE could not be set). */
  IOCP_LOG_ERROR = 1,
  /* Service is degraded and the library works around it: accepting paused
   * because the process ran out of sockets or descriptors (retried every
   * 50 ms), or one incoming connection was dropped before on_connect. */
  IOCP_LOG_WARN = 2,
  /* Back to normal: accepting again after a pause. */
  IOCP_LOG_INFO = 3
};

/*
 * (Added in 1.1.) The library reports what it worked around or could not do,
 * things that 1.0 let pass in silence; the library itself never prints.
 * `level` is an enum iocp_log_level; `code` the negative IOCP_ code of the
 * cause (IOCP_EMFILE for descriptor exhaustion, 0 for IOCP_LOG_INFO); `text`
 * a short English line without a trailing newline, valid only during the
 * call. Messages about one condition are not repeated while it lasts: a pause
 * in accepting is reported once when it starts (IOCP_LOG_WARN) and once when
 * it ends (IOCP_LOG_INFO).
 *
 * Threads: usually a worker thread, and possibly several at once (calls are
 * not serialised, unlike a connection's callbacks). Messages that arise
 * inside iocp_create() run on its caller's thread before it returns; when
 * iocp_create() then fails, `server` is only an identity (the handle is
 * discarded) and must not be passed to any function. From a worker, on_log
 * may call the per-connection functions, iocp_connect() and the getters,
 * but not iocp_destroy() (IOCP_EINCALLBACK). Keep it short: it holds the
 * worker (or the accept path) that reports.
 */
typedef void(IOCP_CALL *iocp_on_log_fn)(iocp_server *server, void *user, int level,
                                        int code, const char *text);

/*
 * (Added in 1.1.) An outbound connection started by iocp_connect() ended
 * before on_connect: `error` says why: IOCP_ECONNREFUSED, IOCP_ETIMEDOUT,
 * IOCP_EUNREACH, IOCP_ECLOSED (iocp_close() or iocp_destroy() ended it
 * first), or the code of another failure (IOCP_EADDRNOTAVAIL: no local port
 * left; IOCP_ESYSTEM). It is that
 * id's first and last callback: no on_connect or on_disconnect follows. For
 * every id that iocp_connect() returned, exactly one of on_connect_failed or
 * on_connect (then, if kept, on_disconnect) runs. On a worker thread; may
 * call everything on_data may.
 */
typedef void(IOCP_CALL *iocp_on_connect_failed_fn)(iocp_server *server, void *user,
                                                   iocp_conn_id id, int error);

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
  /* Added in 1.1 (a caller whose struct ends before them gets NULL): */
  iocp_on_log_fn on_log;
  iocp_on_connect_failed_fn on_connect_failed;
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
  /* Worker threads; 0 (default) = one per processor. */
  uint32_t threads;
  /* listen() backlog; 0 (default) = the system maximum. */
  uint32_t backlog;
  /* Accepts kept posted at all times (AcceptEx on Windows); default 16. */
  uint32_t accepts_posted;
  /* Receive buffer per connection in bytes; default 16384. */
  uint32_t recv_buffer_size;
  /* Per-connection limit on bytes queued and not yet sent; iocp_send()
   * returns IOCP_EQUEUEFULL rather than exceed it. Default 8 MiB. */
  uint64_t max_send_queue;
  /* 1 (default): TCP_NODELAY on accepted connections, so small writes go
   * out at once instead of waiting for Nagle's algorithm; 0: leave Nagle on.
   * (Part of the first release's layout, 1.0.0, which ends at reserved2_.) */
  uint32_t nodelay;
  uint32_t reserved2_; /* set to 0 */
  /* (Added in 1.1.) 0 (default): an IPv6 bind address listens on IPv6 only.
   * 1: it also takes IPv4 connections (IPV6_V6ONLY off): "::" then serves
   * every IPv4 and IPv6 address with one server and one worker pool, and an
   * IPv4 peer reaches on_connect as plain IPv4 text ("127.0.0.1", never
   * "::ffff:127.0.0.1"). Only for IPv6 bind addresses: with an IPv4 one,
   * or any value but 0 and 1, iocp_create() returns IOCP_EINVAL. v6-only
   * stays the default because it is what 1.0 did on both systems, and
   * because a dual-stack socket would take the IPv4 port too, so that a
   * second server bound to "0.0.0.0" on the same port would fail. */
  uint32_t dual_stack;
  uint32_t reserved3_; /* set to 0 */
  /* How events reach the caller (added in 1.1): IOCP_DELIVERY_CALLBACKS (0,
   * the default: the callbacks of iocp_callbacks, on worker threads) or
   * IOCP_DELIVERY_QUEUE (iocp_wait(): batches on the caller's own thread).
   * See "Batched events" below. */
  uint32_t delivery;
  /* IOCP_DELIVERY_QUEUE only: the optional events to queue, a bit mask of
   * IOCP_EVENT_BIT(IOCP_EVENT_SENT) and IOCP_EVENT_BIT(IOCP_EVENT_PEER_CLOSED)
   * (default 0: neither; without PEER_CLOSED the library finishes a
   * connection whose peer closed, as a NULL on_peer_closed does). ACCEPTED,
   * DATA and DISCONNECTED are always queued. Must be 0 in callback mode. */
  uint32_t queue_events;
} iocp_config;

/* Values of iocp_config.delivery. */
enum iocp_delivery {
  IOCP_DELIVERY_CALLBACKS = 0,
  IOCP_DELIVERY_QUEUE = 1
};

/*
 * Fills `config` with defaults. `size` must be sizeof(*config) as the caller
 * sees it. Returns IOCP_EINVAL when config is NULL, IOCP_EVERSION when size
 * is smaller than the first release's struct (1.0.0: up to reserved2_).
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
 * zero-sized field), IOCP_EVERSION (a struct's size is not one this library
 * knows), IOCP_EADDRINUSE (port taken), IOCP_EADDRNOTAVAIL (address not on
 * this machine), IOCP_EACCES, IOCP_EAFNOSUPPORT, IOCP_EMFILE, IOCP_ENOMEM,
 * IOCP_ESYSTEM. When a socket option the server depends on cannot be set
 * (SO_EXCLUSIVEADDRUSE on Windows, IPV6_V6ONLY for an IPv6 address), on_log
 * hears why (IOCP_LOG_ERROR) on this thread before iocp_create() returns.
 * On failure *server is set to NULL and nothing is left behind.
 * Any thread may call it, including a callback of another server.
 *
 * With config->delivery == IOCP_DELIVERY_QUEUE, `callbacks` may be NULL (or
 * have every function NULL but on_log, which stays a callback); any other
 * callback given as well is IOCP_EMODE: a server delivers in one mode only. An unknown delivery value is IOCP_EINVAL, and
 * so are queue_events bits in callback mode.
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
 * IOCP_ECLOSED (the connection is being torn down), IOCP_EQUEUEFULL (the
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
 * *queued. Returns 0, IOCP_EINVAL or IOCP_ENOTFOUND.
 */
IOCP_API int IOCP_CALL iocp_queued(iocp_server *server, iocp_conn_id id,
                                   uint64_t *queued);

/* The port the server listens on (useful after binding port 0); 0 if server
 * is NULL. */
IOCP_API uint16_t IOCP_CALL iocp_port(iocp_server *server);

/* Connections currently open: accepted (including one whose on_connect is
 * still running) and whose on_disconnect has not started; a refused one
 * leaves the count before its peer sees the reset. 0 if server is NULL. */
IOCP_API uint64_t IOCP_CALL iocp_connection_count(iocp_server *server);

/* Room for any address iocp_listen_address() writes, terminator included. */
#define IOCP_ADDRSTRLEN 64

/*
 * (Added in 1.1.) The address the server listens on, as the system reports
 * it after binding: `text` receives the IP address as text ("127.0.0.1",
 * "::", "::1"; NUL-terminated) and *port the port (also after binding port
 * 0). `port` may be NULL. The answer stays the same for the server's life.
 * A dual-stack server (config.dual_stack) reports its IPv6 address, e.g.
 * "::"; it accepts IPv4 on the same port.
 *
 * Returns 0, or IOCP_EINVAL (server or text NULL, or cap smaller than
 * IOCP_ADDRSTRLEN; nothing is written then). Any thread, including inside
 * callbacks.
 */
IOCP_API int IOCP_CALL iocp_listen_address(iocp_server *server, char *text, size_t cap,
                                           uint16_t *port);

/*
 * (Added in 1.1.) Opens an outbound TCP connection to `address` (a numeric
 * IPv4 or IPv6 address as text, like bind_address: host names are not
 * resolved, so the call never blocks on DNS; resolve them yourself, e.g.
 * with getaddrinfo() before the call) and `port` (1-65535). The connection
 * belongs to `server` and gets the same callbacks as an accepted one, on the
 * same workers: on_connect once it is established (`address` and `port` are
 * then the remote end's; returning nonzero closes it, as for a refused
 * peer), then on_data, on_sent, on_peer_closed and on_disconnect. If it
 * cannot be established, on_connect_failed(id, error) is its only callback.
 *
 * *id receives the new connection's id before any callback for it can run,
 * so a callback may look it up in a table the caller fills while holding
 * its own lock across this call. Until on_connect, the id is valid for
 * iocp_send() (bytes are queued and go out once connected, after
 * on_connect returns), iocp_shutdown(), iocp_close() (abandons the attempt:
 * on_connect_failed(IOCP_ECLOSED)) and iocp_queued(); iocp_connection_count()
 * includes it. The attempt takes as long as the system allows (about 21 s
 * on Windows, longer on Linux, then IOCP_ETIMEDOUT); close the id to give up
 * sooner. Windows uses ConnectEx on a socket bound to the wildcard address
 * of the target's family; Linux a non-blocking connect().
 *
 * Returns 0, or: IOCP_EINVAL (server, address or id NULL, address not a
 * numeric IP address, port 0), IOCP_ECLOSED (the server is being
 * destroyed), IOCP_EAFNOSUPPORT (no IPv6 on this machine), IOCP_EMFILE (out
 * of sockets), IOCP_ENOMEM, IOCP_ESYSTEM. On failure *id is 0 and no
 * callback runs for the attempt; errors of the connection itself (refused,
 * unreachable) arrive through on_connect_failed even when the system knows
 * them at once. Any thread, including inside any callback.
 */
IOCP_API int IOCP_CALL iocp_connect(iocp_server *server, const char *address, uint16_t port,
                                    iocp_conn_id *id);

/*
 * Counters of a server since iocp_create(). Set `size` to
 * sizeof(iocp_statistics) before calling iocp_stats() (fields may be appended
 * in later minor versions; the library fills only the fields `size` covers
 * and zeroes the rest). Added in 1.1.
 */
typedef struct iocp_statistics {
  uint32_t size;
  uint32_t reserved_;
  uint64_t connections_accepted; /* accepted sockets handed to on_connect */
  uint64_t connections_refused;  /* of those, refused by on_connect */
  uint64_t connections_open;     /* as iocp_connection_count() */
  uint64_t bytes_received;       /* passed to on_data */
  uint64_t bytes_sent;           /* handed to the operating system */
  uint64_t bytes_queued;         /* queued by iocp_send() and not yet sent */
  uint64_t accept_errors;        /* failed accepts and accepted sockets dropped
                                    before on_connect (peer gone, out of
                                    descriptors or memory) */
  uint64_t system_errors;        /* other failed system calls (each ends a
                                    connection or is retried) */
} iocp_statistics;

/*
 * Fills *stats with the server's counters. Each counter is kept per worker
 * thread and summed here, so counting costs the workers no shared write; a
 * call while connections are busy returns a snapshot whose counters may be
 * a few operations apart. Any thread, including inside callbacks.
 * Returns 0, or: IOCP_EINVAL (server or stats NULL), IOCP_EVERSION
 * (stats->size smaller than this first layout).
 */
IOCP_API int IOCP_CALL iocp_stats(iocp_server *server, iocp_statistics *stats);

/*
 * Destroys the server, the original library's "lenient destructor": stops
 * accepting, closes every connection at once (abortive; queued bytes are
 * dropped), cancels pending I/O and joins the workers. Every open connection
 * gets its on_disconnect(IOCP_REASON_DESTROY) before iocp_destroy() returns,
 * and no callback runs after it returns. The handle is invalid afterwards.
 *
 * Returns 0; IOCP_OK for NULL (a no-op); IOCP_EINCALLBACK at once when called
 * from inside a callback of this server (nothing is destroyed: call it from
 * another thread).
 *
 * Queue mode: there are no callbacks, so the disconnects cannot run inside
 * iocp_destroy(); see "Batched events" for what it does instead (and for
 * iocp_stop(), which delivers every disconnect before the destroy).
 */
IOCP_API int IOCP_CALL iocp_destroy(iocp_server *server);

/*
 * Begins what iocp_destroy() does, without waiting and without invalidating
 * the handle (added in 1.1): stops accepting and closes every connection
 * (abortive; IOCP_REASON_DESTROY). The disconnects follow as usual (on
 * workers in callback mode; in the queue in queue mode, where iocp_wait()
 * returns IOCP_ECLOSED once the last one has been taken and released). Call
 * iocp_destroy() afterwards all the same. Any thread, also inside a
 * callback, but never concurrently with iocp_destroy(). A second call is a
 * successful no-op. Returns 0 or IOCP_EINVAL (server NULL).
 */
IOCP_API int IOCP_CALL iocp_stop(iocp_server *server);

/* ---- Batched events (queue mode, added in 1.1) ---------------------------
 *
 * IOCP's own model is a queue that the program drains; iocp_wait() offers
 * that to callers for whom a callback per event is costly (Python, .NET):
 * the worker pool still does all the I/O, but instead of calling back it
 * appends each event to the server's queue, and the caller's own thread
 * takes a batch of events with one call. Create the server with
 * config.delivery = IOCP_DELIVERY_QUEUE.
 *
 * The guarantees are the callbacks' ones, in queue order:
 * - Per connection: ACCEPTED first, then DATA / SENT / PEER_CLOSED in order,
 *   DISCONNECTED last and exactly once for every kept connection. A
 *   connection has at most one event in the queue or in the current batch:
 *   its next event is queued only after the batch holding the previous one
 *   is released, so a slow drainer slows its peers (TCP flow control), as a
 *   slow callback does. Different connections' events interleave.
 * - A batch is released by the next iocp_wait() call on the server (from
 *   any thread) or by iocp_destroy(). Until then the batch's event data
 *   (DATA bytes, ACCEPTED address text) stay valid and unchanged, and the
 *   connections in it wait: its receive buffer is not reused, its next
 *   receive is not posted. Copy what you keep beyond the next iocp_wait().
 * - Refusal: ACCEPTED stands for on_connect. Calling iocp_close() on that id
 *   before the batch is released refuses the connection: the peer sees a
 *   reset and no other event comes for the id (not even DISCONNECTED).
 *   Doing nothing keeps it. iocp_send() and iocp_shutdown() before the
 *   release queue bytes that go out once the connection is kept.
 * - Ids: the id of a DISCONNECTED event is already stale (functions given it
 *   return IOCP_ENOTFOUND), as in on_disconnect.
 * - One draining thread at a time: iocp_wait() called while another thread
 *   is inside iocp_wait() on the same server returns IOCP_EBUSY at once and
 *   releases nothing. Successive calls from different threads are fine (a
 *   thread pool can take turns), and iocp_send() and the other functions
 *   may be called from any thread at any time.
 * - No event after iocp_destroy(): it wakes a thread waiting in iocp_wait()
 *   (that call returns IOCP_ECLOSED), releases the current batch and
 *   discards every event not yet taken. Connections still open end with
 *   IOCP_REASON_DESTROY without a DISCONNECTED event. To receive every
 *   DISCONNECTED, call iocp_stop() first and keep calling iocp_wait() until
 *   it returns IOCP_ECLOSED, then iocp_destroy().
 */

/* Event types (iocp_event.type); values are never renumbered. */
enum iocp_event_type {
  /* A connection was accepted, or one made by iocp_connect() is connected
   * (on_connect): data = address of the peer's IP
   * address as NUL-terminated text, len = its length, value = peer port. */
  IOCP_EVENT_ACCEPTED = 1,
  /* Bytes arrived (on_data): data = their address, len = their count (> 0). */
  IOCP_EVENT_DATA = 2,
  /* len more queued bytes went to the system (on_sent); only when
   * queue_events has IOCP_EVENT_BIT(IOCP_EVENT_SENT). */
  IOCP_EVENT_SENT = 3,
  /* The peer sent FIN (on_peer_closed); only when queue_events has
   * IOCP_EVENT_BIT(IOCP_EVENT_PEER_CLOSED): then finish with iocp_shutdown()
   * or iocp_close(), as after on_peer_closed. */
  IOCP_EVENT_PEER_CLOSED = 4,
  /* The connection ended (on_disconnect): value = enum iocp_reason. */
  IOCP_EVENT_DISCONNECTED = 5,
  /* An iocp_connect() attempt ended before ACCEPTED (on_connect_failed):
   * value = the IOCP_ error. The id's first and last event. */
  IOCP_EVENT_CONNECT_FAILED = 6
};

/* The bit of event type t in iocp_config.queue_events. */
#define IOCP_EVENT_BIT(t) (1u << (t))

/*
 * One event. 32 bytes with the same layout on every platform (x86 and x64,
 * Windows and Linux; no padding, every field at its natural alignment):
 *
 *   offset 0  uint32_t type     IOCP_EVENT_*
 *   offset 4  int32_t  value    ACCEPTED: peer port; DISCONNECTED: reason
 *   offset 8  uint64_t id       the connection
 *   offset 16 uint64_t data     an address as an integer (see the types), 0
 *                               when unused; in C: (const uint8_t *)(uintptr_t)
 *   offset 24 uint64_t len      a byte count (see the types)
 *
 * The size never changes: events added later carry what they need in these
 * fields. A caller must skip types it does not know (later minor versions
 * queue new types only when asked to, through queue_events bits).
 * .NET: [StructLayout(LayoutKind.Sequential)] uint, int, ulong, ulong,
 * ulong; ctypes/struct: "<IiQQQ" (little-endian on Windows and x86 Linux).
 */
typedef struct iocp_event {
  uint32_t type;
  int32_t value;
  iocp_conn_id id;
  uint64_t data;
  uint64_t len;
} iocp_event;

/*
 * Releases the previous batch (see above) and takes up to `max` events into
 * `events`, oldest first. Waits while none are queued: at most timeout_ms
 * milliseconds (0 = do not wait, negative = no limit), and returns early,
 * perhaps with 0 events, after iocp_wake().
 *
 * Returns the number of events (0 after a time-out or a wake-up), or:
 * IOCP_EINVAL (server or events NULL, max 0), IOCP_EMODE (a callback-mode
 * server), IOCP_EBUSY (another thread is inside iocp_wait() on this server;
 * nothing released), IOCP_ECLOSED (after iocp_stop(), when every connection
 * has ended and its events were taken and released; or when iocp_destroy()
 * began). Call it from any thread but a worker (there are no callbacks in
 * queue mode); the GIL-free, one-call-per-batch use is the point.
 */
IOCP_API int IOCP_CALL iocp_wait(iocp_server *server, iocp_event *events, uint32_t max,
                                 int32_t timeout_ms);

/*
 * Makes the iocp_wait() in progress on `server`, or else the next one,
 * return at once (with the events already queued, perhaps none). Wake-ups do
 * not add up: several calls before one iocp_wait() end one wait. Any thread.
 * Returns 0, IOCP_EINVAL (server NULL) or IOCP_EMODE (callback mode).
 */
IOCP_API int IOCP_CALL iocp_wake(iocp_server *server);

#ifdef __cplusplus
}
#endif

#endif /* IOCPSRV_H */
