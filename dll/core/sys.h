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
#else
#  define IOCP__TLS _Thread_local
#endif

#endif
