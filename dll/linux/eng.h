/* The epoll engine's part of the server and connection structs, and its
 * entries in the call table (core/hooks.h).
 *
 * epoll reports readiness; the core wants completions. The engine bridges
 * the two: a posted receive or send is remembered in the connection, a
 * worker performs the system call when the socket is ready, and the result
 * is reported to the core once. Results that are known while the
 * connection's lock is held (an immediate send, an operation aborted by a
 * close) travel through a task queue (the worker's own list, or the queue
 * of the connection's loop), so the core is never entered from inside an
 * engine call. */
#ifndef IOCP_LINUX_ENG_H
#define IOCP_LINUX_ENG_H

#include "sys.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

typedef struct iocp_server iocp_server;

/* Buffers one send copies; core/engine.h's IOCP__MAX_IOV must fit (checked
 * in engine.c: this header is read before that constant exists). */
#define IOCP__LINUX_MAX_IOV 16

enum iocp__task_kind {
  IOCP__TASK_RUN = 1, /* iocp__conn_run */
  IOCP__TASK_RECV,    /* iocp__conn_recv_done(result, bytes) */
  IOCP__TASK_SEND,    /* iocp__conn_send_done(result, bytes) */
  IOCP__TASK_CONNECT, /* iocp__conn_connected(result: an IOCP_ code) */
  IOCP__TASK_STOP     /* the worker that takes it exits */
};

/* A node of a loop's task queue. Every node is embedded in the
 * connection or the server it belongs to, so queueing never allocates and
 * cannot fail. A connection's node is recovered from its address. */
typedef struct iocp__task {
  struct iocp__task *next;
  int kind;
  int queued; /* under the queue lock; a node is never queued twice */
  int result; /* enum iocp__io_result, for RECV and SEND */
  size_t bytes;
  uint8_t *buf; /* RECV: the pool's buffer holding the bytes */
} iocp__task;

struct iocp__eng_loop;

/* The first member of the core's connection (core/engine.h). `loop` is
 * set once, before the connection is seen by another thread; everything
 * else is under the connection's lock. */
struct iocp__eng_conn {
  int fd;                  /* -1 once closed */
  unsigned recv_posted : 1; /* a receive waits for readability */
  unsigned send_posted : 1; /* iov[0..niov) waits for writability */
  unsigned connect_posted : 1; /* a connect() waits for writability */
  unsigned readable : 1;   /* no recv() has met EAGAIN since the last EPOLLIN edge */
  unsigned writable : 1;   /* no send has met a full socket since the last EPOLLOUT edge */
  unsigned hup : 1;        /* the peer's FIN (or an error) is in: read until recv says so */
  unsigned settled : 1;    /* a recv met EAGAIN: every later arrival brings an edge we see */
  unsigned moved : 1;      /* its loop is parked: the socket sits in loop 0's set (loop.c) */
  int niov;
  struct iocp__eng_loop *loop; /* the worker whose epoll set holds the socket */
  struct iovec iov[IOCP__LINUX_MAX_IOV];
  iocp__task recv_task;
  iocp__task send_task;
  iocp__task run_task;
  iocp__task connect_task;
};

/* One worker's loop (loop.c): its own epoll set, wake-up and task queue.
 * Each connection belongs to one loop for its whole life, so a worker
 * waits only for its own connections' readiness and takes many events per
 * wait, as one libuv loop or one nginx worker does. The loops sit a cache
 * line apart: what one worker writes shares no line with another's. */
