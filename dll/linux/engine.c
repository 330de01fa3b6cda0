/* The epoll engine: the Linux twin of dll/win/engine.c.
 *
 * One epoll set and one task queue per server, and a pool of workers that
 * take queued tasks and readiness events in turn. The core sees the same
 * completions as from the IOCP engine: each posted receive or send is
 * reported exactly once, aborted when the socket was closed first.
 *
 * Stale events. epoll data is never a pointer: a connection's socket is
 * registered under the connection's id (never 0, never reused), the listener
 * under 0 and the wake-up eventfd under UINT64_MAX. A worker resolves an id
 * through the core's table, which returns a referenced connection or NULL;
 * so an event that outlived its connection finds nothing, and one for a
 * connection being torn down finds its socket closed (fd -1) under the lock.
 *
 * One report per operation. Every system call on a connection's socket is
 * made under the connection's lock, and the flags recv_posted / send_posted
 * say which operations are still owed a report. A worker that performs an
 * operation clears its flag and takes the report in the same locked step;
 * iocp__eng_close clears the flags it finds set and queues those operations
 * as aborted. Whoever clears a flag reports, so nothing is lost or doubled.
 * Reports are made with no lock held: directly by a worker that performed the
 * call, through the task queue when the result is known inside an engine
 * call (the core holds the connection's lock there).
 *
 * Readiness is edge-triggered and registered once: no epoll_ctl per
 * operation. The flags readable / writable remember what the last edge
 * said until a call meets EAGAIN (or, for a receive, returns less than the
 * buffer: the socket is drained then, and any later byte brings a new
 * edge). A posted receive or send is tried at once when its flag is set, as
 * WSARecv and WSASend do, and otherwise waits for the edge; so an echo costs
 * the kernel's floor: the wait, one recv, one send. Every result travels
 * through the queue or the next wait, so a busy connection goes to the back
 * of the line after each receive. An edge may reach a second worker while a
 * first one still works on the connection; both serialise on the lock and
 * the flags keep that harmless. */
#include "../core/engine.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Static_assert(IOCP__MAX_IOV <= IOCP__LINUX_MAX_IOV, "eng.h: iov array too small");

#define IOCP__KEY_LISTENER UINT64_C(0) /* connection ids start at 1 */
#define IOCP__KEY_WAKE UINT64_MAX      /* never reached by the id counter */
/* Readiness events one worker takes per wait. With several workers, few, so
 * that work spreads over the pool rather than queueing behind one worker's
 * callbacks; a lone worker has no one to share with and takes many, as a
 * libuv loop does: one wait then serves many connections (fewer system calls
 * and sleeps per message). */
#define IOCP__EVENTS_SHARED 8
#define IOCP__EVENTS_ALONE 64
/* Tasks a worker runs before it looks at readiness again. */
#define IOCP__TASKS_PER_ROUND 16
/* The pause before accepting again after running out of descriptors. */
#define IOCP__BACKOFF_MS 50
/* The most connections one wake-up accepts (cfg.accepts_posted, capped). */
#define IOCP__ACCEPT_BATCH_MAX 64
/* The most bytes one send hands to the kernel (fits ssize_t everywhere). */
#define IOCP__SEND_MAX ((size_t)1 << 30)

#define CONN_OF(task, member)                                                              \
  iocp__eng_conn_owner(                                                                     \
      (struct iocp__eng_conn *)((char *)(task) - offsetof(struct iocp__eng_conn, member)))

/* A result taken under the lock and reported after it is released. */
typedef struct io_done {
  int done;
  int result;
  size_t bytes;
  uint8_t *buf; /* a receive's bytes */
} io_done;

/* ---- Task queue ---------------------------------------------------------------
 * A FIFO of embedded nodes. The eventfd is readable exactly while the queue
 * is not empty (both change under qlock), and is registered level-triggered,
 * so sleeping workers wake while tasks wait and stay asleep otherwise. */

