/* The connection lifecycle, platform-free.
 *
 * Every connection is a small state machine under its own lock. Completions
 * from the engine (on any worker) and calls from the API (on any thread) only
 * change state and record events; one worker at a time, the one that finds
 * the connection idle ("running" clear), delivers the events as callbacks, in
 * a fixed order, with the lock released during each callback. That gives the
 * threading contract: callbacks of one connection never overlap and arrive in
 * order, different connections run in parallel, and nothing ever waits for
 * another connection's callback.
 *
 * References: the table holds one, every operation in flight holds one, and
 * so does every caller between lookup and return. The last one frees. */
#include "internal.h"

#include <assert.h>
#include <string.h>

/* After this many events in a row a worker hands the connection back to the
 * queue, so one busy connection cannot hold a worker against all others. */
#define IOCP__RUN_ROUNDS 16

static iocp__seq next_id = 1; /* process-wide: ids are never reused */

/* The connection whose callback runs on this thread (iocp_get_context). */
static IOCP__TLS iocp__conn *current;

iocp__conn *iocp__conn_current(void) { return current; }

void iocp__conn_ref(iocp__conn *c) { iocp__ref_add(&c->refs, 1); }

void iocp__conn_sendq_drop(iocp__conn *c) {
  if (c->sendq.queued != 0) iocp__stat_add(c->server, IOCP__STAT_QUEUED, -(int64_t)c->sendq.queued);
  iocp__sendq_clear(&c->sendq);
}

static void sendq_drop(iocp__conn *c) { iocp__conn_sendq_drop(c); }

static void conn_free(iocp__conn *c) {
  iocp_server *s = c->server;
  assert(!c->recv_busy && !c->send_busy); /* every operation held a reference */
  iocp__eng_conn_free(c);
  if (c->tls != NULL) iocp__tls_conn_free(c);
  sendq_drop(c);
  iocp__buf_put(s, c->rbuf);
  iocp__mutex_destroy(&c->lock);
  iocp__free(c);
  /* The last one wakes iocp_destroy(), under the lock it checks under. */
  if (iocp__ref_add(&s->alive, -1) == 1) {
    iocp__mutex_lock(&s->lock);
    iocp__evq_wake_locked(s);
    iocp__mutex_unlock(&s->lock);
  }
}

void iocp__conn_unref(iocp__conn *c) {
  long before = iocp__ref_add(&c->refs, -1);
  assert(before >= 1);
  if (before == 1) conn_free(c);
}

/* Drops a reference that is known not to be the last (the caller has one). */
static void unref_not_last(iocp__conn *c) {
  long before = iocp__ref_add(&c->refs, -1);
  assert(before > 1);
  (void)before;
}

iocp__conn *iocp__conn_alloc(iocp_server *s) {
  iocp__conn *c = iocp__calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->server = s;
  c->id = iocp__seq_next(&next_id);
  c->refs = 1; /* not yet shared with any other thread */
  c->drain_mark = s->cfg.drain_mark;
  c->idle_ms = s->cfg.idle_timeout_ms;
  c->active_tick = iocp__timer_tick(s);
  iocp__mutex_init(&c->lock, IOCP__RANK_CONN);
  iocp__ref_add(&s->alive, 1);
  return c;
}

iocp__conn *iocp__conn_lookup(iocp_server *s, iocp_conn_id id) {
  return iocp__table_get(&s->table, id);
}

iocp_server *iocp__conn_server(const iocp__conn *c) { return c->server; }

size_t iocp__conn_recv_size(const iocp__conn *c) {
  size_t n = iocp__buf_size(c->server);
  return c->tls != NULL ? n + IOCP__TLS_RECV_SLACK(n) : n;
}
iocp_conn_id iocp__conn_id(const iocp__conn *c) { return c->id; }
void iocp__conn_lock(iocp__conn *c) { iocp__mutex_lock(&c->lock); }
void iocp__conn_unlock(iocp__conn *c) { iocp__mutex_unlock(&c->lock); }
int iocp__conn_held(iocp__conn *c) { return iocp__mutex_held(&c->lock); }