struct iocp__eng_loop {
  iocp_server *server;
  uint32_t index;          /* the worker's index (iocp__worker_enter) */
  int epfd;                /* its connections, the shared listener, evfd */
  int evfd;                /* written when a task arrives while it sleeps */
  int started;             /* its thread runs (or ran) and is joined at stop */
  pthread_t thread;
  iocp__task stop;         /* its stop token */
  atomic_int sleeping;     /* set under qlock with the queue empty, before a wait
                            * (and while parked); a pusher that clears it writes evfd */
  atomic_int dead;         /* its epoll_wait broke: it left, others take its work */
  atomic_int parked;       /* its worker sleeps; loop 0's serves its set and queue */
  atomic_uint turns;       /* waits so far (of loop 0: a parked worker's watchdog) */
  atomic_uint parks;       /* times its worker parked (for tests) */
  atomic_int in_wait;      /* its worker waits: in epoll_wait, or holding for the caller */
  iocp__cond park_cond;    /* a parked worker sleeps on it, with qlock */
  iocp__mutex qlock;
  iocp__task *qhead;       /* under qlock */
  iocp__task *qtail;       /* under qlock */
  /* The worker's own time accounting for parking; no other thread reads it. */
  uint64_t win_start_ns, win_cpu_ns, hold_until_ns;
  uint64_t given_back_ns;  /* when worker 0 last gave its loop back (0: never) */
  int64_t win_wait_ns;     /* its run-queue delay so far, at the window's start (-1: unknown) */
  int sched_fd;            /* its /proc/thread-self/schedstat, or -1 */
  /* Passes (loop.c: owe_pass): events its worker's waits took, the turn
   * of its last wait that did not fill the array (its worker only), and
   * what it owes since sockets last moved into its set (worker 0's under
   * park_lock, the others' their own worker's). */
  atomic_ullong taken;
  unsigned short_turn, owe_turn;
  uint64_t owe_taken;
};

/* Processors parking looks at: the first 1024. */
#define IOCP__PARK_CPU_WORDS 16

struct iocp__eng_server {
  int family;
  void *loops_mem;         /* nloops loops, `stride` bytes apart from `loops` */
  uint8_t *loops;
  size_t stride;
  uint32_t nloops;         /* loops made (their sets and eventfds) */
  atomic_uint next_loop;   /* round robin: the loop of the next connection */
  iocp__mutex park_lock;   /* parking and unparking, one loop at a time */
  int parking_closed;      /* under park_lock: stopping, nobody parks */
  int park_mode;           /* IOCP__PARK_*, from IOCPSRV_PARK at start */
  atomic_ullong park_next_ns; /* no worker parks before (one per two windows) */
  atomic_ullong unpark_next_ns; /* worker 0 gives no loop back before */
  uint64_t unpark_backoff_ns; /* under park_lock: the wait after a guest parked */
  /* Worker 0's idle-processor readings (park.c); only it touches them. */
  int stat_fd;             /* /proc/stat, or -1 */
  char *stat_buf;
  size_t stat_cap;
  uint64_t cpus[IOCP__PARK_CPU_WORDS]; /* bit n: processor n is ours to run on */
  long tick_hz;            /* /proc/stat's unit */
  int64_t idle_prev_ns;    /* the reading at the last window's end, or -1 */

  /* Queue mode (caller.c): the eventfd that wakes the caller inside
   * iocp_wait() while it serves loop 0, or -1. */
  int caller_fd;
  atomic_int caller_waiting; /* the caller waits on loop 0's set now */
  atomic_int caller_pending; /* a wake-up the caller has not looked at */
  atomic_int caller_inside; /* the caller serves (iocp__eng_caller_serve) */
  atomic_ullong caller_entered_ms; /* when it last began (iocp__now_ms()) */
  atomic_ullong caller_left_ms; /* when it last stopped */
  atomic_int caller_held;  /* worker 0 sleeps on caller_cond until the caller leaves */
  iocp__mutex caller_lock;
  iocp__cond caller_cond;

  iocp__mutex accept_lock;
  int listener;            /* under accept_lock; -1 once closed */
  int listener_armed;      /* under accept_lock: in every loop's set */
  uint32_t accept_batch;   /* connections taken per wake-up */
  uint64_t backoff_until;  /* under accept_lock: iocp__now_ms() */
  atomic_int backoff;      /* out of descriptors: accepting paused */
  int pause_logged;        /* under accept_lock: on_log heard of the pause */
};

