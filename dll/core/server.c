/* The server's life: iocp_create() and iocp_destroy(), the gate that lets
 * destroy wait for calls in progress on other threads, and the small getters.
 *
 * Server structs are never given back to the allocator: destroy puts them in
 * a process-wide pool that later iocp_create() calls reuse. So a call that
 * races iocp_destroy(), or comes after it, still finds a valid gate, closed,
 * and returns IOCP_ECLOSED instead of touching freed memory; the pool never
 * holds more structs than the most servers that were alive at once. */
#include "internal.h"

#include <stddef.h>
#include <string.h>

static iocp__mutex pool_lock = IOCP__MUTEX_INIT(IOCP__RANK_POOL); /* also orders gate closing */
static iocp_server *pool_head;

/* A server struct from the pool or the allocator, its gate closed, every
 * other field zero. The gate is left as it is: a late call of the previous
 * owner may be entering and leaving it right now. */
static iocp_server *server_get(void) {
  iocp_server *s;
  iocp__mutex_lock(&pool_lock);
  s = pool_head;
  if (s != NULL) pool_head = s->pool_next;
  iocp__mutex_unlock(&pool_lock);
  if (s == NULL) {
    s = iocp__calloc(1, sizeof(*s));
    if (s != NULL) s->gate = IOCP__GATE_CLOSED;
    return s;
  }
  memset(s, 0, offsetof(iocp_server, gate));
  memset((char *)s + offsetof(iocp_server, pool_next), 0,
         sizeof(*s) - offsetof(iocp_server, pool_next));
  return s;
}

static void server_put(iocp_server *s) {
  iocp__mutex_lock(&pool_lock);
  s->pool_next = pool_head;
  pool_head = s;
  iocp__mutex_unlock(&pool_lock);
}

/* When the library is unloaded (dlclose, FreeLibrary) or the process ends,
 * the pool goes back to the allocator: no handle can be used after that. */
#if defined(__GNUC__)
__attribute__((destructor))
#endif
static void pool_release(void) {
  iocp_server *s;
  /* The OS lock without the debug checks: a library being unloaded may have
   * lost its thread-locals already (a Windows DLL detaching at exit). */
  iocp__os_mutex_lock(&pool_lock.os);
  while ((s = pool_head) != NULL) {
    pool_head = s->pool_next;
    iocp__free(s);
  }
  iocp__os_mutex_unlock(&pool_lock.os);
}
#if defined(_MSC_VER)
/* MSVC has no destructor attribute: a CRT terminator does the same. */
#  pragma section(".CRT$XTU", read)
__declspec(allocate(".CRT$XTU")) static void (*pool_release_at_exit)(void) = pool_release;
#endif

int iocp__server_enter(iocp_server *s) {
  if (iocp__on_worker(s)) return 0;
  if (iocp__ref_add(&s->gate, 1) & IOCP__GATE_CLOSED) {
    iocp__ref_add(&s->gate, -1);
    return IOCP_ECLOSED;
  }
  return 1;
}

void iocp__server_leave(iocp_server *s) { iocp__ref_add(&s->gate, -1); }

static void gate_open(iocp_server *s) {
  iocp__mutex_lock(&pool_lock);
  iocp__ref_add(&s->gate, -IOCP__GATE_CLOSED);
  iocp__mutex_unlock(&pool_lock);
}

/* Closes the gate once: nonzero for the caller that closed it. */
static int gate_close(iocp_server *s) {
  int closed = 0;
  iocp__mutex_lock(&pool_lock);
  if (!(iocp__ref_add(&s->gate, 0) & IOCP__GATE_CLOSED)) {
    iocp__ref_add(&s->gate, IOCP__GATE_CLOSED);
    closed = 1;
  }
  iocp__mutex_unlock(&pool_lock);
  return closed;
}

/* Calls inside the gate hold no lock destroy needs and never wait for it:
 * they finish in moments, so yielding until they are out is enough. */
static void gate_wait_idle(iocp_server *s) {
  while ((iocp__ref_add(&s->gate, 0) & ~IOCP__GATE_CLOSED) != 0) iocp__yield();
}

/* config.threads, or its default: one worker per processor, and in queue
 * mode one fewer (at least one), since the caller's draining thread is one
 * more busy thread (on 2 cores, 2 workers and the drainer cost a third more
 * CPU per 64-byte echo than 1 worker and the drainer: test/bench/bench.py --only lang). */
static uint32_t default_threads(const iocp_server *s) {
  uint32_t cpus;
  if (s->cfg.threads != 0) return s->cfg.threads;
  cpus = iocp__sys_cpu_count();
  return s->queue_mode && cpus > 1 ? cpus - 1 : cpus;
}

