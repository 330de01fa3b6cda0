/* The interface between the platform-free core (dll/core) and one OS engine
 * (dll/win: I/O completion ports; dll/linux: epoll). Exactly one engine is
 * compiled in. The engine owns sockets, the completion machinery and the
 * worker threads; the core owns connection state, send queues, callbacks and
 * their ordering, the id table, the workers' identities and data, receive
 * buffers and statistics.
 *
 * This header is everything an engine may use: it includes no other core
 * header but sys.h (locks, counters, machine facts) and hooks.h (the
 * replaceable call table), and it sees the core's structs only through the
 * functions below. */
#ifndef IOCP_CORE_ENGINE_H
#define IOCP_CORE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "iocpsrv.h"
#include "sys.h"
#include "hooks.h"

typedef struct iocp__conn iocp__conn;

/* A buffer of the send queue, handed to the engine for one gathered send. */
typedef struct iocp__iov {
  const uint8_t *base;
  size_t len;
} iocp__iov;

/* The most buffers one send operation gathers. */
#define IOCP__MAX_IOV 16

/* Result classes of a completed operation, as the core needs to see them. */
enum iocp__io_result {
  IOCP__IO_OK = 0,      /* success (a receive of 0 bytes is the peer's FIN) */
  IOCP__IO_ABORTED = 1, /* cancelled because we closed the socket */
  IOCP__IO_RESET = 2    /* the peer reset the connection, or an I/O error */
};

/* ---- Tuning (tuning.c) ---------------------------------------------------
 * Switches for the tests and the benchmark, not an interface. iocp_create()
 * reads them once (iocp__tuning_load: iocp__tuning_defaults, overridden by
 * the IOCPSRV_* environment variables named below, a number each; text that
 * is not a number in range leaves the default) and hands them to
 * iocp__eng_start. Each engine uses its own; dll/README.md lists them. */
typedef struct iocp__tuning {
  int park;            /* epoll: IOCPSRV_PARK, 0..3, the parking mode (linux/internal.h) */
  int zero_byte_recv;  /* IOCP: receive with zero-byte WSARecv (no variable: tests only) */
  int skip_on_success; /* IOCP: IOCPSRV_SKIP_ON_SUCCESS, 0..1 */
  int try_send;        /* IOCP: IOCPSRV_TRY_SEND, 0..1 */
  int dequeue_batch;   /* IOCP: IOCPSRV_DEQUEUE_BATCH, 1..IOCP__TUNING_DEQUEUE_MAX */
  int hot_budget;      /* IOCP: IOCPSRV_HOT_BUDGET, -1..INT_MAX (-1: the engine's default) */
  int hot_idle_ms;     /* IOCP: IOCPSRV_HOT_IDLE_MS, 1..3600000 */
} iocp__tuning;
#define IOCP__TUNING_DEQUEUE_MAX 64
/* The values before the environment's; white-box tests change them before a
 * server starts, the shipped library never does. */
extern iocp__tuning iocp__tuning_defaults;

/* ---- Implemented by the engine -------------------------------------------
 * Unless noted, an engine function returns 0 or a negative IOCP_ code. */

/* Starts networking, binds and listens on the parsed address, starts
 * iocp__worker_count(s) workers and posts the accepts, with the server's
 * tuning (read once by iocp_create; the engine copies what it needs). On
 * failure everything is undone. */
int iocp__eng_start(iocp_server *s, const struct sockaddr *addr, int addrlen,
                    const iocp__tuning *tuning);

/* Stops accepting: closes the listening socket; accepts in flight are
 * cancelled and cleaned up by the workers. Idempotent. */
void iocp__eng_stop_accepting(iocp_server *s);

/* After every connection is gone: waits for the cancelled accepts, stops and
 * joins the workers, releases everything iocp__eng_start made. */
void iocp__eng_finish(iocp_server *s);

/* Per-connection operations. Called with the connection's lock held; the
 * core adds one reference per operation it gets a 0 for and the engine
 * reports each such operation exactly once, through iocp__conn_recv_done,
 * iocp__conn_send_done or iocp__conn_run. */
