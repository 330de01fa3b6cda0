/* Fairness: a connection whose receives keep completing at once must not
 * starve the others.
 *
 * One worker thread; one peer floods its connection (the server reads and
 * checks every byte, answers nothing), so that connection's socket is never
 * empty: on Windows its receives succeed at once and skip the port
 * (FILE_SKIP_COMPLETION_PORT_ON_SUCCESS), on Linux its socket stays
 * readable. Meanwhile another connection must get each of its echoes within
 * a few seconds, and the flood must go on being served.
 *
 * A white-box test (the static build): on Windows it also counts, through
 * the call table, that the sockets were set to skip the port and that
 * receives did complete at once, so the bound was really exercised. The
 * environment variable IOCPSRV_SKIP_ON_SUCCESS=0 (test/meson.build's second
 * run) turns that off; then every completion goes through the port. */
#include "tsupport.h"
#include "internal.h"

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
  return iocp__win_tuning.skip_on_success && (v == NULL || strcmp(v, "0") != 0);
}
#endif

static void run_flood_against_echo(void) {
  iocp_config cfg;
  rec_hooks h = {0};
  flood f;
  ts_thread *t;
  ts_sock b;
  int i;
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
  ts_set_timeout(b, ECHO_TIMEOUT_MS);

  t = ts_thread_start(flood_main, &f);
  /* Well under way: the kernel's buffers between the two are full. */
  assert_int_equal(ts_counter_wait(f.received, 8 << 20, TS_TIMEOUT_MS), 0);

  before = ts_counter_get(f.received);
  for (i = 0; i < ROUND_TRIPS; i++) {
    uint8_t out[64], in[64];
    ts_fill(out, sizeof(out), 3, (uint64_t)i * sizeof(out));
    assert_int_equal(ts_send_all(b, out, sizeof(out)), TS_OK);
    assert_int_equal(ts_recv_exact(b, in, sizeof(in)), TS_OK); /* TS_TIMEOUT: starved */
    assert_memory_equal(in, out, sizeof(out));
  }
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flood_does_not_starve_another_connection),
  };
  ts_net_init();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
