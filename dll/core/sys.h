/* Locks, condition variables, atomics and thread-locals for the platform-free
 * core. Each OS supplies the same small set of inline wrappers. */
#ifndef IOCP_CORE_SYS_H
#define IOCP_CORE_SYS_H

#include <stdatomic.h>

#if defined(_WIN32)
#  include "../win/sys_win.h"
#else
#  include "../linux/sys_posix.h"
#endif

#define IOCP__TLS _Thread_local

#endif
