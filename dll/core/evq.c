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
 * Workers push without a lock (the inbox, a list they prepend to with a
 * compare-and-swap), and wake the drainer only when it sleeps: a lock per
 * event was contended between the two sides, and cost each echo two futex
 * calls. Everything else here is under the server's lock; the waiter sleeps
 * on the server's condition variable, which conn.c also broadcasts (under
 * the lock) when the last connection is freed. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(iocp_event) == 40, "iocp_event is 40 bytes everywhere");
_Static_assert(offsetof(iocp_event, id) == 8 && offsetof(iocp_event, data) == 16 &&
                   offsetof(iocp_event, len) == 24 && offsetof(iocp_event, context) == 32,
               "iocp_event layout");

/* Its address tells threads apart (the holder of the current batch). */
static IOCP__TLS char thread_marker;

/* A worker's pushes wake the drainer once, when the worker is done with the
 * completions it took in one go (iocp__worker_flush, before it waits
 * again): waking it at the first push made it take one or two events, go
 * back to sleep and be woken again a few microseconds later, a hand-off of
 * two context switches every three echoes on a busy server. */
static IOCP__TLS iocp_server *held_wake;
/* The server whose engine this thread serves inside iocp_wait(): what it
 * pushes meanwhile it takes itself when the engine returns. */
static IOCP__TLS iocp_server *serving;
/* The server this thread drains (inside iocp_wait()): what happens
 * meanwhile needs no signal of the wait handle, the drainer looks anyway. */
static IOCP__TLS iocp_server *draining;

/* The server whose event queue q is (for the asserts: inline, so that a
 * build with NDEBUG does not warn of it unused). */
static inline iocp_server *evq_server(iocp__evq *q) {
  return (iocp_server *)(void *)((char *)q - offsetof(iocp_server, evq));
}

int iocp__evq_serving_here(const iocp_server *s) { return s != NULL && serving == s; }

/* Makes the wait handle ready (iocp_wait_handle()), once until the drainer
 * clears it: the pusher's half of the handshake with wait_inside(), which
 * clears `signalled` before it looks at the inbox. */
static void signal_handle(iocp_server *s) {
  iocp__evq *q = &s->evq;
  if (draining == s || !iocp__load32(&q->watched)) return;
  if (!iocp__load32_fenced(&q->signalled) && !iocp__exchange32(&q->signalled, 1))
    iocp__eng_wait_handle_signal(s);
}

void iocp__evq_wake_locked(iocp_server *s) {
  assert(iocp__mutex_held(&s->lock));
  iocp__cond_broadcast(&s->cond);
  if (s->evq.serving) iocp__eng_caller_wake(s);
  signal_handle(s);
}

/* The other half of sleep_locked's handshake: a sleeping drainer is woken
 * (and a loop watching the wait handle). */
static void wake_drainer(iocp_server *s) {
  iocp__evq *q = &s->evq;
  signal_handle(s);
  if (iocp__load32_fenced(&q->waiting) && iocp__exchange32(&q->waiting, 0)) {
    iocp__mutex_lock(&s->lock);
    iocp__evq_wake_locked(s);
    iocp__mutex_unlock(&s->lock);
  }
}

void iocp__evq_push(iocp__conn *c) {
  iocp_server *s = c->server; /* c may be released and freed once pushed */
  iocp__evq *q = &s->evq;
  void *top;
  do {
    top = iocp__ptr_load(&q->inbox);
    c->evq_next = (iocp__conn *)top;
  } while (!iocp__ptr_cas(&q->inbox, top, c));
  if (iocp__on_worker(s)) {
    held_wake = s; /* iocp__worker_flush, once per batch of completions */
    return;
  }
  if (serving != s) wake_drainer(s);
}

void iocp__worker_flush(void) {
  iocp_server *s = held_wake;
  if (s == NULL) return;
  held_wake = NULL;
  wake_drainer(s);
}

/* Moves what workers pushed to the queue's tail, oldest first; lock held. */
static void absorb_locked(iocp__evq *q) {
  assert(iocp__mutex_held(&evq_server(q)->lock));
  iocp__conn *c = (iocp__conn *)iocp__ptr_exchange(&q->inbox, NULL), *first = NULL, *last = c;
  if (c == NULL) return;
  while (c != NULL) { /* newest first: reverse it */
    iocp__conn *next = c->evq_next;
    c->evq_next = first;
    first = c;
    c = next;
  }
  if (q->tail != NULL)
    q->tail->evq_next = first;
  else
    q->head = first;
  q->tail = last;
}

