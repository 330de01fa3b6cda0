/* The epoll engine's workers: one loop per worker thread, each with its
 * own epoll set, wake-up eventfd and task queue.
 *
 * Why a set per worker. With one set shared by the pool, each wait of two
 * workers found only a couple of ready connections: more epoll_wait calls
 * and more context switches per message than a single libuv loop. Here each
 * connection is registered in exactly one loop's set for its whole life
 * (round robin when it is made: iocp__eng_conn_init), so its readiness
 * always reaches the same worker, and a worker takes up to IOCP__EVENTS
 * events per wait, as one libuv loop or one nginx worker does. The
 * listener sits in every set with EPOLLEXCLUSIVE, so a new connection wakes
 * one sleeping worker, not all (engine.c).
 *
 * Tasks. A result known inside an engine call (the core holds the
 * connection's lock there), a kick from any thread (iocp__eng_post_run) and
 * the stop token travel through the queue of the connection's loop. A
 * worker that produced a result itself (a receive or send that completed at
 * once inside a callback) keeps it in its own list and runs it right after
 * its current unit of work, whichever loop the connection belongs to; at
 * most IOCP__LOCAL_BUDGET per unit, so one busy connection cannot hold its
 * worker: past that, results go to the back of the queue. The core, not
 * the loop, keeps a connection's callbacks on one thread at a time (its
 * `running` flag), so a task may run on any worker.
 *
 * Wake-ups. Before it waits, and only with its queue empty, a worker marks
 * itself sleeping under the queue's lock; a pusher that finds the mark
 * clears it and writes the eventfd. A worker that is awake is never
 * signalled (no system call for the pusher, no wake-up to pay later), and
 * a sleeping one is woken once. The eventfd is level-triggered and read by
 * the worker it woke.
 *
 * A worker whose epoll_wait breaks (only when its set itself is broken)
 * leaves and says so: its loop is marked dead, new connections go to the
 * others and its queued and later tasks go to a live loop. Readiness of
 * its connections is lost with it, but they still close and are freed. */
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Readiness events a worker takes per wait. */
#define IOCP__EVENTS 64
/* Results a worker runs itself per unit of work (see above). */
#define IOCP__LOCAL_BUDGET 8

static IOCP__TLS iocp__task *local_head, *local_tail;
static IOCP__TLS int local_budget;

struct iocp__eng_loop *iocp__linux_loop(struct iocp__eng_server *e, uint32_t i) {
  return (struct iocp__eng_loop *)(void *)(e->loops + (size_t)i * e->stride);
}

/* A live loop, starting from the round robin's next; NULL if none. */
static struct iocp__eng_loop *live_loop(struct iocp__eng_server *e) {
  uint32_t i, start = atomic_fetch_add(&e->next_loop, 1);
  for (i = 0; i < e->nloops; i++) {
    struct iocp__eng_loop *l = iocp__linux_loop(e, (start + i) % e->nloops);
    if (!atomic_load(&l->dead)) return l;
  }
  return NULL;
}

struct iocp__eng_loop *iocp__linux_loop_pick(struct iocp__eng_server *e) {
  struct iocp__eng_loop *l = live_loop(e);
  return l != NULL ? l : iocp__linux_loop(e, 0);
}

/* ---- Task queues ------------------------------------------------------------- */

void iocp__linux_task_push(struct iocp__eng_loop *l, iocp__task *t) {
  static const uint64_t one = 1;
  int wake;
  iocp__mutex_lock(&l->qlock);
  if (atomic_load(&l->dead)) {
    struct iocp__eng_loop *other;
    iocp__mutex_unlock(&l->qlock);
    if (t->kind == IOCP__TASK_STOP) return; /* its worker has left already */
    other = live_loop(iocp__server_eng(l->server));
    if (other != NULL) {
      iocp__linux_task_push(other, t);
      return;
    }
    iocp__mutex_lock(&l->qlock); /* no worker left: it waits here */
  }
  assert(!t->queued);
  t->queued = 1;
  t->next = NULL;
  if (l->qtail != NULL)
    l->qtail->next = t;
  else
    l->qhead = t;
  l->qtail = t;
  wake = atomic_exchange(&l->sleeping, 0);
  iocp__mutex_unlock(&l->qlock);
  /* Cannot fail: the counter is read back at every wake-up and stays tiny. */
  if (wake && write(l->evfd, &one, sizeof(one)) < 0) assert(0);
}