int iocp__eng_recv(iocp__conn *c); /* bytes into a buffer of iocp__buf_get */
int iocp__eng_send(iocp__conn *c, const iocp__iov *iov, int n);
int iocp__eng_post_run(iocp__conn *c);                     /* iocp__conn_run on a worker */
/* An immediate send, as uv_try_write: hands the socket what it takes at once
 * without blocking and without an operation to report. Called with the lock
 * held and nothing in flight or queued. Returns the bytes taken (0: none
 * now, or an engine that has no such path), or -1 when the socket failed
 * (the core then tears the connection down). */
long long iocp__eng_try_send(iocp__conn *c, const uint8_t *data, size_t len);
int iocp__eng_shutdown_send(iocp__conn *c);                /* FIN after queued bytes */
/* Closes the socket (abortive: RST); pending operations complete, aborted. */
void iocp__eng_close(iocp__conn *c, int abortive);
/* Releases the engine part of a connection whose socket is closed. */
void iocp__eng_conn_free(iocp__conn *c);
/* Marks a connection as having no socket yet (an outbound one before
 * iocp__eng_connect): iocp__eng_close and iocp__eng_conn_free then do nothing. */
void iocp__eng_conn_init(iocp__conn *c);
/* Queue mode: the thread inside iocp_wait() found nothing to take and lends
 * itself to the engine for at most timeout_ms (negative: no limit), with no
 * lock held: it serves readiness or completions as a worker would (the
 * events it makes are pushed as a worker's are) and returns after one batch
 * of them, after the time-out, or soon after iocp__eng_caller_wake(). Returns
 * nonzero when it waited, 0 when the engine cannot lend the thread now
 * (the core then sleeps on its condition variable). */
int iocp__eng_caller_serve(iocp_server *s, int32_t timeout_ms);
/* Ends the iocp__eng_caller_serve() in progress, or else the next one, soon.
 * Any thread, any lock held. */
void iocp__eng_caller_wake(iocp_server *s);
/* Queue mode, iocp_wait_handle(): the handle an event loop waits on. Made
 * by the first call (server lock held), the same one after; closed with the
 * engine. Returns 0 with *handle set, or the system's error. */
int iocp__eng_wait_handle_open(iocp_server *s, intptr_t *handle);
/* Makes the handle ready; any thread, any lock held. The core calls it once
 * per clear. */
void iocp__eng_wait_handle_signal(iocp_server *s);
/* Makes it not ready again (the draining thread, no lock held). */
void iocp__eng_wait_handle_clear(iocp_server *s);
/* Opens a socket and starts connecting it to addr. On 0 the engine reports
 * the attempt exactly once through iocp__conn_connected (the core adds the
 * reference it holds), also when the system fails it at once; a closed
 * socket reports it as IOCP_ECLOSED. Any other return: nothing was started
 * and nothing is left behind. */
int iocp__eng_connect(iocp__conn *c, const struct sockaddr *addr, int addrlen);
/* The connection's local address (getsockname), with its lock held: 0 or
 * the system's error as an IOCP_ code. */
int iocp__eng_local_address(iocp__conn *c, struct sockaddr_storage *addr);

/* ---- Connections, implemented by the core ----------------------------------
 * The engine's part of a connection (struct iocp__eng_conn, eng.h) and of
 * the server (struct iocp__eng_server) are the first members of the core's
 * structs, so each converts to the other without a call. */

static inline struct iocp__eng_conn *iocp__conn_eng(iocp__conn *c) {
  return (struct iocp__eng_conn *)(void *)c;
}
static inline iocp__conn *iocp__eng_conn_owner(struct iocp__eng_conn *e) {
  return (iocp__conn *)(void *)e;
}
static inline struct iocp__eng_server *iocp__server_eng(iocp_server *s) {
  return (struct iocp__eng_server *)(void *)s;
}

iocp_server *iocp__conn_server(const iocp__conn *c);
iocp_conn_id iocp__conn_id(const iocp__conn *c);
void iocp__conn_lock(iocp__conn *c);
void iocp__conn_unlock(iocp__conn *c);
/* Nonzero when the calling thread holds c's lock (always with NDEBUG): for
 * the assert() at the top of an engine function that ends in _locked. */
int iocp__conn_held(iocp__conn *c);

/* A new connection, with one reference (the engine's), or NULL when out of
 * memory. */
