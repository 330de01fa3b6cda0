/* TLS (Linux, OpenSSL as the test's client): the identity checks of
 * iocp_create, handshakes at TLS 1.2 and 1.3 with RSA and ECDSA, plaintext
 * echoed byte for byte, close_notify both ways, a truncated stream, peers
 * that are not TLS or stall, old protocol versions, iocp_connect_tls with and
 * without verification, many handshakes at once, a slow reader behind the
 * queue limit, and destroy or a graceful stop among handshakes.
 *
 * The certificates are made at build time (support/make_certs.sh) in the
 * folder named by IOCP_TEST_CERTS. With IOCP_TEST_DELIVERY=queue every
 * recording server runs in queue mode. */
#include "tsupport.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* ---- Files and identities -------------------------------------------------- */

typedef ts_blob blob;

static blob load(const char *name) { return ts_load_file("IOCP_TEST_CERTS", name); }

static blob g_rsa, g_ecdsa, g_nokey, g_mismatch, g_keyenc, g_ecdsa_keyenc, g_clientauth,
    g_serverauth, g_rsa_pem, g_ecdsa_pem, g_other_pem;

static void tls_config(iocp_config *cfg, const blob *p12) {
  iocp_config_init(cfg, sizeof(*cfg));
  cfg->tls_pkcs12 = p12->data;
  cfg->tls_pkcs12_len = (uint32_t)p12->len;
  cfg->tls_password = "secret";
}

/* ---- An OpenSSL client on a blocking socket ----------------------------------- */

typedef struct client {
  ts_sock sock;
  SSL_CTX *ctx;
  SSL *ssl;
} client;

/* Connects and completes a handshake at exactly `version` (0: any), trusting
 * `ca`; returns 0, or -1 when the handshake failed (the client is still
 * filled so the caller can close it). */
static int client_open_alpn(client *k, uint16_t port, int version, const blob *ca,
                            const char *alpn) {
  memset(k, 0, sizeof(*k));
  k->ctx = SSL_CTX_new(TLS_client_method());
  assert_non_null(k->ctx);
  if (version != 0) {
    SSL_CTX_set_min_proto_version(k->ctx, version);
    SSL_CTX_set_max_proto_version(k->ctx, version);
    if (version < TLS1_2_VERSION) SSL_CTX_set_security_level(k->ctx, 0);
  }
  if (ca != NULL) {
    BIO *b = BIO_new_mem_buf(ca->data, (int)ca->len);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(k->ctx), x);
    X509_free(x);
    BIO_free(b);
    SSL_CTX_set_verify(k->ctx, SSL_VERIFY_PEER, NULL);
  }
  k->sock = ts_connect(port);
  assert_true(k->sock != TS_BAD_SOCK);
  k->ssl = SSL_new(k->ctx);
  if (alpn != NULL) {
    unsigned char wire[64];
    size_t n = strlen(alpn);
    wire[0] = (unsigned char)n;
    memcpy(wire + 1, alpn, n);
    SSL_set_alpn_protos(k->ssl, wire, (unsigned)n + 1);
  }
  SSL_set_fd(k->ssl, (int)k->sock);
  SSL_set_tlsext_host_name(k->ssl, "localhost");
  if (ca != NULL) SSL_set1_host(k->ssl, "localhost");
  ERR_clear_error();
  return SSL_connect(k->ssl) == 1 ? 0 : -1;
}

static int client_open(client *k, uint16_t port, int version, const blob *ca) {
  return client_open_alpn(k, port, version, ca, NULL);
}

static void client_close(client *k) {
  SSL_free(k->ssl);
  SSL_CTX_free(k->ctx);
  ts_close(k->sock);
  ERR_clear_error();
}

static int client_write(client *k, const void *data, size_t len) {
  size_t done;
  while (len > 0) {
    if (SSL_write_ex(k->ssl, data, len, &done) != 1) return -1;
    data = (const uint8_t *)data + done;
    len -= done;
  }
  return 0;
}

static int client_read_exact(client *k, void *buf, size_t len) {
  size_t got;
  while (len > 0) {
    if (SSL_read_ex(k->ssl, buf, len, &got) != 1) return -1;
    buf = (uint8_t *)buf + got;
    len -= got;
  }
  return 0;
}

