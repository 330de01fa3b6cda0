/* Internal declarations shared by the core files (and white-box tests). The
 * engines see the core only through engine.h. */
#ifndef IOCP_CORE_INTERNAL_H
#define IOCP_CORE_INTERNAL_H

#include "iocpsrv.h"
#include "sys.h"
#include "engine.h"
#include "hooks.h"
#include "tls.h"

#include <assert.h>
#include <stdint.h>
#include <stddef.h>

/* Log messages are one short line; longer ones are cut. */
#define IOCP__LOG_MAX 160
#define IOCP__LOG_MAX_TLS 128

/* ---- Send queue (sendq.c) ------------------------------------------------ */

typedef struct iocp__chunk {
  struct iocp__chunk *next;
  size_t off; /* bytes already sent from data[] */
  size_t len; /* bytes stored in data[] */
  size_t cap; /* room in data[] */
  uint8_t data[];
} iocp__chunk;

typedef struct iocp__sendq {
  iocp__chunk *head;
  iocp__chunk *tail;
  uint64_t queued; /* bytes stored and not yet sent (in flight included) */
} iocp__sendq;

int iocp__sendq_push(iocp__sendq *q, const void *data, size_t len);
/* As push, but a new chunk gets room for at least `cap` bytes (for a
 * writer that fills the rest through iocp__sendq_room). */
int iocp__sendq_push_cap(iocp__sendq *q, const void *data, size_t len, size_t cap);
/* The free room at the tail (*room bytes, 0: none) to write into in
 * place; iocp__sendq_commit(q, n) then queues the first n of them. */
uint8_t *iocp__sendq_room(iocp__sendq *q, size_t *room);
void iocp__sendq_commit(iocp__sendq *q, size_t n);
int iocp__sendq_gather(const iocp__sendq *q, iocp__iov *iov, int max);
void iocp__sendq_consume(iocp__sendq *q, size_t n);
void iocp__sendq_clear(iocp__sendq *q);

/* ---- Connections (conn.c) -------------------------------------------------- */

/* What a TLS connection receives beyond a pool buffer's plaintext size: 64
 * bytes a record (TLS 1.3's overhead is 22, TLS 1.2 AES-GCM's 29) for the
 * records n bytes of plaintext take, one more partly filled. Pool buffers
 * have this room. */
#define IOCP__TLS_RECV_SLACK(n) (((n) / 16384u + 2u) * 64u)

/* A TLS connection's record-layer state (tls_conn.c), under the
 * connection's lock. c->sendq holds plaintext (the queue limit counts
 * it); `out` holds ciphertext: handshake messages, records of plaintext
 * taken from c->sendq (`plain_inflight` bytes, credited as sent once the
 * ciphertext up to `batch_end` went out), alerts. */
typedef struct iocp__tls_conn {
  iocp__tls *sess;
  uint8_t *inbuf; /* the receive buffer the session reads in place, or NULL */
  iocp__sendq out;
  uint64_t out_total, out_sent, batch_end;
  uint64_t plain_inflight;
  uint32_t hs_tick;       /* server tick when the handshake began */
  uint32_t hs_ms;         /* its time limit */
  unsigned hs_done : 1;   /* the handshake completed */
  unsigned close_sent : 1;/* our close_notify is in `out` */
  unsigned log_due : 1;   /* a failed handshake's reason waits for on_log */
  int fail_code;
  char why[IOCP__LOG_MAX_TLS];
} iocp__tls_conn;

/* One event as conn.c hands it to a callback or to the queue. */
typedef struct iocp__event_rec {
  uint32_t type;  /* IOCP_EVENT_* */
  int32_t value;
  uint64_t len;
  const void *data;
  void *context;  /* the connection's, when the event was taken */
} iocp__event_rec;

struct iocp__conn {
  struct iocp__eng_conn eng; /* first: see iocp__conn_eng() in engine.h */
  iocp_server *server;
  iocp_conn_id id;
  iocp__refcount refs;
  struct iocp__conn *table_next; /* hash chain, under the table shard lock */
  uint8_t capped;           /* under the shard lock: counted in table.capped */
  uint8_t delisted;         /* out of the table: written once, by the thread
                             * that delivers its callbacks (conn.c) */