iocp__conn *iocp__conn_alloc(iocp_server *s);
/* The connection of an id with a new reference, or NULL when it is gone. */
iocp__conn *iocp__conn_lookup(iocp_server *s, iocp_conn_id id);
/* An outbound connection's attempt ended: error is IOCP_OK (connected; the
 * engine has made the socket ready for receives and sends) or the negative
 * IOCP_ code that failed it. Drops the attempt's reference. */
void iocp__conn_connected(iocp__conn *c, int error);
/* Calls fn on every connection in the table (with the table's shard lock
 * held: fn may take the connection's lock, and nothing else). */
void iocp__conn_each(iocp_server *s, void (*fn)(iocp__conn *c, void *arg), void *arg);
/* Drops one reference (each completed operation drops the one it held). */
void iocp__conn_unref(iocp__conn *c);

/* A new socket was accepted: the engine filled its part of c; `peer` is the
 * peer's address. The core inserts c into the table and runs on_connect.
 * Takes over the engine's single reference to c. */
void iocp__conn_accepted(iocp__conn *c, const struct sockaddr *peer);

/* A receive completed. With IOCP__IO_OK and bytes > 0, `buf` (from
 * iocp__buf_get) holds them and passes to the core, which gives it back
 * when the bytes are consumed; otherwise buf must be NULL. */
void iocp__conn_recv_done(iocp__conn *c, int result, uint8_t *buf, size_t bytes);
void iocp__conn_send_done(iocp__conn *c, int result, size_t bytes);
void iocp__conn_run(iocp__conn *c);

/* ---- The server, its workers, buffers and statistics (core) ------------------ */

const iocp_config *iocp__server_config(const iocp_server *s);
/* Connections in the table now (iocp_connection_count without the gate). */
uint64_t iocp__server_conn_count(const iocp_server *s);
/* The engine bound its listener to this address (port included). */
void iocp__server_bound(iocp_server *s, const struct sockaddr_storage *addr);

/* The number of workers to start (config, or one per processor). */
uint32_t iocp__worker_count(const iocp_server *s);
/* Called by each worker thread first (index < iocp__worker_count) and last. */
void iocp__worker_enter(iocp_server *s, uint32_t index);
void iocp__worker_leave(iocp_server *s);
/* Called by a worker after the completions (or readiness) it took in one
 * go, before it waits or sleeps again: the core hands on what it held back
 * meanwhile (queue mode wakes the draining thread once per such batch,
 * not once per event). */
void iocp__worker_flush(void);
/* Nonzero when the calling thread is one of s's workers. */
int iocp__on_worker(const iocp_server *s);

/* A receive buffer of iocp__buf_size(s) bytes (and room for
 * iocp__conn_recv_size), or NULL when out of memory; take one only when
 * bytes are there to read. */
uint8_t *iocp__buf_get(iocp_server *s);
void iocp__buf_put(iocp_server *s, uint8_t *buf);
size_t iocp__buf_size(const iocp_server *s);
/* The bytes to receive into such a buffer for c: iocp__buf_size, a little
 * more on a TLS connection (its records' headers and tags, so that a
 * buffer's worth of plaintext arrives in one receive). */
size_t iocp__conn_recv_size(const iocp__conn *c);

enum iocp__stat {
  IOCP__STAT_ACCEPTED = 0,
  IOCP__STAT_REFUSED,
  IOCP__STAT_BYTES_IN,
  IOCP__STAT_BYTES_OUT,
  IOCP__STAT_QUEUED,
  IOCP__STAT_ACCEPT_ERRORS, /* an accept failed or its socket was dropped */
  IOCP__STAT_SYSTEM_ERRORS, /* any other failed system call */
  IOCP__STAT_TLS_HANDSHAKES,
  IOCP__STAT_TLS_FAILURES,
  IOCP__STAT_TLS_TIMEOUTS,
  IOCP__STAT_COUNT
};
/* Adds to a counter in the calling thread's slot (no shared write on a worker). */
void iocp__stat_add(iocp_server *s, int which, int64_t n);

/* ---- Log messages (log.c) ------------------------------------------------------
 * Formats one line and hands it to on_log, if set. Call with no lock held:
 * on_log may call back into the library. */
void iocp__log(iocp_server *s, int level, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#endif
