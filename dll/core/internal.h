/* Internal declarations shared by the core files and the engines. */
#ifndef IOCP_CORE_INTERNAL_H
#define IOCP_CORE_INTERNAL_H

#include "iocpsrv.h"
#include "sys.h"
#include "engine.h"
#include "hooks.h"

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

struct iocp__conn {
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
  uint8_t *rbuf;
  size_t rbuf_cap;

  struct iocp__eng_conn eng;
};

void iocp__conn_ref(iocp__conn *c);

/* ---- Connection table (conn_table.c) ----------------------------------------- */

#define IOCP__TABLE_SHARDS 16

typedef struct iocp__table_shard {
  iocp__mutex lock;
  iocp__conn **buckets;
  size_t nbuckets; /* power of two, or 0 */
  size_t count;
} iocp__table_shard;

typedef struct iocp__table {
  iocp__table_shard shards[IOCP__TABLE_SHARDS];
  int closed; /* under every shard lock: inserts refused */
} iocp__table;

void iocp__table_init(iocp__table *t);
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
uint64_t iocp__table_count(iocp__table *t);

/* ---- Server ------------------------------------------------------------------ */

struct iocp_server {
  /* The gate (server.c): calls in progress in the low bits, IOCP__GATE_CLOSED
   * once iocp_destroy() has begun. Kept valid after destroy (the struct goes
   * to a pool, never back to the allocator), so a late call fails cleanly. */
  iocp__refcount gate;
  struct iocp_server *pool_next; /* while in the pool, under its lock */

  iocp_config cfg;       /* complete copy; bind_address points at bind_text */
  char bind_text[64];
  iocp_callbacks cb;     /* complete copy, missing fields NULL */
  void *user;
  uint16_t port;         /* bound port */
  struct sockaddr_storage bound; /* the listener's address, set by the engine */
  iocp__table table;

  iocp__mutex lock;
  iocp__cond cond;
  uint64_t alive;        /* connections allocated and not yet freed, under lock */
  int destroying;        /* under lock */

  struct iocp__eng_server eng;
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

/* Teardown of every connection by iocp_destroy(). */
void iocp__conn_destroy_one(iocp__conn *c, void *arg);

/* ---- Log messages (log.c) ------------------------------------------------------
 * Formats one line and hands it to on_log, if set. Call with no lock held:
 * on_log may call back into the library. */
void iocp__log(iocp_server *s, int level, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* ---- Config (config.c), addresses (address.c) -------------------------------- */

int iocp__config_copy(iocp_config *dst, char *bind_text, size_t bind_cap,
                      const iocp_config *src);
int iocp__callbacks_copy(iocp_callbacks *dst, const iocp_callbacks *src);
int iocp__address_parse(const char *text, uint16_t port,
                        struct sockaddr_storage *ss, int *len);
void iocp__address_format(const struct sockaddr *sa, char *text, size_t cap,
                          uint16_t *port);

#endif
