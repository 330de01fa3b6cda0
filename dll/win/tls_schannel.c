/* The TLS sessions of core/tls.h on SChannel (SSPI, secur32) with the
 * identity imported by crypt32 from the PKCS#12 blob: system DLLs only.
 *
 * SChannel works on caller-owned buffers: received ciphertext collects in
 * `in` until AcceptSecurityContext / InitializeSecurityContext or
 * DecryptMessage can use it (SEC_E_INCOMPLETE_MESSAGE asks for more; a
 * SECBUFFER_EXTRA says how many bytes belong to the next message), the
 * plaintext DecryptMessage leaves inside `in` is copied to `plain` for the
 * core to read, and handshake tokens and encrypted records go to `out`.
 *
 * This engine offers TLS 1.2 (SCHANNEL_CRED; TLS 1.3 needs SCH_CREDENTIALS,
 * not done) and no ALPN yet. A client verifies the server's chain and name
 * itself (manual validation), against the given CA or the system's roots. */
#define SECURITY_WIN32
#include <winsock2.h>
#include <windows.h>
#include <wincrypt.h>
#include <schannel.h>
#include <security.h>
#include <sspi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/tls.h"

/* wininet.h's values, which CERT_CHAIN_POLICY_SSL takes. */
#ifndef SECURITY_FLAG_IGNORE_UNKNOWN_CA
#  define SECURITY_FLAG_IGNORE_UNKNOWN_CA 0x00000100
#endif
#ifndef SECURITY_FLAG_IGNORE_CERT_CN_INVALID
#  define SECURITY_FLAG_IGNORE_CERT_CN_INVALID 0x00001000
#endif
#ifndef SECBUFFER_ALERT
#  define SECBUFFER_ALERT 17
#endif

struct iocp__tls_cred {
  CredHandle cred;
  HCERTSTORE store;
  PCCERT_CONTEXT cert;
};

typedef struct bytes {
  uint8_t *p;
  size_t len, cap, off; /* off: bytes already taken from the front */
} bytes;

struct iocp__tls {
  CredHandle cred;
  int own_cred;
  CtxtHandle ctx;
  int have_ctx;
  int server, done;
  int no_verify;
  wchar_t *target;   /* the client's server name, or NULL */
  HCERTSTORE ca;     /* the client's trust anchors, or NULL: the system's */
  SecPkgContext_StreamSizes sizes;
  bytes in, plain, out;
};

/* ---- Buffers ---------------------------------------------------------------- */