/* Sleeps on the server's cond until woken or ms pass (ms < 0: no limit),
 * unless a push came first, or serves the engine meanwhile (may_serve: in
 * iocp_wait()); lock held. Marks `waiting` before the last look
 * at the inbox, and a pusher writes the inbox before it looks at `waiting`:
 * one of the two sees the other, so no push is slept through. The mark
 * stays after a wake-up for another reason (a pusher then wakes nobody,
 * once): clearing it here could hide another sleeper. */
static void sleep_locked(iocp_server *s, int64_t ms, int may_serve) {
  assert(iocp__mutex_held(&s->lock));
  iocp__evq *q = &s->evq;
  q->sleepers++;
  (void)iocp__exchange32(&q->waiting, 1);
  if (iocp__ptr_load(&q->inbox) != NULL) {
    /* a push came first */
  } else if (may_serve && !q->no_serve) {
    /* Serve the engine meanwhile (engine.h): the events it makes need no
     * hand-off. Wakers see `serving` under the lock and end the wait, also
     * one that comes before it begins. The caller looks at everything
     * again afterwards: the lock was let go. */
    int served;
    q->serving = 1;
    iocp__mutex_unlock(&s->lock);
    serving = s;
    served = iocp__eng_caller_serve(s, ms < 0 ? -1 : (int32_t)ms);
    serving = NULL;
    iocp__mutex_lock(&s->lock);
    q->serving = 0;
    q->no_serve = !served;
  } else if (ms < 0) {
    iocp__cond_wait(&s->cond, &s->lock);
  } else {
    iocp__cond_wait_ms(&s->cond, &s->lock, (uint32_t)ms);
  }
  q->sleepers--;
  absorb_locked(q);
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

/* Nothing more will ever be queued: stopped (iocp_stop() or
 * iocp_stop_graceful()), and every connection freed and its events taken. */
static int finished_locked(iocp_server *s) {
  assert(iocp__mutex_held(&s->lock));
  return s->evq.discard || ((s->stopped || s->stopping) && iocp__ref_add(&s->alive, 0) == 0 &&
                            s->evq.head == NULL && s->evq.log_queued == 0);
}

static void fill(iocp_event *ev, const iocp__conn *c) {
  ev->type = c->ev.type;
  ev->value = c->ev.value;
  ev->id = c->id;
  ev->data = (uint64_t)(uintptr_t)c->ev.data;
  ev->len = c->ev.len;
  ev->context = (uint64_t)(uintptr_t)c->ev.context;
}

/* ---- LOG events ------------------------------------------------------------ */

static void log_put_locked(iocp__evq *q, int level, int code, const char *text) {
  assert(iocp__mutex_held(&evq_server(q)->lock));
  iocp__logrec *r = &q->logs[(q->log_first + q->log_taken + q->log_queued) % IOCP_LOG_QUEUE_MAX];
  size_t len = strlen(text);
  if (len >= sizeof(r->text)) len = sizeof(r->text) - 1;
  r->level = level;
  r->code = code;
  memcpy(r->text, text, len);
  r->text[len] = '\0';
  q->log_queued++;
}

void iocp__evq_log(iocp_server *s, int level, int code, const char *text) {
  iocp__evq *q = &s->evq;
  uint32_t room;
  iocp__mutex_lock(&s->lock);
  room = IOCP_LOG_QUEUE_MAX - q->log_taken - q->log_queued;
  if (q->discard) {
    /* iocp_destroy() runs: nobody will take it */
  } else if (room < (q->log_lost != 0 ? 2u : 1u)) {
    q->log_lost++;
  } else {
    if (q->log_lost != 0) {
      char note[64];
      snprintf(note, sizeof(note), "%llu log messages lost: the queue was full",
               (unsigned long long)q->log_lost);
      log_put_locked(q, IOCP_LOG_WARN, 0, note);
      q->log_lost = 0;
    }
    log_put_locked(q, level, code, text);
    if (q->sleepers != 0)
      iocp__evq_wake_locked(s);
    else
      signal_handle(s);
  }
  iocp__mutex_unlock(&s->lock);
}

/* Moves queued LOG events into the batch, oldest first; lock held. */
static uint32_t take_logs_locked(iocp__evq *q, iocp_event *events, uint32_t max) {
  assert(iocp__mutex_held(&evq_server(q)->lock));
  uint32_t n = 0;
  while (n < max && q->log_queued != 0) {
    const iocp__logrec *r = &q->logs[(q->log_first + q->log_taken) % IOCP_LOG_QUEUE_MAX];
    iocp_event *ev = &events[n++];
    ev->type = IOCP_EVENT_LOG;
    ev->value = r->level;
    ev->id = 0;
    ev->data = (uint64_t)(uintptr_t)r->text;
    ev->len = strlen(r->text);
    ev->context = (uint64_t)(int64_t)r->code;
    q->log_taken++;
    q->log_queued--;
  }
  return n;
}

int iocp__evq_batch_context(iocp_server *s, iocp_conn_id id, void **context) {
  const iocp__conn *c;
  int rc = IOCP_ENOTFOUND, gate = iocp__server_enter(s);
  if (gate < 0) return gate;
  iocp__mutex_lock(&s->lock);
  /* Only the thread that holds the batch, as only on_disconnect's own
   * thread skips the lookup: for everyone else the id is already stale. */
  c = s->evq.holder == &thread_marker ? s->evq.batch : NULL;
  for (; c != NULL; c = c->evq_next) {
    if (c->id == id) {
      *context = c->ev.context; /* written before the push, under this lock since */
      rc = IOCP_OK;
      break;
    }
  }
  iocp__mutex_unlock(&s->lock);
  if (gate) iocp__server_leave(s);
  return rc;
}

int iocp__evq_is_holder(iocp_server *s) {
  int holder;
  iocp__mutex_lock(&s->lock);
  holder = s->evq.holder == &thread_marker;
  iocp__mutex_unlock(&s->lock);
  return holder;
}

/* The gate is held throughout: iocp_destroy() first makes a waiter leave
 * (iocp__evq_close), then waits for it to be out. */
static int wait_inside(iocp_server *s, iocp_event *events, uint32_t max, int32_t timeout_ms) {
  iocp__evq *q = &s->evq;
  iocp__conn *batch, **tailp;
  uint64_t deadline = 0;
  uint32_t n = 0, watched;
  int rc;

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
  q->holder = &thread_marker;
  batch = q->batch;
  q->batch = NULL;
  /* The previous batch's LOG slots are free again. */
  q->log_first = (q->log_first + q->log_taken) % IOCP_LOG_QUEUE_MAX;
  q->log_taken = 0;
  watched = iocp__load32(&q->watched);
  iocp__mutex_unlock(&s->lock);

  draining = s;
  /* Cleared before the inbox is looked at, the handle first, then the mark:
   * a push after the mark's reset signals again, and a signal that lands
   * after the handle's clear leaves it ready with the mark reset, a
   * spurious wake-up that the next call clears (`stale`). Clearing the mark
   * first could swallow a pusher's signal and leave the mark set with the
   * handle not ready: no push would signal again, and the loop would sleep
   * through its events. */
  if (watched && (q->stale || iocp__load32_fenced(&q->signalled))) {
    iocp__eng_wait_handle_clear(s);
    q->stale = iocp__exchange32(&q->signalled, 0) != 0;
  }
  release_list(batch); /* may queue the next events of these connections */
  if (watched && timeout_ms == 0) {
    /* An event loop drains through the handle: its thread serves what is
     * ready now, as a waiting iocp_wait() would (engine.h). */
    serving = s;
    (void)iocp__eng_caller_serve(s, 0);
    serving = NULL;
  }

  if (timeout_ms > 0) deadline = iocp__now_ms() + (uint64_t)timeout_ms;
  iocp__mutex_lock(&s->lock);
  absorb_locked(q);
  while (q->head == NULL && q->log_queued == 0 && !q->wake && !finished_locked(s) &&
         timeout_ms != 0) {
    if (timeout_ms < 0) {
      sleep_locked(s, -1, 1);
    } else {
      uint64_t now = iocp__now_ms();
      if (now >= deadline) break;
      sleep_locked(s, (int64_t)(deadline - now), 1);
    }
  }
  q->wake = 0;
  if (q->discard) {
    rc = IOCP_ECLOSED;
  } else {
    n = take_logs_locked(q, events, max);
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
    /* What did not fit, or the end the next call reports, keeps the handle
     * ready (it was cleared above). */
    if (watched && (q->head != NULL || q->log_queued != 0 || finished_locked(s)) &&
        !iocp__exchange32(&q->signalled, 1))
      iocp__eng_wait_handle_signal(s);
  }
  q->busy = 0;
  iocp__mutex_unlock(&s->lock);
  draining = NULL;
  return rc;
}

int IOCP_CALL iocp_wait(iocp_server *s, iocp_event *events, uint32_t max, int32_t timeout_ms) {
  int rc, gate;
  if (s == NULL || events == NULL || max == 0) return IOCP_EINVAL;
  gate = iocp__server_enter(s);
  if (gate < 0) return gate;
  rc = s->queue_mode ? wait_inside(s, events, max, timeout_ms) : IOCP_EMODE;
  if (gate) iocp__server_leave(s);
  return rc;
}

int IOCP_CALL iocp_wake(iocp_server *s) {
  int gate, rc = IOCP_EMODE;
  if (s == NULL) return IOCP_EINVAL;
  gate = iocp__server_enter(s);
  if (gate < 0) return gate;
  if (s->queue_mode) {
    iocp__mutex_lock(&s->lock);
    s->evq.wake = 1;
    if (s->evq.sleepers != 0)
      iocp__evq_wake_locked(s);
    else
      signal_handle(s);
    iocp__mutex_unlock(&s->lock);
    rc = IOCP_OK;
  }
  if (gate) iocp__server_leave(s);
  return rc;
}

int IOCP_CALL iocp_wait_handle(iocp_server *s, intptr_t *handle) {
  int gate, rc = IOCP_EMODE;
  if (s == NULL || handle == NULL) return IOCP_EINVAL;
  gate = iocp__server_enter(s);
  if (gate < 0) return gate;
  if (s->queue_mode) {
    iocp__mutex_lock(&s->lock);
    if (s->evq.discard) {
      rc = IOCP_ECLOSED;
    } else {
      rc = iocp__eng_wait_handle_open(s, handle);
      if (rc == IOCP_OK && !iocp__load32(&s->evq.watched)) {
        /* Ready at once: whatever is queued already is taken by the first
         * iocp_wait() the handle leads to. (Full fences: a pusher that reads
         * `signalled` later sees the handle the engine made.) */
        (void)iocp__exchange32(&s->evq.signalled, 1);
        (void)iocp__exchange32(&s->evq.watched, 1);
        iocp__eng_wait_handle_signal(s);
      }
    }
    iocp__mutex_unlock(&s->lock);
  }
  if (gate) iocp__server_leave(s);
  return rc;
}

void iocp__evq_close(iocp_server *s) {
  iocp__mutex_lock(&s->lock);
  s->evq.discard = 1;
  iocp__evq_wake_locked(s);
  iocp__mutex_unlock(&s->lock);
}

void iocp__evq_drain_all(iocp_server *s) {
  iocp__evq *q = &s->evq;
#ifdef IOCP__ENG_OPS_MAY_NOT_COMPLETE
  long last = -1;
  uint64_t since = 0;
#endif
  iocp__mutex_lock(&s->lock);
  assert(!s->queue_mode || q->discard); /* iocp__evq_close came first */
  while (iocp__ref_add(&s->alive, 0) != 0) {
    iocp__conn *list = q->batch;
    absorb_locked(q);
    if (list != NULL) {
      q->batch = NULL;
    } else if (q->head != NULL) {
      list = q->head;
      q->head = q->tail = NULL;
    }
    if (list == NULL) {
#ifdef IOCP__ENG_OPS_MAY_NOT_COMPLETE
      /* Every socket is closed, so every operation completes soon, except
       * one the system never completes (eng.h): once no connection has
       * ended for IOCP__ENG_OPS_GRACE_MS, stop waiting. The engine's
       * finish accounts for what is left. */
      long alive = iocp__ref_add(&s->alive, 0);
      uint64_t now = iocp__now_ms();
      if (alive != last) {
        last = alive;
        since = now;
      } else if (now - since >= IOCP__ENG_OPS_GRACE_MS) {
        break;
      }
      sleep_locked(s, 50, 0);
#else
      sleep_locked(s, -1, 0);
#endif
      continue;
    }
    iocp__mutex_unlock(&s->lock);
    release_list(list);
    iocp__mutex_lock(&s->lock);
  }
  iocp__mutex_unlock(&s->lock);
}
