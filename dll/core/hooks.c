/* The default contents of the allocator and socket call table. */
#include "internal.h"

#include <stdlib.h>

#define IOCP__HOOKS_DEFAULT { malloc, calloc, free, IOCP__ENGINE_HOOKS_DEFAULT }

struct iocp__hooks iocp__hooks = IOCP__HOOKS_DEFAULT;

void iocp__hooks_reset(void) {
  static const struct iocp__hooks defaults = IOCP__HOOKS_DEFAULT;
  iocp__hooks = defaults;
}
