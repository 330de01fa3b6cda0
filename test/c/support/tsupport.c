/* Portable test helpers: time, threads, counters, handle counts, sockets. */
#include "tsupport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#  include <winsock2.h>
#  include <ws2tcpip.h>
#  include <windows.h>
#  include <tlhelp32.h>
typedef SOCKET os_sock;
#  define OS_BAD INVALID_SOCKET
#  define os_close closesocket
static int last_net_error(void) { return WSAGetLastError(); }
#  define IS_TIMEOUT(e) ((e) == WSAETIMEDOUT)
#  define IS_RESET(e) ((e) == WSAECONNRESET || (e) == WSAECONNABORTED)
#  define IS_WOULDBLOCK(e) ((e) == WSAEWOULDBLOCK)
#else
#  include <arpa/inet.h>
#  include <dirent.h>
#  include <errno.h>
#  include <fcntl.h>
#  include <netinet/in.h>
#  include <netinet/tcp.h>
#  include <pthread.h>
#  include <signal.h>
#  include <sys/select.h>
#  include <sys/socket.h>
#  include <sys/time.h>
#  include <time.h>
#  include <unistd.h>
typedef int os_sock;
#  define OS_BAD (-1)
#  define os_close close
static int last_net_error(void) { return errno; }
#  define IS_TIMEOUT(e) ((e) == EAGAIN || (e) == EWOULDBLOCK)
#  define IS_RESET(e) ((e) == ECONNRESET || (e) == EPIPE)
#  define IS_WOULDBLOCK(e) ((e) == EAGAIN || (e) == EWOULDBLOCK)
#endif

/* ---- Time and threads ------------------------------------------------------------ */

uint64_t ts_now_ms(void) {
#if defined(_WIN32)
  return GetTickCount64();
#else
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
#endif
}

struct ts_thread {
  void (*fn)(void *);
  void *arg;
#if defined(_WIN32)
  HANDLE h;
#else
  pthread_t t;
#endif
};

#if defined(_WIN32)
static DWORD WINAPI thread_main(void *p) {
  ts_thread *t = p;
  t->fn(t->arg);
  return 0;
}
#else
static void *thread_main(void *p) {
  ts_thread *t = p;
  t->fn(t->arg);
  return NULL;
}
#endif

ts_thread *ts_thread_start(void (*fn)(void *), void *arg) {
  ts_thread *t = calloc(1, sizeof(*t));
  assert_non_null(t);
  t->fn = fn;
  t->arg = arg;
#if defined(_WIN32)
  t->h = CreateThread(NULL, 0, thread_main, t, 0, NULL);
  assert_non_null(t->h);
#else
  assert_int_equal(pthread_create(&t->t, NULL, thread_main, t), 0);
#endif
  return t;
}

void ts_thread_join(ts_thread *t) {
#if defined(_WIN32)
  WaitForSingleObject(t->h, INFINITE);
  CloseHandle(t->h);
#else
  pthread_join(t->t, NULL);
#endif
  free(t);
}

struct ts_counter {
#if defined(_WIN32)
  SRWLOCK lock;
  CONDITION_VARIABLE cond;
#else
  pthread_mutex_t lock;
  pthread_cond_t cond;
#endif
  int64_t value;
};

ts_counter *ts_counter_new(void) {
  ts_counter *c = calloc(1, sizeof(*c));
  assert_non_null(c);
#if defined(_WIN32)
  InitializeSRWLock(&c->lock);
  InitializeConditionVariable(&c->cond);
#else
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->cond, NULL);
#endif
  return c;
}

void ts_counter_free(ts_counter *c) {
  if (c == NULL) return;
#if !defined(_WIN32)
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->cond);
#endif
  free(c);
}

#if defined(_WIN32)
#  define C_LOCK(c) AcquireSRWLockExclusive(&(c)->lock)
#  define C_UNLOCK(c) ReleaseSRWLockExclusive(&(c)->lock)
#else
#  define C_LOCK(c) pthread_mutex_lock(&(c)->lock)
#  define C_UNLOCK(c) pthread_mutex_unlock(&(c)->lock)
#endif

