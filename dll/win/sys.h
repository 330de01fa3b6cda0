/* Windows primitives for the core: slim reader/writer locks (wrapped as
 * iocp__mutex, with its debug checks, in core/sys.h) and condition
 * variables (no destruction needed, no allocation). */
#ifndef IOCP_WIN_SYS_H
#define IOCP_WIN_SYS_H

/* Defaults only: a build may choose others. */
#ifndef WIN32_LEAN_AND_MEAN
#  define WIN32_LEAN_AND_MEAN
#endif
#ifndef _WIN32_WINNT
#  define _WIN32_WINNT 0x0601 /* Windows 7: SRW locks, CancelIoEx */
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <stddef.h>
#include <stdint.h>

typedef SRWLOCK iocp__os_mutex;
typedef CONDITION_VARIABLE iocp__cond;

static inline void iocp__os_mutex_init(iocp__os_mutex *m) { InitializeSRWLock(m); }
static inline void iocp__os_mutex_destroy(iocp__os_mutex *m) { (void)m; }
static inline void iocp__os_mutex_lock(iocp__os_mutex *m) { AcquireSRWLockExclusive(m); }
static inline void iocp__os_mutex_unlock(iocp__os_mutex *m) { ReleaseSRWLockExclusive(m); }
/* For a mutex with static storage duration (never destroyed). */
#define IOCP__OS_MUTEX_INIT SRWLOCK_INIT
/* Lets another thread run (a short wait on a rare path). */
static inline void iocp__yield(void) { SwitchToThread(); }

static inline void iocp__cond_init(iocp__cond *c) { InitializeConditionVariable(c); }
static inline void iocp__cond_destroy(iocp__cond *c) { (void)c; }
static inline void iocp__os_cond_wait(iocp__cond *c, iocp__os_mutex *m) {
  SleepConditionVariableSRW(c, m, INFINITE, 0);
}
static inline void iocp__cond_broadcast(iocp__cond *c) { WakeAllConditionVariable(c); }

/* Waits at most ms milliseconds (or until woken); spurious wake-ups happen. */
static inline void iocp__os_cond_wait_ms(iocp__cond *c, iocp__os_mutex *m, uint32_t ms) {
  SleepConditionVariableSRW(c, m, ms, 0);
}

/* Monotonic milliseconds. */
static inline uint64_t iocp__now_ms(void) { return GetTickCount64(); }

/* A thread of the core's own (the idle timer); 0 or an IOCP_ code. */
typedef HANDLE iocp__thread;
static inline int iocp__thread_start(iocp__thread *t, DWORD(WINAPI *fn)(void *), void *arg) {
  *t = CreateThread(NULL, 0, fn, arg, 0, NULL);
  return *t != NULL ? 0 : -10 /* IOCP_ESYSTEM */;
}
static inline void iocp__thread_join(iocp__thread t) {
  WaitForSingleObject(t, INFINITE);
  CloseHandle(t);
}
#define IOCP__THREAD_FN(name, arg) DWORD WINAPI name(void *arg)
#define IOCP__THREAD_RETURN return 0

/* A 32-bit value written by one thread and read by others, untorn. */
typedef volatile LONG iocp__atomic32;
static inline uint32_t iocp__load32(const iocp__atomic32 *p) { return (uint32_t)*p; }
static inline void iocp__store32(iocp__atomic32 *p, uint32_t v) {
  InterlockedExchange((LONG *)p, (LONG)v);
}

/* A flag for a wake-up handshake: each side writes its half, then reads the
 * other's (full fences, so one of the two always sees the other). */
static inline uint32_t iocp__exchange32(iocp__atomic32 *p, uint32_t v) {
  return (uint32_t)InterlockedExchange((LONG *)p, (LONG)v);
}
static inline uint32_t iocp__load32_fenced(const iocp__atomic32 *p) {
  return (uint32_t)InterlockedCompareExchange((LONG *)(uintptr_t)p, 0, 0);
}

/* The head of a list that threads push to without a lock. */
typedef PVOID volatile iocp__atomicptr;
static inline void *iocp__ptr_load(iocp__atomicptr *p) {
  return InterlockedCompareExchangePointer(p, NULL, NULL);
}
static inline void *iocp__ptr_exchange(iocp__atomicptr *p, void *v) {
  return InterlockedExchangePointer(p, v);
}
static inline int iocp__ptr_cas(iocp__atomicptr *p, void *expect, void *v) {
  return InterlockedCompareExchangePointer(p, v, expect) == expect;
}

/* A reference count; iocp__ref_add returns the value before adding. */
typedef volatile LONG iocp__refcount;
static inline long iocp__ref_add(iocp__refcount *r, long d) { return InterlockedExchangeAdd(r, d); }

/* A process-wide 64-bit sequence; iocp__seq_next returns the value before. */
typedef volatile LONG64 iocp__seq;
static inline uint64_t iocp__seq_next(iocp__seq *q) {
  return (uint64_t)InterlockedIncrement64(q) - 1;
}

/* A statistics counter: added to by one thread at a time as a rule (a
 * worker's own slot), read by any thread without a lock. */
typedef volatile LONG64 iocp__counter;
static inline void iocp__counter_add(iocp__counter *c, int64_t d) { InterlockedExchangeAdd64(c, d); }
static inline int64_t iocp__counter_read(iocp__counter *c) {
  return InterlockedCompareExchange64(c, 0, 0); /* whole even on x86 */
}

/* Facts about the machine, asked once per server (sys.c). */
uint32_t iocp__sys_cpu_count(void);
size_t iocp__sys_cache_line(void); /* L1 data cache line in bytes, a power of two */

#endif