static int reserve(bytes *b, size_t more) {
  size_t need = b->len + more, cap;
  uint8_t *p;
  if (need <= b->cap) return 0;
  cap = b->cap != 0 ? b->cap : 4096;
  while (cap < need) cap *= 2;
  p = realloc(b->p, cap);
  if (p == NULL) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

static int append(bytes *b, const void *data, size_t len) {
  if (len == 0) return 0;
  if (reserve(b, len) != 0) return -1;
  memcpy(b->p + b->len, data, len);
  b->len += len;
  return 0;
}

/* Keeps only the last `keep` bytes of b. */
static void keep_tail(bytes *b, size_t keep) {
  if (keep > b->len) keep = b->len;
  memmove(b->p, b->p + b->len - keep, keep);
  b->len = keep;
}

static void say(char *why, size_t cap, const char *what, SECURITY_STATUS st) {
  if (why != NULL && cap > 0) snprintf(why, cap, "%s (0x%08lx)", what, (unsigned long)st);
}

static wchar_t *wide(const char *s) {
  int n;
  wchar_t *w;
  if (s == NULL) s = "";
  n = MultiByteToWideChar(CP_UTF8, 0, s, -1, NULL, 0);
  if (n <= 0) return NULL;
  w = malloc((size_t)n * sizeof(wchar_t));
  if (w != NULL) MultiByteToWideChar(CP_UTF8, 0, s, -1, w, n);
  return w;
}

/* ---- Credentials ------------------------------------------------------------- */

int iocp__tls_cred_server(const void *p12, size_t p12_len, const char *password,
                          uint32_t min_version, const char *alpn, iocp__tls_cred **out,
                          char *why, size_t cap) {
  CRYPT_DATA_BLOB blob;
  SCHANNEL_CRED sc;
  iocp__tls_cred *cred;
  PCCERT_CONTEXT c = NULL;
  wchar_t *pw = NULL;
  SECURITY_STATUS st;
  TimeStamp expiry;
  int rc = IOCP_OK, certs = 0;

  (void)alpn; /* not offered by this engine yet */
  *out = NULL;
  if (min_version == IOCP_TLS_1_3) {
    say(why, cap, "TLS 1.3 only is not available in the SChannel engine", 0);
    return IOCP_ETLS;
  }
  cred = calloc(1, sizeof(*cred));
  pw = wide(password);
  if (cred == NULL || pw == NULL) {
    rc = IOCP_ENOMEM;
    goto done;
  }
  blob.pbData = (BYTE *)p12;
  blob.cbData = (DWORD)p12_len;
  if (!PFXIsPFXBlob(&blob)) {
    say(why, cap, "not a PKCS#12 blob", 0);
    rc = IOCP_EPKCS12;
    goto done;
  }
  cred->store = PFXImportCertStore(&blob, pw, PKCS12_NO_PERSIST_KEY);
  if (cred->store == NULL) cred->store = PFXImportCertStore(&blob, pw, 0);
  if (cred->store == NULL) {
    DWORD err = GetLastError();
    if (err == ERROR_INVALID_PASSWORD || !PFXVerifyPassword(&blob, pw, 0)) {
      say(why, cap, "wrong PKCS#12 password", (SECURITY_STATUS)err);
      rc = IOCP_EPASSWORD;
    } else {
      say(why, cap, "PFXImportCertStore failed", (SECURITY_STATUS)err);
      rc = IOCP_EPKCS12;
    }
    goto done;
  }
  /* The certificate that came with its private key. */
  while ((c = CertEnumCertificatesInStore(cred->store, c)) != NULL) {
    DWORD size = 0;
    certs++;
    if (CertGetCertificateContextProperty(c, CERT_KEY_PROV_INFO_PROP_ID, NULL, &size) ||
        CertGetCertificateContextProperty(c, CERT_KEY_CONTEXT_PROP_ID, NULL, &size)) {
      cred->cert = CertDuplicateCertificateContext(c);
      CertFreeCertificateContext(c);
      break;
    }
  }
  if (cred->cert == NULL) {
    say(why, cap, certs == 0 ? "no certificate in the PKCS#12 blob"
                             : "the PKCS#12 blob has no private key", 0);
    rc = certs == 0 ? IOCP_EPKCS12 : IOCP_ENOKEY;
    goto done;
  }
  memset(&sc, 0, sizeof(sc));
  sc.dwVersion = SCHANNEL_CRED_VERSION;
  sc.cCreds = 1;
  sc.paCred = &cred->cert;
  sc.grbitEnabledProtocols = SP_PROT_TLS1_2_SERVER;
  sc.dwFlags = SCH_USE_STRONG_CRYPTO;
  st = AcquireCredentialsHandleW(NULL, (SEC_WCHAR *)UNISP_NAME_W, SECPKG_CRED_INBOUND, NULL, &sc,
                                 NULL, NULL, &cred->cred, &expiry);
  if (st != SEC_E_OK) {
    say(why, cap, "AcquireCredentialsHandle refused the identity", st);
    rc = st == SEC_E_NO_CREDENTIALS ? IOCP_ENOKEY : IOCP_ETLS;
    goto done;
  }
  *out = cred;
  cred = NULL;
done:
  if (cred != NULL) {
    if (cred->cert != NULL) CertFreeCertificateContext(cred->cert);
    if (cred->store != NULL) CertCloseStore(cred->store, 0);
    free(cred);
  }
  if (pw != NULL) {
    SecureZeroMemory(pw, wcslen(pw) * sizeof(wchar_t));
    free(pw);
  }
  return rc;
}

void iocp__tls_cred_free(iocp__tls_cred *cred) {
  if (cred == NULL) return;
  FreeCredentialsHandle(&cred->cred);
  CertFreeCertificateContext(cred->cert);
  CertCloseStore(cred->store, 0);
  free(cred);
}

/* ---- Sessions ------------------------------------------------------------------ */

iocp__tls *iocp__tls_new_server(iocp__tls_cred *cred) {
  iocp__tls *t = calloc(1, sizeof(*t));
  if (t == NULL) return NULL;
  t->cred = cred->cred;
  t->server = 1;
  return t;
}

/* PEM text -> a memory store of its certificates; the count added. */
static int load_ca(HCERTSTORE store, const char *pem, size_t len) {
  static const char begin[] = "-----BEGIN CERTIFICATE-----";
  static const char end[] = "-----END CERTIFICATE-----";
  const char *p = pem, *stop = pem + len;
  int added = 0;
  for (;;) {
    const char *b = NULL, *e = NULL, *q;
    DWORD der_len = 0;
    BYTE *der;
    for (q = p; q + sizeof(begin) - 1 <= stop; q++)
      if (memcmp(q, begin, sizeof(begin) - 1) == 0) {
        b = q;
        break;
      }
    if (b == NULL) break;
    for (q = b; q + sizeof(end) - 1 <= stop; q++)
      if (memcmp(q, end, sizeof(end) - 1) == 0) {
        e = q + sizeof(end) - 1;
        break;
      }
    if (e == NULL) break;
    if (CryptStringToBinaryA(b, (DWORD)(e - b), CRYPT_STRING_BASE64HEADER, NULL, &der_len, NULL,
                             NULL) &&
        (der = malloc(der_len)) != NULL) {
      if (CryptStringToBinaryA(b, (DWORD)(e - b), CRYPT_STRING_BASE64HEADER, der, &der_len,
                               NULL, NULL) &&
          CertAddEncodedCertificateToStore(store, X509_ASN_ENCODING, der, der_len,
                                           CERT_STORE_ADD_ALWAYS, NULL))
        added++;
      free(der);
    }
    p = e;
  }
  return added;
}

int iocp__tls_new_client(const iocp_tls_client *o, iocp__tls **out, char *why, size_t cap) {
  SCHANNEL_CRED sc;
  SECURITY_STATUS st;
  TimeStamp expiry;
  iocp__tls *t;
  *out = NULL;
  if (o->min_version == IOCP_TLS_1_3) {
    say(why, cap, "TLS 1.3 only is not available in the SChannel engine", 0);
    return IOCP_ETLS;
  }
  if (o->alpn != NULL) {
    say(why, cap, "ALPN is not available in the SChannel engine", 0);
    return IOCP_ETLS;
  }
  t = calloc(1, sizeof(*t));
  if (t == NULL) return IOCP_ENOMEM;
  t->no_verify = o->no_verify != 0;
  if (o->server_name != NULL && o->server_name[0] != '\0') {
    t->target = wide(o->server_name);
    if (t->target == NULL) goto nomem;
  }
  if (o->ca_pem != NULL && !t->no_verify) {
    t->ca = CertOpenStore(CERT_STORE_PROV_MEMORY, 0, 0, 0, NULL);
    if (t->ca == NULL) goto nomem;
    if (load_ca(t->ca, o->ca_pem, o->ca_pem_len) == 0) {
      say(why, cap, "no certificate in the CA text", 0);
      iocp__tls_free(t);
      return IOCP_ETLS;
    }
  }
  memset(&sc, 0, sizeof(sc));
  sc.dwVersion = SCHANNEL_CRED_VERSION;
  sc.grbitEnabledProtocols = SP_PROT_TLS1_2_CLIENT;
  sc.dwFlags = SCH_CRED_MANUAL_CRED_VALIDATION | SCH_CRED_NO_DEFAULT_CREDS | SCH_USE_STRONG_CRYPTO;
  st = AcquireCredentialsHandleW(NULL, (SEC_WCHAR *)UNISP_NAME_W, SECPKG_CRED_OUTBOUND, NULL, &sc,
                                 NULL, NULL, &t->cred, &expiry);
  if (st != SEC_E_OK) {
    say(why, cap, "AcquireCredentialsHandle (client) failed", st);
    iocp__tls_free(t);
    return IOCP_ETLS;
  }
  t->own_cred = 1;
  *out = t;
  return IOCP_OK;
nomem:
  iocp__tls_free(t);
  return IOCP_ENOMEM;
}

void iocp__tls_free(iocp__tls *t) {
  if (t == NULL) return;
  if (t->have_ctx) DeleteSecurityContext(&t->ctx);
  if (t->own_cred) FreeCredentialsHandle(&t->cred);
  if (t->ca != NULL) CertCloseStore(t->ca, 0);
  free(t->target);
  free(t->in.p);
  free(t->plain.p);
  free(t->out.p);
  free(t);
}

int iocp__tls_input(iocp__tls *t, const uint8_t *data, size_t len) {
  return append(&t->in, data, len) == 0 ? IOCP_OK : IOCP_ENOMEM;
}

/* ---- The handshake --------------------------------------------------------------- */

#define ASC_FLAGS                                                                          \
  (ASC_REQ_SEQUENCE_DETECT | ASC_REQ_REPLAY_DETECT | ASC_REQ_CONFIDENTIALITY |             \
   ASC_REQ_EXTENDED_ERROR | ASC_REQ_ALLOCATE_MEMORY | ASC_REQ_STREAM)
#define ISC_FLAGS                                                                          \
  (ISC_REQ_SEQUENCE_DETECT | ISC_REQ_REPLAY_DETECT | ISC_REQ_CONFIDENTIALITY |             \
   ISC_REQ_EXTENDED_ERROR | ISC_REQ_ALLOCATE_MEMORY | ISC_REQ_STREAM |                     \
   ISC_REQ_MANUAL_CRED_VALIDATION)

/* One ASC/ISC step over `in`; the token it makes goes to `out`. */
static SECURITY_STATUS step(iocp__tls *t) {
  SecBuffer ib[2], ob[2];
  SecBufferDesc id, od;
  SECURITY_STATUS st;
  unsigned long attrs = 0;
  TimeStamp expiry;
  int first = !t->have_ctx;

  ib[0].BufferType = SECBUFFER_TOKEN;
  ib[0].pvBuffer = t->in.p;
  ib[0].cbBuffer = (unsigned long)t->in.len;
  ib[1].BufferType = SECBUFFER_EMPTY;
  ib[1].pvBuffer = NULL;
  ib[1].cbBuffer = 0;
  id.ulVersion = SECBUFFER_VERSION;
  id.cBuffers = 2;
  id.pBuffers = ib;
  ob[0].BufferType = SECBUFFER_TOKEN;
  ob[0].pvBuffer = NULL;
  ob[0].cbBuffer = 0;
  ob[1].BufferType = SECBUFFER_ALERT;
  ob[1].pvBuffer = NULL;
  ob[1].cbBuffer = 0;
  od.ulVersion = SECBUFFER_VERSION;
  od.cBuffers = 2;
  od.pBuffers = ob;

  if (t->server)
    st = AcceptSecurityContext(&t->cred, first ? NULL : &t->ctx, &id, ASC_FLAGS, 0, &t->ctx, &od,
                               &attrs, &expiry);
  else
    st = InitializeSecurityContextW(&t->cred, first ? NULL : &t->ctx, t->target, ISC_FLAGS, 0, 0,
                                    first ? NULL : &id, 0, &t->ctx, &od, &attrs, &expiry);
  if (first && (st == SEC_E_OK || st == SEC_I_CONTINUE_NEEDED || st == SEC_E_INCOMPLETE_MESSAGE ||
                ob[0].cbBuffer > 0))
    t->have_ctx = 1;
  if (ob[0].pvBuffer != NULL) {
    if (ob[0].cbBuffer > 0 && append(&t->out, ob[0].pvBuffer, ob[0].cbBuffer) != 0)
      st = SEC_E_INSUFFICIENT_MEMORY;
    FreeContextBuffer(ob[0].pvBuffer);
  }
  if (ob[1].pvBuffer != NULL) {
    if (ob[1].cbBuffer > 0) (void)append(&t->out, ob[1].pvBuffer, ob[1].cbBuffer);
    FreeContextBuffer(ob[1].pvBuffer);
  }
  if (st == SEC_E_INCOMPLETE_MESSAGE) return st;
  if (!first || t->server) {
    /* What the step used is gone; an EXTRA buffer is the next message. */
    if (ib[1].BufferType == SECBUFFER_EXTRA)
      keep_tail(&t->in, ib[1].cbBuffer);
    else if (st == SEC_E_OK || st == SEC_I_CONTINUE_NEEDED || st == SEC_I_INCOMPLETE_CREDENTIALS)
      t->in.len = 0;
  }
  return st;
}

/* The server's chain and name, checked by hand (manual validation). */
static int verify(iocp__tls *t, char *why, size_t cap) {
  PCCERT_CONTEXT peer = NULL;
  PCCERT_CHAIN_CONTEXT chain = NULL;
  CERT_CHAIN_PARA cp;
  CERT_CHAIN_POLICY_PARA pp;
  CERT_CHAIN_POLICY_STATUS ps;
  SSL_EXTRA_CERT_CHAIN_POLICY_PARA ssl;
  int rc = IOCP_ECERTVERIFY;
  SECURITY_STATUS st = QueryContextAttributesW(&t->ctx, SECPKG_ATTR_REMOTE_CERT_CONTEXT, &peer);
  if (st != SEC_E_OK || peer == NULL) {
    say(why, cap, "no server certificate", st);
    return IOCP_ECERTVERIFY;
  }
  memset(&cp, 0, sizeof(cp));
  cp.cbSize = sizeof(cp);
  if (!CertGetCertificateChain(NULL, peer, NULL, t->ca != NULL ? t->ca : peer->hCertStore, &cp, 0,
                               NULL, &chain)) {
    say(why, cap, "certificate chain could not be built", (SECURITY_STATUS)GetLastError());
    goto done;
  }
  if (t->ca != NULL) {
    /* The chain must end at one of the given anchors. */
    const CERT_SIMPLE_CHAIN *sc = chain->rgpChain[chain->cChain - 1];
    PCCERT_CONTEXT root = sc->rgpElement[sc->cElement - 1]->pCertContext;
    PCCERT_CONTEXT found =
        CertFindCertificateInStore(t->ca, X509_ASN_ENCODING, 0, CERT_FIND_EXISTING, root, NULL);
    if (found == NULL) {
      say(why, cap, "certificate verification failed: not issued by the given CA", 0);
      goto done;
    }
    CertFreeCertificateContext(found);
  }
  memset(&ssl, 0, sizeof(ssl));
  ssl.cbSize = sizeof(ssl);
  ssl.dwAuthType = AUTHTYPE_SERVER;
  ssl.fdwChecks = t->ca != NULL ? SECURITY_FLAG_IGNORE_UNKNOWN_CA : 0;
  ssl.pwszServerName = t->target;
  if (t->target == NULL) ssl.fdwChecks |= SECURITY_FLAG_IGNORE_CERT_CN_INVALID;
  memset(&pp, 0, sizeof(pp));
  pp.cbSize = sizeof(pp);
  pp.pvExtraPolicyPara = &ssl;
  memset(&ps, 0, sizeof(ps));
  ps.cbSize = sizeof(ps);
  if (!CertVerifyCertificateChainPolicy(CERT_CHAIN_POLICY_SSL, chain, &pp, &ps) ||
      ps.dwError != 0) {
    say(why, cap, "certificate verification failed", (SECURITY_STATUS)ps.dwError);
    goto done;
  }
  rc = IOCP_OK;
done:
  if (chain != NULL) CertFreeCertificateChain(chain);
  CertFreeCertificateContext(peer);
  return rc;
}

int iocp__tls_handshake(iocp__tls *t, char *why, size_t cap) {
  for (;;) {
    SECURITY_STATUS st;
    if (t->done) return IOCP__TLS_DONE;
    /* A server waits for the ClientHello; a client speaks first. */
    if (t->in.len == 0 && (t->server || t->have_ctx)) return IOCP__TLS_WANT;
    st = step(t);
    if (st == SEC_E_INCOMPLETE_MESSAGE) return IOCP__TLS_WANT;
    if (st == SEC_I_CONTINUE_NEEDED || st == SEC_I_INCOMPLETE_CREDENTIALS) {
      if (t->in.len == 0) return IOCP__TLS_WANT;
      continue;
    }
    if (st != SEC_E_OK) {
      say(why, cap, "handshake failed", st);
      return st == SEC_E_CERT_UNKNOWN || st == SEC_E_UNTRUSTED_ROOT || st == SEC_E_WRONG_PRINCIPAL
                 ? IOCP_ECERTVERIFY
                 : IOCP_ETLS;
    }
    st = QueryContextAttributesW(&t->ctx, SECPKG_ATTR_STREAM_SIZES, &t->sizes);
    if (st != SEC_E_OK) {
      say(why, cap, "stream sizes unknown", st);
      return IOCP_ETLS;
    }
    if (!t->server && !t->no_verify) {
      int rc = verify(t, why, cap);
      if (rc != IOCP_OK) return rc;
    }
    t->done = 1;
  }
}

/* ---- Records -------------------------------------------------------------------- */

int iocp__tls_read(iocp__tls *t, uint8_t *out, size_t cap, size_t *n, char *why, size_t cap_why) {
  *n = 0;
  for (;;) {
    SecBuffer b[4];
    SecBufferDesc d;
    SECURITY_STATUS st;
    size_t extra = 0;
    int i;
    if (t->plain.len > t->plain.off) {
      size_t k = t->plain.len - t->plain.off;
      if (k > cap) k = cap;
      memcpy(out, t->plain.p + t->plain.off, k);
      t->plain.off += k;
      if (t->plain.off == t->plain.len) t->plain.off = t->plain.len = 0;
      *n = k;
      return IOCP__TLS_DONE;
    }
    if (t->in.len == 0) return IOCP__TLS_WANT;
    b[0].BufferType = SECBUFFER_DATA;
    b[0].pvBuffer = t->in.p;
    b[0].cbBuffer = (unsigned long)t->in.len;
    for (i = 1; i < 4; i++) {
      b[i].BufferType = SECBUFFER_EMPTY;
      b[i].pvBuffer = NULL;
      b[i].cbBuffer = 0;
    }
    d.ulVersion = SECBUFFER_VERSION;
    d.cBuffers = 4;
    d.pBuffers = b;
    st = DecryptMessage(&t->ctx, &d, 0, NULL);
    if (st == SEC_E_INCOMPLETE_MESSAGE) return IOCP__TLS_WANT;
    if (st == SEC_I_CONTEXT_EXPIRED) {
      t->in.len = 0;
      return IOCP__TLS_CLOSED; /* the peer's close_notify */
    }
    if (st != SEC_E_OK) {
      /* SEC_I_RENEGOTIATE included: renegotiation is refused. */
      say(why, cap_why, st == SEC_I_RENEGOTIATE ? "renegotiation refused" : "TLS record failed",
          st);
      return IOCP_ETLS;
    }
    for (i = 1; i < 4; i++) {
      if (b[i].BufferType == SECBUFFER_DATA && b[i].cbBuffer > 0 &&
          append(&t->plain, b[i].pvBuffer, b[i].cbBuffer) != 0)
        return IOCP_ENOMEM;
      if (b[i].BufferType == SECBUFFER_EXTRA) extra = b[i].cbBuffer;
    }
    /* Windows reports a close_notify as SEC_I_CONTEXT_EXPIRED; Wine as
     * SEC_E_OK with no data (and the alert as extra, or consumed). Neither
     * this engine's peers nor TLS 1.2 stacks send empty data records, so
     * a record that decrypts to nothing is the close. */
    if (t->plain.len == 0) {
      t->in.len = 0;
      return IOCP__TLS_CLOSED;
    }
    keep_tail(&t->in, extra);
  }
}

int iocp__tls_pending(iocp__tls *t) { return t->plain.len > t->plain.off || t->in.len > 0; }

int iocp__tls_write(iocp__tls *t, const uint8_t *data, size_t len) {
  while (len > 0) {
    size_t chunk = len < t->sizes.cbMaximumMessage ? len : t->sizes.cbMaximumMessage;
    size_t room = t->sizes.cbHeader + chunk + t->sizes.cbTrailer;
    SecBuffer b[4];
    SecBufferDesc d;
    uint8_t *base;
    if (reserve(&t->out, room) != 0) return IOCP_ENOMEM;
    base = t->out.p + t->out.len;
    memcpy(base + t->sizes.cbHeader, data, chunk);
    b[0].BufferType = SECBUFFER_STREAM_HEADER;
    b[0].pvBuffer = base;
    b[0].cbBuffer = t->sizes.cbHeader;
    b[1].BufferType = SECBUFFER_DATA;
    b[1].pvBuffer = base + t->sizes.cbHeader;
    b[1].cbBuffer = (unsigned long)chunk;
    b[2].BufferType = SECBUFFER_STREAM_TRAILER;
    b[2].pvBuffer = base + t->sizes.cbHeader + chunk;
    b[2].cbBuffer = t->sizes.cbTrailer;
    b[3].BufferType = SECBUFFER_EMPTY;
    b[3].pvBuffer = NULL;
    b[3].cbBuffer = 0;
    d.ulVersion = SECBUFFER_VERSION;
    d.cBuffers = 4;
    d.pBuffers = b;
    if (EncryptMessage(&t->ctx, 0, &d, 0) != SEC_E_OK) return IOCP_ETLS;
    /* The trailer may come out shorter than advertised (Wine). */
    t->out.len += b[0].cbBuffer + b[1].cbBuffer + b[2].cbBuffer;
    data += chunk;
    len -= chunk;
  }
  return IOCP_OK;
}

int iocp__tls_close_notify(iocp__tls *t) {
  DWORD type = SCHANNEL_SHUTDOWN;
  SecBuffer b;
  SecBufferDesc d;
  SECURITY_STATUS st;
  size_t keep = t->in.len;
  b.BufferType = SECBUFFER_TOKEN;
  b.pvBuffer = &type;
  b.cbBuffer = sizeof(type);
  d.ulVersion = SECBUFFER_VERSION;
  d.cBuffers = 1;
  d.pBuffers = &b;
  if (ApplyControlToken(&t->ctx, &d) != SEC_E_OK) return IOCP_ETLS;
  /* The next step makes the alert; it reads no input. */
  t->in.len = 0;
  st = step(t);
  t->in.len = keep;
  return st == SEC_E_OK || st == SEC_I_CONTINUE_NEEDED || st == SEC_I_CONTEXT_EXPIRED
             ? IOCP_OK
             : IOCP_ETLS;
}

size_t iocp__tls_output(iocp__tls *t, uint8_t *out, size_t cap) {
  size_t k = t->out.len;
  if (k == 0) return 0;
  if (k > cap) k = cap;
  memcpy(out, t->out.p, k);
  memmove(t->out.p, t->out.p + k, t->out.len - k);
  t->out.len -= k;
  return k;
}

void iocp__tls_info(iocp__tls *t, iocp_tls_info *info) {
  SecPkgContext_ConnectionInfo ci;
  SecPkgContext_CipherInfo cin;
  info->version = 0;
  info->cipher[0] = '\0';
  info->alpn[0] = '\0';
  if (QueryContextAttributesW(&t->ctx, SECPKG_ATTR_CONNECTION_INFO, &ci) == SEC_E_OK)
    info->version = (ci.dwProtocol & SP_PROT_TLS1_3) ? IOCP_TLS_1_3
                    : (ci.dwProtocol & SP_PROT_TLS1_2) ? IOCP_TLS_1_2
                                                       : 0;
  memset(&cin, 0, sizeof(cin));
  cin.dwVersion = SECPKGCONTEXT_CIPHERINFO_V1;
  if (QueryContextAttributesW(&t->ctx, SECPKG_ATTR_CIPHER_INFO, &cin) == SEC_E_OK)
    WideCharToMultiByte(CP_UTF8, 0, cin.szCipherSuite, -1, info->cipher,
                        (int)sizeof(info->cipher), NULL, NULL);
}
