/* Ending connections: half-close in both directions, graceful shutdown that
 * delivers everything before FIN, abortive close, peer resets, refusal, and
 * the send queue limit against a peer that never reads. */
#include "tsupport.h"

#include <stdlib.h>
#include <string.h>

/* ---- The peer half-closes; the server still sends ---------------------------- */

#define AFTER_FIN_BYTES (256u << 10)

static void send_after_peer_fin(rec_server *r, iocp_conn_id id) {
  uint8_t *buf = malloc(AFTER_FIN_BYTES);
  ts_fill(buf, AFTER_FIN_BYTES, 3, 0);
  if (iocp_send(r->srv, id, buf, AFTER_FIN_BYTES) != IOCP_OK) rec_violation(r);
  if (iocp_shutdown(r->srv, id) != IOCP_OK) rec_violation(r);
  if (iocp_send(r->srv, id, "late", 4) != IOCP_ESHUTDOWN) rec_violation(r);
  free(buf);
}

static void test_peer_half_close_then_server_still_sends(void **state) {
  rec_hooks h = {0};
  rec_server *r;
  uint8_t *buf = malloc(AFTER_FIN_BYTES + 16);
  size_t got = 0;
  ts_sock a;
  (void)state;
  h.on_peer_closed = send_after_peer_fin;
  r = rec_start(REC_HANDLE_PEER_CLOSE, NULL, &h);
  a = ts_connect(r->port);
  assert_int_equal(ts_send_all(a, "request", 7), TS_OK);
  ts_shutdown_send(a);
  assert_int_equal(ts_counter_wait(r->peer_closed, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->bytes_in), 7); /* all data before on_peer_closed */
  assert_int_equal(ts_recv_to_end(a, buf, AFTER_FIN_BYTES + 16, &got), TS_EOF);
  assert_int_equal(got, AFTER_FIN_BYTES);
  assert_int_equal(ts_check(buf, got, 3, 0), got);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]), 1);
  ts_close(a);
  free(buf);
  rec_stop(r);
}

/* ---- Graceful shutdown delivers 8 MiB of queued data before FIN ------------ */

#define GRACEFUL_BYTES (8u << 20)

static void queue_8mib_and_shutdown(rec_server *r, iocp_conn_id id) {
  uint8_t *buf = malloc(64u << 10);
  uint64_t off;
  for (off = 0; off < GRACEFUL_BYTES; off += 64u << 10) {
    ts_fill(buf, 64u << 10, 11, off);
    if (iocp_send(r->srv, id, buf, 64u << 10) != IOCP_OK) rec_violation(r);
  }
  free(buf);
  if (iocp_shutdown(r->srv, id) != IOCP_OK) rec_violation(r);
  if (iocp_shutdown(r->srv, id) != IOCP_OK) rec_violation(r); /* no-op */
  if (iocp_send(r->srv, id, "x", 1) != IOCP_ESHUTDOWN) rec_violation(r);
}

static void test_graceful_shutdown_delivers_queue_before_fin(void **state) {
  rec_hooks h = {0};
  iocp_config c;
  rec_server *r;
  uint8_t *buf = malloc(GRACEFUL_BYTES + 16);
  size_t got = 0;
  ts_sock a;
  (void)state;
  iocp_config_init(&c, sizeof(c));
  c.max_send_queue = 16u << 20;
  h.on_connect = queue_8mib_and_shutdown;
  r = rec_start(REC_HANDLE_PEER_CLOSE, &c, &h);
  a = ts_connect(r->port);
  assert_int_equal(ts_recv_to_end(a, buf, GRACEFUL_BYTES + 16, &got), TS_EOF);
  assert_int_equal(got, GRACEFUL_BYTES);
  assert_int_equal(ts_check(buf, got, 11, 0), got);
  /* Half-closed: the server still reads what this side sends. */
  assert_int_equal(ts_send_all(a, "after", 5), TS_OK);
  assert_int_equal(ts_counter_wait(r->bytes_in, 5, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->disconnects), 0);
  ts_close(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]), 1);
  assert_int_equal(ts_counter_get(r->bytes_sent), GRACEFUL_BYTES);
  free(buf);
  rec_stop(r);
}

