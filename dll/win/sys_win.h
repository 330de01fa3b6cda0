/* Windows primitives for the core: slim reader/writer locks and condition
 * variables (no destruction needed, no allocation). */
#ifndef IOCP_WIN_SYS_WIN_H
#define IOCP_WIN_SYS_WIN_H

#ifndef WIN32_LEAN_AND_MEAN
#  define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

typedef SRWLOCK iocp__mutex;
typedef CONDITION_VARIABLE iocp__cond;

static inline void iocp__mutex_init(iocp__mutex *m) { InitializeSRWLock(m); }
static inline void iocp__mutex_destroy(iocp__mutex *m) { (void)m; }
static inline void iocp__mutex_lock(iocp__mutex *m) { AcquireSRWLockExclusive(m); }
static inline void iocp__mutex_unlock(iocp__mutex *m) { ReleaseSRWLockExclusive(m); }

static inline void iocp__cond_init(iocp__cond *c) { InitializeConditionVariable(c); }
static inline void iocp__cond_destroy(iocp__cond *c) { (void)c; }
static inline void iocp__cond_wait(iocp__cond *c, iocp__mutex *m) {
  SleepConditionVariableSRW(c, m, INFINITE, 0);
}
static inline void iocp__cond_broadcast(iocp__cond *c) { WakeAllConditionVariable(c); }

#endif