static int has_events(const iocp__conn *c) {
  return c->ev_connect || c->ev_data || c->ev_sent || c->ev_drain || c->ev_peer_closed ||
         c->ev_disconnect;
}

/* Starts the teardown once: no more I/O, the socket is closed (pending
 * operations complete as aborted) and on_disconnect becomes due. */
void iocp__conn_teardown_locked(iocp__conn *c, int reason, int abortive) {
  assert(iocp__mutex_held(&c->lock));
  if (c->closing) return;
  c->closing = 1;
  c->reason = reason;
  iocp__eng_close(c, abortive);
  /* A send in flight still points into the queue; its completion clears it. */
  if (!c->send_busy) sendq_drop(c);
  c->ev_disconnect = 1;
}

static void teardown_locked(iocp__conn *c, int reason, int abortive) {
  assert(iocp__mutex_held(&c->lock));
  iocp__conn_teardown_locked(c, reason, abortive);
}

void iocp__conn_post_recv_locked(iocp__conn *c) {
  assert(iocp__mutex_held(&c->lock));
  iocp__conn_ref(c);
  c->recv_busy = 1;
  if (iocp__eng_recv(c) != IOCP_OK) {
    iocp__stat_add(c->server, IOCP__STAT_SYSTEM_ERRORS, 1);
    c->recv_busy = 0;
    unref_not_last(c);
    teardown_locked(c, IOCP_REASON_RESET, 1);
  }
}

void iocp__conn_start_recv_locked(iocp__conn *c) {
  assert(iocp__mutex_held(&c->lock));
  if (c->tls != NULL) {
    iocp__tls_start_recv_locked(c);
    return;
  }
  if (c->closing || c->peer_fin || c->recv_busy || c->ev_data || !c->kept) return;
  if (c->paused || c->in_data) return; /* resumed later; on_data still holds rbuf */
  assert(c->rbuf == NULL); /* on_data is over: its buffer went back */
  iocp__conn_post_recv_locked(c);
}

static void start_recv_locked(iocp__conn *c) {
  assert(iocp__mutex_held(&c->lock));
  iocp__conn_start_recv_locked(c);
}

/* Posts the next gathered send; with an empty queue after iocp_shutdown(),
 * sends FIN instead, which ends the connection if the peer's FIN is in. */
void iocp__conn_post_send_locked(iocp__conn *c, const iocp__iov *iov, int n) {
  assert(iocp__mutex_held(&c->lock));
  iocp__conn_ref(c);
  c->send_busy = 1;
  if (iocp__eng_send(c, iov, n) != IOCP_OK) {
    iocp__stat_add(c->server, IOCP__STAT_SYSTEM_ERRORS, 1);
    c->send_busy = 0;
    unref_not_last(c);
    teardown_locked(c, IOCP_REASON_RESET, 1);
  }
}

void iocp__conn_start_send_locked(iocp__conn *c) {
  assert(iocp__mutex_held(&c->lock));
  iocp__iov iov[IOCP__MAX_IOV];
  int n;
  if (c->tls != NULL) {
    iocp__tls_start_send_locked(c);
    return;
  }
  if (c->closing || c->send_busy || !c->kept) return;
  n = iocp__sendq_gather(&c->sendq, iov, IOCP__MAX_IOV);
  if (n == 0) {
    if (c->shut_req && !c->fin_sent) {
      if (iocp__eng_shutdown_send(c) != IOCP_OK) {
        teardown_locked(c, IOCP_REASON_RESET, 1);
        return;
      }
      c->fin_sent = 1;
      if (c->peer_fin) teardown_locked(c, IOCP_REASON_PEER_CLOSED, 0);
    }
    return;
  }
  iocp__conn_post_send_locked(c, iov, n);
}

