/* TLS on the connection state machine, platform-free: the record layer
 * between the engine's ciphertext operations and the program's plaintext.
 * The TLS library behind core/tls.h (OpenSSL, SChannel) only transforms
 * bytes; this file decides when to receive, send, hand out plaintext and
 * end, with the connection's lock held, as conn.c does for plain TCP.
 *
 * - Handshake: receives are posted before the connection is kept; once the
 *   handshake completes on_connect (ACCEPTED) becomes due, as if the socket
 *   had just been accepted. A failure ends the connection silently (an
 *   accepted one) or as on_connect_failed (an outbound one), counted, and
 *   conn.c logs the reason once no lock is held.
 * - Receiving: the session reads the received ciphertext in place, and the
 *   receive buffer goes back to the pool once it has read all of it;
 *   plaintext is read into a fresh buffer for on_data, one buffer
 *   at a time, and only when the session has none left is the next receive
 *   posted (so pause and the one-on_data-at-a-time rule hold).
 * - Sending: c->sendq holds plaintext. One batch of it at a time is
 *   encrypted into `out` and stays queued (and counted) until its records
 *   went out; then it is consumed as a plain send would be. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* Plaintext encrypted per batch. */
#define IOCP__TLS_BATCH (256u << 10)
/* Plaintext handed to the session per call, its records then moved out
 * (so the session's output buffer stays one slice's size). */
#define IOCP__TLS_SLICE (64u << 10)
/* A ciphertext chunk for a slice's records, written in place. */
#define IOCP__TLS_OUT_CHUNK ((64u + 4u) << 10)
/* The default handshake time limit. */
#define IOCP__TLS_HS_MS 10000u

static void fail_locked(iocp__conn *c, int code, int timed_out, const char *why);

/* Moves what the session produced into `out`: straight into the room at
 * its tail; with no room, a small probe first (a short output, an alert or
 * a reply's record, gets a small chunk; a longer one a chunk it can fill). */
static int flush_locked(iocp__conn *c) {
  iocp__tls_conn *t = c->tls;
  uint8_t probe[512];
  size_t n, room;
  uint8_t *p;
  for (;;) {
    p = iocp__sendq_room(&t->out, &room);
    if (room == 0) {
      n = iocp__tls_output(t->sess, probe, sizeof(probe));
      if (n == 0) return IOCP_OK;
      if (iocp__sendq_push_cap(&t->out, probe, n, n < sizeof(probe) ? 0 : IOCP__TLS_OUT_CHUNK) !=
          IOCP_OK)
        return IOCP_ENOMEM;
      t->out_total += n;
      if (n < sizeof(probe)) return IOCP_OK;
      continue;
    }
    n = iocp__tls_output(t->sess, p, room);
    iocp__sendq_commit(&t->out, n);
    t->out_total += n;
    if (n < room) return IOCP_OK;
  }
}

/* The receive buffer the session reads in place goes back to the pool once
 * the session has read all of it (core/tls.h). */
static void input_done_locked(iocp__conn *c, int status) {
  iocp__tls_conn *t = c->tls;
  if (t->inbuf == NULL) return;
  if (status != IOCP__TLS_WANT && iocp__tls_pending(t->sess)) return;
  iocp__buf_put(c->server, t->inbuf);
  t->inbuf = NULL;
}

static iocp__tls_conn *tls_alloc(void) {
  return iocp__calloc(1, sizeof(iocp__tls_conn));
}

int iocp__tls_conn_server(iocp__conn *c) {
  iocp_server *s = c->server;
  iocp__tls_conn *t = tls_alloc();
  if (t == NULL) return IOCP_ENOMEM;
  t->sess = iocp__tls_new_server(s->tls_cred);
  if (t->sess == NULL) {
    iocp__free(t);
    return IOCP_ENOMEM;
  }
  t->hs_ms = s->tls_hs_ms;
  t->hs_tick = iocp__timer_tick(s);
  c->tls = t;
  return IOCP_OK;
}

int iocp__tls_conn_client(iocp__conn *c, const iocp_tls_client *o, char *why, size_t cap) {
  iocp__tls_conn *t = tls_alloc();
  int rc;
  if (t == NULL) return IOCP_ENOMEM;
  rc = iocp__tls_new_client(o, &t->sess, why, cap);
  if (rc != IOCP_OK) {
    iocp__free(t);
    return rc;
  }
  t->hs_ms = o->handshake_timeout_ms != 0 ? o->handshake_timeout_ms : IOCP__TLS_HS_MS;
  c->tls = t;
  return IOCP_OK;
}

void iocp__tls_conn_free(iocp__conn *c) {
  iocp__tls_conn *t = c->tls;
  iocp__tls_free(t->sess);
  iocp__buf_put(c->server, t->inbuf);
  iocp__sendq_clear(&t->out);
  iocp__free(t);
  c->tls = NULL;
}

