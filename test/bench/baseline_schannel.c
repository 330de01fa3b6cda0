/* The TLS yardstick under Wine: a minimal SChannel TLS echo server on an
 * I/O completion port, with no library, written the way the SSPI and
 * Winsock documentation describe it.
 *
 *   baseline_schannel --tls CERT.p12 --tls-password PW [--port N] [--threads N]
 *                     [--recv BYTES]
 *
 * The identity is imported with PFXImportCertStore, the server credential
 * acquired once (SCHANNEL_CRED, TLS 1.2 and 1.3 where the system has it).
 * One completion port, N worker threads (default: one per processor), a few
 * AcceptEx kept posted. Each connection has exactly one operation in flight
 * (as in baseline_iocp.c: no locks): a WSARecv of ciphertext, or the
 * WSASend of everything that receive produced. A received chunk goes
 * through AcceptSecurityContext while the handshake lasts, then through
 * DecryptMessage record by record (in place); each record's plaintext is
 * encrypted back at once (EncryptMessage, one record per record) into the
 * send buffer, which goes out whole before the next receive. Renegotiation
 * and a peer's close_notify end the connection. --recv caps each receive
 * (default 96 KiB, the whole buffer): under Wine every receive is a
 * wineserver round trip, and the cap shows what that costs.
 *
 * Same contract as sample_clients/c/echo_server: prints "listening on port N"
 * and exits when standard input ends. Binds 127.0.0.1 only. */
#define SECURITY_WIN32
#include <winsock2.h>
#include <mswsock.h>
#include <windows.h>
#include <wincrypt.h>
#include <schannel.h>
#include <security.h>
#include <sspi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IN_SIZE (96u << 10)   /* received ciphertext not yet used */
#define OUT_SIZE (160u << 10) /* records to send */
#define KEY_STOP ((ULONG_PTR)1)
#define ADDR_LEN (sizeof(struct sockaddr_in) + 16)

enum op_kind { OP_ACCEPT, OP_RECV, OP_SEND };

struct op {
  OVERLAPPED ol;
  enum op_kind kind;
};

struct accept_op {
  struct op op;
  SOCKET sock;
  char addrs[2 * ADDR_LEN];
};

struct conn {
  struct op op; /* the one operation in flight */
  SOCKET sock;
  CtxtHandle ctx;
  int have_ctx, done;
  SecPkgContext_StreamSizes sizes;
  DWORD in_len;          /* ciphertext in `in` */
  DWORD out_len, out_off; /* bytes in `out`, bytes of them sent */
  char in[IN_SIZE];
  char out[OUT_SIZE];
};

static HANDLE port;
static SOCKET listener = INVALID_SOCKET;
static LPFN_ACCEPTEX accept_ex;
static volatile LONG stopping;
static CredHandle cred;
static DWORD recv_cap = IN_SIZE;

static void conn_close(struct conn *c) {
  if (c->have_ctx) DeleteSecurityContext(&c->ctx);
  closesocket(c->sock);
  free(c);
}

static void post_recv(struct conn *c) {
  WSABUF b;
  DWORD flags = 0;
  if (c->in_len == IN_SIZE) { /* no record is that large: not TLS */
    conn_close(c);
    return;
  }
  b.buf = c->in + c->in_len;
  b.len = IN_SIZE - c->in_len < recv_cap ? IN_SIZE - c->in_len : recv_cap;
  memset(&c->op.ol, 0, sizeof(c->op.ol));
  c->op.kind = OP_RECV;
  if (WSARecv(c->sock, &b, 1, NULL, &flags, &c->op.ol, NULL) != 0 &&
      WSAGetLastError() != WSA_IO_PENDING)
    conn_close(c);
}

static void post_send(struct conn *c) {
  WSABUF b;
  b.buf = c->out + c->out_off;
  b.len = c->out_len - c->out_off;
  memset(&c->op.ol, 0, sizeof(c->op.ol));
  c->op.kind = OP_SEND;
  if (WSASend(c->sock, &b, 1, NULL, 0, &c->op.ol, NULL) != 0 &&
      WSAGetLastError() != WSA_IO_PENDING)
    conn_close(c);
}

/* Keeps the last `extra` bytes of `in` (the next message's). */
static void keep_extra(struct conn *c, DWORD extra) {
  memmove(c->in, c->in + c->in_len - extra, extra);
  c->in_len = extra;
}

