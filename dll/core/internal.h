/* Internal declarations shared by the core files and the engines. */
#ifndef IOCP_CORE_INTERNAL_H
#define IOCP_CORE_INTERNAL_H

#include "iocpsrv.h"
#include "sys.h"
#include "engine.h"
#include "hooks.h"

#include <assert.h>
#include <stdint.h>
#include <stddef.h>

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
int iocp__sendq_gather(const iocp__sendq *q, iocp__iov *iov, int max);
void iocp__sendq_consume(iocp__sendq *q, size_t n);
void iocp__sendq_clear(iocp__sendq *q);

/* ---- Connections (conn.c) -------------------------------------------------- */

/* One event as conn.c hands it to a callback or to the queue. */
typedef struct iocp__event_rec {
  uint32_t type;  /* IOCP_EVENT_* */
  int32_t value;
  uint64_t len;
  const void *data;
} iocp__event_rec;

struct iocp__conn {
  struct iocp__eng_conn eng; /* first: see iocp__conn_eng() in engine.h */
  iocp_server *server;
  iocp_conn_id id;
  iocp__refcount refs;
  struct iocp__conn *table_next; /* hash chain, under the table shard lock */

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
  /* Outbound connections (connect.c): made by iocp_connect(); the attempt
   * was handed to the engine; the error that ended it before on_connect. */
  unsigned outbound : 1;
  unsigned connect_started : 1;
  int connect_error;
  int reason;               /* enum iocp_reason once closing */
  size_t ev_data_len;
  uint64_t ev_sent;
  iocp__sendq sendq;

  uint16_t peer_port;
  char peer_addr[64];
  uint8_t *rbuf;            /* lent by the pool while received bytes wait for on_data */

  /* The event being delivered (in the queue or in a batch in queue mode). */
  iocp__event_rec ev;
  struct iocp__conn *evq_next; /* under the server's lock (evq.c) */
};

void iocp__conn_ref(iocp__conn *c);
/* Queue mode: the caller released the batch holding c's event (evq.c). Ends
 * that event as a returning callback would and delivers what is due next;
 * drops the reference the queue held. No lock held. */
void iocp__conn_released(iocp__conn *c);

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
} iocp__table;

int iocp__table_init(iocp__table *t, size_t line); /* IOCP_ENOMEM */
void iocp__table_free(iocp__table *t);
/* Adds c (the table holds a reference). IOCP_ECLOSED once the table is closed. */
int iocp__table_insert(iocp__table *t, iocp__conn *c);
/* Removes the id; returns the connection whose table reference passes to the
 * caller, or NULL. */
iocp__conn *iocp__table_remove(iocp__table *t, iocp_conn_id id);
/* Finds the id and returns it with a new reference, or NULL. */
iocp__conn *iocp__table_get(iocp__table *t, iocp_conn_id id);
/* Refuses further inserts and calls fn on every connection, shard by shard,
 * with that shard's lock held. */
void iocp__table_close(iocp__table *t, void (*fn)(iocp__conn *c, void *arg), void *arg);
uint64_t iocp__table_count(const iocp__table *t);

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
  uint32_t pool_n, pool_cap;
} iocp__workers;

int iocp__workers_init(iocp__workers *w, uint32_t threads, size_t line);
void iocp__workers_free(iocp__workers *w);
int64_t iocp__stat_sum(iocp_server *s, int which);

/* ---- Event queue (evq.c) ------------------------------------------------------- */

typedef struct iocp__evq {
  iocp__conn *head, *tail; /* connections with an event queued, oldest first */
  iocp__conn *batch;       /* taken by the last iocp_wait(), not yet released */
  unsigned busy : 1;       /* a thread is inside iocp_wait() */
  unsigned wake : 1;       /* iocp_wake() not yet consumed */
  unsigned discard : 1;    /* iocp_destroy() began: deliver nothing more */
  uint32_t sleepers;       /* threads waiting on the server's cond for the queue */
} iocp__evq;

/* Appends c, whose c->ev is filled, and takes over a reference. */
void iocp__evq_push(iocp__conn *c);
/* iocp_destroy(): ends a wait in progress and releases every batch and
 * queued event until no connection is left. Server lock not held. */
void iocp__evq_drain_all(iocp_server *s);

/* ---- Server ------------------------------------------------------------------ */

struct iocp_server {
  struct iocp__eng_server eng; /* first: see iocp__server_eng() in engine.h */
  iocp_config cfg;       /* complete copy; bind_address points at bind_text */
  char bind_text[64];
  iocp_callbacks cb;     /* complete copy, missing fields NULL */
  void *user;
  uint16_t port;         /* bound port */
  struct sockaddr_storage bound; /* the listener's address, set by the engine */
  iocp__table table;
  iocp__workers workers;

  /* Connections allocated and not yet freed: counted without the lock; the
   * last one freed wakes iocp_destroy() under it. */
  iocp__refcount alive;
  iocp__mutex lock;
  iocp__cond cond;
  int destroying;        /* under lock */
  int stopped;           /* under lock: iocp_stop() (or iocp_destroy()) began */
  unsigned queue_mode : 1;       /* IOCP_DELIVERY_QUEUE (fixed at creation) */
  unsigned want_sent : 1;        /* SENT events / on_sent wanted */
  unsigned want_peer_closed : 1; /* PEER_CLOSED events / on_peer_closed wanted */
  iocp__evq evq;         /* queue mode: under lock */
};

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
