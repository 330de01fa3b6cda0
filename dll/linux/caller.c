/* The epoll engine's part of queue mode: the caller's thread.
 *
 * Queue mode: the thread inside iocp_wait() with nothing to take waits on
 * loop 0's set beside its worker, and serves what it gets as that worker
 * would, so an event can be made and taken on one thread. Handing each
 * batch from a worker to the waiting caller cost two context switches and
 * a futex wake-up per batch, a third thread on the processors, and a fifth
 * of the callbacks' echoes per second. The kernel wakes one waiter per
 * event of a set, the one that came last (as an I/O completion port wakes
 * its most recent thread): while the caller waits, it takes the events;
 * while it runs the caller's code, the worker does.
 *
 * The caller is woken through its own eventfd in loop 0's set (edge-
 * triggered, IOCP__KEY_CALLER; iocp__eng_caller_wake).
 *
 * Two waiters on one set would share its events, and every event that woke
 * the worker while the caller was busy would cost a context switch and a
 * hand-off again. So worker 0 keeps out of its set (holds, on caller_cond)
 * while the caller serves, and until IOCP__CALLER_AWAY_MS after it stopped:
 * a caller that comes back within that time serves every event. A caller
 * that stays away longer (a slow batch, or one that only polls with a
 * time-out of 0, which serves nothing) finds the worker serving, as
 * before, until it serves again.
 *
 * A worker that got the caller's edge while the caller waits writes it
 * again (it is awake: the caller is the only waiter then). An edge taken by
 * a worker while the caller was still on its way to epoll_wait is not lost
 * either: every wake-up also sets caller_pending, which the caller clears
 * just before it waits, and then does not block; the caller marks
 * caller_waiting before it looks, so a worker that takes an edge written
 * after the look sees the mark and passes the edge on. */
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

void iocp__linux_caller_init(struct iocp__eng_server *e) {
  e->caller_fd = -1;
  e->handle_epfd = e->handle_evfd = -1;
  atomic_init(&e->caller_waiting, 0);
  atomic_init(&e->caller_pending, 0);
  atomic_init(&e->caller_inside, 0);
  atomic_init(&e->caller_left_ms, 0);
  atomic_init(&e->caller_entered_ms, 0);
  atomic_init(&e->caller_held, 0);
  iocp__mutex_init(&e->caller_lock, IOCP__RANK_CALLER);
  iocp__cond_init(&e->caller_cond);
}

int iocp__linux_caller_open(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  struct epoll_event ev;
  e->caller_fd = iocp__hooks.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (e->caller_fd < 0) return iocp__linux_error(errno);
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | EPOLLET; /* an edge per write (see above) */
  ev.data.u64 = IOCP__KEY_CALLER;
  if (iocp__hooks.epoll_ctl(iocp__linux_loop(e, 0)->epfd, EPOLL_CTL_ADD, e->caller_fd, &ev) != 0)
    return iocp__linux_error(errno);
  return IOCP_OK;
}

void iocp__linux_caller_close(struct iocp__eng_server *e) {
  if (e->caller_fd >= 0) iocp__hooks.close(e->caller_fd);
  e->caller_fd = -1;
  if (e->handle_epfd >= 0) iocp__hooks.close(e->handle_epfd);
  if (e->handle_evfd >= 0) iocp__hooks.close(e->handle_evfd);
  e->handle_epfd = e->handle_evfd = -1;
  iocp__mutex_destroy(&e->caller_lock);
  iocp__cond_destroy(&e->caller_cond);
}

/* The caller is done serving: a worker asleep until then looks again. */
static void caller_out(struct iocp__eng_server *e) {
  atomic_store(&e->caller_left_ms, iocp__now_ms());
  atomic_store(&e->caller_inside, 0);
  if (atomic_load(&e->caller_held)) {
    iocp__mutex_lock(&e->caller_lock);
    iocp__cond_broadcast(&e->caller_cond);
    iocp__mutex_unlock(&e->caller_lock);
  }
}

int iocp__eng_caller_serve(iocp_server *s, int32_t timeout_ms) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  struct iocp__eng_loop *l;
  int n;
  if (e->caller_fd < 0) return 0; /* made only once the loops are */
  l = iocp__linux_loop(e, 0);
  if (!l->started || atomic_load(&l->dead)) return 0;
  if (atomic_load(&e->backoff) && (timeout_ms < 0 || timeout_ms > IOCP__BACKOFF_MS))
    timeout_ms = IOCP__BACKOFF_MS; /* accepting resumes from here too */
  atomic_store(&e->caller_entered_ms, iocp__now_ms());
  atomic_store(&e->caller_inside, 1);
  n = iocp__linux_serve_loop(l, timeout_ms < 0 ? -1 : (int)timeout_ms, e);
  caller_out(e);
  if (n < 0 && iocp__linux_errclass(errno) != IOCP__ERR_AGAIN) return 0;
  if (atomic_load(&e->backoff)) iocp__linux_accept_resume(s);
  return 1;
}

