/* The idle timer: one thread per server, started by the first idle timeout
 * (the server's idle_timeout_ms or an iocp_set_idle_timeout()), that sweeps
 * the connection table every `sweep_ms`, an eighth of the shortest timeout
 * in use (5 ms to 1 s).
 *
 * A connection pays 8 bytes (its timeout and the tick of its last traffic)
 * and, on each completed receive or send, one store of the server's coarse
 * tick, which the sweep refreshes: no timer object per connection, no clock
 * read on the hot path. As a recorded tick may be one period old, a
 * connection ends only once it has been silent for its timeout plus one
 * period: never early, at most a quarter of the timeout late. */
#include "internal.h"

#define IOCP__SWEEP_MIN_MS 5
#define IOCP__SWEEP_MAX_MS 1000

typedef struct sweep_args {
  uint32_t tick;
  uint32_t slack;
} sweep_args;

static void sweep_one(iocp__conn *c, void *arg) {
  const sweep_args *a = arg;
  iocp__mutex_lock(&c->lock);
  /* Not yet kept (on_connect runs), closing, or paused: not idle. */
  if (c->idle_ms != 0 && c->kept && !c->closing && !c->paused &&
      a->tick - c->active_tick >= c->idle_ms + a->slack) {
    iocp__conn_teardown_locked(c, IOCP_REASON_IDLE_TIMEOUT, 1);
    iocp__conn_kick_locked(c);
  } else if (c->tls != NULL) {
    iocp__tls_sweep_locked(c, a->tick, a->slack); /* a handshake's time limit */
  }
  iocp__mutex_unlock(&c->lock);
}

static uint32_t refresh_tick(iocp_server *s) {
  uint32_t tick = (uint32_t)(iocp__now_ms() - s->t0);
  iocp__store32(&s->tick, tick);
  return tick;
}

static IOCP__THREAD_FN(timer_main, arg) {
  iocp_server *s = arg;
  iocp__mutex_lock(&s->lock);
  while (!s->timer_quit) {
    sweep_args a;
    iocp__cond_wait_ms(&s->timer_cond, &s->lock, s->sweep_ms);
    if (s->timer_quit) break;
    a.slack = s->sweep_ms;
    iocp__mutex_unlock(&s->lock);
    /* An early wake-up (a shorter timeout came in) only sweeps early. */
    a.tick = refresh_tick(s);
    iocp__table_each(&s->table, sweep_one, &a);
    iocp__mutex_lock(&s->lock);
  }
  iocp__mutex_unlock(&s->lock);
  IOCP__THREAD_RETURN;
}

int iocp__timer_need(iocp_server *s, uint32_t timeout_ms) {
  uint32_t period = timeout_ms / 8;
  int rc = IOCP_OK;
  if (period < IOCP__SWEEP_MIN_MS) period = IOCP__SWEEP_MIN_MS;
  if (period > IOCP__SWEEP_MAX_MS) period = IOCP__SWEEP_MAX_MS;
  iocp__mutex_lock(&s->lock);
  if (s->destroying) {
    rc = IOCP_ESTOPPED;
  } else if (!s->timer_running) {
    s->sweep_ms = period;
    s->timer_quit = 0;
    refresh_tick(s);
    rc = iocp__thread_start(&s->timer_thread, timer_main, s);
    if (rc == IOCP_OK) s->timer_running = 1;
  } else if (period < s->sweep_ms) {
    s->sweep_ms = period;
    refresh_tick(s);
    iocp__cond_broadcast(&s->timer_cond);
  }
  iocp__mutex_unlock(&s->lock);
  return rc;
}

void iocp__timer_stop(iocp_server *s) {
  int running;
  iocp__mutex_lock(&s->lock);
  running = s->timer_running;
  s->timer_quit = 1;
  iocp__cond_broadcast(&s->timer_cond);
  iocp__mutex_unlock(&s->lock);
  if (!running) return;
  iocp__thread_join(s->timer_thread);
  iocp__mutex_lock(&s->lock);
  s->timer_running = 0;
  iocp__mutex_unlock(&s->lock);
}