static void start_send_locked(iocp__conn *c) {
  assert(iocp__mutex_held(&c->lock));
  iocp__conn_start_send_locked(c);
}

/* Takes the next due event into c->ev; lock held. Returns 0 when the event
 * needs no delivery (the library's own handling of a peer's FIN, a drain
 * that is no longer one). */
static int take_event_locked(iocp__conn *c) {
  assert(iocp__mutex_held(&c->lock));
  iocp_server *s = c->server;
  iocp__event_rec *e = &c->ev;
  memset(e, 0, sizeof(*e));
  if (c->ev_connect) {
    c->ev_connect = 0;
    e->type = IOCP_EVENT_ACCEPTED;
    e->value = c->peer_port;
    e->data = c->peer_addr;
    e->len = strlen(c->peer_addr);
    c->accept_out = s->queue_mode; /* iocp_close() refuses it until released */
  } else if (c->ev_data) {
    assert(c->rbuf != NULL && c->ev_data_len > 0 && !c->recv_busy);
    c->ev_data = 0;
    c->in_data = 1; /* until the callback returns or the batch is released */
    e->type = IOCP_EVENT_DATA;
    e->data = c->rbuf;
    e->len = c->ev_data_len;
  } else if (c->ev_sent) {
    e->type = IOCP_EVENT_SENT;
    e->len = c->ev_sent;
    c->ev_sent = 0;
  } else if (c->ev_drain) {
    c->ev_drain = 0;
    if (c->closing) return 0;
    if (c->sendq.queued > c->drain_mark) { /* refilled since: not drained */
      c->drain_armed = 1;
      return 0;
    }
    e->type = IOCP_EVENT_DRAIN;
    e->len = c->sendq.queued;
  } else if (c->ev_peer_closed) {
    c->ev_peer_closed = 0;
    if (c->closing) return 0;
    if (!s->want_peer_closed) {
      c->shut_req = 1; /* the default: finish the queue, then FIN */
      start_send_locked(c);
      return 0;
    }
    e->type = IOCP_EVENT_PEER_CLOSED;
  } else if (c->connect_started && !c->kept && !c->refused) {
    /* An outbound attempt that never reached on_connect ends here. */
    c->ev_disconnect = 0;
    c->ended = 1;
    e->type = IOCP_EVENT_CONNECT_FAILED;
    e->value = c->connect_error != IOCP_OK ? c->connect_error : IOCP_ECLOSED;
  } else {
    c->ev_disconnect = 0;
    c->ended = 1;
    e->type = IOCP_EVENT_DISCONNECTED;
    e->value = c->reason;
  }
  e->context = c->context;
  return 1;
}

/* Calls the event's callback (callback mode); returns on_connect's verdict. */
static int call_back(iocp__conn *c) {
  iocp_server *s = c->server;
  const iocp_callbacks *cb = &s->cb;
  const iocp__event_rec *e = &c->ev;
  switch (e->type) {
  case IOCP_EVENT_ACCEPTED:
    return cb->on_connect == NULL ||
           cb->on_connect(s, s->user, c->id, c->peer_addr, c->peer_port) == 0;
  case IOCP_EVENT_DATA:
    if (cb->on_data != NULL) cb->on_data(s, s->user, c->id, c->rbuf, (size_t)e->len);
    break;
  case IOCP_EVENT_SENT: cb->on_sent(s, s->user, c->id, e->len); break;
  case IOCP_EVENT_DRAIN: cb->on_drain(s, s->user, c->id, e->len); break;
  case IOCP_EVENT_PEER_CLOSED: cb->on_peer_closed(s, s->user, c->id); break;
  case IOCP_EVENT_DISCONNECTED:
    if (cb->on_disconnect != NULL) cb->on_disconnect(s, s->user, c->id, e->value);
    break;
  case IOCP_EVENT_CONNECT_FAILED:
    if (cb->on_connect_failed != NULL) cb->on_connect_failed(s, s->user, c->id, e->value);
    break;
  default: assert(!"unknown event"); break;
  }
  return 1;
}

