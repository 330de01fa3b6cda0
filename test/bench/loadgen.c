/* Echo load generator: native Linux, one thread, epoll.
 *
 *   loadgen --port N [--conns C] [--size M] [--seconds D] [--warmup W]
 *
 * Opens C connections to 127.0.0.1:N. Each keeps exactly one M-byte message
 * in flight: send it, wait for all M bytes to come back, check them, send the
 * next one. The first W seconds are a warm-up (not counted); then for D
 * seconds every completed echo is counted and its round trip (first byte
 * sent -> last byte back) is recorded. Prints one line of key=value pairs:
 *
 *   conns=50 size=64 seconds=3.000 echoes=31234 echoes_per_s=10411.3
 *   mb_per_s=0.666 p50_us=4120.5 p99_us=9981.0 max_us=15034.2 errors=0
 *
 * (on one line). MB/s counts payload bytes echoed, one direction, 10^6 B.
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

struct conn {
  int fd;
  int idx;
  uint32_t seq;     /* message number: varies the pattern from echo to echo */
  size_t sent, got; /* bytes of the current message sent / echoed back */
  int want_out;     /* EPOLLOUT currently requested */
  double t_start;   /* when the current message's first byte went out */
  unsigned char *msg;
};

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

static void fill(struct conn *c, size_t size) {
  size_t i;
  for (i = 0; i < size; i++) c->msg[i] = pattern(c->idx, c->seq, i);
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
          "usage: %s --port N [--conns C] [--size BYTES] [--seconds D] [--warmup W]\n"
          "  C <= %d, BYTES <= %u, D + W <= %.0f\n",
          prog, MAX_CONNS, MAX_SIZE, MAX_SECONDS);
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

/* Sends what is left of the current message; asks for EPOLLOUT if the socket
 * buffer is full. */
static int pump_send(int ep, struct conn *c, size_t size) {
  while (c->sent < size) {
    ssize_t n = send(c->fd, c->msg + c->sent, size - c->sent, MSG_NOSIGNAL);
    if (n > 0) {
      c->sent += (size_t)n;
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

static int start_message(int ep, struct conn *c, size_t size, double t) {
  c->seq++;
  fill(c, size);
  c->sent = c->got = 0;
  c->t_start = t;
  return pump_send(ep, c, size);
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
  double port = 0, conns = 1, size_d = 64, seconds = 5, warmup = 1;
  size_t size, nlat = 0, caplat = 0, i;
  double *lat = NULL, t0, t_measure, t_end;
  uint64_t echoes = 0;
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
                                                : NULL;
    double lo = dst == &seconds ? 0.1 : dst == &warmup ? 0.0 : 1.0;
    double hi = dst == &port ? 65535 : dst == &conns ? MAX_CONNS : dst == &size_d ? MAX_SIZE : MAX_SECONDS;
    if (dst == NULL || parse_num(v, lo, hi, dst) != 0) return usage(argv[0]);
    ai++;
  }
  if (port < 1 || seconds + warmup > MAX_SECONDS || conns != (int)conns || size_d != (size_t)size_d)
    return usage(argv[0]);
  size = (size_t)size_d;

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
    c->msg = malloc(size);
    if (c->msg == NULL || open_conn(c, (int)port) != 0) {
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
    if (start_message(ep, &cs[ai], size, t0) != 0) errors++;

  while (errors == 0) {
    struct epoll_event evs[256];
    double t = now_s();
    int timeout_ms;
    if (t >= t_end) break;
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
          size_t want = size - c->got;
          ssize_t r;
          if (want == 0) break;
          /* Never read past the current message: the server must not send
           * more than it was given, and that is checked below. */
          r = recv(c->fd, buf, want < sizeof(buf) ? want : sizeof(buf), 0);
          if (r < 0 && errno == EINTR) continue;
          if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
          if (r <= 0) {
            fprintf(stderr, "loadgen: conn %d: %s after %zu of %zu bytes of echo %u\n", c->idx,
                    r == 0 ? "closed by server" : strerror(errno), c->got, size, c->seq);
            errors++;
            break;
          }
          if (c->got + (size_t)r > c->sent) {
            fprintf(stderr, "loadgen: conn %d: echoed bytes that were never sent\n", c->idx);
            errors++;
            break;
          }
          if (memcmp(buf, c->msg + c->got, (size_t)r) != 0) {
            fprintf(stderr, "loadgen: conn %d: wrong bytes in echo %u at offset %zu\n", c->idx,
                    c->seq, c->got);
            errors++;
            break;
          }
          c->got += (size_t)r;
        }
        if (errors == 0 && c->got == size) {
          double tdone = now_s();
          if (tdone >= t_measure && tdone < t_end) {
            echoes++;
            if (c->t_start >= t_measure) { /* round trip wholly in the window */
              if (nlat == caplat) {
                caplat = caplat ? caplat * 2 : 65536;
                lat = realloc(lat, caplat * sizeof(*lat));
                if (lat == NULL) return 1;
              }
              lat[nlat++] = (tdone - c->t_start) * 1e6;
            }
          }
          if (start_message(ep, c, size, tdone) != 0) errors++;
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
      double age = tstop - cs[ai].t_start;
      if (age > inflight_max_s) inflight_max_s = age;
      if (age > 1.0) stuck++;
    }
    if (nlat) qsort(lat, nlat, sizeof(*lat), cmp_double);
    if (nlat) max_us = lat[nlat - 1];
    printf("conns=%d size=%zu seconds=%.3f echoes=%llu echoes_per_s=%.1f mb_per_s=%.3f "
           "p50_us=%.1f p99_us=%.1f max_us=%.1f oldest_inflight_ms=%.1f stuck=%zu errors=%u\n",
           (int)conns, size, seconds, (unsigned long long)echoes, echoes / seconds,
           (double)echoes * (double)size / seconds / 1e6, percentile(lat, nlat, 0.50),
           percentile(lat, nlat, 0.99), max_us, inflight_max_s * 1e3, stuck, errors);
    fflush(stdout);
  }
  for (i = 0; i < (size_t)conns; i++) {
    close(cs[i].fd);
    free(cs[i].msg);
  }
  free(cs);
  free(lat);
  close(ep);
  return errors ? 1 : 0;
}