void iocp__eng_caller_wake(iocp_server *s) {
  static const uint64_t one = 1;
  struct iocp__eng_server *e = iocp__server_eng(s);
  if (e->caller_fd < 0) return;
  atomic_store(&e->caller_pending, 1);
  /* Cannot fail: the counter is read back at every edge and stays tiny. */
  if (write(e->caller_fd, &one, sizeof(one)) < 0) assert(0);
}

/* An edge of the caller's eventfd, on whichever thread got it. */
void iocp__linux_caller_edge(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  uint64_t v;
  ssize_t got = read(e->caller_fd, &v, sizeof(v)); /* fails only when already 0 */
  (void)got;
  if (iocp__on_worker(s) && atomic_load(&e->caller_waiting)) iocp__eng_caller_wake(s);
}

/* Worker 0 before it waits (see above). Its `sleeping` mark stays set
 * meanwhile, so tasks for loop 0 write its eventfd: the caller serves them
 * while it waits, the worker once it stops holding. While the caller comes
 * and goes the worker looks every IOCP__CALLER_AWAY_MS (a caller that stops
 * serving does not signal it); a caller that has served IOCP__CALLER_IDLE_MS
 * in one wait (an idle server) lets the worker sleep until it stops. */
void iocp__linux_caller_hold(struct iocp__eng_loop *l) {
  struct iocp__eng_server *e = iocp__server_eng(l->server);
  if (e->caller_fd < 0) return;
  iocp__mutex_lock(&e->caller_lock);
  for (;;) {
    uint64_t now = iocp__now_ms(), away;
    if (atomic_load(&e->caller_inside)) {
      if (now - atomic_load(&e->caller_entered_ms) < IOCP__CALLER_IDLE_MS) {
        iocp__cond_wait_ms(&e->caller_cond, &e->caller_lock, IOCP__CALLER_AWAY_MS);
        continue;
      }
      atomic_store(&e->caller_held, 1);
      if (atomic_load(&e->caller_inside)) iocp__cond_wait(&e->caller_cond, &e->caller_lock);
      atomic_store(&e->caller_held, 0);
      continue;
    }
    away = now - atomic_load(&e->caller_left_ms);
    if (away >= IOCP__CALLER_AWAY_MS) break;
    iocp__cond_wait_ms(&e->caller_cond, &e->caller_lock, (uint32_t)(IOCP__CALLER_AWAY_MS - away));
  }
  iocp__mutex_unlock(&e->caller_lock);
}

/* ---- The wait handle (iocp_wait_handle()) ------------------------------------
 *
 * An epoll set of its own that the event loop's poller watches: loop 0's
 * set, readable while loop 0 has readiness or a task for the caller to serve
 * (the caller serves it inside iocp_wait() with a time-out of 0), and an
 * eventfd the core writes when it queues events for the loop (level-
 * triggered: readable until iocp__eng_wait_handle_clear reads it). Made on
 * first use only: a set nested in another costs the kernel a wake-up
 * callback per readiness of loop 0. */
int iocp__eng_wait_handle_open(iocp_server *s, intptr_t *handle) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  struct epoll_event ev;
  int epfd, evfd, rc = IOCP_OK;
  if (e->handle_epfd >= 0) goto done;
  if (e->caller_fd < 0) return IOCP_ECLOSED; /* loops not open (anymore) */
  epfd = iocp__hooks.epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return iocp__linux_error(errno);
  evfd = iocp__hooks.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (evfd < 0) {
    rc = iocp__linux_error(errno);
    iocp__hooks.close(epfd);
    return rc;
  }
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  if (iocp__hooks.epoll_ctl(epfd, EPOLL_CTL_ADD, evfd, &ev) != 0 ||
      iocp__hooks.epoll_ctl(epfd, EPOLL_CTL_ADD, iocp__linux_loop(e, 0)->epfd, &ev) != 0) {
    rc = iocp__linux_error(errno);
    iocp__hooks.close(evfd);
    iocp__hooks.close(epfd);
    return rc;
  }
  e->handle_evfd = evfd;
  e->handle_epfd = epfd;
done:
  *handle = (intptr_t)e->handle_epfd;
  return rc;
}

void iocp__eng_wait_handle_signal(iocp_server *s) {
  static const uint64_t one = 1;
  struct iocp__eng_server *e = iocp__server_eng(s);
  /* Cannot fail: the counter is read back at every clear and stays tiny. */
  if (e->handle_evfd >= 0 && write(e->handle_evfd, &one, sizeof(one)) < 0) assert(0);
}

void iocp__eng_wait_handle_clear(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  uint64_t v;
  ssize_t got;
  if (e->handle_evfd < 0) return;
  got = read(e->handle_evfd, &v, sizeof(v)); /* fails only when already 0 */
  (void)got;
}