void ts_counter_add(ts_counter *c, int64_t n) {
  C_LOCK(c);
  c->value += n;
#if defined(_WIN32)
  WakeAllConditionVariable(&c->cond);
#else
  pthread_cond_broadcast(&c->cond);
#endif
  C_UNLOCK(c);
}

int64_t ts_counter_get(ts_counter *c) {
  int64_t v;
  C_LOCK(c);
  v = c->value;
  C_UNLOCK(c);
  return v;
}

int ts_counter_wait(ts_counter *c, int64_t target, int timeout_ms) {
  uint64_t deadline = ts_now_ms() + (uint64_t)timeout_ms;
  int rc = 0;
  C_LOCK(c);
  while (c->value < target) {
    uint64_t now = ts_now_ms();
    if (now >= deadline) {
      rc = -1;
      break;
    }
#if defined(_WIN32)
    SleepConditionVariableSRW(&c->cond, &c->lock, (DWORD)(deadline - now), 0);
#else
    {
      struct timespec ts;
      uint64_t left = deadline - now;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_sec += (time_t)(left / 1000);
      ts.tv_nsec += (long)(left % 1000) * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&c->cond, &c->lock, &ts);
    }
#endif
  }
  C_UNLOCK(c);
  return rc;
}

int ts_on_wine(void) {
#if defined(_WIN32)
  HMODULE ntdll = GetModuleHandleA("ntdll.dll");
  return ntdll != NULL && GetProcAddress(ntdll, "wine_get_version") != NULL;
#else
  return 0;
#endif
}

#if !defined(_WIN32)
static long count_entries(const char *dir) {
  long n = 0;
  DIR *d = opendir(dir);
  struct dirent *e;
  if (d == NULL) return -1;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}
#endif

long ts_handle_count(void) {
#if defined(_WIN32)
  /* Wine answers GetProcessHandleCount with 0: count the handle values that
   * are valid instead, up to a long run of invalid ones. */
  DWORD n = 0, flags;
  uintptr_t h, gap = 0;
  if (GetProcessHandleCount(GetCurrentProcess(), &n) && n > 0) return (long)n;
  for (h = 4; gap < 8192; h += 4) {
    if (GetHandleInformation((HANDLE)h, &flags)) {
      n++;
      gap = 0;
    } else {
      gap++;
    }
  }
  return (long)n;
#else
  return count_entries("/proc/self/fd");
#endif
}

long ts_thread_count(void) {
#if defined(_WIN32)
  THREADENTRY32 te;
  DWORD pid = GetCurrentProcessId();
  long n = 0;
  HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
  if (snap == INVALID_HANDLE_VALUE) return -1;
  te.dwSize = sizeof(te);
  if (Thread32First(snap, &te)) {
    do {
      if (te.th32OwnerProcessID == pid) n++;
    } while (Thread32Next(snap, &te));
  }
  CloseHandle(snap);
  return n;
#else
  return count_entries("/proc/self/task");
#endif
}

/* ---- A client that keeps connecting -------------------------------------------------- */

struct ts_churn {
  uint16_t port;
  ts_counter *stop; /* nonzero: stop */
  long connected;
  ts_thread *t;
};

static void churn_main(void *arg) {
  ts_churn *k = arg;
  while (ts_counter_get(k->stop) == 0) {
    ts_sock s = ts_connect(k->port);
    if (s == TS_BAD_SOCK) break; /* the listener is gone */
    k->connected++;
    ts_send_all(s, "abc", 3);
    ts_close(s);
  }
}

ts_churn *ts_churn_start(uint16_t port) {
  ts_churn *k = calloc(1, sizeof(*k));
  assert_non_null(k);
  k->port = port;
  k->stop = ts_counter_new();
  k->t = ts_thread_start(churn_main, k);
  return k;
}

long ts_churn_stop(ts_churn *k) {
  long n;
  ts_counter_add(k->stop, 1);
  ts_thread_join(k->t);
  n = k->connected;
  ts_counter_free(k->stop);
  free(k);
  return n;
}

/* ---- Sockets ------------------------------------------------------------------------ */

void ts_net_init(void) {
#if defined(_WIN32)
  static int done;
  WSADATA wsa;
  if (!done) assert_int_equal(WSAStartup(MAKEWORD(2, 2), &wsa), 0);
  done = 1;
#else
  signal(SIGPIPE, SIG_IGN);
#endif
}

