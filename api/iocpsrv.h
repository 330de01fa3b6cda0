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
 * callers for whom each call from a foreign thread is costly). The library
 * does all the I/O in both modes, with the same ordering guarantees (in
 * queue mode the thread waiting in iocp_wait() helps with it on Linux).
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
 * - iocp_destroy() and iocp_stop_graceful() must not be called from inside
 *   a callback: they return IOCP_EINCALLBACK at once there instead of
 *   deadlocking.
 * - iocp_destroy() may race calls on other threads: it waits for the calls
 *   to that server already in progress, and every call that begins while it
 *   runs, or after it returned, fails cleanly: IOCP_ECLOSED from the
 *   per-connection functions, 0 from iocp_port() and
 *   iocp_connection_count() (see iocp_destroy() for the one exception).
 *   So a sender thread may be stopped after destroy, not necessarily
 *   before.
 * - A callback should not block for long: it holds one worker thread.
 * - No function of the library runs a callback on the thread that calls it,
 *   with one exception, on_log (inside iocp_create() for messages that
 *   arise there, and in queue mode inside iocp_wait()). A call makes the
 *   callbacks it causes due and a worker runs them: iocp_close() from
 *   inside on_data returns before that connection's on_disconnect runs,
 *   after on_data returned, and nothing re-enters a callback.
 * - on_disconnect(IOCP_REASON_DESTROY) runs on a worker thread like any
 *   other on_disconnect, never on the thread calling iocp_destroy() (which
 *   waits for it) or iocp_stop() (which does not). In queue mode it is a
 *   DISCONNECTED event that iocp_wait() takes after iocp_stop();
 *   iocp_destroy() alone discards it (see "Batched events").
 * - Signals (Linux): the library's threads (the workers and the idle
 *   timer) block the process-wide signals: SIGPIPE, SIGINT, SIGTERM,
 *   SIGHUP, SIGQUIT, SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2, SIGWINCH, SIGURG,
 *   SIGVTALRM, SIGPROF and the job-control ones, so those reach the
 *   application's threads. Sockets are written with MSG_NOSIGNAL: a
 *   peer's reset never raises SIGPIPE. Thread-directed signals stay open
 *   (managed runtimes suspend threads with them).
 * - fork() (Linux): the child has none of the library's threads, and a
 *   lock a worker held at the fork stays held there. In the child, call no
 *   function on a server the parent created, iocp_destroy() included; its
 *   sockets and epoll sets are close-on-exec, so exec() drops them. A
 *   child that does not exec keeps copies of the connections' sockets
 *   open, and a connection the parent closes then stays open for its peer
 *   until the child exits: fork before creating servers, or exec.
 * - Unloading (dlclose, FreeLibrary): destroy every server first, and let
 *   every call into the library return; the worker threads run the
 *   library's code until iocp_destroy() returns. Unloading frees the pool
 *   of destroyed servers' structs, so no handle is valid afterwards, not
 *   even for the calls that otherwise fail cleanly with IOCP_ECLOSED.
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
 * - A client that resets before its accept completes never reaches the
 *   server on Windows: AcceptEx fails for it (ERROR_NETNAME_DELETED; under
 *   Wine ERROR_UNEXP_NET_ERR, the same outcome), the library posts the
 *   accept again and no callback runs. Linux's accept() hands such a
 *   connection over, so there it gets on_connect, then
 *   on_disconnect(IOCP_REASON_RESET). (Under Wine most of a storm of such
 *   clients is dropped that way; that is the platform, not a lost event.)
 * - Under Wine (not Windows) a peer's reset can reach the library as an
 *   orderly end of stream, so on_disconnect may say IOCP_REASON_PEER_CLOSED
 *   where Windows says IOCP_REASON_RESET.
 * - Which worker serves a connection: on Windows any worker takes any
 *   completion. On Linux each connection belongs to one worker for its
 *   whole life (on_connect of an accepted one runs on the worker that
 *   accepted it), and a worker with little to do, or one the machine keeps
 *   waiting for a processor, may lend its connections to the first worker
 *   and sleep until that one is busy while processors sit idle: callbacks
 *   may then run on fewer threads than config.threads. So on Linux a
 *   callback that blocks also holds the other connections of its worker
 *   (those lent to a blocked first worker go back to their own within some
 *   40 ms). The ordering guarantees above are the same on both. How the
 *   engines work, and why, is in dll/README.md.
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
#define IOCP_VERSION_MINOR 2
#define IOCP_VERSION_PATCH 0
/* 0xMMmmpp: 1.2.0 is 0x010200. */
#define IOCP_VERSION_NUMBER \
  ((IOCP_VERSION_MAJOR << 16) | (IOCP_VERSION_MINOR << 8) | IOCP_VERSION_PATCH)

/*
 * Returns IOCP_VERSION_NUMBER of the library actually loaded. A program built
 * against this header works with any library of the same major version and an
 * equal or newer minor version: check with IOCP_VERSION_COMPATIBLE().
 */
IOCP_API uint32_t IOCP_CALL iocp_version(void);

