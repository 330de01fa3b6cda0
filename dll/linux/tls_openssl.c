/* The TLS sessions of core/tls.h on OpenSSL 3: one SSL object per
 * connection between two memory BIOs (received ciphertext in, ciphertext to
 * send out), so the library's own sockets, buffers and workers carry every
 * byte and OpenSSL never sees a socket. */
#include "../core/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct iocp__tls_cred {
  SSL_CTX *ctx;
  unsigned char alpn[256]; /* wire format: length-prefixed names */
  size_t alpn_len;
};

struct iocp__tls {
  SSL *ssl;
  BIO *in, *out;
  SSL_CTX *own_ctx; /* a client's */
};

static void say(char *why, size_t cap, const char *what) {
  unsigned long e = ERR_peek_last_error();
  if (why == NULL || cap == 0) return;
  if (e != 0) {
    char detail[200];
    ERR_error_string_n(e, detail, sizeof(detail));
    snprintf(why, cap, "%s (%s)", what, detail);
  } else {
    snprintf(why, cap, "%s", what);
  }
}

/* "h2,http/1.1" -> "\2h2\10http/1.1"; 0, or -1 when a name is empty or
 * longer than 255 bytes, or the list does not fit. */
static int alpn_wire(const char *list, unsigned char *out, size_t cap, size_t *len) {
  size_t n = 0;
  const char *p = list;
  while (*p != '\0') {
    const char *end = strchr(p, ',');
    size_t k = end != NULL ? (size_t)(end - p) : strlen(p);
    if (k == 0 || k > 255 || n + 1 + k > cap) return -1;
    out[n++] = (unsigned char)k;
    memcpy(out + n, p, k);
    n += k;
    p += k;
    if (*p == ',') p++;
  }
  *len = n;
  return 0;
}

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  iocp__tls_cred *cred = arg;
  unsigned char *o = NULL;
  (void)ssl;
  if (SSL_select_next_proto(&o, outlen, cred->alpn, (unsigned int)cred->alpn_len, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK; /* no common protocol: go on without ALPN */
  *out = o;
  return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *new_ctx(const SSL_METHOD *method, uint32_t min_version) {
  SSL_CTX *ctx = SSL_CTX_new(method);
  if (ctx == NULL) return NULL;
  SSL_CTX_set_min_proto_version(ctx, min_version == IOCP_TLS_1_3 ? TLS1_3_VERSION
                                                                 : TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* Idle connections give their record buffers back. */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  return ctx;
}

int iocp__tls_cred_server(const void *p12, size_t p12_len, const char *password,
                          uint32_t min_version, const char *alpn, iocp__tls_cred **out,
                          char *why, size_t cap) {
  const unsigned char *p = p12;
  PKCS12 *pk = NULL;
  EVP_PKEY *key = NULL;
  X509 *cert = NULL;
  STACK_OF(X509) *chain = NULL;
  iocp__tls_cred *cred = NULL;
  const char *pw = password != NULL ? password : "";
  int rc = IOCP_OK, i;

  *out = NULL;
  ERR_clear_error();
  cred = calloc(1, sizeof(*cred));
  if (cred == NULL) return IOCP_ENOMEM;
  if (alpn != NULL && alpn_wire(alpn, cred->alpn, sizeof(cred->alpn), &cred->alpn_len) != 0) {
    say(why, cap, "bad ALPN list");
    rc = IOCP_EINVAL;
    goto done;
  }
  pk = d2i_PKCS12(NULL, &p, (long)p12_len);
  if (pk == NULL) {
    say(why, cap, "not a PKCS#12 blob");
    rc = IOCP_EPKCS12;
    goto done;
  }
  if (PKCS12_mac_present(pk) && !PKCS12_verify_mac(pk, pw, -1)) {
    say(why, cap, "wrong PKCS#12 password");
    rc = IOCP_EPASSWORD;
    goto done;
  }
  if (!PKCS12_parse(pk, pw, &key, &cert, &chain)) {
    say(why, cap, "PKCS#12 blob could not be read (password or algorithm)");
    rc = IOCP_EPASSWORD;
    goto done;
  }
  /* A blob without a key has its certificate among the extra ones. */
  if (key == NULL) {
    say(why, cap, "the PKCS#12 blob has no private key");
    rc = IOCP_ENOKEY;
    goto done;
  }
  if (cert == NULL) {
    say(why, cap, "no certificate in the PKCS#12 blob");
    rc = IOCP_EPKCS12;
    goto done;
  }
  cred->ctx = new_ctx(TLS_server_method(), min_version);
  if (cred->ctx == NULL) {
    say(why, cap, "SSL_CTX_new failed");
    rc = IOCP_ETLS;
    goto done;
  }
  if (SSL_CTX_use_certificate(cred->ctx, cert) != 1 ||
      SSL_CTX_use_PrivateKey(cred->ctx, key) != 1 ||
      SSL_CTX_check_private_key(cred->ctx) != 1) {
    say(why, cap, "the private key does not match the certificate");
    rc = IOCP_ENOKEY;
    goto done;
  }
  for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
    if (SSL_CTX_add1_chain_cert(cred->ctx, sk_X509_value(chain, i)) != 1) {
      say(why, cap, "chain certificate refused");
      rc = IOCP_ETLS;
      goto done;
    }
  }
  /* Resumption through stateless tickets only, at TLS 1.2 and 1.3 alike
   * (one ticket per full handshake, sealed with this context's keys): no
   * session cache to share across workers, no state that outlives a
   * connection, and a returning client skips the certificate's signature,
   * as SChannel's own cache lets it on Windows. */
  SSL_CTX_set_session_cache_mode(cred->ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(cred->ctx, 1);
  if (cred->alpn_len > 0) SSL_CTX_set_alpn_select_cb(cred->ctx, select_alpn, cred);
  *out = cred;
  cred = NULL;
done:
  if (cred != NULL) iocp__tls_cred_free(cred);
  EVP_PKEY_free(key);
  X509_free(cert);
  sk_X509_pop_free(chain, X509_free);
  PKCS12_free(pk);
  ERR_clear_error();
  return rc;
}

void iocp__tls_cred_free(iocp__tls_cred *cred) {
  if (cred == NULL) return;
  SSL_CTX_free(cred->ctx);
  free(cred);
}

static iocp__tls *wrap(SSL_CTX *ctx) {
  iocp__tls *t = calloc(1, sizeof(*t));
  if (t == NULL) return NULL;
  t->ssl = SSL_new(ctx);
  t->in = BIO_new(BIO_s_mem());
  t->out = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
    SSL_free(t->ssl);
    BIO_free(t->in);
    BIO_free(t->out);
    free(t);
    return NULL;
  }
  /* An empty input BIO means "wait for more", not end of stream. */
  BIO_set_mem_eof_return(t->in, -1);
  BIO_set_mem_eof_return(t->out, -1);
  SSL_set_bio(t->ssl, t->in, t->out);
  return t;
}

iocp__tls *iocp__tls_new_server(iocp__tls_cred *cred) {
  iocp__tls *t = wrap(cred->ctx);
  if (t != NULL) SSL_set_accept_state(t->ssl);
  return t;
}

/* Trust anchors from PEM text into the context's store; the count added. */
static int add_ca(SSL_CTX *ctx, const void *pem, size_t len) {
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  STACK_OF(X509_INFO) *infos;
  X509_STORE *store = SSL_CTX_get_cert_store(ctx);
  int i, added = 0;
  if (b == NULL) return 0;
  infos = PEM_X509_INFO_read_bio(b, NULL, NULL, NULL);
  BIO_free(b);
  if (infos == NULL) return 0;
  for (i = 0; i < sk_X509_INFO_num(infos); i++) {
    X509_INFO *xi = sk_X509_INFO_value(infos, i);
    if (xi->x509 != NULL && X509_STORE_add_cert(store, xi->x509) == 1) added++;
  }
  sk_X509_INFO_pop_free(infos, X509_INFO_free);
  return added;
}

static int is_ip(const char *name) {
  unsigned char buf[16];
  return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

int iocp__tls_new_client(const iocp_tls_client *o, iocp__tls **out, char *why, size_t cap) {
  SSL_CTX *ctx;
  iocp__tls *t = NULL;
  unsigned char alpn[256];
  size_t alpn_len = 0;
  int rc = IOCP_ETLS;

  *out = NULL;
  ERR_clear_error();
  ctx = new_ctx(TLS_client_method(), o->min_version);
  if (ctx == NULL) {
    say(why, cap, "SSL_CTX_new failed");
    return IOCP_ETLS;
  }
  if (o->alpn != NULL && alpn_wire(o->alpn, alpn, sizeof(alpn), &alpn_len) != 0) {
    say(why, cap, "bad ALPN list");
    rc = IOCP_EINVAL;
    goto done;
  }
  if (!o->no_verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (o->ca_pem != NULL) {
      if (add_ca(ctx, o->ca_pem, o->ca_pem_len) == 0) {
        say(why, cap, "no certificate in the CA text");
        goto done;
      }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      say(why, cap, "the system's trust store could not be loaded");
      goto done;
    }
  }
  t = wrap(ctx);
  if (t == NULL) {
    rc = IOCP_ENOMEM;
    goto done;
  }
  t->own_ctx = ctx;
  ctx = NULL;
  if (alpn_len > 0 && SSL_set_alpn_protos(t->ssl, alpn, (unsigned int)alpn_len) != 0) {
    say(why, cap, "ALPN refused");
    goto done;
  }
  if (o->server_name != NULL && o->server_name[0] != '\0') {
    if (is_ip(o->server_name)) {
      if (!o->no_verify &&
          X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), o->server_name) != 1) {
        say(why, cap, "bad server address");
        goto done;
      }
    } else {
      if (SSL_set_tlsext_host_name(t->ssl, o->server_name) != 1 ||
          (!o->no_verify && SSL_set1_host(t->ssl, o->server_name) != 1)) {
        say(why, cap, "bad server name");
        goto done;
      }
    }
  }
  SSL_set_connect_state(t->ssl);
  *out = t;
  t = NULL;
  rc = IOCP_OK;
done:
  if (t != NULL) iocp__tls_free(t);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return rc;
}

void iocp__tls_free(iocp__tls *t) {
  if (t == NULL) return;
  SSL_free(t->ssl); /* frees both BIOs */
  SSL_CTX_free(t->own_ctx);
  free(t);
}

int iocp__tls_input(iocp__tls *t, const uint8_t *data, size_t len) {
  while (len > 0) {
    int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
    int n = BIO_write(t->in, data, chunk);
    if (n <= 0) return IOCP_ENOMEM;
    data += n;
    len -= (size_t)n;
  }
  return IOCP_OK;
}

int iocp__tls_handshake(iocp__tls *t, char *why, size_t cap) {
  int r, err;
  ERR_clear_error();
  r = SSL_do_handshake(t->ssl);
  if (r == 1) return IOCP__TLS_DONE;
  err = SSL_get_error(t->ssl, r);
  if (err == SSL_ERROR_WANT_READ) return IOCP__TLS_WANT;
  if (SSL_get_verify_result(t->ssl) != X509_V_OK) {
    char what[160];
    snprintf(what, sizeof(what), "certificate verification failed: %s",
             X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
    say(why, cap, what);
    ERR_clear_error();
    return IOCP_ECERTVERIFY;
  }
  say(why, cap, "handshake failed");
  ERR_clear_error();
  return IOCP_ETLS;
}

/* SSL_read_ex hands out one record (16 KiB at most) per call: the records
 * already received are read on until `out` is full, so that on_data gets
 * as much as a plain receive would (a fourth of the on_data calls, sends
 * and lock round trips for 64 KiB receives). What ends the loop after some
 * plaintext (no more input, the peer's close_notify, a bad record) is met
 * again by the next call, which reports it. */
int iocp__tls_read(iocp__tls *t, uint8_t *out, size_t cap, size_t *n, char *why, size_t cap_why) {
  size_t got = 0, k;
  int r = 0, err;
  *n = 0;
  ERR_clear_error();
  while (got < cap && (r = SSL_read_ex(t->ssl, out + got, cap - got, &k)) == 1) got += k;
  if (got > 0) {
    ERR_clear_error();
    *n = got;
    return IOCP__TLS_DONE;
  }
  err = SSL_get_error(t->ssl, r);
  if (err == SSL_ERROR_WANT_READ) return IOCP__TLS_WANT;
  if (err == SSL_ERROR_ZERO_RETURN) return IOCP__TLS_CLOSED;
  say(why, cap_why, "TLS record failed");
  ERR_clear_error();
  return IOCP_ETLS;
}

int iocp__tls_pending(iocp__tls *t) {
  return SSL_pending(t->ssl) > 0 || BIO_ctrl_pending(t->in) > 0;
}

int iocp__tls_write(iocp__tls *t, const uint8_t *data, size_t len) {
  size_t done;
  ERR_clear_error();
  while (len > 0) {
    if (SSL_write_ex(t->ssl, data, len, &done) != 1) {
      ERR_clear_error();
      return IOCP_ETLS;
    }
    data += done;
    len -= done;
  }
  return IOCP_OK;
}

int iocp__tls_close_notify(iocp__tls *t) {
  ERR_clear_error();
  /* 0 (sent, the peer's not yet seen) and 1 both mean it is in the output. */
  if (SSL_shutdown(t->ssl) < 0) {
    ERR_clear_error();
    return IOCP_ETLS;
  }
  return IOCP_OK;
}

size_t iocp__tls_output(iocp__tls *t, uint8_t *out, size_t cap) {
  int n;
  if (BIO_ctrl_pending(t->out) == 0) return 0;
  n = BIO_read(t->out, out, cap > (1u << 30) ? 1 << 30 : (int)cap);
  return n > 0 ? (size_t)n : 0;
}

void iocp__tls_info(iocp__tls *t, iocp_tls_info *info) {
  const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
  const unsigned char *alpn = NULL;
  unsigned int alpn_len = 0;
  const char *name = c != NULL ? SSL_CIPHER_standard_name(c) : NULL;
  info->version = (uint32_t)SSL_version(t->ssl);
  snprintf(info->cipher, sizeof(info->cipher), "%s", name != NULL ? name : "");
  SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
  if (alpn_len >= sizeof(info->alpn)) alpn_len = sizeof(info->alpn) - 1;
  if (alpn_len > 0) memcpy(info->alpn, alpn, alpn_len);
  info->alpn[alpn_len] = '\0';
}
