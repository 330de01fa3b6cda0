/* TLS server and client of the library against each other, through the API
 * only, so the same source tests either engine's server side: a handshake,
 * 1 MiB echoed byte for byte and close_notify both ways; 2,000 handshakes
 * at once (IOCP_TLS_MANY=N: N instead); a slow reader behind the queue
 * limit; destroy and a graceful stop among handshakes; the server's ALPN
 * choice and the protocol both ends report; a TLS 1.3-only server; peers
 * that are not TLS, cut a ClientHello or stall, each cut off, counted, the
 * server serving on. Registered where the engine's server side can run
 * (Linux; Windows under Debian 13's Wine 10, as Debian 12's Wine 8 has no
 * server-side SChannel). IOCP_TLS_PEER_CERTS names the certificates'
 * folder (support/make_certs.sh); IOCP_TLS_EXPECT_13=1 says the engine
 * speaks TLS 1.3 there (OpenSSL does, Wine 10's SChannel does not). */
#include "tsupport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#  include <sys/resource.h>
#endif

/* Handshakes at once: both ends in this process, so twice as many sockets;
 * fewer in sanitizer builds (several times slower), where the point is the
 * checks, not the count. */
#ifndef LOOP_MANY
#  define LOOP_MANY 2000
#endif

static uint8_t *g_p12;
static int g_many = LOOP_MANY;
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

static void test_loop_many(void **state) {
  rec_server *srv = tls_server(REC_ECHO), *cli = rec_start(0, NULL, NULL);
  iocp_conn_id id;
  int i;
  (void)state;
  for (i = 0; i < g_many; i++) assert_int_equal(connect_tls(cli, srv->port, &id), IOCP_OK);
  assert_int_equal(ts_tls_wait_handshakes(srv, cli, g_many), 0);
  assert_int_equal(ts_stats(srv->srv).tls_handshakes, (uint64_t)g_many);
  assert_int_equal(ts_stats(cli->srv).tls_handshakes, (uint64_t)g_many);
  rec_stop(cli);
  rec_stop(srv);
}

/* ---- A slow reader behind the queue limit ----------------------------------------- */

#define SLOW_LIMIT (256u << 10)
static void hook_check3(rec_server *r, iocp_conn_id id, const uint8_t *data, size_t len) {
  bulk *b = r->user;
  (void)id;
  if (ts_check(data, len, 3, b->got) != len) b->bad = 1;
  b->got += len;
}

/* The reader pauses its receives, asks for data, and the server sends
 * until iocp_send says the queue is full: the queue (counting plaintext)
 * never passed the limit. Then the reader resumes and gets every byte in
 * order. */
