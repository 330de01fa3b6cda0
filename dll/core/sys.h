/* Locks, condition variables, atomic counters and thread-locals for the
 * platform-free core. Each OS supplies the same small set of inline wrappers
 * (Interlocked* on Windows, so MSVC needs no C11 atomics). */
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

#endif