  iocp__mutex lock;
  /* Everything below is under `lock`. */
  unsigned kept : 1;        /* on_connect kept it */
  unsigned refused : 1;     /* on_connect refused it */
  unsigned shut_req : 1;    /* send side closing: FIN after the queue */
  unsigned fin_sent : 1;    /* our FIN went out */
  unsigned peer_fin : 1;    /* the peer's FIN arrived */
  unsigned closing : 1;     /* torn down: no more I/O */
  unsigned send_busy : 1;   /* a send operation is in flight */
  unsigned recv_busy : 1;   /* a receive operation is in flight */
  unsigned running : 1;     /* a worker is delivering this connection's callbacks */
  /* Events waiting for delivery, in the order they are delivered. */
  unsigned ev_connect : 1;
  unsigned ev_data : 1;
  unsigned ev_peer_closed : 1;
  unsigned ev_disconnect : 1;
  unsigned refuse_req : 1;  /* queue mode: iocp_close() before ACCEPTED was released */
  unsigned accept_out : 1;  /* queue mode: ACCEPTED is queued or in a batch */
  unsigned stop_fin : 1;    /* iocp_stop_graceful() came before the keep */
  /* Outbound connections (connect.c): made by iocp_connect(); the attempt
   * was handed to the engine; the error that ended it before on_connect. */
  unsigned outbound : 1;
  unsigned connect_started : 1;
  unsigned paused : 1;      /* iocp_pause_recv(): no receive is posted */
  unsigned in_data : 1;     /* on_data runs: rbuf is the callback's */
  unsigned drain_armed : 1; /* the queue went above drain_mark */
  unsigned ev_drain : 1;    /* on_drain is due */
  unsigned ended : 1;       /* the last event (DISCONNECTED, CONNECT_FAILED) was
                             * taken: per-connection calls find it no more */
  int connect_error;
  int reason;               /* enum iocp_reason once closing */
  size_t ev_data_len;
  uint64_t ev_sent;
  iocp__sendq sendq;
  uint64_t drain_mark;
  void *context;            /* iocp_set_context() */
  uint32_t idle_ms;         /* idle timeout, 0: none */
  uint32_t active_tick;     /* server tick of the last traffic (timer.c) */

  uint16_t peer_port;
  char peer_addr[64];
  uint8_t *rbuf;            /* lent by the pool while received bytes wait for on_data */

  iocp__tls_conn *tls;      /* NULL: plain TCP */

  /* The event being delivered (in the queue or in a batch in queue mode). */
  iocp__event_rec ev;
  struct iocp__conn *evq_next; /* under the server's lock (evq.c) */
};

void iocp__conn_ref(iocp__conn *c);
/* Queue mode: the caller released the batch holding c's event (evq.c). Ends
 * that event as a returning callback would and delivers what is due next;
 * drops the reference the queue held. No lock held. */
void iocp__conn_released(iocp__conn *c);

/* For the controls (controls.c, timer.c, stop.c): the state machine's
 * steps, each with the connection's lock held. */
typedef int (*iocp__conn_op)(iocp__conn *c, void *arg);
/* Looks id up, runs op under the connection's lock, then makes sure a
 * worker delivers what op made due. IOCP_EINVAL / IOCP_ENOTFOUND / op's. */
int iocp__conn_with(iocp_server *s, iocp_conn_id id, iocp__conn_op op, void *arg);
void iocp__conn_teardown_locked(iocp__conn *c, int reason, int abortive);
void iocp__conn_start_recv_locked(iocp__conn *c);
void iocp__conn_start_send_locked(iocp__conn *c);
void iocp__conn_kick_locked(iocp__conn *c);
/* The connection whose callback runs on this thread, or NULL. */
iocp__conn *iocp__conn_current(void);
/* The raw operations under the state machine's checks (for tls_conn.c):
 * post a receive or a gathered send with its reference; on failure the
 * connection is torn down (RESET). */
void iocp__conn_post_recv_locked(iocp__conn *c);
void iocp__conn_post_send_locked(iocp__conn *c, const iocp__iov *iov, int n);
/* `bytes` of the send queue went out: consumed, counted, on_sent and
 * on_drain made due. */
void iocp__conn_sent_locked(iocp__conn *c, size_t bytes);
/* Drops the send queue, and its bytes from the queued statistic. */
void iocp__conn_sendq_drop(iocp__conn *c);

/* ---- TLS connections (tls_conn.c) ------------------------------------------ */

