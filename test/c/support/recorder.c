/* A server whose callbacks record every event and check the contract the
 * header promises: the handle passed is the one iocp_create returned,
 * callbacks of one connection never overlap, on_connect comes first and
 * on_disconnect last and exactly once, and nothing arrives after
 * iocp_destroy returns. Any breach counts as a violation. */
#include "tsupport.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#if defined(_WIN32)
#  include <windows.h>
typedef SRWLOCK rec_lock_t;
#  define REC_LOCK_INIT(l) InitializeSRWLock(l)
#  define REC_LOCK(l) AcquireSRWLockExclusive(l)
#  define REC_UNLOCK(l) ReleaseSRWLockExclusive(l)
#else
#  include <pthread.h>
typedef pthread_mutex_t rec_lock_t;
#  define REC_LOCK_INIT(l) pthread_mutex_init(l, NULL)
#  define REC_LOCK(l) pthread_mutex_lock(l)
#  define REC_UNLOCK(l) pthread_mutex_unlock(l)
#endif

#define REC_BUCKETS 4096

typedef struct rec_conn {
  struct rec_conn *next;
  iocp_conn_id id;
  int in_callback;
  int state; /* 1 open, 2 ended */
  int reason;
} rec_conn;

struct rec_table {
  rec_lock_t lock;
  rec_conn *buckets[REC_BUCKETS];
};

static rec_conn **slot(struct rec_table *t, iocp_conn_id id) {
  rec_conn **pp = &t->buckets[id % REC_BUCKETS];
  while (*pp != NULL && (*pp)->id != id) pp = &(*pp)->next;
  return pp;
}

static void violation_at(rec_server *r, const char *what) {
  r->last_violation = what;
  ts_counter_add(r->violations, 1);
}
#define violation(r) violation_at((r), __FILE__ ":" REC_STR(__LINE__))
#define REC_STR_(x) #x
#define REC_STR(x) REC_STR_(x)

/* Marks the start of a callback of `id`; creates the record for on_connect. */
static rec_conn *enter(rec_server *r, iocp_server *srv, iocp_conn_id id, int connecting) {
  rec_conn **pp, *c;
  if (r->destroyed) ts_counter_add(r->late, 1);
  if (srv != r->srv || srv == NULL) violation(r);
  REC_LOCK(&r->table->lock);
  pp = slot(r->table, id);
  c = *pp;
  if (connecting) {
    if (c != NULL || id == 0) violation(r); /* ids are never reused */
    c = calloc(1, sizeof(*c));
    c->id = id;
    c->next = *pp;
    *pp = c;
  } else if (c == NULL || c->state != 1) {
    violation(r); /* no on_connect before, or after on_disconnect */
  }
  if (c != NULL) {
    if (c->in_callback) violation(r); /* overlapping callbacks */
    c->in_callback = 1;
  }
  REC_UNLOCK(&r->table->lock);
  return c;
}

static void leave(rec_server *r, rec_conn *c) {
  if (c == NULL) return;
  REC_LOCK(&r->table->lock);
  c->in_callback = 0;
  REC_UNLOCK(&r->table->lock);
}

static int IOCP_CALL cb_connect(iocp_server *srv, void *user, iocp_conn_id id,
                                const char *addr, uint16_t port) {
  rec_server *r = user;
  rec_conn *c = enter(r, srv, id, 1);
  int refuse = (r->flags & REC_REFUSE) != 0;
  REC_LOCK(&r->table->lock);
  if (c != NULL) c->state = 1;
  snprintf(r->last_addr, sizeof(r->last_addr), "%s", addr != NULL ? addr : "");
  r->last_peer_port = port;
  r->last_id = id;
  REC_UNLOCK(&r->table->lock);
  if (r->hooks.on_connect != NULL) r->hooks.on_connect(r, id);
  if (refuse && c != NULL) c->state = 2;
  leave(r, c);
  ts_counter_add(r->connects, 1);
  return refuse;
}

static void IOCP_CALL cb_data(iocp_server *srv, void *user, iocp_conn_id id,
                              const uint8_t *data, size_t len) {
  rec_server *r = user;
  rec_conn *c = enter(r, srv, id, 0);
  if (len == 0 || data == NULL) violation(r);
  /* The test's hook first: what it records is there before the peer can
   * see the echo. */
  if (r->hooks.on_data != NULL) r->hooks.on_data(r, id, data, len);
  if (r->flags & REC_ECHO) {
    int rc = iocp_send(srv, id, data, len);
    if (rc != IOCP_OK && rc != IOCP_ECLOSED) violation(r);
  }
  ts_counter_add(r->bytes_in, (int64_t)len);
  leave(r, c);
}

static void IOCP_CALL cb_sent(iocp_server *srv, void *user, iocp_conn_id id, uint64_t n) {
  rec_server *r = user;
  rec_conn *c = enter(r, srv, id, 0);
  if (n == 0) violation(r);
  ts_counter_add(r->bytes_sent, (int64_t)n);
  leave(r, c);
}

