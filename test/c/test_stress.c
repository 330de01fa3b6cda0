/* Misbehaving peers in numbers: the accept chain must survive thousands of
 * clients that connect and reset at once (the original library's 1.1 bug
 * stopped accepting after ~100,000 of them), and a normal client is still
 * served afterwards. */
#include "tsupport.h"

#include <string.h>

#define RESET_CLIENTS 5000
#define RESET_THREADS 4

typedef struct resetter {
  uint16_t port;
  int count;
  int failures;
} resetter;

static void reset_main(void *arg) {
  resetter *r = arg;
  int i;
  for (i = 0; i < r->count; i++) {
    ts_sock s = ts_connect(r->port);
    if (s == TS_BAD_SOCK) {
      r->failures++;
      continue;
    }
    if (i % 2) ts_send_all(s, "x", 1); /* half of them with data in flight */
    ts_close_reset(s);
  }
}

static void test_5000_connect_reset_clients_then_normal_client(void **state) {
  rec_server *r = rec_start(REC_ECHO, NULL, NULL);
  resetter work[RESET_THREADS];
  ts_thread *threads[RESET_THREADS];
  char buf[6];
  ts_sock a;
  int i;
  (void)state;

  for (i = 0; i < RESET_THREADS; i++) {
    work[i].port = r->port;
    work[i].count = RESET_CLIENTS / RESET_THREADS;
    work[i].failures = 0;
    threads[i] = ts_thread_start(reset_main, &work[i]);
  }
  for (i = 0; i < RESET_THREADS; i++) ts_thread_join(threads[i]);
  for (i = 0; i < RESET_THREADS; i++) assert_int_equal(work[i].failures, 0);

  /* A well-behaved client is served as if nothing had happened. */
  a = ts_connect(r->port);
  assert_true(a != TS_BAD_SOCK);
  assert_int_equal(ts_send_all(a, "normal", 6), TS_OK);
  assert_int_equal(ts_recv_exact(a, buf, 6), TS_OK);
  assert_memory_equal(buf, "normal", 6);
  ts_close(a);

  /* Every connection the server saw ended exactly once; none is left. Some
   * resets may have been dropped inside the accept itself (never seen). */
  assert_int_equal(ts_counter_wait(r->disconnects, ts_counter_get(r->connects), TS_TIMEOUT_MS), 0);
  assert_true(ts_counter_get(r->connects) >= 1);
  rec_stop(r);
}

/* Many connections open at once, held, then all dropped by the peers. */
#define HELD_CONNS 1000

static void test_1000_connections_held_open_then_dropped(void **state) {
  rec_server *r = rec_start(REC_ECHO, NULL, NULL);
  static ts_sock socks[HELD_CONNS];
  char buf[4];
  int i;
  (void)state;
  for (i = 0; i < HELD_CONNS; i++) {
    socks[i] = ts_connect(r->port);
    assert_true(socks[i] != TS_BAD_SOCK);
  }
  assert_int_equal(ts_counter_wait(r->connects, HELD_CONNS, TS_TIMEOUT_MS), 0);
  assert_int_equal(iocp_connection_count(r->srv), HELD_CONNS);
  for (i = 0; i < HELD_CONNS; i += 97) {
    assert_int_equal(ts_send_all(socks[i], "ping", 4), TS_OK);
    assert_int_equal(ts_recv_exact(socks[i], buf, 4), TS_OK);
  }
  for (i = 0; i < HELD_CONNS; i++) {
    if (i % 2)
      ts_close(socks[i]);
    else
      ts_close_reset(socks[i]);
  }
  assert_int_equal(ts_counter_wait(r->disconnects, HELD_CONNS, TS_TIMEOUT_MS), 0);
  assert_int_equal(iocp_connection_count(r->srv), 0);
  assert_true(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]) > 0);
  assert_true(ts_counter_get(r->reasons[IOCP_REASON_RESET]) > 0);
  rec_stop(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_5000_connect_reset_clients_then_normal_client),
      cmocka_unit_test(test_1000_connections_held_open_then_dropped),
  };
  ts_net_init();
  return cmocka_run_group_tests_name("stress", tests, NULL, NULL);
}
