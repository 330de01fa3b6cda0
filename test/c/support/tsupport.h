/* Portable helpers for the tests: threads, counters to wait on with a
 * time-out (never sleeps), a blocking loopback client, handle counts, and a
 * recording server that checks the callback contract on every event. */
#ifndef IOCP_TEST_TSUPPORT_H
#define IOCP_TEST_TSUPPORT_H

#include "iocpsrv.h"

#include <stdint.h>
#include <stddef.h>

/* cmocka needs these before its header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* Every wait in the tests is bounded by this (milliseconds). */
#define TS_TIMEOUT_MS 60000

/* ---- Time, threads, counters --------------------------------------------- */

uint64_t ts_now_ms(void);

typedef struct ts_thread ts_thread;
ts_thread *ts_thread_start(void (*fn)(void *arg), void *arg);
void ts_thread_join(ts_thread *t);

/* A 64-bit counter that threads can wait on. */
typedef struct ts_counter ts_counter;
ts_counter *ts_counter_new(void);
void ts_counter_free(ts_counter *c);
void ts_counter_add(ts_counter *c, int64_t n);
int64_t ts_counter_get(ts_counter *c);
/* 0 once the value is >= target, -1 after timeout_ms. */
int ts_counter_wait(ts_counter *c, int64_t target, int timeout_ms);

/* Nonzero when running under Wine (it has a few documented differences). */
int ts_on_wine(void);

/* Open handles (Windows) or file descriptors (Linux) of this process. */
long ts_handle_count(void);
/* Threads of this process. */
long ts_thread_count(void);

/* ---- A blocking loopback client ------------------------------------------ */

typedef intptr_t ts_sock;
#define TS_BAD_SOCK ((ts_sock)-1)

enum { TS_OK = 0, TS_EOF = 1, TS_RESET = 2, TS_TIMEOUT = 3, TS_ERROR = 4 };

void ts_net_init(void);
/* Connects to addr:port (blocking, with TS_TIMEOUT_MS send/receive time-outs). */
ts_sock ts_connect_to(const char *addr, uint16_t port);
ts_sock ts_connect(uint16_t port); /* 127.0.0.1 */
/* ts_connect with a receive buffer of `rcvbuf` bytes, set before the
 * connection is made. A client that means not to read must shrink it this
 * way, never once connected: then it has already offered a larger window
 * and, its buffer full, drops what arrives within it. The peer's window
 * updates can then go unheard (their sequence number falls behind the
 * dropped data), and bytes the client sent stay unacknowledged for good:
 * seen as a test_destroy stall under ASan, one run in about 200. */
ts_sock ts_connect_rcvbuf(uint16_t port, int rcvbuf);
int ts_send_all(ts_sock s, const void *buf, size_t len);
/* Reads exactly len bytes: TS_OK, or how it failed. */
int ts_recv_exact(ts_sock s, void *buf, size_t len);
/* Reads until the connection ends; *got counts the bytes (stored while they
 * fit in cap). Returns TS_EOF (FIN), TS_RESET, TS_TIMEOUT or TS_ERROR. */
int ts_recv_to_end(ts_sock s, uint8_t *buf, size_t cap, size_t *got);
/* Reads until the connection ends and tells whether it ended with a reset
 * (1) or a FIN (0), counting the bytes as ts_recv_to_end does. Wine reports
 * a received RST to recv() as an orderly end (0 bytes), so after an "end" it
 * sends one byte: that fails at once only on a connection that was reset. */
int ts_ended_by_reset(ts_sock s, uint8_t *buf, size_t cap, size_t *got);
void ts_set_timeout(ts_sock s, int ms);
/* For a stall's post-mortem (Linux; nothing elsewhere): the kernel's view
 * of the TCP sockets holding bytes on their way to `port`'s end, unread
 * there or not yet acknowledged by it. */
void ts_dump_port(uint16_t port);
void ts_shutdown_send(ts_sock s);
void ts_close(ts_sock s);
void ts_close_reset(ts_sock s); /* RST instead of FIN */
uint16_t ts_local_port(ts_sock s);
/* A thread that connects to 127.0.0.1:port over and over (sending 3 bytes,
 * then closing) until stopped or until connecting fails (the listener is
 * gone). ts_churn_stop joins it and returns how many connections it made. */