/* Socket and system calls of this engine, replaceable by tests. */
#define IOCP__ENGINE_HOOKS                                                        \
  int (*socket)(int domain, int type, int proto);                                 \
  int (*bind)(int fd, const struct sockaddr *addr, socklen_t len);                \
  int (*listen)(int fd, int backlog);                                             \
  int (*setsockopt)(int fd, int level, int name, const void *val, socklen_t len); \
  int (*getsockname)(int fd, struct sockaddr *addr, socklen_t *len);              \
  int (*getsockopt)(int fd, int level, int name, void *val, socklen_t *len);      \
  int (*connect)(int fd, const struct sockaddr *addr, socklen_t len);             \
  int (*close)(int fd);                                                           \
  int (*shutdown)(int fd, int how);                                               \
  ssize_t (*recv)(int fd, void *buf, size_t len, int flags);                      \
  ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);                \
  ssize_t (*send)(int fd, const void *buf, size_t len, int flags);                \
  int (*accept4)(int fd, struct sockaddr *addr, socklen_t *len, int flags);       \
  int (*epoll_create1)(int flags);                                                \
  int (*epoll_ctl)(int epfd, int op, int fd, struct epoll_event *ev);             \
  int (*epoll_wait)(int epfd, struct epoll_event *evs, int max, int timeout);     \
  int (*eventfd)(unsigned int initval, int flags);                                \
  int (*pthread_create)(pthread_t * t, const pthread_attr_t *attr,                \
                        void *(*fn)(void *), void *arg);                          \
  /* Parking's clocks and its reads of the kernel's figures (loop.c, park.c). */  \
  int (*clock_gettime)(clockid_t id, struct timespec *ts);                        \
  ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);

#define IOCP__ENGINE_HOOKS_DEFAULT                                                 \
  socket, bind, listen, setsockopt, getsockname, getsockopt, connect, close,      \
      shutdown, recv, sendmsg, send,                                               \
      accept4, epoll_create1, epoll_ctl, epoll_wait, eventfd, pthread_create,      \
      clock_gettime, pread

/* Shared by engine.c, loop.c and connect.c. */
typedef struct iocp__conn iocp__conn;
/* Reports a task's result (connection lock held): on this worker right
 * after its current work, or through the connection's loop. */
void iocp__linux_task_done(iocp__conn *c, iocp__task *t, int result, size_t bytes);
/* The same with a receive's buffer. */
void iocp__linux_task_done_buf(iocp__conn *c, iocp__task *t, int result, size_t bytes,
                               uint8_t *buf);
/* Queues a task on a loop (a dead loop's go to a live one) and wakes its
 * worker if it sleeps. */
void iocp__linux_task_push(struct iocp__eng_loop *l, iocp__task *t);
/* The loop of index i, and the one a new connection joins. */
struct iocp__eng_loop *iocp__linux_loop(struct iocp__eng_server *e, uint32_t i);
struct iocp__eng_loop *iocp__linux_loop_pick(struct iocp__eng_server *e);
/* Makes one loop per worker (its set and eventfd); undone by loops_close. */
int iocp__linux_loops_open(iocp_server *s, uint32_t n);
void iocp__linux_loops_close(iocp_server *s);
/* Starts a worker thread per loop; stops and joins them. */
int iocp__linux_workers_start(iocp_server *s);
void iocp__linux_workers_stop(iocp_server *s);
/* What a worker does with readiness (engine.c). */
void iocp__linux_on_listener(iocp_server *s);
void iocp__linux_on_conn_event(iocp_server *s, uint64_t id, uint32_t events);
void iocp__linux_accept_resume(iocp_server *s);
/* Registers a new connection's socket with its loop's epoll set. */
int iocp__linux_register(iocp__conn *c, int fd);
/* A readiness event while a connect is posted: takes its result. Returns 1
 * and sets *error when the attempt is over. */
int iocp__linux_connect_ready(iocp__conn *c, int *error);

/* One wait of loop l's set and then its queue, on a thread that is not its
 * worker (loop.c); `caller` when that is the caller inside iocp_wait(). */
int iocp__linux_serve_loop(struct iocp__eng_loop *l, int timeout, struct iocp__eng_server *caller);
/* Queue mode (caller.c): the caller's part of the server (init before
 * anything can fail, open once the loops are made, close with them), an
 * edge of its eventfd on any thread, and worker 0 keeping out of its set
 * while the caller serves it. */
void iocp__linux_caller_init(struct iocp__eng_server *e);
int iocp__linux_caller_open(iocp_server *s);
void iocp__linux_caller_close(struct iocp__eng_server *e);
void iocp__linux_caller_edge(iocp_server *s);
void iocp__linux_caller_hold(struct iocp__eng_loop *l);

/* Parking (loop.c, park.c): how a worker lends its loop to worker 0.
 * IOCPSRV_PARK, read when a server starts, picks a mode: 0 never, 1 idle
 * workers only, 2 (the default) idle or oversubscribed ones, 3 a test knob
 * (every window each worker parks and worker 0 unparks one, with 2 ms
 * windows and no holds: park and unpark race with the traffic). */
