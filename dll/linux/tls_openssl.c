/* The TLS sessions of core/tls.h on OpenSSL 3: one SSL object per
 * connection on a BIO of our own (below), so the library's own sockets,
 * buffers and workers carry every byte and OpenSSL never sees a socket. */
#include "../core/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <pthread.h>
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
  SSL_CTX *own_ctx; /* a client's */
  /* Received ciphertext OpenSSL has not read yet: the caller's bytes, read
   * in place (core/tls.h says how long they stay). */
  const uint8_t *in;
  size_t in_len;
  /* Ciphertext produced and not yet taken by iocp__tls_output. */
  uint8_t *out;
  size_t out_off, out_len, out_cap;
};

/* ---- The BIO between OpenSSL and the connection ---------------------------
 * OpenSSL's memory BIOs cost two passes over every byte each way on top of
 * OpenSSL's own record buffers (BIO_s_mem zero-fills what it grows into,
 * then the bytes are copied in and out of it). This one reads OpenSSL's
 * input straight from the connection's receive buffer and collects its
 * records in one plain buffer that iocp__tls_output empties. */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

/* The core takes a session's output after every call that makes some, so
 * an output buffer is needed only for the length of a call: each thread
 * keeps one (a session takes it when it writes and gives it back once
 * emptied; a session that finds it taken, or keeps output, uses its own),
 * instead of a large allocation and free per batch (glibc then returns the
 * pages with madvise, and the next batch faults them in again). */
static pthread_key_t spare_key;

typedef struct spare {
  uint8_t *p;
  size_t cap;
} spare;

static void spare_free(void *v) {
  spare *sp = v;
  free(sp->p);
  free(sp);
}

static int spare_key_made;

/* Unloading the library (dlclose) must not leave the key's destructor for
 * the threads that stay: the key goes, the unloading thread's spare with
 * it (another thread's spare, if any, is left to the process). */
__attribute__((destructor)) static void spare_key_drop(void) {
  spare *sp;
  if (!spare_key_made) return;
  sp = pthread_getspecific(spare_key);
  if (sp != NULL) spare_free(sp);
  pthread_key_delete(spare_key);
  spare_key_made = 0;
}

/* The thread's spare buffer into the session's empty output, if it has one. */
static void out_take(iocp__tls *t) {
  spare *sp = pthread_getspecific(spare_key);
  if (sp == NULL || sp->p == NULL || t->out != NULL) return;
  t->out = sp->p;
  t->out_cap = sp->cap;
  t->out_off = t->out_len = 0;
  sp->p = NULL;
}

/* The session's emptied output buffer back to the thread (or freed). */
static void out_give(iocp__tls *t) {
  spare *sp = pthread_getspecific(spare_key);
  if (t->out == NULL) return;
  if (sp == NULL && (sp = calloc(1, sizeof(*sp))) != NULL &&
      pthread_setspecific(spare_key, sp) != 0) {
    free(sp);
    sp = NULL;
  }
  if (sp != NULL && sp->p == NULL && t->out_cap <= (256u << 10)) {
    sp->p = t->out;
    sp->cap = t->out_cap;
  } else {
    free(t->out);
  }
  t->out = NULL;
  t->out_off = t->out_len = t->out_cap = 0;
}

static int bio_write(BIO *b, const char *data, size_t len, size_t *done) {
  iocp__tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (t->out == NULL) out_take(t);
  if (len > t->out_cap - t->out_len) {
    /* Room for a batch's records at once (four full ones: 64 KiB of
     * plaintext) without growing, or a few handshake messages. */
    size_t cap = t->out_cap != 0 ? t->out_cap * 2 : len >= 4096 ? 68u << 10 : 4096;
    uint8_t *p;
    if (t->out_off > 0 && t->out_len - t->out_off + len <= t->out_cap) {
      /* Room again once the bytes already taken are dropped. */
      memmove(t->out, t->out + t->out_off, t->out_len - t->out_off);
    } else {
      while (cap < t->out_len - t->out_off + len) cap *= 2;
      if (t->out_off > 0) {
        p = malloc(cap);
        if (p == NULL) return 0;
        memcpy(p, t->out + t->out_off, t->out_len - t->out_off);
        free(t->out);
      } else {
        p = realloc(t->out, cap);
        if (p == NULL) return 0;
      }
      t->out = p;
      t->out_cap = cap;
    }
    t->out_len -= t->out_off;
    t->out_off = 0;
  }
  memcpy(t->out + t->out_len, data, len);
  t->out_len += len;
  *done = len;
  return 1;
}

