/* Outbound connections: iocp_connect(). The connection joins the table at
 * once (so iocp_send, iocp_close and iocp_destroy see it) but stays silent
 * until the engine reports the attempt through iocp__conn_connected: then
 * it continues exactly as an accepted one (on_connect first), or ends with
 * on_connect_failed. */
#include "internal.h"

#include <string.h>

/* Lock held: hands the attempt to the engine, which reports it once. */
static int start_locked(iocp__conn *c, const struct sockaddr_storage *addr, int addrlen) {
  assert(iocp__mutex_held(&c->lock));
  int rc;
  if (c->closing) return IOCP_ECLOSED; /* iocp_destroy got to it first */
  iocp__conn_ref(c);                   /* the attempt's reference */
  rc = iocp__eng_connect(c, (const struct sockaddr *)addr, addrlen);
  if (rc != IOCP_OK) {
    iocp__ref_add(&c->refs, -1); /* not the last: the table and we hold one */
    return rc;
  }
  c->connect_started = 1;
  return IOCP_OK;
}

static int connect_inside(iocp_server *s, const char *address, uint16_t port,
                          const iocp_tls_client *tls, iocp_conn_id *id) {
  struct sockaddr_storage addr;
  int addrlen = 0, rc;
  iocp__conn *c;

  rc = iocp__address_parse(address, port, &addr, &addrlen);
  if (rc != IOCP_OK) return rc;

  c = iocp__conn_alloc(s);
  if (c == NULL) return IOCP_ENOMEM;
  c->outbound = 1;
  iocp__eng_conn_init(c);
  if (tls != NULL) {
    char why[IOCP__LOG_MAX_TLS] = "";
    rc = iocp__tls_conn_client(c, tls, why, sizeof(why));
    if (rc == IOCP_OK) rc = iocp__timer_need(s, c->tls->hs_ms);
    if (rc != IOCP_OK) {
      iocp__conn_unref(c); /* nobody saw it */
      if (why[0] != '\0') iocp__log(s, IOCP_LOG_ERROR, rc, "TLS client options refused: %s", why);
      return rc;
    }
  }
  iocp__address_format((const struct sockaddr *)&addr, c->peer_addr, sizeof(c->peer_addr),
                       &c->peer_port);
  /* Counted against max_connections (iocp_connection_count() includes it),
   * never refused by it. */
  rc = iocp__table_insert(&s->table, c, s->cfg.max_connections != 0 ? IOCP__LIMIT_COUNT_ONLY : 0);
  if (rc != IOCP_OK) {
    iocp__conn_unref(c); /* nobody saw it */
    return rc;
  }
  /* The caller's before any callback for it can run. */
  *id = c->id;

  /* The table lock is never taken under a connection lock: insert first. */
  iocp__mutex_lock(&c->lock);
  rc = start_locked(c, &addr, addrlen);
  if (rc != IOCP_OK && !c->closing) {
    /* Nothing started: the id ends silently (refused: no callback at all). */
    c->refused = 1;
    c->closing = 1;
  }
  iocp__mutex_unlock(&c->lock);
  if (rc != IOCP_OK) {
    iocp__conn *t = iocp__table_remove(&s->table, c->id);
    if (t != NULL) iocp__conn_unref(t);
    *id = 0;
  }
  iocp__conn_unref(c);
  return rc;
}

int IOCP_CALL iocp_connect(iocp_server *s, const char *address, uint16_t port,
                           iocp_conn_id *id) {
  int rc, gate;
  if (id != NULL) *id = 0;
  if (s == NULL || address == NULL || id == NULL || port == 0) return IOCP_EINVAL;
  gate = iocp__server_enter(s);
  if (gate < 0) return gate;
  rc = connect_inside(s, address, port, NULL, id);
  if (gate) iocp__server_leave(s);
  return rc;
}

/* The size of the first layout (1.2). */
#define IOCP__TLS_CLIENT_SIZE_1_2 sizeof(iocp_tls_client)

int IOCP_CALL iocp_connect_tls(iocp_server *s, const char *address, uint16_t port,
                               const iocp_tls_client *tls, iocp_conn_id *id) {
  iocp_tls_client o;
  int rc, gate;
  if (id != NULL) *id = 0;
  if (s == NULL || address == NULL || id == NULL || port == 0 || tls == NULL) return IOCP_EINVAL;
  if (tls->size < IOCP__TLS_CLIENT_SIZE_1_2) return IOCP_EVERSION;
  memcpy(&o, tls, sizeof(o));
  if (o.no_verify > 1 || (o.min_version != 0 && o.min_version != IOCP_TLS_1_2 &&
                          o.min_version != IOCP_TLS_1_3) ||
      o.handshake_timeout_ms > IOCP_MAX_TIMEOUT_MS || (o.ca_pem == NULL && o.ca_pem_len != 0))
    return IOCP_EINVAL;
  gate = iocp__server_enter(s);
  if (gate < 0) return gate;
  rc = connect_inside(s, address, port, &o, id);
  if (gate) iocp__server_leave(s);
  return rc;
}