/* Returns the loaded library's version as text, e.g. "1.2.0". Static storage. */
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
 * 1.0 said IOCP_ENOMEM there), IOCP_ESTOPPED (iocp_stop_graceful),
 * IOCP_EMODE and IOCP_EBUSY (the batched events of queue mode). Added in
 * 1.2 with TLS: IOCP_ETLS, IOCP_EPKCS12, IOCP_EPASSWORD, IOCP_ENOKEY,
 * IOCP_ECERTVERIFY, IOCP_ENOTLS.
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
  X(EMFILE,       -19, "out of sockets or file descriptors")                     \
  X(ESTOPPED,     -20, "server is stopping")                                    \
  X(ETLS,         -21, "TLS handshake or record failed")                        \
  X(EPKCS12,      -22, "not a usable PKCS#12 blob")                             \
  X(EPASSWORD,    -23, "wrong PKCS#12 password")                                \
  X(ENOKEY,       -24, "certificate without its private key")                   \
  X(ECERTVERIFY,  -25, "peer certificate verification failed")                  \
  X(ENOTLS,       -26, "not a TLS connection")

enum iocp_errno {
  IOCP_OK = 0,
#define IOCP_ERRNO_ENUM_(name, code, text) IOCP_##name = (code),
  IOCP_ERRNO_MAP(IOCP_ERRNO_ENUM_)
#undef IOCP_ERRNO_ENUM_
  IOCP_ERRNO_LAST_ = -26
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
  IOCP_REASON_DESTROY = 4,
  /* No traffic for its idle timeout (abortive close; queued data dropped).
   * See iocp_config.idle_timeout_ms and iocp_set_idle_timeout(). (1.1) */
  IOCP_REASON_IDLE_TIMEOUT = 5,
  /* iocp_stop_graceful() reached its deadline with the connection still
   * open (abortive close; queued data dropped). (1.1) */
  IOCP_REASON_STOP_DEADLINE = 6,
  /* TLS (1.2): the peer's FIN came without a TLS close_notify first, so the
   * stream may have been cut short (abortive close; queued data dropped). */
  IOCP_REASON_TLS_TRUNCATED = 7,
  /* TLS (1.2): a record failed after the handshake (bad record, a
   * renegotiation attempt, a fatal alert from the peer); abortive. */
  IOCP_REASON_TLS_ERROR = 8
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
 * not serialised, unlike a connection's callbacks); in queue mode also the
 * thread inside iocp_wait() (see "Batched events"), with a worker's limits. Messages that arise
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
 * IOCP_EUNREACH (no route, or an address the system cannot reach from here,
 * such as a link-local fe80:: address without its scope), IOCP_ECLOSED
 * (iocp_close() or iocp_destroy() ended it first), or the code of another
 * failure (IOCP_EADDRNOTAVAIL: no local port left; IOCP_ESYSTEM). The same
 * codes on Windows and Linux; an IPv4-mapped target (::ffff:a.b.c.d) is
 * reached over IPv4 on both. It is that
 * id's first and last callback: no on_connect or on_disconnect follows. For
 * every id that iocp_connect() returned, exactly one of on_connect_failed or
 * on_connect (then, if kept, on_disconnect) runs. On a worker thread; may
 * call everything on_data may.
 */
typedef void(IOCP_CALL *iocp_on_connect_failed_fn)(iocp_server *server, void *user,
                                                   iocp_conn_id id, int error);

/*
 * (1.1) The connection's send queue fell to its drain mark (see
 * iocp_set_drain_mark(); 0, "empty", unless set): `queued` bytes are still
 * queued. It fires once each time the queue falls from above the mark to at
 * or below it, so a producer that stopped (because the queue grew past the
 * mark, or iocp_send() returned IOCP_EQUEUEFULL) resumes from here instead
 * of polling. It follows the on_sent of the same bytes, never runs after
 * on_disconnect, and is skipped once the connection is being torn down.
 */
typedef void(IOCP_CALL *iocp_on_drain_fn)(iocp_server *server, void *user,
                                          iocp_conn_id id, uint64_t queued);

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
  /* Added in 1.1; a caller whose struct ends before it gets NULL. */
  iocp_on_drain_fn on_drain;
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
  /* Worker threads; 0 (default) = one per processor (in queue mode one
   * fewer, at least one: the thread calling iocp_wait() is busy too); at
   * most 1024. */
  uint32_t threads;
  /* listen() backlog; 0 (default) = the system maximum. */
  uint32_t backlog;
  /* Accepts kept posted at all times (AcceptEx on Windows; on Linux the most
   * connections one wake-up accepts, capped at 64); 1 to 4096, default 16. */
  uint32_t accepts_posted;
  /* Size in bytes of the buffer one receive reads into; 64 to 64 MiB
   * (67108864), default 65536. A buffer is lent from a pool only while
   * received bytes wait for on_data (in queue mode: until the DATA event's
   * batch is released), so an idle connection holds none (since 1.1). The
   * pool keeps a few spares per worker plus as many as the recent peak of
   * buffers lent at once (the last second or two) needs, and returns the
   * rest to the allocator as that peak falls. On Windows a busy connection
   * (its last receive found bytes) waits for its next bytes in such a
   * buffer, so they arrive with the completion: at most 16 MiB of buffers
   * per server wait so (16 to 4,096 of them), each given back after one to
   * two seconds of silence, so a connection that stays idle holds none
   * there either. */
  uint32_t recv_buffer_size;
  /* Per-connection limit on bytes queued and not yet sent; iocp_send()
   * returns IOCP_EQUEUEFULL rather than exceed it. At least 1, no upper
   * limit (queues past 4 GiB work: the library sends at most 1 GiB per
   * operation). Default 8 MiB. */
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
  /* ---- Added in 1.1 with the controls: a caller whose struct ends before a
   * field gets its default, so a 1.0 caller keeps 1.0's behaviour. ---- */
  /* A connection with no traffic (no byte received, no byte of its queue
   * handed to the system) for this many milliseconds ends with
   * IOCP_REASON_IDLE_TIMEOUT. 0 (default): never. At most
   * IOCP_MAX_TIMEOUT_MS. Checked by a coarse sweep: a connection ends
   * between the timeout and a quarter of it later. Per connection:
   * iocp_set_idle_timeout().
   * Slow downloaders: bytes count as handed to the system when a send
   * completes, not as the peer reads them. Once the socket's send buffer
   * is full, a peer that reads slowly lets the system take more only
   * after it has read a good part of that buffer (Linux: about a third of
   * it), and on Windows only once the system has taken the whole send in
   * progress (everything that was queued when it began, up to 1 GiB):
   * when the peer has read nearly all of it. If
   * that takes longer than the timeout, the connection ends as idle while
   * the peer is still reading, and the bytes it has not read are dropped
   * (it sees a reset). For large downloads to slow peers, set a timeout
   * longer than the slowest acceptable peer takes for a send buffer's
   * worth plus the queue's bytes, keep the queue short with on_drain, or
   * turn the timeout off for that connection while it downloads. */
  uint32_t idle_timeout_ms;
  /* The most connections open at once (iocp_connection_count(), outbound
   * ones included); past it a newly accepted connection is closed at once
   * with a reset, runs no callback, and is counted (iocp_refused_count()).
   * iocp_connect() is not refused by it. 0 (default): no limit. */
  uint32_t max_connections;
  /* 1: TCP keep-alive on accepted connections (SO_KEEPALIVE), probing an
   * idle peer after keepalive_idle_ms, then every keepalive_interval_ms
   * (0 = the system's value for either). 0 (default): the system default
   * (off). Linux counts in whole seconds (rounded up); both at most
   * IOCP_MAX_KEEPALIVE_MS. */
  uint32_t keepalive;
  uint32_t keepalive_idle_ms;
  uint32_t keepalive_interval_ms;
  uint32_t reserved4_; /* set to 0 */
  /* The drain mark each new connection starts with (see on_drain and
   * iocp_set_drain_mark()); default 0: on_drain when the queue is empty. */
  uint64_t drain_mark;
  /* ---- Added in 1.1 with the batched events. ---- */
  /* How events reach the caller: IOCP_DELIVERY_CALLBACKS (0,
   * the default: the callbacks of iocp_callbacks, on worker threads) or
   * IOCP_DELIVERY_QUEUE (iocp_wait(): batches on the caller's own thread).
   * See "Batched events" below. */
  uint32_t delivery;
  /* IOCP_DELIVERY_QUEUE only: the optional events to queue, a bit mask of
   * IOCP_EVENT_BIT(t) for t = IOCP_EVENT_SENT, IOCP_EVENT_PEER_CLOSED,
   * IOCP_EVENT_DRAIN and IOCP_EVENT_LOG (default 0: none; without
   * PEER_CLOSED the library finishes a connection whose peer closed, as a
   * NULL on_peer_closed does; each bit stands for the callback of the same
   * name being set). ACCEPTED, DATA, DISCONNECTED and CONNECT_FAILED are
   * always queued. Must be 0 in callback mode. */
  uint32_t queue_events;
  /* ---- Added in 1.2: TLS (see "TLS" below). All zero: plain TCP. ---- */
  /* The server's identity: a PKCS#12 blob (certificate, its private key
   * and optionally the chain) and its length; NULL: no TLS. Read by
   * iocp_create() only (the caller may free it once it returns). */
  const void *tls_pkcs12;
  uint32_t tls_pkcs12_len;
  /* The lowest protocol accepted: 0 (the default) or IOCP_TLS_1_2 for
   * TLS 1.2, IOCP_TLS_1_3 for TLS 1.3 only. TLS 1.0 and 1.1 are never accepted (IOCP_EINVAL). */
  uint32_t tls_min_version;
  /* The blob's password (NULL: empty). Copied. */
  const char *tls_password;
  /* ALPN protocols the server accepts, most preferred first, separated by
   * commas: "h2,http/1.1". NULL: no ALPN. Copied. */
  const char *tls_alpn;
  /* A handshake not finished after this many milliseconds ends (counted in
   * tls_handshake_timeouts); 0 = 10000. At most IOCP_MAX_TIMEOUT_MS. */
  uint32_t tls_handshake_timeout_ms;
  uint32_t reserved5_; /* set to 0 */
} iocp_config;