static void IOCP_CALL cb_drain(iocp_server *srv, void *user, iocp_conn_id id, uint64_t queued) {
  rec_server *r = user;
  rec_conn *c = enter(r, srv, id, 0);
  if (r->hooks.on_drain != NULL) r->hooks.on_drain(r, id, queued);
  ts_counter_add(r->drains, 1);
  leave(r, c);
}

static void IOCP_CALL cb_peer_closed(iocp_server *srv, void *user, iocp_conn_id id) {
  rec_server *r = user;
  rec_conn *c = enter(r, srv, id, 0);
  if (r->hooks.on_peer_closed != NULL)
    r->hooks.on_peer_closed(r, id);
  else if (iocp_shutdown(srv, id) != IOCP_OK)
    violation(r);
  ts_counter_add(r->peer_closed, 1);
  leave(r, c);
}

static void IOCP_CALL cb_connect_failed(iocp_server *srv, void *user, iocp_conn_id id,
                                        int error) {
  rec_server *r = user;
  if (srv != r->srv) violation(r);
  r->hooks.on_connect_failed(r, id, error);
}

static void IOCP_CALL cb_disconnect(iocp_server *srv, void *user, iocp_conn_id id, int reason) {
  rec_server *r = user;
  rec_conn *c = enter(r, srv, id, 0);
  if (reason < IOCP_REASON_PEER_CLOSED || reason >= REC_REASONS) {
    violation(r);
    reason = 0;
  }
  if (r->hooks.on_disconnect != NULL) r->hooks.on_disconnect(r, id, reason);
  /* The id is stale once on_disconnect starts. */
  if (iocp_send(srv, id, "x", 1) != IOCP_ENOTFOUND) violation(r);
  if (c != NULL) {
    REC_LOCK(&r->table->lock);
    c->state = 2;
    c->reason = reason;
    REC_UNLOCK(&r->table->lock);
  }
  ts_counter_add(r->reasons[reason], 1);
  leave(r, c);
  ts_counter_add(r->disconnects, 1);
}

/* ---- Queue mode: the same recording functions, called by a drainer --------- */

#define REC_BATCH 64

static void drain(void *arg) {
  rec_server *r = arg;
  iocp_event ev[REC_BATCH];
  for (;;) {
    int i, n = iocp_wait(r->srv, ev, REC_BATCH, -1);
    if (n == IOCP_ECLOSED) break;
    if (n < 0) {
      violation(r);
      break;
    }
    if (n > 0) ts_counter_add(r->batches, 1);
    for (i = 0; i < n; i++) {
      const iocp_event *e = &ev[i];
      const uint8_t *data = (const uint8_t *)(uintptr_t)e->data;
      void *ctx = (void *)1;
      /* Every event carries the context its connection has (the tests set
       * it only from this thread), DISCONNECTED included. */
      if (e->type != IOCP_EVENT_ACCEPTED &&
          (iocp_get_context(r->srv, e->id, &ctx) != IOCP_OK ||
           ctx != (void *)(uintptr_t)e->context))
        violation(r);
      switch (e->type) {
      case IOCP_EVENT_ACCEPTED:
        if (data == NULL || e->len != strlen((const char *)data)) violation(r);
        if (cb_connect(r->srv, r, e->id, (const char *)data, (uint16_t)e->value) != 0 &&
            iocp_close(r->srv, e->id) != IOCP_OK)
          violation(r);
        break;
      case IOCP_EVENT_DATA: cb_data(r->srv, r, e->id, data, (size_t)e->len); break;
      case IOCP_EVENT_SENT: cb_sent(r->srv, r, e->id, e->len); break;
      case IOCP_EVENT_PEER_CLOSED: cb_peer_closed(r->srv, r, e->id); break;
      case IOCP_EVENT_DISCONNECTED: cb_disconnect(r->srv, r, e->id, e->value); break;
      case IOCP_EVENT_DRAIN: cb_drain(r->srv, r, e->id, e->len); break;
      case IOCP_EVENT_CONNECT_FAILED:
        if (r->hooks.on_connect_failed != NULL)
          r->hooks.on_connect_failed(r, e->id, (int)e->value);
        break;
      default: violation(r); break;
      }
    }
  }
}

static int queue_by_default(void) {
  const char *v = getenv("IOCP_TEST_DELIVERY");
  return v != NULL && strcmp(v, "queue") == 0;
}

void rec_violation_at(rec_server *r, const char *file, int line) {
  static char where[256];
  snprintf(where, sizeof(where), "%s:%d", file, line);
  violation_at(r, where);
}

