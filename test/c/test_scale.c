/* Scale: the statistics, the receive path that holds no buffer while a
 * connection is idle (a peer that speaks after a silence, one that resets
 * while idle) and 2,000 idle connections that each echo afterwards.
 *
 * Built twice on Windows: test_scale uses the shipped DLL (zero-byte
 * receives); test_scale_buffered links the static build and switches the
 * engine to receives that keep a buffer posted (iocp__tuning_defaults), so both
 * paths stay covered. */
#include "tsupport.h"

#include <stdlib.h>
#include <string.h>

#if defined(SCALE_BUFFERED)
#  include "../win/internal.h" /* the engine's own: iocp__tuning_defaults */
#endif

/* Waits until the server's counters say `field` reached `want`. */
#define WAIT_STAT(srv, field, want)                                                 \
  do {                                                                              \
    uint64_t until_ = ts_now_ms() + TS_TIMEOUT_MS;                                  \
    while (ts_stats(srv).field != (uint64_t)(want) && ts_now_ms() < until_) {       \
      ts_counter_wait(ts_never, 1, 10); /* a bounded pause between two polls */     \
    }                                                                               \
    assert_int_equal(ts_stats(srv).field, (uint64_t)(want));                       \
  } while (0)

static ts_counter *ts_never; /* never reaches 1: a bounded wait */

static void test_stats_count_connections_and_bytes(void **state) {
  rec_server *r = rec_start(REC_ECHO, NULL, NULL);
  rec_server *refuser = rec_start(REC_REFUSE, NULL, NULL);
  iocp_statistics st;
  ts_sock a, b, x;
  uint8_t buf[1000];
  (void)state;

  st = ts_stats(r->srv);
  assert_int_equal(st.connections_accepted, 0);
  assert_int_equal(st.connections_open, 0);
  assert_int_equal(st.bytes_received, 0);
  assert_int_equal(st.reserved_, 0);

  a = ts_connect(r->port);
  b = ts_connect(r->port);
  assert_true(rec_wait_connect(r, 2) != 0);
  ts_fill(buf, sizeof(buf), 1, 0);
  assert_int_equal(ts_send_all(a, buf, 600), TS_OK);
  assert_int_equal(ts_send_all(b, buf, 400), TS_OK);
  assert_int_equal(ts_recv_exact(a, buf, 600), TS_OK);
  assert_int_equal(ts_recv_exact(b, buf, 400), TS_OK);
  WAIT_STAT(r->srv, bytes_sent, 1000);
  st = ts_stats(r->srv);
  assert_int_equal(st.connections_accepted, 2);
  assert_int_equal(st.connections_refused, 0);
  assert_int_equal(st.connections_open, 2);
  assert_int_equal(st.bytes_received, 1000);
  assert_int_equal(st.bytes_queued, 0);
  assert_int_equal(st.accept_errors, 0);
  assert_int_equal(st.system_errors, 0);

  ts_close(a);
  ts_close(b);
  assert_int_equal(ts_counter_wait(r->disconnects, 2, TS_TIMEOUT_MS), 0);
  st = ts_stats(r->srv);
  assert_int_equal(st.connections_open, 0);
  assert_int_equal(st.connections_accepted, 2);

  /* A refused connection is accepted, refused, and never open afterwards. */
  x = ts_connect(refuser->port);
  assert_true(x != TS_BAD_SOCK);
  WAIT_STAT(refuser->srv, connections_refused, 1);
  st = ts_stats(refuser->srv);
  assert_int_equal(st.connections_accepted, 1);
  ts_close(x);
  WAIT_STAT(refuser->srv, connections_open, 0);
  rec_stop(refuser);
  rec_stop(r);
}

/* Bytes queued count what iocp_send() took and the peer has not been sent. */
static void hold_back(rec_server *r, iocp_conn_id id) {
  static uint8_t big[1 << 20];
  (void)r;
  /* More than the socket takes while the peer does not read. */
  for (int i = 0; i < 8; i++) iocp_send(r->srv, id, big, sizeof(big));
}

