/* Echo load generator: native Linux, one thread, epoll.
 *
 *   loadgen --port N [--conns C] [--size M] [--inflight K] [--seconds D]
 *           [--warmup W] [--cpu-pid PID] [--watch-pid PID]
 *
 * Opens C connections to 127.0.0.1:N. Each keeps K M-byte messages in flight
 * (default 1): it sends them back to back, checks every echoed byte, and
 * sends a new message each time one has come back whole. The first W
 * seconds are a warm-up (not counted); then for D seconds every completed
 * echo is counted and its round trip (first byte sent -> last byte back) is
 * recorded. Prints one line of key=value pairs:
 *
 *   conns=50 size=64 inflight=1 seconds=3.000 echoes=31234 echoes_per_s=10411.3
 *   mb_per_s=0.666 p50_us=4120.5 p99_us=9981.0 max_us=15034.2 errors=0
 *
 * (on one line). MB/s counts payload bytes echoed, one direction, 10^6 B.
 * With --cpu-pid, the CPU time (user + system, all threads) that process
 * used during the measured seconds is read from /proc/PID/stat at their start
 * and end, and printed per echo: server_cpu_pct=... server_cpu_us_per_echo=...
 * The client's own CPU share over the same seconds is always printed
 * (client_cpu_pct=...: near 100, the client, not the server, sets the rate),
 * and with --watch-pid that of one more process (watched_cpu_pct=...: under
 * Wine, the wineserver, through which every socket call of the server goes).
 * It always stops by itself: after W + D seconds, or at the first wrong byte,
 * closed connection or failed connect (then errors > 0 and the exit status
 * is 1). Loopback only, by design: it is a benchmark client, not a tool. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 20000
#define MAX_SIZE (16u << 20)
#define MAX_SECONDS 600.0
#define CONNECT_TIMEOUT_S 10

#define MAX_INFLIGHT 64

/* Messages are numbered from 1 (the number varies the pattern from echo to
 * echo); message `seq` lives in slot seq % K of msg and t_start. */
struct conn {
  int fd;
  int idx;
  uint32_t send_seq;  /* the message being sent, or the next one to send */
  uint32_t recv_seq;  /* the oldest message not yet echoed whole */
  uint32_t filled;    /* the newest message written into its slot */
  size_t sent, got;   /* bytes of send_seq sent / of recv_seq echoed back */
  int want_out;       /* EPOLLOUT currently requested */
  double *t_start;    /* [K]: when each message's first byte went out */
  unsigned char *msg; /* [K * M] */
};

static uint32_t inflight = 1; /* K */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The byte at offset i of message `seq` on connection `idx`: cheap, and a
 * byte echoed to the wrong connection, out of order or from an old message
 * shows up as a mismatch. */
static unsigned char pattern(int idx, uint32_t seq, size_t i) {
  uint32_t x = (uint32_t)i * 2654435761u ^ seq * 40503u ^ (uint32_t)idx * 977u;
  return (unsigned char)(x >> 13);
}

static unsigned char *slot(const struct conn *c, uint32_t seq, size_t size) {
  return c->msg + (size_t)(seq % inflight) * size;
}

static void fill(struct conn *c, uint32_t seq, size_t size) {
  unsigned char *m = slot(c, seq, size);
  size_t i;
  for (i = 0; i < size; i++) m[i] = pattern(c->idx, seq, i);
}

