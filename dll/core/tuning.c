/* The library's tuning, read once per server: the one place that reads the
 * environment. Switches for the tests and the benchmark (test/bench), not an
 * interface: the shipped library never changes iocp__tuning_defaults, and an
 * application sets none of the variables. dll/README.md lists them. */
#include "internal.h"

#include <limits.h>
#include <stdlib.h>

iocp__tuning iocp__tuning_defaults = {
    2,    /* park: IOCP__PARK_OVERSUB (dll/linux/internal.h) */
    1,    /* zero_byte_recv */
    0,    /* skip_on_success: off (dll/README.md says why) */
    1,    /* try_send */
    1,    /* dequeue_batch */
    -1,   /* hot_budget: the engine's default */
    1000, /* hot_idle_ms */
};

/* The variable's text, or NULL when it is unset. */
static const char *env_text(const char *name, char *buf, size_t cap) {
#if defined(_WIN32)
  /* The process's environment block, which SetEnvironmentVariable (a .NET
   * host's Environment.SetEnvironmentVariable) changes; the C runtime's copy
   * that getenv reads may not see that. A value too long for buf is none. */
  DWORD n = GetEnvironmentVariableA(name, buf, (DWORD)cap);
  return n == 0 || n >= cap ? NULL : buf;
#else
  (void)buf;
  (void)cap;
  return getenv(name);
#endif
}

int iocp__tuning_number(const char *text, int dflt, int lo, int hi) {
  char *end;
  long x;
  if (text == NULL) return dflt;
  x = strtol(text, &end, 10);
  return end != text && *end == '\0' && x >= lo && x <= hi ? (int)x : dflt;
}

static int env_number(const char *name, int dflt, int lo, int hi) {
  char buf[16];
  return iocp__tuning_number(env_text(name, buf, sizeof(buf)), dflt, lo, hi);
}

void iocp__tuning_load(iocp__tuning *t) {
  const iocp__tuning *d = &iocp__tuning_defaults;
  int batch = d->dequeue_batch < 1 ? 1
              : d->dequeue_batch > IOCP__TUNING_DEQUEUE_MAX ? IOCP__TUNING_DEQUEUE_MAX
                                                            : d->dequeue_batch;
  t->park = env_number("IOCPSRV_PARK", d->park, 0, 3);
  t->zero_byte_recv = d->zero_byte_recv;
  t->skip_on_success = env_number("IOCPSRV_SKIP_ON_SUCCESS", d->skip_on_success != 0, 0, 1);
  t->try_send = env_number("IOCPSRV_TRY_SEND", d->try_send != 0, 0, 1);
  t->dequeue_batch = env_number("IOCPSRV_DEQUEUE_BATCH", batch, 1, IOCP__TUNING_DEQUEUE_MAX);
  t->hot_budget = env_number("IOCPSRV_HOT_BUDGET", d->hot_budget, -1, INT_MAX);
  t->hot_idle_ms = env_number("IOCPSRV_HOT_IDLE_MS", d->hot_idle_ms, 1, 3600000);
}