rec_server *rec_try_start(int flags, const iocp_config *config, const rec_hooks *hooks,
                          int *create_rc) {
  rec_server *r = calloc(1, sizeof(*r));
  iocp_callbacks cb;
  iocp_config cfg;
  int i, rc;

  assert_non_null(r);
  ts_net_init();
  if (queue_by_default()) flags |= REC_QUEUE;
  r->flags = flags;
  if (hooks != NULL) r->hooks = *hooks;
  r->table = calloc(1, sizeof(*r->table));
  assert_non_null(r->table);
  REC_LOCK_INIT(&r->table->lock);
  r->connects = ts_counter_new();
  r->disconnects = ts_counter_new();
  r->peer_closed = ts_counter_new();
  r->bytes_in = ts_counter_new();
  r->bytes_sent = ts_counter_new();
  r->drains = ts_counter_new();
  r->violations = ts_counter_new();
  r->late = ts_counter_new();
  r->batches = ts_counter_new();
  for (i = 0; i < REC_REASONS; i++) r->reasons[i] = ts_counter_new();

  memset(&cb, 0, sizeof(cb));
  cb.size = sizeof(cb);
  cb.on_connect = cb_connect;
  cb.on_data = cb_data;
  cb.on_sent = cb_sent;
  cb.on_peer_closed = (flags & REC_HANDLE_PEER_CLOSE) ? cb_peer_closed : NULL;
  cb.on_disconnect = cb_disconnect;
  cb.on_drain = (flags & REC_DRAIN) ? cb_drain : NULL;
  /* Without a hook, as a program without on_connect_failed. */
  cb.on_connect_failed = hooks != NULL && hooks->on_connect_failed != NULL ? cb_connect_failed
                                                                           : NULL;
  if (config != NULL) {
    cfg = *config;
  } else {
    assert_int_equal(iocp_config_init(&cfg, sizeof(cfg)), IOCP_OK);
  }
  if (flags & REC_QUEUE) {
    cfg.delivery = IOCP_DELIVERY_QUEUE;
    cfg.queue_events = IOCP_EVENT_BIT(IOCP_EVENT_SENT);
    if (flags & REC_HANDLE_PEER_CLOSE) cfg.queue_events |= IOCP_EVENT_BIT(IOCP_EVENT_PEER_CLOSED);
    if (flags & REC_DRAIN) cfg.queue_events |= IOCP_EVENT_BIT(IOCP_EVENT_DRAIN);
    rc = iocp_create(&cfg, NULL, r, &r->srv);
  } else {
    rc = iocp_create(&cfg, &cb, r, &r->srv);
  }
  if (create_rc != NULL) {
    *create_rc = rc;
    if (rc != IOCP_OK) {
      assert_null(r->srv);
      rec_free(r);
      return NULL;
    }
  }
  assert_int_equal(rc, IOCP_OK);
  assert_non_null(r->srv);
  if (flags & REC_QUEUE) r->drainer = ts_thread_start(drain, r);
  r->port = iocp_port(r->srv);
  assert_true(r->port != 0);
  return r;
}

rec_server *rec_start(int flags, const iocp_config *config, const rec_hooks *hooks) {
  return rec_try_start(flags, config, hooks, NULL);
}

iocp_conn_id rec_wait_connect(rec_server *r, int64_t n) {
  iocp_conn_id id;
  if (ts_counter_wait(r->connects, n, TS_TIMEOUT_MS) != 0) return 0;
  REC_LOCK(&r->table->lock);
  id = r->last_id;
  REC_UNLOCK(&r->table->lock);
  return id;
}

int rec_reason(rec_server *r, iocp_conn_id id) {
  rec_conn *c;
  int reason = 0;
  REC_LOCK(&r->table->lock);
  c = *slot(r->table, id);
  if (c != NULL) reason = c->reason;
  REC_UNLOCK(&r->table->lock);
  return reason;
}

void rec_stop(rec_server *r) {
  int64_t connects, disconnects, refused_ok;
  if (r->drainer != NULL) {
    /* Every disconnect is delivered: stop, drain to the end, then destroy. */
    assert_int_equal(iocp_stop(r->srv), IOCP_OK);
    ts_thread_join(r->drainer);
    r->drainer = NULL;
  }
  assert_int_equal(iocp_destroy(r->srv), IOCP_OK);
  r->destroyed = 1;
  connects = ts_counter_get(r->connects);
  disconnects = ts_counter_get(r->disconnects);
  refused_ok = (r->flags & REC_REFUSE) ? 0 : connects;
  /* Every kept connection ended exactly once, before iocp_destroy returned. */
  assert_int_equal(disconnects, refused_ok);
  if (ts_counter_get(r->violations) != 0) print_error("last violation: %s\n", r->last_violation);
  assert_int_equal(ts_counter_get(r->violations), 0);
  assert_int_equal(ts_counter_get(r->late), 0);
  rec_free(r);
}

void rec_free(rec_server *r) {
  int i;
  if (r->drainer != NULL) ts_thread_join(r->drainer); /* ends with the server */
  for (i = 0; i < REC_BUCKETS; i++) {
    rec_conn *c = r->table->buckets[i];
    while (c != NULL) {
      rec_conn *next = c->next;
      free(c);
      c = next;
    }
  }
  free(r->table);
  ts_counter_free(r->connects);
  ts_counter_free(r->disconnects);
  ts_counter_free(r->peer_closed);
  ts_counter_free(r->bytes_in);
  ts_counter_free(r->bytes_sent);
  ts_counter_free(r->drains);
  ts_counter_free(r->violations);
  ts_counter_free(r->late);
  ts_counter_free(r->batches);
  for (i = 0; i < REC_REASONS; i++) ts_counter_free(r->reasons[i]);
  free(r);
}