/* Handshake steps over what was received; 0 to go on, -1 to close. */
static int handshake(struct conn *c) {
  while (!c->done && c->in_len > 0) {
    SecBuffer ib[2], ob[1];
    SecBufferDesc id = {SECBUFFER_VERSION, 2, ib}, od = {SECBUFFER_VERSION, 1, ob};
    unsigned long attrs = 0;
    SECURITY_STATUS st;
    ib[0].BufferType = SECBUFFER_TOKEN;
    ib[0].pvBuffer = c->in;
    ib[0].cbBuffer = c->in_len;
    ib[1].BufferType = SECBUFFER_EMPTY;
    ib[1].pvBuffer = NULL;
    ib[1].cbBuffer = 0;
    ob[0].BufferType = SECBUFFER_TOKEN;
    ob[0].pvBuffer = NULL;
    ob[0].cbBuffer = 0;
    st = AcceptSecurityContext(&cred, c->have_ctx ? &c->ctx : NULL, &id,
                               ASC_REQ_SEQUENCE_DETECT | ASC_REQ_REPLAY_DETECT |
                                   ASC_REQ_CONFIDENTIALITY | ASC_REQ_STREAM |
                                   ASC_REQ_ALLOCATE_MEMORY,
                               0, &c->ctx, &od, &attrs, NULL);
    if (st == SEC_E_INCOMPLETE_MESSAGE) return 0;
    if (st == SEC_E_OK || st == SEC_I_CONTINUE_NEEDED) c->have_ctx = 1;
    if (ob[0].pvBuffer != NULL) {
      if (ob[0].cbBuffer > OUT_SIZE - c->out_len) st = SEC_E_INSUFFICIENT_MEMORY;
      else memcpy(c->out + c->out_len, ob[0].pvBuffer, ob[0].cbBuffer);
      if (st != SEC_E_INSUFFICIENT_MEMORY) c->out_len += ob[0].cbBuffer;
      FreeContextBuffer(ob[0].pvBuffer);
    }
    if (st != SEC_E_OK && st != SEC_I_CONTINUE_NEEDED) return -1;
    keep_extra(c, ib[1].BufferType == SECBUFFER_EXTRA ? ib[1].cbBuffer : 0);
    if (st == SEC_E_OK) {
      if (QueryContextAttributesW(&c->ctx, SECPKG_ATTR_STREAM_SIZES, &c->sizes) != SEC_E_OK)
        return -1;
      c->done = 1;
    }
  }
  return 0;
}

/* Decrypts the complete records received and encrypts each one's
 * plaintext back into `out`, while `out` has room; 0, or -1 to close. */
static int echo_records(struct conn *c) {
  while (c->in_len > 0) {
    SecBuffer b[4], *data = NULL, *extra = NULL;
    SecBufferDesc d = {SECBUFFER_VERSION, 4, b};
    SECURITY_STATUS st;
    DWORD room = OUT_SIZE - c->out_len, i;
    /* The worst case of one record: all of `in` as plaintext. */
    if (room < c->sizes.cbHeader + c->sizes.cbTrailer + 16384) return 0;
    b[0].BufferType = SECBUFFER_DATA;
    b[0].pvBuffer = c->in;
    b[0].cbBuffer = c->in_len;
    for (i = 1; i < 4; i++) {
      b[i].BufferType = SECBUFFER_EMPTY;
      b[i].pvBuffer = NULL;
      b[i].cbBuffer = 0;
    }
    st = DecryptMessage(&c->ctx, &d, 0, NULL);
    if (st == SEC_E_INCOMPLETE_MESSAGE) return 0;
    if (st != SEC_E_OK) return -1; /* close_notify, renegotiation, errors */
    for (i = 1; i < 4; i++) {
      if (b[i].BufferType == SECBUFFER_DATA && data == NULL) data = &b[i];
      if (b[i].BufferType == SECBUFFER_EXTRA && extra == NULL) extra = &b[i];
    }
    if (data != NULL && data->cbBuffer > 0) {
      char *p = c->out + c->out_len;
      SecBuffer e[4];
      SecBufferDesc ed = {SECBUFFER_VERSION, 4, e};
      if (data->cbBuffer > c->sizes.cbMaximumMessage) return -1;
      e[0].BufferType = SECBUFFER_STREAM_HEADER;
      e[0].pvBuffer = p;
      e[0].cbBuffer = c->sizes.cbHeader;
      e[1].BufferType = SECBUFFER_DATA;
      e[1].pvBuffer = p + c->sizes.cbHeader;
      e[1].cbBuffer = data->cbBuffer;
      memcpy(e[1].pvBuffer, data->pvBuffer, data->cbBuffer);
      e[2].BufferType = SECBUFFER_STREAM_TRAILER;
      e[2].pvBuffer = p + c->sizes.cbHeader + data->cbBuffer;
      e[2].cbBuffer = c->sizes.cbTrailer;
      e[3].BufferType = SECBUFFER_EMPTY;
      e[3].pvBuffer = NULL;
      e[3].cbBuffer = 0;
      if (EncryptMessage(&c->ctx, 0, &ed, 0) != SEC_E_OK || e[0].cbBuffer != c->sizes.cbHeader)
        return -1;
      /* The trailer's length is what EncryptMessage reports (Wine's can be
       * shorter than STREAM_SIZES says). */
      c->out_len += e[0].cbBuffer + e[1].cbBuffer + e[2].cbBuffer;
    }
    keep_extra(c, extra != NULL ? extra->cbBuffer : 0);
  }
  return 0;
}