/* After the event was delivered (its callback returned, or its batch was
 * released); entered without the lock, returns with it held. */
static void finish_event(iocp__conn *c, int keep) {
  iocp_server *s = c->server;
  if (c->ev.type == IOCP_EVENT_ACCEPTED && !keep) {
    /* Out of the table before the socket closes: once the peer sees the
     * reset, the id is stale and no longer counted. (The lock is not held
     * here: table locks are taken before connection locks.) */
    iocp__conn *t = iocp__table_remove(&s->table, c->id);
    if (t != NULL) unref_not_last(t);
  }
  iocp__mutex_lock(&c->lock);
  if (c->ev.type == IOCP_EVENT_ACCEPTED) {
    c->accept_out = 0;
    if (!keep) {
      iocp__stat_add(s, IOCP__STAT_REFUSED, 1);
      c->refused = 1;
      teardown_locked(c, IOCP_REASON_LOCAL_CLOSE, 1);
    } else {
      c->kept = 1;
      if (c->stop_fin) c->shut_req = 1; /* the graceful stop's half-close */
      start_recv_locked(c);
      start_send_locked(c); /* bytes (and a shutdown) queued before the keep */
    }
  } else if (c->ev.type == IOCP_EVENT_DATA) {
    /* Only now is the buffer free again: back to the pool, so an idle
     * connection holds none. */
    uint8_t *buf = c->rbuf;
    c->in_data = 0;
    c->rbuf = NULL;
    iocp__buf_put(s, buf);
    start_recv_locked(c);
  }
}

/* Delivers pending events; entered with the lock held and `running` set by
 * the caller, returns with the lock released. In queue mode the first event
 * goes to the queue, and `running` stays set until its batch is released
 * (iocp__conn_released picks up from there). */
static void run_locked(iocp__conn *c) {
  assert(iocp__mutex_held(&c->lock));
  iocp_server *s = c->server;
  iocp__conn *outer = current;
  int rounds = 0;

  current = c;
  while (has_events(c)) {
    int keep, deliver;
    if (++rounds > IOCP__RUN_ROUNDS) {
      iocp__conn_ref(c);
      if (iocp__eng_post_run(c) == IOCP_OK) {
        iocp__mutex_unlock(&c->lock); /* `running` stays set for that worker */
        current = outer;
        return;
      }
      unref_not_last(c);
      rounds = 0;
    }
    if (!take_event_locked(c)) continue;
    /* A refused connection has no disconnect to deliver. */
    deliver = c->ev.type != IOCP_EVENT_DISCONNECTED || (c->kept && !c->refused);
    if (c->tls != NULL && c->tls->log_due) {
      /* A failed handshake is only a log line (no lock held for on_log). */
      char why[IOCP__LOG_MAX_TLS];
      int code = c->tls->fail_code;
      memcpy(why, c->tls->why, sizeof(why));
      c->tls->log_due = 0;
      iocp__mutex_unlock(&c->lock);
      iocp__tls_log_failure(c, code, why);
    } else {
      iocp__mutex_unlock(&c->lock);
    }
    if (c->ev.type == IOCP_EVENT_DISCONNECTED || c->ev.type == IOCP_EVENT_CONNECT_FAILED) {
      iocp__conn *t = iocp__table_remove(&s->table, c->id); /* stale from here on */
      if (t != NULL) unref_not_last(t);
    }
    if (!deliver) {
      iocp__mutex_lock(&c->lock);
      continue;
    }
    if (s->queue_mode) {
      iocp__conn_ref(c); /* the queue's */
      iocp__evq_push(c);
      current = outer;
      return;
    }
    keep = call_back(c);
    finish_event(c, keep);
  }
  c->running = 0;
  iocp__mutex_unlock(&c->lock);
  current = outer;
}

