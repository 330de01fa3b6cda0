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
 * Protocols: TLS 1.3 and 1.2 (1.3 only for tls_min_version IOCP_TLS_1_3),
 * asked for with SCH_CREDENTIALS and its TLS_PARAMETERS (which disable what
 * is older); an SChannel that does not take that form (before Windows 10
 * 1809; Wine) gets SCHANNEL_CRED with TLS 1.3 and 1.2 enabled, then with
 * TLS 1.2 alone. The handshake's result is checked against the minimum.
 * ALPN: the list goes to AcceptSecurityContext / InitializeSecurityContext
 * as a SECBUFFER_APPLICATION_PROTOCOLS input, the choice is read with
 * SECPKG_ATTR_APPLICATION_PROTOCOL. After a TLS 1.3 handshake,
 * DecryptMessage answers post-handshake messages (a NewSessionTicket, a
 * KeyUpdate) with SEC_I_RENEGOTIATE: they go back through the handshake
 * call, which is no renegotiation; at TLS 1.2 that status is a
 * renegotiation and refused. A client verifies the server's chain and name
 * itself (manual validation), against the given CA or the system's roots.
 *
 * Under Wine every imported private key passes through one registry slot
 * per prefix: its PFXImportCertStore puts the key into the user's default
 * key container (even with PKCS12_NO_PERSIST_KEY), its SChannel reads the
 * key back from there in AcquireCredentialsHandle, and releasing the
 * certificate's provider writes that provider's key back there. Two
 * identities loaded at once, by two threads or two processes of one
 * prefix, could each get the other's key (GnuTLS: "The certificate and the
 * given key do not match"). So import..acquire and the release run under
 * one named mutex, one identity at a time across processes; on Windows
 * (each import in a container of its own) that costs one lock per
 * identity. */
#define SECURITY_WIN32
#define SCHANNEL_USE_BLACKLISTS /* SCH_CREDENTIALS, TLS_PARAMETERS */
#include <winsock2.h>
#include <windows.h>
#include <subauth.h> /* UNICODE_STRING, which TLS_PARAMETERS names */
#include <wincrypt.h>
#include <schannel.h>
#include <security.h>
#include <sspi.h>

#include <stddef.h>
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

#define PROT_TLS12 (SP_PROT_TLS1_2_SERVER | SP_PROT_TLS1_2_CLIENT)
#define PROT_TLS13 (SP_PROT_TLS1_3_SERVER | SP_PROT_TLS1_3_CLIENT)

/* An ALPN list as SChannel takes it (SEC_APPLICATION_PROTOCOLS). */
typedef struct alpn_list {
  uint8_t *p;
  unsigned long len;
} alpn_list;