/* Reads the next plaintext for on_data, or posts a receive when the
 * session has none. */
static void read_plain_locked(iocp__conn *c) {
  iocp__tls_conn *t = c->tls;
  iocp_server *s = c->server;
  char why[IOCP__LOG_MAX_TLS];
  uint8_t *buf;
  size_t n = 0;
  int r;

  if (c->closing || c->peer_fin || c->recv_busy || c->ev_data || c->in_data || c->paused ||
      !c->kept)
    return;
  buf = iocp__buf_get(s);
  if (buf == NULL) {
    iocp__conn_teardown_locked(c, IOCP_REASON_RESET, 1);
    return;
  }
  r = iocp__tls_read(t->sess, buf, iocp__buf_size(s), &n, why, sizeof(why));
  input_done_locked(c, r);
  if (flush_locked(c) != IOCP_OK) r = IOCP_ENOMEM;
  if (r == IOCP__TLS_DONE) {
    c->active_tick = iocp__timer_tick(s);
    iocp__stat_add(s, IOCP__STAT_BYTES_IN, (int64_t)n);
    c->rbuf = buf; /* the event holds it until on_data returns */
    c->ev_data = 1;
    c->ev_data_len = n;
  } else {
    iocp__buf_put(s, buf);
    if (r == IOCP__TLS_WANT) {
      iocp__conn_post_recv_locked(c);
    } else if (r == IOCP__TLS_CLOSED) {
      /* The peer's close_notify: its half-close. */
      c->peer_fin = 1;
      c->ev_peer_closed = 1;
      if (c->fin_sent) iocp__conn_teardown_locked(c, IOCP_REASON_PEER_CLOSED, 0);
    } else {
      iocp__conn_teardown_locked(c, IOCP_REASON_TLS_ERROR, 1);
    }
  }
  if (!c->closing) iocp__tls_start_send_locked(c);
}

/* Drives the handshake with what the session holds. */
static void handshake_locked(iocp__conn *c) {
  iocp__tls_conn *t = c->tls;
  char why[IOCP__LOG_MAX_TLS];
  int r = iocp__tls_handshake(t->sess, why, sizeof(why));
  input_done_locked(c, r);
  if (flush_locked(c) != IOCP_OK) {
    r = IOCP_ETLS;
    snprintf(why, sizeof(why), "out of memory");
  }
  if (r < 0) {
    fail_locked(c, r, 0, why);
    return;
  }
  if (r == IOCP__TLS_DONE) {
    t->hs_done = 1;
    iocp__stat_add(c->server, IOCP__STAT_TLS_HANDSHAKES, 1);
    /* Counted as accepted only now: a failed handshake never reaches
     * on_connect. */
    if (!c->outbound) iocp__stat_add(c->server, IOCP__STAT_ACCEPTED, 1);
    c->ev_connect = 1;
  }
  if (!c->closing) iocp__tls_start_send_locked(c);
  /* The flight went out first: the peer waits on it, and the receive
   * (tried at once on Linux, in vain) would only delay it. */
  if (r == IOCP__TLS_WANT && !c->closing) iocp__conn_post_recv_locked(c);
}

void iocp__tls_start_recv_locked(iocp__conn *c) {
  assert(iocp__mutex_held(&c->lock));
  if (c->closing || c->peer_fin || c->recv_busy || c->ev_data) return;
  if (!c->tls->hs_done)
    iocp__conn_post_recv_locked(c);
  else
    read_plain_locked(c);
}

void iocp__tls_connected_locked(iocp__conn *c) {
  assert(iocp__mutex_held(&c->lock));
  c->tls->hs_tick = iocp__timer_tick(c->server);
  handshake_locked(c); /* the ClientHello */
}

void iocp__tls_recv_done_locked(iocp__conn *c, int result, uint8_t *buf, size_t bytes) {
  assert(iocp__mutex_held(&c->lock));
  iocp__tls_conn *t = c->tls;
  assert(c->recv_busy && !c->ev_data && c->rbuf == NULL);
  c->recv_busy = 0;
  if (c->closing) {
    iocp__buf_put(c->server, buf);
    return;
  }
  if (result != IOCP__IO_OK) {
    if (!t->hs_done)
      fail_locked(c, IOCP_ETLS, 0, "the connection was reset during the handshake");
    else
      iocp__conn_teardown_locked(c, IOCP_REASON_RESET, 1);
    return;
  }
  if (bytes == 0) {
    if (!t->hs_done)
      fail_locked(c, IOCP_ETLS, 0, "the peer closed during the handshake");
    else
      iocp__conn_teardown_locked(c, IOCP_REASON_TLS_TRUNCATED, 1);
    return;
  }
  c->active_tick = iocp__timer_tick(c->server);
  /* A receive is posted only once the session read all it had. */
  assert(t->inbuf == NULL);
  if (t->inbuf != NULL || iocp__tls_input(t->sess, buf, bytes) != IOCP_OK) {
    iocp__buf_put(c->server, buf);
    iocp__conn_teardown_locked(c, IOCP_REASON_RESET, 1);
    return;
  }
  t->inbuf = buf; /* read in place: the session's until it has read it all */
  if (!t->hs_done)
    handshake_locked(c);
  else
    read_plain_locked(c);
}