/* After the peer's close_notify SSL_read reports ZERO_RETURN. */
static int client_read_close_notify(client *k) {
  uint8_t b[16];
  size_t got;
  int r = SSL_read_ex(k->ssl, b, sizeof(b), &got);
  return r == 0 && SSL_get_error(k->ssl, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

/* ---- iocp_create refuses a bad identity ------------------------------------------- */

static void test_create_refuses_bad_identity(void **state) {
  ts_log_rec log;
  blob junk = {(uint8_t *)"this is not a PKCS#12 blob", 26};
  (void)state;
  ts_tls_expect_refused(&g_rsa, "wrong", IOCP_EPASSWORD, "password");
  ts_tls_expect_refused(&g_nokey, "secret", IOCP_ENOKEY, NULL);
  ts_tls_expect_refused(&junk, "secret", IOCP_EPKCS12, NULL);
  /* TLS 1.0 and 1.1 cannot be asked for. */
  assert_int_equal(ts_tls_create_rc(&g_rsa, "secret", 0x0301, &log), IOCP_EINVAL);
  assert_int_equal(ts_tls_create_rc(&g_rsa, "secret", 0x0302, &log), IOCP_EINVAL);
  assert_int_equal(ts_tls_create_rc(&g_rsa, "secret", IOCP_TLS_1_3, &log), IOCP_OK);
  assert_int_equal(ts_tls_create_rc(&g_ecdsa, "secret", 0, &log), IOCP_OK);
  assert_string_equal(iocp_strerror(IOCP_EPASSWORD), "wrong PKCS#12 password");
}

/* An identity whose key cannot sign this server's handshakes, or whose
 * certificate no verifying client accepts for a server, is refused before
 * anything listens, with on_log saying why. */
static void test_create_refuses_unfit_identity(void **state) {
  ts_log_rec log;
  (void)state;
  ts_tls_expect_refused(&g_mismatch, "secret", IOCP_ENOKEY, "matches no certificate");
  ts_tls_expect_refused(&g_keyenc, "secret", IOCP_EPKCS12, "digitalSignature");
  ts_tls_expect_refused(&g_ecdsa_keyenc, "secret", IOCP_EPKCS12, "digitalSignature");
  ts_tls_expect_refused(&g_clientauth, "secret", IOCP_EPKCS12, "serverAuth");
  /* Usages that allow a TLS server are fine. */
  assert_int_equal(ts_tls_create_rc(&g_serverauth, "secret", 0, &log), IOCP_OK);
  assert_int_equal(log.code, 0);
}

/* ---- Handshakes, info, echo --------------------------------------------------- */

typedef struct info_hook {
  iocp_tls_info info;
  int rc;
} info_hook;

static void hook_info(rec_server *r, iocp_conn_id id) {
  info_hook *h = r->user;
  h->info.size = sizeof(h->info);
  h->rc = iocp_tls_get_info(r->srv, id, &h->info);
}

static void handshake_case(const blob *p12, const blob *ca, int version, const char *alpn_srv,
                           const char *alpn_cli, const char *alpn_expect) {
  iocp_config cfg;
  rec_hooks hooks;
  info_hook h;
  rec_server *r;
  client k;
  char buf[5];

  tls_config(&cfg, p12);
  cfg.tls_alpn = alpn_srv;
  memset(&hooks, 0, sizeof(hooks));
  hooks.on_connect = hook_info;
  memset(&h, 0, sizeof(h));
  r = rec_start(REC_ECHO, &cfg, &hooks);
  r->user = &h;
  assert_int_equal(client_open_alpn(&k, r->port, version, ca, alpn_cli), 0);
  assert_int_equal(SSL_version(k.ssl), version);
  assert_true(rec_wait_connect(r, 1) != 0);
  assert_int_equal(client_write(&k, "hello", 5), 0);
  assert_int_equal(client_read_exact(&k, buf, 5), 0);
  assert_memory_equal(buf, "hello", 5);
  /* What the server's on_connect read matches what the client got. */
  assert_int_equal(h.rc, IOCP_OK);
  assert_int_equal(h.info.version, (uint32_t)version);
  assert_string_equal(h.info.cipher, SSL_CIPHER_standard_name(SSL_get_current_cipher(k.ssl)));
  assert_string_equal(h.info.alpn, alpn_expect);
  /* The client's close_notify is the peer's close: the default answers
   * with its own, then FIN. */
  assert_int_equal(SSL_shutdown(k.ssl), 0);
  assert_int_equal(client_read_close_notify(&k), 0);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]), 1);
  {
    iocp_statistics st = ts_stats(r->srv);
    assert_int_equal(st.tls_handshakes, 1);
    assert_int_equal(st.connections_accepted, 1);
    assert_int_equal(st.bytes_received, 5);
    assert_int_equal(st.bytes_sent, 5);
  }
  client_close(&k);
  rec_stop(r);
}

