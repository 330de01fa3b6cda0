/* The Windows engine's adaptive receive (dll/win/recv.c): a connection whose
 * last receive found bytes posts a buffered WSARecv, within the server's
 * budget, and a sweep turns one that waits too long back into a zero-byte
 * receive. White-box: reads the engine's count of posted buffered receives
 * (hot_posted) and sets its knobs (iocp__tuning_defaults) before each server
 * starts. Windows only. */
#include "tsupport.h"

#include <stdlib.h>
#include <string.h>

#include "engine.h" /* iocp__tuning_defaults */

static ts_counter *ts_never; /* never reaches 1: a bounded pause */

static long posted(rec_server *r) { return iocp__server_eng(r->srv)->hot_posted; }
static long demoted(rec_server *r) { return iocp__server_eng(r->srv)->hot_demoted; }

/* Waits until the count of posted buffered receives is `want`. */
static void wait_posted(rec_server *r, long want) {
  uint64_t until = ts_now_ms() + TS_TIMEOUT_MS;
  while (posted(r) != want && ts_now_ms() < until) ts_counter_wait(ts_never, 1, 5);
  assert_int_equal(posted(r), want);
}

static rec_server *start(int budget, int idle_ms) {
  iocp__tuning_defaults.hot_budget = budget;
  iocp__tuning_defaults.hot_idle_ms = idle_ms;
  return rec_start(REC_ECHO, NULL, NULL);
}

static void echo(ts_sock s, int i, size_t len) {
  uint8_t out[512], in[512];
  assert_true(len <= sizeof(out));
  ts_fill(out, len, (uint32_t)i, 0);
  assert_int_equal(ts_send_all(s, out, len), TS_OK);
  assert_int_equal(ts_recv_exact(s, in, len), TS_OK);
  assert_memory_equal(in, out, len);
}

/* Hot, then idle: every buffer goes back once the sweep sees the receives
 * wait, and a peer that speaks after the silence is served (and hot again). */
static void test_hot_then_idle_gives_buffers_back(void **state) {
  rec_server *r = start(-1, 1000);
  ts_sock a[4];
  int i;
  (void)state;
  for (i = 0; i < 4; i++) a[i] = ts_connect(r->port);
  assert_true(rec_wait_connect(r, 4) != 0);
  assert_int_equal(posted(r), 0); /* never received: zero-byte receives */
  for (i = 0; i < 4; i++) {
    echo(a[i], i, 100);
    echo(a[i], i, 7);
  }
  wait_posted(r, 4); /* each busy: a buffer posted */
  wait_posted(r, 0); /* then idle: the sweep took them back */
  assert_true(demoted(r) >= 4);
  for (i = 3; i >= 0; i--) echo(a[i], i + 10, 300);
  wait_posted(r, 4);
  for (i = 0; i < 4; i++) ts_close(a[i]);
  assert_int_equal(ts_counter_wait(r->disconnects, 4, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]), 4);
  wait_posted(r, 0);
  rec_stop(r);
}

/* The budget bounds the buffers posted at once; the others wait with
 * zero-byte receives and are served all the same. */
static void test_budget_bounds_posted_buffers(void **state) {
  rec_server *r = start(2, 600000);
  ts_sock a[6];
  int i, k;
  (void)state;
  for (i = 0; i < 6; i++) a[i] = ts_connect(r->port);
  assert_true(rec_wait_connect(r, 6) != 0);
  for (k = 0; k < 3; k++) {
    for (i = 0; i < 6; i++) {
      echo(a[i], i * 3 + k, 1 + 40 * (size_t)k);
      assert_true(posted(r) <= 2);
    }
  }
  wait_posted(r, 2);
  for (i = 0; i < 6; i++) ts_close(a[i]);
  assert_int_equal(ts_counter_wait(r->disconnects, 6, TS_TIMEOUT_MS), 0);
  wait_posted(r, 0);
  assert_int_equal(demoted(r), 0);
  rec_stop(r);
}

/* A peer resets while its buffered receive is posted: that connection ends,
 * its buffer goes back, the other is untouched. */