static void task_push(struct iocp__eng_server *e, iocp__task *t) {
  static const uint64_t one = 1;
  iocp__mutex_lock(&e->qlock);
  assert(!t->queued);
  t->queued = 1;
  t->next = NULL;
  if (e->qtail != NULL) {
    e->qtail->next = t;
  } else {
    e->qhead = t;
    /* Cannot fail: the counter is 0 here and never exceeds 1. */
    if (write(e->evfd, &one, sizeof(one)) < 0) assert(0);
  }
  e->qtail = t;
  iocp__mutex_unlock(&e->qlock);
}

static iocp__task *task_pop(struct iocp__eng_server *e) {
  iocp__task *t;
  iocp__mutex_lock(&e->qlock);
  t = e->qhead;
  if (t != NULL) {
    e->qhead = t->next;
    if (e->qhead == NULL) {
      uint64_t v;
      e->qtail = NULL;
      if (read(e->evfd, &v, sizeof(v)) < 0) assert(0); /* readable: it held 1 */
    }
    t->next = NULL;
    t->queued = 0;
  }
  iocp__mutex_unlock(&e->qlock);
  return t;
}

/* Results a worker produced itself (a send or receive that completed at once
 * inside a callback) wait in its own list and run right after the current
 * unit of work: no eventfd round trip, no hand-over to another thread. The
 * budget bounds such chains per unit of work, so one busy connection cannot
 * keep a worker from the shared queue; past it, results go there. */
#define IOCP__LOCAL_BUDGET 8
static IOCP__TLS iocp__task *local_head, *local_tail;
static IOCP__TLS int local_budget;

static void task_done(iocp_server *s, iocp__task *t, const io_done *d) {
  t->result = d->result;
  t->bytes = d->bytes;
  t->buf = d->buf;
  if (iocp__on_worker(s) && local_budget > 0) {
    local_budget--;
    t->next = NULL;
    if (local_tail != NULL)
      local_tail->next = t;
    else
      local_head = t;
    local_tail = t;
    return;
  }
  task_push(iocp__server_eng(s), t);
}

static void task_run(iocp__task *t);

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

void iocp__linux_task_done(iocp__conn *c, iocp__task *t, int result, size_t bytes) {
  io_done d;
  d.done = 1;
  d.result = result;
  d.bytes = bytes;
  d.buf = NULL;
  task_done(iocp__conn_server(c), t, &d);
}

/* ---- Connection I/O (connection lock held) ------------------------------------ */

/* Reads into a buffer lent by the core's pool (the worker's own, as a
 * rule): a connection holds one only while its bytes wait for on_data. */
static void try_recv_locked(iocp__conn *c, io_done *d) {
  iocp_server *s = iocp__conn_server(c);
  uint8_t *buf = iocp__buf_get(s);
  ssize_t n = -1;
  if (buf != NULL) {
    n = iocp__hooks.recv(iocp__conn_eng(c)->fd, buf, iocp__buf_size(s), 0);
    if (n < 0 && iocp__linux_errclass(errno) == IOCP__ERR_AGAIN) {
      iocp__conn_eng(c)->readable = 0;
      iocp__conn_eng(c)->settled = 1;
      iocp__buf_put(s, buf);
      return; /* still posted: the next EPOLLIN edge brings it back */
    }
    /* A short read drained the socket: the next byte brings an edge. Not so
     * a FIN that came with the last bytes (the next recv returns it), nor
     * before a first EAGAIN: an edge that came between the registration and
     * the table insert found no connection and was dropped. */
    if (n > 0 && (size_t)n < iocp__buf_size(s) && iocp__conn_eng(c)->settled &&
        !iocp__conn_eng(c)->hup)
      iocp__conn_eng(c)->readable = 0;
    if (n < 0) iocp__stat_add(s, IOCP__STAT_SYSTEM_ERRORS, 1);
  }
  iocp__conn_eng(c)->recv_posted = 0;
  d->done = 1;
  d->result = n < 0 ? IOCP__IO_RESET : IOCP__IO_OK;
  d->bytes = n < 0 ? 0 : (size_t)n;
  d->buf = n > 0 ? buf : NULL;
  if (n <= 0) iocp__buf_put(s, buf);
}