/* The server side of an accepted connection (IOCP_ENOMEM). */
int iocp__tls_conn_server(iocp__conn *c);
/* The client side of an outbound one, before it connects (IOCP_ETLS with
 * the reason in why, IOCP_ENOMEM). */
int iocp__tls_conn_client(iocp__conn *c, const iocp_tls_client *o, char *why, size_t cap);
void iocp__tls_conn_free(iocp__conn *c);
/* The state machine's steps for a TLS connection (conn.c calls them in
 * place of the plain ones). */
void iocp__tls_start_recv_locked(iocp__conn *c);
void iocp__tls_start_send_locked(iocp__conn *c);
void iocp__tls_recv_done_locked(iocp__conn *c, int result, uint8_t *buf, size_t bytes);
void iocp__tls_send_done_locked(iocp__conn *c, int result, size_t bytes);
/* Connected: the client handshake begins. */
void iocp__tls_connected_locked(iocp__conn *c);
/* The idle sweep: ends a handshake past its time limit. */
void iocp__tls_sweep_locked(iocp__conn *c, uint32_t tick, uint32_t slack);
/* The on_log line of a failed handshake, at most one a second per server
 * (the next says how many were left out). No lock held. */
void iocp__tls_log_failure(iocp__conn *c, int code, const char *why);
/* Server setup from the config (iocp_create), and its release. */
int iocp__tls_server_setup(iocp_server *s);
void iocp__tls_server_free(iocp_server *s);


/* ---- Connection table (conn_table.c) ----------------------------------------- */

#define IOCP__TABLE_SHARDS 16

typedef struct iocp__table_shard {
  iocp__mutex lock;
  iocp__conn **buckets;
  size_t nbuckets;     /* power of two, or 0 */
  iocp__counter count; /* changed under the lock, read without it */
  int closed;          /* under the lock: inserts refused */
} iocp__table_shard;

/* The shards sit `stride` bytes apart (a multiple of the cache line), so two
 * threads on two shards never write to one line. */
typedef struct iocp__table {
  void *mem;
  uint8_t *base;
  size_t stride;
  iocp__refcount capped; /* connections counted against a limit (insert) */
} iocp__table;

int iocp__table_init(iocp__table *t, size_t line); /* IOCP_ENOMEM */
void iocp__table_free(iocp__table *t);
/* Adds c (the table holds a reference). IOCP_ECLOSED once the table is
 * closed, IOCP__EFULL when `limit` (0: none, and c is not counted against
 * any limit) connections counted against a limit are in it. */
#define IOCP__EFULL (-1000)
/* A limit that counts c against the cap but never refuses it, for outbound
 * connections (config.max_connections is at most INT32_MAX, and 2^31
 * connections are never open at once). */
#define IOCP__LIMIT_COUNT_ONLY ((uint32_t)INT32_MAX)
int iocp__table_insert(iocp__table *t, iocp__conn *c, uint32_t limit);
/* Removes the id; returns the connection whose table reference passes to the
 * caller, or NULL. */
iocp__conn *iocp__table_remove(iocp__table *t, iocp_conn_id id);
/* Finds the id and returns it with a new reference, or NULL. */
iocp__conn *iocp__table_get(iocp__table *t, iocp_conn_id id);
/* Refuses further inserts and calls fn on every connection, shard by shard,
 * with that shard's lock held. */
void iocp__table_close(iocp__table *t, void (*fn)(iocp__conn *c, void *arg), void *arg);
uint64_t iocp__table_count(const iocp__table *t);
/* Calls fn on every connection, with its shard's lock held. */
void iocp__table_each(iocp__table *t, void (*fn)(iocp__conn *c, void *arg), void *arg);

/* ---- Workers, buffers and statistics (worker.c) ------------------------------
 * The per-worker slots are private to worker.c; engine.h declares the rest. */

typedef struct iocp__worker iocp__worker;

typedef struct iocp__workers {
  uint32_t count;      /* worker threads */
  size_t line;         /* the cache line size detected at start */
  void *mem;           /* count + 1 slots (the last for other threads) */
  uint8_t *base;       /* mem, aligned to the line */
  size_t stride;       /* bytes between slots, a multiple of the line */
  iocp__mutex pool_lock;
  uint8_t **pool;      /* under pool_lock: spare receive buffers */
  uint32_t pool_n, pool_cap; /* pool_cap grows (doubling) as the load asks */
  uint32_t base_spares; /* spares kept beyond the recent peak of buffers lent */
  int64_t peak, peak_prev; /* under pool_lock: most lent at once, this epoch and the last */
  uint64_t epoch_ms;       /* when this epoch began (iocp__now_ms) */
} iocp__workers;

