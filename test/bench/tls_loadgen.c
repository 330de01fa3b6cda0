/* TLS (or plain TCP) load client: native Linux, one thread, epoll, OpenSSL.
 *
 *   tls_loadgen --port N [--mode echo|http|http-close] [--conns C] [--size M]
 *               [--tls 1.2|1.3|any|off] [--seconds D] [--warmup W]
 *               [--cpu-pid PID]
 *
 * Opens C connections to 127.0.0.1:N, each with one operation in flight:
 *   echo        an M-byte message (default 65536) sent and read back whole,
 *               every byte compared;
 *   http        "GET / HTTP/1.1" on a kept-alive connection, the answer
 *               read whole (status 200, Content-Length body);
 *   http-close  the same with "Connection: close": a new connection, so a
 *               full TLS handshake (no session resumption), per request.
 * --tls 1.2 or 1.3 pins the protocol version (any: what both ends prefer;
 * off: plain TCP). Certificates are not verified (the bench's are
 * self-signed). The first W seconds warm up; then for D seconds completed
 * operations are counted. Prints one line of key=value pairs:
 *
 *   mode=echo conns=100 size=65536 tls=1.3 cipher=TLS_AES_256_GCM_SHA384
 *   seconds=3.000 ops=12345 echoes_per_s=4115.0 mb_per_s=269.7
 *   server_cpu_pct=... server_cpu_us_per_echo=... client_cpu_pct=... errors=0
 *
 * (one line; echoes_per_s is operations per second, so bench.py's tables
 * read it like loadgen's; mb_per_s counts echo payload, one direction).
 * A benchmark client, loopback only: it stops after W + D seconds or at
 * the first error (then errors > 0 and the exit status is 1). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 20000
#define HEAD_MAX 4096

enum { MODE_ECHO, MODE_HTTP, MODE_HTTP_CLOSE };
enum { ST_CONNECTING, ST_HANDSHAKE, ST_RUN };

typedef struct conn {
  int fd;
  SSL *ssl;
  int state;
  size_t sent, got;         /* of the current operation */
  size_t head_len, body_left; /* http: the answer's head so far, body to come */
  int in_body;
  char head[HEAD_MAX];
} conn;

static int mode = MODE_ECHO, conns_n = 100, tls_ver = 13, port;
static size_t size = 65536;
static double seconds = 3, warmup = 1;
static int cpu_pid;
static SSL_CTX *ctx;
static uint8_t *msg, *rbuf;
static size_t req_len;
static char req[256];
static int ep;
static long long ops, errors;
static int counting;
static char cipher[64] = "none", version[16] = "none";

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void fail(conn *c, const char *what) {
  if (errors++ == 0) {
    unsigned long e = ERR_get_error();
    fprintf(stderr, "tls_loadgen: %s (errno %d, %s)\n", what, errno,
            e ? ERR_error_string(e, NULL) : "no TLS error");
  }
  (void)c;
}

/* ---- Connections ------------------------------------------------------------ */

static int open_conn(conn *c) {
  struct sockaddr_in a;
  struct epoll_event ev;
  int one = 1;
  memset(c, 0, sizeof(*c));
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) return -1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) return -1;
  c->state = ST_CONNECTING;
  ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
  ev.data.ptr = c;
  return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void close_conn(conn *c) {
  if (c->ssl != NULL) {
    SSL_shutdown(c->ssl); /* our close_notify, without waiting for theirs */
    SSL_free(c->ssl);
  }
  close(c->fd); /* leaves the epoll set with it */
  c->ssl = NULL;
  c->fd = -1;
}

/* Bytes written or read (> 0), 0 for "would block", -1 for an error or end. */
static long io_write(conn *c, const void *p, size_t n) {
  if (c->ssl != NULL) {
    size_t done = 0;
    int r = SSL_write_ex(c->ssl, p, n, &done);
    if (r == 1) return (long)done;
    r = SSL_get_error(c->ssl, 0);
    return r == SSL_ERROR_WANT_WRITE || r == SSL_ERROR_WANT_READ ? 0 : -1;
  } else {
    ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
    if (r >= 0) return (long)r;
    return errno == EAGAIN ? 0 : -1;
  }
}

static long io_read(conn *c, void *p, size_t n) {
  if (c->ssl != NULL) {
    size_t done = 0;
    int r = SSL_read_ex(c->ssl, p, n, &done);
    if (r == 1) return (long)done;
    r = SSL_get_error(c->ssl, 0);
    return r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE ? 0 : -1;
  } else {
    ssize_t r = recv(c->fd, p, n, 0);
    if (r > 0) return (long)r;
    return r < 0 && errno == EAGAIN ? 0 : -1;
  }
}

static void op_done(conn *c) {
  if (counting) ops++;
  c->sent = c->got = 0;
  c->head_len = 0;
  c->in_body = 0;
}