/* Values of tls_min_version and iocp_tls_info.version (the protocol's
 * own version numbers). */
enum iocp_tls_version {
  IOCP_TLS_1_2 = 0x0303,
  IOCP_TLS_1_3 = 0x0304
};

/* The longest idle timeout, in milliseconds (24 days: 2^31 - 1). */
#define IOCP_MAX_TIMEOUT_MS 2147483647u
/* The longest keep-alive idle time or interval, in milliseconds (32767 s). */
#define IOCP_MAX_KEEPALIVE_MS 32767000u

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
 * a config field outside the limits written beside it), IOCP_EVERSION (a struct's size is not one this library
 * knows), IOCP_EADDRINUSE (port taken), IOCP_EADDRNOTAVAIL (address not on
 * this machine), IOCP_EACCES, IOCP_EAFNOSUPPORT, IOCP_EMFILE, IOCP_ENOMEM,
 * IOCP_ESYSTEM. When a socket option the server depends on cannot be set
 * (SO_EXCLUSIVEADDRUSE on Windows, IPV6_V6ONLY for an IPv6 address), on_log
 * hears why (IOCP_LOG_ERROR) on this thread before iocp_create() returns.
 * On failure *server is set to NULL and nothing is left behind.
 * Any thread may call it, including a callback of another server.
 *
 * With config->delivery == IOCP_DELIVERY_QUEUE, `callbacks` may be NULL (or
 * have every function NULL but on_log, which then gets every message
 * instead of LOG events: see "Batched events"); any other callback given as
 * well is IOCP_EMODE: a server delivers in one mode only. An unknown
 * delivery value is IOCP_EINVAL, and so are queue_events bits in callback
 * mode.
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
 * IOCP_ESHUTDOWN. Calling it twice is a successful no-op, also once the
 * connection is ending.
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