int iocp__workers_init(iocp__workers *w, uint32_t threads, size_t line);
void iocp__workers_free(iocp__workers *w);
int64_t iocp__stat_sum(iocp_server *s, int which);

/* ---- Event queue (evq.c) ------------------------------------------------------- */


typedef struct iocp__logrec {
  int level, code;
  char text[IOCP__LOG_MAX];
} iocp__logrec;

typedef struct iocp__evq {
  /* Workers push without the lock: onto `inbox`, newest first; the drainer
   * moves it, in order, to head..tail under the lock. A pusher that finds
   * `waiting` set clears it and wakes the sleepers. */
  iocp__atomicptr inbox;
  iocp__atomic32 waiting;
  iocp__conn *head, *tail; /* connections with an event queued, oldest first */
  iocp__conn *batch;       /* taken by the last iocp_wait(), not yet released */
  unsigned busy : 1;       /* a thread is inside iocp_wait() */
  unsigned wake : 1;       /* iocp_wake() not yet consumed */
  unsigned discard : 1;    /* iocp_destroy() began: deliver nothing more */
  unsigned serving : 1;    /* the waiter serves the engine (iocp__eng_caller_serve) */
  unsigned no_serve : 1;   /* the engine cannot lend it the work: it sleeps on cond */
  uint32_t sleepers;       /* threads waiting on the server's cond for the queue */
  /* iocp_wait_handle(): `watched` once the handle was given out (under the
   * lock, read without it); `signalled` while the handle is ready, so that
   * each wake-up costs the engine one signal, cleared by the drainer. */
  iocp__atomic32 watched;
  iocp__atomic32 signalled;
  uint8_t stale;           /* the drainer's own: a signal may have landed after its clear */
  const void *holder;      /* the thread of the last iocp_wait() (its marker) */
  /* LOG events: a ring; the batch's slots first, then the queued ones. */
  iocp__logrec logs[IOCP_LOG_QUEUE_MAX];
  uint32_t log_first, log_taken, log_queued;
  uint64_t log_lost;       /* messages that found no slot, not yet reported */
} iocp__evq;

/* Appends c, whose c->ev is filled, and takes over a reference. */
void iocp__evq_push(iocp__conn *c);
/* Wakes whoever waits on the server's condition variable, and the waiter
 * that serves the engine meanwhile; server lock held. */
void iocp__evq_wake_locked(iocp_server *s);
/* Nonzero on the thread inside iocp_wait() while it serves the engine
 * (on_log may run there): it must not wait for itself. */
int iocp__evq_serving_here(const iocp_server *s);
/* Queues a LOG event (or counts it lost when the ring is full). */
void iocp__evq_log(iocp_server *s, int level, int code, const char *text);
/* iocp_destroy(), first: a wait in progress (and every later one) returns
 * IOCP_ECLOSED. */
void iocp__evq_close(iocp_server *s);
/* iocp_destroy(): releases every batch and queued event until no
 * connection is left. Server lock not held. */
void iocp__evq_drain_all(iocp_server *s);
/* The context carried by id's event in the current batch: 0, or
 * IOCP_ENOTFOUND (not in it), IOCP_ECLOSED (destroyed). */
int iocp__evq_batch_context(iocp_server *s, iocp_conn_id id, void **context);
/* Nonzero when this thread made the server's last iocp_wait() call. */
int iocp__evq_is_holder(iocp_server *s);

/* ---- Server ------------------------------------------------------------------ */

struct iocp_server {
  struct iocp__eng_server eng; /* first: see iocp__server_eng() in engine.h */
  /* The gate (server.c): calls in progress in the low bits, IOCP__GATE_CLOSED
   * once iocp_destroy() has begun. Kept valid after destroy (the struct goes
   * to a pool, never back to the allocator), so a late call fails cleanly.
   * Only the gate survives reuse: pool_next must follow it. */
  iocp__refcount gate;
  struct iocp_server *pool_next; /* while in the pool, under its lock */

