/* Parking, the policy (park.c is the mechanism): when a worker lends its
 * loop to worker 0, and when worker 0 gives it back. The policy is a pure
 * function of one window's measurements, so it is tested on its own
 * (test/c/test_park.c); this file also takes those measurements from the
 * kernel.
 *
 * Two reasons to park a worker (not worker 0):
 *
 * - Idle: its thread used under IOCP__PARK_BELOW percent of the window. A
 *   light load then pays the sleeps and wake-ups of one loop, not of every
 *   worker's, each with fewer events per wait.
 * - Oversubscribed: the machine does not give it a processor. A thread that
 *   was runnable but waited for a processor (the kernel's run-queue delay,
 *   /proc/thread-self/schedstat) for at least IOCP__PARK_WAIT percent of the
 *   time it wanted one (with a CPU time of IOCP__PARK_BELOW percent of the
 *   window at least, that is a twentieth of the window or more) shares
 *   processors with other busy threads: another worker, or a client
 *   on the same machine. A second worker then adds no capacity, only
 *   wake-ups that preempt the thread feeding it and cache lines that cross
 *   between cores. On a server with processors to spare it never triggers.
 *
 * A guest that worker 0 gave its loop back holds it a short while (two
 * windows in park.c), long enough to measure itself. If it then parks again
 * for oversubscription within IOCP__UNPARK_PROVEN_NS, giving it back was a
 * mistake (a burst of load on a machine whose other busy threads soon took
 * the idle processor back), and worker 0 waits IOCP__UNPARK_BACKOFF_MIN_NS,
 * then twice as long after each further mistake, up to
 * IOCP__UNPARK_BACKOFF_MAX_NS, before it gives a loop back again; a loop
 * kept longer, or parked for idleness, ends the backoff. So a wrong
 * decision costs two windows, and repeated ones fade out.
 *
 * Worker 0 gives one loop back per window while it used over
 * IOCP__UNPARK_ABOVE percent of the window and the processors this process
 * may run on were idle for at least half a processor's worth of it (from
 * /proc/stat): capacity a second worker can actually use. When /proc cannot
 * be read, a worker never parks for oversubscription and worker 0 unparks on
 * its own load alone, as before. */
#include "internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* IOCPSRV_PARK's range and default, as core/tuning.c reads it. */
_Static_assert(IOCP__PARK_NEVER == 0 && IOCP__PARK_OVERSUB == 2 && IOCP__PARK_CHURN == 3,
               "core/tuning.c: park");

#define IOCP__PARK_BELOW 20    /* %: an idle worker's CPU time in a window */
#define IOCP__PARK_WAIT 20     /* %: run-queue delay of the time wanted (CPU + delay) */
#define IOCP__UNPARK_ABOVE 70  /* %: worker 0's CPU time in a window */
#define IOCP__UNPARK_IDLE 50   /* %: idle processor time of the window, at least */
#define IOCP__UNPARK_PROVEN_NS (1000ull * 1000000)      /* a loop kept this long was right */
#define IOCP__UNPARK_BACKOFF_MIN_NS (200ull * 1000000)
#define IOCP__UNPARK_BACKOFF_MAX_NS (6400ull * 1000000)

int iocp__park_guest(const iocp__park_window *w, int mode) {
  uint64_t wanted;
  if (mode == IOCP__PARK_NEVER || w->span_ns == 0) return 0;
  if (mode == IOCP__PARK_CHURN) return IOCP__PARK_IDLE; /* a reason that never backs off */
  if (w->cpu_ns * 100 < w->span_ns * IOCP__PARK_BELOW) return IOCP__PARK_IDLE;
  if (mode < IOCP__PARK_OVERSUB || w->wait_ns < 0) return 0;
  wanted = w->cpu_ns + (uint64_t)w->wait_ns;
  return (uint64_t)w->wait_ns * 100 >= wanted * IOCP__PARK_WAIT ? IOCP__PARK_OVERSUB : 0;
}

uint64_t iocp__park_backoff(uint64_t prev_ns, uint64_t held_ns, int why, int mode) {
  if (mode == IOCP__PARK_CHURN || why != IOCP__PARK_OVERSUB || held_ns >= IOCP__UNPARK_PROVEN_NS)
    return 0;
  if (prev_ns < IOCP__UNPARK_BACKOFF_MIN_NS) return IOCP__UNPARK_BACKOFF_MIN_NS;
  return prev_ns >= IOCP__UNPARK_BACKOFF_MAX_NS / 2 ? IOCP__UNPARK_BACKOFF_MAX_NS : prev_ns * 2;
}