typedef struct ts_churn ts_churn;
ts_churn *ts_churn_start(uint16_t port);
long ts_churn_stop(ts_churn *k);
/* Connects to 127.0.0.1:port, sends `msg`, asserts that the same bytes come
 * back within `timeout_ms`, and closes: "this echo server still serves". */
void ts_echo_check(uint16_t port, const char *msg, int timeout_ms);
/* Sends pattern bytes of `stream` from offset `off` without blocking until
 * the socket stays unwritable for stall_ms (the peer's and our kernel
 * buffers are full: TCP flow control holds us back); returns the bytes
 * sent (it gives up at 256 MiB: nothing held it back). Leaves the socket
 * blocking again. */
size_t ts_send_until_stalled(ts_sock s, uint32_t stream, uint64_t off, int stall_ms);
/* iocp_stats, asserted to succeed and to fill the whole struct. */
iocp_statistics ts_stats(iocp_server *s);
/* Waits until the statistic at `offset` reaches target, looking every 5 ms
 * (statistics are not events); 0, or -1 after TS_TIMEOUT_MS. */
int ts_wait_stat(iocp_server *s, size_t offset, uint64_t target);
#define TS_WAIT_STAT(s, field, n) ts_wait_stat((s), offsetof(iocp_statistics, field), (n))
/* A listening socket on 127.0.0.1:0, to make a port busy. */
ts_sock ts_listen_any(uint16_t *port);

/* Deterministic test bytes: byte `off` of stream `stream`. */
static inline uint8_t ts_pattern(uint32_t stream, uint64_t off) {
  return (uint8_t)((off * 131u) ^ (off >> 8) ^ (stream * 29u));
}
void ts_fill(uint8_t *buf, size_t len, uint32_t stream, uint64_t off);
/* Index of the first byte not matching the pattern, or len. */
size_t ts_check(const uint8_t *buf, size_t len, uint32_t stream, uint64_t off);

/* A whole file, NUL-terminated (for PEM text); `data` is malloc'd. */
typedef struct ts_blob {
  uint8_t *data;
  size_t len;
} ts_blob;
/* Reads file `name` from the folder the environment variable `dir_var`
 * names (the certificates the build made); fails the test otherwise. */
ts_blob ts_load_file(const char *dir_var, const char *name);
/* The last IOCP_LOG_ERROR line of iocp_create (0 and "" when none). */
typedef struct ts_log_rec {
  int code;
  char text[200];
} ts_log_rec;
/* iocp_create with the TLS identity p12 and this password (and the lowest
 * version, 0 for the default), recording its error line in *log when log
 * is not NULL; a server it made is destroyed at once. Returns its code. */
int ts_tls_create_rc(const ts_blob *p12, const char *password, uint32_t min_version,
                     ts_log_rec *log);
/* Asserts that iocp_create refuses p12 with this password: it returns
 * `code`, its on_log error line has that code and, when `why` is not
 * NULL, contains `why`. */
void ts_tls_expect_refused(const ts_blob *p12, const char *password, int code, const char *why);

/* ---- Queue mode ------------------------------------------------------------ */

/* A queue-mode server on port 0 with these optional events. */
iocp_server *ts_queue_start(uint32_t queue_events);
/* Takes events one at a time until one of `type` comes (skipping SENT);
 * fails the test on a time-out or any other event. */
iocp_event ts_queue_next(iocp_server *s, uint32_t type);

/* ---- A recording server ---------------------------------------------------- */

enum {
  REC_ECHO = 1,              /* echo every byte back */
  REC_HANDLE_PEER_CLOSE = 2, /* set on_peer_closed (records it, then iocp_shutdown) */
  REC_REFUSE = 4,            /* on_connect refuses every connection */
  REC_QUEUE = 8,             /* queue mode: a drainer thread takes the events
                              * with iocp_wait() and calls the same recording
                              * functions (set for every server when the
                              * environment has IOCP_TEST_DELIVERY=queue) */
  REC_DRAIN = 16             /* set on_drain (counts `drains`, calls the hook);
                              * queue mode: DRAIN events */
};

/* Slots of rec_server.reasons: every enum iocp_reason value, and 0. */
#define REC_REASONS (IOCP_REASON_TLS_ERROR + 1)

