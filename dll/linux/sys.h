/* POSIX primitives for the core: pthread mutexes and condition variables. */
#ifndef IOCP_LINUX_SYS_H
#define IOCP_LINUX_SYS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef pthread_mutex_t iocp__mutex;
typedef pthread_cond_t iocp__cond;

static inline void iocp__mutex_init(iocp__mutex *m) { pthread_mutex_init(m, NULL); }
static inline void iocp__mutex_destroy(iocp__mutex *m) { pthread_mutex_destroy(m); }
static inline void iocp__mutex_lock(iocp__mutex *m) { pthread_mutex_lock(m); }
static inline void iocp__mutex_unlock(iocp__mutex *m) { pthread_mutex_unlock(m); }

/* Timed waits measure on the monotonic clock (immune to clock changes). */
static inline void iocp__cond_init(iocp__cond *c) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
}
static inline void iocp__cond_destroy(iocp__cond *c) { pthread_cond_destroy(c); }
static inline void iocp__cond_wait(iocp__cond *c, iocp__mutex *m) { pthread_cond_wait(c, m); }
static inline void iocp__cond_broadcast(iocp__cond *c) { pthread_cond_broadcast(c); }
/* Waits at most ms milliseconds (spurious wake-ups possible). */
static inline void iocp__cond_wait_ms(iocp__cond *c, iocp__mutex *m, uint32_t ms) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  t.tv_sec += ms / 1000;
  t.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (t.tv_nsec >= 1000000000L) {
    t.tv_sec++;
    t.tv_nsec -= 1000000000L;
  }
  pthread_cond_timedwait(c, m, &t);
}
/* A monotonic clock in milliseconds. */
static inline uint64_t iocp__now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
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