/* One connection of a returning client: offers `sess` (NULL: none), echoes
 * a byte (which brings a TLS 1.3 ticket in), returns whether the session
 * was resumed and, in *out, the session to offer next time. */
static int resume_round(SSL_CTX *ctx, uint16_t port, SSL_SESSION *sess, SSL_SESSION **out) {
  ts_sock sock = ts_connect(port);
  SSL *ssl = SSL_new(ctx);
  char c = 'x';
  int reused;
  assert_true(sock != TS_BAD_SOCK);
  SSL_set_fd(ssl, (int)sock);
  SSL_set_tlsext_host_name(ssl, "localhost");
  if (sess != NULL) SSL_set_session(ssl, sess);
  assert_int_equal(SSL_connect(ssl), 1);
  assert_int_equal(SSL_write(ssl, &c, 1), 1);
  assert_int_equal(SSL_read(ssl, &c, 1), 1);
  reused = SSL_session_reused(ssl);
  *out = SSL_get1_session(ssl);
  SSL_shutdown(ssl);
  SSL_free(ssl);
  ts_close(sock);
  return reused;
}

/* A returning client resumes its session, with a ticket and (TLS 1.2)
 * with the session ID alone, as clients that send no ticket do. */
static void test_resumption(void **state) {
  static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
  iocp_config cfg;
  rec_server *r;
  size_t v;
  int no_ticket;
  (void)state;
  tls_config(&cfg, &g_rsa);
  r = rec_start(REC_ECHO, &cfg, NULL);
  for (v = 0; v < 2; v++) {
    for (no_ticket = 0; no_ticket < 2; no_ticket++) {
      SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
      SSL_SESSION *first = NULL, *second = NULL;
      assert_non_null(ctx);
      SSL_CTX_set_min_proto_version(ctx, versions[v]);
      SSL_CTX_set_max_proto_version(ctx, versions[v]);
      if (no_ticket) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
      assert_int_equal(resume_round(ctx, r->port, NULL, &first), 0);
      assert_non_null(first);
      assert_int_equal(resume_round(ctx, r->port, first, &second), 1);
      SSL_SESSION_free(first);
      SSL_SESSION_free(second);
      SSL_CTX_free(ctx);
    }
  }
  rec_stop(r);
}

static void test_handshake_rsa_tls12(void **state) {
  (void)state;
  handshake_case(&g_rsa, &g_rsa_pem, TLS1_2_VERSION, NULL, NULL, "");
}
static void test_handshake_rsa_tls13(void **state) {
  (void)state;
  handshake_case(&g_rsa, &g_rsa_pem, TLS1_3_VERSION, "h2,http/1.1", "http/1.1", "http/1.1");
}
static void test_handshake_ecdsa_tls12(void **state) {
  (void)state;
  handshake_case(&g_ecdsa, &g_ecdsa_pem, TLS1_2_VERSION, "h2,http/1.1", "h2", "h2");
}
static void test_handshake_ecdsa_tls13(void **state) {
  (void)state;
  /* No protocol in common: the handshake goes on without ALPN. */
  handshake_case(&g_ecdsa, &g_ecdsa_pem, TLS1_3_VERSION, "h2", "spdy/3", "");
}

/* Old protocol versions are refused, counted, and the server keeps serving. */
static void test_old_versions_refused(void **state) {
  iocp_config cfg;
  rec_server *r;
  client k;
  (void)state;
  tls_config(&cfg, &g_rsa);
  r = rec_start(REC_ECHO, &cfg, NULL);
  assert_int_equal(client_open(&k, r->port, TLS1_VERSION, NULL), -1);
  client_close(&k);
  assert_int_equal(client_open(&k, r->port, TLS1_1_VERSION, NULL), -1);
  client_close(&k);
  assert_int_equal(TS_WAIT_STAT(r->srv, tls_handshake_failures, 2), 0);
  /* TLS 1.3 only: a 1.2 client is refused too. */
  rec_stop(r);
  tls_config(&cfg, &g_rsa);
  cfg.tls_min_version = IOCP_TLS_1_3;
  r = rec_start(REC_ECHO, &cfg, NULL);
  assert_int_equal(client_open(&k, r->port, TLS1_2_VERSION, NULL), -1);
  client_close(&k);
  assert_int_equal(client_open(&k, r->port, TLS1_3_VERSION, NULL), 0);
  client_close(&k);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_stats(r->srv).tls_handshake_failures, 1);
  assert_int_equal(ts_counter_get(r->connects), 1);
  rec_stop(r);
}