struct iocp__tls_cred {
  CredHandle cred;
  HCERTSTORE store;
  PCCERT_CONTEXT cert;
  uint32_t min_version;
  alpn_list alpn;
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
  int post;          /* TLS 1.3 post-handshake messages go to step() */
  int closed;        /* the peer's close_notify came behind plaintext */
  uint32_t min_version;
  DWORD proto;       /* the negotiated SP_PROT_ bits */
  alpn_list alpn;    /* offered (a server's points into its cred) */
  int own_alpn;
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

/* "h2,http/1.1" -> SEC_APPLICATION_PROTOCOLS: one ALPN list (length-prefixed
 * names, as in the extension) behind its headers. 0, or -1 for a name that
 * is empty or longer than 255 bytes, or a list too long; *out NULL when
 * there is no memory. */
static int alpn_build(const char *list, alpn_list *out) {
  size_t wire = 0, head = offsetof(SEC_APPLICATION_PROTOCOLS, ProtocolLists) +
                          offsetof(SEC_APPLICATION_PROTOCOL_LIST, ProtocolList);
  const char *p;
  uint8_t *w;
  SEC_APPLICATION_PROTOCOLS *ap;
  out->p = NULL;
  out->len = 0;
  for (p = list; *p != '\0';) {
    const char *end = strchr(p, ',');
    size_t k = end != NULL ? (size_t)(end - p) : strlen(p);
    if (k == 0 || k > 255) return -1;
    wire += 1 + k;
    p += k;
    if (*p == ',') p++;
  }
  if (wire == 0 || wire > 0xffff) return -1;
  out->p = calloc(1, head + wire);
  if (out->p == NULL) return 0;
  ap = (SEC_APPLICATION_PROTOCOLS *)out->p;
  ap->ProtocolListsSize =
      (unsigned long)(offsetof(SEC_APPLICATION_PROTOCOL_LIST, ProtocolList) + wire);
  ap->ProtocolLists[0].ProtoNegoExt = SecApplicationProtocolNegotiationExt_ALPN;
  ap->ProtocolLists[0].ProtocolListSize = (unsigned short)wire;
  w = out->p + head;
  for (p = list; *p != '\0';) {
    const char *end = strchr(p, ',');
    size_t k = end != NULL ? (size_t)(end - p) : strlen(p);
    *w++ = (uint8_t)k;
    memcpy(w, p, k);
    w += k;
    p += k;
    if (*p == ',') p++;
  }
  out->len = (unsigned long)(head + wire);
  return 0;
}

/* The credential forms, newest first; the first one this system's SChannel
 * took is remembered for the next credentials (one per outbound
 * connection). */
enum { FORM_SCH = 1, FORM_LEGACY_13, FORM_LEGACY_12, FORM_END };
static volatile LONG g_form;

/* Whether a credential is unfit: SChannel reports that it enables none of
 * the protocols allowed, or that it took SCH_CREDENTIALS but not its
 * TLS_PARAMETERS (Wine 8 and 10: TLS 1.0 and 1.1 enabled, no TLS 1.3).
 * Nothing reported (0: Wine 8's server credentials) is no verdict. */
static int unfit(CredHandle *cred, DWORD allowed, int sch) {
  SecPkgCred_SupportedProtocols sp;
  DWORD old = SP_PROT_TLS1_0 | SP_PROT_TLS1_1;
  memset(&sp, 0, sizeof(sp));
  if (QueryCredentialsAttributesW(cred, SECPKG_ATTR_SUPPORTED_PROTOCOLS, &sp) != SEC_E_OK)
    return 0;
  if (sp.grbitProtocol != 0 && (sp.grbitProtocol & allowed) == 0) return 1;
  return sch && (sp.grbitProtocol & old) != 0 && (sp.grbitProtocol & PROT_TLS13) == 0;
}

/* AcquireCredentialsHandle for TLS 1.3 and 1.2 (1.3 only when min_version
 * says so), with the certificate when one is given. */
static SECURITY_STATUS acquire(int inbound, PCCERT_CONTEXT *cert, uint32_t min_version,
                               DWORD flags, CredHandle *out) {
  DWORD allowed = PROT_TLS13 | (min_version == IOCP_TLS_1_3 ? 0 : PROT_TLS12);
  DWORD side = inbound ? SP_PROT_TLS1_2_SERVER | SP_PROT_TLS1_3_SERVER
                       : SP_PROT_TLS1_2_CLIENT | SP_PROT_TLS1_3_CLIENT;
  LONG form = g_form != 0 ? g_form : FORM_SCH;
  SECURITY_STATUS st = SEC_E_ALGORITHM_MISMATCH;
  TimeStamp expiry;
  for (; form < FORM_END; form++) {
    if (form == FORM_SCH) {
      SCH_CREDENTIALS sc;
      TLS_PARAMETERS tp;
      memset(&tp, 0, sizeof(tp));
      tp.grbitDisabledProtocols = ~allowed;
      memset(&sc, 0, sizeof(sc));
      sc.dwVersion = SCH_CREDENTIALS_VERSION;
      sc.cCreds = cert != NULL ? 1 : 0;
      sc.paCred = cert;
      sc.dwFlags = flags;
      sc.cTlsParameters = 1;
      sc.pTlsParameters = &tp;
      st = AcquireCredentialsHandleW(NULL, (SEC_WCHAR *)UNISP_NAME_W,
                                     inbound ? SECPKG_CRED_INBOUND : SECPKG_CRED_OUTBOUND, NULL,
                                     &sc, NULL, NULL, out, &expiry);
    } else {
      SCHANNEL_CRED sc;
      if (form == FORM_LEGACY_12 && min_version == IOCP_TLS_1_3) break;
      memset(&sc, 0, sizeof(sc));
      sc.dwVersion = SCHANNEL_CRED_VERSION;
      sc.cCreds = cert != NULL ? 1 : 0;
      sc.paCred = cert;
      sc.grbitEnabledProtocols = (form == FORM_LEGACY_13 ? allowed : PROT_TLS12) & side;
      sc.dwFlags = flags;
      st = AcquireCredentialsHandleW(NULL, (SEC_WCHAR *)UNISP_NAME_W,
                                     inbound ? SECPKG_CRED_INBOUND : SECPKG_CRED_OUTBOUND, NULL,
                                     &sc, NULL, NULL, out, &expiry);
    }
    if (st == SEC_E_OK && unfit(out, allowed, form == FORM_SCH)) {
      FreeCredentialsHandle(out);
      st = SEC_E_ALGORITHM_MISMATCH;
    }
    if (st == SEC_E_OK) {
      InterlockedExchange(&g_form, form);
      break;
    }
  }
  return st;
}

/* The named mutex around an identity's import..acquire and its release
 * (see the top of the file); NULL when it could not be made (then the
 * work runs unguarded, as it would without Wine's shared slot). */
static HANDLE key_slot_lock(void) {
  HANDLE m = CreateMutexW(NULL, FALSE, L"Local\\iocpsrv-tls-key-slot");
  if (m != NULL) {
    DWORD w = WaitForSingleObject(m, INFINITE);
    if (w != WAIT_OBJECT_0 && w != WAIT_ABANDONED) {
      CloseHandle(m);
      m = NULL;
    }
  }
  return m;
}

static void key_slot_unlock(HANDLE m) {
  if (m == NULL) return;
  ReleaseMutex(m);
  CloseHandle(m);
}

/* Releases the identity's certificate and store (and so the key's
 * provider) under the key slot's mutex. */
static void release_identity(PCCERT_CONTEXT cert, HCERTSTORE store) {
  HANDLE m = key_slot_lock();
  if (cert != NULL) CertFreeCertificateContext(cert);
  if (store != NULL) CertCloseStore(store, 0);
  key_slot_unlock(m);
}

/* Whether the certificate may serve a TLS server with its key signing the
 * handshake (as on OpenSSL): a key usage extension must allow
 * digitalSignature, an extended key usage extension serverAuth (or any
 * purpose). SChannel takes such a certificate and fails every handshake
 * (a verifying client refuses it). 0, or IOCP_EPKCS12 / IOCP_ENOMEM. */
static int fit_for_server(PCCERT_CONTEXT c, char *why, size_t cap) {
  BYTE ku[2] = {0, 0};
  CERT_ENHKEY_USAGE *eku = NULL;
  DWORD size = 0, i;
  int rc = IOCP_OK, server = 0;
  if (CertGetIntendedKeyUsage(X509_ASN_ENCODING, c->pCertInfo, ku, sizeof(ku)) &&
      (ku[0] & CERT_DIGITAL_SIGNATURE_KEY_USAGE) == 0) {
    say(why, cap, "the certificate's key usage does not allow signing (digitalSignature), "
                  "which a TLS server's handshake needs", 0);
    return IOCP_EPKCS12;
  }
  /* No extended key usage extension: any purpose. */
  if (!CertGetEnhancedKeyUsage(c, CERT_FIND_EXT_ONLY_ENHKEY_USAGE_FLAG, NULL, &size))
    return IOCP_OK;
  eku = malloc(size);
  if (eku == NULL) return IOCP_ENOMEM;
  if (!CertGetEnhancedKeyUsage(c, CERT_FIND_EXT_ONLY_ENHKEY_USAGE_FLAG, eku, &size)) goto done;
  for (i = 0; i < eku->cUsageIdentifier; i++) {
    const char *oid = eku->rgpszUsageIdentifier[i];
    if (strcmp(oid, szOID_PKIX_KP_SERVER_AUTH) == 0 || strcmp(oid, "2.5.29.37.0") == 0)
      server = 1;
  }
  if (!server) {
    say(why, cap, "the certificate's extended key usage does not allow a TLS server "
                  "(serverAuth)", 0);
    rc = IOCP_EPKCS12;
  }
done:
  free(eku);
  return rc;
}

int iocp__tls_cred_server(const void *p12, size_t p12_len, const char *password,
                          uint32_t min_version, const char *alpn, iocp__tls_cred **out,
                          char *why, size_t cap) {
  CRYPT_DATA_BLOB blob;
  iocp__tls_cred *cred;
  PCCERT_CONTEXT c = NULL;
  wchar_t *pw = NULL;
  HANDLE slot = NULL;
  SECURITY_STATUS st;
  int rc = IOCP_OK, certs = 0;

  *out = NULL;
  cred = calloc(1, sizeof(*cred));
  pw = wide(password);
  if (cred == NULL || pw == NULL) {
    rc = IOCP_ENOMEM;
    goto done;
  }
  cred->min_version = min_version;
  if (alpn != NULL) {
    if (alpn_build(alpn, &cred->alpn) != 0) {
      say(why, cap, "bad ALPN list", 0);
      rc = IOCP_ETLS;
      goto done;
    }
    if (cred->alpn.p == NULL) {
      rc = IOCP_ENOMEM;
      goto done;
    }
  }
  blob.pbData = (BYTE *)p12;
  blob.cbData = (DWORD)p12_len;
  if (!PFXIsPFXBlob(&blob)) {
    say(why, cap, "not a PKCS#12 blob", 0);
    rc = IOCP_EPKCS12;
    goto done;
  }
  slot = key_slot_lock();
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
  rc = fit_for_server(cred->cert, why, cap);
  if (rc != IOCP_OK) goto done;
  st = acquire(1, &cred->cert, min_version, SCH_USE_STRONG_CRYPTO, &cred->cred);
  if (st != SEC_E_OK) {
    say(why, cap,
        min_version == IOCP_TLS_1_3 ? "AcquireCredentialsHandle refused the identity for TLS 1.3"
                                    : "AcquireCredentialsHandle refused the identity",
        st);
    rc = st == SEC_E_NO_CREDENTIALS ? IOCP_ENOKEY : IOCP_ETLS;
    goto done;
  }
  *out = cred;
  cred = NULL;
done:
  if (cred != NULL) {
    if (cred->cert != NULL) CertFreeCertificateContext(cred->cert);
    if (cred->store != NULL) CertCloseStore(cred->store, 0);
    free(cred->alpn.p);
    free(cred);
  }
  key_slot_unlock(slot);
  if (pw != NULL) {
    SecureZeroMemory(pw, wcslen(pw) * sizeof(wchar_t));
    free(pw);
  }
  return rc;
}

void iocp__tls_cred_free(iocp__tls_cred *cred) {
  if (cred == NULL) return;
  FreeCredentialsHandle(&cred->cred);
  release_identity(cred->cert, cred->store);
  free(cred->alpn.p);
  free(cred);
}

/* ---- Sessions ------------------------------------------------------------------ */

iocp__tls *iocp__tls_new_server(iocp__tls_cred *cred) {
  iocp__tls *t = calloc(1, sizeof(*t));
  if (t == NULL) return NULL;
  t->cred = cred->cred;
  t->server = 1;
  t->min_version = cred->min_version;
  t->alpn = cred->alpn;
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
  SECURITY_STATUS st;
  iocp__tls *t;
  *out = NULL;
  t = calloc(1, sizeof(*t));
  if (t == NULL) return IOCP_ENOMEM;
  t->no_verify = o->no_verify != 0;
  t->min_version = o->min_version;
  if (o->alpn != NULL) {
    t->own_alpn = 1;
    if (alpn_build(o->alpn, &t->alpn) != 0) {
      say(why, cap, "bad ALPN list", 0);
      iocp__tls_free(t);
      return IOCP_ETLS;
    }
    if (t->alpn.p == NULL) goto nomem;
  }
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
  st = acquire(0, NULL, o->min_version,
               SCH_CRED_MANUAL_CRED_VALIDATION | SCH_CRED_NO_DEFAULT_CREDS | SCH_USE_STRONG_CRYPTO,
               &t->cred);
  if (st != SEC_E_OK) {
    say(why, cap,
        o->min_version == IOCP_TLS_1_3 ? "AcquireCredentialsHandle (client) failed for TLS 1.3"
                                       : "AcquireCredentialsHandle (client) failed",
        st);
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
  if (t->own_alpn) free(t->alpn.p);
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

/* One ASC/ISC step over `in`; the token it makes goes to `out`. The ALPN
 * list goes with the handshake's steps: a server's with each (the first
 * reads the ClientHello), a client's with the first (which writes it). */
static SECURITY_STATUS step(iocp__tls *t) {
  SecBuffer ib[3], ob[2];
  SecBufferDesc id, od;
  SECURITY_STATUS st;
  unsigned long attrs = 0, i;
  TimeStamp expiry;
  int first = !t->have_ctx;
  int alpn = t->alpn.len > 0 && !t->done;

  ib[0].BufferType = SECBUFFER_TOKEN;
  ib[0].pvBuffer = t->in.p;
  ib[0].cbBuffer = (unsigned long)t->in.len;
  ib[1].BufferType = SECBUFFER_EMPTY;
  ib[1].pvBuffer = NULL;
  ib[1].cbBuffer = 0;
  ib[2].BufferType = SECBUFFER_APPLICATION_PROTOCOLS;
  ib[2].pvBuffer = t->alpn.p;
  ib[2].cbBuffer = t->alpn.len;
  id.ulVersion = SECBUFFER_VERSION;
  id.cBuffers = alpn ? 3 : 2;
  id.pBuffers = ib;
  if (first && !t->server) { /* the ClientHello: no input but the list */
    id.cBuffers = alpn ? 1 : 0;
    id.pBuffers = ib + 2;
  }
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
                                    id.cBuffers > 0 ? &id : NULL, 0, &t->ctx, &od, &attrs,
                                    &expiry);
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
    for (i = 0; i < 2 && ib[i].BufferType != SECBUFFER_EXTRA; i++) {
    }
    if (i < 2)
      keep_tail(&t->in, ib[i].cbBuffer);
    else if (st == SEC_E_OK || st == SEC_I_CONTINUE_NEEDED || st == SEC_I_INCOMPLETE_CREDENTIALS)
      t->in.len = 0;
  }
  return st;
}

/* Whether `in` (which starts at a record) cannot be TLS: a content type
 * other than 20-23, a major version other than 3, or a length over the
 * largest record (2^14 + 2048). SChannel would wait for such a record to
 * complete (plain HTTP reads as a 12 KB one) until the time limit. */
static int not_tls(const bytes *in) {
  const uint8_t *p = in->p;
  if (in->len >= 1 && (p[0] < 20 || p[0] > 23)) return 1;
  if (in->len >= 2 && p[1] != 3) return 1;
  return in->len >= 5 && (((size_t)p[3] << 8) | p[4]) > 16384 + 2048;
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
    if (not_tls(&t->in)) {
      say(why, cap, "handshake failed: not a TLS record", 0);
      return IOCP_ETLS;
    }
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
    {
      SecPkgContext_ConnectionInfo ci;
      if (QueryContextAttributesW(&t->ctx, SECPKG_ATTR_CONNECTION_INFO, &ci) == SEC_E_OK)
        t->proto = ci.dwProtocol;
      /* Whatever the credential asked for, never below the minimum. */
      if (!(t->proto & (PROT_TLS13 | (t->min_version == IOCP_TLS_1_3 ? 0 : PROT_TLS12)))) {
        say(why, cap, "the negotiated protocol is below the minimum", (SECURITY_STATUS)t->proto);
        return IOCP_ETLS;
      }
    }
    if (!t->server && !t->no_verify) {
      int rc = verify(t, why, cap);
      if (rc != IOCP_OK) return rc;
    }
    t->done = 1;
  }
}