int iocp__park_host_busy(const iocp__park_window *w, int mode) {
  if (mode == IOCP__PARK_CHURN) return 1;
  return w->span_ns > 0 && w->cpu_ns * 100 > w->span_ns * IOCP__UNPARK_ABOVE;
}

int iocp__park_host(const iocp__park_window *w, int mode) {
  if (mode == IOCP__PARK_NEVER || !iocp__park_host_busy(w, mode)) return 0;
  if (mode == IOCP__PARK_CHURN || mode < IOCP__PARK_OVERSUB || w->idle_ns < 0) return 1;
  return (uint64_t)w->idle_ns * 100 >= w->span_ns * IOCP__UNPARK_IDLE;
}

/* ---- Measurements ------------------------------------------------------------ */

int iocp__park_open_self(void) {
  return open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
}

/* "run-ns wait-ns timeslices": the second number. */
int64_t iocp__park_wait_ns(int fd) {
  char buf[96], *p, *end;
  ssize_t n;
  unsigned long long v;
  if (fd < 0) return -1;
  n = iocp__hooks.pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return -1;
  buf[n] = '\0';
  strtoull(buf, &p, 10);
  if (p == buf) return -1;
  v = strtoull(p, &end, 10);
  return end == p ? -1 : (int64_t)v;
}

int64_t iocp__park_stat_idle(const char *text, const uint64_t *cpus, long tick_hz) {
  const char *p = text;
  unsigned long long ticks = 0;
  int found = 0;
  if (tick_hz <= 0) return -1;
  /* "cpu  ..." (the sum) first, then one "cpuN user nice system idle iowait
   * ..." line per processor; anything else ends them. */
  while (strncmp(p, "cpu", 3) == 0) {
    const char *nl = strchr(p, '\n');
    char *end;
    if (p[3] >= '0' && p[3] <= '9') {
      unsigned long cpu = strtoul(p + 3, &end, 10);
      if (nl != NULL && cpu < IOCP__PARK_CPU_WORDS * 64 &&
          (cpus == NULL || (cpus[cpu / 64] >> (cpu % 64) & 1))) {
        unsigned long long f[5];
        int i;
        for (i = 0; i < 5; i++) {
          const char *q = end;
          f[i] = strtoull(q, &end, 10);
          if (end == q) break;
        }
        if (i == 5) {
          ticks += f[3] + f[4]; /* idle + iowait */
          found = 1;
        }
      }
    }
    if (nl == NULL) break; /* a line cut short by the buffer: not counted */
    p = nl + 1;
  }
  if (!found) return -1;
  return (int64_t)(ticks * (1000000000ull / (unsigned long long)tick_hz));
}

void iocp__park_stat_open(struct iocp__eng_server *e) {
  cpu_set_t set;
  unsigned cpu;
  long conf = sysconf(_SC_NPROCESSORS_CONF);
  e->idle_prev_ns = -1;
  e->stat_fd = -1;
  e->tick_hz = sysconf(_SC_CLK_TCK);
  memset(e->cpus, 0, sizeof(e->cpus));
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (cpu = 0; cpu < IOCP__PARK_CPU_WORDS * 64 && cpu < CPU_SETSIZE; cpu++)
      if (CPU_ISSET(cpu, &set)) e->cpus[cpu / 64] |= (uint64_t)1 << (cpu % 64);
  } else {
    memset(e->cpus, 0xff, sizeof(e->cpus));
  }
  /* A line per processor (about 100 bytes) after the sum. */
  if (conf < 1) conf = 1;
  if (conf > IOCP__PARK_CPU_WORDS * 64) conf = IOCP__PARK_CPU_WORDS * 64;
  e->stat_cap = 256 + (size_t)conf * 160;
  e->stat_buf = iocp__malloc(e->stat_cap);
  if (e->stat_buf != NULL) e->stat_fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);
}

void iocp__park_stat_close(struct iocp__eng_server *e) {
  if (e->stat_fd >= 0) close(e->stat_fd);
  e->stat_fd = -1;
  iocp__free(e->stat_buf);
  e->stat_buf = NULL;
}

int64_t iocp__park_idle_ns(struct iocp__eng_server *e) {
  ssize_t n;
  if (e->stat_fd < 0) return -1;
  n = iocp__hooks.pread(e->stat_fd, e->stat_buf, e->stat_cap - 1, 0);
  if (n <= 0) return -1;
  e->stat_buf[n] = '\0';
  return iocp__park_stat_idle(e->stat_buf, e->cpus, e->tick_hz);
}