int IOCP_CALL iocp_create(const iocp_config *config, const iocp_callbacks *callbacks,
                          void *user, iocp_server **server) {
  struct sockaddr_storage addr;
  int addrlen = 0;
  size_t line;
  iocp_server *s = NULL;
  int rc;

  if (server == NULL) return IOCP_EINVAL;
  *server = NULL;

  s = server_get();
  if (s == NULL) return IOCP_ENOMEM;
  rc = iocp__config_copy(&s->cfg, s->bind_text, sizeof(s->bind_text), config);
  if (rc != IOCP_OK) goto fail_free;
  rc = iocp__callbacks_copy(&s->cb, callbacks, s->cfg.delivery == IOCP_DELIVERY_QUEUE);
  if (rc != IOCP_OK) goto fail_free;
  s->queue_mode = s->cfg.delivery == IOCP_DELIVERY_QUEUE;
  if (s->queue_mode) {
    s->want_sent = (s->cfg.queue_events & IOCP_EVENT_BIT(IOCP_EVENT_SENT)) != 0;
    s->want_peer_closed = (s->cfg.queue_events & IOCP_EVENT_BIT(IOCP_EVENT_PEER_CLOSED)) != 0;
    s->want_drain = (s->cfg.queue_events & IOCP_EVENT_BIT(IOCP_EVENT_DRAIN)) != 0;
    s->want_log = s->cb.on_log == NULL && (s->cfg.queue_events & IOCP_EVENT_BIT(IOCP_EVENT_LOG)) != 0;
  } else {
    s->want_sent = s->cb.on_sent != NULL;
    s->want_peer_closed = s->cb.on_peer_closed != NULL;
    s->want_drain = s->cb.on_drain != NULL;
  }
  rc = iocp__address_parse(s->cfg.bind_address, s->cfg.port, &addr, &addrlen);
  if (rc != IOCP_OK) goto fail_free;
  if (s->cfg.dual_stack && addr.ss_family != AF_INET6) {
    rc = IOCP_EINVAL; /* dual stack is a property of IPv6 sockets */
    goto fail_free;
  }
  s->user = user;
  iocp__tuning_load(&s->tuning);
  line = iocp__sys_cache_line();
  rc = iocp__table_init(&s->table, line);
  if (rc == IOCP_OK) rc = iocp__workers_init(&s->workers, default_threads(s), line);
  if (rc != IOCP_OK) goto fail_tables;
  iocp__mutex_init(&s->lock, IOCP__RANK_SERVER);
  iocp__cond_init(&s->cond);
  iocp__cond_init(&s->timer_cond);
  s->t0 = iocp__now_ms();
  if (s->cfg.idle_timeout_ms != 0) {
    rc = iocp__timer_need(s, s->cfg.idle_timeout_ms);
    if (rc != IOCP_OK) goto fail_sync;
  }
  /* The identity is checked before anything listens. */
  rc = iocp__tls_server_setup(s);
  if (rc != IOCP_OK) goto fail_sync;

  /* The handle is the caller's, and open, before the first accept can
   * complete: callbacks may call in at once. */
  *server = s;
  gate_open(s);
  rc = iocp__eng_start(s, (const struct sockaddr *)&addr, addrlen, &s->tuning);
  if (rc != IOCP_OK) {
    *server = NULL;
    gate_close(s);
    gate_wait_idle(s);
    goto fail_sync;
  }
  return IOCP_OK;

fail_sync:
  iocp__timer_stop(s);
  iocp__tls_server_free(s);
  iocp__cond_destroy(&s->timer_cond);
  iocp__cond_destroy(&s->cond);
  iocp__mutex_destroy(&s->lock);
fail_tables:
  iocp__workers_free(&s->workers);
  iocp__table_free(&s->table);
fail_free:
  server_put(s);
  return rc;
}

/* iocp_stop(), also run by iocp_destroy() once its gate is closed. */
static void stop_inside(iocp_server *s) {
  int first;
  iocp__mutex_lock(&s->lock);
  first = !s->stopped;
  s->stopped = 1;
  iocp__mutex_unlock(&s->lock);
  if (!first) return;

  iocp__eng_stop_accepting(s);
  /* From here no connection can join the table; every one in it ends. */
  iocp__table_close(&s->table, iocp__conn_destroy_one, NULL);
  /* A waiter may now be finished (nothing was open). */
  iocp__mutex_lock(&s->lock);
  iocp__evq_wake_locked(s);
  iocp__mutex_unlock(&s->lock);
}

int IOCP_CALL iocp_stop(iocp_server *s) {
  int gate;
  if (s == NULL) return IOCP_EINVAL;
  gate = iocp__server_enter(s);
  if (gate < 0) return gate;
  stop_inside(s);
  if (gate) iocp__server_leave(s);
  return IOCP_OK;
}