#define CONN_OF(task, member)                                                              \
  iocp__eng_conn_owner(                                                                     \
      (struct iocp__eng_conn *)((char *)(task) - offsetof(struct iocp__eng_conn, member)))

static void task_run(iocp__task *t) {
  /* Taken out first: the node may be queued again inside the call. */
  int result = t->result;
  size_t bytes = t->bytes;
  uint8_t *buf = t->buf;
  t->buf = NULL;
  switch (t->kind) {
  case IOCP__TASK_RUN: iocp__conn_run(CONN_OF(t, run_task)); break;
  case IOCP__TASK_RECV: iocp__conn_recv_done(CONN_OF(t, recv_task), result, buf, bytes); break;
  case IOCP__TASK_SEND: iocp__conn_send_done(CONN_OF(t, send_task), result, bytes); break;
  case IOCP__TASK_CONNECT: iocp__conn_connected(CONN_OF(t, connect_task), result); break;
  default: assert(0); break;
  }
}

/* Ends a unit of work: runs what it left in the worker's own list. */
static void run_local(void) {
  while (local_head != NULL) {
    iocp__task *t = local_head;
    local_head = t->next;
    if (local_head == NULL) local_tail = NULL;
    t->next = NULL;
    task_run(t);
  }
  local_budget = IOCP__LOCAL_BUDGET;
}

void iocp__linux_task_done_buf(iocp__conn *c, iocp__task *t, int result, size_t bytes,
                               uint8_t *buf) {
  t->result = result;
  t->bytes = bytes;
  t->buf = buf;
  if (iocp__on_worker(iocp__conn_server(c)) && local_budget > 0) {
    local_budget--;
    t->next = NULL;
    if (local_tail != NULL)
      local_tail->next = t;
    else
      local_head = t;
    local_tail = t;
    return;
  }
  iocp__linux_task_push(iocp__conn_eng(c)->loop, t);
}

void iocp__linux_task_done(iocp__conn *c, iocp__task *t, int result, size_t bytes) {
  iocp__linux_task_done_buf(c, t, result, bytes, NULL);
}

/* Runs a list taken from a queue; 1 when it held this worker's stop token. */
static int run_tasks(iocp__task *list) {
  while (list != NULL) {
    iocp__task *t = list;
    list = t->next;
    t->next = NULL;
    t->queued = 0;
    if (t->kind == IOCP__TASK_STOP) return 1; /* queued last: nothing follows */
    task_run(t);
    run_local();
  }
  return 0;
}

/* ---- The loop ------------------------------------------------------------------ */

/* The worker leaves for good: its tasks, now and later, go to live loops. */
static void loop_leave(struct iocp__eng_loop *l) {
  iocp__task *list;
  iocp__mutex_lock(&l->qlock);
  atomic_store(&l->dead, 1);
  list = l->qhead;
  l->qhead = l->qtail = NULL;
  iocp__mutex_unlock(&l->qlock);
  while (list != NULL) {
    iocp__task *t = list;
    list = t->next;
    t->queued = 0;
    iocp__linux_task_push(l, t); /* to a live loop (a stop token is dropped) */
  }
  if (l->index == 0) iocp__park_stop(iocp__server_eng(l->server)); /* no host any more */
}

/* What one wait of loop l's set returned (on l's worker, or on loop 0's
 * while l is parked). */
static void handle_events(struct iocp__eng_loop *l, const struct epoll_event *evs, int n) {
  iocp_server *s = l->server;
  int i;
  for (i = 0; i < n; i++) {
    uint64_t key = evs[i].data.u64;
    if (key == IOCP__KEY_WAKE) {
      uint64_t v; /* tasks are taken at the top of the loop */
      ssize_t got = read(l->evfd, &v, sizeof(v)); /* fails only when already 0 */
      (void)got;
      continue;
    }
    if (key == IOCP__KEY_CALLER) {
      iocp__linux_caller_edge(s);
      continue;
    }
    if (key == IOCP__KEY_LISTENER)
      iocp__linux_on_listener(s);
    else if (key >= IOCP__KEY_LOOP_MIN) /* a parked loop's set (park.c) */
      (void)iocp__linux_serve_loop(iocp__linux_loop(iocp__server_eng(s), (uint32_t)(UINT64_MAX - 1 - key)), 0, NULL);
    else
      iocp__linux_on_conn_event(s, key, evs[i].events);
    run_local();
  }
}

