/* The debug checks of the locks (sys.h): who holds each, and the order they
 * are taken in. Compiled to nothing with NDEBUG. */
#include "sys.h"

#include <assert.h>

#if IOCP__LOCK_CHECKS

IOCP__TLS unsigned iocp__ranks_held;

void iocp__lock_taken(iocp__mutex *m) {
  unsigned bit = 1u << m->rank;
  /* No lock of this rank or a higher one is held: the order holds. */
  assert(m->rank < IOCP__RANK_COUNT);
  assert((iocp__ranks_held & ~(bit - 1u)) == 0);
  assert(iocp__ptr_load(&m->holder) == NULL);
  iocp__ranks_held |= bit;
  (void)iocp__ptr_exchange(&m->holder, iocp__lock_me());
}

void iocp__lock_leaving(iocp__mutex *m) {
  assert(iocp__ptr_load(&m->holder) == iocp__lock_me());
  (void)iocp__ptr_exchange(&m->holder, NULL);
  iocp__ranks_held &= ~(1u << m->rank);
}

#else

typedef int iocp__no_lock_checks; /* ISO C wants a declaration per file */

#endif