void ts_set_timeout(ts_sock s, int ms) {
#if defined(_WIN32)
  DWORD t = (DWORD)ms;
  setsockopt((os_sock)s, SOL_SOCKET, SO_RCVTIMEO, (const char *)&t, sizeof(t));
  setsockopt((os_sock)s, SOL_SOCKET, SO_SNDTIMEO, (const char *)&t, sizeof(t));
#else
  struct timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  setsockopt((os_sock)s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt((os_sock)s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
#endif
}

static ts_sock connect_with(const char *addr, uint16_t port, int rcvbuf) {
  struct sockaddr_storage ss;
  socklen_t len;
  os_sock s;
  int one = 1;
  memset(&ss, 0, sizeof(ss));
  if (strchr(addr, ':') != NULL) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, addr, &a->sin6_addr);
    len = sizeof(*a);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, addr, &a->sin_addr);
    len = sizeof(*a);
  }
  s = socket(ss.ss_family, SOCK_STREAM, IPPROTO_TCP);
  if (s == OS_BAD) return TS_BAD_SOCK;
  if (rcvbuf > 0)
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, (const char *)&rcvbuf, sizeof(rcvbuf));
  if (connect(s, (struct sockaddr *)&ss, len) != 0) {
    os_close(s);
    return TS_BAD_SOCK;
  }
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof(one));
  ts_set_timeout((ts_sock)s, TS_TIMEOUT_MS);
  return (ts_sock)s;
}

ts_sock ts_connect_to(const char *addr, uint16_t port) { return connect_with(addr, port, 0); }

ts_sock ts_connect(uint16_t port) { return connect_with("127.0.0.1", port, 0); }

ts_sock ts_connect_rcvbuf(uint16_t port, int rcvbuf) { return connect_with("127.0.0.1", port, rcvbuf); }

int ts_send_all(ts_sock s, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    int chunk = len > (1u << 20) ? (1 << 20) : (int)len;
#if defined(_WIN32)
    int n = send((os_sock)s, p, chunk, 0);
#else
    int n = (int)send((os_sock)s, p, (size_t)chunk, MSG_NOSIGNAL);
#endif
    if (n <= 0) {
      int e = last_net_error();
      return IS_RESET(e) ? TS_RESET : IS_TIMEOUT(e) ? TS_TIMEOUT : TS_ERROR;
    }
    p += n;
    len -= (size_t)n;
  }
  return TS_OK;
}

static int recv_some(ts_sock s, void *buf, size_t len, size_t *got) {
  int n = (int)recv((os_sock)s, buf, len > (1u << 20) ? (1 << 20) : (int)len, 0);
  if (n > 0) {
    *got = (size_t)n;
    return TS_OK;
  }
  *got = 0;
  if (n == 0) return TS_EOF;
  {
    int e = last_net_error();
    return IS_RESET(e) ? TS_RESET : IS_TIMEOUT(e) ? TS_TIMEOUT : TS_ERROR;
  }
}

int ts_recv_exact(ts_sock s, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    size_t got;
    int rc = recv_some(s, p, len, &got);
    if (rc != TS_OK) return rc;
    p += got;
    len -= got;
  }
  return TS_OK;
}

int ts_recv_to_end(ts_sock s, uint8_t *buf, size_t cap, size_t *got) {
  uint8_t scratch[16384];
  *got = 0;
  for (;;) {
    size_t n;
    int rc;
    if (buf != NULL && *got < cap)
      rc = recv_some(s, buf + *got, cap - *got, &n);
    else
      rc = recv_some(s, scratch, sizeof(scratch), &n);
    if (rc != TS_OK) return rc;
    *got += n;
  }
}

int ts_ended_by_reset(ts_sock s, uint8_t *buf, size_t cap, size_t *got) {
  int rc = ts_recv_to_end(s, buf, cap, got);
  if (rc == TS_RESET) return 1;
  assert_int_equal(rc, TS_EOF);
  return ts_send_all(s, "?", 1) == TS_RESET;
}

/* The lines of /proc/net/tcp(6) ("sl local remote st tx_queue:rx_queue
 * tr:when retrnsmt ...", all hex) of the sockets on `port` that hold bytes
 * going towards it: unread on its end (rx_queue), or sent to it from the
 * other end and not yet acknowledged (tx_queue; tr 1 is a retransmission
 * timer, 4 a zero-window probe). */