/* ---- Records -------------------------------------------------------------------- */

/* Whether the record at rec (its 5-byte header) is an alert: at TLS 1.2 by
 * its type; at TLS 1.3 (where every record says application data) by its
 * size, an alert's two bytes plus the inner type and a 16-byte tag. */
static int alert_record(const iocp__tls *t, const uint8_t *rec, size_t len) {
  size_t body;
  if (len < 5) return 0;
  body = ((size_t)rec[3] << 8) | rec[4];
  if (t->proto & PROT_TLS13) return rec[0] == 23 && body == 2 + 1 + 16;
  return rec[0] == 21;
}

/* TLS 1.3 post-handshake messages through the handshake call: 0 when they
 * were taken, 1 when more ciphertext is needed, or IOCP_ETLS. */
static int post_handshake(iocp__tls *t, char *why, size_t cap) {
  SECURITY_STATUS st = step(t);
  if (st == SEC_E_OK) {
    t->post = 0;
    return 0;
  }
  if (st == SEC_E_INCOMPLETE_MESSAGE || st == SEC_I_CONTINUE_NEEDED) {
    t->post = 2;
    return t->in.len > 0 && st == SEC_I_CONTINUE_NEEDED ? 0 : 1;
  }
  say(why, cap, "post-handshake message refused", st);
  return IOCP_ETLS;
}

