/* Facts about the machine for the core: processors and the cache line. */
#include "sys.h"

uint32_t iocp__sys_cpu_count(void) {
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  return si.dwNumberOfProcessors ? si.dwNumberOfProcessors : 1;
}

static int power_of_two(size_t n) { return n >= 16 && n <= 4096 && (n & (n - 1)) == 0; }

/* The first level-1 data cache GetLogicalProcessorInformation reports (a
 * machine with more entries than fit here gets the usual 64). */
size_t iocp__sys_cache_line(void) {
  SYSTEM_LOGICAL_PROCESSOR_INFORMATION info[128];
  DWORD bytes = sizeof(info), i;
  size_t line = 0;
  if (GetLogicalProcessorInformation(info, &bytes)) {
    for (i = 0; i < bytes / sizeof(info[0]); i++) {
      if (info[i].Relationship == RelationCache && info[i].Cache.Level == 1 &&
          (info[i].Cache.Type == CacheData || info[i].Cache.Type == CacheUnified)) {
        line = info[i].Cache.LineSize;
        break;
      }
    }
  }
  return power_of_two(line) ? line : 64;
}
