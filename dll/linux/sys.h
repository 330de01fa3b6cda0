/* POSIX primitives for the core: pthread mutexes (wrapped as iocp__mutex,
 * with its debug checks, in core/sys.h) and condition variables. */
#ifndef IOCP_LINUX_SYS_H
#define IOCP_LINUX_SYS_H

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef pthread_mutex_t iocp__os_mutex;
typedef pthread_cond_t iocp__cond;

static inline void iocp__os_mutex_init(iocp__os_mutex *m) { pthread_mutex_init(m, NULL); }
static inline void iocp__os_mutex_destroy(iocp__os_mutex *m) { pthread_mutex_destroy(m); }
static inline void iocp__os_mutex_lock(iocp__os_mutex *m) { pthread_mutex_lock(m); }
static inline void iocp__os_mutex_unlock(iocp__os_mutex *m) { pthread_mutex_unlock(m); }
/* For a mutex with static storage duration (never destroyed). */
#define IOCP__OS_MUTEX_INIT PTHREAD_MUTEX_INITIALIZER
/* Lets another thread run (a short wait on a rare path). */
static inline void iocp__yield(void) { sched_yield(); }

/* Timed waits measure on the monotonic clock (immune to clock changes). */
static inline void iocp__cond_init(iocp__cond *c) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
}
static inline void iocp__cond_destroy(iocp__cond *c) { pthread_cond_destroy(c); }
static inline void iocp__os_cond_wait(iocp__cond *c, iocp__os_mutex *m) { pthread_cond_wait(c, m); }
static inline void iocp__cond_broadcast(iocp__cond *c) { pthread_cond_broadcast(c); }

/* Waits at most ms milliseconds (or until woken); spurious wake-ups happen. */
static inline void iocp__os_cond_wait_ms(iocp__cond *c, iocp__os_mutex *m, uint32_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts); /* the clock iocp__cond_init chose */
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_cond_timedwait(c, m, &ts);
}

/* Monotonic milliseconds. */
static inline uint64_t iocp__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Library threads take no process-wide signals (Ctrl-C, termination, child
 * exits, SIGPIPE): those belong to the application's threads. Thread-directed
 * signals stay open: managed runtimes stop threads that ran their code with
 * them (Mono suspends for garbage collection with a real-time signal; a
 * worker that blocked it hung the collector, and so the C# sample). A
 * thread inherits its creator's mask: block them around pthread_create. */
static inline void iocp__signals_block(sigset_t *old) {
  static const int process_signals[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGTERM, SIGPIPE,
                                        SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2, SIGTSTP,
                                        SIGTTIN, SIGTTOU, SIGWINCH, SIGURG, SIGVTALRM,
                                        SIGPROF};
  sigset_t block;
  size_t i;
  sigemptyset(&block);
  for (i = 0; i < sizeof(process_signals) / sizeof(process_signals[0]); i++)
    sigaddset(&block, process_signals[i]);
  pthread_sigmask(SIG_BLOCK, &block, old);
}
static inline void iocp__signals_restore(const sigset_t *old) {
  pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* A thread of the core's own (the idle timer); 0 or an IOCP_ code. */
typedef pthread_t iocp__thread;
static inline int iocp__thread_start(iocp__thread *t, void *(*fn)(void *), void *arg) {
  sigset_t old;
  int err;
  iocp__signals_block(&old);
  err = pthread_create(t, NULL, fn, arg);
  iocp__signals_restore(&old);
  return err == 0 ? 0 : -10 /* IOCP_ESYSTEM */;
}
static inline void iocp__thread_join(iocp__thread t) { pthread_join(t, NULL); }
#define IOCP__THREAD_FN(name, arg) void *name(void *arg)
#define IOCP__THREAD_RETURN return NULL

/* A 32-bit value written by one thread and read by others, untorn. */
typedef uint32_t iocp__atomic32;
static inline uint32_t iocp__load32(const iocp__atomic32 *p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void iocp__store32(iocp__atomic32 *p, uint32_t v) {
  __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* A flag for a wake-up handshake: each side writes its half, then reads the
 * other's (full fences, so one of the two always sees the other). */
static inline uint32_t iocp__exchange32(iocp__atomic32 *p, uint32_t v) {
  return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
static inline uint32_t iocp__load32_fenced(const iocp__atomic32 *p) {
  return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

/* The head of a list that threads push to without a lock. */
typedef void *iocp__atomicptr;
static inline void *iocp__ptr_load(iocp__atomicptr *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void *iocp__ptr_exchange(iocp__atomicptr *p, void *v) {
  return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
static inline int iocp__ptr_cas(iocp__atomicptr *p, void *expect, void *v) {
  return __atomic_compare_exchange_n(p, &expect, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

/* A reference count; iocp__ref_add returns the value before adding. */
typedef int iocp__refcount;
static inline long iocp__ref_add(iocp__refcount *r, long d) {
  return __atomic_fetch_add(r, (int)d, __ATOMIC_ACQ_REL);
}

/* A process-wide 64-bit sequence; iocp__seq_next returns the value before. */
typedef uint64_t iocp__seq;
static inline uint64_t iocp__seq_next(iocp__seq *q) {
  return __atomic_fetch_add(q, 1, __ATOMIC_RELAXED);
}

/* A statistics counter: added to by one thread at a time as a rule (a
 * worker's own slot), read by any thread without a lock. Relaxed: a sum read
 * while workers run is a snapshot, not a fence. */
typedef int64_t iocp__counter;
static inline void iocp__counter_add(iocp__counter *c, int64_t d) {
  __atomic_fetch_add(c, d, __ATOMIC_RELAXED);
}
static inline int64_t iocp__counter_read(const iocp__counter *c) {
  return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* Facts about the machine, asked once per server (sys.c). */
uint32_t iocp__sys_cpu_count(void);
size_t iocp__sys_cache_line(void); /* L1 data cache line in bytes, a power of two */

#endif
