/* TLS through the library's own API only, so it runs on both engines (under
 * Wine too): the identity checks of iocp_create, and iocp_connect_tls
 * against an outside TLS 1.2 echo peer (tls_peer.py, which sets
 * IOCP_TLS_PEER_PORT and IOCP_TLS_PEER_CERTS): verified against the given
 * CA, refused for an untrusted certificate or a wrong name, accepted with
 * verification off; 1 MiB echoed byte for byte, and close_notify both
 * ways. Against the peer's second port (IOCP_TLS_PEER_ALPN_PORT: TLS 1.2
 * and 1.3, ALPN h2 then http/1.1): the ALPN choice, the newest protocol
 * and a TLS 1.3-only client. IOCP_TLS_EXPECT_13=1 says the engine speaks
 * TLS 1.3 where the suite runs (OpenSSL; Wine 10's SChannel); without it
 * (Wine 8) TLS 1.2 is the newest and a TLS 1.3-only client is refused. */
#include "tsupport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef ts_blob blob;

static blob load(const char *name) { return ts_load_file("IOCP_TLS_PEER_CERTS", name); }

static blob g_rsa, g_nokey, g_mismatch, g_keyenc, g_clientauth, g_serverauth, g_rsa_pem,
    g_other_pem;
static uint16_t g_port, g_alpn_port;
static int g_tls13;

/* ---- iocp_create refuses a bad identity ------------------------------------------- */

static int create_rc(const blob *p12, const char *password) {
  return ts_tls_create_rc(p12, password, 0, NULL);
}

static void test_create_identity(void **state) {
  blob junk = {(uint8_t *)"this is not a PKCS#12 blob", 26};
  (void)state;
  assert_int_equal(create_rc(&g_rsa, "wrong"), IOCP_EPASSWORD);
  {
    /* Wine's PFXImportCertStore cannot import a blob without a key, and
     * the engine cannot tell that from a wrong password there. */
    int rc = create_rc(&g_nokey, "secret");
    if (ts_on_wine() && rc == IOCP_EPASSWORD) rc = IOCP_ENOKEY;
    assert_int_equal(rc, IOCP_ENOKEY);
  }
  assert_int_equal(create_rc(&junk, "secret"), IOCP_EPKCS12);
  assert_int_equal(create_rc(&g_rsa, "secret"), IOCP_OK);
}

/* The refusal of an identity whose key cannot sign the handshakes, or
 * whose certificate no verifying client accepts for a server, and the
 * on_log line that says why. */
static int create_logged(const blob *p12, ts_log_rec *log) {
  return ts_tls_create_rc(p12, "secret", 0, log);
}

static void test_create_unfit_identity(void **state) {
  ts_log_rec log;
  (void)state;
  {
    /* Wine's PFXImportCertStore cannot import a key that no certificate
     * matches (as a blob without a key; see test_create_identity). */
    int rc = create_logged(&g_mismatch, &log);
    if (ts_on_wine() && rc == IOCP_EPASSWORD) rc = log.code = IOCP_ENOKEY;
    assert_int_equal(rc, IOCP_ENOKEY);
    assert_int_equal(log.code, IOCP_ENOKEY);
  }
  ts_tls_expect_refused(&g_keyenc, "secret", IOCP_EPKCS12, "digitalSignature");
  ts_tls_expect_refused(&g_clientauth, "secret", IOCP_EPKCS12, "serverAuth");
  assert_int_equal(create_logged(&g_serverauth, &log), IOCP_OK);
  assert_int_equal(log.code, 0);
}

/* ---- iocp_connect_tls against the peer ----------------------------------------------- */

static int outbound(rec_server *r, const char *name, const blob *ca, uint32_t no_verify,
                    iocp_conn_id *id) {
  iocp_tls_client o;
  memset(&o, 0, sizeof(o));
  o.size = sizeof(o);
  o.server_name = name;
  o.no_verify = no_verify;
  o.handshake_timeout_ms = TS_TIMEOUT_MS;
  if (ca != NULL) {
    o.ca_pem = ca->data;
    o.ca_pem_len = (uint32_t)ca->len;
  }
  return iocp_connect_tls(r->srv, "127.0.0.1", g_port, &o, id);
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
  if (ts_check(data, len, 5, b->got) != len) b->bad = 1;
  b->got += len;
}

