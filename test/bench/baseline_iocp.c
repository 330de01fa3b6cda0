/* The yardstick for the benchmark: the simplest correct IOCP echo server,
 * with no library, written the way the Winsock documentation describes it.
 *
 *   baseline_iocp [--port N] [--threads N] [--accepts N] [--batch N]
 *
 * One completion port, N worker threads (default: one per processor), a few
 * AcceptEx kept posted. Each connection has exactly one operation in flight
 * at any time: a WSARecv, or the WSASend of what that receive got (re-posted
 * for the rest after a short send), then the next WSARecv. With one
 * operation per connection no locks or reference counts are needed: the
 * completion that fails is the last one, and it frees the connection.
 *
 * --batch N > 1 makes the workers dequeue with GetQueuedCompletionStatusEx,
 * N entries at a time, to see whether batching matters (under Wine it is
 * not expected to).
 *
 * Same contract as sample_clients/c/echo_server: prints "listening on port N"
 * and exits when standard input ends (or a line is entered). Connections
 * still open then are dropped with the process. Binds 127.0.0.1 only. */
#include <winsock2.h>
#include <mswsock.h>
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_SIZE 16384 /* the library's default receive buffer */
#define KEY_STOP ((ULONG_PTR)1)
#define ADDR_LEN (sizeof(struct sockaddr_in) + 16) /* AcceptEx: address + 16 */
#define MAX_BATCH 256

enum op_kind { OP_ACCEPT, OP_RECV, OP_SEND };

struct op {
  OVERLAPPED ol; /* first, but found with CONTAINING_RECORD anyway */
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
  DWORD len, off; /* bytes received, bytes of them echoed so far */
  char buf[BUF_SIZE];
};

static HANDLE port;
static SOCKET listener = INVALID_SOCKET;
static LPFN_ACCEPTEX accept_ex;
static volatile LONG stopping;
static unsigned batch = 1;

static void conn_close(struct conn *c) {
  closesocket(c->sock);
  free(c);
}

static void post_recv(struct conn *c) {
  WSABUF b;
  DWORD flags = 0;
  b.buf = c->buf;
  b.len = sizeof(c->buf);
  memset(&c->op.ol, 0, sizeof(c->op.ol));
  c->op.kind = OP_RECV;
  if (WSARecv(c->sock, &b, 1, NULL, &flags, &c->op.ol, NULL) != 0 &&
      WSAGetLastError() != WSA_IO_PENDING)
    conn_close(c); /* no completion will come */
}

static void post_send(struct conn *c) {
  WSABUF b;
  b.buf = c->buf + c->off;
  b.len = c->len - c->off;
  memset(&c->op.ol, 0, sizeof(c->op.ol));
  c->op.kind = OP_SEND;
  if (WSASend(c->sock, &b, 1, NULL, 0, &c->op.ol, NULL) != 0 &&
      WSAGetLastError() != WSA_IO_PENDING)
    conn_close(c);
}

static void post_accept(struct accept_op *a) {
  DWORD got = 0;
  if (stopping) return;
  a->sock = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
  if (a->sock == INVALID_SOCKET) return; /* one accept fewer; the others go on */
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
    c = malloc(sizeof(*c));
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

/* One completion. The connection's only operation has ended, so whatever
 * this does next (post another, or free) cannot race with anything. */
static void on_completion(OVERLAPPED *ol, DWORD bytes, DWORD err) {
  struct op *op = CONTAINING_RECORD(ol, struct op, ol);
  struct conn *c;
  if (op->kind == OP_ACCEPT) {
    on_accept(CONTAINING_RECORD(op, struct accept_op, op), err);
    return;
  }
  c = CONTAINING_RECORD(op, struct conn, op);
  if (err != 0 || bytes == 0) { /* reset, aborted, or the peer's FIN */
    conn_close(c);
  } else if (op->kind == OP_RECV) {
    c->len = bytes;
    c->off = 0;
    post_send(c);
  } else {
    c->off += bytes; /* a send may complete short: send the rest */
    if (c->off < c->len)
      post_send(c);
    else
      post_recv(c);
  }
}

/* GetQueuedCompletionStatusEx reports no error code: an operation failed
 * when its OVERLAPPED's Internal (an NTSTATUS) is not STATUS_SUCCESS (0). */
static DWORD entry_error(const OVERLAPPED_ENTRY *e) {
  return e->lpOverlapped->Internal == 0 ? 0 : ERROR_OPERATION_ABORTED;
}

static DWORD WINAPI worker(void *arg) {
  (void)arg;
  for (;;) {
    if (batch <= 1) {
      DWORD bytes = 0, err = 0;
      ULONG_PTR key = 0;
      OVERLAPPED *ol = NULL;
      BOOL ok = GetQueuedCompletionStatus(port, &bytes, &key, &ol, INFINITE);
      if (ol == NULL) {
        if (ok && key == KEY_STOP) return 0;
        if (!ok) return 1; /* the port itself failed */
        continue;
      }
      if (!ok) err = GetLastError(); /* the operation failed, not the port */
      on_completion(ol, bytes, err);
    } else {
      OVERLAPPED_ENTRY e[MAX_BATCH];
      ULONG n = 0, i;
      int stop = 0;
      if (!GetQueuedCompletionStatusEx(port, e, batch, &n, INFINITE, FALSE)) return 1;
      for (i = 0; i < n; i++) {
        if (e[i].lpOverlapped == NULL)
          stop |= e[i].lpCompletionKey == KEY_STOP; /* finish the batch first */
        else
          on_completion(e[i].lpOverlapped, e[i].dwNumberOfBytesTransferred, entry_error(&e[i]));
      }
      if (stop) return 0;
    }
  }
}

static unsigned long arg_num(const char *text, unsigned long max, const char *prog) {
  char *end;
  unsigned long v;
  if (text == NULL || *text == '\0') goto bad;
  v = strtoul(text, &end, 10);
  if (*end != '\0' || v > max) goto bad;
  return v;
bad:
  fprintf(stderr, "usage: %s [--port N] [--threads N] [--accepts N] [--batch N]\n", prog);
  exit(2);
}

int main(int argc, char **argv) {
  unsigned long port_no = 50000, nthreads = 0, naccepts = 8, i;
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
    if (strcmp(a, "--port") == 0)
      port_no = arg_num(v, 65535, argv[0]);
    else if (strcmp(a, "--threads") == 0)
      nthreads = arg_num(v, 256, argv[0]);
    else if (strcmp(a, "--accepts") == 0)
      naccepts = arg_num(v, 256, argv[0]);
    else if (strcmp(a, "--batch") == 0)
      batch = (unsigned)arg_num(v, MAX_BATCH, argv[0]);
    else
      arg_num(NULL, 0, argv[0]);
    i++;
  }
  if (nthreads == 0) {
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    nthreads = si.dwNumberOfProcessors ? si.dwNumberOfProcessors : 1;
  }
  if (naccepts == 0) naccepts = 1;

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

  /* Stop accepting (pending AcceptEx complete as aborted and are not
   * re-posted), then stop the workers with one sentinel each. */
  InterlockedExchange(&stopping, 1);
  closesocket(listener);
  for (i = 0; i < nthreads; i++) PostQueuedCompletionStatus(port, 0, KEY_STOP, NULL);
  WaitForMultipleObjects((DWORD)nthreads, threads, TRUE, 5000);
  for (i = 0; i < naccepts; i++)
    if (accepts[i].sock != INVALID_SOCKET) closesocket(accepts[i].sock);
  WSACleanup();
  return 0;
}