/* Encrypts the next batch of queued plaintext into `out`. */
static int encrypt_batch_locked(iocp__conn *c) {
  iocp__tls_conn *t = c->tls;
  iocp__iov iov[IOCP__MAX_IOV];
  size_t total = 0;
  int n = iocp__sendq_gather(&c->sendq, iov, IOCP__MAX_IOV), i;
  for (i = 0; i < n && total < IOCP__TLS_BATCH; i++) {
    size_t len = iov[i].len < IOCP__TLS_BATCH - total ? iov[i].len : IOCP__TLS_BATCH - total;
    size_t off = 0;
    while (off < len) {
      size_t k = len - off < IOCP__TLS_SLICE ? len - off : IOCP__TLS_SLICE;
      if (iocp__tls_write(t->sess, iov[i].base + off, k) != IOCP_OK) return IOCP_ETLS;
      if (flush_locked(c) != IOCP_OK) return IOCP_ENOMEM;
      off += k;
    }
    total += len;
  }
  t->plain_inflight = total;
  t->batch_end = t->out_total;
  return IOCP_OK;
}

void iocp__tls_start_send_locked(iocp__conn *c) {
  assert(iocp__mutex_held(&c->lock));
  iocp__tls_conn *t = c->tls;
  iocp__iov iov[IOCP__MAX_IOV];
  int n;
  if (c->closing || c->send_busy) return;
  /* Plaintext only once on_connect kept the connection. */
  if (t->out.queued == 0 && t->hs_done && c->kept) {
    if (t->plain_inflight == 0 && c->sendq.queued > 0) {
      if (encrypt_batch_locked(c) != IOCP_OK) {
        iocp__conn_teardown_locked(c, IOCP_REASON_TLS_ERROR, 1);
        return;
      }
    } else if (c->sendq.queued == 0 && c->shut_req && !t->close_sent) {
      t->close_sent = 1;
      if (iocp__tls_close_notify(t->sess) != IOCP_OK || flush_locked(c) != IOCP_OK) {
        iocp__conn_teardown_locked(c, IOCP_REASON_TLS_ERROR, 1);
        return;
      }
    }
  }
  n = iocp__sendq_gather(&t->out, iov, IOCP__MAX_IOV);
  if (n > 0) {
    iocp__conn_post_send_locked(c, iov, n);
    return;
  }
  if (c->kept && c->shut_req && !c->fin_sent && t->close_sent && c->sendq.queued == 0) {
    if (iocp__eng_shutdown_send(c) != IOCP_OK) {
      iocp__conn_teardown_locked(c, IOCP_REASON_RESET, 1);
      return;
    }
    c->fin_sent = 1;
    if (c->peer_fin) iocp__conn_teardown_locked(c, IOCP_REASON_PEER_CLOSED, 0);
  }
}

void iocp__tls_send_done_locked(iocp__conn *c, int result, size_t bytes) {
  assert(iocp__mutex_held(&c->lock));
  iocp__tls_conn *t = c->tls;
  c->send_busy = 0;
  if (c->closing) {
    iocp__sendq_clear(&t->out);
    t->plain_inflight = 0;
    iocp__conn_sendq_drop(c);
    return;
  }
  if (result != IOCP__IO_OK) {
    iocp__conn_teardown_locked(c, IOCP_REASON_RESET, 1);
    return;
  }
  assert(bytes <= t->out.queued);
  if (bytes > t->out.queued) bytes = (size_t)t->out.queued;
  iocp__sendq_consume(&t->out, bytes);
  t->out_sent += bytes;
  if (bytes > 0) c->active_tick = iocp__timer_tick(c->server);
  if (t->plain_inflight > 0 && t->out_sent >= t->batch_end) {
    size_t plain = (size_t)t->plain_inflight;
    t->plain_inflight = 0;
    iocp__conn_sent_locked(c, plain);
  }
  iocp__tls_start_send_locked(c);
}

/* Ends a connection whose handshake failed: whatever alert the session
 * produced goes out if the socket takes it at once, then the socket
 * closes. An accepted connection was never kept, so no callback runs; an
 * outbound one reports `code` through on_connect_failed. */
