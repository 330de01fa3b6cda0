/* Fairness: a connection whose receives or sends keep completing at once
 * must not starve the others.
 *
 * One worker thread. In the first test one peer floods its connection (the
 * server reads 1 KiB at a time and checks every byte, answers nothing), so
 * that connection's socket is never empty: on Windows its receives succeed
 * at once (FILE_SKIP_COMPLETION_PORT_ON_SUCCESS), on Linux its socket stays
 * readable. In the second (Windows only, see there) the server produces:
 * each on_drain of one connection sends 1 KiB more to a peer that reads as
 * fast as it can, so its sends keep completing at once. Meanwhile another connection must get each
 * of its echoes within a few seconds, and the flood or the production must
 * go on being served. Either test fails (the echoes time out) when the
 * engines report such completions in a loop without a bound.
 *
 * A white-box test (the static build): on Windows it turns skipping the
 * port on (off by default) and counts, through the call table, that the
 * sockets were set to skip it and that receives did complete at once, so
 * the bound was really exercised. IOCPSRV_SKIP_ON_SUCCESS=0 in the
 * environment would turn it off again; then every completion goes through
 * the port, and the test checks that no socket skipped it. */
#include "tsupport.h"
#include "internal.h"
#if !defined(_WIN32)
#  include "../linux/internal.h" /* the engine's own: its loops */
#endif

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define FLOOD_STREAM 7
#define FLOOD_BLOCK 65536
#define ROUND_TRIPS 100
#define ECHO_TIMEOUT_MS 10000 /* per round trip; a starved one never comes */

typedef struct flood {
  rec_server *r;
  ts_sock sock;
  atomic_int stop;
  atomic_llong sent;
  ts_counter *received; /* by the server, checked */
  atomic_llong flood_id;
} flood;

static void flood_data(rec_server *r, iocp_conn_id id, const uint8_t *d, size_t n) {
  flood *f = r->user;
  if ((long long)id == atomic_load(&f->flood_id)) {
    /* on_data of one connection is serialised: the counter is its offset */
    uint64_t off = (uint64_t)ts_counter_get(f->received);
    if (ts_check(d, n, FLOOD_STREAM, off) != n) rec_violation(r);
    ts_counter_add(f->received, (int64_t)n);
  } else if (iocp_send(r->srv, id, d, n) != IOCP_OK) {
    rec_violation(r);
  }
}

static void flood_main(void *arg) {
  flood *f = arg;
  uint8_t *buf = malloc(FLOOD_BLOCK);
  uint64_t off = 0;
  assert_non_null(buf);
  while (!atomic_load(&f->stop)) {
    ts_fill(buf, FLOOD_BLOCK, FLOOD_STREAM, off);
    if (ts_send_all(f->sock, buf, FLOOD_BLOCK) != TS_OK) break;
    off += FLOOD_BLOCK;
    atomic_store(&f->sent, (long long)off);
  }
  free(buf);
}

#if defined(_WIN32)
/* Counted on the engine's calls: sockets set to skip the port, and receives
 * that succeeded at once. */
static atomic_int modes_set, recv_at_once;

static BOOL WINAPI count_modes(HANDLE file, UCHAR flags) {
  BOOL ok = SetFileCompletionNotificationModes(file, flags);
  if (ok && (flags & FILE_SKIP_COMPLETION_PORT_ON_SUCCESS)) atomic_fetch_add(&modes_set, 1);
  return ok;
}
static int WSAAPI count_wsarecv(SOCKET s, LPWSABUF b, DWORD n, LPDWORD got, LPDWORD flags,
                                LPWSAOVERLAPPED ol, LPWSAOVERLAPPED_COMPLETION_ROUTINE fn) {
  int rc = WSARecv(s, b, n, got, flags, ol, fn);
  if (rc == 0) atomic_fetch_add(&recv_at_once, 1);
  return rc;
}

static int skip_expected(void) {
  const char *v = getenv("IOCPSRV_SKIP_ON_SUCCESS");
  return iocp__tuning_defaults.skip_on_success && (v == NULL || strcmp(v, "0") != 0);
}
#endif