static size_t m_total(iocp__conn *c) {
  size_t total = 0;
  int i;
  for (i = 0; i < iocp__conn_eng(c)->niov; i++) total += iocp__conn_eng(c)->iov[i].iov_len;
  return total;
}

static void try_send_locked(iocp__conn *c, io_done *d) {
  struct msghdr m;
  ssize_t n;
  memset(&m, 0, sizeof(m));
  m.msg_iov = iocp__conn_eng(c)->iov;
  m.msg_iovlen = (size_t)iocp__conn_eng(c)->niov;
  n = iocp__hooks.sendmsg(iocp__conn_eng(c)->fd, &m, MSG_NOSIGNAL);
  if (n < 0 && iocp__linux_errclass(errno) == IOCP__ERR_AGAIN) {
    iocp__conn_eng(c)->writable = 0;
    return; /* still posted: the next EPOLLOUT edge brings it back */
  }
  if (n >= 0 && (size_t)n < m_total(c)) iocp__conn_eng(c)->writable = 0; /* the socket is full */
  iocp__conn_eng(c)->send_posted = 0;
  d->done = 1;
  d->result = n < 0 ? IOCP__IO_RESET : IOCP__IO_OK;
  d->bytes = n < 0 ? 0 : (size_t)n;
}

static void close_fd(iocp__conn *c) {
  struct epoll_event ev; /* ignored by EPOLL_CTL_DEL; old kernels want one */
  memset(&ev, 0, sizeof(ev));
  /* Explicit, so a descriptor copied by fork() cannot keep it registered. */
  iocp__hooks.epoll_ctl(iocp__server_eng(iocp__conn_server(c))->epfd, EPOLL_CTL_DEL, iocp__conn_eng(c)->fd, &ev);
  iocp__hooks.close(iocp__conn_eng(c)->fd);
  iocp__conn_eng(c)->fd = -1;
}

/* A readiness event for connection `id`, on a worker, no lock held. */
static void on_conn_event(iocp_server *s, uint64_t id, uint32_t events) {
  io_done r = {0, 0, 0, NULL}, w = {0, 0, 0, NULL}, k = {0, 0, 0, NULL};
  iocp__conn *c = iocp__conn_lookup(s, id);
  if (c == NULL) return; /* stale: the connection is gone */
  iocp__conn_lock(c);
  if (iocp__conn_eng(c)->fd >= 0) {
    struct iocp__eng_conn *e = iocp__conn_eng(c);
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) e->readable = 1;
    if (events & (EPOLLRDHUP | EPOLLERR | EPOLLHUP)) e->hup = 1;
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) e->writable = 1;
    if (e->connect_posted && e->writable) {
      k.done = iocp__linux_connect_ready(c, &k.result);
      if (!k.done) e->writable = 0; /* still connecting */
    }
    if (e->recv_posted && e->readable) try_recv_locked(c, &r);
    if (e->send_posted && e->writable) try_send_locked(c, &w);
  }
  iocp__conn_unlock(c);
  /* Each report drops the reference of its operation; ours stays until the end. */
  if (k.done) iocp__conn_connected(c, k.result);
  if (r.done) iocp__conn_recv_done(c, r.result, r.buf, r.bytes);
  if (w.done) iocp__conn_send_done(c, w.result, w.bytes);
  iocp__conn_unref(c);
}

int iocp__eng_recv(iocp__conn *c) {
  io_done d = {0, 0, 0, NULL};
  if (iocp__conn_eng(c)->fd < 0) return IOCP_ECLOSED;
  assert(!iocp__conn_eng(c)->recv_posted);
  iocp__conn_eng(c)->recv_posted = 1;
  /* As WSARecv does: take what is already there at once and report it
   * through the queue (the back of the line: fair to other connections);
   * a drained socket waits for its next edge without a call. */
  if (iocp__conn_eng(c)->readable) try_recv_locked(c, &d);
  if (d.done) task_done(iocp__conn_server(c), &iocp__conn_eng(c)->recv_task, &d);
  return IOCP_OK;
}

