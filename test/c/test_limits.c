/* The server-wide controls of 1.1: the idle timeout (a silent peer is
 * dropped, an active one never), the cap on concurrent connections, and the
 * graceful stop with a deadline. */
#include "tsupport.h"

#include <stdlib.h>
#include <string.h>

/* ---- Idle timeout ------------------------------------------------------------------ */

#define IDLE_MS 300

static void test_silent_peer_dropped_active_peer_kept(void **state) {
  iocp_config c;
  rec_server *r;
  uint8_t buf[64];
  size_t got = 0;
  uint64_t t0, rounds = 0;
  ts_sock active, silent;
  (void)state;
  iocp_config_init(&c, sizeof(c));
  c.idle_timeout_ms = IDLE_MS;
  r = rec_start(REC_ECHO, &c, NULL);
  t0 = ts_now_ms();
  silent = ts_connect(r->port);
  active = ts_connect(r->port);
  assert_int_equal(ts_counter_wait(r->connects, 2, TS_TIMEOUT_MS), 0);
  /* The active peer talks every ~IDLE_MS/6 (an echo round trip paces it)
   * until the silent one is gone, and then for three more timeouts. */
  while (ts_counter_get(r->reasons[IOCP_REASON_IDLE_TIMEOUT]) == 0 ||
         ts_now_ms() - t0 < 4 * IDLE_MS) {
    uint64_t next = ts_now_ms() + IDLE_MS / 6;
    assert_int_equal(ts_send_all(active, "ping", 4), TS_OK);
    assert_int_equal(ts_recv_exact(active, buf, 4), TS_OK);
    rounds++;
    /* Pacing the traffic under test (not waiting for an event). */
    while (ts_now_ms() < next) ts_counter_wait(r->late, 1, (int)(next - ts_now_ms()));
    assert_true(ts_now_ms() - t0 < TS_TIMEOUT_MS);
  }
  assert_true(ts_ended_by_reset(silent, buf, sizeof(buf), &got));
  assert_int_equal(got, 0);
  /* Never before its timeout. */
  assert_true(ts_now_ms() - t0 >= IDLE_MS);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_IDLE_TIMEOUT]), 1);
  assert_int_equal(ts_send_all(active, "ping", 4), TS_OK);
  assert_int_equal(ts_recv_exact(active, buf, 4), TS_OK);
  ts_close(silent);
  ts_close(active);
  assert_int_equal(ts_counter_wait(r->disconnects, 2, TS_TIMEOUT_MS), 0);
  rec_stop(r);
}

/* Per connection: one gets a short timeout, the server has none; 0 turns
 * a connection's timeout off again. */
static void short_timeout(rec_server *r, iocp_conn_id id) {
  uint32_t ms = ts_counter_get(r->connects) == 0 ? 100 : 0; /* first: 100 ms */
  if (iocp_set_idle_timeout(r->srv, id, ms) != IOCP_OK) rec_violation(r);
}

static void test_idle_timeout_per_connection(void **state) {
  rec_hooks h = {0};
  rec_server *r;
  uint8_t buf[16];
  size_t got = 0;
  iocp_conn_id id2;
  ts_sock a, b;
  (void)state;
  h.on_connect = short_timeout;
  r = rec_start(0, NULL, &h);
  a = ts_connect(r->port);
  assert_true(rec_wait_connect(r, 1) != 0);
  b = ts_connect(r->port);
  id2 = rec_wait_connect(r, 2);
  assert_true(ts_ended_by_reset(a, buf, sizeof(buf), &got));
  assert_int_equal(ts_counter_wait(r->reasons[IOCP_REASON_IDLE_TIMEOUT], 1, TS_TIMEOUT_MS), 0);
  /* b has none: still open; then one of 50 ms is set from this thread. */
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(rec_reason(r, id2), 0);
  assert_int_equal(iocp_set_idle_timeout(r->srv, id2, 50), IOCP_OK);
  assert_true(ts_ended_by_reset(b, buf, sizeof(buf), &got));
  assert_int_equal(ts_counter_wait(r->reasons[IOCP_REASON_IDLE_TIMEOUT], 2, TS_TIMEOUT_MS), 0);
  assert_int_equal(iocp_set_idle_timeout(r->srv, id2, 50), IOCP_ENOTFOUND);
  ts_close(a);
  ts_close(b);
  rec_stop(r);
}

/* ---- The connection cap --------------------------------------------------------------- */