static void fail_locked(iocp__conn *c, int code, int timed_out, const char *why) {
  iocp__tls_conn *t = c->tls;
  iocp__iov iov[1];
  if (c->closing) return;
  iocp__stat_add(c->server, timed_out ? IOCP__STAT_TLS_TIMEOUTS : IOCP__STAT_TLS_FAILURES, 1);
  t->fail_code = code;
  snprintf(t->why, sizeof(t->why), "%s", why);
  t->log_due = 1;
  if (c->outbound) c->connect_error = code;
  if (!c->send_busy && iocp__sendq_gather(&t->out, iov, 1) == 1)
    (void)iocp__eng_try_send(c, iov[0].base, iov[0].len);
  iocp__conn_teardown_locked(c, IOCP_REASON_RESET, 0);
}

void iocp__tls_sweep_locked(iocp__conn *c, uint32_t tick, uint32_t slack) {
  assert(iocp__mutex_held(&c->lock));
  iocp__tls_conn *t = c->tls;
  if (c->closing || t->hs_done || (c->outbound && !c->connect_started)) return;
  if (tick - t->hs_tick < t->hs_ms + slack) return;
  fail_locked(c, c->outbound ? IOCP_ETIMEDOUT : IOCP_ETLS, 1, "the handshake timed out");
  iocp__conn_kick_locked(c);
}

/* A storm of bad peers must not become a storm of log lines: on_log hears
 * of one failed handshake a second, and the next line counts the rest. */
#define IOCP__TLS_LOG_PERIOD_MS 1000

void iocp__tls_log_failure(iocp__conn *c, int code, const char *why) {
  iocp_server *s = c->server;
  uint64_t now = iocp__now_ms(), quiet = 0;
  int emit = 0;
  iocp__mutex_lock(&s->lock);
  if (s->tls_log_ms == 0 || now - s->tls_log_ms >= IOCP__TLS_LOG_PERIOD_MS) {
    s->tls_log_ms = now != 0 ? now : 1;
    quiet = s->tls_log_quiet;
    s->tls_log_quiet = 0;
    emit = 1;
  } else {
    s->tls_log_quiet++;
  }
  iocp__mutex_unlock(&s->lock);
  if (!emit) return;
  if (quiet > 0)
    iocp__log(s, IOCP_LOG_WARN, code,
              "TLS handshake with %s port %u failed: %s (and %llu more not logged)",
              c->peer_addr, (unsigned)c->peer_port, why, (unsigned long long)quiet);
  else
    iocp__log(s, IOCP_LOG_WARN, code, "TLS handshake with %s port %u failed: %s", c->peer_addr,
              (unsigned)c->peer_port, why);
}

/* ---- The server's side, and the API -------------------------------------- */

int iocp__tls_server_setup(iocp_server *s) {
  const iocp_config *cfg = &s->cfg;
  char why[IOCP__LOG_MAX_TLS] = "";
  int rc;
  if (cfg->tls_pkcs12 == NULL) return IOCP_OK;
  s->tls_hs_ms = cfg->tls_handshake_timeout_ms != 0 ? cfg->tls_handshake_timeout_ms
                                                    : IOCP__TLS_HS_MS;
  rc = iocp__tls_cred_server(cfg->tls_pkcs12, cfg->tls_pkcs12_len, cfg->tls_password,
                             cfg->tls_min_version, cfg->tls_alpn, &s->tls_cred, why,
                             sizeof(why));
  if (rc != IOCP_OK) {
    iocp__log(s, IOCP_LOG_ERROR, rc, "TLS identity refused: %s", why);
    return rc;
  }
  rc = iocp__timer_need(s, s->tls_hs_ms);
  if (rc != IOCP_OK) {
    iocp__tls_cred_free(s->tls_cred);
    s->tls_cred = NULL;
  }
  return rc;
}

void iocp__tls_server_free(iocp_server *s) {
  iocp__tls_cred_free(s->tls_cred);
  s->tls_cred = NULL;
}

static int info_locked(iocp__conn *c, void *arg) {
  assert(iocp__mutex_held(&c->lock));
  if (c->tls == NULL || !c->tls->hs_done) return IOCP_ENOTLS;
  iocp__tls_info(c->tls->sess, arg);
  return IOCP_OK;
}

int IOCP_CALL iocp_tls_get_info(iocp_server *s, iocp_conn_id id, iocp_tls_info *info) {
  iocp_tls_info d;
  uint32_t size;
  int rc;
  if (s == NULL || info == NULL) return IOCP_EINVAL;
  size = info->size;
  if (size < sizeof(d)) return IOCP_EINVAL;
  memset(&d, 0, sizeof(d));
  rc = iocp__conn_with(s, id, info_locked, &d);
  if (rc != IOCP_OK) return rc;
  memset(info, 0, size);
  d.size = size;
  memcpy(info, &d, sizeof(d));
  return IOCP_OK;
}
