/* Data integrity: the echo round trip, the original library's 300 concurrent
 * loopback transfers, and per-thread send order from several threads. */
#include "tsupport.h"

#include <stdlib.h>
#include <string.h>

static void test_echo_round_trip(void **state) {
  rec_server *r = rec_start(REC_ECHO, NULL, NULL);
  ts_sock a;
  char buf[64];
  size_t got = 0;
  (void)state;

  a = ts_connect(r->port);
  assert_true(a != TS_BAD_SOCK);
  assert_true(rec_wait_connect(r, 1) != 0);
  assert_string_equal(r->last_addr, "127.0.0.1");
  assert_int_equal(r->last_peer_port, ts_local_port(a));
  assert_int_equal(iocp_connection_count(r->srv), 1);

  assert_int_equal(ts_send_all(a, "hello, iocp", 11), TS_OK);
  assert_int_equal(ts_recv_exact(a, buf, 11), TS_OK);
  assert_memory_equal(buf, "hello, iocp", 11);

  /* Peer FIN with no on_peer_closed: the library finishes and closes. */
  ts_shutdown_send(a);
  assert_int_equal(ts_recv_to_end(a, (uint8_t *)buf, sizeof(buf), &got), TS_EOF);
  assert_int_equal(got, 0);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]), 1);
  assert_int_equal(ts_counter_get(r->bytes_sent), 11);
  assert_int_equal(iocp_connection_count(r->srv), 0);
  ts_close(a);
  rec_stop(r);
}

/* ---- 300 concurrent 1 MiB transfers ------------------------------------------------ */

#define BULK_CONNS 300
#define BULK_BYTES (1u << 20)
#define BULK_STEP (64u << 10)
#define BULK_GROUPS 6

typedef struct bulk_group {
  ts_sock socks[BULK_CONNS / BULK_GROUPS];
  uint32_t first_stream;
  int failures;
} bulk_group;

static void bulk_writer(void *arg) {
  bulk_group *g = arg;
  uint8_t *buf = malloc(BULK_STEP);
  uint64_t off;
  int i;
  for (off = 0; off < BULK_BYTES; off += BULK_STEP) {
    for (i = 0; i < BULK_CONNS / BULK_GROUPS; i++) {
      ts_fill(buf, BULK_STEP, g->first_stream + (uint32_t)i, off);
      if (ts_send_all(g->socks[i], buf, BULK_STEP) != TS_OK) g->failures++;
    }
  }
  free(buf);
}

static void bulk_reader(void *arg) {
  bulk_group *g = arg;
  uint8_t *buf = malloc(BULK_STEP);
  uint64_t off;
  int i;
  for (off = 0; off < BULK_BYTES; off += BULK_STEP) {
    for (i = 0; i < BULK_CONNS / BULK_GROUPS; i++) {
      if (ts_recv_exact(g->socks[i], buf, BULK_STEP) != TS_OK ||
          ts_check(buf, BULK_STEP, g->first_stream + (uint32_t)i, off) != BULK_STEP)
        g->failures++;
    }
  }
  free(buf);
}

static void test_300_concurrent_1mib_transfers(void **state) {
  rec_server *r = rec_start(REC_ECHO, NULL, NULL);
  bulk_group *groups = calloc(BULK_GROUPS, sizeof(*groups));
  ts_thread *threads[2 * BULK_GROUPS];
  int g, i;
  (void)state;

  for (g = 0; g < BULK_GROUPS; g++) {
    groups[g].first_stream = (uint32_t)(g * (BULK_CONNS / BULK_GROUPS));
    for (i = 0; i < BULK_CONNS / BULK_GROUPS; i++) {
      groups[g].socks[i] = ts_connect(r->port);
      assert_true(groups[g].socks[i] != TS_BAD_SOCK);
    }
  }
  /* All 300 are open at once before any byte moves. */
  assert_int_equal(ts_counter_wait(r->connects, BULK_CONNS, TS_TIMEOUT_MS), 0);
  assert_int_equal(iocp_connection_count(r->srv), BULK_CONNS);

  for (g = 0; g < BULK_GROUPS; g++) {
    threads[2 * g] = ts_thread_start(bulk_writer, &groups[g]);
    threads[2 * g + 1] = ts_thread_start(bulk_reader, &groups[g]);
  }
  for (i = 0; i < 2 * BULK_GROUPS; i++) ts_thread_join(threads[i]);
  for (g = 0; g < BULK_GROUPS; g++) assert_int_equal(groups[g].failures, 0);
  /* The recorder counts a chunk after echoing it, so the last echo can reach
   * a reader before its count: wait for it, then demand the exact total. */
  ts_counter_wait(r->bytes_in, (int64_t)BULK_CONNS * BULK_BYTES, TS_TIMEOUT_MS);
  assert_int_equal(ts_counter_get(r->bytes_in), (int64_t)BULK_CONNS * BULK_BYTES);

  for (g = 0; g < BULK_GROUPS; g++)
    for (i = 0; i < BULK_CONNS / BULK_GROUPS; i++) ts_close(groups[g].socks[i]);
  assert_int_equal(ts_counter_wait(r->disconnects, BULK_CONNS, TS_TIMEOUT_MS), 0);
  free(groups);
  rec_stop(r);
}