/* A TLS 1.2 client asking to renegotiate is refused; the connection goes
 * on (or ends) without a second handshake. */
static void test_renegotiation_refused(void **state) {
  iocp_config cfg;
  rec_server *r;
  client k;
  (void)state;
  tls_config(&cfg, &g_rsa);
  r = rec_start(REC_ECHO, &cfg, NULL);
  assert_int_equal(client_open(&k, r->port, TLS1_2_VERSION, NULL), 0);
  assert_int_equal(SSL_renegotiate(k.ssl), 1);
  assert_true(SSL_do_handshake(k.ssl) != 1);
  client_close(&k);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_stats(r->srv).tls_handshakes, 1);
  rec_stop(r);
}

/* ---- Bulk echo: 1 MiB, and 100 x 64 KiB -------------------------------------- */

typedef struct reader_args {
  client *k;
  size_t total;
  uint32_t stream;
  int failed;
} reader_args;

static void reader(void *arg) {
  reader_args *a = arg;
  uint8_t *buf = malloc(65536);
  size_t off = 0;
  while (off < a->total) {
    size_t n = a->total - off < 65536 ? a->total - off : 65536, got;
    if (SSL_read_ex(a->k->ssl, buf, n, &got) != 1 || ts_check(buf, got, a->stream, off) != got) {
      a->failed = 1;
      break;
    }
    off += got;
  }
  free(buf);
}

static void echo_bulk(size_t step, int count, int version) {
  iocp_config cfg;
  rec_server *r;
  client k;
  reader_args a;
  ts_thread *t;
  uint8_t *buf = malloc(step);
  int i;

  tls_config(&cfg, &g_ecdsa);
  r = rec_start(REC_ECHO, &cfg, NULL);
  assert_int_equal(client_open(&k, r->port, version, NULL), 0);
  /* One SSL object, two threads: OpenSSL allows a reader and a writer at
   * once only without renegotiation, which the server refuses anyway. Keep
   * them apart by the socket's direction: SSL_read and SSL_write touch
   * different record state. */
  a.k = &k;
  a.total = step * (size_t)count;
  a.stream = 7;
  a.failed = 0;
  t = ts_thread_start(reader, &a);
  for (i = 0; i < count; i++) {
    ts_fill(buf, step, 7, (uint64_t)i * step);
    assert_int_equal(client_write(&k, buf, step), 0);
  }
  ts_thread_join(t);
  assert_false(a.failed);
  assert_int_equal(ts_stats(r->srv).bytes_received, a.total);
  assert_int_equal(SSL_shutdown(k.ssl), 0);
  assert_int_equal(client_read_close_notify(&k), 0);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]), 1);
  client_close(&k);
  rec_stop(r);
  free(buf);
}

static void test_echo_1mib(void **state) {
  (void)state;
  echo_bulk(1u << 20, 1, TLS1_3_VERSION);
}
static void test_echo_100x64k(void **state) {
  (void)state;
  echo_bulk(64u << 10, 100, TLS1_2_VERSION);
}

/* ---- Half-close both ways, truncation -------------------------------------------- */

/* The server shuts down first (on "bye"): its close_notify reaches the
 * client, which may still send; the client's close_notify ends it. */
static void hook_bye(rec_server *r, iocp_conn_id id, const uint8_t *data, size_t len) {
  if (len >= 3 && memcmp(data + len - 3, "bye", 3) == 0 &&
      (iocp_send(r->srv, id, data, len) != IOCP_OK || iocp_shutdown(r->srv, id) != IOCP_OK))
    rec_violation(r);
}

static void test_server_half_close(void **state) {
  iocp_config cfg;
  rec_hooks hooks;
  rec_server *r;
  client k;
  char buf[3];
  (void)state;
  tls_config(&cfg, &g_rsa);
  memset(&hooks, 0, sizeof(hooks));
  hooks.on_data = hook_bye;
  r = rec_start(REC_HANDLE_PEER_CLOSE, &cfg, &hooks);
  assert_int_equal(client_open(&k, r->port, TLS1_3_VERSION, NULL), 0);
  assert_int_equal(client_write(&k, "bye", 3), 0);
  assert_int_equal(client_read_exact(&k, buf, 3), 0); /* the echo, then the close */
  assert_int_equal(client_read_close_notify(&k), 0);
  /* The client still sends: the server still receives. */
  assert_int_equal(client_write(&k, "more", 4), 0);
  assert_int_equal(SSL_shutdown(k.ssl), 1); /* both close_notify now */
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]), 1);
  /* As over plain TCP: the peer's close after ours ends the connection
   * without on_peer_closed. */
  assert_int_equal(ts_counter_get(r->peer_closed), 0);
  assert_int_equal(ts_counter_get(r->bytes_in), 7);
  client_close(&k);
  rec_stop(r);
}