/* The HTTP answer's bytes: 1 when it is whole, 0 for more, -1 when wrong. */
static int http_feed(conn *c, const uint8_t *p, size_t n) {
  while (n > 0) {
    if (c->in_body) {
      size_t k = n < c->body_left ? n : c->body_left;
      c->body_left -= k;
      p += k;
      n -= k;
      if (c->body_left == 0) return n == 0 ? 1 : -1; /* nothing pipelined */
      continue;
    }
    if (c->head_len == HEAD_MAX) return -1;
    c->head[c->head_len++] = (char)*p++;
    n--;
    if (c->head_len >= 4 && memcmp(c->head + c->head_len - 4, "\r\n\r\n", 4) == 0) {
      const char *cl;
      c->head[c->head_len] = 0;
      if (strncmp(c->head, "HTTP/1.1 200", 12) != 0) return -1;
      cl = strcasestr(c->head, "\r\ncontent-length:");
      if (cl == NULL) return -1;
      c->body_left = strtoul(cl + 17, NULL, 10);
      c->in_body = 1;
      if (c->body_left == 0) return n == 0 ? 1 : -1;
    }
  }
  return 0;
}

/* Drives one connection until it would block; -1 when it must go. */
static int drive(conn *c) {
  for (;;) {
    if (c->state == ST_CONNECTING) {
      int err = 0;
      socklen_t len = sizeof(err);
      if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) return -1;
      c->state = ST_RUN;
      if (ctx != NULL) {
        c->ssl = SSL_new(ctx);
        if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd)) return -1;
        SSL_set_tlsext_host_name(c->ssl, "localhost");
        SSL_set_connect_state(c->ssl);
        c->state = ST_HANDSHAKE;
      }
    }
    if (c->state == ST_HANDSHAKE) {
      int r = SSL_do_handshake(c->ssl);
      if (r != 1) {
        r = SSL_get_error(c->ssl, r);
        return r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE ? 0 : -1;
      }
      c->state = ST_RUN;
      snprintf(cipher, sizeof(cipher), "%s", SSL_get_cipher_name(c->ssl));
      snprintf(version, sizeof(version), "%s", SSL_get_version(c->ssl));
    }
    /* Write what is left of the request, then read what came. */
    {
      const uint8_t *out = mode == MODE_ECHO ? msg : (const uint8_t *)req;
      size_t total = mode == MODE_ECHO ? size : req_len;
      long w = 0, r;
      int progress = 0;
      if (c->sent < total) {
        w = io_write(c, out + c->sent, total - c->sent);
        if (w < 0) return -1;
        c->sent += (size_t)w;
        progress |= w > 0;
      }
      r = io_read(c, rbuf, mode == MODE_ECHO ? size - c->got : 65536);
      if (r < 0) return -1;
      if (r > 0) {
        progress = 1;
        if (mode == MODE_ECHO) {
          if (c->got + (size_t)r > c->sent || memcmp(rbuf, msg + c->got, (size_t)r) != 0) {
            fail(c, "wrong echo");
            return -1;
          }
          c->got += (size_t)r;
          if (c->got == size) op_done(c);
        } else {
          int h = http_feed(c, rbuf, (size_t)r);
          if (h < 0) {
            fail(c, "bad HTTP answer");
            return -1;
          }
          if (h == 1) {
            op_done(c);
            if (mode == MODE_HTTP_CLOSE) {
              close_conn(c);
              if (open_conn(c) != 0) return -1;
              continue;
            }
          }
        }
      }
      if (!progress) return 0;
    }
  }
}

/* ---- Options, CPU time -------------------------------------------------------- */

static long stat_ticks(int pid) { /* user + system clock ticks of one process */
  char path[64], buf[1024];
  long ut = 0, st = 0;
  FILE *f;
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  if ((f = fopen(path, "r")) == NULL) return 0;
  if (fgets(buf, sizeof(buf), f) != NULL) {
    char *q = strrchr(buf, ')'); /* the name may hold spaces */
    if (q == NULL ||
        sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &ut, &st) != 2)
      ut = st = 0;
  }
  fclose(f);
  return ut + st;
}

static long proc_ticks(int pid) { /* pid and its children (nginx's workers) */
  char path[64], kids[4096] = "", *save = NULL, *tok;
  long total = stat_ticks(pid);
  FILE *f;
  snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
  if ((f = fopen(path, "r")) != NULL) {
    if (fgets(kids, sizeof(kids), f) == NULL) kids[0] = 0;
    fclose(f);
  }
  for (tok = strtok_r(kids, " \n", &save); tok != NULL; tok = strtok_r(NULL, " \n", &save))
    total += stat_ticks(atoi(tok));
  return total;
}