static void test_connect_verified_echo(void **state) {
  rec_hooks hooks;
  rec_server *r;
  bulk b;
  iocp_conn_id id;
  iocp_tls_info info;
  uint8_t *buf = malloc(STEP);
  uint64_t off;
  (void)state;
  memset(&hooks, 0, sizeof(hooks));
  hooks.on_data = hook_check;
  memset(&b, 0, sizeof(b));
  r = rec_start(REC_HANDLE_PEER_CLOSE, NULL, &hooks);
  r->user = &b;
  assert_int_equal(outbound(r, "localhost", &g_rsa_pem, 0, &id), IOCP_OK);
  assert_int_equal(rec_wait_connect(r, 1), id);
  info.size = sizeof(info);
  assert_int_equal(iocp_tls_get_info(r->srv, id, &info), IOCP_OK);
  assert_int_equal(info.version, IOCP_TLS_1_2);
  for (off = 0; off < BULK; off += STEP) {
    ts_fill(buf, STEP, 5, off);
    /* The queue limit (8 MiB) holds the whole megabyte. */
    assert_int_equal(iocp_send(r->srv, id, buf, STEP), IOCP_OK);
  }
  assert_int_equal(ts_counter_wait(r->bytes_in, BULK, TS_TIMEOUT_MS), 0);
  assert_false(b.bad);
  /* Our close_notify, then the peer's: a graceful end. */
  assert_int_equal(iocp_shutdown(r->srv, id), IOCP_OK);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  if (ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]) != 1) {
    print_error("ended with reason %d\n", rec_reason(r, id));
    fail();
  }
  assert_int_equal(ts_stats(r->srv).tls_handshakes, 1);
  rec_stop(r);
  free(buf);
}

static void test_connect_refused_and_unverified(void **state) {
  rec_server *r;
  iocp_conn_id id;
  (void)state;
  r = rec_start(REC_ECHO, NULL, NULL);
  /* Not issued by the given CA; not for this name. */
  assert_int_equal(outbound(r, "localhost", &g_other_pem, 0, &id), IOCP_OK);
  assert_int_equal(outbound(r, "example.org", &g_rsa_pem, 0, &id), IOCP_OK);
  assert_int_equal(TS_WAIT_STAT(r->srv, tls_handshake_failures, 2), 0);
  assert_int_equal(ts_counter_get(r->connects), 0);
  /* Verification off: any certificate. */
  assert_int_equal(outbound(r, "localhost", &g_other_pem, 1, &id), IOCP_OK);
  assert_int_equal(rec_wait_connect(r, 1), id);
  assert_int_equal(ts_stats(r->srv).tls_handshakes, 1);
  rec_stop(r);
}

/* ---- TLS 1.3 and ALPN ------------------------------------------------------------------ */

static int outbound_alpn(rec_server *r, uint16_t port, uint32_t min_version, const char *alpn,
                         iocp_conn_id *id) {
  iocp_tls_client o;
  memset(&o, 0, sizeof(o));
  o.size = sizeof(o);
  o.server_name = "localhost";
  o.ca_pem = g_rsa_pem.data;
  o.ca_pem_len = (uint32_t)g_rsa_pem.len;
  o.min_version = min_version;
  o.alpn = alpn;
  o.handshake_timeout_ms = TS_TIMEOUT_MS;
  return iocp_connect_tls(r->srv, "127.0.0.1", port, &o, id);
}

/* One connection: its ALPN choice and protocol, a few bytes echoed (after
 * a TLS 1.3 handshake the peer's session tickets come first), and a
 * graceful close both ways. */