void ts_dump_port(uint16_t port) {
  static const char *const files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
  char line[512];
  size_t i;
  for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    FILE *f = fopen(files[i], "r");
    if (f == NULL) continue; /* not Linux */
    while (fgets(line, sizeof(line), f) != NULL) {
      char local[64], remote[64];
      unsigned st, lport = 0, rport = 0;
      unsigned long tx, rx;
      const char *lp, *rp;
      if (sscanf(line, " %*s %63s %63s %x %lx:%lx", local, remote, &st, &tx, &rx) != 5) continue;
      lp = strrchr(local, ':');
      rp = strrchr(remote, ':');
      if (lp == NULL || rp == NULL || sscanf(lp + 1, "%x", &lport) != 1 ||
          sscanf(rp + 1, "%x", &rport) != 1)
        continue;
      if ((lport == port && rx != 0) || (rport == port && tx != 0))
        print_message("%s: %s", files[i], line);
    }
    fclose(f);
  }
}

void ts_shutdown_send(ts_sock s) {
#if defined(_WIN32)
  shutdown((os_sock)s, SD_SEND);
#else
  shutdown((os_sock)s, SHUT_WR);
#endif
}

void ts_close(ts_sock s) {
  if (s != TS_BAD_SOCK) os_close((os_sock)s);
}

void ts_close_reset(ts_sock s) {
  struct linger l;
  l.l_onoff = 1;
  l.l_linger = 0;
  setsockopt((os_sock)s, SOL_SOCKET, SO_LINGER, (const char *)&l, sizeof(l));
  os_close((os_sock)s);
}

uint16_t ts_local_port(ts_sock s) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  getsockname((os_sock)s, (struct sockaddr *)&ss, &len);
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

ts_sock ts_listen_any(uint16_t *port) {
  struct sockaddr_in a;
  os_sock s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  assert_true(s != OS_BAD);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(s, 16), 0);
  *port = ts_local_port((ts_sock)s);
  return (ts_sock)s;
}

void ts_fill(uint8_t *buf, size_t len, uint32_t stream, uint64_t off) {
  size_t i;
  for (i = 0; i < len; i++) buf[i] = ts_pattern(stream, off + i);
}

size_t ts_check(const uint8_t *buf, size_t len, uint32_t stream, uint64_t off) {
  size_t i;
  for (i = 0; i < len; i++)
    if (buf[i] != ts_pattern(stream, off + i)) return i;
  return len;
}

void ts_echo_check(uint16_t port, const char *msg, int timeout_ms) {
  size_t len = strlen(msg);
  char buf[256];
  ts_sock a = ts_connect(port);
  assert_true(a != TS_BAD_SOCK);
  assert_true(len <= sizeof(buf));
  ts_set_timeout(a, timeout_ms);
  assert_int_equal(ts_send_all(a, msg, len), TS_OK);
  assert_int_equal(ts_recv_exact(a, buf, len), TS_OK);
  assert_memory_equal(buf, msg, len);
  ts_close(a);
}

/* ---- Filling the kernel's buffers ---------------------------------------------- */

