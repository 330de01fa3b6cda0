/* Queue mode (IOCP_DELIVERY_QUEUE) as a caller drives it: iocp_wait() on the
 * test's own thread. The recorder runs the echo, close and stress suites in
 * this mode too (IOCP_TEST_DELIVERY=queue); this file covers what only the
 * queue has: modes, time-outs and wake-ups, how long event data stays valid,
 * refusal by iocp_close(), batch limits, one drainer at a time, and the two
 * ways to end (iocp_stop() and drain, or iocp_destroy() under a waiter). */
#include "tsupport.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>


static const uint8_t *bytes_of(const iocp_event *ev) {
  return (const uint8_t *)(uintptr_t)ev->data;
}

/* ---- Modes and arguments --------------------------------------------------- */

static void IOCP_CALL ignore_data(iocp_server *s, void *u, iocp_conn_id id, const uint8_t *d,
                                  size_t n) {
  (void)s, (void)u, (void)id, (void)d, (void)n;
}

static void test_one_mode_per_server(void **state) {
  iocp_callbacks cb;
  iocp_config c;
  iocp_server *s = NULL;
  iocp_event ev;
  (void)state;
  memset(&cb, 0, sizeof(cb));
  cb.size = sizeof(cb);
  cb.on_data = ignore_data;

  /* A queue-mode server with a callback is refused with its own code. */
  iocp_config_init(&c, sizeof(c));
  c.delivery = IOCP_DELIVERY_QUEUE;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EMODE);
  assert_null(s);
  c.delivery = 7;
  assert_int_equal(iocp_create(&c, NULL, NULL, &s), IOCP_EINVAL);
  c.delivery = IOCP_DELIVERY_QUEUE;
  c.queue_events = IOCP_EVENT_BIT(IOCP_EVENT_DATA); /* not optional */
  assert_int_equal(iocp_create(&c, NULL, NULL, &s), IOCP_EINVAL);
  c.delivery = IOCP_DELIVERY_CALLBACKS;
  c.queue_events = IOCP_EVENT_BIT(IOCP_EVENT_SENT); /* queue-only field */
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EINVAL);
  /* Callback mode still needs its callbacks struct. */
  c.queue_events = 0;
  assert_int_equal(iocp_create(&c, NULL, NULL, &s), IOCP_EINVAL);

  /* A callback-mode server has no queue. */
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_OK);
  assert_int_equal(iocp_wait(s, &ev, 1, 0), IOCP_EMODE);
  assert_int_equal(iocp_wake(s), IOCP_EMODE);
  assert_int_equal(iocp_destroy(s), IOCP_OK);

  /* A caller whose struct ends before `delivery` gets callbacks. */
  iocp_config_init(&c, sizeof(c));
  c.size = (uint32_t)offsetof(iocp_config, delivery);
  c.delivery = IOCP_DELIVERY_QUEUE; /* beyond its size: ignored */
  s = NULL;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_OK);
  assert_int_equal(iocp_wait(s, &ev, 1, 0), IOCP_EMODE);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

