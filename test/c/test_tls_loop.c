/* TLS server and client of the library against each other, through the API
 * only, so the same source tests either engine's server side: a handshake,
 * 1 MiB echoed byte for byte and close_notify both ways; 200 handshakes at
 * once; destroy among handshakes; the server's ALPN choice and the
 * protocol both ends report; a TLS 1.3-only server; peers that are not TLS,
 * cut a ClientHello or stall, each cut off, counted, the server serving on. Registered where the
 * engine's server side can run (Linux; Windows under Debian 13's Wine 10,
 * as Debian 12's Wine 8 has no server-side SChannel). IOCP_TLS_PEER_CERTS
 * names the certificates' folder (support/make_certs.sh);
 * IOCP_TLS_EXPECT_13=1 says the engine speaks TLS 1.3 there (OpenSSL does,
 * Wine 10's SChannel does not). */
#include "tsupport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *g_p12;
static size_t g_p12_len;
static int g_tls13;

static void load_identity(void) {
  char path[1024];
  FILE *f;
  long n;
  const char *dir = getenv("IOCP_TLS_PEER_CERTS");
  assert_non_null(dir);
  snprintf(path, sizeof(path), "%s/rsa.p12", dir); /* Wine imports RSA, not ECDSA */
  f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  g_p12 = malloc((size_t)n);
  assert_int_equal(fread(g_p12, 1, (size_t)n, f), (size_t)n);
  g_p12_len = (size_t)n;
  fclose(f);
}

static void tls_config(iocp_config *cfg) {
  iocp_config_init(cfg, sizeof(*cfg));
  cfg->tls_pkcs12 = g_p12;
  cfg->tls_pkcs12_len = (uint32_t)g_p12_len;
  cfg->tls_password = "secret";
  cfg->tls_handshake_timeout_ms = TS_TIMEOUT_MS;
}

static rec_server *tls_server(int flags) {
  iocp_config cfg;
  tls_config(&cfg);
  return rec_start(flags, &cfg, NULL);
}

static int connect_tls_alpn(rec_server *cli, uint16_t port, const char *alpn, iocp_conn_id *id) {
  iocp_tls_client o;
  memset(&o, 0, sizeof(o));
  o.size = sizeof(o);
  o.no_verify = 1;
  o.alpn = alpn;
  o.handshake_timeout_ms = TS_TIMEOUT_MS;
  return iocp_connect_tls(cli->srv, "127.0.0.1", port, &o, id);
}

static int connect_tls(rec_server *cli, uint16_t port, iocp_conn_id *id) {
  return connect_tls_alpn(cli, port, NULL, id);
}

static iocp_tls_info info_of(rec_server *r, iocp_conn_id id) {
  iocp_tls_info info;
  memset(&info, 0, sizeof(info));
  info.size = sizeof(info);
  assert_int_equal(iocp_tls_get_info(r->srv, id, &info), IOCP_OK);
  return info;
}

#define BULK (1u << 20)
#define STEP (64u << 10)

typedef struct bulk {
  uint64_t got;
  int bad;
} bulk;

static void hook_check(rec_server *r, iocp_conn_id id, const uint8_t *data, size_t len) {
  bulk *b = r->user;
  (void)id;
  if (ts_check(data, len, 9, b->got) != len) b->bad = 1;
  b->got += len;
}