/* utime + stime of process `pid`, in seconds; -1 if unreadable. */
static double proc_cpu_s(long pid) {
  char path[64], text[1024], *p;
  unsigned long long ut, st;
  size_t n;
  FILE *f;
  snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
  f = fopen(path, "r");
  if (f == NULL) return -1;
  n = fread(text, 1, sizeof(text) - 1, f);
  fclose(f);
  text[n] = '\0';
  p = strrchr(text, ')'); /* the name may hold spaces; fields 3.. follow it */
  if (p == NULL || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                          &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* This process's CPU time (all threads), in seconds. */
static double self_cpu_s(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return -1;
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A process's CPU share in percent between two readings; -1 if unknown. */
static double cpu_pct(double c0, double c1, double t0, double t1) {
  return c0 >= 0 && c1 >= c0 && t1 > t0 ? (c1 - c0) / (t1 - t0) * 100.0 : -1;
}

static int parse_num(const char *s, double lo, double hi, double *out) {
  char *end;
  double v;
  if (s == NULL || *s == '\0') return -1;
  v = strtod(s, &end);
  if (*end != '\0' || !(v >= lo && v <= hi)) return -1;
  *out = v;
  return 0;
}

static int usage(const char *prog) {
  fprintf(stderr,
          "usage: %s --port N [--conns C] [--size BYTES] [--inflight K] [--seconds D]\n"
          "          [--warmup W] [--cpu-pid PID] [--watch-pid PID]\n"
          "  C <= %d, BYTES <= %u, K <= %d, K * BYTES <= %u, D + W <= %.0f\n",
          prog, MAX_CONNS, MAX_SIZE, MAX_INFLIGHT, MAX_SIZE, MAX_SECONDS);
  return 2;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double percentile(const double *v, size_t n, double p) {
  size_t k;
  if (n == 0) return 0.0;
  k = (size_t)(p * (double)(n - 1) + 0.5);
  return v[k];
}

static int set_events(int ep, struct conn *c, int want_out) {
  struct epoll_event ev;
  if (c->want_out == want_out) return 0;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | (want_out ? EPOLLOUT : 0);
  ev.data.ptr = c;
  c->want_out = want_out;
  return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Sends until K messages are in flight; asks for EPOLLOUT if the socket
 * buffer is full. A message's clock starts when it is first offered. */
static int pump_send(int ep, struct conn *c, size_t size) {
  while (c->send_seq - c->recv_seq < inflight) {
    ssize_t n;
    if (c->filled != c->send_seq) {
      fill(c, c->send_seq, size);
      c->t_start[c->send_seq % inflight] = now_s();
      c->filled = c->send_seq;
    }
    n = send(c->fd, slot(c, c->send_seq, size) + c->sent, size - c->sent, MSG_NOSIGNAL);
    if (n > 0) {
      c->sent += (size_t)n;
      if (c->sent == size) {
        c->send_seq++;
        c->sent = 0;
      }
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return set_events(ep, c, 1);
    } else {
      fprintf(stderr, "loadgen: conn %d: send: %s\n", c->idx, strerror(errno));
      return -1;
    }
  }
  return set_events(ep, c, 0);
}

static int open_conn(struct conn *c, int port) {
  struct sockaddr_in sa;
  struct timeval tv = {CONNECT_TIMEOUT_S, 0};
  int one = 1;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) return -1;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* Linux bounds a blocking connect() by SO_SNDTIMEO. */
  setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) return -1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
}

int main(int argc, char **argv) {
  double port = 0, conns = 1, size_d = 64, seconds = 5, warmup = 1, inflight_d = 1, pid_d = 0,
         wpid_d = 0;
  size_t size, nlat = 0, caplat = 0, i;
  double *lat = NULL, t0, t_measure, t_end;
  /* CPU times at the measured seconds' start [0] and end [1], and when read */
  double cpu0 = -1, cpu1 = -1, self0 = -1, self1 = -1, watch0 = -1, watch1 = -1;
  double tcpu0 = 0, tcpu1 = 0;
  int measuring = 0;
  uint64_t echoes = 0, total = 0, total0 = 0, total1 = 0;
  unsigned errors = 0;
  struct conn *cs;
  struct rlimit rl;
  int ep, n, ai;

  for (ai = 1; ai < argc; ai++) {
    const char *a = argv[ai], *v = ai + 1 < argc ? argv[ai + 1] : NULL;
    double *dst = strcmp(a, "--port") == 0      ? &port
                  : strcmp(a, "--conns") == 0   ? &conns
                  : strcmp(a, "--size") == 0    ? &size_d
                  : strcmp(a, "--seconds") == 0 ? &seconds
                  : strcmp(a, "--warmup") == 0  ? &warmup
                  : strcmp(a, "--inflight") == 0 ? &inflight_d
                  : strcmp(a, "--cpu-pid") == 0 ? &pid_d
                  : strcmp(a, "--watch-pid") == 0 ? &wpid_d
                                                : NULL;
    double lo = dst == &seconds ? 0.1 : dst == &warmup ? 0.0 : 1.0;
    double hi = dst == &port ? 65535 : dst == &conns ? MAX_CONNS : dst == &size_d ? MAX_SIZE
                : dst == &inflight_d ? MAX_INFLIGHT : dst == &pid_d || dst == &wpid_d ? 4194304
                                                                                : MAX_SECONDS;
    if (dst == NULL || parse_num(v, lo, hi, dst) != 0) return usage(argv[0]);
    ai++;
  }
  if (port < 1 || seconds + warmup > MAX_SECONDS || conns != (int)conns || size_d != (size_t)size_d ||
      inflight_d != (int)inflight_d || pid_d != (long)pid_d || wpid_d != (long)wpid_d ||
      inflight_d * size_d > MAX_SIZE)
    return usage(argv[0]);
  size = (size_t)size_d;
  inflight = (uint32_t)inflight_d;

  /* One descriptor per connection plus a few. */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)conns + 16) {
    rl.rlim_cur = (rlim_t)conns + 16 <= rl.rlim_max ? (rlim_t)conns + 16 : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  signal(SIGPIPE, SIG_IGN);

  cs = calloc((size_t)conns, sizeof(*cs));
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (cs == NULL || ep < 0) {
    fprintf(stderr, "loadgen: out of memory or epoll\n");
    return 1;
  }
  for (ai = 0; ai < (int)conns; ai++) {
    struct conn *c = &cs[ai];
    struct epoll_event ev;
    c->idx = ai;
    c->fd = -1;
    c->send_seq = c->recv_seq = 1;
    c->msg = malloc(size * inflight);
    c->t_start = calloc(inflight, sizeof(*c->t_start));
    if (c->msg == NULL || c->t_start == NULL || open_conn(c, (int)port) != 0) {
      fprintf(stderr, "loadgen: connection %d to 127.0.0.1:%d failed: %s\n", ai, (int)port,
              strerror(errno));
      printf("conns=%d size=%zu errors=1 failed=connect\n", (int)conns, size);
      return 1;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) return 1;
  }

  t0 = now_s();
  t_measure = t0 + warmup;
  t_end = t_measure + seconds;
  for (ai = 0; ai < (int)conns; ai++)
    if (pump_send(ep, &cs[ai], size) != 0) errors++;

  while (errors == 0) {
    struct epoll_event evs[256];
    double t = now_s();
    int timeout_ms;
    if (!measuring && t >= t_measure) {
      measuring = 1;
      if (pid_d > 0) cpu0 = proc_cpu_s((long)pid_d);
      if (wpid_d > 0) watch0 = proc_cpu_s((long)wpid_d);
      self0 = self_cpu_s();
      tcpu0 = t;
      total0 = total;
    }
    if (t >= t_end) {
      if (pid_d > 0) cpu1 = proc_cpu_s((long)pid_d);
      if (wpid_d > 0) watch1 = proc_cpu_s((long)wpid_d);
      self1 = self_cpu_s();
      tcpu1 = t;
      total1 = total;
      break;
    }
    timeout_ms = (int)((t_end - t) * 1000.0) + 1;
    if (timeout_ms > 100) timeout_ms = 100;
    n = epoll_wait(ep, evs, 256, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      errors++;
      break;
    }
    for (ai = 0; ai < n && errors == 0; ai++) {
      struct conn *c = evs[ai].data.ptr;
      if ((evs[ai].events & EPOLLOUT) && pump_send(ep, c, size) != 0) {
        errors++;
        break;
      }
      if (evs[ai].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        unsigned char buf[65536];
        for (;;) {
          size_t want = (size_t)(c->send_seq - c->recv_seq) * size + c->sent - c->got, off = 0;
          int completed = 0;
          ssize_t r;
          if (want == 0) break;
          /* Never read past what was sent: the server must not send more
           * than it was given, and what it sends is checked below. */
          r = recv(c->fd, buf, want < sizeof(buf) ? want : sizeof(buf), 0);
          if (r < 0 && errno == EINTR) continue;
          if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
          if (r <= 0) {
            fprintf(stderr, "loadgen: conn %d: %s after %zu of %zu bytes of echo %u\n", c->idx,
                    r == 0 ? "closed by server" : strerror(errno), c->got, size, c->recv_seq);
            errors++;
            break;
          }
          while (off < (size_t)r && errors == 0) { /* message by message */
            size_t take = size - c->got < (size_t)r - off ? size - c->got : (size_t)r - off;
            if (memcmp(buf + off, slot(c, c->recv_seq, size) + c->got, take) != 0) {
              fprintf(stderr, "loadgen: conn %d: wrong bytes in echo %u at offset %zu\n", c->idx,
                      c->recv_seq, c->got);
              errors++;
              break;
            }
            off += take;
            c->got += take;
            if (c->got == size) {
              double tdone = now_s(), tstart = c->t_start[c->recv_seq % inflight];
              total++;
              if (tdone >= t_measure && tdone < t_end) {
                echoes++;
                if (tstart >= t_measure) { /* round trip wholly in the window */
                  if (nlat == caplat) {
                    caplat = caplat ? caplat * 2 : 65536;
                    lat = realloc(lat, caplat * sizeof(*lat));
                    if (lat == NULL) return 1;
                  }
                  lat[nlat++] = (tdone - tstart) * 1e6;
                }
              }
              c->recv_seq++;
              c->got = 0;
              completed = 1;
            }
          }
          if (errors == 0 && completed && pump_send(ep, c, size) != 0) errors++;
          if (errors) break;
        }
      }
    }
  }

  {
    double max_us = 0, inflight_max_s = 0, tstop = now_s();
    size_t stuck = 0;
    /* A message still unanswered for more than a second at the end means a
     * starved or stalled connection: reported, not hidden in the average. */
    for (ai = 0; ai < (int)conns; ai++) {
      const struct conn *c = &cs[ai];
      double age = c->filled >= c->recv_seq ? tstop - c->t_start[c->recv_seq % inflight] : 0;
      if (age > inflight_max_s) inflight_max_s = age;
      if (age > 1.0) stuck++;
    }
    if (nlat) qsort(lat, nlat, sizeof(*lat), cmp_double);
    if (nlat) max_us = lat[nlat - 1];
    char cpu[192] = "";
    size_t len = 0;
    double pct = cpu_pct(cpu0, cpu1, tcpu0, tcpu1);
    if (pct >= 0 && total1 > total0)
      len += (size_t)snprintf(cpu + len, sizeof(cpu) - len, " server_cpu_pct=%.1f server_cpu_us_per_echo=%.3f",
                              pct, (cpu1 - cpu0) * 1e6 / (double)(total1 - total0));
    pct = cpu_pct(self0, self1, tcpu0, tcpu1);
    if (pct >= 0) len += (size_t)snprintf(cpu + len, sizeof(cpu) - len, " client_cpu_pct=%.1f", pct);
    pct = cpu_pct(watch0, watch1, tcpu0, tcpu1);
    if (pct >= 0) snprintf(cpu + len, sizeof(cpu) - len, " watched_cpu_pct=%.1f", pct);
    printf("conns=%d size=%zu inflight=%u seconds=%.3f echoes=%llu echoes_per_s=%.1f mb_per_s=%.3f "
           "p50_us=%.1f p99_us=%.1f max_us=%.1f oldest_inflight_ms=%.1f stuck=%zu%s errors=%u\n",
           (int)conns, size, inflight, seconds, (unsigned long long)echoes, echoes / seconds,
           (double)echoes * (double)size / seconds / 1e6, percentile(lat, nlat, 0.50),
           percentile(lat, nlat, 0.99), max_us, inflight_max_s * 1e3, stuck, cpu, errors);
    fflush(stdout);
  }
  for (i = 0; i < (size_t)conns; i++) {
    close(cs[i].fd);
    free(cs[i].msg);
    free(cs[i].t_start);
  }
  free(cs);
  free(lat);
  close(ep);
  return errors ? 1 : 0;
}