/* ---- Per-connection controls (1.1) ----------------------------------------
 * Like iocp_send(), these may be called from any thread, including from
 * inside any callback. Each returns 0 or a negative code; IOCP_EINVAL when
 * server is NULL, IOCP_ENOTFOUND for an unknown or stale id (also once
 * on_disconnect has started, except iocp_get_context, see there). */

/*
 * Attaches the caller's pointer `context` to connection `id` (NULL clears
 * it). The library never looks at it; it is handed back by
 * iocp_get_context() until the connection's last callback (on_disconnect)
 * has returned, after which the caller may free what it points to. Set it
 * in on_connect to have it from the first event on. Returns 0,
 * IOCP_EINVAL or IOCP_ENOTFOUND (a closing but not yet ended connection
 * still takes it).
 */
IOCP_API int IOCP_CALL iocp_set_context(iocp_server *server, iocp_conn_id id,
                                        void *context);

/*
 * Stores connection `id`'s context in *context (NULL if never set). Inside
 * any callback of that connection, on_disconnect included, it is read
 * straight from the connection being delivered, without a table lookup;
 * elsewhere the id is looked up. Returns 0, IOCP_EINVAL (server or context
 * NULL) or IOCP_ENOTFOUND (*context is then set to NULL).
 */
IOCP_API int IOCP_CALL iocp_get_context(iocp_server *server, iocp_conn_id id,
                                        void **context);

/*
 * Stops receiving on connection `id`: no receive is posted until
 * iocp_resume_recv(), so the peer's bytes stay in the kernel and TCP flow
 * control slows the peer down. Called inside this connection's on_data (or
 * any of its callbacks before the first on_data), no more bytes arrive;
 * called from elsewhere, one receive already posted may still complete, so
 * at most one more on_data (up to recv_buffer_size bytes) can follow. The
 * peer's FIN is not seen while paused either. A paused connection does not
 * time out for idleness (its clock restarts at resume). Pausing twice is a
 * successful no-op. Returns 0, IOCP_EINVAL, IOCP_ENOTFOUND or IOCP_ECLOSED.
 */
IOCP_API int IOCP_CALL iocp_pause_recv(iocp_server *server, iocp_conn_id id);

/*
 * Receives again after iocp_pause_recv(): the bytes that waited in the
 * kernel arrive through on_data, in order. Resuming a connection that is
 * not paused is a successful no-op. Returns 0, IOCP_EINVAL,
 * IOCP_ENOTFOUND or IOCP_ECLOSED.
 */
IOCP_API int IOCP_CALL iocp_resume_recv(iocp_server *server, iocp_conn_id id);

/*
 * Sets connection `id`'s drain mark: on_drain fires when its send queue
 * falls from above `mark` bytes to at or below it (0: when it is empty).
 * If the queue is above the new mark now, on_drain follows once it falls
 * to it. Without an on_drain callback the mark is kept but nothing fires.
 * Returns 0, IOCP_EINVAL (mark >= max_send_queue, which the queue can
 * never exceed), IOCP_ENOTFOUND or IOCP_ECLOSED.
 */
IOCP_API int IOCP_CALL iocp_set_drain_mark(iocp_server *server, iocp_conn_id id,
                                           uint64_t mark);

/*
 * Sets connection `id`'s idle timeout in milliseconds, replacing the
 * server's idle_timeout_ms for it; 0 turns it off for this connection. The
 * clock restarts now. Returns 0, IOCP_EINVAL (timeout_ms greater than
 * IOCP_MAX_TIMEOUT_MS), IOCP_ENOTFOUND, IOCP_ECLOSED, IOCP_ESTOPPED (the
 * server is being destroyed), or IOCP_ESYSTEM / IOCP_ENOMEM when the
 * server's timer thread, started by the first timeout, cannot start.
 */
IOCP_API int IOCP_CALL iocp_set_idle_timeout(iocp_server *server, iocp_conn_id id,
                                             uint32_t timeout_ms);

