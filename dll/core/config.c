/* Configuration defaults and the size-checked copies of the caller's structs.
 * A struct's `size` tells how much of it the caller's header knew: fields
 * past it take their defaults, so structs can grow in minor versions. */
#include "internal.h"

#include <string.h>

/* The layouts of the first release, 1.0.0 (iocp_config ended with nodelay
 * and reserved2_): no caller has a smaller struct, so a smaller size is not
 * ours. Fields appended since then are read only when `size` covers them. */
#define IOCP__CONFIG_SIZE_1_0 (offsetof(iocp_config, reserved2_) + sizeof(uint32_t))
#define IOCP__CALLBACKS_SIZE_1_0 \
  (offsetof(iocp_callbacks, on_disconnect) + sizeof(iocp_on_disconnect_fn))

/* The optional events a caller may ask to be queued. */
#define IOCP__QUEUE_EVENTS_KNOWN \
  (IOCP_EVENT_BIT(IOCP_EVENT_SENT) | IOCP_EVENT_BIT(IOCP_EVENT_PEER_CLOSED) | \
   IOCP_EVENT_BIT(IOCP_EVENT_DRAIN) | IOCP_EVENT_BIT(IOCP_EVENT_LOG))

static void config_defaults(iocp_config *c) {
  memset(c, 0, sizeof(*c));
  c->size = sizeof(*c);
  c->port = 0;
  c->bind_address = "127.0.0.1";
  c->threads = 0;
  c->backlog = 0;
  c->accepts_posted = 16;
  c->recv_buffer_size = 65536;
  c->max_send_queue = 8u << 20;
  c->nodelay = 1;
  /* 1.1: all off, as in 1.0. */
  c->idle_timeout_ms = 0;
  c->max_connections = 0;
  c->keepalive = 0;
  c->drain_mark = 0;
}

int IOCP_CALL iocp_config_init(iocp_config *config, uint32_t size) {
  iocp_config d;
  if (config == NULL) return IOCP_EINVAL;
  if (size < IOCP__CONFIG_SIZE_1_0) return IOCP_EVERSION;
  config_defaults(&d);
  /* A newer caller's struct may be larger: zero what we do not know. */
  if (size > sizeof(d)) {
    memset((char *)config + sizeof(d), 0, size - sizeof(d));
    size = sizeof(d);
  }
  d.size = size;
  memcpy(config, &d, size);
  config->size = size;
  return IOCP_OK;
}

int iocp__config_copy(iocp_config *dst, char *bind_text, size_t bind_cap,
                      const iocp_config *src) {
  size_t n, len;
  config_defaults(dst);
  if (src != NULL) {
    if (src->size < IOCP__CONFIG_SIZE_1_0) return IOCP_EVERSION;
    n = src->size < sizeof(*dst) ? src->size : sizeof(*dst);
    memcpy(dst, src, n);
    dst->size = sizeof(*dst);
  }
  if (dst->bind_address == NULL) dst->bind_address = "127.0.0.1";
  len = strlen(dst->bind_address);
  if (len >= bind_cap) return IOCP_EINVAL;
  memcpy(bind_text, dst->bind_address, len + 1);
  dst->bind_address = bind_text;
  if (dst->accepts_posted == 0 || dst->accepts_posted > 4096) return IOCP_EINVAL;
  if (dst->recv_buffer_size < 64 || dst->recv_buffer_size > (64u << 20)) return IOCP_EINVAL;
  if (dst->max_send_queue == 0) return IOCP_EINVAL;
  if (dst->threads > 1024) return IOCP_EINVAL;
  if (dst->delivery != IOCP_DELIVERY_CALLBACKS && dst->delivery != IOCP_DELIVERY_QUEUE)
    return IOCP_EINVAL;
  if (dst->queue_events & ~IOCP__QUEUE_EVENTS_KNOWN) return IOCP_EINVAL;
  if (dst->delivery == IOCP_DELIVERY_CALLBACKS && dst->queue_events != 0) return IOCP_EINVAL;
  if (dst->dual_stack > 1) return IOCP_EINVAL; /* an IPv4 address: see iocp_create */
  if (dst->idle_timeout_ms > IOCP_MAX_TIMEOUT_MS) return IOCP_EINVAL;
  if (dst->max_connections > INT32_MAX) return IOCP_EINVAL;
  if (dst->keepalive > 1 || dst->keepalive_idle_ms > IOCP_MAX_KEEPALIVE_MS ||
      dst->keepalive_interval_ms > IOCP_MAX_KEEPALIVE_MS)
    return IOCP_EINVAL;
  if (dst->drain_mark >= dst->max_send_queue) return IOCP_EINVAL;
  if (dst->tls_pkcs12 == NULL ? dst->tls_pkcs12_len != 0 : dst->tls_pkcs12_len == 0)
    return IOCP_EINVAL;
  if (dst->tls_min_version != 0 && dst->tls_min_version != IOCP_TLS_1_2 &&
      dst->tls_min_version != IOCP_TLS_1_3)
    return IOCP_EINVAL; /* TLS 1.0 and 1.1 are never accepted */
  if (dst->tls_handshake_timeout_ms > IOCP_MAX_TIMEOUT_MS) return IOCP_EINVAL;
  return IOCP_OK;
}

int iocp__callbacks_copy(iocp_callbacks *dst, const iocp_callbacks *src, int queue_mode) {
  size_t n;
  memset(dst, 0, sizeof(*dst));
  if (src == NULL) return queue_mode ? IOCP_OK : IOCP_EINVAL;
  if (src->size < IOCP__CALLBACKS_SIZE_1_0) return IOCP_EVERSION;
  n = src->size < sizeof(*dst) ? src->size : sizeof(*dst);
  memcpy(dst, src, n);
  dst->size = sizeof(*dst);
  /* One delivery mode per server (on_log, not an event of a connection,
   * is allowed in both). */
  if (queue_mode && (dst->on_connect != NULL || dst->on_data != NULL || dst->on_sent != NULL ||
                     dst->on_peer_closed != NULL || dst->on_disconnect != NULL ||
                     dst->on_connect_failed != NULL || dst->on_drain != NULL))
    return IOCP_EMODE;
  return IOCP_OK;
}