/* One wait's worth of loop l's readiness (which reads its eventfd), then
 * its queue, on a thread that is not l's worker: loop 0's worker serving
 * parked loop l (timeout 0), or the caller inside iocp_wait() (caller.c). In
 * this order: a task queued after the queue is taken finds l "sleeping"
 * (when its own worker sleeps, or it is parked) and writes the eventfd
 * again, which wakes whoever waits on l's set. Returns epoll_wait's count
 * (-1 when the wait failed). */
int iocp__linux_serve_loop(struct iocp__eng_loop *l, int timeout, struct iocp__eng_server *caller) {
  struct epoll_event evs[IOCP__EVENTS];
  iocp__task *list;
  int n;
  if (caller != NULL) {
    /* Marked first: a worker that takes a later edge passes it on (caller.c). */
    atomic_store(&caller->caller_waiting, 1);
    if (atomic_exchange(&caller->caller_pending, 0)) timeout = 0;
  }
  n = iocp__hooks.epoll_wait(l->epfd, evs, IOCP__EVENTS, timeout);
  if (caller != NULL) atomic_store(&caller->caller_waiting, 0);
  if (n > 0) handle_events(l, evs, n);
  iocp__mutex_lock(&l->qlock);
  list = l->qhead;
  l->qhead = l->qtail = NULL;
  if (atomic_load(&l->parked) || atomic_load(&l->in_wait)) atomic_store(&l->sleeping, 1);
  iocp__mutex_unlock(&l->qlock);
  while (list != NULL) {
    iocp__task *t = list;
    list = t->next;
    t->next = NULL;
    t->queued = 0;
    if (t->kind == IOCP__TASK_STOP) { /* l's worker was woken to stop: its own */
      iocp__linux_task_push(l, t);
      continue;
    }
    task_run(t);
    run_local();
  }
  return n;
}