/* The port the server listens on (useful after binding port 0); 0 if server
 * is NULL or destroyed. */
IOCP_API uint16_t IOCP_CALL iocp_port(iocp_server *server);

/* Connections currently open: accepted (including one whose on_connect is
 * still running) and whose on_disconnect has not started; a refused one
 * leaves the count before its peer sees the reset. 0 if server is NULL or
 * destroyed. */
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
 * IOCP_ADDRSTRLEN; nothing is written then), IOCP_ECLOSED (the server is
 * destroyed). Any thread, including inside callbacks.
 */
IOCP_API int IOCP_CALL iocp_listen_address(iocp_server *server, char *text, size_t cap,
                                           uint16_t *port);

/*
 * (Added in 1.2.) The local address and port of connection `id`, as the
 * system reports them: for an accepted connection the address the peer
 * reached (on a server bound to "0.0.0.0" or "::", the interface's own),
 * for an outbound one (iocp_connect) the address and port the system chose
 * for it. `text` and `port` as for iocp_listen_address(). Meaningful from
 * on_connect (ACCEPTED) on; before that an outbound connection may report
 * its wildcard bind.
 *
 * Returns 0, or IOCP_EINVAL (server or text NULL, cap smaller than
 * IOCP_ADDRSTRLEN), IOCP_ENOTFOUND (unknown or stale id), IOCP_ECLOSED (the
 * connection is closing, its socket gone), IOCP_ESYSTEM. Any thread,
 * including inside callbacks.
 */
IOCP_API int IOCP_CALL iocp_local_address(iocp_server *server, iocp_conn_id id, char *text,
                                          size_t cap, uint16_t *port);

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
 * destroyed or is destroyed), IOCP_EAFNOSUPPORT (no IPv6 on this machine), IOCP_EMFILE (out
 * of sockets), IOCP_ENOMEM, IOCP_ESYSTEM. On failure *id is 0 and no
 * callback runs for the attempt; errors of the connection itself (refused,
 * unreachable) arrive through on_connect_failed even when the system knows
 * them at once. Any thread, including inside any callback.
 */
IOCP_API int IOCP_CALL iocp_connect(iocp_server *server, const char *address, uint16_t port,
                                    iocp_conn_id *id);
/* ---- TLS (added in 1.2) ---------------------------------------------------
 *
 * A server given config.tls_pkcs12 speaks TLS on every accepted connection
 * (OpenSSL 3 on Linux, SChannel on Windows); the byte path stays the same:
 * - on_connect (ACCEPTED) comes once the handshake completed; a handshake
 *   that fails or times out never reaches the program: no callback runs,
 *   it is counted (iocp_statistics.tls_handshake_*) and on_log says why
 *   (IOCP_LOG_WARN; at most one such line a second, the next one says how
 *   many were left out). iocp_connection_count() includes connections still in
 *   their handshake.
 * - on_data carries plaintext, iocp_send() takes plaintext: the order,
 *   max_send_queue (counted in plaintext bytes), on_sent (plaintext bytes
 *   whose records went to the system), the drain mark and
 *   iocp_pause_recv() work as over plain TCP.
 * - iocp_shutdown() sends the queued bytes, then a close_notify alert, then
 *   FIN. A peer's close_notify is on_peer_closed; a peer's FIN without
 *   close_notify ends the connection with IOCP_REASON_TLS_TRUNCATED. A
 *   record error after the handshake ends it with IOCP_REASON_TLS_ERROR.
 *   Renegotiation is refused.
 * - TLS 1.2 and 1.3 (config.tls_min_version); 1.0 and 1.1 never. The
 *   Windows engine speaks TLS 1.3 where the system's SChannel has it
 *   (Windows 11, Windows Server 2022 and later); elsewhere TLS 1.2, and
 *   tls_min_version IOCP_TLS_1_3 (or iocp_tls_client.min_version) is
 *   IOCP_ETLS. ALPN on both engines.
 * iocp_create() fails, nothing listening, with IOCP_EPKCS12 (not a PKCS#12
 * blob, no certificate in it, or a certificate unfit for a TLS server, see
 * below), IOCP_EPASSWORD, IOCP_ENOKEY (no private key, or one that does
 * not match the certificate) or IOCP_ETLS (the TLS library failed), and
 * on_log (IOCP_LOG_ERROR) says why. Unfit, on both engines: a key usage
 * extension without digitalSignature (TLS 1.3 and ECDHE handshakes sign
 * with the key; such an RSA certificate fails with strict clients, an
 * ECDSA one with every client), or an
 * extended key usage extension without serverAuth (verifying clients
 * refuse it). Not checked: that the key actually signs (a key damaged on
 * import under Wine; on Windows, a key that a hand-made blob pairs with a
 * certificate it does not match) may still start a server whose every
 * handshake fails.
 *
 * Make a blob from PEM files with:
 *   openssl pkcs12 -export -in cert.pem -inkey key.pem -out server.p12 \
 *     -passout pass:secret
 * OpenSSL 3 encrypts it with PBES2 (AES-256-CBC) and a SHA-256 MAC, which
 * Linux and current Windows (Server 2019 and later) read; older Windows
 * (Server 2016 and before) reads only the older encryption: add
 *   -certpbe PBE-SHA1-3DES -keypbe PBE-SHA1-3DES -macalg sha1
 * (or -legacy). RSA and ECDSA keys work on Windows and Linux. Under Wine
 * (tested: 10.0) only RSA keys import, in either encryption: its crypt32
 * refuses other key types, and since its PFXVerifyPassword cannot confirm
 * a password, an ECDSA blob there fails with IOCP_EPASSWORD. Wine also
 * mangles an RSA key with a component shorter than its full length (about
 * 1 key in 60: a CRT value or the private exponent with a leading zero
 * byte): the server starts and every handshake fails. Use another key.
 */

