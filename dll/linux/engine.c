/* The epoll engine: the Linux twin of dll/win/engine.c. Connection I/O,
 * accepting, start and stop; the workers and their loops are in loop.c.
 *
 * One loop per worker (loop.c), each with its own epoll set and task queue;
 * a connection belongs to one loop. The core sees the same completions as
 * from the IOCP engine: each posted receive or send is reported exactly
 * once, aborted when the socket was closed first.
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
 * call, through a task when the result is known inside an engine call (the
 * core holds the connection's lock there).
 *
 * Readiness is edge-triggered and registered once: no epoll_ctl per
 * operation. The flags readable / writable remember what the last edge
 * said until a call meets EAGAIN (or, for a receive, returns less than the
 * buffer: the socket is drained then, and any later byte brings a new
 * edge). A posted receive or send is tried at once when its flag is set, as
 * WSARecv and WSASend do, and otherwise waits for the edge; so an echo costs
 * the kernel's floor: the wait, one recv, one send. Every result travels
 * through a task or the next wait, so a busy connection goes to the back
 * of the line after a few receives. Another thread may work on a
 * connection while its loop's worker handles an edge (an API call, or the
 * worker that accepted it running on_connect); both serialise on the lock
 * and the flags keep that harmless. */
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Static_assert(IOCP__MAX_IOV <= IOCP__LINUX_MAX_IOV, "eng.h: iov array too small");

/* The most connections one wake-up accepts (cfg.accepts_posted, capped). */
#define IOCP__ACCEPT_BATCH_MAX 64
/* The most bytes one send hands to the kernel (fits ssize_t everywhere). */
#define IOCP__SEND_MAX ((size_t)1 << 30)

/* A result taken under the lock and reported after it is released. */
typedef struct io_done {
  int done;
  int result;
  size_t bytes;
  uint8_t *buf; /* a receive's bytes */
} io_done;

static void task_done(iocp__conn *c, iocp__task *t, const io_done *d) {
  iocp__linux_task_done_buf(c, t, d->result, d->bytes, d->buf);
}

/* ---- Connection I/O (connection lock held) ------------------------------------ */

/* Reads into a buffer lent by the core's pool (the worker's own, as a
 * rule): a connection holds one only while its bytes wait for on_data. */