void iocp__conn_released(iocp__conn *c) {
  int keep = 1;
  if (c->ev.type == IOCP_EVENT_ACCEPTED) {
    iocp__mutex_lock(&c->lock);
    keep = !c->refuse_req;
    iocp__mutex_unlock(&c->lock);
  }
  finish_event(c, keep);
  run_locked(c);
  iocp__conn_unref(c);
}

/* On a worker, lock held: deliver here unless another worker already is. */
static void deliver_locked(iocp__conn *c) {
  assert(iocp__mutex_held(&c->lock));
  if (c->running || !has_events(c)) {
    iocp__mutex_unlock(&c->lock);
    return;
  }
  c->running = 1;
  run_locked(c);
}

/* On any thread, lock held: make sure a worker will deliver what is pending
 * (API calls never run callbacks on the caller's thread). */
void iocp__conn_kick_locked(iocp__conn *c) {
  assert(iocp__mutex_held(&c->lock));
  if (c->running || !has_events(c)) return;
  iocp__conn_ref(c);
  if (iocp__eng_post_run(c) == IOCP_OK)
    c->running = 1;
  else
    unref_not_last(c); /* the next completion on this connection delivers */
}

static void kick_locked(iocp__conn *c) {
  assert(iocp__mutex_held(&c->lock));
  iocp__conn_kick_locked(c);
}

/* ---- Called by the engine's workers ---------------------------------------- */

void iocp__conn_accepted(iocp__conn *c, const struct sockaddr *peer) {
  iocp_server *s = c->server;
  int rc;
  iocp__address_format(peer, c->peer_addr, sizeof(c->peer_addr), &c->peer_port);
  if (s->tls_cred != NULL) {
    /* on_connect waits for the handshake (tls_conn.c). */
    rc = iocp__tls_conn_server(c);
    if (rc != IOCP_OK) {
      iocp__stat_add(s, IOCP__STAT_ACCEPT_ERRORS, 1);
      iocp__mutex_lock(&c->lock);
      c->refused = 1;
      c->closing = 1;
      iocp__eng_close(c, 1);
      iocp__mutex_unlock(&c->lock);
      iocp__conn_unref(c);
      return;
    }
  } else {
    /* Due before anyone can find the id, so on_connect is always first. */
    c->ev_connect = 1;
  }
  rc = iocp__table_insert(&s->table, c, s->cfg.max_connections);
  if (rc != IOCP_OK) {
    /* The server is stopping, or at max_connections: drop it before anyone
     * saw it (a reset for the peer). */
    if (rc == IOCP__EFULL) {
      iocp__mutex_lock(&s->lock);
      s->refused++;
      iocp__mutex_unlock(&s->lock);
    }
    iocp__mutex_lock(&c->lock);
    c->ev_connect = 0;
    c->refused = 1;
    c->closing = 1;
    iocp__eng_close(c, 1);
    iocp__mutex_unlock(&c->lock);
    iocp__conn_unref(c);
    return;
  }
  iocp__mutex_lock(&c->lock);
  if (c->tls != NULL) {
    iocp__tls_start_recv_locked(c); /* the ClientHello */
  } else {
    /* Counted once it is sure to reach on_connect (the statistics' meaning):
     * a socket refused at the cap or while stopping never does. */
    iocp__stat_add(s, IOCP__STAT_ACCEPTED, 1);
  }
  deliver_locked(c);
  iocp__conn_unref(c);
}