/* Outbound TLS options of iocp_connect_tls(). Zero it, set `size` to
 * sizeof(iocp_tls_client), then the fields you need. */
typedef struct iocp_tls_client {
  uint32_t size;
  /* 0 (default): verify the server's certificate chain and name; 1: accept
   * any certificate (tests only). */
  uint32_t no_verify;
  /* The server's host name: sent as SNI and checked against the
   * certificate (an IP address text is checked as an address, not sent).
   * NULL: no SNI, and no name check. Copied. */
  const char *server_name;
  /* Trust anchors as PEM text (one or more certificates) and its length;
   * NULL: the system's trust store. Read during the call only. */
  const void *ca_pem;
  uint32_t ca_pem_len;
  /* 0 or IOCP_TLS_1_2: TLS 1.2 or newer; IOCP_TLS_1_3: 1.3 only. */
  uint32_t min_version;
  /* ALPN protocols to offer, comma-separated; NULL: none. Copied. */
  const char *alpn;
  /* 0 = 10000 ms; as config.tls_handshake_timeout_ms. */
  uint32_t handshake_timeout_ms;
  uint32_t reserved_; /* set to 0 */
} iocp_tls_client;

/*
 * As iocp_connect(), speaking TLS as a client once connected: on_connect
 * comes after the handshake; a failed handshake ends the attempt with
 * on_connect_failed(IOCP_ECERTVERIFY) (the certificate is not trusted or
 * not for server_name), on_connect_failed(IOCP_ETIMEDOUT) (no handshake
 * within handshake_timeout_ms) or on_connect_failed(IOCP_ETLS) (anything
 * else). Works on a server with or without tls_pkcs12.
 * Returns what iocp_connect() returns, and IOCP_EINVAL (tls NULL, size
 * too small, a bad version), IOCP_EVERSION, IOCP_ETLS (the options were
 * refused, e.g. a CA text with no certificate; on_log says why).
 */
IOCP_API int IOCP_CALL iocp_connect_tls(iocp_server *server, const char *address,
                                        uint16_t port, const iocp_tls_client *tls,
                                        iocp_conn_id *id);

/* What a connection's handshake settled. Set `size` first. */
typedef struct iocp_tls_info {
  uint32_t size;
  uint32_t version;  /* IOCP_TLS_1_2 or IOCP_TLS_1_3 */
  char cipher[64];   /* the IANA name, e.g. "TLS_AES_128_GCM_SHA256" */
  char alpn[256];    /* the protocol ALPN chose, "" for none */
} iocp_tls_info;

/*
 * Fills *info for a connection whose handshake completed (from on_connect
 * on). Any thread. Returns 0, or IOCP_EINVAL (NULL, size too small),
 * IOCP_ENOTFOUND, IOCP_ENOTLS (a plain TCP connection, or one still in its
 * handshake), IOCP_ECLOSED (the server is destroyed).
 */
IOCP_API int IOCP_CALL iocp_tls_get_info(iocp_server *server, iocp_conn_id id,
                                         iocp_tls_info *info);

/* (1.1) Connections closed at once because max_connections was reached,
 * since the server started. 0 if server is NULL. */
IOCP_API uint64_t IOCP_CALL iocp_refused_count(iocp_server *server);

/*
 * (1.1) Stops the server gracefully, waiting at most `timeout_ms`
 * milliseconds:
 *   1. stops accepting (the listening socket is closed);
 *   2. half-closes every open connection: its queued bytes go out, then FIN
 *      (an automatic iocp_shutdown(); iocp_send() returns IOCP_ESHUTDOWN
 *      from here on), while bytes from the peer still arrive through
 *      on_data until the peer closes, which ends the connection with
 *      IOCP_REASON_PEER_CLOSED as usual (a connection whose on_connect has
 *      not returned yet, or whose ACCEPTED event is not released yet, is
 *      half-closed once kept, after the bytes on_connect sent);
 *   3. waits until every connection has ended, or the deadline;
 *   4. closes the connections still open at the deadline abortively, with
 *      IOCP_REASON_STOP_DEADLINE, and waits for their on_disconnect.
 * Every connection still gets exactly one on_disconnect, all before this
 * returns. A paused connection (iocp_pause_recv()) does not see its peer's
 * FIN: resume it, or it lasts until the deadline. timeout_ms 0 means step 4
 * at once. Afterwards the server accepts nothing more; call iocp_destroy()
 * to release it (iocp_port() and the getters keep working until then).
 * Queue mode: see "Batched events" (another thread must keep draining).
 *
 * Blocks the calling thread. An iocp_destroy() on another thread meanwhile
 * waits for it, and both return, bounded by timeout_ms (in queue mode the
 * disconnects still queued then are released by iocp_destroy(), not
 * delivered). A connection still inside a long callback at the deadline
 * ends when the callback returns. Returns the number of connections closed at
 * the deadline (0: all ended gracefully), or: IOCP_EINVAL (server NULL, or
 * timeout_ms greater than IOCP_MAX_TIMEOUT_MS), IOCP_EINCALLBACK (called
 * from inside a callback of this server, or in queue mode from the thread
 * that made the last iocp_wait() call: it would wait for itself),
 * IOCP_ESTOPPED (a stop already ran or is running).
 */