int iocp__eng_send(iocp__conn *c, const iocp__iov *iov, int n) {
  io_done d = {0, 0, 0, NULL};
  size_t total = 0;
  int i;
  if (iocp__conn_eng(c)->fd < 0) return IOCP_ECLOSED;
  assert(!iocp__conn_eng(c)->send_posted && n > 0 && n <= IOCP__LINUX_MAX_IOV);
  iocp__conn_eng(c)->niov = 0;
  for (i = 0; i < n && total < IOCP__SEND_MAX; i++) {
    size_t len = iov[i].len < IOCP__SEND_MAX - total ? iov[i].len : IOCP__SEND_MAX - total;
    iocp__conn_eng(c)->iov[i].iov_base = (void *)iov[i].base;
    iocp__conn_eng(c)->iov[i].iov_len = len;
    total += len;
    iocp__conn_eng(c)->niov++;
  }
  iocp__conn_eng(c)->send_posted = 1;
  /* Usually the socket has room: write now, report through the queue. */
  if (iocp__conn_eng(c)->writable) try_send_locked(c, &d);
  if (d.done) task_done(iocp__conn_server(c), &iocp__conn_eng(c)->send_task, &d);
  return IOCP_OK;
}

long long iocp__eng_try_send(iocp__conn *c, const uint8_t *data, size_t len) {
  struct iocp__eng_conn *e = iocp__conn_eng(c);
  struct msghdr m;
  struct iovec v;
  ssize_t n;
  if (e->fd < 0 || !e->writable || e->connect_posted) return 0;
  assert(!e->send_posted);
  v.iov_base = (void *)data;
  v.iov_len = len < IOCP__SEND_MAX ? len : IOCP__SEND_MAX;
  memset(&m, 0, sizeof(m));
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  n = iocp__hooks.sendmsg(e->fd, &m, MSG_NOSIGNAL);
  if (n < 0) {
    if (iocp__linux_errclass(errno) != IOCP__ERR_AGAIN) return -1;
    e->writable = 0; /* the rest waits for the next EPOLLOUT edge */
    return 0;
  }
  if ((size_t)n < v.iov_len) e->writable = 0; /* the socket is full */
  return n;
}

int iocp__eng_post_run(iocp__conn *c) {
  task_push(iocp__server_eng(iocp__conn_server(c)), &iocp__conn_eng(c)->run_task);
  return IOCP_OK;
}

int iocp__eng_shutdown_send(iocp__conn *c) {
  if (iocp__conn_eng(c)->fd < 0) return IOCP_ECLOSED;
  if (iocp__hooks.shutdown(iocp__conn_eng(c)->fd, SHUT_WR) != 0) return iocp__linux_error(errno);
  return IOCP_OK;
}