static double own_cpu_s(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 + (double)u.ru_stime.tv_sec +
         (double)u.ru_stime.tv_usec / 1e6;
}

static int usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s --port N [--mode echo|http|http-close] [--conns C] [--size M]\n"
          "       [--tls 1.2|1.3|any|off] [--seconds D] [--warmup W] [--cpu-pid PID]\n",
          argv0);
  return 2;
}

int main(int argc, char **argv) {
  static struct epoll_event evs[256];
  conn *cs;
  double t_end, t_count, t0 = 0, cpu0 = 0;
  long ticks0 = 0;
  int i;
  for (i = 1; i + 1 < argc; i += 2) {
    const char *o = argv[i], *v = argv[i + 1];
    if (strcmp(o, "--port") == 0) port = atoi(v);
    else if (strcmp(o, "--conns") == 0) conns_n = atoi(v);
    else if (strcmp(o, "--size") == 0) size = strtoul(v, NULL, 10);
    else if (strcmp(o, "--seconds") == 0) seconds = atof(v);
    else if (strcmp(o, "--warmup") == 0) warmup = atof(v);
    else if (strcmp(o, "--cpu-pid") == 0) cpu_pid = atoi(v);
    else if (strcmp(o, "--mode") == 0)
      mode = strcmp(v, "http") == 0 ? MODE_HTTP : strcmp(v, "http-close") == 0 ? MODE_HTTP_CLOSE
           : strcmp(v, "echo") == 0 ? MODE_ECHO : -1;
    else if (strcmp(o, "--tls") == 0)
      tls_ver = strcmp(v, "1.2") == 0 ? 12 : strcmp(v, "1.3") == 0 ? 13 : strcmp(v, "any") == 0 ? 1
              : strcmp(v, "off") == 0 ? 0 : -1;
    else return usage(argv[0]);
  }
  if (i != argc || port <= 0 || mode < 0 || tls_ver < 0 || conns_n < 1 || conns_n > MAX_CONNS ||
      size < 1 || size > (64u << 20) || seconds <= 0 || warmup < 0)
    return usage(argv[0]);
  signal(SIGPIPE, SIG_IGN);
  if (tls_ver != 0) {
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) return 1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* a full handshake every time */
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (tls_ver == 12) SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    if (tls_ver == 13) SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    if (tls_ver == 12 || tls_ver == 1) SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  }
  req_len = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n",
                             mode == MODE_HTTP_CLOSE ? "Connection: close\r\n" : "");
  msg = malloc(size);
  rbuf = malloc(size > 65536 ? size : 65536);
  cs = calloc((size_t)conns_n, sizeof(*cs));
  if (msg == NULL || rbuf == NULL || cs == NULL) return 1;
  for (size_t k = 0; k < size; k++) msg[k] = (uint8_t)((k * 131u) ^ (k >> 8));
  ep = epoll_create1(0);
  for (i = 0; i < conns_n; i++)
    if (open_conn(&cs[i]) != 0) {
      fail(&cs[i], "connect");
      return 1;
    }
  t_count = now_s() + warmup;
  t_end = t_count + seconds;
  while (errors == 0) {
    double t = now_s();
    int n;
    if (!counting && t >= t_count) {
      counting = 1;
      t0 = t;
      t_end = t0 + seconds; /* the whole D seconds, however late the warm-up ended */
      cpu0 = own_cpu_s();
      if (cpu_pid) ticks0 = proc_ticks(cpu_pid);
    }
    if (t >= t_end) break;
    n = epoll_wait(ep, evs, 256, 50);
    for (i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (c->fd >= 0 && drive(c) < 0) {
        if (errors == 0) fail(c, "connection ended");
        break;
      }
    }
  }
  {
    double wall = now_s() - t0, ccpu = own_cpu_s() - cpu0;
    long hz = sysconf(_SC_CLK_TCK);
    printf("mode=%s conns=%d size=%zu tls=%s cipher=%s seconds=%.3f ops=%lld echoes_per_s=%.1f "
           "mb_per_s=%.2f",
           mode == MODE_ECHO ? "echo" : mode == MODE_HTTP ? "http" : "http-close", conns_n,
           mode == MODE_ECHO ? size : 0, version, cipher, wall, ops, ops / wall,
           mode == MODE_ECHO ? (double)ops * (double)size / wall / 1e6 : 0.0);
    if (cpu_pid) {
      double scpu = (double)(proc_ticks(cpu_pid) - ticks0) / (double)hz;
      printf(" server_cpu_pct=%.1f server_cpu_us_per_echo=%.3f", scpu / wall * 100,
             ops ? scpu * 1e6 / (double)ops : 0.0);
    }
    printf(" client_cpu_pct=%.1f errors=%lld\n", ccpu / wall * 100, errors);
  }
  return errors ? 1 : 0;
}