/* After a receive or a whole send: use what was received, then send what
 * that produced, or receive more. */
static void advance(struct conn *c) {
  if ((!c->done && handshake(c) != 0) || (c->done && echo_records(c) != 0)) {
    if (c->out_len == 0) {
      conn_close(c);
      return;
    }
    c->in_len = 0; /* send what is there (an alert, say); the next receive ends it */
  }
  if (c->out_len > 0) {
    c->out_off = 0;
    post_send(c);
  } else {
    post_recv(c);
  }
}

static void post_accept(struct accept_op *a) {
  DWORD got = 0;
  if (stopping) return;
  a->sock = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
  if (a->sock == INVALID_SOCKET) return;
  memset(&a->op.ol, 0, sizeof(a->op.ol));
  a->op.kind = OP_ACCEPT;
  if (!accept_ex(listener, a->sock, a->addrs, 0, ADDR_LEN, ADDR_LEN, &got, &a->op.ol) &&
      WSAGetLastError() != ERROR_IO_PENDING) {
    closesocket(a->sock);
    a->sock = INVALID_SOCKET;
  }
}

static void on_accept(struct accept_op *a, DWORD err) {
  SOCKET sock = a->sock;
  struct conn *c = NULL;
  a->sock = INVALID_SOCKET;
  if (err == 0 && setsockopt(sock, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (const char *)&listener,
                             sizeof(listener)) == 0)
    c = calloc(1, sizeof(*c));
  post_accept(a);
  if (c == NULL) {
    closesocket(sock);
    return;
  }
  c->sock = sock;
  if (CreateIoCompletionPort((HANDLE)sock, port, (ULONG_PTR)c, 0) == NULL) {
    conn_close(c);
    return;
  }
  post_recv(c);
}

static void on_completion(OVERLAPPED *ol, DWORD bytes, DWORD err) {
  struct op *op = CONTAINING_RECORD(ol, struct op, ol);
  struct conn *c;
  if (op->kind == OP_ACCEPT) {
    on_accept(CONTAINING_RECORD(op, struct accept_op, op), err);
    return;
  }
  c = CONTAINING_RECORD(op, struct conn, op);
  if (err != 0 || bytes == 0) {
    conn_close(c);
  } else if (op->kind == OP_RECV) {
    c->in_len += bytes;
    advance(c);
  } else {
    c->out_off += bytes; /* a send may complete short: send the rest */
    if (c->out_off < c->out_len) {
      post_send(c);
    } else {
      c->out_len = c->out_off = 0;
      advance(c); /* records that did not fit the last time */
    }
  }
}

static DWORD WINAPI worker(void *arg) {
  (void)arg;
  for (;;) {
    DWORD bytes = 0, err = 0;
    ULONG_PTR key = 0;
    OVERLAPPED *ol = NULL;
    BOOL ok = GetQueuedCompletionStatus(port, &bytes, &key, &ol, INFINITE);
    if (ol == NULL) {
      if (ok && key == KEY_STOP) return 0;
      if (!ok) return 1;
      continue;
    }
    if (!ok) err = GetLastError();
    on_completion(ol, bytes, err);
  }
}

static void usage(const char *prog) {
  fprintf(stderr,
          "usage: %s --tls CERT.p12 --tls-password PW [--port N] [--threads N] [--recv BYTES]\n",
          prog);
  exit(2);
}

