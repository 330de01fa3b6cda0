/* Echo load generator: native Linux, one thread, epoll or io_uring.
 *
 *   loadgen --port N [--conns C] [--size M] [--inflight K] [--seconds D]
 *           [--warmup W] [--cpu-pid PID] [--watch-pid PID]
 *           [--io epoll|uring] [--batch B]
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
 * With --io uring (loadgen_uring.c), the same client drives its sockets
 * through io_uring and waits for B completions at a time (default C * K / 8,
 * at most 64; a wait also ends after 1 ms): a few system calls per hundred
 * echoes instead of two per echo, so the client leaves the server most of
 * the machine and the server, not the client, sets the rate.
 * It always stops by itself: after W + D seconds, or at the first wrong byte,
 * closed connection or failed connect (then errors > 0 and the exit status
 * is 1). Loopback only, by design: it is a benchmark client, not a tool. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
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
#define MAX_BATCH 64 /* --io uring: completions per wait, at most (default) */
#define MAX_READS 16 /* epoll: reads per readiness report, at most */

double lg_now(void) {
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

static unsigned char *slot(const struct lg *g, const struct conn *c, uint32_t seq) {
  return c->msg + (size_t)(seq % g->inflight) * g->size;
}

void lg_prepare_send(struct lg *g, struct conn *c) {
  unsigned char *m;
  size_t i;
  if (c->filled == c->send_seq) return;
  m = slot(g, c, c->send_seq);
  for (i = 0; i < g->size; i++) m[i] = pattern(c->idx, c->send_seq, i);
  c->t_start[c->send_seq % g->inflight] = lg_now();
  c->filled = c->send_seq;
}

const unsigned char *lg_send_ptr(const struct lg *g, const struct conn *c) {
  return slot(g, c, c->send_seq) + c->sent;
}

void lg_sent(struct lg *g, struct conn *c, size_t n) {
  c->sent += n;
  if (c->sent == g->size) {
    c->send_seq++;
    c->sent = 0;
  }
}

int lg_may_send(const struct lg *g, const struct conn *c) {
  return c->send_seq - c->recv_seq < g->inflight;
}

size_t lg_want(const struct lg *g, const struct conn *c) {
  return (size_t)(c->send_seq - c->recv_seq) * g->size + c->sent - c->got;
}

void lg_fail(struct lg *g, const struct conn *c, const char *what, int e) {
  fprintf(stderr, "loadgen: conn %d: %s: %s after %zu of %zu bytes of echo %u\n", c->idx, what,
          e == 0 ? "closed by server" : strerror(e), c->got, g->size, c->recv_seq);
  g->errors++;
}

int lg_take(struct lg *g, struct conn *c, const unsigned char *buf, size_t n) {
  size_t off = 0;
  int completed = 0;
  if (n > lg_want(g, c)) {
    fprintf(stderr, "loadgen: conn %d: %zu bytes back, only %zu sent and not yet echoed\n", c->idx,
            n, lg_want(g, c));
    g->errors++;
    return -1;
  }
  while (off < n) { /* message by message */
    size_t take = g->size - c->got < n - off ? g->size - c->got : n - off;
    if (memcmp(buf + off, slot(g, c, c->recv_seq) + c->got, take) != 0) {
      fprintf(stderr, "loadgen: conn %d: wrong bytes in echo %u at offset %zu\n", c->idx,
              c->recv_seq, c->got);
      g->errors++;
      return -1;
    }
    off += take;
    c->got += take;
    if (c->got == g->size) {
      double tdone = lg_now(), tstart = c->t_start[c->recv_seq % g->inflight];
      g->total++;
      if (tdone >= g->t_measure && tdone < g->t_end) {
        g->echoes++;
        if (tstart >= g->t_measure) { /* round trip wholly in the window */
          if (g->nlat == g->caplat) {
            double *bigger;
            g->caplat = g->caplat ? g->caplat * 2 : 65536;
            bigger = realloc(g->lat, g->caplat * sizeof(*g->lat));
            if (bigger == NULL) {
              fprintf(stderr, "loadgen: out of memory\n");
              g->errors++;
              return -1;
            }
            g->lat = bigger;
          }
          g->lat[g->nlat++] = (tdone - tstart) * 1e6;
        }
      }
      c->recv_seq++;
      c->got = 0;
      completed++;
    }
  }
  return completed;
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

int lg_tick(struct lg *g, double t) {
  if (!g->measuring && t >= g->t_measure) {
    g->measuring = 1;
    if (g->cpu_pid > 0) g->cpu0 = proc_cpu_s(g->cpu_pid);
    if (g->watch_pid > 0) g->watch0 = proc_cpu_s(g->watch_pid);
    g->self0 = self_cpu_s();
    g->tcpu0 = t;
    g->total0 = g->total;
  }
  if (t < g->t_end) return 0;
  if (g->cpu_pid > 0) g->cpu1 = proc_cpu_s(g->cpu_pid);
  if (g->watch_pid > 0) g->watch1 = proc_cpu_s(g->watch_pid);
  g->self1 = self_cpu_s();
  g->tcpu1 = t;
  g->total1 = g->total;
  return 1;
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
          "          [--warmup W] [--cpu-pid PID] [--watch-pid PID] [--io epoll|uring]\n"
          "          [--batch B]\n"
          "  C <= %d, BYTES <= %u, K <= %d, K * BYTES <= %u, D + W <= %.0f, B <= C * K\n",
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

/* ---- The epoll driver ------------------------------------------------------- */

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
static int pump_send(struct lg *g, int ep, struct conn *c) {
  while (lg_may_send(g, c)) {
    ssize_t n;
    lg_prepare_send(g, c);
    n = send(c->fd, lg_send_ptr(g, c), g->size - c->sent, MSG_NOSIGNAL);
    if (n > 0) {
      lg_sent(g, c, (size_t)n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return set_events(ep, c, 1);
    } else {
      lg_fail(g, c, "send", errno);
      return -1;
    }
  }
  return set_events(ep, c, 0);
}

/* Reads what the socket has, never past what was sent (the server must not
 * send more than it was given, and what it sends is checked), at most
 * MAX_READS reads per readiness report: epoll is level-triggered and reports
 * the rest again, and a connection the server keeps busy would otherwise
 * hold the client (for whole seconds, in the bulk rows) while the others
 * wait. */
static int pump_recv(struct lg *g, int ep, struct conn *c) {
  static unsigned char buf[65536];
  int reads;
  for (reads = 0; reads < MAX_READS; reads++) {
    size_t want = lg_want(g, c);
    ssize_t r;
    int done;
    if (want == 0) return 0;
    r = recv(c->fd, buf, want < sizeof(buf) ? want : sizeof(buf), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (r <= 0) {
      lg_fail(g, c, "recv", r == 0 ? 0 : errno);
      return -1;
    }
    done = lg_take(g, c, buf, (size_t)r);
    if (done < 0) return -1;
    if (done > 0 && pump_send(g, ep, c) != 0) return -1;
  }
  return 0;
}

static int drive_epoll(struct lg *g, struct conn *cs) {
  int ep = epoll_create1(EPOLL_CLOEXEC), i, rc = -1;
  if (ep < 0) {
    fprintf(stderr, "loadgen: epoll: %s\n", strerror(errno));
    g->errors++;
    return -1;
  }
  for (i = 0; i < g->conns; i++) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = &cs[i];
    if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) != 0 || pump_send(g, ep, &cs[i]) != 0) {
      if (g->errors == 0) g->errors++;
      goto out;
    }
  }
  for (;;) {
    struct epoll_event evs[256];
    double t = lg_now();
    int timeout_ms, n;
    if (lg_tick(g, t)) break;
    timeout_ms = (int)((g->t_end - t) * 1000.0) + 1;
    if (timeout_ms > 100) timeout_ms = 100;
    n = epoll_wait(ep, evs, 256, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      g->errors++;
      goto out;
    }
    for (i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if ((evs[i].events & EPOLLOUT) && pump_send(g, ep, c) != 0) goto out;
      if ((evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && pump_recv(g, ep, c) != 0) goto out;
    }
  }
  rc = 0;
out:
  close(ep);
  return rc;
}

/* ---- Connections, the run, the report --------------------------------------- */

static int open_conn(struct conn *c, int port, int nonblocking) {
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
  if (!nonblocking) {
    /* io_uring waits for a blocking socket itself; a send blocked past the
     * time-out would fail instead. */
    struct timeval none = {0, 0};
    return setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
  }
  return fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
}

static void report(const struct lg *g, struct conn *cs, double seconds) {
  double max_us = 0, inflight_max_s = 0, tstop = lg_now(), pct;
  size_t stuck = 0, len = 0;
  char cpu[192] = "";
  int i;
  /* A message still unanswered for more than a second at the end means a
   * starved or stalled connection: reported, not hidden in the average. */
  for (i = 0; i < g->conns; i++) {
    const struct conn *c = &cs[i];
    double age = c->filled >= c->recv_seq ? tstop - c->t_start[c->recv_seq % g->inflight] : 0;
    if (age > inflight_max_s) inflight_max_s = age;
    if (age > 1.0) stuck++;
  }
  if (g->nlat) qsort(g->lat, g->nlat, sizeof(*g->lat), cmp_double);
  if (g->nlat) max_us = g->lat[g->nlat - 1];
  pct = cpu_pct(g->cpu0, g->cpu1, g->tcpu0, g->tcpu1);
  if (pct >= 0 && g->total1 > g->total0)
    len += (size_t)snprintf(cpu + len, sizeof(cpu) - len,
                            " server_cpu_pct=%.1f server_cpu_us_per_echo=%.3f", pct,
                            (g->cpu1 - g->cpu0) * 1e6 / (double)(g->total1 - g->total0));
  pct = cpu_pct(g->self0, g->self1, g->tcpu0, g->tcpu1);
  if (pct >= 0) len += (size_t)snprintf(cpu + len, sizeof(cpu) - len, " client_cpu_pct=%.1f", pct);
  pct = cpu_pct(g->watch0, g->watch1, g->tcpu0, g->tcpu1);
  if (pct >= 0) snprintf(cpu + len, sizeof(cpu) - len, " watched_cpu_pct=%.1f", pct);
  printf("conns=%d size=%zu inflight=%u seconds=%.3f echoes=%llu echoes_per_s=%.1f mb_per_s=%.3f "
         "p50_us=%.1f p99_us=%.1f max_us=%.1f oldest_inflight_ms=%.1f stuck=%zu%s errors=%u\n",
         g->conns, g->size, g->inflight, seconds, (unsigned long long)g->echoes,
         g->echoes / seconds, (double)g->echoes * (double)g->size / seconds / 1e6,
         percentile(g->lat, g->nlat, 0.50), percentile(g->lat, g->nlat, 0.99), max_us,
         inflight_max_s * 1e3, stuck, cpu, g->errors);
  fflush(stdout);
}

int main(int argc, char **argv) {
  double port = 0, conns = 1, size_d = 64, seconds = 5, warmup = 1, inflight_d = 1, pid_d = 0,
         wpid_d = 0, batch_d = 0;
  const char *io = "epoll";
  struct lg g;
  struct conn *cs;
  struct rlimit rl;
  int ai, uring, rc;

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
                  : strcmp(a, "--batch") == 0   ? &batch_d
                                                : NULL;
    double lo = dst == &seconds ? 0.1 : dst == &warmup ? 0.0 : 1.0;
    double hi = dst == &port ? 65535 : dst == &conns ? MAX_CONNS : dst == &size_d ? MAX_SIZE
                : dst == &inflight_d ? MAX_INFLIGHT : dst == &pid_d || dst == &wpid_d ? 4194304
                : dst == &batch_d ? (double)MAX_CONNS * MAX_INFLIGHT
                                                                                : MAX_SECONDS;
    if (strcmp(a, "--io") == 0 && v != NULL && (strcmp(v, "epoll") == 0 || strcmp(v, "uring") == 0)) {
      io = v;
      ai++;
      continue;
    }
    if (dst == NULL || parse_num(v, lo, hi, dst) != 0) return usage(argv[0]);
    ai++;
  }
  if (port < 1 || seconds + warmup > MAX_SECONDS || conns != (int)conns || size_d != (size_t)size_d ||
      inflight_d != (int)inflight_d || pid_d != (long)pid_d || wpid_d != (long)wpid_d ||
      batch_d != (unsigned)batch_d || batch_d > conns * inflight_d || inflight_d * size_d > MAX_SIZE)
    return usage(argv[0]);
  uring = strcmp(io, "uring") == 0;
  memset(&g, 0, sizeof(g));
  g.size = (size_t)size_d;
  g.inflight = (uint32_t)inflight_d;
  g.conns = (int)conns;
  g.cpu_pid = (long)pid_d;
  g.watch_pid = (long)wpid_d;
  g.cpu0 = g.cpu1 = g.self0 = g.self1 = g.watch0 = g.watch1 = -1;
  if (batch_d == 0) { /* an eighth of what is in flight, so the server never runs dry */
    batch_d = conns * inflight_d / 8;
    if (batch_d > MAX_BATCH) batch_d = MAX_BATCH;
    if (batch_d < 1) batch_d = 1;
  }

  /* One descriptor per connection plus a few. */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)conns + 16) {
    rl.rlim_cur = (rlim_t)conns + 16 <= rl.rlim_max ? (rlim_t)conns + 16 : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  signal(SIGPIPE, SIG_IGN);

  cs = calloc((size_t)g.conns, sizeof(*cs));
  if (cs == NULL) {
    fprintf(stderr, "loadgen: out of memory\n");
    return 1;
  }
  for (ai = 0; ai < g.conns; ai++) {
    struct conn *c = &cs[ai];
    c->idx = ai;
    c->fd = -1;
    c->send_seq = c->recv_seq = 1;
    c->msg = malloc(g.size * g.inflight);
    c->t_start = calloc(g.inflight, sizeof(*c->t_start));
    if (c->msg == NULL || c->t_start == NULL || open_conn(c, (int)port, !uring) != 0) {
      fprintf(stderr, "loadgen: connection %d to 127.0.0.1:%d failed: %s\n", ai, (int)port,
              strerror(errno));
      printf("conns=%d size=%zu errors=1 failed=connect\n", g.conns, g.size);
      return 1;
    }
  }

  g.t_measure = lg_now() + warmup;
  g.t_end = g.t_measure + seconds;
  rc = uring ? lg_drive_uring(&g, cs, (unsigned)batch_d) : drive_epoll(&g, cs);
  if (rc == 1) {
    printf("conns=%d size=%zu errors=1 failed=io_uring\n", g.conns, g.size);
    return 1;
  }
  report(&g, cs, seconds);
  for (ai = 0; ai < g.conns; ai++) {
    close(cs[ai].fd);
    free(cs[ai].msg);
    free(cs[ai].t_start);
  }
  free(cs);
  free(g.lat);
  return g.errors ? 1 : 0;
}
