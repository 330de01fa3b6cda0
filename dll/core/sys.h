/* Locks, condition variables, atomic counters and thread-locals for the
 * platform-free core. Each OS supplies the same small set of inline wrappers
 * (Interlocked* on Windows, so MSVC needs no C11 atomics); the lock, with
 * its debug checks, is built here on the OS's (iocp__os_mutex). */
#ifndef IOCP_CORE_SYS_H
#define IOCP_CORE_SYS_H

#if defined(_WIN32)
#  include "../win/sys.h"
#else
#  include "../linux/sys.h"
#endif

#if defined(_MSC_VER)
#  define IOCP__TLS __declspec(thread)
#elif defined(__GNUC__) && !defined(_WIN32)
/* Initial-exec: each access is an offset from the thread pointer, not a
 * __tls_get_addr() call (about 1% of an echo's time). The library's few
 * thread-locals (under 64 bytes) fit the static TLS space glibc keeps for
 * libraries loaded later with dlopen (ctypes, Mono). */
#  define IOCP__TLS _Thread_local __attribute__((tls_model("initial-exec")))
#else
#  define IOCP__TLS _Thread_local
#endif

/* ---- Locks -------------------------------------------------------------------
 * The lock order (dll/README.md): a thread that holds a lock takes only
 * locks of a higher rank. Every lock has its rank from iocp__mutex_init. */
enum iocp__lock_rank {
  IOCP__RANK_PARK = 0,  /* epoll engine: park_lock (parking, one loop at a time) */
  IOCP__RANK_SHARD,     /* a shard of the connection table */
  IOCP__RANK_CONN,      /* a connection */
  IOCP__RANK_QUEUE,     /* epoll engine: a loop's task queue (qlock) */
  IOCP__RANK_BUFFERS,   /* the receive buffer pool (worker.c) */
  IOCP__RANK_ACCEPT,    /* the engine's accept_lock */
  IOCP__RANK_CALLER,    /* epoll engine: caller_lock (queue mode's caller) */
  IOCP__RANK_SERVER,    /* the server's lock (event queue, timer, stop) */
  IOCP__RANK_POOL,      /* the process-wide pool of server structs (server.c) */
  IOCP__RANK_COUNT
};

/* Without NDEBUG each lock records the thread that holds it, and each thread
 * the ranks it holds (as SQLite's sqlite3BtreeHoldsMutex): a function whose
 * name ends in _locked asserts iocp__mutex_held(its lock), and taking a lock
 * asserts the order. The holder is written only by the thread that holds
 * the lock and read by any thread to compare with itself: atomically, so
 * ThreadSanitizer sees no race. */
#if !defined(NDEBUG)
#  define IOCP__LOCK_CHECKS 1
#else
#  define IOCP__LOCK_CHECKS 0
#endif

typedef struct iocp__mutex {
  iocp__os_mutex os;
#if IOCP__LOCK_CHECKS
  iocp__atomicptr holder; /* the holding thread's marker, or NULL */
  unsigned rank;          /* enum iocp__lock_rank */
#endif
} iocp__mutex;

#if IOCP__LOCK_CHECKS
/* For a mutex with static storage duration (never destroyed). */
#  define IOCP__MUTEX_INIT(rank) {IOCP__OS_MUTEX_INIT, NULL, (rank)}
/* The ranks this thread holds, a bit each; its address marks the thread. */
extern IOCP__TLS unsigned iocp__ranks_held;
static inline void *iocp__lock_me(void) { return (void *)&iocp__ranks_held; }
/* locks.c: the order's assertion, and the holder's book-keeping. */
void iocp__lock_taken(iocp__mutex *m);
void iocp__lock_leaving(iocp__mutex *m);
#else
#  define IOCP__MUTEX_INIT(rank) {IOCP__OS_MUTEX_INIT}
#endif

static inline void iocp__mutex_init(iocp__mutex *m, enum iocp__lock_rank rank) {
  iocp__os_mutex_init(&m->os);
#if IOCP__LOCK_CHECKS
  m->holder = NULL;
  m->rank = (unsigned)rank;
#else
  (void)rank;
#endif
}
static inline void iocp__mutex_destroy(iocp__mutex *m) { iocp__os_mutex_destroy(&m->os); }
static inline void iocp__mutex_lock(iocp__mutex *m) {
  iocp__os_mutex_lock(&m->os);
#if IOCP__LOCK_CHECKS
  iocp__lock_taken(m);
#endif
}
static inline void iocp__mutex_unlock(iocp__mutex *m) {
#if IOCP__LOCK_CHECKS
  iocp__lock_leaving(m);
#endif
  iocp__os_mutex_unlock(&m->os);
}
/* Nonzero when the calling thread holds m (always, without the checks):
 * for assert() only. */
static inline int iocp__mutex_held(iocp__mutex *m) {
#if IOCP__LOCK_CHECKS
  return iocp__ptr_load(&m->holder) == iocp__lock_me();
#else
  (void)m;
  return 1;
#endif
}

/* Condition variables wait on the OS lock inside; the holder is handed back
 * and forth around the wait. */
static inline void iocp__cond_wait(iocp__cond *c, iocp__mutex *m) {
#if IOCP__LOCK_CHECKS
  iocp__lock_leaving(m);
#endif
  iocp__os_cond_wait(c, &m->os);
#if IOCP__LOCK_CHECKS
  iocp__lock_taken(m);
#endif
}
/* Waits at most ms milliseconds (or until woken); spurious wake-ups happen. */
static inline void iocp__cond_wait_ms(iocp__cond *c, iocp__mutex *m, uint32_t ms) {
#if IOCP__LOCK_CHECKS
  iocp__lock_leaving(m);
#endif
  iocp__os_cond_wait_ms(c, &m->os, ms);
#if IOCP__LOCK_CHECKS
  iocp__lock_taken(m);
#endif
}

#endif