static void test_stats_bytes_queued(void **state) {
  rec_hooks hooks = {0};
  rec_server *r;
  iocp_statistics st;
  ts_sock a;
  hooks.on_connect = hold_back;
  r = rec_start(0, NULL, &hooks);
  (void)state;
  a = ts_connect_rcvbuf(r->port, 4096);
  assert_true(rec_wait_connect(r, 1) != 0);
  /* Nothing leaves once the peer's window is full: most stays queued. The
   * two counters move in two steps, so poll until a snapshot falls between. */
  {
    uint64_t until = ts_now_ms() + TS_TIMEOUT_MS;
    do {
      st = ts_stats(r->srv);
      if (st.bytes_queued + st.bytes_sent == 8u << 20) break;
      ts_counter_wait(ts_never, 1, 10);
    } while (ts_now_ms() < until);
  }
  assert_int_equal(st.bytes_queued + st.bytes_sent, 8u << 20);
  assert_true(st.bytes_queued > 0);
  ts_close_reset(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  WAIT_STAT(r->srv, bytes_queued, 0);
  rec_stop(r);
}

static void test_stats_struct_sizes(void **state) {
  rec_server *r = rec_start(REC_ECHO, NULL, NULL);
  struct {
    iocp_statistics st;
    uint64_t newer[2];
  } big;
  iocp_statistics st;
  (void)state;
  assert_int_equal(iocp_stats(NULL, &st), IOCP_EINVAL);
  assert_int_equal(iocp_stats(r->srv, NULL), IOCP_EINVAL);
  /* An unknown layout, shorter than the first (1.1: up to system_errors). */
  st.size = (uint32_t)(offsetof(iocp_statistics, system_errors) + sizeof(uint64_t) - 8);
  assert_int_equal(iocp_stats(r->srv, &st), IOCP_EVERSION);
  /* A 1.1 caller's layout: filled up to its size, nothing past it written. */
  memset(&st, 0xFF, sizeof(st));
  st.size = (uint32_t)(offsetof(iocp_statistics, system_errors) + sizeof(uint64_t));
  assert_int_equal(iocp_stats(r->srv, &st), IOCP_OK);
  assert_int_equal(st.size, offsetof(iocp_statistics, system_errors) + sizeof(uint64_t));
  assert_true(st.tls_handshakes == UINT64_MAX);
  st.size = 0;
  assert_int_equal(iocp_stats(r->srv, &st), IOCP_EVERSION);
  /* A newer caller's larger struct: the fields we do not know are zeroed. */
  memset(&big, 0xFF, sizeof(big));
  big.st.size = sizeof(big);
  assert_int_equal(iocp_stats(r->srv, &big.st), IOCP_OK);
  assert_int_equal(big.st.size, sizeof(iocp_statistics));
  assert_int_equal(big.st.connections_open, 0);
  assert_int_equal(big.newer[0], 0);
  assert_int_equal(big.newer[1], 0);
  rec_stop(r);
}

/* ---- The receive path of an idle connection ----------------------------------- */

static void test_peer_speaks_after_a_silence(void **state) {
  rec_server *r = rec_start(REC_ECHO, NULL, NULL);
  ts_sock a[8];
  char buf[32];
  int i;
  (void)state;
  for (i = 0; i < 8; i++) a[i] = ts_connect(r->port);
  assert_true(rec_wait_connect(r, 8) != 0);
  /* A silence: nothing may arrive (the receives wait, holding no buffer). */
  assert_int_equal(ts_counter_wait(r->bytes_in, 1, 1500), -1);
  for (i = 7; i >= 0; i--) {
    memset(buf, 'a' + i, sizeof(buf));
    assert_int_equal(ts_send_all(a[i], buf, sizeof(buf)), TS_OK);
  }
  for (i = 0; i < 8; i++) {
    char want[32];
    memset(want, 'a' + i, sizeof(want));
    assert_int_equal(ts_recv_exact(a[i], buf, sizeof(buf)), TS_OK);
    assert_memory_equal(buf, want, sizeof(buf));
  }
  /* And again after a second silence, in many small pieces. */
  assert_int_equal(ts_counter_wait(r->bytes_in, 8 * 32 + 1, 1000), -1);
  for (i = 0; i < 8; i++) {
    int k;
    for (k = 0; k < 16; k++) assert_int_equal(ts_send_all(a[i], "x", 1), TS_OK);
    assert_int_equal(ts_recv_exact(a[i], buf, 16), TS_OK);
    assert_memory_equal(buf, "xxxxxxxxxxxxxxxx", 16);
    ts_close(a[i]);
  }
  assert_int_equal(ts_counter_wait(r->disconnects, 8, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]), 8);
  rec_stop(r);
}