void iocp__eng_close(iocp__conn *c, int abortive) {
  static const io_done aborted = {1, IOCP__IO_ABORTED, 0, NULL};
  if (iocp__conn_eng(c)->fd < 0) return;
  if (abortive) {
    struct linger l;
    l.l_onoff = 1;
    l.l_linger = 0; /* RST, queued bytes dropped */
    iocp__hooks.setsockopt(iocp__conn_eng(c)->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  }
  close_fd(c);
  if (iocp__conn_eng(c)->recv_posted) {
    iocp__conn_eng(c)->recv_posted = 0;
    task_done(iocp__conn_server(c), &iocp__conn_eng(c)->recv_task, &aborted);
  }
  if (iocp__conn_eng(c)->send_posted) {
    iocp__conn_eng(c)->send_posted = 0;
    task_done(iocp__conn_server(c), &iocp__conn_eng(c)->send_task, &aborted);
  }
  if (iocp__conn_eng(c)->connect_posted) {
    iocp__conn_eng(c)->connect_posted = 0;
    iocp__linux_task_done(c, &iocp__conn_eng(c)->connect_task, IOCP_ECLOSED, 0);
  }
}

void iocp__eng_conn_free(iocp__conn *c) {
  if (iocp__conn_eng(c)->fd >= 0) close_fd(c);
}

void iocp__eng_conn_init(iocp__conn *c) {
  iocp__conn_eng(c)->fd = -1;
  iocp__conn_eng(c)->recv_task.kind = IOCP__TASK_RECV;
  iocp__conn_eng(c)->send_task.kind = IOCP__TASK_SEND;
  iocp__conn_eng(c)->run_task.kind = IOCP__TASK_RUN;
  iocp__conn_eng(c)->connect_task.kind = IOCP__TASK_CONNECT;
}

int iocp__linux_register(iocp__conn *c, int fd) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  /* Once, edge-triggered; until the first edge says otherwise, a call is
   * worth trying. */
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = iocp__conn_id(c);
  iocp__conn_eng(c)->readable = 1;
  iocp__conn_eng(c)->writable = 1;
  iocp__conn_eng(c)->hup = 0;
  iocp__conn_eng(c)->settled = 0;
  if (iocp__hooks.epoll_ctl(iocp__server_eng(iocp__conn_server(c))->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
    return iocp__linux_error(errno);
  iocp__conn_eng(c)->fd = fd;
  return IOCP_OK;
}

/* ---- Accepting ------------------------------------------------------------------ */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int arm_listener_locked(struct iocp__eng_server *e, int op) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.u64 = IOCP__KEY_LISTENER;
  if (iocp__hooks.epoll_ctl(e->epfd, op, e->listener, &ev) != 0) return iocp__linux_error(errno);
  return IOCP_OK;
}

/* Leaves the listener disarmed for a while; the workers wait with a time-out
 * meanwhile and re-arm it in resume_accepting(). */
static void backoff_locked(struct iocp__eng_server *e) {
  e->backoff_until = now_ms() + IOCP__BACKOFF_MS;
  atomic_store(&e->backoff, 1);
}

static void resume_accepting(struct iocp__eng_server *e) {
  iocp__mutex_lock(&e->accept_lock);
  if (atomic_load(&e->backoff) && now_ms() >= e->backoff_until) {
    atomic_store(&e->backoff, 0);
    if (e->listener >= 0 && arm_listener_locked(e, EPOLL_CTL_MOD) != IOCP_OK) backoff_locked(e);
  }
  iocp__mutex_unlock(&e->accept_lock);
}

/* TCP keep-alive as configured; best effort, like TCP_NODELAY. Linux
 * counts whole seconds: round up, so a probe is never early. */
static void set_keepalive(iocp_server *s, int fd) {
  const iocp_config *cfg = iocp__server_config(s);
  int on = 1, secs;
  if (!cfg->keepalive) return;
  iocp__hooks.setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
  if (cfg->keepalive_idle_ms != 0) {
    secs = (int)((cfg->keepalive_idle_ms + 999) / 1000);
    iocp__hooks.setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof(secs));
  }
  if (cfg->keepalive_interval_ms != 0) {
    secs = (int)((cfg->keepalive_interval_ms + 999) / 1000);
    iocp__hooks.setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &secs, sizeof(secs));
  }
}

/* Turns one accepted socket into a connection; a failure drops this socket
 * only. on_connect runs inline, on this worker. */
static void accept_one(iocp_server *s, int fd, const struct sockaddr_storage *peer) {
  iocp__conn *c = iocp__conn_alloc(s);
  int rc;
  if (c == NULL) {
    iocp__stat_add(s, IOCP__STAT_ACCEPT_ERRORS, 1);
    iocp__hooks.close(fd);
    iocp__log(s, IOCP_LOG_WARN, IOCP_ENOMEM, "accepted connection dropped: out of memory");
    return;
  }
  if (iocp__server_config(s)->nodelay) {
    /* Best effort: without it the connection still works, only slower. */
    int on = 1;
    iocp__hooks.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  }
  set_keepalive(s, fd);
  iocp__eng_conn_init(c);
  rc = iocp__linux_register(c, fd);
  if (rc != IOCP_OK) {
    iocp__stat_add(s, IOCP__STAT_ACCEPT_ERRORS, 1);
    iocp__hooks.close(fd);
    iocp__conn_unref(c);
    iocp__log(s, IOCP_LOG_WARN, rc, "accepted connection dropped: cannot add it to epoll");
    return;
  }
  iocp__conn_accepted(c, (const struct sockaddr *)peer);
}

