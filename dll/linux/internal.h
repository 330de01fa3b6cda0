/* The epoll engine's own declarations, shared by its files (engine.c,
 * loop.c, park.c, park_policy.c, caller.c, connect.c, syserr.c) and by
 * white-box tests; the core never includes it (as libuv's src/unix/internal.h).
 *
 * epoll reports readiness; the core wants completions. The engine bridges
 * the two: a posted receive or send is remembered in the connection, a
 * worker performs the system call when the socket is ready, and the result
 * is reported to the core once. Results that are known while the
 * connection's lock is held (an immediate send, an operation aborted by a
 * close) travel through a task queue (the worker's own list, or the queue
 * of the connection's loop), so the core is never entered from inside an
 * engine call. */
#ifndef IOCP_LINUX_INTERNAL_H
#define IOCP_LINUX_INTERNAL_H

#include "../core/engine.h"

#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>

enum iocp__task_kind {
  IOCP__TASK_RUN = 1, /* iocp__conn_run */
  IOCP__TASK_RECV,    /* iocp__conn_recv_done(result, bytes) */
  IOCP__TASK_SEND,    /* iocp__conn_send_done(result, bytes) */
  IOCP__TASK_CONNECT, /* iocp__conn_connected(result: an IOCP_ code) */
  IOCP__TASK_STOP     /* the worker that takes it exits */
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
  /* Passes (park.c: owe_pass): events its worker's waits took, the turn
   * of its last wait that did not fill the array (its worker only), and
   * what it owes since sockets last moved into its set (worker 0's under
   * park_lock, the others' their own worker's). */
  atomic_ullong taken;
  unsigned short_turn, owe_turn;
  uint64_t owe_taken;
};

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

/* Parking (park.c, the mechanism; park_policy.c, the policy): how a worker
 * lends its loop to worker 0. The loop's calls: */
/* Before the loops are made (mode already set) and after they are gone. */
void iocp__park_init(struct iocp__eng_server *e, uint32_t nloops);
void iocp__park_fini(struct iocp__eng_server *e);
/* On each worker: first (nonzero when it takes part in parking), after each
 * wait when it does, and last. */
int iocp__park_worker_begin(struct iocp__eng_loop *l);
void iocp__park_after_wait(struct iocp__eng_loop *l);
void iocp__park_worker_end(struct iocp__eng_loop *l);
/* How long an idle worker that may park waits before it looks again. */
int iocp__park_look_ms(const struct iocp__eng_server *e);
/* Every parked loop goes home, and none parks again (stopping, or worker 0
 * left). */
void iocp__park_stop(struct iocp__eng_server *e);
/* The policy (park_policy.c) and its measurements. 
 * The tuning's park (core/engine.h: IOCPSRV_PARK) picks a mode: 0 never, 1 idle
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
 * has not served it for this long (caller.c). Longer than an event loop's
 * ordinary turn: a Python asyncio loop's turn at 1,000 connections runs a
 * few milliseconds of callbacks, and at 2 ms worker 0 woke thousands of
 * times a second to take sockets the loop would have served itself at its
 * next turn (a quarter more CPU per echo, no more echoes). A caller stuck
 * in its own code still finds its sends and accepts served. */
#define IOCP__CALLER_AWAY_MS 10
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
