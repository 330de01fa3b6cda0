/* iocp_stop_graceful(): stop accepting, half-close every connection after
 * its queued bytes, wait for the peers to finish until the deadline, then
 * close the rest abortively. Connections end through the usual state
 * machine, so each still gets exactly one on_disconnect (in queue mode one
 * DISCONNECTED event, and a connection is freed once its batch is
 * released, so the wait for `alive` covers the drainer's part too). */
#include "internal.h"

static void half_close_one(iocp__conn *c, void *arg) {
  (void)arg;
  iocp__mutex_lock(&c->lock);
  if (c->closing || c->shut_req) {
    /* ending, or ending gracefully already */
  } else if (c->tls != NULL && !c->tls->hs_done) {
    /* A handshake in progress never reached the program: it just ends. */
    iocp__conn_teardown_locked(c, IOCP_REASON_LOCAL_CLOSE, 1);
  } else if (!c->kept) {
    /* on_connect has not returned (or ACCEPTED is not released): what it
     * sends still goes out, then the FIN, once it keeps the connection. */
    c->stop_fin = 1;
  } else {
    c->shut_req = 1;
    iocp__conn_start_send_locked(c);
  }
  iocp__conn_kick_locked(c);
  iocp__mutex_unlock(&c->lock);
}

static void abort_one(iocp__conn *c, void *arg) {
  int *aborted = arg;
  iocp__mutex_lock(&c->lock);
  if (!c->closing) {
    iocp__conn_teardown_locked(c, IOCP_REASON_STOP_DEADLINE, 1);
    ++*aborted;
  }
  iocp__conn_kick_locked(c);
  iocp__mutex_unlock(&c->lock);
}

/* Inside the destroy gate: a destroy racing it waits for its deadline at
 * most (bounded: timeout_ms), and a call after destroy gets IOCP_ECLOSED. */
static int stop_inside(iocp_server *s, uint32_t timeout_ms) {
  uint64_t deadline;
  int aborted = 0;

  iocp__mutex_lock(&s->lock);
  if (s->stopping || s->destroying) {
    iocp__mutex_unlock(&s->lock);
    return IOCP_ESTOPPED;
  }
  s->stopping = 1;
  iocp__evq_wake_locked(s); /* queue mode: a waiter may be finished */
  iocp__mutex_unlock(&s->lock);

  iocp__eng_stop_accepting(s);
  /* Closed: a socket accepted meanwhile is dropped before anyone sees it. */
  iocp__table_close(&s->table, half_close_one, NULL);

  deadline = iocp__now_ms() + timeout_ms;
  iocp__mutex_lock(&s->lock);
  for (;;) {
    uint64_t now = iocp__now_ms();
    if (iocp__ref_add(&s->alive, 0) == 0 || now >= deadline) break;
    iocp__cond_wait_ms(&s->cond, &s->lock, (uint32_t)(deadline - now));
  }
  iocp__mutex_unlock(&s->lock);

  iocp__table_each(&s->table, abort_one, &aborted);
  /* Every connection is closing; it is gone once its last event was
   * delivered. In queue mode that takes a drainer: once iocp_destroy() has
   * closed the queue there is none, and destroy itself releases what is
   * left (after this call leaves the gate), so waiting would never end. */
  iocp__mutex_lock(&s->lock);
  while (iocp__ref_add(&s->alive, 0) != 0 && !(s->queue_mode && s->evq.discard))
    iocp__cond_wait(&s->cond, &s->lock);
  iocp__mutex_unlock(&s->lock);
  return aborted;
}

int IOCP_CALL iocp_stop_graceful(iocp_server *s, uint32_t timeout_ms) {
  int rc, gate;
  if (s == NULL || timeout_ms > IOCP_MAX_TIMEOUT_MS) return IOCP_EINVAL;
  if (iocp__on_worker(s) || iocp__evq_serving_here(s)) return IOCP_EINCALLBACK;
  gate = iocp__server_enter(s);
  if (gate < 0) return gate;
  /* Queue mode: the events it waits for go through the drainer's hands. */
  if (s->queue_mode && iocp__evq_is_holder(s))
    rc = IOCP_EINCALLBACK;
  else
    rc = stop_inside(s, timeout_ms);
  if (gate) iocp__server_leave(s);
  return rc;
}