/* ---- Sends from several threads keep each thread's order ------------------------ */

#define ORDER_THREADS 4
#define ORDER_MSGS 2000

typedef struct order_sender {
  iocp_server *srv;
  iocp_conn_id id;
  uint8_t thread;
  int failures;
} order_sender;

static void order_send(void *arg) {
  order_sender *o = arg;
  uint32_t seq;
  for (seq = 0; seq < ORDER_MSGS; seq++) {
    uint8_t msg[8] = {'M', o->thread, 0, 0, 0, 0, 0, 'E'};
    memcpy(msg + 2, &seq, 4);
    if (iocp_send(o->srv, o->id, msg, sizeof(msg)) != IOCP_OK) o->failures++;
  }
}

static void test_sends_from_many_threads_keep_call_order(void **state) {
  rec_server *r = rec_start(0, NULL, NULL);
  order_sender senders[ORDER_THREADS];
  ts_thread *threads[ORDER_THREADS];
  uint32_t next[ORDER_THREADS] = {0};
  size_t total = (size_t)ORDER_THREADS * ORDER_MSGS * 8, i;
  uint8_t *buf = malloc(total);
  iocp_conn_id id;
  ts_sock a;
  int t;
  (void)state;

  a = ts_connect(r->port);
  id = rec_wait_connect(r, 1);
  assert_true(id != 0);
  for (t = 0; t < ORDER_THREADS; t++) {
    senders[t].srv = r->srv;
    senders[t].id = id;
    senders[t].thread = (uint8_t)t;
    senders[t].failures = 0;
    threads[t] = ts_thread_start(order_send, &senders[t]);
  }
  for (t = 0; t < ORDER_THREADS; t++) ts_thread_join(threads[t]);
  for (t = 0; t < ORDER_THREADS; t++) assert_int_equal(senders[t].failures, 0);

  assert_int_equal(ts_recv_exact(a, buf, total), TS_OK);
  for (i = 0; i < total; i += 8) {
    uint32_t seq;
    assert_int_equal(buf[i], 'M');
    assert_int_equal(buf[i + 7], 'E');
    assert_true(buf[i + 1] < ORDER_THREADS);
    memcpy(&seq, buf + i + 2, 4);
    assert_int_equal(seq, next[buf[i + 1]]); /* each thread's messages in order */
    next[buf[i + 1]]++;
  }
  for (t = 0; t < ORDER_THREADS; t++) assert_int_equal(next[t], ORDER_MSGS);
  assert_int_equal(ts_counter_wait(r->bytes_sent, (int64_t)total, TS_TIMEOUT_MS), 0);
  free(buf);
  ts_close(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  rec_stop(r);
}

/* ---- One receive at a time: bytes come in order even with many workers ------- */

static void test_single_stream_order_with_many_workers(void **state) {
  iocp_config c;
  rec_server *r;
  const size_t total = 4u << 20, step = 1000;
  uint8_t *out = malloc(total), *in = malloc(total);
  ts_sock a;
  size_t off;
  (void)state;
  iocp_config_init(&c, sizeof(c));
  c.threads = 8;
  c.recv_buffer_size = 1024; /* many small receives */
  r = rec_start(REC_ECHO, &c, NULL);
  a = ts_connect(r->port);
  ts_fill(out, total, 7, 0);
  /* Small writes; the server queues the echo while nobody reads (4 MiB is
   * under the default send queue limit). */
  for (off = 0; off < total; off += step) {
    size_t n = total - off < step ? total - off : step;
    assert_int_equal(ts_send_all(a, out + off, n), TS_OK);
  }
  assert_int_equal(ts_recv_exact(a, in, total), TS_OK);
  assert_int_equal(ts_check(in, total, 7, 0), total);
  ts_close(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  free(out);
  free(in);
  rec_stop(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_echo_round_trip),
      cmocka_unit_test(test_300_concurrent_1mib_transfers),
      cmocka_unit_test(test_sends_from_many_threads_keep_call_order),
      cmocka_unit_test(test_single_stream_order_with_many_workers),
  };
  ts_net_init();
  return cmocka_run_group_tests_name("echo", tests, NULL, NULL);
}
