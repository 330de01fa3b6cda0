/* Facts about the machine for the core: processors and the cache line. */
#include "sys.h"

#include <stdio.h>
#include <unistd.h>

uint32_t iocp__sys_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (uint32_t)n : 1;
}

static int power_of_two(long n) { return n >= 16 && n <= 4096 && (n & (n - 1)) == 0; }

/* sysconf first; some C libraries and kernels leave it 0, so sysfs next. */
size_t iocp__sys_cache_line(void) {
  long n = 0;
#if defined(_SC_LEVEL1_DCACHE_LINESIZE)
  n = sysconf(_SC_LEVEL1_DCACHE_LINESIZE);
#endif
  if (!power_of_two(n)) {
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index0/coherency_line_size", "re");
    n = 0;
    if (f != NULL) {
      if (fscanf(f, "%ld", &n) != 1) n = 0;
      fclose(f);
    }
  }
  return power_of_two(n) ? (size_t)n : 64;
}