/* ROUND_TRIPS echoes of 64 bytes on b, each within ECHO_TIMEOUT_MS. */
static void echoes(ts_sock b) {
  int i;
  ts_set_timeout(b, ECHO_TIMEOUT_MS);
  for (i = 0; i < ROUND_TRIPS; i++) {
    uint8_t out[64], in[64];
    ts_fill(out, sizeof(out), 3, (uint64_t)i * sizeof(out));
    assert_int_equal(ts_send_all(b, out, sizeof(out)), TS_OK);
    assert_int_equal(ts_recv_exact(b, in, sizeof(in)), TS_OK); /* TS_TIMEOUT: starved */
    assert_memory_equal(in, out, sizeof(out));
  }
}

static void run_flood_against_echo(void) {
  iocp_config cfg;
  rec_hooks h = {0};
  flood f;
  ts_thread *t;
  ts_sock b;
  int64_t before;

  memset(&f, 0, sizeof(f));
  f.received = ts_counter_new();
  iocp_config_init(&cfg, sizeof(cfg));
  cfg.threads = 1; /* the flood and the echo share the only worker */
  /* Small reads: the peer fills the socket far faster than they empty it. */
  cfg.recv_buffer_size = 1024;
  h.on_data = flood_data;
  f.r = rec_start(0, &cfg, &h);
  f.r->user = &f;

  f.sock = ts_connect(f.r->port);
  atomic_store(&f.flood_id, (long long)rec_wait_connect(f.r, 1));
  assert_true(atomic_load(&f.flood_id) != 0);
  b = ts_connect(f.r->port);
  assert_true(rec_wait_connect(f.r, 2) != 0);

  t = ts_thread_start(flood_main, &f);
  /* Well under way: the kernel's buffers between the two are full. */
  assert_int_equal(ts_counter_wait(f.received, 8 << 20, TS_TIMEOUT_MS), 0);

  before = ts_counter_get(f.received);
  echoes(b);
  /* The flood was served meanwhile too, not held back for the echoes. */
  assert_true(ts_counter_get(f.received) > before);

  atomic_store(&f.stop, 1);
  ts_thread_join(t); /* its last send completes: the server keeps reading */
  assert_int_equal(ts_counter_wait(f.received, atomic_load(&f.sent), TS_TIMEOUT_MS), 0);
  ts_close(f.sock);
  ts_close(b);
  assert_int_equal(ts_counter_wait(f.r->disconnects, 2, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(f.r->violations), 0);
  rec_stop(f.r);
  ts_counter_free(f.received);
}

static void test_flood_does_not_starve_another_connection(void **state) {
  (void)state;
#if defined(_WIN32)
  atomic_store(&modes_set, 0);
  atomic_store(&recv_at_once, 0);
  iocp__hooks.set_completion_modes = count_modes;
  iocp__hooks.wsarecv = count_wsarecv;
#endif
  run_flood_against_echo();
#if defined(_WIN32)
  iocp__hooks_reset();
  if (skip_expected()) {
    assert_int_equal(atomic_load(&modes_set), 2); /* both connections skip the port */
    assert_true(atomic_load(&recv_at_once) > 0);  /* and the flood's receives did */
  } else {
    assert_int_equal(atomic_load(&modes_set), 0);
  }
#endif
}

/* ---- A producer whose sends complete at once ------------------------------- *
 * Windows only, with immediate sends off (iocp__tuning_defaults.try_send): then
 * every iocp_send is a WSASend whose completion is reported (at once when
 * the socket skips the port), and on_drain asks for more. By default, as on
 * Linux, iocp_send hands the socket what it takes inside the call, so bytes
 * a fast reader takes are never queued and no on_drain follows; a chain of
 * completions arises only while bytes wait in the queue, and this producer
 * makes the longest one there can be. */
#if defined(_WIN32)

static int operations_only(void **state) {
  (void)state;
  iocp__tuning_defaults.try_send = 0;
  return 0;
}

static int immediate_sends_back(void **state) {
  (void)state;
  iocp__tuning_defaults.try_send = 1;
  return 0;
}

#define PRODUCE_STREAM 9
#define PRODUCE_BLOCK 1024

typedef struct producer {
  atomic_llong id;
  atomic_int stop;
  uint64_t off;        /* bytes produced; on_drain of one connection is serialised */
  ts_counter *produced;
  ts_sock sock;
} producer;

static void produce(rec_server *r, iocp_conn_id id) {
  producer *p = r->user;
  uint8_t block[PRODUCE_BLOCK];
  if (atomic_load(&p->stop)) return;
  ts_fill(block, sizeof(block), PRODUCE_STREAM, p->off);
  if (iocp_send(r->srv, id, block, sizeof(block)) != IOCP_OK) {
    rec_violation(r);
    return;
  }
  p->off += sizeof(block);
  ts_counter_add(p->produced, sizeof(block));
}

static void producer_connect(rec_server *r, iocp_conn_id id) {
  producer *p = r->user;
  long long none = 0;
  if (atomic_compare_exchange_strong(&p->id, &none, (long long)id)) produce(r, id);
}

static void producer_drain(rec_server *r, iocp_conn_id id, uint64_t queued) {
  producer *p = r->user;
  (void)queued;
  if ((long long)id == atomic_load(&p->id)) produce(r, id); /* the next block */
}

static void echo_others(rec_server *r, iocp_conn_id id, const uint8_t *d, size_t n) {
  producer *p = r->user;
  if ((long long)id != atomic_load(&p->id) && iocp_send(r->srv, id, d, n) != IOCP_OK)
    rec_violation(r);
}

/* The producer's peer: reads as fast as it can until the server closes. */
static void consume_main(void *arg) {
  producer *p = arg;
  uint8_t *buf = malloc(FLOOD_BLOCK);
  size_t got = 0;
  assert_non_null(buf);
  ts_recv_to_end(p->sock, buf, FLOOD_BLOCK, &got);
  free(buf);
}

static void test_producer_does_not_starve_another_connection(void **state) {
  iocp_config cfg;
  rec_hooks h = {0};
  producer p;
  rec_server *r;
  ts_thread *t;
  ts_sock b;
  int64_t before;
  (void)state;

  memset(&p, 0, sizeof(p));
  p.produced = ts_counter_new();
  iocp_config_init(&cfg, sizeof(cfg));
  cfg.threads = 1;
  h.on_connect = producer_connect;
  h.on_drain = producer_drain;
  h.on_data = echo_others;
  r = rec_start(REC_DRAIN, &cfg, &h);
  r->user = &p;

  p.sock = ts_connect(r->port);
  assert_true(rec_wait_connect(r, 1) != 0);
  t = ts_thread_start(consume_main, &p);
  assert_int_equal(ts_counter_wait(p.produced, 1 << 20, TS_TIMEOUT_MS), 0); /* under way */
  b = ts_connect(r->port);
  assert_true(rec_wait_connect(r, 2) != 0);

  before = ts_counter_get(p.produced);
  echoes(b);
  assert_true(ts_counter_get(p.produced) > before); /* produced meanwhile too */

  atomic_store(&p.stop, 1);
  assert_int_equal(iocp_close(r->srv, (iocp_conn_id)atomic_load(&p.id)), IOCP_OK);
  ts_thread_join(t); /* the close ends its reads */
  ts_close(p.sock);
  ts_close(b);
  assert_int_equal(ts_counter_wait(r->disconnects, 2, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->violations), 0);
  rec_stop(r);
  ts_counter_free(p.produced);
}

#endif

/* ---- A callback that blocks ---------------------------------------------------------
 * Two workers, two connections: A (the first, worker 0's loop on Linux)
 * and B (the second, worker 1's). A's callback blocks until B's on_data
 * has run, which another worker must serve meanwhile. On Linux worker 1
 * first lends its loop to worker 0 (parking, dll/linux/park.c: after a
 * quiet second), so B's bytes reach worker 0's set, whose worker is stuck
 * in A's callback: worker 1 must take its loop back. Without that, A's wait
 * times out. */

typedef struct blocker {
  atomic_llong a_id;
  ts_counter *a_blocking; /* A's callback is inside its wait */
  ts_counter *b_served;   /* B's on_data ran */
} blocker;

static blocker bl;

static void block_data(rec_server *r, iocp_conn_id id, const uint8_t *d, size_t n) {
  (void)n;
  if (d[0] == 'w' && id == (iocp_conn_id)atomic_load(&bl.a_id)) {
    ts_counter_add(bl.a_blocking, 1);
    if (ts_counter_wait(bl.b_served, 1, ECHO_TIMEOUT_MS) != 0) rec_violation(r);
  } else if (d[0] == 'b') {
    ts_counter_add(bl.b_served, 1);
  }
}

static void echo_one(ts_sock s, char c) {
  char buf = 0;
  assert_int_equal(ts_send_all(s, &c, 1), TS_OK);
  assert_int_equal(ts_recv_exact(s, &buf, 1), TS_OK);
  assert_int_equal(buf, c);
}

static void test_blocked_callback_holds_no_other_worker(void **state) {
  iocp_config cfg;
  rec_hooks h;
  rec_server *r;
  ts_sock a, b;
  char buf = 0;
  (void)state;
  memset(&h, 0, sizeof(h));
  h.on_data = block_data;
  bl.a_blocking = ts_counter_new();
  bl.b_served = ts_counter_new();
  iocp_config_init(&cfg, sizeof(cfg));
  cfg.threads = 2;
  r = rec_start(REC_ECHO, &cfg, &h);
  a = ts_connect(r->port);
  assert_true(a != TS_BAD_SOCK);
  ts_set_timeout(a, ECHO_TIMEOUT_MS * 2);
  atomic_store(&bl.a_id, (long long)rec_wait_connect(r, 1));
  echo_one(a, 'x');
  b = ts_connect(r->port);
  assert_true(b != TS_BAD_SOCK);
  ts_set_timeout(b, ECHO_TIMEOUT_MS);
  assert_int_not_equal(rec_wait_connect(r, 2), 0);
  echo_one(b, 'x');
#if !defined(_WIN32)
  {
    /* Quiet until worker 1 has parked (it waits a second first). */
    struct iocp__eng_loop *l1 = iocp__linux_loop(iocp__server_eng(r->srv), 1);
    uint64_t t0 = ts_now_ms();
    while (!atomic_load(&l1->parked)) {
      assert_true(ts_now_ms() - t0 < (uint64_t)ECHO_TIMEOUT_MS);
      ts_counter_wait(bl.b_served, 1, 10); /* never comes yet: a 10 ms pause */
    }
  }
#endif
  assert_int_equal(ts_send_all(a, "w", 1), TS_OK);
  assert_int_equal(ts_counter_wait(bl.a_blocking, 1, ECHO_TIMEOUT_MS), 0);
  echo_one(b, 'b'); /* served while A's callback blocks */
  assert_int_equal(ts_recv_exact(a, &buf, 1), TS_OK);
  assert_int_equal(buf, 'w');
  assert_int_equal(ts_counter_get(r->violations), 0);
  ts_close(a);
  ts_close(b);
  assert_int_equal(ts_counter_wait(r->disconnects, 2, ECHO_TIMEOUT_MS), 0);
  rec_stop(r);
  ts_counter_free(bl.a_blocking);
  ts_counter_free(bl.b_served);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flood_does_not_starve_another_connection),
      cmocka_unit_test(test_blocked_callback_holds_no_other_worker),
#if defined(_WIN32)
      cmocka_unit_test_setup_teardown(test_producer_does_not_starve_another_connection,
                                      operations_only, immediate_sends_back),
#endif
  };
  ts_net_init();
#if defined(_WIN32)
  iocp__tuning_defaults.skip_on_success = 1;
#endif
  return cmocka_run_group_tests(tests, NULL, NULL);
}
