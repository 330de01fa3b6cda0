/* The one table through which the library reaches the allocator and the
 * socket layer (SQLite's aSyscall[] idea). Tests linked against the static
 * build replace entries to make any of these calls fail; the shipped library
 * never changes it. The engine lists its own socket calls in
 * IOCP__ENGINE_HOOKS (see win/eng.h, linux/eng.h: the part of each engine
 * the core embeds; neither engine's internal.h is seen here). */
#ifndef IOCP_CORE_HOOKS_H
#define IOCP_CORE_HOOKS_H

#include <stddef.h>
#if defined(_WIN32)
#  include "../win/eng.h"
#else
#  include "../linux/eng.h"
#endif

struct iocp__hooks {
  void *(*malloc)(size_t size);
  void *(*calloc)(size_t n, size_t size);
  void (*free)(void *p);
  IOCP__ENGINE_HOOKS
};

extern struct iocp__hooks iocp__hooks;

/* Puts every entry back to the real function. */
void iocp__hooks_reset(void);

#define iocp__malloc(n) (iocp__hooks.malloc(n))
#define iocp__calloc(n, s) (iocp__hooks.calloc((n), (s)))
#define iocp__free(p) (iocp__hooks.free(p))

#endif