  iocp_config cfg;       /* complete copy; bind_address points at bind_text */
  char bind_text[64];
  iocp_callbacks cb;     /* complete copy, missing fields NULL */
  void *user;
  uint16_t port;         /* bound port */
  struct sockaddr_storage bound; /* the listener's address, set by the engine */
  iocp__table table;
  iocp__workers workers;
  iocp__tuning tuning;   /* read at creation (tuning.c) */

  /* Connections allocated and not yet freed: counted without the lock; the
   * last one freed wakes iocp_destroy() under it. */
  iocp__refcount alive;
  iocp__mutex lock;
  iocp__cond cond;
  int destroying;        /* under lock */
  int stopping;          /* under lock: iocp_stop_graceful() ran */
  uint64_t refused;      /* under lock: refused at max_connections */

  /* The idle timer (timer.c), started by the first idle timeout. */
  iocp__cond timer_cond;
  iocp__thread timer_thread;
  int timer_running;     /* under lock */
  int timer_quit;        /* under lock */
  uint32_t sweep_ms;     /* under lock: the sweep period */
  uint64_t t0;           /* iocp__now_ms() at creation */
  iocp__atomic32 tick;   /* ms since t0 as of the last sweep */
  int stopped;           /* under lock: iocp_stop() (or iocp_destroy()) began */
  unsigned queue_mode : 1;       /* IOCP_DELIVERY_QUEUE (fixed at creation) */
  unsigned want_sent : 1;        /* SENT events / on_sent wanted */
  unsigned want_peer_closed : 1; /* PEER_CLOSED events / on_peer_closed wanted */
  unsigned want_drain : 1;       /* DRAIN events / on_drain wanted */
  unsigned want_log : 1;         /* queue mode: LOG events (no on_log) */
  iocp__evq evq;         /* queue mode: under lock (but its inbox) */
  iocp__tls_cred *tls_cred; /* config.tls_pkcs12: accepted sockets speak TLS */
  uint32_t tls_hs_ms;    /* their handshake's time limit */
  uint64_t tls_log_ms;   /* under lock: when the last failed handshake was logged */
  uint64_t tls_log_quiet; /* under lock: failures not logged since */
};

#define IOCP__GATE_CLOSED 0x40000000L

/* Every exported function that takes a server enters its gate first.
 * iocp__server_enter returns 1 when the caller entered and must call
 * iocp__server_leave before it returns; 0 on one of the server's own workers
 * (inside a callback: destroy joins the workers, so nothing to count or
 * leave); IOCP_ECLOSED once iocp_destroy() has begun (not entered). Destroy
 * waits until no other thread is inside. One atomic add on entry and one on
 * exit, no lock, and none at all inside callbacks. A call that can block for
 * long must not stay inside the gate while it does. */
int iocp__server_enter(iocp_server *s);
void iocp__server_leave(iocp_server *s);

/* ---- Tuning (tuning.c; the struct is in engine.h) --------------------------- */

/* Fills t from iocp__tuning_defaults and the environment. */
void iocp__tuning_load(iocp__tuning *t);
/* The number text names, when it is one in [lo, hi]; else (NULL too) dflt. */
int iocp__tuning_number(const char *text, int dflt, int lo, int hi);

/* ---- Idle timer (timer.c) ------------------------------------------------------ */

/* Starts the timer thread if needed and makes its period fit timeout_ms.
 * Takes s->lock. 0, IOCP_ESTOPPED (destroying) or IOCP_ESYSTEM. */
int iocp__timer_need(iocp_server *s, uint32_t timeout_ms);
/* Stops and joins the timer thread (iocp_destroy). */
void iocp__timer_stop(iocp_server *s);
/* The server's coarse clock, for a connection's active_tick. */
static inline uint32_t iocp__timer_tick(iocp_server *s) { return iocp__load32(&s->tick); }

/* Teardown of every connection by iocp_destroy(). */
void iocp__conn_destroy_one(iocp__conn *c, void *arg);

/* ---- Config (config.c), addresses (address.c) -------------------------------- */

int iocp__config_copy(iocp_config *dst, char *bind_text, size_t bind_cap,
                      const iocp_config *src);
int iocp__callbacks_copy(iocp_callbacks *dst, const iocp_callbacks *src, int queue_mode);
int iocp__address_parse(const char *text, uint16_t port,
                        struct sockaddr_storage *ss, int *len);
void iocp__address_format(const struct sockaddr *sa, char *text, size_t cap,
                          uint16_t *port);

#endif