/* Whether `in` starts with a whole record that carries application data
 * (at TLS 1.3, where every record says so, one larger than an alert). */
static int whole_data_record(const iocp__tls *t) {
  size_t body;
  if (t->in.len < 5 || t->in.p[0] != 23) return 0;
  body = ((size_t)t->in.p[3] << 8) | t->in.p[4];
  return t->in.len >= 5 + body && !alert_record(t, t->in.p, 5);
}

/* Fills `out` with the plaintext of as many whole application-data records
 * as are there and fit, so one on_data (and the program's answer) covers
 * up to a receive buffer's worth, not one record: under Wine every send
 * that answers is a wineserver round trip. Anything else (an incomplete
 * record, an alert, a post-handshake message) waits for the next call
 * once some plaintext is there. */
int iocp__tls_read(iocp__tls *t, uint8_t *out, size_t cap, size_t *n, char *why, size_t cap_why) {
  *n = 0;
  for (;;) {
    SecBuffer b[4];
    SecBufferDesc d;
    SECURITY_STATUS st;
    uint8_t head[5];
    size_t extra = 0, got = 0, head_len, had;
    int i;
    if (t->plain.len > t->plain.off) {
      size_t k = t->plain.len - t->plain.off;
      if (k > cap - *n) k = cap - *n;
      memcpy(out + *n, t->plain.p + t->plain.off, k);
      t->plain.off += k;
      if (t->plain.off == t->plain.len) t->plain.off = t->plain.len = 0;
      *n += k;
      if (*n == cap) return IOCP__TLS_DONE;
      continue;
    }
    if (t->closed) return *n > 0 ? IOCP__TLS_DONE : IOCP__TLS_CLOSED;
    if (*n > 0 && (t->post != 0 || !whole_data_record(t))) return IOCP__TLS_DONE;
    /* Right after SEC_I_RENEGOTIATE the handshake call runs even without
     * input (the message may be inside SChannel already). */
    if (t->post == 1 || (t->post == 2 && t->in.len > 0)) {
      int r = post_handshake(t, why, cap_why);
      if (r < 0) return r;
      if (r == 1) return IOCP__TLS_WANT;
      continue;
    }
    if (t->in.len == 0) return IOCP__TLS_WANT;
    if (not_tls(&t->in)) {
      say(why, cap_why, "not a TLS record", 0);
      return IOCP_ETLS;
    }
    head_len = t->in.len < sizeof(head) ? t->in.len : sizeof(head);
    memcpy(head, t->in.p, head_len);
    had = t->in.len;
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
      t->closed = 1; /* the peer's close_notify */
      continue;
    }
    if (st == SEC_I_RENEGOTIATE && !(t->proto & PROT_TLS13)) {
      say(why, cap_why, "renegotiation refused", st);
      return IOCP_ETLS;
    }
    if (st != SEC_E_OK && st != SEC_I_RENEGOTIATE) {
      say(why, cap_why, "TLS record failed", st);
      return IOCP_ETLS;
    }
    for (i = 1; i < 4; i++) {
      if (b[i].BufferType == SECBUFFER_DATA && b[i].cbBuffer > 0) {
        if (append(&t->plain, b[i].pvBuffer, b[i].cbBuffer) != 0) return IOCP_ENOMEM;
        got += b[i].cbBuffer;
      }
      if (b[i].BufferType == SECBUFFER_EXTRA) extra = b[i].cbBuffer;
    }
    keep_tail(&t->in, extra);
    if (st == SEC_I_RENEGOTIATE) {
      /* TLS 1.3: the message (in EXTRA) goes to the handshake call. */
      t->post = 1;
      continue;
    }
    /* Windows reports a close_notify as SEC_I_CONTEXT_EXPIRED; Wine as
     * SEC_E_OK with no data. No data also comes of an empty record or of
     * a TLS 1.3 post-handshake message Wine took itself: the record's
     * header tells an alert from those. */
    if (got == 0 && alert_record(t, head, head_len)) {
      t->in.len = 0;
      t->closed = 1;
      continue;
    }
    if (got == 0 && extra >= had) {
      say(why, cap_why, "DecryptMessage took nothing", st);
      return IOCP_ETLS;
    }
  }
}

int iocp__tls_pending(iocp__tls *t) {
  return t->plain.len > t->plain.off || t->in.len > 0 || t->closed;
}

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
  SecPkgContext_ApplicationProtocol ap;
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
  memset(&ap, 0, sizeof(ap));
  if (t->alpn.len > 0 &&
      QueryContextAttributesW(&t->ctx, SECPKG_ATTR_APPLICATION_PROTOCOL, &ap) == SEC_E_OK &&
      ap.ProtoNegoStatus == SecApplicationProtocolNegotiationStatus_Success &&
      ap.ProtoNegoExt == SecApplicationProtocolNegotiationExt_ALPN &&
      ap.ProtocolIdSize > 0) { /* at most 255 bytes: info->alpn holds them */
    memcpy(info->alpn, ap.ProtocolId, ap.ProtocolIdSize);
    info->alpn[ap.ProtocolIdSize] = '\0';
  }
}