void iocp__conn_connected(iocp__conn *c, int error) {
  iocp__mutex_lock(&c->lock);
  if (c->closing) {
    /* closed or destroyed meanwhile: on_connect_failed(IOCP_ECLOSED) is due */
  } else if (error != IOCP_OK) {
    /* The system's "invalid argument" for an address we parsed: one it
     * cannot reach from here (a link-local one without its scope). */
    c->connect_error = error == IOCP_EINVAL ? IOCP_EUNREACH : error;
    teardown_locked(c, IOCP_REASON_RESET, 1);
  } else if (c->tls != NULL) {
    iocp__tls_connected_locked(c); /* on_connect after the handshake */
  } else {
    c->ev_connect = 1; /* then as for an accepted connection */
  }
  deliver_locked(c);
  iocp__conn_unref(c);
}

void iocp__conn_recv_done(iocp__conn *c, int result, uint8_t *buf, size_t bytes) {
  assert((buf != NULL) == (result == IOCP__IO_OK && bytes > 0));
  if (c->tls != NULL) {
    iocp__mutex_lock(&c->lock);
    iocp__tls_recv_done_locked(c, result, buf, bytes);
    deliver_locked(c);
    iocp__conn_unref(c);
    return;
  }
  if (buf != NULL) iocp__stat_add(c->server, IOCP__STAT_BYTES_IN, (int64_t)bytes);
  iocp__mutex_lock(&c->lock);
  assert(c->recv_busy && !c->ev_data && c->rbuf == NULL); /* one receive at a time */
  c->recv_busy = 0;
  if (c->closing) {
    iocp__buf_put(c->server, buf); /* torn down meanwhile: dropped */
  } else if (result != IOCP__IO_OK) {
    teardown_locked(c, IOCP_REASON_RESET, 1);
  } else if (bytes == 0) {
    c->active_tick = iocp__timer_tick(c->server);
    c->peer_fin = 1;
    c->ev_peer_closed = 1;
    if (c->fin_sent) teardown_locked(c, IOCP_REASON_PEER_CLOSED, 0);
  } else {
    c->active_tick = iocp__timer_tick(c->server);
    c->rbuf = buf; /* the event holds it until on_data returns */
    c->ev_data = 1;
    c->ev_data_len = bytes;
  }
  deliver_locked(c);
  iocp__conn_unref(c);
}

void iocp__conn_sent_locked(iocp__conn *c, size_t bytes) {
  assert(iocp__mutex_held(&c->lock));
  assert(bytes <= c->sendq.queued); /* an engine never reports more than it was given */
  if (bytes > c->sendq.queued) bytes = (size_t)c->sendq.queued;
  iocp__sendq_consume(&c->sendq, bytes);
  if (bytes > 0) c->active_tick = iocp__timer_tick(c->server);
  iocp__stat_add(c->server, IOCP__STAT_BYTES_OUT, (int64_t)bytes);
  iocp__stat_add(c->server, IOCP__STAT_QUEUED, -(int64_t)bytes);
  if (c->server->want_sent) c->ev_sent += bytes;
  if (c->drain_armed && c->sendq.queued <= c->drain_mark) {
    c->drain_armed = 0;
    c->ev_drain = 1;
  }
}

void iocp__conn_send_done(iocp__conn *c, int result, size_t bytes) {
  iocp__mutex_lock(&c->lock);
  assert(c->send_busy);
  if (c->tls != NULL) {
    iocp__tls_send_done_locked(c, result, bytes);
  } else {
    c->send_busy = 0;
    if (c->closing) {
      sendq_drop(c);
    } else if (result != IOCP__IO_OK) {
      teardown_locked(c, IOCP_REASON_RESET, 1);
    } else {
      iocp__conn_sent_locked(c, bytes);
      start_send_locked(c);
    }
  }
  deliver_locked(c);
  iocp__conn_unref(c);
}

void iocp__conn_run(iocp__conn *c) {
  iocp__mutex_lock(&c->lock);
  run_locked(c);
  iocp__conn_unref(c);
}

void iocp__conn_destroy_one(iocp__conn *c, void *arg) {
  (void)arg;
  iocp__mutex_lock(&c->lock);
  teardown_locked(c, IOCP_REASON_DESTROY, 1);
  kick_locked(c);
  iocp__mutex_unlock(&c->lock);
}

