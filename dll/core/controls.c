/* The per-connection controls of 1.1: a caller's context pointer, pausing
 * and resuming receives, the drain mark and the idle timeout. Each is one
 * small step of the state machine in conn.c, taken under the connection's
 * lock through iocp__conn_with(). */
#include "internal.h"

/* ---- Context ------------------------------------------------------------------ */

static int set_context_locked(iocp__conn *c, void *arg) {
  assert(iocp__mutex_held(&c->lock));
  c->context = arg;
  return IOCP_OK;
}

static int get_context_locked(iocp__conn *c, void *arg) {
  assert(iocp__mutex_held(&c->lock));
  *(void **)arg = c->context;
  return IOCP_OK;
}

int IOCP_CALL iocp_set_context(iocp_server *s, iocp_conn_id id, void *context) {
  return iocp__conn_with(s, id, set_context_locked, context);
}

int IOCP_CALL iocp_get_context(iocp_server *s, iocp_conn_id id, void **context) {
  iocp__conn *cur = iocp__conn_current();
  int rc;
  if (context == NULL) return IOCP_EINVAL;
  *context = NULL;
  if (s == NULL) return IOCP_EINVAL;
  /* Inside the connection's own callback (on_disconnect too, when the id
   * is already out of the table): no lookup. */
  if (cur != NULL && cur->server == s && cur->id == id) {
    iocp__mutex_lock(&cur->lock);
    rc = get_context_locked(cur, context);
    iocp__mutex_unlock(&cur->lock);
    return rc;
  }
  rc = iocp__conn_with(s, id, get_context_locked, context);
  /* Queue mode: a DISCONNECTED event not yet released is its on_disconnect. */
  if (rc == IOCP_ENOTFOUND && s->queue_mode) rc = iocp__evq_batch_context(s, id, context);
  return rc;
}

/* ---- Pause and resume ---------------------------------------------------------- */

static int pause_locked(iocp__conn *c, void *arg) {
  assert(iocp__mutex_held(&c->lock));
  (void)arg;
  if (c->closing) return IOCP_ECLOSED;
  c->paused = 1;
  return IOCP_OK;
}

static int resume_locked(iocp__conn *c, void *arg) {
  assert(iocp__mutex_held(&c->lock));
  (void)arg;
  if (c->closing) return IOCP_ECLOSED;
  if (!c->paused) return IOCP_OK;
  c->paused = 0;
  c->active_tick = iocp__timer_tick(c->server); /* the idle clock restarts */
  iocp__conn_start_recv_locked(c);
  return IOCP_OK;
}

int IOCP_CALL iocp_pause_recv(iocp_server *s, iocp_conn_id id) {
  return iocp__conn_with(s, id, pause_locked, NULL);
}

int IOCP_CALL iocp_resume_recv(iocp_server *s, iocp_conn_id id) {
  return iocp__conn_with(s, id, resume_locked, NULL);
}

/* ---- Drain mark ---------------------------------------------------------------- */

static int drain_mark_locked(iocp__conn *c, void *arg) {
  assert(iocp__mutex_held(&c->lock));
  uint64_t mark = *(const uint64_t *)arg;
  if (c->closing) return IOCP_ECLOSED;
  if (mark >= c->server->cfg.max_send_queue) return IOCP_EINVAL;
  c->drain_mark = mark;
  if (c->server->want_drain && c->sendq.queued > mark) c->drain_armed = 1;
  return IOCP_OK;
}

int IOCP_CALL iocp_set_drain_mark(iocp_server *s, iocp_conn_id id, uint64_t mark) {
  return iocp__conn_with(s, id, drain_mark_locked, &mark);
}

/* ---- Idle timeout ---------------------------------------------------------------- */

static int idle_timeout_locked(iocp__conn *c, void *arg) {
  assert(iocp__mutex_held(&c->lock));
  if (c->closing) return IOCP_ECLOSED;
  c->idle_ms = *(const uint32_t *)arg;
  c->active_tick = iocp__timer_tick(c->server);
  return IOCP_OK;
}

int IOCP_CALL iocp_set_idle_timeout(iocp_server *s, iocp_conn_id id, uint32_t timeout_ms) {
  int rc;
  if (s == NULL || timeout_ms > IOCP_MAX_TIMEOUT_MS) return IOCP_EINVAL;
  if (timeout_ms != 0) {
    /* The timer first, so the connection's clock reads a running tick. */
    rc = iocp__timer_need(s, timeout_ms);
    if (rc != IOCP_OK) return rc;
  }
  return iocp__conn_with(s, id, idle_timeout_locked, &timeout_ms);
}

uint64_t IOCP_CALL iocp_refused_count(iocp_server *s) {
  uint64_t n;
  int gate;
  if (s == NULL || (gate = iocp__server_enter(s)) < 0) return 0;
  iocp__mutex_lock(&s->lock);
  n = s->refused;
  iocp__mutex_unlock(&s->lock);
  if (gate) iocp__server_leave(s);
  return n;
}