static void *worker_main(void *arg) {
  struct iocp__eng_loop *l = arg;
  iocp_server *s = l->server;
  struct iocp__eng_server *e = iocp__server_eng(s);
  struct epoll_event evs[IOCP__EVENTS];
  int parking;
  iocp__worker_enter(s, l->index);
  local_budget = IOCP__LOCAL_BUDGET;
  parking = iocp__park_worker_begin(l);
  for (;;) {
    iocp__task *list;
    int n, timeout = 0;
    /* The queue as it is now; what arrives meanwhile waits for the next
     * turn, after this turn's readiness. */
    iocp__mutex_lock(&l->qlock);
    list = l->qhead;
    l->qhead = l->qtail = NULL;
    if (list == NULL) {
      /* Both under the lock: a thread serving this loop meanwhile (see
       * serve_loop) takes the queue under it too, and marks `sleeping`
       * again when it finds `in_wait`; marked later, a task it ran would
       * have left `sleeping` clear while this worker waits. */
      atomic_store(&l->sleeping, 1);
      atomic_store(&l->in_wait, 1);
      timeout = atomic_load(&e->backoff) ? IOCP__BACKOFF_MS : -1;
      /* An idle worker that may park looks at its window now and then. */
      if (parking && l->index > 0) timeout = iocp__park_look_ms(e);
    }
    iocp__mutex_unlock(&l->qlock);
    if (run_tasks(list)) break;
    iocp__worker_flush();
    if (l->index == 0 && list == NULL) iocp__linux_caller_hold(l);
    n = iocp__hooks.epoll_wait(l->epfd, evs, IOCP__EVENTS, timeout);
    if (timeout != 0) {
      atomic_store(&l->sleeping, 0);
      atomic_store(&l->in_wait, 0);
    }
    atomic_store_explicit(&l->turns, atomic_load_explicit(&l->turns, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (n < 0) {
      int err = errno;
      if (iocp__linux_errclass(err) == IOCP__ERR_AGAIN) continue;
      /* Only when the set is broken under us: this worker is lost. */
      loop_leave(l);
      iocp__log(s, IOCP_LOG_ERROR, iocp__linux_error(err),
                "worker thread stopped: epoll_wait failed (errno %d)", err);
      break;
    }
    atomic_store_explicit(&l->taken, atomic_load_explicit(&l->taken, memory_order_relaxed) + (uint64_t)n,
                          memory_order_relaxed);
    if (n < IOCP__EVENTS) l->short_turn = atomic_load_explicit(&l->turns, memory_order_relaxed);
    if (atomic_load(&e->backoff)) iocp__linux_accept_resume(s);
    handle_events(l, evs, n);
    if (parking) iocp__park_after_wait(l);
  }
  iocp__park_worker_end(l);
  iocp__worker_leave(s);
  return NULL;
}

/* ---- Loops and their threads ----------------------------------------------------- */

int iocp__linux_loops_open(iocp_server *s, uint32_t n) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  size_t line = iocp__sys_cache_line();
  struct epoll_event ev;
  uint32_t i;
  iocp__park_init(e, n);
  iocp__linux_caller_init(e);
  e->stride = (sizeof(struct iocp__eng_loop) + line - 1) / line * line;
  e->loops_mem = iocp__calloc(1, (size_t)n * e->stride + line); /* a line to align by hand */
  if (e->loops_mem == NULL) return IOCP_ENOMEM;
  e->loops = (uint8_t *)(((uintptr_t)e->loops_mem + line - 1) / line * line);
  for (i = 0; i < n; i++) {
    struct iocp__eng_loop *l = iocp__linux_loop(e, i);
    l->server = s;
    l->index = i;
    l->epfd = l->evfd = -1;
    l->stop.kind = IOCP__TASK_STOP;
    atomic_init(&l->sleeping, 0);
    atomic_init(&l->dead, 0);
    atomic_init(&l->parked, 0);
    atomic_init(&l->turns, 0);
    atomic_init(&l->parks, 0);
    atomic_init(&l->in_wait, 0);
    atomic_init(&l->taken, 0);
    iocp__mutex_init(&l->qlock, IOCP__RANK_QUEUE);
    iocp__cond_init(&l->park_cond);
    e->nloops++; /* from here on loops_close undoes it */
    l->epfd = iocp__hooks.epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) return iocp__linux_error(errno);
    l->evfd = iocp__hooks.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->evfd < 0) return iocp__linux_error(errno);
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN; /* level-triggered: read by the worker it wakes */
    ev.data.u64 = IOCP__KEY_WAKE;
    if (iocp__hooks.epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) != 0)
      return iocp__linux_error(errno);
  }
  if (iocp__server_config(s)->delivery == IOCP_DELIVERY_QUEUE) return iocp__linux_caller_open(s);
  return IOCP_OK;
}

void iocp__linux_loops_close(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  uint32_t i;
  for (i = 0; i < e->nloops; i++) {
    struct iocp__eng_loop *l = iocp__linux_loop(e, i);
    assert(!l->started);
    if (l->evfd >= 0) iocp__hooks.close(l->evfd);
    if (l->epfd >= 0) iocp__hooks.close(l->epfd);
    iocp__mutex_destroy(&l->qlock);
    iocp__cond_destroy(&l->park_cond);
  }
  e->nloops = 0;
  iocp__linux_caller_close(e);
  iocp__park_fini(e);
  iocp__free(e->loops_mem);
  e->loops_mem = NULL;
  e->loops = NULL;
}

/* The workers block the process-wide signals (sys.h). */
int iocp__linux_workers_start(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  sigset_t old;
  int rc = IOCP_OK;
  uint32_t i;
  iocp__signals_block(&old);
  for (i = 0; i < e->nloops; i++) {
    struct iocp__eng_loop *l = iocp__linux_loop(e, i);
    int err = iocp__hooks.pthread_create(&l->thread, NULL, worker_main, l);
    if (err != 0) {
      rc = iocp__linux_error(err);
      break;
    }
    l->started = 1;
  }
  iocp__signals_restore(&old);
  return rc;
}

/* Each worker exits on its own stop token, after the tasks before it. */
void iocp__linux_workers_stop(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  uint32_t i;
  iocp__park_stop(e); /* each stop token must reach its own worker */
  for (i = 0; i < e->nloops; i++) {
    struct iocp__eng_loop *l = iocp__linux_loop(e, i);
    if (l->started) iocp__linux_task_push(l, &l->stop);
  }
  for (i = 0; i < e->nloops; i++) {
    struct iocp__eng_loop *l = iocp__linux_loop(e, i);
    if (!l->started) continue;
    pthread_join(l->thread, NULL);
    l->started = 0;
  }
}