/* The client shuts down first: on_peer_closed, then the server's reply and
 * its close_notify. */
static void test_client_half_close(void **state) {
  iocp_config cfg;
  rec_server *r;
  client k;
  char buf[4];
  (void)state;
  tls_config(&cfg, &g_rsa);
  r = rec_start(REC_ECHO | REC_HANDLE_PEER_CLOSE, &cfg, NULL);
  assert_int_equal(client_open(&k, r->port, TLS1_2_VERSION, NULL), 0);
  assert_int_equal(client_write(&k, "ping", 4), 0);
  assert_int_equal(SSL_shutdown(k.ssl), 0);
  assert_int_equal(client_read_exact(&k, buf, 4), 0);
  assert_memory_equal(buf, "ping", 4);
  assert_int_equal(client_read_close_notify(&k), 0);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->peer_closed), 1);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]), 1);
  client_close(&k);
  rec_stop(r);
}

/* A FIN without close_notify is a truncated stream. */
static void test_truncated(void **state) {
  iocp_config cfg;
  rec_server *r;
  client k;
  char buf[4];
  (void)state;
  tls_config(&cfg, &g_ecdsa);
  r = rec_start(REC_ECHO | REC_HANDLE_PEER_CLOSE, &cfg, NULL);
  assert_int_equal(client_open(&k, r->port, TLS1_3_VERSION, NULL), 0);
  assert_int_equal(client_write(&k, "ping", 4), 0);
  assert_int_equal(client_read_exact(&k, buf, 4), 0);
  ts_shutdown_send(k.sock);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_TLS_TRUNCATED]), 1);
  assert_int_equal(ts_counter_get(r->peer_closed), 0);
  client_close(&k);
  rec_stop(r);
}

/* ---- Peers that are not TLS, or stall ---------------------------------------------- */

/* A ClientHello as a real client sends it (captured from a memory BIO). */
static size_t client_hello(uint8_t *out, size_t cap) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL *ssl = SSL_new(ctx);
  BIO *in = BIO_new(BIO_s_mem()), *o = BIO_new(BIO_s_mem());
  int n;
  SSL_set_bio(ssl, in, o);
  SSL_connect(ssl);
  n = BIO_read(o, out, (int)cap);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  assert_true(n > 100);
  return (size_t)n;
}

/* Each bad peer is cut off without a callback, counted, and the server
 * still serves TLS afterwards. */
static void test_bad_peers(void **state) {
  iocp_config cfg;
  rec_server *r;
  client k;
  uint8_t hello[2048], end[64];
  size_t n = client_hello(hello, sizeof(hello));
  (void)state;
  tls_config(&cfg, &g_rsa);
  cfg.tls_handshake_timeout_ms = 200;
  r = rec_start(REC_ECHO, &cfg, NULL);

  ts_tls_bad_peers(r, hello, n);
  /* Nothing reached the program; the server still serves. */
  assert_int_equal(ts_counter_get(r->connects), 0);
  assert_int_equal(client_open(&k, r->port, 0, &g_rsa_pem), 0);
  assert_int_equal(client_write(&k, "ok", 2), 0);
  assert_int_equal(client_read_exact(&k, end, 2), 0);
  client_close(&k);
  {
    iocp_statistics st = ts_stats(r->srv);
    assert_int_equal(st.tls_handshake_failures, 3);
    assert_int_equal(st.tls_handshake_timeouts, 1);
  }
  rec_stop(r);
}

/* A failed handshake is an on_log line (IOCP_LOG_WARN) saying why. */
typedef struct warn_rec {
  ts_counter *n;
  int code;
  char text[200];
} warn_rec;

static void IOCP_CALL on_log_warn(iocp_server *s, void *user, int level, int code,
                                  const char *text) {
  warn_rec *w = user;
  (void)s;
  if (level != IOCP_LOG_WARN || ts_counter_get(w->n) > 0) return;
  w->code = code;
  snprintf(w->text, sizeof(w->text), "%s", text);
  ts_counter_add(w->n, 1);
}

