/* Parking, the mechanism: how a worker lends its loop to worker 0 and gets
 * it back. loop.c calls in at a few points (iocp__park_* in internal.h);
 * park_policy.c decides when.
 *
 * A parked worker lends its loop to worker 0 and sleeps. Its connections'
 * sockets move into loop 0's set (under the same ids), so one wait per
 * turn serves both loops: served through its nested set instead, worker 0
 * made a second epoll_wait per turn, some 4% of the CPU of a 64-byte echo.
 * A connection made for it while it is parked is registered in loop 0's
 * set at once. Its set stays nested in loop 0's for what is left in it: its
 * eventfd (its queue's tasks), the listener, and a connection registered
 * just as it parked (the table did not have it yet, so it was not moved).
 * When a worker parks and when worker 0 gives its loop back is the policy of
 * park_policy.c,
 * fed with each worker's measurements over a window of IOCP__PARK_WINDOW_NS:
 * a worker that is idle, or that the machine leaves waiting for a processor
 * (oversubscribed), parks; worker 0 unparks one loop per window while it is
 * busy and processors sit idle. At most one worker parks per two windows,
 * and none within IOCP__PARK_HOLD_NS of starting or of taking its loop
 * back itself, or IOCP__PARK_GIVEN_HOLD_NS of being given it back. A
 * parked worker also takes its loop back when worker 0 has made no turn for
 * two looks IOCP__PARK_CHECK_MS apart while awake (a long callback, or a
 * system that does not let it run), so a slow callback on worker 0 holds
 * the parked loops' connections some 40 ms at most. */
#include "internal.h"

#include <assert.h>
#include <string.h>
#include <unistd.h>

#define IOCP__PARK_WINDOW_NS (50ull * 1000000)
#define IOCP__PARK_HOLD_NS (1000ull * 1000000) /* no parking this soon after a start */
/* Given its loop back by worker 0: two windows to measure itself (park_policy.c). */
#define IOCP__PARK_GIVEN_HOLD_NS (2 * IOCP__PARK_WINDOW_NS)
#define IOCP__PARK_CHECK_MS 20
/* IOCP__PARK_CHURN (a test knob): short windows, no holds. */
#define IOCP__CHURN_WINDOW_NS (2ull * 1000000)

static uint64_t park_window_ns(const struct iocp__eng_server *e) {
  return e->park_mode == IOCP__PARK_CHURN ? IOCP__CHURN_WINDOW_NS : IOCP__PARK_WINDOW_NS;
}

static uint64_t park_hold_ns(const struct iocp__eng_server *e, uint64_t hold) {
  return e->park_mode == IOCP__PARK_CHURN ? 0 : hold;
}

/* Through the call table, so tests can script what parking measures (it
 * cannot fail for these clocks; if it did, the reading would be 0). */
