/* Queue mode drained from an event loop (iocp_wait_handle()): the loop
 * waits on the handle among its own and calls iocp_wait() with a time-out
 * of 0 only, never blocking in the library. What a loop relies on: the
 * handle is ready whenever there is something to take (events, a wake-up,
 * the end after iocp_stop()), it stays ready for what did not fit in a
 * batch, and no event is slept through, so every echo below completes
 * without a single wait on the handle timing out. */
#include "tsupport.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#if defined(_WIN32)
#  include <windows.h>
#else
#  include <poll.h>
#endif

/* 1 when the handle became ready within ms. */
static int ready_within(intptr_t h, int ms) {
#if defined(_WIN32)
  return WaitForSingleObject((HANDLE)h, (DWORD)ms) == WAIT_OBJECT_0;
#else
  struct pollfd p;
  int n;
  p.fd = (int)h;
  p.events = POLLIN;
  p.revents = 0;
  do n = poll(&p, 1, ms);
  while (n < 0 && errno == EINTR);
  return n == 1 && (p.revents & POLLIN) != 0;
#endif
}

static void test_arguments_and_modes(void **state) {
  iocp_server *s = ts_queue_start(0), *cs = NULL;
  iocp_callbacks cb;
  iocp_config c;
  intptr_t h = -1, h2 = -1;
  iocp_event ev;
  (void)state;
  assert_int_equal(iocp_wait_handle(NULL, &h), IOCP_EINVAL);
  assert_int_equal(iocp_wait_handle(s, NULL), IOCP_EINVAL);
  assert_int_equal(iocp_wait_handle(s, &h), IOCP_OK);
  assert_int_equal(iocp_wait_handle(s, &h2), IOCP_OK);
  assert_true(h == h2); /* one handle per server */
  /* Ready at once (whatever was queued before is taken through it), and
   * not ready once a drain found nothing. */
  assert_true(ready_within(h, TS_TIMEOUT_MS));
  assert_int_equal(iocp_wait(s, &ev, 1, 0), 0);
  assert_false(ready_within(h, 50));
  assert_int_equal(iocp_destroy(s), IOCP_OK);

  /* A callback-mode server has no queue to wait for. */
  memset(&cb, 0, sizeof(cb));
  cb.size = sizeof(cb);
  iocp_config_init(&c, sizeof(c));
  assert_int_equal(iocp_create(&c, &cb, NULL, &cs), IOCP_OK);
  assert_int_equal(iocp_wait_handle(cs, &h), IOCP_EMODE);
  assert_int_equal(iocp_destroy(cs), IOCP_OK);
}