static void test_failed_handshake_logged(void **state) {
  iocp_config cfg;
  iocp_callbacks cb;
  iocp_server *s;
  warn_rec w;
  ts_sock a;
  uint8_t end[64];
  size_t got;
  (void)state;
  memset(&w, 0, sizeof(w));
  w.n = ts_counter_new();
  tls_config(&cfg, &g_rsa);
  memset(&cb, 0, sizeof(cb));
  cb.size = sizeof(cb);
  cb.on_log = on_log_warn;
  assert_int_equal(iocp_create(&cfg, &cb, &w, &s), IOCP_OK);
  a = ts_connect(iocp_port(s));
  assert_int_equal(ts_send_all(a, "GET / HTTP/1.1\r\n\r\n", 18), TS_OK);
  assert_true(ts_recv_to_end(a, end, sizeof(end), &got) != TS_TIMEOUT);
  assert_int_equal(ts_counter_wait(w.n, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(w.code, IOCP_ETLS);
  assert_non_null(strstr(w.text, "TLS handshake with 127.0.0.1"));
  ts_close(a);
  iocp_destroy(s);
  ts_counter_free(w.n);
}

/* ---- iocp_connect_tls --------------------------------------------------------------- */

static int outbound(rec_server *client_side, uint16_t port, const char *name, const blob *ca,
                    uint32_t no_verify, iocp_conn_id *id) {
  iocp_tls_client o;
  memset(&o, 0, sizeof(o));
  o.size = sizeof(o);
  o.handshake_timeout_ms = TS_TIMEOUT_MS; /* a loaded machine is slow, not wrong */
  o.server_name = name;
  o.no_verify = no_verify;
  if (ca != NULL) {
    o.ca_pem = ca->data;
    o.ca_pem_len = (uint32_t)ca->len;
  }
  return iocp_connect_tls(client_side->srv, "127.0.0.1", port, &o, id);
}

/* How outbound attempts failed: by on_connect_failed's code. */
enum { FAIL_CERTVERIFY, FAIL_TLS, FAIL_TIMEDOUT, FAIL_OTHER, FAIL_KINDS };
static ts_counter *g_failed[FAIL_KINDS];

static void hook_failed(rec_server *r, iocp_conn_id id, int error) {
  (void)r;
  (void)id;
  ts_counter_add(g_failed[error == IOCP_ECERTVERIFY ? FAIL_CERTVERIFY
                          : error == IOCP_ETLS      ? FAIL_TLS
                          : error == IOCP_ETIMEDOUT ? FAIL_TIMEDOUT
                                                    : FAIL_OTHER],
                 1);
}

static void test_connect_tls(void **state) {
  iocp_config cfg;
  rec_server *srv, *cli;
  rec_hooks hooks;
  info_hook h;
  iocp_conn_id id;
  iocp_statistics st;
  (void)state;
  tls_config(&cfg, &g_rsa);
  srv = rec_start(REC_ECHO, &cfg, NULL);
  memset(&hooks, 0, sizeof(hooks));
  hooks.on_connect = hook_info;
  hooks.on_connect_failed = hook_failed;
  for (int k = 0; k < FAIL_KINDS; k++) g_failed[k] = ts_counter_new();
  memset(&h, 0, sizeof(h));
  cli = rec_start(0, NULL, &hooks);
  cli->user = &h;

  /* Verified against the given CA, by name and by address. */
  assert_int_equal(outbound(cli, srv->port, "localhost", &g_rsa_pem, 0, &id), IOCP_OK);
  assert_true(rec_wait_connect(cli, 1) == id);
  assert_int_equal(h.rc, IOCP_OK);
  assert_true(h.info.version == IOCP_TLS_1_3);
  assert_int_equal(iocp_send(cli->srv, id, "abc", 3), IOCP_OK);
  assert_int_equal(ts_counter_wait(cli->bytes_in, 3, TS_TIMEOUT_MS), 0);
  assert_int_equal(outbound(cli, srv->port, "127.0.0.1", &g_rsa_pem, 0, &id), IOCP_OK);
  assert_true(rec_wait_connect(cli, 2) == id);
  /* Verification off: any certificate. */
  assert_int_equal(outbound(cli, srv->port, "localhost", &g_other_pem, 1, &id), IOCP_OK);
  assert_true(rec_wait_connect(cli, 3) == id);
  /* Not trusted, or not for this name: on_connect_failed(IOCP_ECERTVERIFY). */
  assert_int_equal(outbound(cli, srv->port, "localhost", &g_other_pem, 0, &id), IOCP_OK);
  assert_int_equal(outbound(cli, srv->port, "example.org", &g_rsa_pem, 0, &id), IOCP_OK);
  assert_int_equal(TS_WAIT_STAT(cli->srv, tls_handshake_failures, 2), 0);
  assert_int_equal(ts_counter_wait(g_failed[FAIL_CERTVERIFY], 2, TS_TIMEOUT_MS), 0);
  /* A server that is not TLS at all: it echoes the ClientHello, or says
   * nothing until the handshake's time limit. */
  {
    rec_server *plain = rec_start(REC_ECHO, NULL, NULL), *mute = rec_start(0, NULL, NULL);
    iocp_tls_client o;
    assert_int_equal(outbound(cli, plain->port, "localhost", &g_rsa_pem, 0, &id), IOCP_OK);
    assert_int_equal(TS_WAIT_STAT(cli->srv, tls_handshake_failures, 3), 0);
    assert_int_equal(ts_counter_wait(g_failed[FAIL_TLS], 1, TS_TIMEOUT_MS), 0);
    memset(&o, 0, sizeof(o));
    o.size = sizeof(o);
    o.no_verify = 1;
    o.handshake_timeout_ms = 100;
    assert_int_equal(iocp_connect_tls(cli->srv, "127.0.0.1", mute->port, &o, &id), IOCP_OK);
    assert_int_equal(TS_WAIT_STAT(cli->srv, tls_handshake_timeouts, 1), 0);
    /* A time-out is a time-out, as for a connect that gets no answer. */
    assert_int_equal(ts_counter_wait(g_failed[FAIL_TIMEDOUT], 1, TS_TIMEOUT_MS), 0);
    rec_stop(plain);
    rec_stop(mute);
  }
  st = ts_stats(cli->srv);
  assert_int_equal(st.tls_handshakes, 3);
  assert_int_equal(ts_counter_get(cli->connects), 3);
  /* Bad options. */
  {
    blob junk = {(uint8_t *)"not a certificate", 17};
    assert_int_equal(outbound(cli, srv->port, "localhost", &junk, 0, &id), IOCP_ETLS);
    assert_int_equal(id, 0);
  }
  /* A plain connection has no TLS info. */
  {
    iocp_tls_info info;
    info.size = sizeof(info);
    assert_int_equal(iocp_connect(cli->srv, "127.0.0.1", srv->port, &id), IOCP_OK);
    assert_int_equal(rec_wait_connect(cli, 4), id);
    assert_int_equal(iocp_tls_get_info(cli->srv, id, &info), IOCP_ENOTLS);
  }
  rec_stop(cli);
  rec_stop(srv);
  assert_int_equal(ts_counter_get(g_failed[FAIL_CERTVERIFY]), 2);
  assert_int_equal(ts_counter_get(g_failed[FAIL_TLS]), 1);
  assert_int_equal(ts_counter_get(g_failed[FAIL_TIMEDOUT]), 1);
  assert_int_equal(ts_counter_get(g_failed[FAIL_OTHER]), 0);
  for (int k = 0; k < FAIL_KINDS; k++) ts_counter_free(g_failed[k]);
}

/* ---- Many handshakes at once ------------------------------------------------------ */

/* 2,000 at once; fewer in sanitizer builds (several times slower), where
 * the point is the checks, not the count. */
#ifndef MANY
#  define MANY 2000
#endif

static void test_many_handshakes(void **state) {
  iocp_config cfg;
  rec_server *srv, *cli;
  iocp_conn_id id;
  int i;
  (void)state;
  tls_config(&cfg, &g_ecdsa);
  cfg.tls_handshake_timeout_ms = TS_TIMEOUT_MS;
  srv = rec_start(0, &cfg, NULL);
  cli = rec_start(0, NULL, NULL);
  for (i = 0; i < MANY; i++)
    assert_int_equal(outbound(cli, srv->port, "localhost", &g_ecdsa_pem, 0, &id), IOCP_OK);
  assert_int_equal(ts_tls_wait_handshakes(srv, cli, MANY), 0);
  assert_int_equal(ts_stats(srv->srv).tls_handshakes, MANY);
  assert_int_equal(ts_stats(cli->srv).tls_handshakes, MANY);
  rec_stop(cli);
  rec_stop(srv);
}

/* ---- A slow reader behind the queue limit ----------------------------------------- */

#define SLOW_LIMIT (256u << 10)

static void test_slow_reader(void **state) {
  iocp_config cfg;
  rec_hooks hooks;
  rec_server *r;
  ts_flood st;
  client k;
  reader_args a;
  (void)state;
  tls_config(&cfg, &g_ecdsa);
  cfg.max_send_queue = SLOW_LIMIT;
  memset(&hooks, 0, sizeof(hooks));
  hooks.on_data = ts_flood_on_data;
  memset(&st, 0, sizeof(st));
  st.done = ts_counter_new();
  r = rec_start(0, &cfg, &hooks);
  r->user = &st;
  assert_int_equal(client_open(&k, r->port, TLS1_3_VERSION, NULL), 0);
  assert_int_equal(client_write(&k, "go", 2), 0);
  assert_int_equal(ts_counter_wait(st.done, 1, TS_TIMEOUT_MS), 0);
  /* The queue counts plaintext and never passed the limit. */
  assert_true(st.max_queued <= SLOW_LIMIT);
  assert_true(st.sent >= SLOW_LIMIT - TS_FLOOD_CHUNK);
  assert_true(st.sent < 64u << 20);
  a.k = &k;
  a.total = (size_t)st.sent;
  a.stream = 3;
  a.failed = 0;
  reader(&a);
  assert_false(a.failed);
  client_close(&k);
  rec_stop(r);
  ts_counter_free(st.done);
}

/* ---- Destroy and graceful stop among handshakes --------------------------------------- */

static void among_handshakes(int graceful) {
  iocp_config cfg;
  rec_server *r;
  ts_sock raw[20];
  client k[5];
  uint8_t hello[2048];
  size_t n = client_hello(hello, sizeof(hello));
  int i;
  tls_config(&cfg, &g_rsa);
  r = rec_start(REC_ECHO, &cfg, NULL);
  for (i = 0; i < 5; i++) assert_int_equal(client_open(&k[i], r->port, 0, NULL), 0);
  for (i = 0; i < 20; i++) {
    raw[i] = ts_connect(r->port);
    assert_int_equal(ts_send_all(raw[i], hello, i % 2 ? n / 2 : 0), TS_OK);
  }
  assert_int_equal(ts_counter_wait(r->connects, 5, TS_TIMEOUT_MS), 0);
  if (graceful) {
    /* The kept connections half-close; the handshakes just end. The
     * clients answer the close_notify. */
    uint64_t t0 = ts_now_ms();
    for (i = 0; i < 5; i++) SSL_shutdown(k[i].ssl);
    assert_int_equal(iocp_stop_graceful(r->srv, 5000), 0);
    assert_true(ts_now_ms() - t0 < 4000);
    assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]), 5);
  }
  rec_stop(r); /* destroy; every kept connection had exactly one disconnect */
  for (i = 0; i < 5; i++) client_close(&k[i]);
  for (i = 0; i < 20; i++) ts_close(raw[i]);
}