static void test_cap_refuses_the_next_and_accepts_after_one_leaves(void **state) {
  iocp_config c;
  rec_server *r;
  uint8_t buf[16];
  size_t got = 0;
  ts_sock a, b, x, d;
  int end;
  (void)state;
  iocp_config_init(&c, sizeof(c));
  c.max_connections = 2;
  r = rec_start(REC_ECHO, &c, NULL);
  a = ts_connect(r->port);
  b = ts_connect(r->port);
  assert_int_equal(ts_counter_wait(r->connects, 2, TS_TIMEOUT_MS), 0);
  assert_int_equal(iocp_refused_count(r->srv), 0);
  /* The kernel accepts it, the library resets it (maybe before connect
   * returns). */
  x = ts_connect(r->port);
  if (x != TS_BAD_SOCK) {
    end = ts_recv_to_end(x, buf, sizeof(buf), &got);
    assert_true(end == TS_EOF || end == TS_RESET);
    assert_int_equal(got, 0);
  }
  assert_int_equal(iocp_refused_count(r->srv), 1);
  assert_int_equal(ts_counter_get(r->connects), 2); /* no callback for it */
  assert_int_equal(iocp_connection_count(r->srv), 2);
  ts_close(x);
  /* One leaves: the next is served. */
  ts_close(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  d = ts_connect(r->port);
  assert_int_equal(ts_counter_wait(r->connects, 3, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_send_all(d, "abc", 3), TS_OK);
  assert_int_equal(ts_recv_exact(d, buf, 3), TS_OK);
  assert_int_equal(iocp_refused_count(r->srv), 1);
  ts_close(b);
  ts_close(d);
  assert_int_equal(ts_counter_wait(r->disconnects, 3, TS_TIMEOUT_MS), 0);
  rec_stop(r);
}

/* Outbound connections count against the cap, as iocp_connection_count()
 * counts them, and a socket refused at the cap is not an accepted
 * connection in the statistics (those are the ones handed to on_connect). */
static void test_cap_counts_outbound_connections_and_refusals_are_not_accepts(void **state) {
  iocp_config c;
  iocp_statistics st;
  rec_server *r;
  uint8_t buf[16];
  size_t got = 0;
  uint16_t lport;
  iocp_conn_id out1, out2;
  ts_sock l, a, x;
  int end;
  (void)state;
  iocp_config_init(&c, sizeof(c));
  c.max_connections = 3;
  r = rec_start(REC_ECHO, &c, NULL);
  l = ts_listen_any(&lport); /* the kernel completes the handshakes */
  assert_int_equal(iocp_connect(r->srv, "127.0.0.1", lport, &out1), IOCP_OK);
  assert_int_equal(iocp_connect(r->srv, "127.0.0.1", lport, &out2), IOCP_OK);
  assert_int_equal(ts_counter_wait(r->connects, 2, TS_TIMEOUT_MS), 0);
  a = ts_connect(r->port); /* the third: within the cap */
  assert_int_equal(ts_counter_wait(r->connects, 3, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_send_all(a, "abc", 3), TS_OK);
  assert_int_equal(ts_recv_exact(a, buf, 3), TS_OK);
  x = ts_connect(r->port); /* the fourth: past it, reset */
  if (x != TS_BAD_SOCK) {
    end = ts_recv_to_end(x, buf, sizeof(buf), &got);
    assert_true(end == TS_EOF || end == TS_RESET);
    assert_int_equal(got, 0);
  }
  assert_int_equal(iocp_refused_count(r->srv), 1);
  assert_int_equal(ts_counter_get(r->connects), 3);
  assert_int_equal(iocp_connection_count(r->srv), 3);
  memset(&st, 0, sizeof(st));
  st.size = sizeof(st);
  assert_int_equal(iocp_stats(r->srv, &st), IOCP_OK);
  assert_int_equal(st.connections_accepted, 1); /* the outbound ones are not accepts */
  assert_int_equal(st.connections_refused, 0);  /* none refused by on_connect */
  ts_close(x);
  ts_close(a);
  ts_close(l);
  assert_int_equal(ts_counter_wait(r->disconnects, 3, TS_TIMEOUT_MS), 0);
  rec_stop(r);
}

/* ---- Graceful stop --------------------------------------------------------------------- */

#define STOP_BYTES (4u << 20)

static void queue_a_lot(rec_server *r, iocp_conn_id id) {
  uint8_t *buf = malloc(STOP_BYTES);
  ts_fill(buf, STOP_BYTES, 21, 0);
  if (iocp_send(r->srv, id, buf, STOP_BYTES) != IOCP_OK) rec_violation(r);
  free(buf);
}

typedef struct reader_args {
  ts_sock s;
  uint8_t *buf;
  size_t got;
  int end;
} reader_args;

/* A well-behaved peer: reads everything, then closes when it sees FIN. */
static void read_then_close(void *p) {
  reader_args *a = p;
  a->end = ts_recv_to_end(a->s, a->buf, STOP_BYTES + 16, &a->got);
  ts_close(a->s);
}

static void stop_in_callback(rec_server *r, iocp_conn_id id, const uint8_t *d, size_t n) {
  (void)id;
  (void)d;
  (void)n;
  if (iocp_stop_graceful(r->srv, 0) != IOCP_EINCALLBACK) rec_violation(r);
}

static void test_graceful_stop_delivers_queues_and_ends_a_non_reader_at_the_deadline(void **state) {
  rec_hooks h = {0};
  iocp_config c;
  rec_server *r;
  reader_args good[2];
  ts_thread *t[2];
  uint8_t buf[16];
  size_t got = 0;
  uint64_t t0;
  ts_sock bad;
  int i, n;
  (void)state;
  iocp_config_init(&c, sizeof(c));
  c.max_send_queue = STOP_BYTES;
  h.on_connect = queue_a_lot;
  h.on_data = stop_in_callback;
  r = rec_start(REC_HANDLE_PEER_CLOSE, &c, &h);
  for (i = 0; i < 2; i++) {
    good[i].s = ts_connect(r->port);
    good[i].buf = malloc(STOP_BYTES + 16);
    good[i].got = 0;
  }
  bad = ts_connect_rcvbuf(r->port, 4096);
  assert_int_equal(ts_counter_wait(r->connects, 3, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_send_all(bad, "x", 1), TS_OK); /* stop from a callback: refused */
  assert_int_equal(ts_counter_wait(r->bytes_in, 1, TS_TIMEOUT_MS), 0);
  for (i = 0; i < 2; i++) t[i] = ts_thread_start(read_then_close, &good[i]);

  t0 = ts_now_ms();
  n = iocp_stop_graceful(r->srv, 1500);
  assert_int_equal(n, 1); /* only the one that never read */
  assert_true(ts_now_ms() - t0 >= 1500 - 20);
  for (i = 0; i < 2; i++) {
    ts_thread_join(t[i]);
    assert_int_equal(good[i].end, TS_EOF);
    assert_int_equal(good[i].got, STOP_BYTES);
    assert_int_equal(ts_check(good[i].buf, good[i].got, 21, 0), good[i].got);
    free(good[i].buf);
  }
  /* Every connection ended once, before the stop returned. */
  assert_int_equal(ts_counter_get(r->disconnects), 3);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]), 2);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_STOP_DEADLINE]), 1);
  assert_true(ts_ended_by_reset(bad, buf, sizeof(buf), &got));
  ts_close(bad);
  /* Stopped: no more accepts, a second stop is refused. */
  assert_int_equal(iocp_stop_graceful(r->srv, 0), IOCP_ESTOPPED);
  assert_int_equal(iocp_connection_count(r->srv), 0);
  assert_int_equal(ts_connect(r->port), TS_BAD_SOCK);
  rec_stop(r);
}

static void test_graceful_stop_with_no_connections_and_zero_timeout(void **state) {
  rec_server *r = rec_start(0, NULL, NULL);
  ts_sock a;
  (void)state;
  assert_int_equal(iocp_stop_graceful(r->srv, 0), 0);
  rec_stop(r);
  /* A connection still open at timeout 0 is closed at once. */
  r = rec_start(0, NULL, NULL);
  a = ts_connect(r->port);
  assert_int_equal(ts_counter_wait(r->connects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(iocp_stop_graceful(r->srv, 0), 1);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_STOP_DEADLINE]), 1);
  ts_close(a);
  rec_stop(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_silent_peer_dropped_active_peer_kept),
      cmocka_unit_test(test_idle_timeout_per_connection),
      cmocka_unit_test(test_cap_refuses_the_next_and_accepts_after_one_leaves),
      cmocka_unit_test(test_cap_counts_outbound_connections_and_refusals_are_not_accepts),
      cmocka_unit_test(test_graceful_stop_delivers_queues_and_ends_a_non_reader_at_the_deadline),
      cmocka_unit_test(test_graceful_stop_with_no_connections_and_zero_timeout),
  };
  ts_net_init();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