static void test_bad_arguments(void **state) {
  iocp_server *s = ts_queue_start(0);
  iocp_event ev;
  (void)state;
  assert_int_equal(iocp_wait(NULL, &ev, 1, 0), IOCP_EINVAL);
  assert_int_equal(iocp_wait(s, NULL, 1, 0), IOCP_EINVAL);
  assert_int_equal(iocp_wait(s, &ev, 0, 0), IOCP_EINVAL);
  assert_int_equal(iocp_wake(NULL), IOCP_EINVAL);
  assert_int_equal(iocp_stop(NULL), IOCP_EINVAL);
  assert_int_equal(iocp_send(s, 12345, "x", 1), IOCP_ENOTFOUND);
  assert_int_equal(iocp_close(s, 12345), IOCP_ENOTFOUND);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

/* threads = 0 means one worker per processor, and in queue mode one fewer
 * (at least one): the thread calling iocp_wait() is busy too. An explicit
 * count is kept as given. Thread counts of whole servers, each destroyed
 * (its workers joined) before the next starts. */
static long threads_of(uint32_t delivery, uint32_t threads) {
  iocp_callbacks cb;
  iocp_config c;
  iocp_server *s = NULL;
  long before, n;
  memset(&cb, 0, sizeof(cb));
  cb.size = sizeof(cb);
  cb.on_data = ignore_data;
  iocp_config_init(&c, sizeof(c));
  c.port = 0;
  c.delivery = delivery;
  c.threads = threads;
  before = ts_thread_count();
  assert_int_equal(iocp_create(&c, delivery == IOCP_DELIVERY_QUEUE ? NULL : &cb, NULL, &s),
                   IOCP_OK);
  n = ts_thread_count() - before;
  assert_int_equal(iocp_destroy(s), IOCP_OK);
  return n;
}

static void test_default_workers_leave_a_processor_to_the_drainer(void **state) {
  long one, per_cpu, queue_default, cpus;
  (void)state;
  one = threads_of(IOCP_DELIVERY_CALLBACKS, 1); /* 1 worker + the engine's others */
  per_cpu = threads_of(IOCP_DELIVERY_CALLBACKS, 0);
  cpus = per_cpu - one + 1;
  assert_true(cpus >= 1);
  queue_default = threads_of(IOCP_DELIVERY_QUEUE, 0);
  assert_int_equal(queue_default - one + 1, cpus > 1 ? cpus - 1 : 1);
  assert_int_equal(threads_of(IOCP_DELIVERY_QUEUE, 3) - one + 1, 3); /* as given */
}

/* ---- Time-outs and wake-ups -------------------------------------------------- */

static void wake_later(void *arg) {
  /* Woken while waiting or before: either way the wait ends. */
  assert_int_equal(iocp_wake(arg), IOCP_OK);
}

static void test_timeout_and_wake(void **state) {
  iocp_server *s = ts_queue_start(0);
  iocp_event ev;
  uint64_t t0;
  ts_thread *t;
  (void)state;
  assert_int_equal(iocp_wait(s, &ev, 1, 0), 0); /* polls */
  t0 = ts_now_ms();
  assert_int_equal(iocp_wait(s, &ev, 1, 100), 0);
  assert_true(ts_now_ms() - t0 >= 90);
  /* A wake-up before the wait ends the next wait, once. */
  assert_int_equal(iocp_wake(s), IOCP_OK);
  assert_int_equal(iocp_wake(s), IOCP_OK);
  assert_int_equal(iocp_wait(s, &ev, 1, -1), 0);
  assert_int_equal(iocp_wait(s, &ev, 1, 0), 0);
  /* A wake-up from another thread ends a wait without limit. */
  t = ts_thread_start(wake_later, s);
  assert_int_equal(iocp_wait(s, &ev, 1, -1), 0);
  ts_thread_join(t);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

/* ---- An echo, event by event --------------------------------------------- */

static void test_echo_order_and_data_lifetime(void **state) {
  iocp_server *s = ts_queue_start(0);
  iocp_event ev;
  iocp_conn_id id;
  uint8_t buf[8];
  ts_sock a;
  (void)state;
  a = ts_connect(iocp_port(s));
  assert_true(a != TS_BAD_SOCK);
  ev = ts_queue_next(s, IOCP_EVENT_ACCEPTED);
  id = ev.id;
  assert_true(id != 0);
  assert_string_equal((const char *)bytes_of(&ev), "127.0.0.1");
  assert_int_equal(ev.len, 9);
  assert_int_equal(ev.value, ts_local_port(a));

  assert_int_equal(ts_send_all(a, "abc", 3), TS_OK);
  ev = ts_queue_next(s, IOCP_EVENT_DATA);
  assert_true(ev.id == id);
  assert_int_equal(ev.len, 3);
  /* More bytes arrive while the batch is held; the echo's round trip
   * proves they reached the server. The held bytes must not change: the
   * next receive is posted only when the batch is released. */
  assert_int_equal(ts_send_all(a, "XYZ", 3), TS_OK);
  assert_int_equal(iocp_send(s, id, bytes_of(&ev), (size_t)ev.len), IOCP_OK);
  assert_int_equal(ts_recv_exact(a, buf, 3), TS_OK);
  assert_memory_equal(buf, "abc", 3);
  assert_memory_equal(bytes_of(&ev), "abc", 3);
  ev = ts_queue_next(s, IOCP_EVENT_DATA);
  assert_int_equal(ev.len, 3);
  assert_memory_equal(bytes_of(&ev), "XYZ", 3);

  /* No PEER_CLOSED asked for: the library finishes the connection itself. */
  ts_shutdown_send(a);
  ev = ts_queue_next(s, IOCP_EVENT_DISCONNECTED);
  assert_true(ev.id == id);
  assert_int_equal(ev.value, IOCP_REASON_PEER_CLOSED);
  assert_int_equal(iocp_send(s, id, "x", 1), IOCP_ENOTFOUND); /* stale */
  assert_int_equal(iocp_close(s, id), IOCP_ENOTFOUND);
  assert_int_equal(iocp_connection_count(s), 0);
  ts_close(a);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

static void test_peer_closed_and_sent_events(void **state) {
  iocp_server *s = ts_queue_start(IOCP_EVENT_BIT(IOCP_EVENT_SENT) |
                               IOCP_EVENT_BIT(IOCP_EVENT_PEER_CLOSED));
  iocp_event ev;
  iocp_conn_id id;
  uint8_t buf[16];
  size_t got = 0;
  ts_sock a;
  (void)state;
  a = ts_connect(iocp_port(s));
  id = ts_queue_next(s, IOCP_EVENT_ACCEPTED).id;
  assert_int_equal(ts_send_all(a, "ping", 4), TS_OK);
  ev = ts_queue_next(s, IOCP_EVENT_DATA);
  assert_int_equal(iocp_send(s, id, bytes_of(&ev), (size_t)ev.len), IOCP_OK);
  ev = ts_queue_next(s, IOCP_EVENT_SENT);
  assert_true(ev.id == id);
  assert_int_equal(ev.len, 4);
  ts_shutdown_send(a);
  ev = ts_queue_next(s, IOCP_EVENT_PEER_CLOSED);
  assert_true(ev.id == id);
  /* Still open for sending until this side finishes. */
  assert_int_equal(iocp_send(s, id, "bye", 3), IOCP_OK);
  assert_int_equal(iocp_shutdown(s, id), IOCP_OK);
  ev = ts_queue_next(s, IOCP_EVENT_DISCONNECTED);
  assert_int_equal(ev.value, IOCP_REASON_PEER_CLOSED);
  assert_int_equal(ts_recv_to_end(a, buf, sizeof(buf), &got), TS_EOF);
  assert_int_equal(got, 7);
  assert_memory_equal(buf, "pingbye", 7);
  ts_close(a);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

/* ---- Refusal and sends before the keep -------------------------------------- */

static void test_close_on_accepted_refuses(void **state) {
  iocp_server *s = ts_queue_start(0);
  iocp_event ev[8];
  iocp_conn_id refused, kept;
  uint8_t buf[4];
  size_t got = 0;
  ts_sock a, b;
  int i, n;
  (void)state;
  a = ts_connect(iocp_port(s));
  refused = ts_queue_next(s, IOCP_EVENT_ACCEPTED).id;
  assert_int_equal(iocp_close(s, refused), IOCP_OK);
  assert_int_equal(iocp_close(s, refused), IOCP_ECLOSED);
  /* The release refuses it: the peer sees a reset, the id goes stale. */
  assert_int_equal(iocp_wait(s, ev, 8, 0) >= 0, 1);
  assert_int_equal(ts_ended_by_reset(a, buf, sizeof(buf), &got), 1);
  assert_int_equal(iocp_send(s, refused, "x", 1), IOCP_ENOTFOUND);

  /* A kept connection's whole life follows; nothing more for the refused. */
  b = ts_connect(iocp_port(s));
  kept = 0;
  for (;;) {
    n = iocp_wait(s, ev, 8, TS_TIMEOUT_MS);
    assert_true(n > 0);
    for (i = 0; i < n; i++) {
      assert_true(ev[i].id != refused);
      if (ev[i].type == IOCP_EVENT_ACCEPTED) {
        kept = ev[i].id;
        ts_close(b);
      }
    }
    if (ev[n - 1].type == IOCP_EVENT_DISCONNECTED) break;
  }
  assert_true(ev[n - 1].id == kept);
  assert_int_equal(iocp_connection_count(s), 0);
  ts_close(a);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

/* A refusal still refuses once iocp_stop() has begun closing everything:
 * iocp_close() on the ACCEPTED being handled returns IOCP_OK, and no other
 * event comes for that id (as on_connect's refusal in callback mode). */
static void test_close_on_accepted_refuses_after_stop(void **state) {
  iocp_server *s = ts_queue_start(0);
  iocp_event ev[8];
  iocp_conn_id refused;
  ts_sock a;
  int i, n;
  (void)state;
  a = ts_connect(iocp_port(s));
  refused = ts_queue_next(s, IOCP_EVENT_ACCEPTED).id;
  assert_int_equal(iocp_stop(s), IOCP_OK);
  assert_int_equal(iocp_close(s, refused), IOCP_OK);
  for (;;) {
    n = iocp_wait(s, ev, 8, TS_TIMEOUT_MS);
    if (n == IOCP_ECLOSED) break; /* every connection's last event was taken */
    assert_true(n > 0);
    for (i = 0; i < n; i++) assert_true(ev[i].id != refused);
  }
  assert_int_equal(iocp_connection_count(s), 0);
  ts_close(a);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

static void test_sends_before_the_release_go_out(void **state) {
  iocp_server *s = ts_queue_start(0);
  iocp_conn_id id;
  uint8_t buf[16];
  size_t got = 0;
  ts_sock a;
  (void)state;
  a = ts_connect(iocp_port(s));
  id = ts_queue_next(s, IOCP_EVENT_ACCEPTED).id;
  assert_int_equal(iocp_send(s, id, "hello", 5), IOCP_OK);
  assert_int_equal(iocp_shutdown(s, id), IOCP_OK);
  assert_int_equal(iocp_wait(s, (iocp_event[1]){{0}}, 1, 0) >= 0, 1); /* releases */
  assert_int_equal(ts_recv_to_end(a, buf, sizeof(buf), &got), TS_EOF);
  assert_int_equal(got, 5);
  assert_memory_equal(buf, "hello", 5);
  ts_close(a);
  assert_int_equal(ts_queue_next(s, IOCP_EVENT_DISCONNECTED).value, IOCP_REASON_PEER_CLOSED);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

/* ---- A caller away from iocp_wait() ---------------------------------------
 * While iocp_wait() waits, its thread serves the connections itself (the
 * Linux build); a caller busy in its own code must still find them served
 * by the workers: a big send goes out, a new connection is accepted. */

#define AWAY_BYTES (8u << 20)

static void test_workers_serve_while_the_caller_is_away(void **state) {
  iocp_server *s = ts_queue_start(0);
  uint8_t *out = malloc(AWAY_BYTES), *in = malloc(AWAY_BYTES);
  iocp_conn_id id;
  uint64_t deadline;
  ts_sock a, b;
  (void)state;
  assert_non_null(out);
  assert_non_null(in);
  ts_fill(out, AWAY_BYTES, 6, 0);
  a = ts_connect(iocp_port(s));
  id = ts_queue_next(s, IOCP_EVENT_ACCEPTED).id;
  assert_int_equal(iocp_wait(s, (iocp_event[1]){{0}}, 1, 0), 0); /* keeps it; no wait */
  /* Far more than the socket takes at once: the rest needs writability
   * served, and this thread does not come back to iocp_wait() for it. */
  assert_int_equal(iocp_send(s, id, out, AWAY_BYTES), IOCP_OK);
  assert_int_equal(ts_recv_exact(a, in, AWAY_BYTES), TS_OK);
  assert_int_equal(ts_check(in, AWAY_BYTES, 6, 0), AWAY_BYTES);
  /* A connection made meanwhile is accepted (counted) without iocp_wait(). */
  b = ts_connect(iocp_port(s));
  assert_true(b != TS_BAD_SOCK);
  deadline = ts_now_ms() + TS_TIMEOUT_MS;
  while (iocp_connection_count(s) < 2 && ts_now_ms() < deadline) {
  }
  assert_int_equal(iocp_connection_count(s), 2);
  assert_int_equal(ts_queue_next(s, IOCP_EVENT_ACCEPTED).id > id, 1);
  ts_close(a);
  ts_close(b);
  assert_int_equal(ts_queue_next(s, IOCP_EVENT_DISCONNECTED).value, IOCP_REASON_PEER_CLOSED);
  assert_int_equal(ts_queue_next(s, IOCP_EVENT_DISCONNECTED).value, IOCP_REASON_PEER_CLOSED);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
  free(out);
  free(in);
}

/* ---- Batch limits: max is honoured, one event per connection per batch ----- */

#define LIMIT_CONNS 20

static void test_batches_respect_max(void **state) {
  iocp_server *s = ts_queue_start(0);
  ts_sock a[LIMIT_CONNS];
  iocp_event ev[3];
  int i, n, accepted = 0, data = 0;
  uint64_t deadline = ts_now_ms() + TS_TIMEOUT_MS;
  (void)state;
  for (i = 0; i < LIMIT_CONNS; i++) {
    a[i] = ts_connect(iocp_port(s));
    assert_true(a[i] != TS_BAD_SOCK);
    assert_int_equal(ts_send_all(a[i], "q", 1), TS_OK);
  }
  while (accepted < LIMIT_CONNS || data < LIMIT_CONNS) {
    n = iocp_wait(s, ev, 3, 1000);
    assert_true(n >= 0 && n <= 3);
    for (i = 0; i < n; i++) {
      int j;
      for (j = 0; j < i; j++) assert_true(ev[j].id != ev[i].id);
      if (ev[i].type == IOCP_EVENT_ACCEPTED) accepted++;
      else if (ev[i].type == IOCP_EVENT_DATA) data++;
      else fail();
    }
    assert_true(ts_now_ms() < deadline);
  }
  assert_int_equal(iocp_connection_count(s), LIMIT_CONNS);
  for (i = 0; i < LIMIT_CONNS; i++) ts_close(a[i]);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

/* ---- One drainer at a time; destroy under a waiter ------------------------ */

typedef struct waiter {
  iocp_server *s;
  atomic_int rc;
} waiter;

static void wait_forever(void *arg) {
  waiter *w = arg;
  iocp_event ev[4];
  int rc;
  /* EBUSY: the test thread was inside iocp_wait() for a moment; retry. */
  do rc = iocp_wait(w->s, ev, 4, -1);
  while (rc > 0 || rc == IOCP_EBUSY);
  atomic_store(&w->rc, rc);
}

/* Returns once another thread is inside iocp_wait() (seen as EBUSY). */
static void until_busy(iocp_server *s) {
  iocp_event ev;
  uint64_t deadline = ts_now_ms() + TS_TIMEOUT_MS;
  while (iocp_wait(s, &ev, 1, 0) != IOCP_EBUSY) assert_true(ts_now_ms() < deadline);
}

static void test_second_drainer_is_busy(void **state) {
  waiter w;
  ts_thread *t;
  (void)state;
  w.s = ts_queue_start(0);
  atomic_store(&w.rc, 1);
  t = ts_thread_start(wait_forever, &w);
  until_busy(w.s);
  assert_int_equal(iocp_wake(w.s), IOCP_OK);
  ts_thread_join(t);
  assert_int_equal(atomic_load(&w.rc), 0);
  assert_int_equal(iocp_destroy(w.s), IOCP_OK);
}

static void test_destroy_while_a_caller_waits(void **state) {
  waiter w;
  ts_thread *t;
  ts_sock a;
  uint8_t buf[4];
  size_t got = 0;
  (void)state;
  w.s = ts_queue_start(0);
  atomic_store(&w.rc, 1);
  a = ts_connect(iocp_port(w.s));
  assert_int_equal(ts_send_all(a, "abc", 3), TS_OK);
  t = ts_thread_start(wait_forever, &w);
  until_busy(w.s);
  assert_int_equal(iocp_destroy(w.s), IOCP_OK);
  ts_thread_join(t);
  assert_int_equal(atomic_load(&w.rc), IOCP_ECLOSED);
  assert_int_equal(ts_ended_by_reset(a, buf, sizeof(buf), &got), 1);
  ts_close(a);
}

/* Destroy with a batch held (its data pointing into a connection) and
 * events still queued: everything is released, nothing leaks. */
static void test_destroy_with_a_batch_held(void **state) {
  iocp_server *s = ts_queue_start(0);
  ts_sock a, b;
  iocp_event ev[4];
  int i, n, accepted = 0;
  (void)state;
  a = ts_connect(iocp_port(s));
  b = ts_connect(iocp_port(s));
  assert_int_equal(ts_send_all(a, "abc", 3), TS_OK);
  assert_int_equal(ts_send_all(b, "abc", 3), TS_OK);
  while (accepted < 2) { /* then DATA may be queued or in this batch */
    n = iocp_wait(s, ev, 4, TS_TIMEOUT_MS);
    assert_true(n > 0);
    for (i = 0; i < n; i++) accepted += ev[i].type == IOCP_EVENT_ACCEPTED;
  }
  assert_int_equal(iocp_destroy(s), IOCP_OK);
  ts_close(a);
  ts_close(b);
}

/* ---- iocp_stop, then drain: every disconnect, exactly once ---------------- */

#define STOP_CONNS 10

static void test_stop_then_drain_delivers_every_disconnect(void **state) {
  iocp_server *s = ts_queue_start(0);
  ts_sock a[STOP_CONNS];
  iocp_conn_id ids[STOP_CONNS];
  int seen[STOP_CONNS] = {0};
  iocp_event ev[4];
  int i, n, accepted = 0, disconnected = 0;
  (void)state;
  for (i = 0; i < STOP_CONNS; i++) a[i] = ts_connect(iocp_port(s));
  while (accepted < STOP_CONNS) {
    n = iocp_wait(s, ev, 4, TS_TIMEOUT_MS);
    assert_true(n > 0);
    for (i = 0; i < n; i++) {
      assert_int_equal(ev[i].type, IOCP_EVENT_ACCEPTED);
      ids[accepted++] = ev[i].id;
    }
  }
  assert_int_equal(iocp_stop(s), IOCP_OK);
  assert_int_equal(iocp_stop(s), IOCP_OK);
  for (;;) {
    n = iocp_wait(s, ev, 4, TS_TIMEOUT_MS);
    if (n == IOCP_ECLOSED) break;
    assert_true(n > 0);
    for (i = 0; i < n; i++) {
      int j;
      assert_int_equal(ev[i].type, IOCP_EVENT_DISCONNECTED);
      assert_int_equal(ev[i].value, IOCP_REASON_DESTROY);
      for (j = 0; j < STOP_CONNS && ids[j] != ev[i].id; j++) {}
      assert_true(j < STOP_CONNS);
      seen[j]++;
      disconnected++;
    }
  }
  assert_int_equal(disconnected, STOP_CONNS);
  for (i = 0; i < STOP_CONNS; i++) assert_int_equal(seen[i], 1);
  assert_int_equal(iocp_wait(s, ev, 4, -1), IOCP_ECLOSED); /* and stays so */
  assert_int_equal(iocp_destroy(s), IOCP_OK);
  for (i = 0; i < STOP_CONNS; i++) ts_close(a[i]);
}

/* ---- iocp_stop_graceful in queue mode ------------------------------------------- */

typedef struct graceful_stop {
  iocp_server *s;
  uint32_t timeout_ms; /* 0: TS_TIMEOUT_MS */
  atomic_int rc;
  ts_counter *done;    /* counts the stop's return, when set */
} graceful_stop;

static void stop_gracefully(void *arg) {
  graceful_stop *g = arg;
  atomic_store(&g->rc, iocp_stop_graceful(g->s, g->timeout_ms != 0 ? g->timeout_ms : TS_TIMEOUT_MS));
  if (g->done != NULL) ts_counter_add(g->done, 1);
}

typedef struct drainer {
  iocp_server *s;
  atomic_int last; /* what ended its waits */
} drainer;

static void drain_until_closed(void *arg) {
  drainer *d = arg;
  iocp_event ev[8];
  int n;
  while ((n = iocp_wait(d->s, ev, 8, -1)) >= 0) {
  }
  atomic_store(&d->last, n);
}

typedef struct destroyer {
  iocp_server *s;
  atomic_int rc;
  ts_counter *done;
} destroyer;

static void destroy_it(void *arg) {
  destroyer *d = arg;
  atomic_store(&d->rc, iocp_destroy(d->s));
  ts_counter_add(d->done, 1);
}

/* One thread drains, a second is in iocp_stop_graceful() waiting for a peer
 * that never closes, a third calls iocp_destroy(): both return, bounded by
 * the stop's deadline, and the drainer's wait ends with IOCP_ECLOSED. */
static void test_destroy_racing_a_graceful_stop_returns(void **state) {
  iocp_server *s = ts_queue_start(0);
  graceful_stop g;
  drainer dr;
  destroyer de;
  ts_thread *ts, *td, *tx;
  iocp_event ev[4];
  uint8_t buf[8];
  size_t got = 0;
  ts_sock a;
  (void)state;
  a = ts_connect(iocp_port(s));
  ts_queue_next(s, IOCP_EVENT_ACCEPTED);
  assert_true(iocp_wait(s, ev, 4, 0) >= 0); /* kept; the drainer thread goes on */
  dr.s = s;
  atomic_store(&dr.last, 1);
  td = ts_thread_start(drain_until_closed, &dr);
  g.s = s;
  g.timeout_ms = 300;
  atomic_store(&g.rc, 1);
  g.done = ts_counter_new();
  ts = ts_thread_start(stop_gracefully, &g);
  /* The stop's half-close reaches the peer, which stays open. */
  assert_int_equal(ts_recv_to_end(a, buf, sizeof(buf), &got), TS_EOF);
  de.s = s;
  atomic_store(&de.rc, 1);
  de.done = ts_counter_new();
  tx = ts_thread_start(destroy_it, &de);
  assert_int_equal(ts_counter_wait(de.done, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_wait(g.done, 1, TS_TIMEOUT_MS), 0);
  ts_thread_join(tx);
  ts_thread_join(ts);
  ts_thread_join(td);
  assert_int_equal(atomic_load(&de.rc), IOCP_OK);
  assert_true(atomic_load(&g.rc) >= 0); /* the peer aborted at the deadline, or by destroy */
  assert_int_equal(atomic_load(&dr.last), IOCP_ECLOSED);
  ts_counter_free(g.done);
  ts_counter_free(de.done);
  ts_close(a);
}

/* The thread holding the batch would wait for itself: refused. From another
 * thread, while this one drains, the peer's last bytes and the disconnect
 * come through the queue, then iocp_wait() says the server stopped. */
static void test_graceful_stop_while_draining(void **state) {
  iocp_server *s = ts_queue_start(0);
  graceful_stop g;
  ts_thread *t;
  iocp_event ev[4];
  char buf[8];
  size_t got = 0;
  ts_sock a;
  int i, n, disconnected = 0, data = 0;
  (void)state;
  memset(ev, 0, sizeof(ev));
  a = ts_connect(iocp_port(s));
  ts_queue_next(s, IOCP_EVENT_ACCEPTED);
  assert_int_equal(iocp_stop_graceful(s, 1000), IOCP_EINCALLBACK);
  memset(&g, 0, sizeof(g));
  g.s = s;
  atomic_store(&g.rc, 1);
  t = ts_thread_start(stop_gracefully, &g);
  /* Released: the connection is kept, so the half-close reaches it; the
   * server's FIN comes, then ours ends it. */
  assert_true(iocp_wait(s, ev, 4, 0) >= 0);
  assert_int_equal(ts_recv_to_end(a, (uint8_t *)buf, sizeof(buf), &got), TS_EOF);
  assert_int_equal(got, 0);
  assert_int_equal(ts_send_all(a, "bye", 3), TS_OK);
  ts_close(a);
  for (;;) {
    n = iocp_wait(s, ev, 4, TS_TIMEOUT_MS);
    if (n == IOCP_ECLOSED) break;
    assert_true(n > 0);
    for (i = 0; i < n; i++) {
      if (ev[i].type == IOCP_EVENT_DATA) data += (int)ev[i].len;
      if (ev[i].type == IOCP_EVENT_DISCONNECTED) {
        assert_int_equal(ev[i].value, IOCP_REASON_PEER_CLOSED);
        disconnected++;
      }
    }
  }
  ts_thread_join(t);
  assert_int_equal(atomic_load(&g.rc), 0); /* none at the deadline */
  assert_int_equal(disconnected, 1);
  assert_int_equal(data, 3);
  t = ts_thread_start(stop_gracefully, &g); /* a second stop, from elsewhere */
  ts_thread_join(t);
  assert_int_equal(atomic_load(&g.rc), IOCP_ESTOPPED);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_mode_per_server),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_default_workers_leave_a_processor_to_the_drainer),
      cmocka_unit_test(test_timeout_and_wake),
      cmocka_unit_test(test_echo_order_and_data_lifetime),
      cmocka_unit_test(test_peer_closed_and_sent_events),
      cmocka_unit_test(test_close_on_accepted_refuses),
      cmocka_unit_test(test_close_on_accepted_refuses_after_stop),
      cmocka_unit_test(test_sends_before_the_release_go_out),
      cmocka_unit_test(test_workers_serve_while_the_caller_is_away),
      cmocka_unit_test(test_batches_respect_max),
      cmocka_unit_test(test_second_drainer_is_busy),
      cmocka_unit_test(test_destroy_while_a_caller_waits),
      cmocka_unit_test(test_destroy_with_a_batch_held),
      cmocka_unit_test(test_stop_then_drain_delivers_every_disconnect),
      cmocka_unit_test(test_graceful_stop_while_draining),
      cmocka_unit_test(test_destroy_racing_a_graceful_stop_returns),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