static void set_nonblocking(os_sock s, int on) {
#if defined(_WIN32)
  u_long v = on ? 1 : 0;
  ioctlsocket(s, FIONBIO, &v);
#else
  int fl = fcntl(s, F_GETFL);
  fcntl(s, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
#endif
}

/* Nonzero when s becomes writable within ms. */
static int wait_writable(os_sock s, int ms) {
  fd_set w;
  struct timeval tv;
  FD_ZERO(&w);
  FD_SET(s, &w);
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return select((int)s + 1, NULL, &w, NULL, &tv) > 0;
}

size_t ts_send_until_stalled(ts_sock ts, uint32_t stream, uint64_t off, int stall_ms) {
  os_sock s = (os_sock)ts;
  uint8_t buf[16384];
  size_t total = 0;
  set_nonblocking(s, 1);
  for (;;) {
    int n;
    ts_fill(buf, sizeof(buf), stream, off + total);
#if defined(_WIN32)
    n = send(s, (const char *)buf, (int)sizeof(buf), 0);
#else
    n = (int)send(s, buf, sizeof(buf), MSG_NOSIGNAL);
#endif
    if (n > 0) {
      total += (size_t)n;
      if (total >= ((size_t)256 << 20)) break; /* never held back */
      continue;
    }
    if (n < 0 && !IS_WOULDBLOCK(last_net_error())) break;
    if (!wait_writable(s, stall_ms)) break;
  }
  set_nonblocking(s, 0);
  return total;
}

/* ---- Queue mode ------------------------------------------------------------ */

iocp_server *ts_queue_start(uint32_t queue_events) {
  iocp_config c;
  iocp_server *s = NULL;
  ts_net_init();
  assert_int_equal(iocp_config_init(&c, sizeof(c)), IOCP_OK);
  c.delivery = IOCP_DELIVERY_QUEUE;
  c.queue_events = queue_events;
  assert_int_equal(iocp_create(&c, NULL, NULL, &s), IOCP_OK);
  assert_non_null(s);
  return s;
}

/* Takes events one at a time until one of `type` comes (skipping SENT);
 * fails the test on a time-out or any other event. */
iocp_event ts_queue_next(iocp_server *s, uint32_t type) {
  iocp_event ev;
  uint64_t deadline = ts_now_ms() + TS_TIMEOUT_MS;
  for (;;) {
    int n = iocp_wait(s, &ev, 1, 1000);
    assert_true(n >= 0);
    if (n == 1 && ev.type == IOCP_EVENT_SENT && type != IOCP_EVENT_SENT) continue;
    if (n == 1) {
      assert_int_equal(ev.type, type);
      return ev;
    }
    assert_true(ts_now_ms() < deadline);
  }
}

ts_blob ts_load_file(const char *dir_var, const char *name) {
  char path[1024];
  ts_blob b = {NULL, 0};
  FILE *f;
  long n;
  const char *dir = getenv(dir_var);
  assert_non_null(dir);
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  f = fopen(path, "rb");
  assert_non_null(f);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  n = ftell(f);
  assert_true(n >= 0);
  assert_int_equal(fseek(f, 0, SEEK_SET), 0);
  b.data = malloc((size_t)n + 1);
  assert_non_null(b.data);
  assert_int_equal(fread(b.data, 1, (size_t)n, f), (size_t)n);
  b.data[n] = 0;
  b.len = (size_t)n;
  fclose(f);
  return b;
}

iocp_statistics ts_stats(iocp_server *s) {
  iocp_statistics st;
  memset(&st, 0xAB, sizeof(st));
  st.size = sizeof(st);
  assert_int_equal(iocp_stats(s, &st), IOCP_OK);
  assert_int_equal(st.size, sizeof(st));
  return st;
}

int ts_wait_stat(iocp_server *s, size_t offset, uint64_t target) {
  uint64_t end = ts_now_ms() + TS_TIMEOUT_MS;
  ts_counter *tick = ts_counter_new();
  int rc = -1;
  while (ts_now_ms() < end) {
    iocp_statistics st = ts_stats(s);
    uint64_t v;
    memcpy(&v, (const char *)&st + offset, sizeof(v));
    if (v >= target) {
      rc = 0;
      break;
    }
    ts_counter_wait(tick, 1, 5); /* a 5 ms pause between looks */
  }
  ts_counter_free(tick);
  return rc;
}

static void IOCP_CALL log_error(iocp_server *s, void *user, int level, int code,
                                const char *text) {
  ts_log_rec *l = user;
  (void)s;
  if (level == IOCP_LOG_ERROR) {
    l->code = code;
    snprintf(l->text, sizeof(l->text), "%s", text);
  }
}

int ts_tls_create_rc(const ts_blob *p12, const char *password, uint32_t min_version,
                     ts_log_rec *log) {
  iocp_config cfg;
  iocp_callbacks cb;
  iocp_server *s = (iocp_server *)1;
  int rc;
  iocp_config_init(&cfg, sizeof(cfg));
  cfg.tls_pkcs12 = p12->data;
  cfg.tls_pkcs12_len = (uint32_t)p12->len;
  cfg.tls_password = password;
  cfg.tls_min_version = min_version;
  memset(&cb, 0, sizeof(cb));
  cb.size = sizeof(cb);
  if (log != NULL) {
    memset(log, 0, sizeof(*log));
    cb.on_log = log_error;
  }
  rc = iocp_create(&cfg, &cb, log, &s);
  if (rc == IOCP_OK)
    iocp_destroy(s);
  else
    assert_null(s);
  return rc;
}

void ts_tls_expect_refused(const ts_blob *p12, const char *password, int code, const char *why) {
  ts_log_rec log;
  assert_int_equal(ts_tls_create_rc(p12, password, 0, &log), code);
  assert_int_equal(log.code, code);
  if (why != NULL) assert_non_null(strstr(log.text, why));
}

void ts_tls_bad_peers(rec_server *r, const uint8_t *hello, size_t n) {
  uint8_t end[64];
  size_t got;
  ts_sock a;
  /* Plain HTTP to the TLS port. */
  a = ts_connect(r->port);
  assert_int_equal(ts_send_all(a, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27), TS_OK);
  assert_true(ts_recv_to_end(a, end, sizeof(end), &got) != TS_TIMEOUT);
  ts_close(a);
  /* Garbage behind a handshake record's header. */
  a = ts_connect(r->port);
  assert_int_equal(ts_send_all(a, "\x16\x03\x01\xff\xff garbage garbage garbage", 28), TS_OK);
  assert_true(ts_recv_to_end(a, end, sizeof(end), &got) != TS_TIMEOUT);
  ts_close(a);
  /* Half a ClientHello, then FIN. */
  a = ts_connect(r->port);
  assert_int_equal(ts_send_all(a, hello, n / 2), TS_OK);
  ts_shutdown_send(a);
  assert_true(ts_recv_to_end(a, end, sizeof(end), &got) != TS_TIMEOUT);
  ts_close(a);
  assert_int_equal(TS_WAIT_STAT(r->srv, tls_handshake_failures, 3), 0);
  /* Half a ClientHello, then silence: the handshake's time limit. */
  a = ts_connect(r->port);
  assert_int_equal(ts_send_all(a, hello, n / 2), TS_OK);
  assert_true(ts_recv_to_end(a, end, sizeof(end), &got) != TS_TIMEOUT);
  ts_close(a);
  assert_int_equal(TS_WAIT_STAT(r->srv, tls_handshake_timeouts, 1), 0);
}

int ts_tls_wait_handshakes(rec_server *srv, rec_server *cli, int64_t n) {
  iocp_statistics a, b;
  if (ts_counter_wait(srv->connects, n, TS_TIMEOUT_MS) == 0 &&
      ts_counter_wait(cli->connects, n, TS_TIMEOUT_MS) == 0)
    return 0;
  a = ts_stats(srv->srv);
  b = ts_stats(cli->srv);
  print_error("server: %lld connects, %llu handshakes, %llu failed, %llu timed out, %llu open\n"
              "client: %lld connects, %llu handshakes, %llu failed, %llu timed out, %llu open\n",
              (long long)ts_counter_get(srv->connects), (unsigned long long)a.tls_handshakes,
              (unsigned long long)a.tls_handshake_failures,
              (unsigned long long)a.tls_handshake_timeouts, (unsigned long long)a.connections_open,
              (long long)ts_counter_get(cli->connects), (unsigned long long)b.tls_handshakes,
              (unsigned long long)b.tls_handshake_failures,
              (unsigned long long)b.tls_handshake_timeouts, (unsigned long long)b.connections_open);
  return -1;
}

void ts_flood_on_data(rec_server *r, iocp_conn_id id, const uint8_t *data, size_t len) {
  ts_flood *st = r->user;
  uint8_t chunk[TS_FLOOD_CHUNK];
  (void)data, (void)len;
  for (;;) {
    uint64_t q = 0;
    int rc;
    ts_fill(chunk, sizeof(chunk), 3, st->sent);
    rc = iocp_send(r->srv, id, chunk, sizeof(chunk));
    if (rc == IOCP_EQUEUEFULL) break;
    if (rc != IOCP_OK) {
      rec_violation(r);
      break;
    }
    st->sent += sizeof(chunk);
    iocp_queued(r->srv, id, &q);
    if (q > st->max_queued) st->max_queued = q;
  }
  ts_counter_add(st->done, 1);
}