enum {
  IOCP__PARK_NEVER = 0,
  IOCP__PARK_IDLE = 1,
  IOCP__PARK_OVERSUB = 2,
  IOCP__PARK_CHURN = 3
};
/* What a worker measured over one window. */
typedef struct iocp__park_window {
  uint64_t span_ns; /* its length */
  uint64_t cpu_ns;  /* the worker thread's CPU time in it */
  int64_t wait_ns;  /* its time runnable but not running; -1 unknown */
  int64_t idle_ns;  /* idle time of the processors we may run on (worker 0); -1 unknown */
} iocp__park_window;
/* The mode IOCPSRV_PARK's value names (NULL or nonsense: the default). */
int iocp__park_mode_parse(const char *v);
/* When a worker other than 0, running its own loop, should park: 0 not,
 * IOCP__PARK_IDLE for idleness, IOCP__PARK_OVERSUB for oversubscription. */
int iocp__park_guest(const iocp__park_window *w, int mode);
/* After a guest parked (why: iocp__park_guest's value) `held_ns` after
 * worker 0 gave its loop back (UINT64_MAX: never given back): how long
 * worker 0 now waits before it gives a loop back again, from the wait it
 * had (`prev_ns`). */
uint64_t iocp__park_backoff(uint64_t prev_ns, uint64_t held_ns, int why, int mode);
/* 1 when worker 0 was busy enough to give a loop back (idle_ns not used). */
int iocp__park_host_busy(const iocp__park_window *w, int mode);
/* 1 when worker 0 should give a parked loop back. */
int iocp__park_host(const iocp__park_window *w, int mode);
/* The calling thread's schedstat file (-1 if none), and its run-queue delay
 * so far (-1 if unknown). */
int iocp__park_open_self(void);
int64_t iocp__park_wait_ns(int fd);
/* Idle + iowait time in /proc/stat's text of the processors whose bit is
 * set in cpus (IOCP__PARK_CPU_WORDS words; all when NULL), in ns; -1 when
 * none was found. */
int64_t iocp__park_stat_idle(const char *text, const uint64_t *cpus, long tick_hz);
/* Opens what worker 0 reads (/proc/stat); reads it (-1: cannot). */
void iocp__park_stat_open(struct iocp__eng_server *e);
void iocp__park_stat_close(struct iocp__eng_server *e);
int64_t iocp__park_idle_ns(struct iocp__eng_server *e);

/* Queue mode: worker 0 serves loop 0 once the caller inside iocp_wait()
 * has not served it for this long (caller.c). */
#define IOCP__CALLER_AWAY_MS 2
/* ... and sleeps without looking until the caller stops, once it has been
 * serving this long in one wait (an idle server). */
#define IOCP__CALLER_IDLE_MS 50

/* The pause before accepting again after running out of descriptors. */
#define IOCP__BACKOFF_MS 50

/* How a connection's socket is registered: once, edge-triggered. */
#define IOCP__CONN_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)
/* The set a connection's socket sits in now (connection lock held). */
int iocp__linux_conn_epfd(iocp__conn *c);

/* epoll data: connection ids start at 1 and never reach UINT64_MAX. */
#define IOCP__KEY_LISTENER UINT64_C(0)
#define IOCP__KEY_WAKE UINT64_MAX
/* Queue mode: the eventfd that wakes the caller inside iocp_wait(). */
#define IOCP__KEY_CALLER (UINT64_MAX - 1 - 1025)
/* A parked loop's set, nested in loop 0's (workers are at most 1024). */
#define IOCP__KEY_LOOP(i) (UINT64_MAX - 1 - (uint64_t)(i))
#define IOCP__KEY_LOOP_MIN IOCP__KEY_LOOP(1024)

/* The one translation of errno values to IOCP_ codes. */
int iocp__linux_error(int err);

/* How the engine reacts to a failed call's errno (syserr.c). */
enum iocp__linux_errclass {
  IOCP__ERR_AGAIN = 1, /* not ready yet (or interrupted): wait and retry */
  IOCP__ERR_RESOURCE,  /* out of descriptors or memory: back off */
  IOCP__ERR_PEER,      /* this connection failed (accept passes them on) */
  IOCP__ERR_OTHER      /* anything else */
};
int iocp__linux_errclass(int err);

#endif