int IOCP_CALL iocp_destroy(iocp_server *s) {
  if (s == NULL) return IOCP_OK;
  if (iocp__on_worker(s) || iocp__evq_serving_here(s)) return IOCP_EINCALLBACK;
  /* Later calls are turned away; the ones inside are waited for. */
  if (!gate_close(s)) return IOCP_ECLOSED;
  /* A thread inside iocp_wait() leaves it (IOCP_ECLOSED), so the gate empties. */
  if (s->queue_mode) iocp__evq_close(s);
  gate_wait_idle(s);

  iocp__mutex_lock(&s->lock);
  s->destroying = 1;
  iocp__mutex_unlock(&s->lock);
  iocp__timer_stop(s);

  stop_inside(s);
  /* Waits for every connection to end; in queue mode, releases what was
   * queued without delivering it. */
  iocp__evq_drain_all(s);

  iocp__eng_finish(s);
  /* The workers are gone: what is still alive waits for an operation the
   * system never completed (engine.h: IOCP__ENG_OPS_MAY_NOT_COMPLETE). Its
   * memory stays allocated, for the system may still write to it. */
  {
    long left = iocp__ref_add(&s->alive, 0);
    if (left != 0)
      iocp__log(s, IOCP_LOG_WARN, IOCP_ESYSTEM,
                "%ld connection(s) left allocated: the system never completed their "
                "cancelled operations",
                left);
  }
  iocp__tls_server_free(s);

  iocp__cond_destroy(&s->timer_cond);
  iocp__cond_destroy(&s->cond);
  iocp__mutex_destroy(&s->lock);
  iocp__workers_free(&s->workers);
  iocp__table_free(&s->table);
  server_put(s);
  return IOCP_OK;
}

uint16_t IOCP_CALL iocp_port(iocp_server *s) {
  uint16_t port;
  int gate;
  if (s == NULL || (gate = iocp__server_enter(s)) < 0) return 0;
  port = s->port;
  if (gate) iocp__server_leave(s);
  return port;
}

uint64_t IOCP_CALL iocp_connection_count(iocp_server *s) {
  uint64_t n;
  int gate;
  if (s == NULL || (gate = iocp__server_enter(s)) < 0) return 0;
  n = iocp__table_count(&s->table);
  if (gate) iocp__server_leave(s);
  return n;
}

const iocp_config *iocp__server_config(const iocp_server *s) { return &s->cfg; }

uint64_t iocp__server_conn_count(const iocp_server *s) { return iocp__table_count(&s->table); }

void iocp__server_bound(iocp_server *s, const struct sockaddr_storage *addr) {
  char text[IOCP_ADDRSTRLEN];
  memcpy(&s->bound, addr, sizeof(s->bound));
  iocp__address_format((const struct sockaddr *)addr, text, sizeof(text), &s->port);
}

/* The size of the first released layout: anything smaller is not ours. */
#define IOCP__STATS_SIZE_V1 (offsetof(iocp_statistics, system_errors) + sizeof(uint64_t))

static uint64_t nonnegative(int64_t v) { return v > 0 ? (uint64_t)v : 0; }

int IOCP_CALL iocp_stats(iocp_server *s, iocp_statistics *stats) {
  iocp_statistics d;
  uint32_t size;
  int gate;
  if (s == NULL || stats == NULL) return IOCP_EINVAL;
  size = stats->size;
  if (size < IOCP__STATS_SIZE_V1) return IOCP_EVERSION;
  gate = iocp__server_enter(s);
  if (gate < 0) return gate;
  memset(&d, 0, sizeof(d));
  d.connections_accepted = nonnegative(iocp__stat_sum(s, IOCP__STAT_ACCEPTED));
  d.connections_refused = nonnegative(iocp__stat_sum(s, IOCP__STAT_REFUSED));
  d.connections_open = iocp__table_count(&s->table);
  d.bytes_received = nonnegative(iocp__stat_sum(s, IOCP__STAT_BYTES_IN));
  d.bytes_sent = nonnegative(iocp__stat_sum(s, IOCP__STAT_BYTES_OUT));
  /* Slots are read one by one while workers run: a sum can dip below 0. */
  d.bytes_queued = nonnegative(iocp__stat_sum(s, IOCP__STAT_QUEUED));
  d.accept_errors = nonnegative(iocp__stat_sum(s, IOCP__STAT_ACCEPT_ERRORS));
  d.system_errors = nonnegative(iocp__stat_sum(s, IOCP__STAT_SYSTEM_ERRORS));
  d.tls_handshakes = nonnegative(iocp__stat_sum(s, IOCP__STAT_TLS_HANDSHAKES));
  d.tls_handshake_failures = nonnegative(iocp__stat_sum(s, IOCP__STAT_TLS_FAILURES));
  d.tls_handshake_timeouts = nonnegative(iocp__stat_sum(s, IOCP__STAT_TLS_TIMEOUTS));
  if (gate) iocp__server_leave(s);
  /* A newer caller's struct may be larger: zero what we do not know. */
  if (size > sizeof(d)) {
    memset((char *)stats + sizeof(d), 0, size - sizeof(d));
    size = sizeof(d);
  }
  d.size = size;
  memcpy(stats, &d, size);
  return IOCP_OK;
}

int IOCP_CALL iocp_listen_address(iocp_server *s, char *text, size_t cap, uint16_t *port) {
  uint16_t p;
  int gate;
  if (s == NULL || text == NULL || cap < IOCP_ADDRSTRLEN) return IOCP_EINVAL;
  gate = iocp__server_enter(s);
  if (gate < 0) return gate;
  iocp__address_format((const struct sockaddr *)&s->bound, text, cap, &p);
  if (port != NULL) *port = p;
  if (gate) iocp__server_leave(s);
  return IOCP_OK;
}