static void test_loop_slow_reader(void **state) {
  iocp_config cfg;
  rec_hooks sh, ch;
  rec_server *srv, *cli;
  ts_flood st;
  bulk b;
  iocp_conn_id id;
  (void)state;
  tls_config(&cfg);
  cfg.max_send_queue = SLOW_LIMIT;
  memset(&sh, 0, sizeof(sh));
  sh.on_data = ts_flood_on_data;
  memset(&st, 0, sizeof(st));
  st.done = ts_counter_new();
  srv = rec_start(0, &cfg, &sh);
  srv->user = &st;
  memset(&ch, 0, sizeof(ch));
  ch.on_data = hook_check3;
  memset(&b, 0, sizeof(b));
  cli = rec_start(0, NULL, &ch);
  cli->user = &b;
  assert_int_equal(connect_tls(cli, srv->port, &id), IOCP_OK);
  assert_int_equal(rec_wait_connect(cli, 1), id);
  assert_int_equal(iocp_pause_recv(cli->srv, id), IOCP_OK);
  assert_int_equal(iocp_send(cli->srv, id, "go", 2), IOCP_OK);
  assert_int_equal(ts_counter_wait(st.done, 1, TS_TIMEOUT_MS), 0);
  assert_true(st.max_queued <= SLOW_LIMIT);
  assert_true(st.sent >= SLOW_LIMIT - TS_FLOOD_CHUNK);
  assert_true(st.sent < 64u << 20);
  assert_int_equal(iocp_resume_recv(cli->srv, id), IOCP_OK);
  assert_int_equal(ts_counter_wait(cli->bytes_in, (int64_t)st.sent, TS_TIMEOUT_MS), 0);
  assert_false(b.bad);
  assert_int_equal(b.got, st.sent);
  rec_stop(cli);
  rec_stop(srv);
  ts_counter_free(st.done);
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

/* ---- Two identities loaded at once ------------------------------------------------- */

#define LOADERS 8

typedef struct loader {
  ts_counter *ready;
  const ts_blob *p12;
  rec_server *srv;
  int rc;
} loader;

/* Waits until every loader is ready, then creates its server. */
static void load_at_once(void *arg) {
  loader *l = arg;
  iocp_config cfg;
  ts_counter_add(l->ready, 1);
  (void)ts_counter_wait(l->ready, LOADERS, TS_TIMEOUT_MS);
  tls_config(&cfg);
  cfg.tls_pkcs12 = l->p12->data;
  cfg.tls_pkcs12_len = (uint32_t)l->p12->len;
  l->srv = rec_try_start(REC_ECHO, &cfg, NULL, &l->rc);
}

/* Servers with two different identities created at the same moment each
 * load their own certificate and key, and a client that trusts only that
 * certificate completes a handshake with each. (Wine keeps imported keys
 * in one slot per prefix: without the library's care one server could
 * get the other identity's key, and its iocp_create fails.) */
static void test_loop_identities_at_once(void **state) {
  ts_blob p12[2], pem[2];
  loader l[LOADERS];
  ts_thread *th[LOADERS];
  ts_counter *ready = ts_counter_new();
  rec_server *cli = rec_start(0, NULL, NULL);
  int i;
  (void)state;
  p12[0] = ts_load_file("IOCP_TLS_PEER_CERTS", "rsa.p12");
  p12[1] = ts_load_file("IOCP_TLS_PEER_CERTS", "rsa2.p12");
  pem[0] = ts_load_file("IOCP_TLS_PEER_CERTS", "rsa.pem");
  pem[1] = ts_load_file("IOCP_TLS_PEER_CERTS", "rsa2.pem");
  for (i = 0; i < LOADERS; i++) {
    memset(&l[i], 0, sizeof(l[i]));
    l[i].ready = ready;
    l[i].p12 = &p12[i % 2];
    th[i] = ts_thread_start(load_at_once, &l[i]);
  }
  for (i = 0; i < LOADERS; i++) ts_thread_join(th[i]);
  for (i = 0; i < LOADERS; i++) {
    iocp_tls_client o;
    iocp_conn_id id;
    assert_int_equal(l[i].rc, IOCP_OK);
    memset(&o, 0, sizeof(o));
    o.size = sizeof(o);
    o.server_name = "localhost";
    o.ca_pem = pem[i % 2].data;
    o.ca_pem_len = (uint32_t)pem[i % 2].len;
    o.handshake_timeout_ms = TS_TIMEOUT_MS;
    assert_int_equal(iocp_connect_tls(cli->srv, "127.0.0.1", l[i].srv->port, &o, &id), IOCP_OK);
    assert_int_equal(rec_wait_connect(cli, i + 1), id);
  }
  rec_stop(cli);
  for (i = 0; i < LOADERS; i++) rec_stop(l[i].srv);
  for (i = 0; i < 2; i++) {
    free(p12[i].data);
    free(pem[i].data);
  }
  ts_counter_free(ready);
}

/* ---- PKCS#12 encodings and key types ------------------------------------------------ */

/* A server made from `file`: its iocp_create code, and when it serves, a
 * client that trusts only `pem` completes a handshake with it. */
static int serve_identity(const char *file, const char *pem_file) {
  ts_blob p12 = ts_load_file("IOCP_TLS_PEER_CERTS", file);
  ts_blob pem = ts_load_file("IOCP_TLS_PEER_CERTS", pem_file);
  iocp_config cfg;
  rec_server *srv, *cli;
  int rc = 0;
  tls_config(&cfg);
  cfg.tls_pkcs12 = p12.data;
  cfg.tls_pkcs12_len = (uint32_t)p12.len;
  srv = rec_try_start(REC_ECHO, &cfg, NULL, &rc);
  if (srv != NULL) {
    iocp_tls_client o;
    iocp_conn_id id;
    cli = rec_start(0, NULL, NULL);
    memset(&o, 0, sizeof(o));
    o.size = sizeof(o);
    o.server_name = "localhost";
    o.ca_pem = pem.data;
    o.ca_pem_len = (uint32_t)pem.len;
    o.handshake_timeout_ms = TS_TIMEOUT_MS;
    assert_int_equal(iocp_connect_tls(cli->srv, "127.0.0.1", srv->port, &o, &id), IOCP_OK);
    assert_int_equal(rec_wait_connect(cli, 1), id);
    rec_stop(cli);
    rec_stop(srv);
  }
  free(p12.data);
  free(pem.data);
  return rc;
}

/* RSA in both PKCS#12 encryptions serves: `openssl pkcs12 -export`'s
 * default (PBES2, AES-256-CBC, SHA-256 MAC) and the older one (3DES,
 * SHA-1 MAC). ECDSA P-256 serves, except under Wine: its crypt32 imports
 * RSA keys only (whatever the encryption), and iocp_create refuses. */
static void test_loop_identity_kinds(void **state) {
  (void)state;
  assert_int_equal(serve_identity("rsa.p12", "rsa.pem"), IOCP_OK);
  assert_int_equal(serve_identity("rsa-3des.p12", "rsa.pem"), IOCP_OK);
  if (ts_on_wine())
    assert_int_not_equal(serve_identity("ecdsa.p12", "ecdsa.pem"), IOCP_OK);
  else
    assert_int_equal(serve_identity("ecdsa.p12", "ecdsa.pem"), IOCP_OK);
}

/* ---- Destroy and graceful stop among handshakes --------------------------------------- */

/* Five kept connections, and twenty sockets in their handshake (nothing
 * sent, or half a ClientHello). Graceful: the clients send close_notify,
 * the stop half-closes the kept connections and ends the handshakes, and
 * everything ends before the deadline. Then destroy: every kept
 * connection had exactly one disconnect on both sides (rec_stop checks). */
static void among_handshakes(int graceful) {
  rec_server *srv = tls_server(REC_ECHO), *cli = rec_start(0, NULL, NULL);
  iocp_conn_id ids[5];
  ts_sock raw[20];
  uint8_t hello[4096];
  size_t n = client_hello(hello, sizeof(hello));
  int i;
  for (i = 0; i < 5; i++) assert_int_equal(connect_tls(cli, srv->port, &ids[i]), IOCP_OK);
  for (i = 0; i < 20; i++) {
    raw[i] = ts_connect(srv->port);
    assert_true(raw[i] != TS_BAD_SOCK);
    assert_int_equal(ts_send_all(raw[i], hello, i % 2 ? n / 2 : 0), TS_OK);
  }
  assert_int_equal(ts_counter_wait(srv->connects, 5, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_wait(cli->connects, 5, TS_TIMEOUT_MS), 0);
  if (graceful) {
    for (i = 0; i < 5; i++) assert_int_equal(iocp_shutdown(cli->srv, ids[i]), IOCP_OK);
    assert_int_equal(iocp_stop_graceful(srv->srv, TS_TIMEOUT_MS), 0);
    assert_int_equal(ts_counter_get(srv->reasons[IOCP_REASON_PEER_CLOSED]), 5);
    assert_int_equal(ts_counter_wait(cli->disconnects, 5, TS_TIMEOUT_MS), 0);
  }
  rec_stop(srv);
  rec_stop(cli);
  for (i = 0; i < 20; i++) ts_close(raw[i]);
}

static void test_loop_destroy_among_handshakes(void **state) {
  (void)state;
  among_handshakes(0);
}

static void test_loop_stop_among_handshakes(void **state) {
  (void)state;
  among_handshakes(1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loop_echo),
      cmocka_unit_test(test_loop_many),
      cmocka_unit_test(test_loop_slow_reader),
      cmocka_unit_test(test_loop_destroy_mid_handshake),
      cmocka_unit_test(test_loop_destroy_among_handshakes),
      cmocka_unit_test(test_loop_stop_among_handshakes),
      cmocka_unit_test(test_loop_identities_at_once),
      cmocka_unit_test(test_loop_identity_kinds),
      cmocka_unit_test(test_loop_alpn),
      cmocka_unit_test(test_loop_tls13_only),
      cmocka_unit_test(test_loop_bad_peers),
  };
  const char *tls13 = getenv("IOCP_TLS_EXPECT_13");
  const char *many = getenv("IOCP_TLS_MANY");
#ifndef _WIN32
  struct rlimit rl; /* both ends of every connection are ours */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
#endif
  if (many != NULL && atoi(many) > 0) g_many = atoi(many);
  ts_net_init();
  load_identity();
  g_tls13 = tls13 != NULL && strcmp(tls13, "1") == 0;
  return cmocka_run_group_tests(tests, NULL, NULL);
}