static void test_destroy_among_handshakes(void **state) {
  (void)state;
  among_handshakes(0);
}
static void test_stop_among_handshakes(void **state) {
  (void)state;
  among_handshakes(1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_refuses_bad_identity),
      cmocka_unit_test(test_create_refuses_unfit_identity),
      cmocka_unit_test(test_resumption),
      cmocka_unit_test(test_handshake_rsa_tls12),
      cmocka_unit_test(test_handshake_rsa_tls13),
      cmocka_unit_test(test_handshake_ecdsa_tls12),
      cmocka_unit_test(test_handshake_ecdsa_tls13),
      cmocka_unit_test(test_old_versions_refused),
      cmocka_unit_test(test_renegotiation_refused),
      cmocka_unit_test(test_echo_1mib),
      cmocka_unit_test(test_echo_100x64k),
      cmocka_unit_test(test_server_half_close),
      cmocka_unit_test(test_client_half_close),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_bad_peers),
      cmocka_unit_test(test_failed_handshake_logged),
      cmocka_unit_test(test_connect_tls),
      cmocka_unit_test(test_many_handshakes),
      cmocka_unit_test(test_slow_reader),
      cmocka_unit_test(test_destroy_among_handshakes),
      cmocka_unit_test(test_stop_among_handshakes),
  };
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  ts_net_init();
  g_rsa = load("rsa.p12");
  g_ecdsa = load("ecdsa.p12");
  g_nokey = load("nokey.p12");
  g_mismatch = load("mismatch.p12");
  g_keyenc = load("keyenc.p12");
  g_ecdsa_keyenc = load("ecdsa-keyenc.p12");
  g_clientauth = load("clientauth.p12");
  g_serverauth = load("serverauth.p12");
  g_rsa_pem = load("rsa.pem");
  g_ecdsa_pem = load("ecdsa.pem");
  g_other_pem = load("other.pem");
  return cmocka_run_group_tests(tests, NULL, NULL);
}