/* ---- The per-connection API ----------------------------------------------------- */


/* Inside a callback of connection `id` (an iocp_send() from on_data, say),
 * the connection being delivered: no table lookup, and no reference to take,
 * as the delivering worker holds one until the callback returns. NULL
 * elsewhere, and once the id has left the table (it is stale then). Only
 * the delivering thread removes the id, so `delisted` needs no lock here. */
static iocp__conn *own_conn(const iocp_server *s, iocp_conn_id id) {
  iocp__conn *c = current;
  return c != NULL && c->server == s && c->id == id && !c->delisted ? c : NULL;
}

/* Looks the id up and runs op with the connection's lock held; then makes
 * sure a worker delivers whatever the op made due. A caller that found the
 * id before its last event was taken may get the lock only after: the
 * connection is stale then, as if the lookup had come later, and op must
 * not run (a context stored now would never be handed back). */
int iocp__conn_with(iocp_server *s, iocp_conn_id id, iocp__conn_op op, void *arg) {
  iocp__conn *c, *own;
  int rc, gate;
  if (s == NULL) return IOCP_EINVAL;
  gate = iocp__server_enter(s);
  if (gate < 0) return gate;
  own = own_conn(s, id);
  c = own != NULL ? own : iocp__table_get(&s->table, id);
  if (c == NULL) {
    rc = IOCP_ENOTFOUND;
  } else {
    iocp__mutex_lock(&c->lock);
    if (c->ended) {
      rc = IOCP_ENOTFOUND;
    } else {
      rc = op(c, arg);
      kick_locked(c);
    }
    iocp__mutex_unlock(&c->lock);
    if (own == NULL) iocp__conn_unref(c);
  }
  if (gate) iocp__server_leave(s);
  return rc;
}

static int with_conn(iocp_server *s, iocp_conn_id id, iocp__conn_op op, void *arg) {
  return iocp__conn_with(s, id, op, arg);
}

typedef struct send_args {
  const void *data;
  size_t len;
} send_args;

/* With nothing queued or in flight, the bytes go to the socket at once, as
 * uv_try_write does: no copy and no completion for what it takes. Advances
 * *a past those bytes; the rest is queued by the caller. */
static int try_send_locked(iocp__conn *c, send_args *a) {
  assert(iocp__mutex_held(&c->lock));
  long long n = iocp__eng_try_send(c, a->data, a->len);
  if (n < 0) {
    /* As a failed send operation would end it: the bytes are taken, the
     * connection ends with on_disconnect(RESET). */
    teardown_locked(c, IOCP_REASON_RESET, 1);
    a->len = 0;
    return IOCP_OK;
  }
  if (n == 0) return IOCP_OK;
  assert((unsigned long long)n <= a->len);
  a->data = (const uint8_t *)a->data + n;
  a->len -= (size_t)n;
  c->active_tick = iocp__timer_tick(c->server);
  iocp__stat_add(c->server, IOCP__STAT_BYTES_OUT, n);
  if (c->server->want_sent) c->ev_sent += (uint64_t)n;
  return IOCP_OK;
}

static int send_locked(iocp__conn *c, void *arg) {
  assert(iocp__mutex_held(&c->lock));
  send_args *a = arg;
  int rc;
  /* After iocp_shutdown() the answer stays ESHUTDOWN, even once the
   * connection has ended meanwhile: that is the caller's own doing. */
  if (c->shut_req) return IOCP_ESHUTDOWN;
  if (c->closing) return IOCP_ECLOSED;
  if (a->len > c->server->cfg.max_send_queue - c->sendq.queued) {
    /* on_drain tells when to try again (once bytes are queued to go out). */
    if (c->server->want_drain && c->sendq.queued > 0) c->drain_armed = 1;
    return IOCP_EQUEUEFULL;
  }
  if (c->sendq.queued == 0 && !c->send_busy && c->kept && a->len > 0 && c->tls == NULL) {
    rc = try_send_locked(c, a);
    if (rc != IOCP_OK || a->len == 0) return rc;
  }
  rc = iocp__sendq_push(&c->sendq, a->data, a->len);
  if (rc != IOCP_OK) return rc;
  iocp__stat_add(c->server, IOCP__STAT_QUEUED, (int64_t)a->len);
  if (c->server->want_drain && c->sendq.queued > c->drain_mark) c->drain_armed = 1;
  start_send_locked(c);
  return rc;
}