/* ---- Abortive close is a reset for the peer ----------------------------------- */

static void test_abortive_close_is_seen_as_reset(void **state) {
  rec_server *r = rec_start(0, NULL, NULL);
  uint8_t *big = calloc(1, 4u << 20);
  uint8_t buf[4096];
  size_t got = 0;
  iocp_conn_id id;
  ts_sock a;
  (void)state;
  a = ts_connect_rcvbuf(r->port, 4096);
  id = rec_wait_connect(r, 1);
  assert_int_equal(iocp_send(r->srv, id, big, 4u << 20), IOCP_OK); /* dropped */
  assert_int_equal(iocp_close(r->srv, id), IOCP_OK);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(rec_reason(r, id), IOCP_REASON_LOCAL_CLOSE);
  assert_int_equal(iocp_send(r->srv, id, "x", 1), IOCP_ENOTFOUND);
  assert_int_equal(iocp_close(r->srv, id), IOCP_ENOTFOUND);
  assert_true(ts_ended_by_reset(a, buf, sizeof(buf), &got));
  assert_true(got < (4u << 20));
  ts_close(a);
  free(big);
  rec_stop(r);
}

static void close_inside_callback(rec_server *r, iocp_conn_id id, const uint8_t *d, size_t n) {
  (void)d;
  (void)n;
  if (iocp_close(r->srv, id) != IOCP_OK) rec_violation(r);
  if (iocp_close(r->srv, id) != IOCP_ECLOSED) rec_violation(r);
  if (iocp_send(r->srv, id, "x", 1) != IOCP_ECLOSED) rec_violation(r);
}

static void test_close_from_inside_a_callback(void **state) {
  rec_hooks h = {0};
  rec_server *r;
  uint8_t buf[16];
  size_t got = 0;
  ts_sock a;
  (void)state;
  h.on_data = close_inside_callback;
  r = rec_start(0, NULL, &h);
  a = ts_connect(r->port);
  assert_int_equal(ts_send_all(a, "bye", 3), TS_OK);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_LOCAL_CLOSE]), 1);
  assert_true(ts_ended_by_reset(a, buf, sizeof(buf), &got));
  assert_int_equal(got, 0);
  ts_close(a);
  rec_stop(r);
}

/* iocp_shutdown() a second time is a successful no-op even once the
 * connection is ending (here: closed after the first call, from inside the
 * callback; in the wild: both FINs crossed on another thread), so code that
 * shuts down in two places never sees a spurious error. */
static void shutdown_close_shutdown(rec_server *r, iocp_conn_id id, const uint8_t *d, size_t n) {
  (void)d;
  (void)n;
  if (iocp_shutdown(r->srv, id) != IOCP_OK) rec_violation(r);
  if (iocp_close(r->srv, id) != IOCP_OK) rec_violation(r);
  if (iocp_shutdown(r->srv, id) != IOCP_OK) rec_violation(r);
  if (iocp_close(r->srv, id) != IOCP_ECLOSED) rec_violation(r); /* a second close: ECLOSED, as documented */
}

static void test_second_shutdown_is_a_no_op_while_ending(void **state) {
  rec_hooks h = {0};
  rec_server *r;
  ts_sock a;
  (void)state;
  h.on_data = shutdown_close_shutdown;
  r = rec_start(0, NULL, &h);
  a = ts_connect(r->port);
  assert_int_equal(ts_send_all(a, "bye", 3), TS_OK);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_LOCAL_CLOSE]), 1);
  ts_close(a);
  rec_stop(r);
}

/* ---- The peer resets -------------------------------------------------------------- */

static void test_peer_reset_is_reported_as_reset(void **state) {
  rec_server *r = rec_start(REC_ECHO, NULL, NULL);
  ts_sock a;
  char buf[4];
  (void)state;
  a = ts_connect(r->port);
  assert_int_equal(ts_send_all(a, "ping", 4), TS_OK);
  assert_int_equal(ts_recv_exact(a, buf, 4), TS_OK);
  ts_close_reset(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  if (ts_on_wine() && ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]) == 1) {
    /* Wine's server peeks at a socket to poll it, and a peek that meets the
     * RST consumes the error: the pending receive then completes with 0
     * bytes, as for a FIN. Windows completes it with a reset. */
  } else {
    assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_RESET]), 1);
  }
  rec_stop(r);
}