static uint64_t clock_ns(clockid_t id) {
  struct timespec ts = {0, 0};
  if (iocp__hooks.clock_gettime(id, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int iocp__linux_conn_epfd(iocp__conn *c) {
  struct iocp__eng_conn *ec = iocp__conn_eng(c);
  return ec->moved ? iocp__linux_loop(iocp__server_eng(iocp__conn_server(c)), 0)->epfd
                   : ec->loop->epfd;
}

typedef struct move_args {
  struct iocp__eng_loop *l, *host;
  int to_host;
} move_args;

/* Moves a connection of loop l to worker 0's set or back (a table shard's
 * lock held). Added to the new set first: an edge-triggered registration
 * reports the socket's state at once, so what arrived before is not lost;
 * then taken out of the old one. A socket that cannot be added stays where
 * it is, and is served from there: through the nested set while l is
 * parked, by worker 0's own wait after. */
static void move_conn(iocp__conn *c, void *arg) {
  const move_args *a = arg;
  struct iocp__eng_conn *ec = iocp__conn_eng(c);
  if (ec->loop != a->l) return; /* set once, before the table had it */
  iocp__conn_lock(c);
  if (ec->fd >= 0 && ec->moved != (unsigned)a->to_host) {
    struct epoll_event ev;
    int from = a->to_host ? a->l->epfd : a->host->epfd;
    int to = a->to_host ? a->host->epfd : a->l->epfd;
    memset(&ev, 0, sizeof(ev));
    ev.events = IOCP__CONN_EVENTS;
    ev.data.u64 = iocp__conn_id(c);
    if (iocp__hooks.epoll_ctl(to, EPOLL_CTL_ADD, ec->fd, &ev) == 0) {
      iocp__hooks.epoll_ctl(from, EPOLL_CTL_DEL, ec->fd, &ev);
      ec->moved = a->to_host ? 1 : 0;
    }
  }
  iocp__conn_unlock(c);
}

/* park_lock held: every connection of l in the table goes to worker 0's
 * set (to_host) or back to l's. */
static void move_conns(struct iocp__eng_server *e, struct iocp__eng_loop *l, int to_host) {
  move_args a;
  a.l = l;
  a.host = iocp__linux_loop(e, 0);
  a.to_host = to_host;
  iocp__conn_each(l->server, move_conn, &a);
}

/* park_lock held. l's sockets go home while its set is still nested, so
 * worker 0 serves what they report until l's worker is back. */
static void unpark_locked(struct iocp__eng_server *e, struct iocp__eng_loop *l) {
  assert(iocp__mutex_held(&e->park_lock));
  struct epoll_event ev;
  if (!atomic_load(&l->parked)) return;
  move_conns(e, l, 0);
  memset(&ev, 0, sizeof(ev));
  iocp__hooks.epoll_ctl(iocp__linux_loop(e, 0)->epfd, EPOLL_CTL_DEL, l->epfd, &ev);
  iocp__mutex_lock(&l->qlock);
  atomic_store(&l->parked, 0);
  iocp__cond_broadcast(&l->park_cond);
  iocp__mutex_unlock(&l->qlock);
}

/* A move makes every moved socket report its readiness again in the new
 * set, behind what was ready there, in the table's order. Were sockets
 * moved again before that set's worker got through them, the ones late in
 * the table would wait out every move (IOCPSRV_PARK=3, a loaded machine
 * and injected delays: a ping unanswered for a minute). So the loop that
 * took the sockets owes a pass over them first: as many events as there
 * may be sockets in its set (each is in the ready list once), or a wait
 * begun after the move that did not fill its array (its set was drained). */
static void owe_pass(struct iocp__eng_server *e, struct iocp__eng_loop *l) {
  l->owe_taken = atomic_load(&l->taken) + iocp__server_conn_count(l->server) + e->nloops + 2;
  l->owe_turn = atomic_load(&l->turns) + 2; /* the wait under way may predate the move */
}

static int owes_pass(const struct iocp__eng_loop *l) {
  return atomic_load(&l->taken) < l->owe_taken && (int)(l->short_turn - l->owe_turn) < 0;
}

/* Worker 0 gives one parked loop back (the lowest), unless it still owes a
 * pass over the sockets it took; 1 if it did. */
static int unpark_one(struct iocp__eng_server *e) {
  uint32_t i;
  int done = 0;
  iocp__mutex_lock(&e->park_lock);
  for (i = 1; i < e->nloops && !done && !owes_pass(iocp__linux_loop(e, 0)); i++) {
    struct iocp__eng_loop *l = iocp__linux_loop(e, i);
    if (atomic_load(&l->parked)) {
      unpark_locked(e, l);
      done = 1;
    }
  }
  iocp__mutex_unlock(&e->park_lock);
  return done;
}

static int any_parked(struct iocp__eng_server *e) {
  uint32_t i;
  for (i = 1; i < e->nloops; i++)
    if (atomic_load(&iocp__linux_loop(e, i)->parked)) return 1;
  return 0;
}

void iocp__park_stop(struct iocp__eng_server *e) {
  uint32_t i;
  iocp__mutex_lock(&e->park_lock);
  e->parking_closed = 1;
  for (i = 1; i < e->nloops; i++) unpark_locked(e, iocp__linux_loop(e, i));
  iocp__mutex_unlock(&e->park_lock);
}

/* Worker l (not 0) lends its loop to worker 0 (`why`: iocp__park_guest's
 * reason) and sleeps until woken. */
static void park(struct iocp__eng_loop *l, int why, uint64_t now) {
  struct iocp__eng_server *e = iocp__server_eng(l->server);
  struct iocp__eng_loop *host = iocp__linux_loop(e, 0);
  unsigned last;
  int ok = 0, stuck = 0, took_back = 0;
  iocp__mutex_lock(&e->park_lock);
  if (!e->parking_closed && !atomic_load(&host->dead)) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN; /* level-triggered: while l's set has ready events */
    ev.data.u64 = IOCP__KEY_LOOP(l->index);
    iocp__mutex_lock(&l->qlock);
    if (l->qhead == NULL) { /* later tasks reach worker 0 through l's eventfd */
      atomic_store(&l->sleeping, 1);
      atomic_store(&l->parked, 1);
      ok = 1;
    }
    iocp__mutex_unlock(&l->qlock);
    if (ok && iocp__hooks.epoll_ctl(host->epfd, EPOLL_CTL_ADD, l->epfd, &ev) != 0) {
      atomic_store(&l->parked, 0);
      ok = 0;
    }
    if (ok) {
      uint64_t held = l->given_back_ns != 0 ? now - l->given_back_ns : UINT64_MAX;
      move_conns(e, l, 1);
      owe_pass(e, host);
      e->unpark_backoff_ns = iocp__park_backoff(e->unpark_backoff_ns, held, why, e->park_mode);
      atomic_store(&e->unpark_next_ns, now + e->unpark_backoff_ns);
    }
  }
  iocp__mutex_unlock(&e->park_lock);
  if (!ok) return;
  iocp__worker_flush();
  atomic_fetch_add_explicit(&l->parks, 1, memory_order_relaxed);
  /* Asleep; every IOCP__PARK_CHECK_MS a look at worker 0: awake and
   * without a new turn for two looks in a row, it is stuck in a callback
   * (or the system does not let it run), and this worker takes its loop
   * back. */
  iocp__mutex_lock(&l->qlock);
  last = atomic_load(&host->turns);
  while (atomic_load(&l->parked)) {
    unsigned turns;
    iocp__cond_wait_ms(&l->park_cond, &l->qlock, IOCP__PARK_CHECK_MS);
    turns = atomic_load(&host->turns);
    stuck = turns == last && !atomic_load(&host->sleeping) ? stuck + 1 : 0;
    last = turns;
    if (stuck >= 2 && atomic_load(&l->parked)) {
      iocp__mutex_unlock(&l->qlock);
      iocp__mutex_lock(&e->park_lock);
      unpark_locked(e, l);
      iocp__mutex_unlock(&e->park_lock);
      iocp__mutex_lock(&l->qlock);
      took_back = 1;
    }
  }
  iocp__mutex_unlock(&l->qlock);
  now = clock_ns(CLOCK_MONOTONIC_COARSE);
  /* Given back (or stopping): a short hold; taken back from a stuck worker
   * 0: a long one, as it may be stuck again. */
  l->given_back_ns = took_back ? 0 : now;
  l->hold_until_ns =
      now + park_hold_ns(e, took_back ? IOCP__PARK_HOLD_NS : IOCP__PARK_GIVEN_HOLD_NS);
  owe_pass(e, l); /* its sockets are back */
}

/* Starts a worker's window: the clocks as they are now. */
static void window_start(struct iocp__eng_loop *l) {
  l->win_start_ns = clock_ns(CLOCK_MONOTONIC_COARSE);
  l->win_cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  l->win_wait_ns = iocp__park_wait_ns(l->sched_fd);
}

/* Worker 0 at the end of a window with loops parked: the idle processor
 * time since the last window's end, read only while it is busy (two busy
 * windows in a row, then, before a loop is given back). */
static void host_account(struct iocp__eng_server *e, iocp__park_window *w, uint64_t now) {
  int64_t idle;
  if (!any_parked(e) || !iocp__park_host_busy(w, e->park_mode)) {
    e->idle_prev_ns = -1;
    return;
  }
  idle = iocp__park_idle_ns(e);
  if (idle >= 0 && e->idle_prev_ns < 0) { /* the first busy window: a reading to start from */
    e->idle_prev_ns = idle;
    return;
  }
  w->idle_ns = idle >= 0 ? idle - e->idle_prev_ns : -1;
  e->idle_prev_ns = idle;
  if (iocp__park_host(w, e->park_mode) && now >= atomic_load(&e->unpark_next_ns) && unpark_one(e))
    e->idle_prev_ns = -1;
}

/* Worker l (not 0): parks if the policy says so and no other worker parked
 * within the last two windows; then, woken, starts a new window. */
static void guest_account(struct iocp__eng_loop *l, const iocp__park_window *w, uint64_t now) {
  struct iocp__eng_server *e = iocp__server_eng(l->server);
  unsigned long long next = atomic_load(&e->park_next_ns);
  int why;
  if (now < l->hold_until_ns || now < next || owes_pass(l)) return;
  why = iocp__park_guest(w, e->park_mode);
  if (why == 0) return;
  if (!atomic_compare_exchange_strong(&e->park_next_ns, &next, now + 2 * park_window_ns(e)))
    return; /* another worker parks now */
  park(l, why, now);
  window_start(l);
}

/* After each wait: at the end of a window, what the worker measured (its
 * thread's CPU time and run-queue delay over the window: a worker that the
 * system preempts is not busy), and the decision. The coarse clock costs no
 * system call; the others are read once per window. */
static void account(struct iocp__eng_loop *l) {
  struct iocp__eng_server *e = iocp__server_eng(l->server);
  uint64_t now = clock_ns(CLOCK_MONOTONIC_COARSE), cpu;
  int64_t wait;
  iocp__park_window w;
  w.span_ns = now - l->win_start_ns;
  if (w.span_ns < park_window_ns(e)) return;
  cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  wait = iocp__park_wait_ns(l->sched_fd);
  w.cpu_ns = cpu - l->win_cpu_ns;
  w.wait_ns = wait >= 0 && l->win_wait_ns >= 0 ? wait - l->win_wait_ns : -1;
  w.idle_ns = -1;
  l->win_start_ns = now;
  l->win_cpu_ns = cpu;
  l->win_wait_ns = wait;
  if (l->index == 0)
    host_account(e, &w, now);
  else
    guest_account(l, &w, now);
}

/* ---- The loop's calls -------------------------------------------------------------- */

void iocp__park_init(struct iocp__eng_server *e, uint32_t nloops) {
  iocp__mutex_init(&e->park_lock, IOCP__RANK_PARK);
  atomic_init(&e->park_next_ns, 0);
  atomic_init(&e->unpark_next_ns, 0);
  e->unpark_backoff_ns = 0;
  e->stat_fd = -1;
  if (nloops > 1 && e->park_mode >= IOCP__PARK_OVERSUB) iocp__park_stat_open(e);
}

void iocp__park_fini(struct iocp__eng_server *e) {
  iocp__park_stat_close(e);
  iocp__mutex_destroy(&e->park_lock);
}

int iocp__park_worker_begin(struct iocp__eng_loop *l) {
  struct iocp__eng_server *e = iocp__server_eng(l->server);
  int parking = e->nloops > 1 && e->park_mode != IOCP__PARK_NEVER;
  l->sched_fd = -1;
  if (parking && l->index > 0 && e->park_mode >= IOCP__PARK_OVERSUB)
    l->sched_fd = iocp__park_open_self();
  window_start(l);
  l->hold_until_ns = l->win_start_ns + park_hold_ns(e, IOCP__PARK_HOLD_NS);
  l->given_back_ns = 0;
  return parking;
}

void iocp__park_worker_end(struct iocp__eng_loop *l) {
  if (l->sched_fd >= 0) close(l->sched_fd);
  l->sched_fd = -1;
}

int iocp__park_look_ms(const struct iocp__eng_server *e) {
  return (int)(park_window_ns(e) / 1000000);
}

void iocp__park_after_wait(struct iocp__eng_loop *l) { account(l); }
