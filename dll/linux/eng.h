/* The epoll engine's part of the server and connection structs, which the
 * core embeds (core/engine.h: iocp__conn_eng, iocp__server_eng), and its
 * entries in the call table (core/hooks.h), as libuv's include/uv/unix.h.
 * Nothing else: the engine's own declarations are in internal.h, which only
 * the engine's files include. */
#ifndef IOCP_LINUX_ENG_H
#define IOCP_LINUX_ENG_H

#include "../core/sys.h" /* iocp__mutex */

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

/* A node of a loop's task queue. Every node is embedded in the
 * connection or the server it belongs to, so queueing never allocates and
 * cannot fail. A connection's node is recovered from its address. */
typedef struct iocp__task {
  struct iocp__task *next;
  int kind;   /* enum iocp__task_kind (internal.h) */
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
  unsigned moved : 1;      /* its loop is parked: the socket sits in loop 0's set (park.c) */
  int niov;
  struct iocp__eng_loop *loop; /* the worker whose epoll set holds the socket */
  struct iovec iov[IOCP__LINUX_MAX_IOV];
  iocp__task recv_task;
  iocp__task send_task;
  iocp__task run_task;
  iocp__task connect_task;
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
  int park_mode;           /* IOCP__PARK_*: the tuning's park (IOCPSRV_PARK) */
  atomic_ullong park_next_ns; /* no worker parks before (one per two windows) */
  atomic_ullong unpark_next_ns; /* worker 0 gives no loop back before */
  uint64_t unpark_backoff_ns; /* under park_lock: the wait after a guest parked */
  /* Worker 0's idle-processor readings (park_policy.c); only it touches them. */
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
  /* iocp_wait_handle() (caller.c): the set given out, and the eventfd in it
   * the core signals; -1 until asked for. */
  int handle_epfd, handle_evfd;

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
  /* Parking's clocks and reads of the kernel's figures (park*.c). */            \
  int (*clock_gettime)(clockid_t id, struct timespec *ts);                        \
  ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);

#define IOCP__ENGINE_HOOKS_DEFAULT                                                 \
  socket, bind, listen, setsockopt, getsockname, getsockopt, connect, close,      \
      shutdown, recv, sendmsg, send,                                               \
      accept4, epoll_create1, epoll_ctl, epoll_wait, eventfd, pthread_create,      \
      clock_gettime, pread

#endif