static void test_reset_while_buffered_receive_posted(void **state) {
  rec_server *r = start(-1, 600000);
  ts_sock a, b;
  (void)state;
  a = ts_connect(r->port);
  b = ts_connect(r->port);
  assert_true(rec_wait_connect(r, 2) != 0);
  echo(a, 1, 64);
  echo(b, 2, 64);
  wait_posted(r, 2);
  ts_close_reset(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  /* Wine may report an RST seen by a poll as a FIN (see test_close.c). */
  if (!ts_on_wine()) assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_RESET]), 1);
  wait_posted(r, 1);
  echo(b, 3, 200);
  assert_int_equal(iocp_connection_count(r->srv), 1);
  ts_close(b);
  assert_int_equal(ts_counter_wait(r->disconnects, 2, TS_TIMEOUT_MS), 0);
  wait_posted(r, 0);
  rec_stop(r);
}

/* iocp_close() while a buffered receive is posted: the receive is cancelled
 * and reported once, the buffer goes back; and a server destroyed while
 * buffered receives are posted leaves nothing behind (rec_stop checks). */
static void test_close_while_buffered_receive_posted(void **state) {
  rec_server *r = start(-1, 600000);
  ts_sock a, b;
  iocp_conn_id id;
  uint8_t buf[16];
  size_t got = 0;
  int end;
  (void)state;
  a = ts_connect(r->port);
  id = rec_wait_connect(r, 1);
  assert_true(id != 0);
  b = ts_connect(r->port);
  assert_true(rec_wait_connect(r, 2) != 0);
  echo(a, 1, 10);
  echo(b, 2, 10);
  wait_posted(r, 2);
  assert_int_equal(iocp_close(r->srv, id), IOCP_OK);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(rec_reason(r, id), IOCP_REASON_LOCAL_CLOSE);
  end = ts_recv_to_end(a, buf, sizeof(buf), &got);
  assert_true(end == TS_EOF || end == TS_RESET);
  assert_int_equal(got, 0);
  wait_posted(r, 1);
  rec_stop(r); /* b still has its buffered receive posted */
  ts_close(a);
  ts_close(b);
}

/* The sweep every millisecond while four peers echo: cancels race with
 * completions that bring bytes, over and over. Every byte arrives once, in
 * order, and the connections stay up. */
typedef struct pinger {
  uint16_t port;
  int index;
  ts_counter *done;
} pinger;

static void ping_loop(void *arg) {
  pinger *p = arg;
  ts_sock s = ts_connect(p->port);
  uint8_t out[512], in[512];
  uint64_t off = 0;
  int k;
  for (k = 0; k < 400; k++) {
    size_t len = 1 + (size_t)(k * 37 + p->index * 11) % sizeof(out);
    ts_fill(out, len, (uint32_t)p->index, off);
    if (ts_send_all(s, out, len) != TS_OK || ts_recv_exact(s, in, len) != TS_OK ||
        memcmp(in, out, len) != 0)
      break;
    off += len;
  }
  ts_close(s);
  ts_counter_add(p->done, k == 400 ? 1 : 1000);
}

static void test_sweep_races_with_traffic(void **state) {
  rec_server *r = start(-1, 1);
  pinger p[4];
  ts_thread *t[4];
  ts_counter *done = ts_counter_new();
  int i;
  (void)state;
  for (i = 0; i < 4; i++) {
    p[i].port = r->port;
    p[i].index = i;
    p[i].done = done;
    t[i] = ts_thread_start(ping_loop, &p[i]);
  }
  for (i = 0; i < 4; i++) ts_thread_join(t[i]);
  assert_int_equal(ts_counter_get(done), 4); /* every echo whole and in order */
  assert_int_equal(ts_counter_wait(r->disconnects, 4, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]), 4);
  assert_true(demoted(r) > 0); /* the race was run */
  wait_posted(r, 0);
  ts_counter_free(done);
  rec_stop(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hot_then_idle_gives_buffers_back),
      cmocka_unit_test(test_budget_bounds_posted_buffers),
      cmocka_unit_test(test_reset_while_buffered_receive_posted),
      cmocka_unit_test(test_close_while_buffered_receive_posted),
      cmocka_unit_test(test_sweep_races_with_traffic),
  };
  int rc;
  ts_net_init();
  ts_never = ts_counter_new();
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  ts_counter_free(ts_never);
  return rc;
}