static void test_peer_resets_while_idle(void **state) {
  rec_server *r = rec_start(REC_ECHO, NULL, NULL);
  ts_sock a, b;
  char buf[4];
  (void)state;
  a = ts_connect(r->port);
  b = ts_connect(r->port);
  assert_true(rec_wait_connect(r, 2) != 0);
  assert_int_equal(ts_counter_wait(r->bytes_in, 1, 500), -1); /* both idle */
  ts_close_reset(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  /* Wine may report an RST seen by a poll as a FIN (see test_close.c). */
  if (!ts_on_wine()) assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_RESET]), 1);
  /* The other idle connection is untouched. */
  assert_int_equal(ts_send_all(b, "ping", 4), TS_OK);
  assert_int_equal(ts_recv_exact(b, buf, 4), TS_OK);
  assert_memory_equal(buf, "ping", 4);
  assert_int_equal(iocp_connection_count(r->srv), 1);
  ts_close(b);
  assert_int_equal(ts_counter_wait(r->disconnects, 2, TS_TIMEOUT_MS), 0);
  rec_stop(r);
}

/* ---- 2,000 idle connections, then an echo on each ------------------------------ */

#if !defined(SCALE_BUFFERED)
#define IDLE_CONNS 2000

static void test_2000_idle_connections_then_echo(void **state) {
  rec_server *r = rec_start(REC_ECHO, NULL, NULL);
  ts_sock *socks = calloc(IDLE_CONNS, sizeof(*socks));
  uint8_t out[48], in[48];
  int i;
  (void)state;
  assert_non_null(socks);
  for (i = 0; i < IDLE_CONNS; i++) {
    socks[i] = ts_connect(r->port);
    assert_true(socks[i] != TS_BAD_SOCK);
  }
  assert_true(rec_wait_connect(r, IDLE_CONNS) != 0);
  assert_int_equal(iocp_connection_count(r->srv), IDLE_CONNS);
  assert_int_equal(ts_stats(r->srv).connections_open, IDLE_CONNS);
  /* All sent before any is read: every connection has bytes waiting at once. */
  for (i = 0; i < IDLE_CONNS; i++) {
    ts_fill(out, sizeof(out), (uint32_t)i, 0);
    assert_int_equal(ts_send_all(socks[i], out, sizeof(out)), TS_OK);
  }
  for (i = 0; i < IDLE_CONNS; i++) {
    assert_int_equal(ts_recv_exact(socks[i], in, sizeof(in)), TS_OK);
    assert_int_equal(ts_check(in, sizeof(in), (uint32_t)i, 0), sizeof(in));
  }
  assert_int_equal(ts_stats(r->srv).bytes_received, (uint64_t)IDLE_CONNS * sizeof(out));
  for (i = 0; i < IDLE_CONNS; i++) ts_close(socks[i]);
  assert_int_equal(ts_counter_wait(r->disconnects, IDLE_CONNS, TS_TIMEOUT_MS), 0);
  free(socks);
  rec_stop(r);
}
#endif

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stats_count_connections_and_bytes),
      cmocka_unit_test(test_stats_bytes_queued),
      cmocka_unit_test(test_stats_struct_sizes),
      cmocka_unit_test(test_peer_speaks_after_a_silence),
      cmocka_unit_test(test_peer_resets_while_idle),
#if !defined(SCALE_BUFFERED)
      cmocka_unit_test(test_2000_idle_connections_then_echo),
#endif
  };
  int rc;
  ts_net_init();
  ts_never = ts_counter_new();
#if defined(SCALE_BUFFERED) && defined(_WIN32)
  iocp__tuning_defaults.zero_byte_recv = 0;
#endif
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  ts_counter_free(ts_never);
  return rc;
}