static void test_loop_echo(void **state) {
  rec_hooks hooks;
  rec_server *srv = tls_server(REC_ECHO | REC_HANDLE_PEER_CLOSE), *cli;
  bulk b;
  iocp_conn_id id;
  uint8_t *buf = malloc(STEP);
  uint64_t off;
  (void)state;
  memset(&hooks, 0, sizeof(hooks));
  hooks.on_data = hook_check;
  memset(&b, 0, sizeof(b));
  cli = rec_start(REC_HANDLE_PEER_CLOSE, NULL, &hooks);
  cli->user = &b;
  assert_int_equal(connect_tls(cli, srv->port, &id), IOCP_OK);
  assert_int_equal(rec_wait_connect(cli, 1), id);
  assert_true(rec_wait_connect(srv, 1) != 0);
  for (off = 0; off < BULK; off += STEP) {
    ts_fill(buf, STEP, 9, off);
    assert_int_equal(iocp_send(cli->srv, id, buf, STEP), IOCP_OK);
  }
  assert_int_equal(ts_counter_wait(cli->bytes_in, BULK, TS_TIMEOUT_MS), 0);
  assert_false(b.bad);
  /* The client's close_notify: the server's on_peer_closed answers with
   * its own; both end gracefully. */
  assert_int_equal(iocp_shutdown(cli->srv, id), IOCP_OK);
  assert_int_equal(ts_counter_wait(srv->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_wait(cli->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(srv->peer_closed), 1);
  assert_int_equal(ts_counter_get(srv->reasons[IOCP_REASON_PEER_CLOSED]), 1);
  assert_int_equal(ts_counter_get(cli->reasons[IOCP_REASON_PEER_CLOSED]), 1);
  rec_stop(cli);
  rec_stop(srv);
  free(buf);
}

#define MANY 200

static void test_loop_many(void **state) {
  rec_server *srv = tls_server(REC_ECHO), *cli = rec_start(0, NULL, NULL);
  iocp_conn_id id;
  int i;
  (void)state;
  for (i = 0; i < MANY; i++) assert_int_equal(connect_tls(cli, srv->port, &id), IOCP_OK);
  assert_int_equal(ts_counter_wait(srv->connects, MANY, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_wait(cli->connects, MANY, TS_TIMEOUT_MS), 0);
  rec_stop(cli);
  rec_stop(srv);
}

/* Destroy while handshakes are in flight: it returns, every kept
 * connection had its one disconnect (rec_stop checks), nothing leaks. */
static void test_loop_destroy_mid_handshake(void **state) {
  rec_server *srv = tls_server(REC_ECHO), *cli = rec_start(0, NULL, NULL);
  iocp_conn_id id;
  int i;
  (void)state;
  for (i = 0; i < 100; i++) assert_int_equal(connect_tls(cli, srv->port, &id), IOCP_OK);
  rec_stop(srv);
  rec_stop(cli);
}

/* The server's ALPN list against what clients offer: both ends report the
 * server's choice (its preference first; none without a common protocol)
 * and the newest protocol both speak; a few bytes echo after it. */
static void test_loop_alpn(void **state) {
  static const char *const cases[][2] = {
      {"x-unknown,http/1.1", "http/1.1"}, {"http/1.1,h2", "h2"}, {"x-unknown", ""}, {NULL, ""}};
  iocp_config cfg;
  rec_server *srv, *cli;
  size_t i;
  (void)state;
  tls_config(&cfg);
  cfg.tls_alpn = "h2,http/1.1";
  srv = rec_start(REC_ECHO, &cfg, NULL);
  cli = rec_start(0, NULL, NULL);
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    iocp_conn_id id, sid;
    iocp_tls_info ci, si;
    assert_int_equal(connect_tls_alpn(cli, srv->port, cases[i][0], &id), IOCP_OK);
    assert_int_equal(rec_wait_connect(cli, (int64_t)i + 1), id);
    sid = rec_wait_connect(srv, (int64_t)i + 1);
    assert_true(sid != 0);
    ci = info_of(cli, id);
    si = info_of(srv, sid);
    assert_string_equal(ci.alpn, cases[i][1]);
    assert_string_equal(si.alpn, cases[i][1]);
    assert_int_equal(ci.version, g_tls13 ? IOCP_TLS_1_3 : IOCP_TLS_1_2);
    assert_int_equal(si.version, ci.version);
    assert_int_equal(iocp_send(cli->srv, id, "ping", 4), IOCP_OK);
    assert_int_equal(ts_counter_wait(cli->bytes_in, 4 * ((int64_t)i + 1), TS_TIMEOUT_MS), 0);
  }
  rec_stop(cli);
  rec_stop(srv);
}

/* A server that takes TLS 1.3 only: serves a client that speaks it; where
 * the engine has no TLS 1.3, iocp_create refuses it. */
static void test_loop_tls13_only(void **state) {
  iocp_config cfg;
  rec_server *srv, *cli;
  iocp_conn_id id;
  int rc = 0;
  (void)state;
  tls_config(&cfg);
  cfg.tls_min_version = IOCP_TLS_1_3;
  srv = rec_try_start(REC_ECHO, &cfg, NULL, &rc);
  if (!g_tls13) {
    assert_null(srv);
    assert_int_equal(rc, IOCP_ETLS);
    return;
  }
  assert_non_null(srv);
  cli = rec_start(0, NULL, NULL);
  assert_int_equal(connect_tls(cli, srv->port, &id), IOCP_OK);
  assert_int_equal(rec_wait_connect(cli, 1), id);
  assert_int_equal(info_of(cli, id).version, IOCP_TLS_1_3);
  rec_stop(cli);
  rec_stop(srv);
}

/* ---- Peers that are not TLS, or stall ---------------------------------------------- */

typedef struct capture {
  uint8_t buf[4096];
  size_t len;
} capture;

static void hook_capture(rec_server *r, iocp_conn_id id, const uint8_t *data, size_t len) {
  capture *c = r->user;
  (void)id;
  if (len > sizeof(c->buf) - c->len) len = sizeof(c->buf) - c->len;
  memcpy(c->buf + c->len, data, len);
  c->len += len;
}

/* The engine's own ClientHello (its first record), as a plain server of
 * the library receives it. */
static size_t client_hello(uint8_t *out, size_t cap) {
  rec_hooks hooks;
  rec_server *plain, *cli;
  capture *c = calloc(1, sizeof(*c));
  iocp_conn_id id;
  size_t n;
  memset(&hooks, 0, sizeof(hooks));
  hooks.on_data = hook_capture;
  plain = rec_start(0, NULL, &hooks);
  plain->user = c;
  cli = rec_start(0, NULL, NULL);
  assert_int_equal(connect_tls(cli, plain->port, &id), IOCP_OK);
  assert_int_equal(ts_counter_wait(plain->bytes_in, 5, TS_TIMEOUT_MS), 0);
  assert_int_equal(c->buf[0], 22); /* a handshake record */
  n = 5 + (((size_t)c->buf[3] << 8) | c->buf[4]);
  assert_true(n > 100 && n <= cap && n <= sizeof(c->buf));
  assert_int_equal(ts_counter_wait(plain->bytes_in, (int64_t)n, TS_TIMEOUT_MS), 0);
  rec_stop(cli);
  rec_stop(plain);
  memcpy(out, c->buf, n);
  free(c);
  return n;
}

/* Each bad peer is cut off without a callback, counted, and the server
 * still serves TLS afterwards. */
static void test_loop_bad_peers(void **state) {
  iocp_config cfg;
  rec_server *r, *cli;
  iocp_conn_id id;
  uint8_t hello[4096];
  size_t n = client_hello(hello, sizeof(hello));
  iocp_statistics st;
  (void)state;
  tls_config(&cfg);
  cfg.tls_handshake_timeout_ms = 200;
  r = rec_start(REC_ECHO, &cfg, NULL);
  ts_tls_bad_peers(r, hello, n);
  /* Nothing reached the program; the server still serves. */
  assert_int_equal(ts_counter_get(r->connects), 0);
  cli = rec_start(0, NULL, NULL);
  assert_int_equal(connect_tls(cli, r->port, &id), IOCP_OK);
  assert_int_equal(rec_wait_connect(cli, 1), id);
  assert_int_equal(iocp_send(cli->srv, id, "ok", 2), IOCP_OK);
  assert_int_equal(ts_counter_wait(cli->bytes_in, 2, TS_TIMEOUT_MS), 0);
  rec_stop(cli);
  st = ts_stats(r->srv);
  assert_int_equal(st.tls_handshake_failures, 3);
  assert_int_equal(st.tls_handshake_timeouts, 1);
  rec_stop(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loop_echo),
      cmocka_unit_test(test_loop_many),
      cmocka_unit_test(test_loop_destroy_mid_handshake),
      cmocka_unit_test(test_loop_alpn),
      cmocka_unit_test(test_loop_tls13_only),
      cmocka_unit_test(test_loop_bad_peers),
  };
  const char *tls13 = getenv("IOCP_TLS_EXPECT_13");
  ts_net_init();
  load_identity();
  g_tls13 = tls13 != NULL && strcmp(tls13, "1") == 0;
  return cmocka_run_group_tests(tests, NULL, NULL);
}