typedef struct rec_server rec_server;

/* Called from the recorder's callbacks when set (after its own checks). */
typedef struct rec_hooks {
  void (*on_connect)(rec_server *r, iocp_conn_id id);
  void (*on_data)(rec_server *r, iocp_conn_id id, const uint8_t *data, size_t len);
  void (*on_peer_closed)(rec_server *r, iocp_conn_id id);
  void (*on_drain)(rec_server *r, iocp_conn_id id, uint64_t queued);
  /* Runs first in on_disconnect (the id is already stale). */
  void (*on_disconnect)(rec_server *r, iocp_conn_id id, int reason);
  /* An outbound attempt ended before on_connect (error: the IOCP_ code). */
  void (*on_connect_failed)(rec_server *r, iocp_conn_id id, int error);
} rec_hooks;

struct rec_server {
  iocp_server *srv;
  uint16_t port;
  int flags;
  rec_hooks hooks;
  void *user; /* for the test */

  ts_counter *connects;
  ts_counter *disconnects;
  ts_counter *peer_closed;
  ts_counter *bytes_in;
  ts_counter *bytes_sent; /* from on_sent */
  ts_counter *drains;     /* on_drain calls (REC_DRAIN) */
  ts_counter *reasons[REC_REASONS]; /* disconnects by enum iocp_reason */
  ts_counter *violations; /* overlap, order, unknown id, wrong handle, late
                           * (tests add theirs with rec_violation) */
  ts_counter *late;       /* callbacks after iocp_destroy returned */

  const char *last_violation; /* where the last one was seen */
  iocp_conn_id last_id;   /* the most recent on_connect */
  char last_addr[64];
  uint16_t last_peer_port;
  int destroyed;
  struct rec_table *table;
  ts_thread *drainer;     /* REC_QUEUE */
  ts_counter *batches;    /* REC_QUEUE: iocp_wait() calls that returned events */
};

/* Four peers that are not TLS clients, one after the other, against the TLS
 * server `r` (its handshake time limit short): plain HTTP, garbage behind a
 * handshake record's header, half of `hello` (a ClientHello of n bytes) then
 * FIN, half then silence. Asserts that each is ended by the server and
 * counted: 3 handshake failures, then 1 time-out. */
void ts_tls_bad_peers(rec_server *r, const uint8_t *hello, size_t n);
/* Waits until the TLS server `srv` and the client `cli` both saw n
 * connects; on a time-out prints both sides' handshake counts and returns
 * -1. */
int ts_tls_wait_handshakes(rec_server *srv, rec_server *cli, int64_t n);
/* A slow reader's server (r->user is a ts_flood): on_data sends stream 3 in
 * TS_FLOOD_CHUNK pieces until iocp_send says IOCP_EQUEUEFULL, noting the
 * most ever queued, then counts `done`. */
#define TS_FLOOD_CHUNK 16384u
typedef struct ts_flood {
  uint64_t sent;
  uint64_t max_queued;
  ts_counter *done;
} ts_flood;
void ts_flood_on_data(rec_server *r, iocp_conn_id id, const uint8_t *data, size_t len);
/* Starts a recording server on 127.0.0.1:0 (config may be NULL). */
rec_server *rec_start(int flags, const iocp_config *config, const rec_hooks *hooks);
/* The same, for a create that may fail: *create_rc gets iocp_create's code,
 * and the result is NULL (nothing left behind) when it failed. */
rec_server *rec_try_start(int flags, const iocp_config *config, const rec_hooks *hooks,
                          int *create_rc);
/* iocp_destroy and the checks that must hold after it; frees r. Asserts that
 * every connect was matched by exactly one disconnect and no violation. */
void rec_stop(rec_server *r);
/* Frees r without destroying its server (for tests that destroy it). */
void rec_free(rec_server *r);
/* Waits for the n-th on_connect and returns its id (0 on time-out). */
iocp_conn_id rec_wait_connect(rec_server *r, int64_t n);
/* Counts a broken expectation of the test's own hooks, with where. */
#define rec_violation(r) rec_violation_at((r), __FILE__, __LINE__)
void rec_violation_at(rec_server *r, const char *file, int line);
/* The reason the connection ended with (0 while it is open). */
int rec_reason(rec_server *r, iocp_conn_id id);

#endif
