/* TCP keep-alive from the config, white-box: linked against the static build
 * so that the socket-option calls on accepted sockets can be watched
 * through the internal call table (dll/core/hooks.h), and the option read
 * back from the kernel on the server's own socket. */
#include "tsupport.h"
#include "internal.h"

#include <string.h>

#if !defined(_WIN32)
#  include <netinet/in.h>
#  include <netinet/tcp.h>
#endif

/* What the library asked for on the last accepted socket (written on a
 * worker before on_connect, read by the test after it). */
typedef struct seen_opts {
#if defined(_WIN32)
  SOCKET sock;
  struct tcp_keepalive vals;
  int vals_set;
#else
  int fd;
  int idle_s, intvl_s;
#endif
  int keepalive;
} seen_opts;

static seen_opts seen;

#if defined(_WIN32)
#  include <mstcpip.h>
static int WSAAPI watch_setsockopt(SOCKET s, int level, int name, const char *val, int len) {
  if (level == SOL_SOCKET && name == SO_KEEPALIVE) {
    seen.sock = s;
    seen.keepalive = *(const BOOL *)val;
  }
  return setsockopt(s, level, name, val, len);
}
static int WSAAPI watch_wsaioctl(SOCKET s, DWORD code, void *in, DWORD inlen, void *out,
                                 DWORD outlen, LPDWORD got, LPWSAOVERLAPPED ol,
                                 LPWSAOVERLAPPED_COMPLETION_ROUTINE fn) {
  if (code == SIO_KEEPALIVE_VALS && inlen == sizeof(seen.vals)) {
    memcpy(&seen.vals, in, sizeof(seen.vals));
    seen.vals_set = 1;
  }
  return WSAIoctl(s, code, in, inlen, out, outlen, got, ol, fn);
}
static void watch(void) {
  iocp__hooks.setsockopt = watch_setsockopt;
  iocp__hooks.wsaioctl = watch_wsaioctl;
}
static int kernel_keepalive(void) {
  BOOL on = FALSE;
  int len = sizeof(on);
  if (getsockopt(seen.sock, SOL_SOCKET, SO_KEEPALIVE, (char *)&on, &len) != 0) return -1;
  return on ? 1 : 0;
}
#else
static int watch_setsockopt(int fd, int level, int name, const void *val, socklen_t len) {
  if (level == SOL_SOCKET && name == SO_KEEPALIVE) {
    seen.fd = fd;
    seen.keepalive = *(const int *)val;
  }
  if (level == IPPROTO_TCP && name == TCP_KEEPIDLE) seen.idle_s = *(const int *)val;
  if (level == IPPROTO_TCP && name == TCP_KEEPINTVL) seen.intvl_s = *(const int *)val;
  return setsockopt(fd, level, name, val, len);
}
static void watch(void) { iocp__hooks.setsockopt = watch_setsockopt; }
static int kernel_keepalive(void) {
  int on = 0, idle = 0, intvl = 0;
  socklen_t len = sizeof(on);
  if (getsockopt(seen.fd, SOL_SOCKET, SO_KEEPALIVE, &on, &len) != 0) return -1;
  len = sizeof(idle);
  getsockopt(seen.fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &len);
  len = sizeof(intvl);
  getsockopt(seen.fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, &len);
  return on && idle == 2 && intvl == 1 ? 1 : 0;
}
#endif

static void test_keepalive_set_on_accepted_sockets(void **state) {
  iocp_config c;
  rec_server *r;
  ts_sock a;
  (void)state;
  memset(&seen, 0, sizeof(seen));
  watch(); /* before the server starts: never changed under running workers */
  iocp_config_init(&c, sizeof(c));
  c.keepalive = 1;
  c.keepalive_idle_ms = 1500;    /* 2 s on Linux (whole seconds, rounded up) */
  c.keepalive_interval_ms = 1000;
  r = rec_start(0, &c, NULL);
  a = ts_connect(r->port);
  assert_true(rec_wait_connect(r, 1) != 0);
  assert_int_equal(seen.keepalive, 1);
#if defined(_WIN32)
  assert_true(seen.vals_set);
  assert_int_equal(seen.vals.onoff, 1);
  assert_int_equal(seen.vals.keepalivetime, 1500);
  assert_int_equal(seen.vals.keepaliveinterval, 1000);
#else
  assert_int_equal(seen.idle_s, 2);
  assert_int_equal(seen.intvl_s, 1);
#endif
  /* The kernel has it on the server's socket (open until the peer leaves). */
  assert_int_equal(kernel_keepalive(), 1);
  ts_close(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  rec_stop(r);
  iocp__hooks_reset();
}

static void test_keepalive_off_by_default(void **state) {
  rec_server *r;
  ts_sock a;
  (void)state;
  memset(&seen, 0, sizeof(seen));
  watch();
  r = rec_start(0, NULL, NULL);
  a = ts_connect(r->port);
  assert_true(rec_wait_connect(r, 1) != 0);
  assert_int_equal(seen.keepalive, 0); /* never asked for */
  ts_close(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  rec_stop(r);
  iocp__hooks_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keepalive_set_on_accepted_sockets),
      cmocka_unit_test(test_keepalive_off_by_default),
  };
  ts_net_init();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