/* ---- on_connect may refuse ------------------------------------------------------- */

static void test_refused_connection_gets_no_more_callbacks(void **state) {
  rec_server *r = rec_start(REC_REFUSE | REC_ECHO, NULL, NULL);
  uint8_t buf[8];
  size_t got = 0;
  ts_sock a;
  (void)state;
  a = ts_connect(r->port);
  assert_true(rec_wait_connect(r, 1) != 0);
  assert_true(ts_ended_by_reset(a, buf, sizeof(buf), &got));
  assert_int_equal(got, 0);
  ts_close(a);
  /* rec_stop checks: no on_disconnect and no other callback for it. */
  assert_int_equal(iocp_connection_count(r->srv), 0);
  rec_stop(r);
}

/* ---- A peer that never reads cannot grow the queue without bound ------------ */

#define LIMIT (256u << 10)

static void test_queue_limit_against_a_peer_that_never_reads(void **state) {
  iocp_config c;
  rec_server *r;
  uint8_t *chunk = calloc(1, 16u << 10);
  uint64_t accepted = 0, queued = 0;
  iocp_conn_id id;
  ts_sock a;
  int rc = IOCP_OK, i;
  (void)state;
  iocp_config_init(&c, sizeof(c));
  c.max_send_queue = LIMIT;
  r = rec_start(0, &c, NULL);
  a = ts_connect(r->port);
  id = rec_wait_connect(r, 1);

  /* Keep sending until the library says the queue is full: the kernel's
   * buffers take a bounded amount, the queue at most LIMIT. */
  while (accepted < (256u << 20)) {
    ts_fill(chunk, 16u << 10, 5, accepted);
    rc = iocp_send(r->srv, id, chunk, 16u << 10);
    if (rc != IOCP_OK) break;
    accepted += 16u << 10;
  }
  assert_int_equal(rc, IOCP_EQUEUEFULL);
  assert_true(accepted < (64u << 20)); /* bounded: queue limit + kernel buffers */
  /* More attempts: each is refused whole or taken whole (if the kernel took
   * some bytes meanwhile); the queue never passes the limit. */
  for (i = 0; i < 10; i++) {
    ts_fill(chunk, 16u << 10, 5, accepted);
    rc = iocp_send(r->srv, id, chunk, 16u << 10);
    assert_true(rc == IOCP_OK || rc == IOCP_EQUEUEFULL);
    if (rc == IOCP_OK) accepted += 16u << 10;
    assert_int_equal(iocp_queued(r->srv, id, &queued), IOCP_OK);
    assert_true(queued <= LIMIT);
  }

  /* Once the peer reads, the queue drains and sends are accepted again. */
  {
    uint8_t *buf = malloc(accepted);
    assert_int_equal(ts_recv_exact(a, buf, (size_t)accepted), TS_OK);
    assert_int_equal(ts_check(buf, (size_t)accepted, 5, 0), accepted); /* nothing lost */
    free(buf);
  }
  assert_int_equal(ts_counter_wait(r->bytes_sent, (int64_t)accepted, TS_TIMEOUT_MS), 0);
  assert_int_equal(iocp_queued(r->srv, id, &queued), IOCP_OK);
  assert_int_equal(queued, 0);
  assert_int_equal(iocp_send(r->srv, id, chunk, 16u << 10), IOCP_OK);
  ts_close(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  free(chunk);
  rec_stop(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_peer_half_close_then_server_still_sends),
      cmocka_unit_test(test_graceful_shutdown_delivers_queue_before_fin),
      cmocka_unit_test(test_abortive_close_is_seen_as_reset),
      cmocka_unit_test(test_close_from_inside_a_callback),
      cmocka_unit_test(test_second_shutdown_is_a_no_op_while_ending),
      cmocka_unit_test(test_peer_reset_is_reported_as_reset),
      cmocka_unit_test(test_refused_connection_gets_no_more_callbacks),
      cmocka_unit_test(test_queue_limit_against_a_peer_that_never_reads),
  };
  ts_net_init();
  return cmocka_run_group_tests_name("close", tests, NULL, NULL);
}