static void alpn_case(const char *offer, const char *expect) {
  rec_server *r = rec_start(REC_HANDLE_PEER_CLOSE, NULL, NULL);
  iocp_conn_id id;
  iocp_tls_info info;
  assert_int_equal(outbound_alpn(r, g_alpn_port, 0, offer, &id), IOCP_OK);
  assert_int_equal(rec_wait_connect(r, 1), id);
  memset(&info, 0, sizeof(info));
  info.size = sizeof(info);
  assert_int_equal(iocp_tls_get_info(r->srv, id, &info), IOCP_OK);
  assert_string_equal(info.alpn, expect);
  assert_int_equal(info.version, g_tls13 ? IOCP_TLS_1_3 : IOCP_TLS_1_2);
  assert_int_equal(iocp_send(r->srv, id, "ping", 4), IOCP_OK);
  assert_int_equal(ts_counter_wait(r->bytes_in, 4, TS_TIMEOUT_MS), 0);
  assert_int_equal(iocp_shutdown(r->srv, id), IOCP_OK);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]), 1);
  rec_stop(r);
}

static void test_connect_alpn(void **state) {
  (void)state;
  alpn_case("x-unknown,http/1.1", "http/1.1");
  alpn_case("http/1.1,h2", "h2"); /* the server's preference */
  alpn_case("x-unknown", "");     /* no common protocol: none */
  alpn_case(NULL, "");
}

/* A client that wants TLS 1.3 only: served by a TLS 1.3 peer where the
 * engine speaks it; never connected to a TLS 1.2-only peer. */
static void test_connect_tls13_only(void **state) {
  rec_server *r = rec_start(REC_ECHO, NULL, NULL);
  iocp_conn_id id;
  (void)state;
  if (!g_tls13) {
    /* Refused at once: this system's TLS has no TLS 1.3. */
    assert_int_equal(outbound_alpn(r, g_alpn_port, IOCP_TLS_1_3, NULL, &id), IOCP_ETLS);
    rec_stop(r);
    return;
  }
  assert_int_equal(outbound_alpn(r, g_port, IOCP_TLS_1_3, NULL, &id), IOCP_OK);
  assert_int_equal(TS_WAIT_STAT(r->srv, tls_handshake_failures, 1), 0);
  assert_int_equal(outbound_alpn(r, g_alpn_port, IOCP_TLS_1_3, NULL, &id), IOCP_OK);
  assert_int_equal(rec_wait_connect(r, 1), id);
  {
    iocp_tls_info info;
    memset(&info, 0, sizeof(info));
    info.size = sizeof(info);
    assert_int_equal(iocp_tls_get_info(r->srv, id, &info), IOCP_OK);
    assert_int_equal(info.version, IOCP_TLS_1_3);
  }
  assert_int_equal(ts_counter_get(r->connects), 1);
  rec_stop(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_identity),
      cmocka_unit_test(test_create_unfit_identity),
      cmocka_unit_test(test_connect_verified_echo),
      cmocka_unit_test(test_connect_refused_and_unverified),
      cmocka_unit_test(test_connect_alpn),
      cmocka_unit_test(test_connect_tls13_only),
  };
  const char *port = getenv("IOCP_TLS_PEER_PORT");
  const char *alpn_port = getenv("IOCP_TLS_PEER_ALPN_PORT");
  const char *tls13 = getenv("IOCP_TLS_EXPECT_13");
  ts_net_init();
  assert_non_null(port);
  assert_non_null(alpn_port);
  g_port = (uint16_t)atoi(port);
  g_alpn_port = (uint16_t)atoi(alpn_port);
  g_tls13 = tls13 != NULL && strcmp(tls13, "1") == 0;
  g_rsa = load("rsa.p12");
  g_nokey = load("nokey.p12");
  g_mismatch = load("mismatch.p12");
  g_keyenc = load("keyenc.p12");
  g_clientauth = load("clientauth.p12");
  g_serverauth = load("serverauth.p12");
  g_rsa_pem = load("rsa.pem");
  g_other_pem = load("other.pem");
  return cmocka_run_group_tests(tests, NULL, NULL);
}