/* The identity: its certificate with the private key, and the credential. */
static int load_identity(const char *path, const char *password) {
  static BYTE blob_data[1 << 16];
  CRYPT_DATA_BLOB blob;
  wchar_t pw[256];
  HCERTSTORE store;
  PCCERT_CONTEXT cert = NULL;
  SCHANNEL_CRED sc;
  FILE *f = fopen(path, "rb");
  if (f == NULL) return -1;
  blob.cbData = (DWORD)fread(blob_data, 1, sizeof(blob_data), f);
  blob.pbData = blob_data;
  fclose(f);
  if (MultiByteToWideChar(CP_UTF8, 0, password, -1, pw, 256) == 0) return -1;
  store = PFXImportCertStore(&blob, pw, PKCS12_NO_PERSIST_KEY);
  if (store == NULL) return -1;
  while ((cert = CertEnumCertificatesInStore(store, cert)) != NULL) {
    DWORD size = 0;
    if (CertGetCertificateContextProperty(cert, CERT_KEY_CONTEXT_PROP_ID, NULL, &size) ||
        CertGetCertificateContextProperty(cert, CERT_KEY_PROV_INFO_PROP_ID, NULL, &size))
      break;
  }
  if (cert == NULL) return -1;
  memset(&sc, 0, sizeof(sc));
  sc.dwVersion = SCHANNEL_CRED_VERSION;
  sc.cCreds = 1;
  sc.paCred = &cert;
  sc.grbitEnabledProtocols = SP_PROT_TLS1_2_SERVER | SP_PROT_TLS1_3_SERVER;
  sc.dwFlags = SCH_USE_STRONG_CRYPTO;
  if (AcquireCredentialsHandleW(NULL, (SEC_WCHAR *)UNISP_NAME_W, SECPKG_CRED_INBOUND, NULL, &sc,
                                NULL, NULL, &cred, NULL) != SEC_E_OK) {
    /* An SChannel without TLS 1.3 may refuse the pair: TLS 1.2 alone. */
    sc.grbitEnabledProtocols = SP_PROT_TLS1_2_SERVER;
    if (AcquireCredentialsHandleW(NULL, (SEC_WCHAR *)UNISP_NAME_W, SECPKG_CRED_INBOUND, NULL, &sc,
                                  NULL, NULL, &cred, NULL) != SEC_E_OK)
      return -1;
  }
  return 0; /* the store and certificate live as long as the process */
}

int main(int argc, char **argv) {
  unsigned long port_no = 50000, nthreads = 0, naccepts = 8, i;
  const char *p12 = NULL, *password = "";
  struct sockaddr_in sa;
  int salen = sizeof(sa);
  WSADATA wsa;
  GUID guid = WSAID_ACCEPTEX;
  DWORD got = 0;
  HANDLE *threads;
  struct accept_op *accepts;
  int ch;

  for (i = 1; i < (unsigned long)argc; i++) {
    const char *a = argv[i], *v = i + 1 < (unsigned long)argc ? argv[i + 1] : NULL;
    if (v == NULL) usage(argv[0]);
    if (strcmp(a, "--port") == 0)
      port_no = strtoul(v, NULL, 10);
    else if (strcmp(a, "--threads") == 0)
      nthreads = strtoul(v, NULL, 10);
    else if (strcmp(a, "--tls") == 0)
      p12 = v;
    else if (strcmp(a, "--tls-password") == 0)
      password = v;
    else if (strcmp(a, "--recv") == 0)
      recv_cap = strtoul(v, NULL, 10);
    else
      usage(argv[0]);
    i++;
  }
  if (p12 == NULL || port_no > 65535 || recv_cap < 4096 || recv_cap > IN_SIZE) usage(argv[0]);
  if (nthreads == 0) {
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    nthreads = si.dwNumberOfProcessors ? si.dwNumberOfProcessors : 1;
  }
  if (load_identity(p12, password) != 0) {
    fprintf(stderr, "cannot load the identity %s\n", p12);
    return 1;
  }

  if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return 1;
  port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, (DWORD)nthreads);
  listener = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((u_short)port_no);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (port == NULL || listener == INVALID_SOCKET ||
      bind(listener, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(listener, SOMAXCONN) != 0 ||
      getsockname(listener, (struct sockaddr *)&sa, &salen) != 0 ||
      CreateIoCompletionPort((HANDLE)listener, port, 0, 0) == NULL ||
      WSAIoctl(listener, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof(guid), &accept_ex,
               sizeof(accept_ex), &got, NULL, NULL) != 0) {
    fprintf(stderr, "cannot listen on 127.0.0.1 port %lu (error %d)\n", port_no,
            WSAGetLastError());
    return 1;
  }

  threads = calloc(nthreads, sizeof(*threads));
  accepts = calloc(naccepts, sizeof(*accepts));
  if (threads == NULL || accepts == NULL) return 1;
  for (i = 0; i < nthreads; i++)
    if ((threads[i] = CreateThread(NULL, 0, worker, NULL, 0, NULL)) == NULL) return 1;
  for (i = 0; i < naccepts; i++) post_accept(&accepts[i]);

  printf("listening on port %u\n", (unsigned)ntohs(sa.sin_port));
  fflush(stdout);
  do ch = getchar(); while (ch != EOF && ch != '\n');

  InterlockedExchange(&stopping, 1);
  closesocket(listener);
  for (i = 0; i < nthreads; i++) PostQueuedCompletionStatus(port, 0, KEY_STOP, NULL);
  WaitForMultipleObjects((DWORD)nthreads, threads, TRUE, 5000);
  for (i = 0; i < naccepts; i++)
    if (accepts[i].sock != INVALID_SOCKET) closesocket(accepts[i].sock);
  WSACleanup();
  return 0;
}