/* What on_listener tells on_log, once the accept lock is released. */
typedef struct accept_news {
  int peer_err;  /* errno of a pending connection that died, or 0 */
  int pause_err; /* errno that paused accepting, or 0 */
  int resumed;   /* accepting works again after a logged pause */
} accept_news;

static void log_news(iocp_server *s, const accept_news *n) {
  if (n->resumed) iocp__log(s, IOCP_LOG_INFO, 0, "accepting connections again");
  if (n->peer_err)
    iocp__log(s, IOCP_LOG_WARN, iocp__linux_error(n->peer_err),
              "accept failed: the pending connection died (errno %d)", n->peer_err);
  if (n->pause_err)
    iocp__log(s, IOCP_LOG_WARN, iocp__linux_error(n->pause_err),
              "accept failed (errno %d%s): accepting paused, retried every %d ms",
              n->pause_err, n->pause_err == EMFILE || n->pause_err == ENFILE
                                ? ", out of file descriptors" : "",
              IOCP__BACKOFF_MS);
}

/* The listener is readable: take a bounded batch, re-arm it (so another
 * worker can take the next batch), then set the batch up. */
static void on_listener(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  struct sockaddr_storage peers[IOCP__ACCEPT_BATCH_MAX];
  int fds[IOCP__ACCEPT_BATCH_MAX];
  accept_news news = {0, 0, 0};
  uint32_t i, n = 0, tries;
  int rearm = 1;

  iocp__mutex_lock(&e->accept_lock);
  if (e->listener < 0) {
    iocp__mutex_unlock(&e->accept_lock);
    return;
  }
  for (tries = 0; tries < e->accept_batch; tries++) {
    socklen_t len = sizeof(peers[n]);
    int fd = iocp__hooks.accept4(e->listener, (struct sockaddr *)&peers[n], &len,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
    int err, cls;
    if (fd >= 0) {
      fds[n++] = fd;
      continue;
    }
    err = errno;
    cls = iocp__linux_errclass(err);
    if (cls != IOCP__ERR_AGAIN) iocp__stat_add(s, IOCP__STAT_ACCEPT_ERRORS, 1);
    if (cls == IOCP__ERR_PEER) { /* that connection died in the backlog */
      news.peer_err = err;
      continue;
    }
    if (cls != IOCP__ERR_AGAIN) { /* out of descriptors, or worse: pause */
      backoff_locked(e);
      rearm = 0;
      if (!e->pause_logged) news.pause_err = err;
      e->pause_logged = 1;
    }
    break;
  }
  if (n > 0 && e->pause_logged) {
    e->pause_logged = 0;
    news.resumed = 1;
  }
  if (rearm && arm_listener_locked(e, EPOLL_CTL_MOD) != IOCP_OK) backoff_locked(e);
  iocp__mutex_unlock(&e->accept_lock);

  log_news(s, &news);
  for (i = 0; i < n; i++) accept_one(s, fds[i], &peers[i]);
}

/* ---- Workers ---------------------------------------------------------------------- */

static void *worker_main(void *arg) {
  iocp_server *s = arg;
  struct iocp__eng_server *e = iocp__server_eng(s);
  struct epoll_event evs[IOCP__EVENTS_ALONE];
  int max_events = iocp__worker_count(s) == 1 ? IOCP__EVENTS_ALONE : IOCP__EVENTS_SHARED;
  iocp__worker_enter(s, atomic_fetch_add(&e->next_index, 1));
  local_budget = IOCP__LOCAL_BUDGET;
  for (;;) {
    int i, n, timeout;
    for (i = 0; i < IOCP__TASKS_PER_ROUND; i++) {
      iocp__task *t = task_pop(e);
      if (t == NULL) break;
      if (t->kind == IOCP__TASK_STOP) goto out;
      task_run(t);
      run_local();
    }
    timeout = atomic_load(&e->backoff) ? IOCP__BACKOFF_MS : -1;
    n = iocp__hooks.epoll_wait(e->epfd, evs, max_events, timeout);
    if (n < 0) {
      int err = errno;
      if (iocp__linux_errclass(err) == IOCP__ERR_AGAIN) continue;
      /* Only when the set is broken under us: this worker is lost. */
      iocp__log(s, IOCP_LOG_ERROR, iocp__linux_error(err),
                "worker thread stopped: epoll_wait failed (errno %d)", err);
      break;
    }
    if (atomic_load(&e->backoff)) resume_accepting(e);
    for (i = 0; i < n; i++) {
      uint64_t key = evs[i].data.u64;
      if (key == IOCP__KEY_WAKE) continue; /* tasks are taken at the top */
      if (key == IOCP__KEY_LISTENER)
        on_listener(s);
      else
        on_conn_event(s, key, evs[i].events);
      run_local();
    }
  }
out:
  iocp__worker_leave(s);
  return NULL;
}

/* Library threads take no process-wide signals (Ctrl-C, termination, child
 * exits, SIGPIPE): those belong to the application's threads. Thread-directed
 * signals stay open: managed runtimes stop threads that ran their code with
 * them (Mono suspends for garbage collection with a real-time signal; a
 * worker that blocked it hung the collector, and so the C# sample). */
static int start_workers(iocp_server *s, uint32_t want) {
  static const int process_signals[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGTERM, SIGPIPE,
                                        SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2, SIGTSTP,
                                        SIGTTIN, SIGTTOU, SIGWINCH, SIGURG, SIGVTALRM,
                                        SIGPROF};
  struct iocp__eng_server *e = iocp__server_eng(s);
  sigset_t block, old;
  int rc = IOCP_OK;
  uint32_t i;
  sigemptyset(&block);
  for (i = 0; i < sizeof(process_signals) / sizeof(process_signals[0]); i++)
    sigaddset(&block, process_signals[i]);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  for (i = 0; i < want; i++) {
    int err = iocp__hooks.pthread_create(&e->threads[i], NULL, worker_main, s);
    if (err != 0) {
      rc = iocp__linux_error(err);
      break;
    }
    e->nthreads++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

/* One stop token per worker: each worker exits on the first it takes. */
static void stop_workers(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  uint32_t i;
  for (i = 0; i < e->nthreads; i++) task_push(e, &e->stops[i]);
  for (i = 0; i < e->nthreads; i++) pthread_join(e->threads[i], NULL);
  e->nthreads = 0;
}

/* ---- Start and stop ---------------------------------------------------------------- */

static int open_listener(iocp_server *s, const struct sockaddr *addr, int addrlen) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  struct sockaddr_storage bound;
  socklen_t boundlen = sizeof(bound);
  int on = 1;
  /* 0 = the system maximum: the kernel caps it at net.core.somaxconn. */
  int backlog = iocp__server_config(s)->backlog == 0 || iocp__server_config(s)->backlog > INT_MAX ? INT_MAX : (int)iocp__server_config(s)->backlog;

  e->listener = iocp__hooks.socket(e->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                                   IPPROTO_TCP);
  if (e->listener < 0) return iocp__linux_error(errno);
  /* Lets a restarted server bind beside its TIME_WAIT leftovers; on Linux
   * binding still fails with EADDRINUSE while another socket listens. */
  iocp__hooks.setsockopt(e->listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  /* "::" means all IPv6 addresses, as on Windows: no IPv4-mapped ones,
   * unless dual stack was asked for. Not left to the system's default
   * (net.ipv6.bindv6only), and a failure fails the server. */
  if (e->family == AF_INET6) {
    int v6only = iocp__server_config(s)->dual_stack ? 0 : 1;
    if (iocp__hooks.setsockopt(e->listener, IPPROTO_IPV6, IPV6_V6ONLY, &v6only,
                               sizeof(v6only)) != 0) {
      int err = errno;
      iocp__log(s, IOCP_LOG_ERROR, iocp__linux_error(err),
                "cannot set IPV6_V6ONLY to %d (errno %d)", v6only, err);
      return iocp__linux_error(err);
    }
  }
  if (iocp__hooks.bind(e->listener, addr, (socklen_t)addrlen) != 0 ||
      iocp__hooks.listen(e->listener, backlog) != 0 ||
      iocp__hooks.getsockname(e->listener, (struct sockaddr *)&bound, &boundlen) != 0)
    return iocp__linux_error(errno);
  iocp__server_bound(s, &bound);
  return IOCP_OK;
}

static void release(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  if (e->listener >= 0) iocp__hooks.close(e->listener);
  e->listener = -1;
  if (e->evfd >= 0) iocp__hooks.close(e->evfd);
  e->evfd = -1;
  if (e->epfd >= 0) iocp__hooks.close(e->epfd);
  e->epfd = -1;
  iocp__free(e->threads);
  e->threads = NULL;
  iocp__free(e->stops);
  e->stops = NULL;
  iocp__mutex_destroy(&e->accept_lock);
  iocp__mutex_destroy(&e->qlock);
}

int iocp__eng_start(iocp_server *s, const struct sockaddr *addr, int addrlen) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  struct epoll_event ev;
  uint32_t i, want;
  int rc;

  memset(e, 0, sizeof(*e));
  e->epfd = e->evfd = e->listener = -1;
  e->family = addr->sa_family;
  atomic_init(&e->backoff, 0);
  e->accept_batch = iocp__server_config(s)->accepts_posted < IOCP__ACCEPT_BATCH_MAX ? iocp__server_config(s)->accepts_posted
                                                                   : IOCP__ACCEPT_BATCH_MAX;
  iocp__mutex_init(&e->qlock);
  iocp__mutex_init(&e->accept_lock);

  e->epfd = iocp__hooks.epoll_create1(EPOLL_CLOEXEC);
  if (e->epfd < 0) {
    rc = iocp__linux_error(errno);
    goto fail;
  }
  e->evfd = iocp__hooks.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (e->evfd < 0) {
    rc = iocp__linux_error(errno);
    goto fail;
  }
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN; /* level-triggered: see the task queue */
  ev.data.u64 = IOCP__KEY_WAKE;
  if (iocp__hooks.epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->evfd, &ev) != 0) {
    rc = iocp__linux_error(errno);
    goto fail;
  }
  rc = open_listener(s, addr, addrlen);
  if (rc != IOCP_OK) goto fail;

  want = iocp__worker_count(s);
  e->threads = iocp__calloc(want, sizeof(*e->threads));
  e->stops = iocp__calloc(want, sizeof(*e->stops));
  if (e->threads == NULL || e->stops == NULL) {
    rc = IOCP_ENOMEM;
    goto fail;
  }
  for (i = 0; i < want; i++) e->stops[i].kind = IOCP__TASK_STOP;
  rc = start_workers(s, want);
  if (rc != IOCP_OK) goto fail_workers;

  /* Only now can connections arrive: a failed start never ran a callback. */
  iocp__mutex_lock(&e->accept_lock);
  rc = arm_listener_locked(e, EPOLL_CTL_ADD);
  iocp__mutex_unlock(&e->accept_lock);
  if (rc != IOCP_OK) goto fail_workers;
  return IOCP_OK;

fail_workers:
  stop_workers(s);
fail:
  release(s);
  return rc;
}

void iocp__eng_stop_accepting(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  iocp__mutex_lock(&e->accept_lock);
  if (e->listener >= 0) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    iocp__hooks.epoll_ctl(e->epfd, EPOLL_CTL_DEL, e->listener, &ev);
    iocp__hooks.close(e->listener);
    e->listener = -1;
  }
  atomic_store(&e->backoff, 0);
  iocp__mutex_unlock(&e->accept_lock);
}

/* Every connection is freed. A worker may still be setting up a socket it
 * accepted before the listener closed; the core refuses it (the table is
 * closed) and the worker finishes with it before it takes its stop token. */
void iocp__eng_finish(iocp_server *s) {
  stop_workers(s);
  release(s);
}
