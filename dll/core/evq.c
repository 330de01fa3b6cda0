/* The event queue of queue mode (IOCP_DELIVERY_QUEUE): iocp_wait(),
 * iocp_wake(), and the drain of iocp_destroy().
 *
 * conn.c hands each connection's next event here instead of calling back,
 * with `running` left set, so a connection has at most one event queued or
 * in a batch: the queue is an intrusive list through the connections
 * (nothing is allocated, nothing can fail) and its length is bounded by the
 * number of connections. A batch is the list of connections taken by one
 * iocp_wait(); the next iocp_wait() (or iocp_destroy()) releases it, which
 * finishes each event as a returning callback would (iocp__conn_released)
 * and may queue the connection's next event. Releases run with no lock held.
 *
 * Everything here is under the server's lock; the waiter sleeps on the
 * server's condition variable, which conn.c also broadcasts (under the lock)
 * when the last connection is freed. */
#include "internal.h"

#include <string.h>

_Static_assert(sizeof(iocp_event) == 32, "iocp_event is 32 bytes everywhere");
_Static_assert(offsetof(iocp_event, id) == 8 && offsetof(iocp_event, data) == 16 &&
                   offsetof(iocp_event, len) == 24,
               "iocp_event layout");

void iocp__evq_push(iocp__conn *c) {
  iocp_server *s = c->server;
  iocp__evq *q = &s->evq;
  c->evq_next = NULL;
  iocp__mutex_lock(&s->lock);
  if (q->tail != NULL)
    q->tail->evq_next = c;
  else
    q->head = c;
  q->tail = c;
  if (q->sleepers != 0) iocp__cond_broadcast(&s->cond);
  iocp__mutex_unlock(&s->lock);
}

/* Releases a list of connections (a batch, or queued events being
 * discarded) in order. No lock held. */
static void release_list(iocp__conn *c) {
  while (c != NULL) {
    iocp__conn *next = c->evq_next;
    c->evq_next = NULL;
    iocp__conn_released(c);
    c = next;
  }
}

/* Nothing more will ever be queued: stopped, and every connection freed. */
static int finished_locked(iocp_server *s) {
  return s->evq.discard ||
         (s->stopped && iocp__ref_add(&s->alive, 0) == 0 && s->evq.head == NULL);
}

static void fill(iocp_event *ev, const iocp__conn *c) {
  ev->type = c->ev.type;
  ev->value = c->ev.value;
  ev->id = c->id;
  ev->data = (uint64_t)(uintptr_t)c->ev.data;
  ev->len = c->ev.len;
}

int IOCP_CALL iocp_wait(iocp_server *s, iocp_event *events, uint32_t max, int32_t timeout_ms) {
  iocp__evq *q;
  iocp__conn *batch, **tailp;
  uint64_t deadline = 0;
  uint32_t n = 0;
  int rc;

  if (s == NULL || events == NULL || max == 0) return IOCP_EINVAL;
  if (!s->queue_mode) return IOCP_EMODE;
  q = &s->evq;

  iocp__mutex_lock(&s->lock);
  if (q->busy) {
    iocp__mutex_unlock(&s->lock);
    return IOCP_EBUSY;
  }
  if (q->discard) {
    iocp__mutex_unlock(&s->lock);
    return IOCP_ECLOSED;
  }
  q->busy = 1;
  batch = q->batch;
  q->batch = NULL;
  iocp__mutex_unlock(&s->lock);

  release_list(batch); /* may queue the next events of these connections */

  if (timeout_ms > 0) deadline = iocp__now_ms() + (uint64_t)timeout_ms;
  iocp__mutex_lock(&s->lock);
  while (q->head == NULL && !q->wake && !finished_locked(s) && timeout_ms != 0) {
    q->sleepers++;
    if (timeout_ms < 0) {
      iocp__cond_wait(&s->cond, &s->lock);
    } else {
      uint64_t now = iocp__now_ms();
      if (now >= deadline) {
        q->sleepers--;
        break;
      }
      iocp__cond_wait_ms(&s->cond, &s->lock, (uint32_t)(deadline - now));
    }
    q->sleepers--;
  }
  q->wake = 0;
  if (q->discard) {
    rc = IOCP_ECLOSED;
  } else {
    tailp = &q->batch;
    while (n < max && q->head != NULL) {
      iocp__conn *c = q->head;
      q->head = c->evq_next;
      if (q->head == NULL) q->tail = NULL;
      c->evq_next = NULL;
      fill(&events[n++], c);
      *tailp = c;
      tailp = &c->evq_next;
    }
    rc = n == 0 && finished_locked(s) ? IOCP_ECLOSED : (int)n;
  }
  q->busy = 0;
  if (q->sleepers != 0) iocp__cond_broadcast(&s->cond); /* iocp_destroy waits for busy */
  iocp__mutex_unlock(&s->lock);
  return rc;
}

int IOCP_CALL iocp_wake(iocp_server *s) {
  if (s == NULL) return IOCP_EINVAL;
  if (!s->queue_mode) return IOCP_EMODE;
  iocp__mutex_lock(&s->lock);
  s->evq.wake = 1;
  if (s->evq.sleepers != 0) iocp__cond_broadcast(&s->cond);
  iocp__mutex_unlock(&s->lock);
  return IOCP_OK;
}

void iocp__evq_drain_all(iocp_server *s) {
  iocp__evq *q = &s->evq;
  iocp__mutex_lock(&s->lock);
  q->discard = 1;
  /* A thread inside iocp_wait() leaves with IOCP_ECLOSED. */
  while (q->busy) {
    q->sleepers++;
    iocp__cond_broadcast(&s->cond);
    iocp__cond_wait(&s->cond, &s->lock);
    q->sleepers--;
  }
  while (iocp__ref_add(&s->alive, 0) != 0) {
    iocp__conn *list = q->batch;
    if (list != NULL) {
      q->batch = NULL;
    } else if (q->head != NULL) {
      list = q->head;
      q->head = q->tail = NULL;
    }
    if (list == NULL) {
      q->sleepers++;
      iocp__cond_wait(&s->cond, &s->lock);
      q->sleepers--;
      continue;
    }
    iocp__mutex_unlock(&s->lock);
    release_list(list);
    iocp__mutex_lock(&s->lock);
  }
  iocp__mutex_unlock(&s->lock);
}