static void test_wake_makes_it_ready(void **state) {
  iocp_server *s = ts_queue_start(0);
  iocp_event ev;
  intptr_t h;
  (void)state;
  assert_int_equal(iocp_wait_handle(s, &h), IOCP_OK);
  assert_int_equal(iocp_wait(s, &ev, 1, 0), 0);
  assert_false(ready_within(h, 20));
  assert_int_equal(iocp_wake(s), IOCP_OK);
  assert_true(ready_within(h, TS_TIMEOUT_MS));
  assert_int_equal(iocp_wait(s, &ev, 1, 0), 0);
  assert_false(ready_within(h, 20));
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

/* Wake-ups racing the loop's clears, from two threads: each waits for the
 * loop to come round after its wake-up before the next, so a signal lost
 * between a clear and the loop's next wait would stall it (the loop's
 * wait on the handle times out). */
#define WAKERS 2
/* Fewer under Wine, where each round trip through its server costs more. */
#define WAKES (ts_on_wine() ? 3000 : 20000)

typedef struct waker {
  iocp_server *s;
  atomic_long *rounds;
  atomic_int *done;
} waker;

static void wake_repeatedly(void *arg) {
  waker *w = arg;
  int i;
  for (i = 0; i < WAKES; i++) {
    long seen = atomic_load(w->rounds);
    uint64_t deadline = ts_now_ms() + TS_TIMEOUT_MS;
    assert_int_equal(iocp_wake(w->s), IOCP_OK);
    while (atomic_load(w->rounds) <= seen) assert_true(ts_now_ms() < deadline);
  }
  atomic_fetch_add(w->done, 1);
  assert_int_equal(iocp_wake(w->s), IOCP_OK); /* the loop looks at `done` again */
}

static void test_racing_wakes_are_never_slept_through(void **state) {
  iocp_server *s = ts_queue_start(0);
  waker w;
  ts_thread *t[WAKERS];
  atomic_long rounds;
  atomic_int done;
  iocp_event ev;
  intptr_t h;
  int i;
  (void)state;
  assert_int_equal(iocp_wait_handle(s, &h), IOCP_OK);
  atomic_init(&rounds, 0);
  atomic_init(&done, 0);
  w.s = s;
  w.rounds = &rounds;
  w.done = &done;
  for (i = 0; i < WAKERS; i++) t[i] = ts_thread_start(wake_repeatedly, &w);
  while (atomic_load(&done) < WAKERS) {
    assert_true(ready_within(h, 10000));
    assert_int_equal(iocp_wait(s, &ev, 1, 0), 0);
    atomic_fetch_add(&rounds, 1);
  }
  for (i = 0; i < WAKERS; i++) ts_thread_join(t[i]);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

/* ---- Echoes, drained through the handle only ------------------------------- */

#define CLIENTS 4
#define CONNS_PER_CLIENT 8
#define ROUNDS 150

typedef struct client {
  iocp_server *s;
  int index;
  atomic_int *left;
} client;

/* Round trips on its connections, one message in flight on each; the
 * last client to finish wakes the loop. */
static void run_client(void *arg) {
  client *k = arg;
  ts_sock a[CONNS_PER_CLIENT];
  char msg[32], back[32];
  int i, r;
  for (i = 0; i < CONNS_PER_CLIENT; i++) {
    a[i] = ts_connect(iocp_port(k->s));
    assert_true(a[i] != TS_BAD_SOCK);
  }
  for (r = 0; r < ROUNDS; r++) {
    for (i = 0; i < CONNS_PER_CLIENT; i++) {
      memset(msg, 'a' + (r + i + k->index) % 26, sizeof(msg));
      assert_int_equal(ts_send_all(a[i], msg, sizeof(msg)), TS_OK);
    }
    for (i = 0; i < CONNS_PER_CLIENT; i++) {
      assert_int_equal(ts_recv_exact(a[i], back, sizeof(back)), TS_OK);
      memset(msg, 'a' + (r + i + k->index) % 26, sizeof(msg));
      assert_memory_equal(back, msg, sizeof(msg));
    }
  }
  for (i = 0; i < CONNS_PER_CLIENT; i++) ts_close(a[i]);
  if (atomic_fetch_sub(k->left, 1) == 1) assert_int_equal(iocp_wake(k->s), IOCP_OK);
}

/* The loop: wait on the handle, then take batches with iocp_wait(..., 0) until one comes back empty; echo DATA.
 * Every wait on the handle must end in readiness: a missed signal would
 * leave a client waiting for its echo, and the loop with it. */
static void drain_loop(iocp_server *s, intptr_t h, atomic_int *left,
                       int64_t *data_events, int64_t *disconnects) {
  iocp_event ev[64];
  while (atomic_load(left) > 0 || *disconnects < CLIENTS * CONNS_PER_CLIENT) {
    int n, i;
    assert_true(ready_within(h, TS_TIMEOUT_MS));
    do {
      n = iocp_wait(s, ev, 64, 0);
      assert_true(n >= 0);
      for (i = 0; i < n; i++) {
        if (ev[i].type == IOCP_EVENT_DATA) {
          (*data_events)++;
          assert_int_equal(iocp_send(s, ev[i].id, (const void *)(uintptr_t)ev[i].data,
                                     (size_t)ev[i].len),
                           IOCP_OK);
        } else if (ev[i].type == IOCP_EVENT_DISCONNECTED) {
          (*disconnects)++;
        }
      }
    } while (n > 0);
  }
}

static void test_echoes_drained_through_the_handle(void **state) {
  iocp_server *s = ts_queue_start(0);
  client k[CLIENTS];
  ts_thread *t[CLIENTS];
  atomic_int left;
  int64_t data = 0, gone = 0;
  intptr_t h;
  int i;
  (void)state;
  assert_int_equal(iocp_wait_handle(s, &h), IOCP_OK);
  atomic_init(&left, CLIENTS);
  for (i = 0; i < CLIENTS; i++) {
    k[i].s = s;
    k[i].index = i;
    k[i].left = &left;
    t[i] = ts_thread_start(run_client, &k[i]);
  }
  drain_loop(s, h, &left, &data, &gone);
  for (i = 0; i < CLIENTS; i++) ts_thread_join(t[i]);
  assert_true(data >= CLIENTS * CONNS_PER_CLIENT); /* at least one per connection */
  assert_int_equal(gone, CLIENTS * CONNS_PER_CLIENT);
  assert_int_equal(iocp_connection_count(s), 0);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

/* Batches of one event: what did not fit keeps the handle ready, with
 * nothing else (no I/O, no new event) to make it so. */
static void test_events_that_did_not_fit_keep_it_ready(void **state) {
  iocp_server *s = ts_queue_start(0);
  ts_sock a[5];
  iocp_event ev;
  intptr_t h;
  int i, n, accepted = 0;
  (void)state;
  assert_int_equal(iocp_wait_handle(s, &h), IOCP_OK);
  for (i = 0; i < 5; i++) {
    a[i] = ts_connect(iocp_port(s));
    assert_true(a[i] != TS_BAD_SOCK);
  }
  /* Accepted, so their ACCEPTED events are queued (none taken yet). */
  assert_int_equal(TS_WAIT_STAT(s, connections_accepted, 5), 0);
  while (accepted < 5) {
    assert_true(ready_within(h, TS_TIMEOUT_MS));
    n = iocp_wait(s, &ev, 1, 0);
    assert_true(n == 0 || n == 1);
    accepted += n == 1 && ev.type == IOCP_EVENT_ACCEPTED;
  }
  assert_int_equal(iocp_wait(s, &ev, 1, 0), 0);
  for (i = 0; i < 5; i++) ts_close(a[i]);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

/* ---- The end ---------------------------------------------------------------- */

static void test_stop_ends_through_the_handle(void **state) {
  iocp_server *s = ts_queue_start(0);
  ts_sock a[5];
  iocp_event ev[8];
  intptr_t h;
  int i, n, accepted = 0, gone = 0, closed = 0;
  (void)state;
  assert_int_equal(iocp_wait_handle(s, &h), IOCP_OK);
  for (i = 0; i < 5; i++) {
    a[i] = ts_connect(iocp_port(s));
    assert_true(a[i] != TS_BAD_SOCK);
  }
  while (accepted < 5) {
    assert_true(ready_within(h, TS_TIMEOUT_MS));
    while ((n = iocp_wait(s, ev, 8, 0)) > 0)
      for (i = 0; i < n; i++) accepted += ev[i].type == IOCP_EVENT_ACCEPTED;
    assert_true(n == 0);
  }
  assert_int_equal(iocp_stop(s), IOCP_OK);
  /* Every DISCONNECTED, then IOCP_ECLOSED, each announced by the handle. */
  while (!closed) {
    assert_true(ready_within(h, TS_TIMEOUT_MS));
    while ((n = iocp_wait(s, ev, 8, 0)) > 0)
      for (i = 0; i < n; i++) gone += ev[i].type == IOCP_EVENT_DISCONNECTED;
    closed = n == IOCP_ECLOSED;
    assert_true(n == 0 || closed);
  }
  assert_int_equal(gone, 5);
  for (i = 0; i < 5; i++) ts_close(a[i]);
  assert_int_equal(iocp_wait_handle(s, &h), IOCP_OK); /* still the server's */
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

/* A blocking iocp_wait() still works beside the handle, on another thread
 * (taking turns), and the handle reports what it left queued. */
static void test_blocking_waits_stay_allowed(void **state) {
  iocp_server *s = ts_queue_start(0);
  iocp_event ev;
  intptr_t h;
  ts_sock a;
  (void)state;
  assert_int_equal(iocp_wait_handle(s, &h), IOCP_OK);
  a = ts_connect(iocp_port(s));
  assert_true(a != TS_BAD_SOCK);
  ev = ts_queue_next(s, IOCP_EVENT_ACCEPTED); /* blocking waits */
  assert_int_equal(ts_send_all(a, "ab", 2), TS_OK);
  ev = ts_queue_next(s, IOCP_EVENT_DATA);
  assert_int_equal(ev.len, 2);
  assert_int_equal(ts_send_all(a, "cd", 2), TS_OK);
  assert_true(ready_within(h, TS_TIMEOUT_MS));
  for (;;) { /* the release of the first DATA lets the second come */
    int n = iocp_wait(s, &ev, 1, 0);
    assert_true(n >= 0);
    if (n == 1) break;
    assert_true(ready_within(h, TS_TIMEOUT_MS));
  }
  assert_int_equal(ev.type, IOCP_EVENT_DATA);
  assert_memory_equal((const void *)(uintptr_t)ev.data, "cd", 2);
  ts_close(a);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_arguments_and_modes),
      cmocka_unit_test(test_wake_makes_it_ready),
      cmocka_unit_test(test_racing_wakes_are_never_slept_through),
      cmocka_unit_test(test_echoes_drained_through_the_handle),
      cmocka_unit_test(test_events_that_did_not_fit_keep_it_ready),
      cmocka_unit_test(test_stop_ends_through_the_handle),
      cmocka_unit_test(test_blocking_waits_stay_allowed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