IOCP_API int IOCP_CALL iocp_stop_graceful(iocp_server *server, uint32_t timeout_ms);

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
  /* Added in 1.2 (TLS). Accepted sockets count in connections_accepted only
   * once their handshake completed; the others count here. */
  uint64_t tls_handshakes;         /* completed handshakes, both directions */
  uint64_t tls_handshake_failures; /* failed (not TLS, bad version, alert,
                                      peer gone, verification) */
  uint64_t tls_handshake_timeouts; /* not finished in time */
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
 * and no callback runs after it returns. It always returns: on Windows, once
 * every connection is closed, it waits at most 2 seconds without progress
 * for the system to complete their cancelled operations; a connection whose
 * operation never completes (seen under Wine) is reported to on_log (a
 * warning, IOCP_ESYSTEM) and its memory is left allocated, since the system
 * may still write to it.
 *
 * Calls on other threads: destroy first waits for every call to this server
 * already in progress on another thread (they take moments: no call blocks).
 * Calls that begin once destroy has started, and calls made with the handle
 * after destroy returned, fail cleanly: IOCP_ECLOSED from iocp_send(),
 * iocp_shutdown(), iocp_close(), iocp_queued(), iocp_connect(),
 * iocp_listen_address() and a second iocp_destroy();
 * 0 from iocp_port() and iocp_connection_count(). Inside this server's own
 * callbacks (which run during destroy, e.g. on_disconnect) every function
 * keeps working as documented. This holds because the library never gives
 * a server's memory back to the allocator: it keeps destroyed servers' small
 * structs in a pool (never more than the most servers alive at once; freed
 * when the library is unloaded) and a later iocp_create() reuses one. The one exception follows from that: once
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
 *
 * Queue mode: there are no callbacks, so the disconnects cannot run inside
 * iocp_destroy(); see "Batched events" for what it does instead (and for
 * iocp_stop() and iocp_stop_graceful(), which deliver every disconnect
 * before the destroy).
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
 * successful no-op. Returns 0, IOCP_EINVAL (server NULL) or IOCP_ECLOSED
 * (destroyed).
 */
IOCP_API int IOCP_CALL iocp_stop(iocp_server *server);

/* ---- Batched events (queue mode, added in 1.1) ---------------------------
 *
 * IOCP's own model is a queue that the program drains; iocp_wait() offers
 * that to callers for whom a callback per event is costly (Python, .NET):
 * the library still does all the I/O, but instead of calling back it
 * appends each event to the server's queue, and the caller's own thread
 * takes a batch of events with one call. Create the server with
 * config.delivery = IOCP_DELIVERY_QUEUE.
 *
 * While iocp_wait() waits, its thread may work for the library as a thread
 * waiting on an I/O completion port does (in the Linux build; the Windows
 * build's workers do it all): it serves I/O itself and takes the events it
 * makes, and the worker that would have served them stays out of the way
 * until the caller has been away from iocp_wait() for 2 ms. The caller's
 * own code never runs I/O. (dll/README.md says why.)
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
 *   (LOG text, too, stays valid until then.)
 * - Refusal: ACCEPTED stands for on_connect. Calling iocp_close() on that id
 *   before the batch is released, on the thread that took the batch,
 *   refuses the connection: the peer sees a reset and no other event comes
 *   for the id (not even DISCONNECTED). Doing nothing keeps it. (From
 *   another thread meanwhile, iocp_close() is an ordinary close, as one
 *   racing on_connect is: DISCONNECTED(IOCP_REASON_LOCAL_CLOSE) follows.)
 *   iocp_send() and iocp_shutdown() before the release queue bytes that go
 *   out once the connection is kept.
 * - Ids: the id of a DISCONNECTED or CONNECT_FAILED event is already stale
 *   (functions given it return IOCP_ENOTFOUND), as in on_disconnect.
 * - Contexts: every event of a connection carries the connection's context
 *   (iocp_set_context()) as it was when the event was queued, so a caller
 *   needs no lookup; set it while handling ACCEPTED (before the batch is
 *   released) and every later event of the connection carries it, the
 *   DISCONNECTED event included, after which the caller may free it.
 * - The 1.1 controls work as with callbacks, "inside on_data" meaning "while
 *   the DATA event's batch is not yet released": iocp_pause_recv() then
 *   stops the next receive exactly; the drain mark queues a DRAIN event
 *   (when asked for in queue_events) where on_drain would run; an idle
 *   timeout and max_connections end and refuse connections the same way.
 * - Outbound connections (iocp_connect()): ACCEPTED when connected (refused
 *   by iocp_close() before the release, as an accepted one), or one
 *   CONNECT_FAILED event, its first and last.
 * - iocp_stop_graceful() works in queue mode when another thread keeps
 *   calling iocp_wait() while it runs (the peers' last bytes and every
 *   DISCONNECTED event go through the queue, and it returns once they all
 *   were taken and released); afterwards iocp_wait() returns IOCP_ECLOSED.
 *   Called on the thread that made the last iocp_wait() call (the one
 *   holding the current batch), it would wait for itself: IOCP_EINCALLBACK.
 * - Log messages: with IOCP_EVENT_BIT(IOCP_EVENT_LOG) in queue_events (and
 *   on_log NULL) they are queued as LOG events, so a queue-mode caller
 *   needs no callback at all. Messages about iocp_create() itself can only
 *   reach on_log (nothing can be waited on yet), so on_log stays allowed in
 *   queue mode and, when set, gets every message instead. LOG events do not
 *   wait for the release of the previous ones: at most
 *   IOCP_LOG_QUEUE_MAX wait at once; past that, messages are counted and
 *   the next LOG event that fits says how many were lost.
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
  IOCP_EVENT_CONNECT_FAILED = 6,
  /* A message of the library (on_log); only when queue_events has
   * IOCP_EVENT_BIT(IOCP_EVENT_LOG) and on_log is NULL: id = 0 (no
   * connection), value = enum iocp_log_level, data = the text
   * (NUL-terminated), len = its length, context = the IOCP_ code (as a
   * signed 64-bit number; 0 for IOCP_LOG_INFO). */
  IOCP_EVENT_LOG = 7,
  /* The send queue fell to its drain mark (on_drain): len = bytes still
   * queued; only when queue_events has IOCP_EVENT_BIT(IOCP_EVENT_DRAIN). */
  IOCP_EVENT_DRAIN = 8
};