static void try_recv_locked(iocp__conn *c, io_done *d) {
  assert(iocp__conn_held(c));
  iocp_server *s = iocp__conn_server(c);
  uint8_t *buf = iocp__buf_get(s);
  ssize_t n = -1;
  if (buf != NULL) {
    n = iocp__hooks.recv(iocp__conn_eng(c)->fd, buf, iocp__conn_recv_size(c), 0);
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
    if (n > 0 && (size_t)n < iocp__conn_recv_size(c) && iocp__conn_eng(c)->settled &&
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

/* One buffer goes through send(): the kernel's shorter path (no message
 * header or vector to copy in), about 1% of an echo's time here. */
static ssize_t send_iov(int fd, struct iovec *iov, int n) {
  struct msghdr m;
  if (n == 1) return iocp__hooks.send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
  memset(&m, 0, sizeof(m));
  m.msg_iov = iov;
  m.msg_iovlen = (size_t)n;
  return iocp__hooks.sendmsg(fd, &m, MSG_NOSIGNAL);
}

static void try_send_locked(iocp__conn *c, io_done *d) {
  assert(iocp__conn_held(c));
  ssize_t n = send_iov(iocp__conn_eng(c)->fd, iocp__conn_eng(c)->iov, iocp__conn_eng(c)->niov);
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
  iocp__hooks.epoll_ctl(iocp__linux_conn_epfd(c), EPOLL_CTL_DEL, iocp__conn_eng(c)->fd, &ev);
  iocp__hooks.close(iocp__conn_eng(c)->fd);
  iocp__conn_eng(c)->fd = -1;
}

/* A readiness event for connection `id`, on a worker, no lock held. */
void iocp__linux_on_conn_event(iocp_server *s, uint64_t id, uint32_t events) {
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
  if (d.done) task_done(c, &iocp__conn_eng(c)->recv_task, &d);
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
  if (d.done) task_done(c, &iocp__conn_eng(c)->send_task, &d);
  return IOCP_OK;
}

long long iocp__eng_try_send(iocp__conn *c, const uint8_t *data, size_t len) {
  struct iocp__eng_conn *e = iocp__conn_eng(c);
  struct iovec v;
  ssize_t n;
  if (e->fd < 0 || !e->writable || e->connect_posted) return 0;
  assert(!e->send_posted);
  v.iov_base = (void *)data;
  v.iov_len = len < IOCP__SEND_MAX ? len : IOCP__SEND_MAX;
  n = send_iov(e->fd, &v, 1);
  if (n < 0) {
    if (iocp__linux_errclass(errno) != IOCP__ERR_AGAIN) return -1;
    e->writable = 0; /* the rest waits for the next EPOLLOUT edge */
    return 0;
  }
  if ((size_t)n < v.iov_len) e->writable = 0; /* the socket is full */
  return n;
}

int iocp__eng_post_run(iocp__conn *c) {
  iocp__linux_task_push(iocp__conn_eng(c)->loop, &iocp__conn_eng(c)->run_task);
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
    task_done(c, &iocp__conn_eng(c)->recv_task, &aborted);
  }
  if (iocp__conn_eng(c)->send_posted) {
    iocp__conn_eng(c)->send_posted = 0;
    task_done(c, &iocp__conn_eng(c)->send_task, &aborted);
  }
  if (iocp__conn_eng(c)->connect_posted) {
    iocp__conn_eng(c)->connect_posted = 0;
    iocp__linux_task_done(c, &iocp__conn_eng(c)->connect_task, IOCP_ECLOSED, 0);
  }
}

void iocp__eng_conn_free(iocp__conn *c) {
  if (iocp__conn_eng(c)->fd >= 0) close_fd(c);
}

/* The connection's loop is chosen here, round robin, before any other
 * thread sees it. */
void iocp__eng_conn_init(iocp__conn *c) {
  iocp__conn_eng(c)->fd = -1;
  iocp__conn_eng(c)->loop = iocp__linux_loop_pick(iocp__server_eng(iocp__conn_server(c)));
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
  ev.events = IOCP__CONN_EVENTS;
  ev.data.u64 = iocp__conn_id(c);
  iocp__conn_eng(c)->readable = 1;
  iocp__conn_eng(c)->writable = 1;
  iocp__conn_eng(c)->hup = 0;
  iocp__conn_eng(c)->settled = 0;
  /* A parked loop's connections sit in worker 0's set (park.c). Should the
   * loop unpark before the table has this one, worker 0 keeps serving it
   * until the loop's next park and unpark bring it home. */
  iocp__conn_eng(c)->moved = atomic_load(&iocp__conn_eng(c)->loop->parked) ? 1 : 0;
  if (iocp__hooks.epoll_ctl(iocp__linux_conn_epfd(c), EPOLL_CTL_ADD, fd, &ev) != 0)
    return iocp__linux_error(errno);
  iocp__conn_eng(c)->fd = fd;
  return IOCP_OK;
}

/* ---- Accepting ------------------------------------------------------------------ */

/* Puts the listener in every loop's set, level-triggered. EPOLLEXCLUSIVE:
 * a new connection wakes one sleeping worker, not all (kernels before 4.5
 * refuse the flag: then all). */
static int arm_listener_locked(struct iocp__eng_server *e) {
  assert(iocp__mutex_held(&e->accept_lock));
  uint32_t i;
  int rc = IOCP_OK;
  e->listener_armed = 1;
  for (i = 0; i < e->nloops && rc == IOCP_OK; i++) {
    struct iocp__eng_loop *l = iocp__linux_loop(e, i);
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.u64 = IOCP__KEY_LISTENER;
    if (iocp__hooks.epoll_ctl(l->epfd, EPOLL_CTL_ADD, e->listener, &ev) == 0) continue;
    ev.events = EPOLLIN;
    if (errno != EINVAL || iocp__hooks.epoll_ctl(l->epfd, EPOLL_CTL_ADD, e->listener, &ev) != 0)
      rc = iocp__linux_error(errno);
  }
  return rc;
}

/* Takes the listener out of every set (a set that never had it says ENOENT). */
static void disarm_listener_locked(struct iocp__eng_server *e) {
  assert(iocp__mutex_held(&e->accept_lock));
  uint32_t i;
  if (!e->listener_armed) return;
  for (i = 0; i < e->nloops; i++) {
    struct epoll_event ev; /* ignored by EPOLL_CTL_DEL; old kernels want one */
    memset(&ev, 0, sizeof(ev));
    iocp__hooks.epoll_ctl(iocp__linux_loop(e, i)->epfd, EPOLL_CTL_DEL, e->listener, &ev);
  }
  e->listener_armed = 0;
}

/* Leaves the listener out of the sets for a while; the workers wait with a
 * time-out meanwhile and put it back in iocp__linux_accept_resume(). */
static void backoff_locked(struct iocp__eng_server *e) {
  assert(iocp__mutex_held(&e->accept_lock));
  disarm_listener_locked(e);
  e->backoff_until = iocp__now_ms() + IOCP__BACKOFF_MS;
  atomic_store(&e->backoff, 1);
}

void iocp__linux_accept_resume(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  iocp__mutex_lock(&e->accept_lock);
  if (atomic_load(&e->backoff) && iocp__now_ms() >= e->backoff_until) {
    atomic_store(&e->backoff, 0);
    if (e->listener >= 0 && arm_listener_locked(e) != IOCP_OK) backoff_locked(e);
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

/* The listener is readable: take a bounded batch, then set it up (the
 * listener stays readable while more wait: level-triggered, the next wait
 * of any worker takes the next batch). Each new connection joins a loop
 * round robin; on_connect runs here. */
void iocp__linux_on_listener(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  struct sockaddr_storage peers[IOCP__ACCEPT_BATCH_MAX];
  int fds[IOCP__ACCEPT_BATCH_MAX];
  accept_news news = {0, 0, 0};
  uint32_t i, n = 0, tries;

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
      if (!e->pause_logged) news.pause_err = err;
      e->pause_logged = 1;
    }
    break;
  }
  if (n > 0 && e->pause_logged) {
    e->pause_logged = 0;
    news.resumed = 1;
  }
  iocp__mutex_unlock(&e->accept_lock);

  log_news(s, &news);
  for (i = 0; i < n; i++) accept_one(s, fds[i], &peers[i]);
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
  iocp__linux_loops_close(s);
  iocp__mutex_destroy(&e->accept_lock);
}

int iocp__eng_start(iocp_server *s, const struct sockaddr *addr, int addrlen,
                    const iocp__tuning *tuning) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  int rc;

  memset(e, 0, sizeof(*e));
  e->listener = -1;
  e->family = addr->sa_family;
  e->park_mode = tuning->park;
  atomic_init(&e->backoff, 0);
  atomic_init(&e->next_loop, 0);
  e->accept_batch = iocp__server_config(s)->accepts_posted < IOCP__ACCEPT_BATCH_MAX ? iocp__server_config(s)->accepts_posted
                                                                   : IOCP__ACCEPT_BATCH_MAX;
  iocp__mutex_init(&e->accept_lock, IOCP__RANK_ACCEPT);

  rc = iocp__linux_loops_open(s, iocp__worker_count(s));
  if (rc != IOCP_OK) goto fail;
  rc = open_listener(s, addr, addrlen);
  if (rc != IOCP_OK) goto fail;
  rc = iocp__linux_workers_start(s);
  if (rc != IOCP_OK) goto fail_workers;

  /* Only now can connections arrive: a failed start never ran a callback. */
  iocp__mutex_lock(&e->accept_lock);
  rc = arm_listener_locked(e);
  if (rc != IOCP_OK) disarm_listener_locked(e);
  iocp__mutex_unlock(&e->accept_lock);
  if (rc != IOCP_OK) goto fail_workers;
  return IOCP_OK;

fail_workers:
  iocp__linux_workers_stop(s);
fail:
  release(s);
  return rc;
}

void iocp__eng_stop_accepting(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  iocp__mutex_lock(&e->accept_lock);
  if (e->listener >= 0) {
    disarm_listener_locked(e);
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
  iocp__linux_workers_stop(s);
  release(s);
}