static int bio_read(BIO *b, char *buf, size_t len, size_t *done) {
  iocp__tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (t->in_len == 0) {
    /* Nothing received yet: "wait for more", not end of stream. */
    BIO_set_retry_read(b);
    *done = 0;
    return 0;
  }
  if (len > t->in_len) len = t->in_len;
  memcpy(buf, t->in, len);
  t->in += len;
  t->in_len -= len;
  if (t->in_len == 0) t->in = NULL;
  *done = len;
  return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  iocp__tls *t = BIO_get_data(b);
  (void)num;
  (void)ptr;
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1;
  case BIO_CTRL_PENDING:
    return t != NULL ? (long)t->in_len : 0;
  case BIO_CTRL_WPENDING:
    return t != NULL ? (long)(t->out_len - t->out_off) : 0;
  default:
    return 0;
  }
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static void bio_method_make(void) {
  BIO_METHOD *m;
  if (pthread_key_create(&spare_key, spare_free) != 0) return;
  spare_key_made = 1;
  m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "iocpsrv connection");
  if (m == NULL) return;
  if (BIO_meth_set_write_ex(m, bio_write) != 1 || BIO_meth_set_read_ex(m, bio_read) != 1 ||
      BIO_meth_set_ctrl(m, bio_ctrl) != 1 || BIO_meth_set_create(m, bio_create) != 1) {
    BIO_meth_free(m);
    return;
  }
  bio_method = m; /* lives as long as the process */
}

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

/* Whether the certificate may serve a TLS server with its key signing the
 * handshake (every suite offered, ECDHE at TLS 1.2 and all of TLS 1.3,
 * signs): a key usage extension must allow digitalSignature, and an
 * extended key usage extension (or a Netscape certificate type) must allow
 * a TLS server, which clients verify. Says why not. */
static int fit_for_server(X509 *cert, char *why, size_t cap) {
  uint32_t flags = X509_get_extension_flags(cert);
  if ((flags & EXFLAG_INVALID) != 0) {
    say(why, cap, "the certificate's extensions could not be read");
    return 0;
  }
  if ((flags & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(cert) & KU_DIGITAL_SIGNATURE) == 0) {
    say(why, cap, "the certificate's key usage does not allow signing (digitalSignature), "
                  "which a TLS server's handshake needs");
    return 0;
  }
  if (X509_check_purpose(cert, X509_PURPOSE_SSL_SERVER, 0) != 1) {
    say(why, cap, "the certificate's extended key usage does not allow a TLS server "
                  "(serverAuth)");
    return 0;
  }
  return 1;
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
  /* PKCS12_parse pairs the key with the certificate it matches; one that
   * matches none leaves every certificate among the extra ones. */
  if (cert == NULL) {
    int others = chain != NULL ? sk_X509_num(chain) : 0;
    say(why, cap, others > 0 ? "the private key matches no certificate in the PKCS#12 blob"
                             : "no certificate in the PKCS#12 blob");
    rc = others > 0 ? IOCP_ENOKEY : IOCP_EPKCS12;
    goto done;
  }
  if (!fit_for_server(cert, why, cap)) {
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
  /* Resumption, so a returning client skips the certificate's signature
   * (as SChannel's own cache lets it on Windows): stateless tickets at TLS
   * 1.2 and 1.3 alike (one per full handshake, sealed with this context's
   * keys), and at TLS 1.2 the session ID too, for clients that send no
   * ticket: OpenSSL's own cache of this context (its default 20,480
   * sessions, 300 s), shared by the workers. */
  SSL_CTX_set_session_cache_mode(cred->ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_set_session_id_context(cred->ctx, (const unsigned char *)"iocpsrv", 7);
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
  iocp__tls *t;
  BIO *b;
  if (pthread_once(&bio_once, bio_method_make) != 0 || bio_method == NULL) return NULL;
  t = calloc(1, sizeof(*t));
  if (t == NULL) return NULL;
  t->ssl = SSL_new(ctx);
  b = BIO_new(bio_method);
  if (t->ssl == NULL || b == NULL) {
    SSL_free(t->ssl);
    BIO_free(b);
    free(t);
    return NULL;
  }
  BIO_set_data(b, t);
  SSL_set_bio(t->ssl, b, b); /* one BIO both ways; the SSL owns it */
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
  SSL_free(t->ssl); /* frees the BIO */
  SSL_CTX_free(t->own_ctx);
  free(t->out);
  free(t);
}

/* Read in place (no copy): OpenSSL copies what it reads into its record
 * buffer, and asks for more (WANT) only once all of it is read. */
int iocp__tls_input(iocp__tls *t, const uint8_t *data, size_t len) {
  if (t->in_len != 0) return IOCP_EINVAL; /* unread input: the contract's misuse */
  t->in = len > 0 ? data : NULL;
  t->in_len = len;
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
  return SSL_pending(t->ssl) > 0 || t->in_len > 0;
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
  size_t k = t->out_len - t->out_off;
  if (k > cap) k = cap;
  if (k == 0) return 0;
  memcpy(out, t->out + t->out_off, k);
  t->out_off += k;
  if (t->out_off == t->out_len) out_give(t); /* an idle session keeps none */
  return k;
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