/* The most LOG events waiting at once (queued or in a batch). */
#define IOCP_LOG_QUEUE_MAX 16

/* The bit of event type t in iocp_config.queue_events. */
#define IOCP_EVENT_BIT(t) (1u << (t))

/*
 * One event. 40 bytes with the same layout on every platform (x86 and x64,
 * Windows and Linux; no padding, every field at its natural alignment):
 *
 *   offset 0  uint32_t type     IOCP_EVENT_*
 *   offset 4  int32_t  value    ACCEPTED: peer port; DISCONNECTED: reason;
 *                               CONNECT_FAILED: error; LOG: level
 *   offset 8  uint64_t id       the connection
 *   offset 16 uint64_t data     an address as an integer (see the types), 0
 *                               when unused; in C: (const uint8_t *)(uintptr_t)
 *   offset 24 uint64_t len      a byte count (see the types)
 *   offset 32 uint64_t context  the connection's context (iocp_set_context())
 *                               as an integer; in C: (void *)(uintptr_t)
 *
 * The size never changes: events added later carry what they need in these
 * fields. A caller must skip types it does not know (later minor versions
 * queue new types only when asked to, through queue_events bits).
 * .NET: [StructLayout(LayoutKind.Sequential)] uint, int, ulong, ulong,
 * ulong, ulong; ctypes/struct: "<IiQQQQ" (little-endian on Windows and x86
 * Linux).
 */
typedef struct iocp_event {
  uint32_t type;
  int32_t value;
  iocp_conn_id id;
  uint64_t data;
  uint64_t len;
  uint64_t context;
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
 * nothing released), IOCP_ECLOSED (after iocp_stop() or
 * iocp_stop_graceful(), when every connection has ended and its events were
 * taken and released; or when iocp_destroy() began, or has returned). Call it from any thread but a worker (there are no callbacks in
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

/*
 * (Added in 1.2.) A handle an event loop waits on among its own, so that one
 * thread drains the queue without a thread of its own parked in iocp_wait():
 * on Linux a file descriptor (poll, epoll, select: readable), on Windows an
 * event HANDLE (WaitForMultipleObjects, RegisterWaitForSingleObject:
 * signalled). It is ready whenever iocp_wait() with a time-out of 0 may have
 * something to do: events queued, iocp_wake() called, the server finished
 * (iocp_wait() returns IOCP_ECLOSED), and on Linux I/O the calling thread
 * may serve itself. The loop then calls iocp_wait(server, events, max, 0)
 * and handles the batch; a ready handle is made not ready by that call, so
 * the loop waits again when iocp_wait() returned 0 events. A wake-up may be
 * spurious (the call then returns 0). Keep calling iocp_wait(..., 0) soon
 * after a batch (each call releases the previous batch, and its connections
 * wait until then), as with a blocking iocp_wait().
 *
 * Once the handle was asked for, an iocp_wait() with time-out 0 also serves
 * the I/O that is ready for the caller's thread (on Linux, as a waiting
 * iocp_wait() does), so a loop that keeps draining does the work of a
 * worker itself, on its own thread, and the worker stays out of the way.
 * Blocking iocp_wait() calls stay allowed.
 *
 * *handle is the same for every call on a server; it belongs to the server:
 * do not read, reset or close it, and stop waiting on it before
 * iocp_destroy(), which closes it. Returns 0, IOCP_EINVAL (server or handle
 * NULL), IOCP_EMODE (callback mode), IOCP_ECLOSED (iocp_destroy() began) or
 * a system error.
 */
IOCP_API int IOCP_CALL iocp_wait_handle(iocp_server *server, intptr_t *handle);

#ifdef __cplusplus
}
#endif

#endif /* IOCPSRV_H */