static int shutdown_locked(iocp__conn *c, void *arg) {
  assert(iocp__mutex_held(&c->lock));
  (void)arg;
  if (c->refuse_req) return IOCP_ECLOSED;
  /* Asked before: a no-op, also once the connection is ending (its FIN and
   * the peer's may have crossed on another thread meanwhile). */
  if (c->shut_req) return IOCP_OK;
  if (c->closing) return IOCP_ECLOSED;
  c->shut_req = 1;
  start_send_locked(c);
  return IOCP_OK;
}

static int close_locked(iocp__conn *c, void *arg) {
  assert(iocp__mutex_held(&c->lock));
  (void)arg;
  if (c->refuse_req) return IOCP_ECLOSED;
  if (c->accept_out && iocp__evq_is_holder(c->server)) {
    /* The drainer handling ACCEPTED ("inside on_connect") refuses: at the
     * release, out of the table first, then the reset, as with
     * on_connect's refusal. Also when iocp_stop() has already begun closing
     * it: a refused id gets no other event, as in callback mode. From any
     * other thread it is a close, as a close racing on_connect is. (Lock
     * order: connection, then server.) */
    c->refuse_req = 1;
    return IOCP_OK;
  }
  if (c->closing) return IOCP_ECLOSED;
  teardown_locked(c, IOCP_REASON_LOCAL_CLOSE, 1);
  return IOCP_OK;
}

static int queued_locked(iocp__conn *c, void *arg) {
  assert(iocp__mutex_held(&c->lock));
  *(uint64_t *)arg = c->sendq.queued;
  return IOCP_OK;
}

int IOCP_CALL iocp_send(iocp_server *s, iocp_conn_id id, const void *data, size_t len) {
  send_args a;
  if (data == NULL && len > 0) return IOCP_EINVAL;
  a.data = data;
  a.len = len;
  return with_conn(s, id, send_locked, &a);
}

int IOCP_CALL iocp_shutdown(iocp_server *s, iocp_conn_id id) {
  return with_conn(s, id, shutdown_locked, NULL);
}

int IOCP_CALL iocp_close(iocp_server *s, iocp_conn_id id) {
  return with_conn(s, id, close_locked, NULL);
}

static int local_address_locked(iocp__conn *c, void *arg) {
  assert(iocp__mutex_held(&c->lock));
  if (c->closing) return IOCP_ECLOSED;
  return iocp__eng_local_address(c, (struct sockaddr_storage *)arg);
}

int IOCP_CALL iocp_local_address(iocp_server *s, iocp_conn_id id, char *text, size_t cap,
                                 uint16_t *port) {
  struct sockaddr_storage addr;
  uint16_t p;
  int rc;
  if (text == NULL || cap < IOCP_ADDRSTRLEN) return IOCP_EINVAL;
  memset(&addr, 0, sizeof addr);
  rc = with_conn(s, id, local_address_locked, &addr);
  if (rc < 0) return rc;
  iocp__address_format((const struct sockaddr *)&addr, text, cap, &p);
  if (port != NULL) *port = p;
  return IOCP_OK;
}

int IOCP_CALL iocp_queued(iocp_server *s, iocp_conn_id id, uint64_t *queued) {
  if (queued == NULL) return IOCP_EINVAL;
  return with_conn(s, id, queued_locked, queued);
}
