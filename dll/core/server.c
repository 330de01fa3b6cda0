/* The server's life: iocp_create() and iocp_destroy(), and the small getters. */
#include "internal.h"

#include <string.h>

int IOCP_CALL iocp_create(const iocp_config *config, const iocp_callbacks *callbacks,
                          void *user, iocp_server **server) {
  struct sockaddr_storage addr;
  int addrlen = 0;
  size_t line;
  iocp_server *s = NULL;
  int rc;

  if (server == NULL) return IOCP_EINVAL;
  *server = NULL;

  s = iocp__calloc(1, sizeof(*s));
  if (s == NULL) return IOCP_ENOMEM;
  rc = iocp__config_copy(&s->cfg, s->bind_text, sizeof(s->bind_text), config);
  if (rc != IOCP_OK) goto fail_free;
  rc = iocp__callbacks_copy(&s->cb, callbacks, s->cfg.delivery == IOCP_DELIVERY_QUEUE);
  if (rc != IOCP_OK) goto fail_free;
  s->queue_mode = s->cfg.delivery == IOCP_DELIVERY_QUEUE;
  if (s->queue_mode) {
    s->want_sent = (s->cfg.queue_events & IOCP_EVENT_BIT(IOCP_EVENT_SENT)) != 0;
    s->want_peer_closed = (s->cfg.queue_events & IOCP_EVENT_BIT(IOCP_EVENT_PEER_CLOSED)) != 0;
  } else {
    s->want_sent = s->cb.on_sent != NULL;
    s->want_peer_closed = s->cb.on_peer_closed != NULL;
  }
  rc = iocp__address_parse(s->cfg.bind_address, s->cfg.port, &addr, &addrlen);
  if (rc != IOCP_OK) goto fail_free;
  if (s->cfg.dual_stack && addr.ss_family != AF_INET6) {
    rc = IOCP_EINVAL; /* dual stack is a property of IPv6 sockets */
    goto fail_free;
  }
  s->user = user;
  line = iocp__sys_cache_line();
  rc = iocp__table_init(&s->table, line);
  if (rc == IOCP_OK) rc = iocp__workers_init(&s->workers, s->cfg.threads, line);
  if (rc != IOCP_OK) goto fail_tables;
  iocp__mutex_init(&s->lock);
  iocp__cond_init(&s->cond);

  /* The handle is the caller's before the first accept can complete. */
  *server = s;
  rc = iocp__eng_start(s, (const struct sockaddr *)&addr, addrlen);
  if (rc != IOCP_OK) {
    *server = NULL;
    goto fail_sync;
  }
  return IOCP_OK;

fail_sync:
  iocp__cond_destroy(&s->cond);
  iocp__mutex_destroy(&s->lock);
fail_tables:
  iocp__workers_free(&s->workers);
  iocp__table_free(&s->table);
fail_free:
  iocp__free(s);
  return rc;
}

int IOCP_CALL iocp_stop(iocp_server *s) {
  int first;
  if (s == NULL) return IOCP_EINVAL;
  iocp__mutex_lock(&s->lock);
  first = !s->stopped;
  s->stopped = 1;
  iocp__mutex_unlock(&s->lock);
  if (!first) return IOCP_OK;

  iocp__eng_stop_accepting(s);
  /* From here no connection can join the table; every one in it ends. */
  iocp__table_close(&s->table, iocp__conn_destroy_one, NULL);
  /* A waiter may now be finished (nothing was open). */
  iocp__mutex_lock(&s->lock);
  iocp__cond_broadcast(&s->cond);
  iocp__mutex_unlock(&s->lock);
  return IOCP_OK;
}

int IOCP_CALL iocp_destroy(iocp_server *s) {
  if (s == NULL) return IOCP_OK;
  if (iocp__on_worker(s)) return IOCP_EINCALLBACK;

  iocp__mutex_lock(&s->lock);
  s->destroying = 1;
  iocp__mutex_unlock(&s->lock);

  iocp_stop(s);
  /* Waits for every connection to end; in queue mode, ends a wait in
   * progress and releases what was queued without delivering it. */
  iocp__evq_drain_all(s);

  iocp__eng_finish(s);

  iocp__cond_destroy(&s->cond);
  iocp__mutex_destroy(&s->lock);
  iocp__workers_free(&s->workers);
  iocp__table_free(&s->table);
  iocp__free(s);
  return IOCP_OK;
}

uint16_t IOCP_CALL iocp_port(iocp_server *s) { return s != NULL ? s->port : 0; }

uint64_t IOCP_CALL iocp_connection_count(iocp_server *s) {
  return s != NULL ? iocp__table_count(&s->table) : 0;
}

const iocp_config *iocp__server_config(const iocp_server *s) { return &s->cfg; }

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
  if (s == NULL || stats == NULL) return IOCP_EINVAL;
  size = stats->size;
  if (size < IOCP__STATS_SIZE_V1) return IOCP_EVERSION;
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
  if (s == NULL || text == NULL || cap < IOCP_ADDRSTRLEN) return IOCP_EINVAL;
  iocp__address_format((const struct sockaddr *)&s->bound, text, cap, &p);
  if (port != NULL) *port = p;
  return IOCP_OK;
}
