/* The I/O completion port engine.
 *
 * One port per server, a pool of workers blocked in GetQueuedCompletionStatus
 * (or taking up to dequeue_batch packets per GetQueuedCompletionStatusEx),
 * `accepts_posted` AcceptEx kept posted at all times, one WSARecv and at most
 * one (gathered) WSASend per connection. Each operation embeds its
 * OVERLAPPED; completion keys are pointer-sized (the connection, or 0 for
 * accepts and the stop sentinel).
 *
 * Connected sockets skip the port when an operation succeeds at once
 * (FILE_SKIP_COMPLETION_PORT_ON_SUCCESS, where the provider allows it). A
 * send that did waits in the worker's own list and is reported right after
 * the packet the worker is handling, with no trip through the port; a budget
 * bounds how many per packet, past which they go through the port like any
 * completion (to the back of the line), as in the epoll engine's own list
 * (dll/linux/engine.c). A receive that did is posted to the port: new work
 * waits its turn behind the other connections'. */
#include "internal.h"

#include <assert.h>
#include <limits.h>
#include <mstcpip.h>
#include <stdlib.h>
#include <string.h>
#include <winternl.h> /* RtlNtStatusToDosError */

#define IOCP__KEY_STOP ((ULONG_PTR)1)
/* Wakes a worker to retry deferred accepts (posted when one is deferred by a
 * thread that is not a worker, e.g. iocp_create: the workers may all be
 * blocked with no time-out, and would never look at them). */
#define IOCP__KEY_RETRY ((ULONG_PTR)2)
/* How often a worker retries accepts that could not be posted (e.g. the
 * process was out of sockets for a moment). */
#define IOCP__ACCEPT_RETRY_MS 50
/* The most bytes one send hands to Winsock (as the epoll engine): far below
 * the 4 GiB the completion's DWORD byte count can report. */
#define IOCP__SEND_MAX ((size_t)1 << 30)

BOOL iocp__win_acceptex(iocp_server *s, SOCKET listener, SOCKET sock, void *buf,
                        OVERLAPPED *ol) {
  DWORD got = 0;
  DWORD addrlen = sizeof(struct sockaddr_storage) + 16;
  return iocp__server_eng(s)->acceptex(listener, sock, buf, 0, addrlen, addrlen, &got, ol);
}

int iocp__win_io_result(DWORD err) {
  if (err == 0) return IOCP__IO_OK;
  return iocp__win_error(err) == IOCP_ECLOSED ? IOCP__IO_ABORTED : IOCP__IO_RESET;
}

SOCKET iocp__win_socket(int family) {
  return iocp__hooks.wsasocket(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                               WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
}

/* ---- Accepting ---------------------------------------------------------------- */

/* Posts one AcceptEx. On failure the op is deferred and a worker retries it;
 * on_log hears when deferring starts and when every accept is posted again. */
static int post_accept(iocp_server *s, iocp__accept_op *a) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  int rc = IOCP_OK, resumed = 0, wake = 0;
  DWORD pause_err = 0;
  SOCKET sock = iocp__win_socket(e->family);
  DWORD sock_err = sock == INVALID_SOCKET ? WSAGetLastError() : 0;

  iocp__mutex_lock(&e->accept_lock);
  if (!e->accepting) {
    rc = IOCP_ECLOSED;
    goto out;
  }
  if (sock == INVALID_SOCKET) {
    pause_err = sock_err;
    rc = iocp__win_error(sock_err);
    goto defer;
  }
  a->sock = sock;
  sock = INVALID_SOCKET;
  memset(&a->op.ol, 0, sizeof(a->op.ol));
  if (!iocp__hooks.acceptex(s, e->listener, a->sock, a->buf, &a->op.ol)) {
    DWORD err = WSAGetLastError();
    if (err != ERROR_IO_PENDING) {
      pause_err = err;
      rc = iocp__win_error(err);
      iocp__hooks.closesocket(a->sock);
      a->sock = INVALID_SOCKET;
      goto defer;
    }
  }
  e->accepts_pending++;
  if (e->pause_logged && e->accepts_deferred == 0) {
    e->pause_logged = 0;
    resumed = 1;
  }
  goto out;
defer:
  if (!a->deferred) {
    a->deferred = 1;
    InterlockedIncrement(&e->accepts_deferred);
    wake = !iocp__on_worker(s); /* a worker re-reads `accepts_deferred` itself */
  }
  if (e->pause_logged) pause_err = 0; /* told already */
  e->pause_logged = 1;
out:
  iocp__mutex_unlock(&e->accept_lock);
  if (sock != INVALID_SOCKET) iocp__hooks.closesocket(sock);
  /* Only a closed port refuses a packet, and ours lives until destroy. */
  if (wake) PostQueuedCompletionStatus(e->port, 0, IOCP__KEY_RETRY, NULL);
  if (pause_err != 0)
    iocp__log(s, IOCP_LOG_WARN, rc,
              "cannot post AcceptEx (error %lu%s): accepts parked, retried every %d ms",
              (unsigned long)pause_err, pause_err == WSAEMFILE ? ", out of sockets" : "",
              IOCP__ACCEPT_RETRY_MS);
  if (resumed) iocp__log(s, IOCP_LOG_INFO, 0, "accepting connections again");
  return rc;
}

static void retry_deferred_accepts(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  uint32_t i;
  for (i = 0; i < e->naccepts; i++) {
    iocp__accept_op *a = &e->accepts[i];
    int take;
    iocp__mutex_lock(&e->accept_lock);
    take = a->deferred && e->accepting;
    if (take) {
      a->deferred = 0;
      InterlockedDecrement(&e->accepts_deferred);
    }
    iocp__mutex_unlock(&e->accept_lock);
    if (take) post_accept(s, a);
  }
}

/* TCP keep-alive as configured; best effort, like TCP_NODELAY. Windows
 * takes both times at once (SIO_KEEPALIVE_VALS): a 0 gets its default. */
static void set_keepalive(iocp_server *s, SOCKET sock) {
  const iocp_config *cfg = iocp__server_config(s);
  BOOL on = TRUE;
  if (!cfg->keepalive) return;
  iocp__hooks.setsockopt(sock, SOL_SOCKET, SO_KEEPALIVE, (const char *)&on, sizeof(on));
  if (cfg->keepalive_idle_ms != 0 || cfg->keepalive_interval_ms != 0) {
    struct tcp_keepalive ka;
    DWORD got = 0;
    ka.onoff = 1;
    ka.keepalivetime = cfg->keepalive_idle_ms ? cfg->keepalive_idle_ms : 7200000;
    ka.keepaliveinterval = cfg->keepalive_interval_ms ? cfg->keepalive_interval_ms : 1000;
    iocp__hooks.wsaioctl(sock, SIO_KEEPALIVE_VALS, &ka, sizeof(ka), NULL, 0, &got, NULL, NULL);
  }
}

/* Turns a completed AcceptEx into a connection. A failure here (the peer
 * already gone, SO_UPDATE_ACCEPT_CONTEXT refused, out of memory) drops this
 * one socket only; the accept is posted again first in every case. */
static void on_accept(iocp__accept_op *a, DWORD err) {
  iocp_server *s = a->server;
  struct iocp__eng_server *e = iocp__server_eng(s);
  struct sockaddr_storage peer;
  SOCKET sock = a->sock;
  iocp__conn *c;
  int stopping;

  a->sock = INVALID_SOCKET;
  memset(&peer, 0, sizeof(peer));
  if (err == 0) {
    iocp__mutex_lock(&e->accept_lock);
    if (e->listener == INVALID_SOCKET ||
        iocp__hooks.setsockopt(sock, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT,
                               (const char *)&e->listener, sizeof(e->listener)) != 0)
      err = WSAGetLastError() ? WSAGetLastError() : WSAENOTSOCK;
    iocp__mutex_unlock(&e->accept_lock);
  }
  if (err == 0 && iocp__server_config(s)->nodelay) {
    /* Best effort: without it the connection still works, only slower. */
    BOOL on = TRUE;
    iocp__hooks.setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, (const char *)&on, sizeof(on));
  }
  if (err == 0) set_keepalive(s, sock);
  if (err == 0) {
    struct sockaddr *local = NULL, *remote = NULL;
    int llen = 0, rlen = 0;
    DWORD addrlen = sizeof(struct sockaddr_storage) + 16;
    e->get_sockaddrs(a->buf, 0, addrlen, addrlen, &local, &llen, &remote, &rlen);
    if (remote != NULL && rlen > 0 && (size_t)rlen <= sizeof(peer)) memcpy(&peer, remote, rlen);
  }

  /* keep the chain whole before anything else; ECLOSED: we are stopping */
  stopping = post_accept(s, a) == IOCP_ECLOSED;

  if (err != 0) {
    iocp__hooks.closesocket(sock);
    if (!stopping && err != ERROR_OPERATION_ABORTED) iocp__stat_add(s, IOCP__STAT_ACCEPT_ERRORS, 1);
    if (!stopping && err != ERROR_OPERATION_ABORTED)
      iocp__log(s, IOCP_LOG_WARN, iocp__win_error(err),
                "accepted connection dropped: AcceptEx or SO_UPDATE_ACCEPT_CONTEXT failed "
                "(error %lu)", (unsigned long)err);
  } else if ((c = iocp__conn_alloc(s)) == NULL) {
    iocp__stat_add(s, IOCP__STAT_ACCEPT_ERRORS, 1);
    iocp__hooks.closesocket(sock);
    iocp__log(s, IOCP_LOG_WARN, IOCP_ENOMEM, "accepted connection dropped: out of memory");
  } else {
    iocp__conn_eng(c)->sock = sock;
    if (iocp__hooks.create_io_completion_port((HANDLE)sock, e->port, (ULONG_PTR)c, 0) ==
        NULL) {
      DWORD perr = GetLastError();
      iocp__stat_add(s, IOCP__STAT_ACCEPT_ERRORS, 1);
      iocp__conn_unref(c); /* closes the socket */
      iocp__log(s, IOCP_LOG_WARN, iocp__win_error(perr),
                "accepted connection dropped: cannot add it to the port (error %lu)",
                (unsigned long)perr);
    } else {
      iocp__conn_eng(c)->v6 = e->family == AF_INET6;
      iocp__win_receive_mode(c); /* not shared yet: no lock needed */
      iocp__conn_accepted(c, (const struct sockaddr *)&peer);
    }
  }

  iocp__mutex_lock(&e->accept_lock);
  if (--e->accepts_pending == 0) iocp__cond_broadcast(&e->accept_cond);
  iocp__mutex_unlock(&e->accept_lock);
}

/* ---- Operations that completed at once ------------------------------------------
 * A receive or send on a socket that skips the port (skip_port) and
 * succeeded at once queues no packet: the engine owes its report.
 *
 * A send's report is the rest of the work at hand (on_sent, the next send of
 * the queue): on a worker of this server it waits in the worker's own list
 * and is reported right after the packet being handled, with no trip through
 * the port. The budget bounds those reports per packet taken from the port;
 * past it they are posted to the port, behind everything already queued, so
 * a connection whose sends keep completing at once (a producer in on_sent)
 * cannot hold a worker against all others.
 *
 * A receive that succeeded at once brings new work (the peer's next
 * request): it is posted to the port, to wait its turn behind the other
 * connections' completions as it would without skipping. Handled at once,
 * a connection whose peer answers quickly would get several requests served
 * per turn while the others wait, which under load shows as a tail latency
 * several times the port's (measured under Wine: see the README). */
#define IOCP__LOCAL_BUDGET 8
static IOCP__TLS struct iocp__eng_conn *local_head, *local_tail;
static IOCP__TLS int local_budget;

/* Lock held. The operation succeeded with `bytes`; 0 or an IOCP_ code (the
 * port refused the packet: only when it is closed, which it is not before
 * every connection is gone). */
int iocp__win_completed_at_once(iocp__conn *c, iocp__op *op, DWORD bytes) {
  iocp_server *s = iocp__conn_server(c);
  struct iocp__eng_conn *e = iocp__conn_eng(c);
  op->ol.Internal = 0; /* STATUS_SUCCESS, as a packet from the port would carry */
  op->ol.InternalHigh = bytes;
  if (op == &e->send_op && iocp__on_worker(s) && local_budget > 0) {
    local_budget--;
    e->next_sent = NULL;
    if (local_tail != NULL)
      local_tail->next_sent = e;
    else
      local_head = e;
    local_tail = e;
    return IOCP_OK;
  }
  if (!PostQueuedCompletionStatus(iocp__server_eng(s)->port, bytes, (ULONG_PTR)c, &op->ol))
    return iocp__win_error(GetLastError());
  return IOCP_OK;
}

/* ---- Workers --------------------------------------------------------------------- */

/* One completion: of a packet from the port, or from the worker's own list.
 * err is the operation's Win32 error (0: success). */
static void complete(ULONG_PTR key, OVERLAPPED *ol, DWORD err, DWORD bytes) {
  iocp__op *op = CONTAINING_RECORD(ol, iocp__op, ol);
  switch (op->kind) {
  case IOCP__OP_ACCEPT:
    on_accept(CONTAINING_RECORD(op, iocp__accept_op, op), err);
    break;
  case IOCP__OP_RECV:
    iocp__win_recv_done((iocp__conn *)key, err, bytes);
    break;
  case IOCP__OP_SEND:
    iocp__conn_send_done((iocp__conn *)key, iocp__win_io_result(err), bytes);
    break;
  case IOCP__OP_RUN:
    iocp__conn_run((iocp__conn *)key);
    break;
  case IOCP__OP_CONNECT:
    iocp__win_connect_done((iocp__conn *)key, err);
    break;
  default:
    assert(0); /* every operation we post sets its kind */
    break;
  }
}

/* Ends the handling of one packet: reports the sends that completed at once
 * meanwhile (which may add more, within the budget), then renews the budget. */
static void run_local(void) {
  while (local_head != NULL) {
    struct iocp__eng_conn *e = local_head;
    local_head = e->next_sent;
    if (local_head == NULL) local_tail = NULL;
    e->next_sent = NULL;
    complete((ULONG_PTR)iocp__eng_conn_owner(e), &e->send_op.ol, 0,
             (DWORD)e->send_op.ol.InternalHigh);
  }
  local_budget = IOCP__LOCAL_BUDGET;
}

/* A dequeued packet's operation error, from its status (what
 * GetQueuedCompletionStatus would have put in GetLastError). */
static DWORD packet_error(const OVERLAPPED *ol) {
  NTSTATUS st = (NTSTATUS)ol->Internal;
  return st >= 0 ? 0 : RtlNtStatusToDosError(st);
}

/* Takes up to e->dequeue_batch packets into got (with their errors in
 * errs); returns how many, or 0 with GetLastError() set (WAIT_TIMEOUT, or a
 * broken port). A packet without an OVERLAPPED is one of ours: the stop
 * sentinel or IOCP__KEY_RETRY. */
static ULONG dequeue(struct iocp__eng_server *e, OVERLAPPED_ENTRY *got, DWORD *errs, DWORD wait) {
  ULONG n = 0, i;
  if (e->dequeue_batch > 1) {
    if (!GetQueuedCompletionStatusEx(e->port, got, e->dequeue_batch, &n, wait, FALSE)) return 0;
    for (i = 0; i < n; i++) errs[i] = got[i].lpOverlapped != NULL ? packet_error(got[i].lpOverlapped) : 0;
    return n;
  }
  memset(got, 0, sizeof(*got));
  errs[0] = 0;
  if (!GetQueuedCompletionStatus(e->port, &got->dwNumberOfBytesTransferred, &got->lpCompletionKey,
                                 &got->lpOverlapped, wait)) {
    if (got->lpOverlapped == NULL) return 0; /* no packet */
    errs[0] = GetLastError(); /* the operation failed, not the port */
  }
  return 1;
}

static DWORD WINAPI worker_main(void *arg) {
  iocp_server *s = arg;
  struct iocp__eng_server *e = iocp__server_eng(s);
  iocp__worker_enter(s, (uint32_t)InterlockedIncrement(&e->next_index) - 1);
  local_budget = IOCP__LOCAL_BUDGET;
  for (;;) {
    OVERLAPPED_ENTRY got[IOCP__DEQUEUE_MAX];
    DWORD errs[IOCP__DEQUEUE_MAX];
    DWORD wait = iocp__win_hot_wait(s, e->accepts_deferred ? IOCP__ACCEPT_RETRY_MS : INFINITE);
    ULONG n, i, stops = 0;
    int retry = 0;

    iocp__worker_flush();
    n = dequeue(e, got, errs, wait);

    if (n == 0) {
      /* A time-out (retry deferred accepts), or a broken port (only when it
       * is closed under us). */
      DWORD perr = GetLastError();
      if (perr != WAIT_TIMEOUT) {
        iocp__log(s, IOCP_LOG_ERROR, iocp__win_error(perr),
                  "worker thread stopped: GetQueuedCompletionStatus failed (error %lu)",
                  (unsigned long)perr);
        break;
      }
      retry = 1;
    }
    for (i = 0; i < n; i++) {
      if (got[i].lpOverlapped == NULL) {
        if (got[i].lpCompletionKey == IOCP__KEY_STOP)
          stops++;
        else
          retry = 1; /* IOCP__KEY_RETRY */
        continue;
      }
      complete(got[i].lpCompletionKey, got[i].lpOverlapped, errs[i], got[i].dwNumberOfBytesTransferred);
      run_local();
    }
    if (stops > 0) {
      /* One sentinel per worker: a batch that took another's gives it back. */
      while (--stops > 0) PostQueuedCompletionStatus(e->port, 0, IOCP__KEY_STOP, NULL);
      break;
    }
    if (retry && e->accepts_deferred) retry_deferred_accepts(s);
    iocp__win_hot_sweep(s);
  }
  iocp__worker_leave(s);
  return 0;
}

static void stop_workers(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  uint32_t i;
  for (i = 0; i < e->nthreads; i++) PostQueuedCompletionStatus(e->port, 0, IOCP__KEY_STOP, NULL);
  for (i = 0; i < e->nthreads; i++) {
    WaitForSingleObject(e->threads[i], INFINITE);
    CloseHandle(e->threads[i]);
  }
  e->nthreads = 0;
}

/* ---- Start and stop ------------------------------------------------------------ */

int iocp__win_extension(SOCKET sock, GUID guid, void *fn, DWORD size) {
  DWORD got = 0;
  if (WSAIoctl(sock, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof(guid), fn, size, &got,
               NULL, NULL) != 0)
    return iocp__win_error(WSAGetLastError());
  return IOCP_OK;
}

static int open_listener(iocp_server *s, const struct sockaddr *addr, int addrlen) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  struct sockaddr_storage bound;
  int boundlen = sizeof(bound);
  BOOL on = TRUE;
  int backlog = iocp__server_config(s)->backlog ? (int)iocp__server_config(s)->backlog : SOMAXCONN;

  e->listener = iocp__win_socket(e->family);
  if (e->listener == INVALID_SOCKET) return iocp__win_error(WSAGetLastError());
  /* Without it Windows lets another process bind the same port and take
   * our connections: no server rather than a port that can be hijacked. */
  if (iocp__hooks.setsockopt(e->listener, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&on,
                             sizeof(on)) != 0) {
    DWORD err = WSAGetLastError();
    iocp__log(s, IOCP_LOG_ERROR, iocp__win_error(err),
              "cannot set SO_EXCLUSIVEADDRUSE (error %lu): not listening", (unsigned long)err);
    return iocp__win_error(err);
  }
  /* Explicit either way: v6-only unless dual stack was asked for. */
  if (e->family == AF_INET6) {
    DWORD v6only = iocp__server_config(s)->dual_stack ? 0 : 1;
    if (iocp__hooks.setsockopt(e->listener, IPPROTO_IPV6, IPV6_V6ONLY, (const char *)&v6only,
                               sizeof(v6only)) != 0) {
      DWORD err = WSAGetLastError();
      iocp__log(s, IOCP_LOG_ERROR, iocp__win_error(err), "cannot set IPV6_V6ONLY to %lu (error %lu)",
                (unsigned long)v6only, (unsigned long)err);
      return iocp__win_error(err);
    }
  }
  if (iocp__hooks.bind(e->listener, addr, addrlen) != 0 ||
      iocp__hooks.listen(e->listener, backlog) != 0 ||
      getsockname(e->listener, (struct sockaddr *)&bound, &boundlen) != 0)
    return iocp__win_error(WSAGetLastError());
  iocp__server_bound(s, &bound);
  if (iocp__hooks.create_io_completion_port((HANDLE)e->listener, e->port, 0, 0) == NULL)
    return iocp__win_error(GetLastError());
  {
    GUID g1 = WSAID_ACCEPTEX, g2 = WSAID_GETACCEPTEXSOCKADDRS;
    int rc = iocp__win_extension(e->listener, g1, &e->acceptex, sizeof(e->acceptex));
    if (rc == IOCP_OK)
      rc = iocp__win_extension(e->listener, g2, &e->get_sockaddrs, sizeof(e->get_sockaddrs));
    return rc;
  }
}

static void release(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  uint32_t i;
  if (e->listener != INVALID_SOCKET) iocp__hooks.closesocket(e->listener);
  e->listener = INVALID_SOCKET;
  for (i = 0; e->accepts != NULL && i < e->naccepts; i++)
    if (e->accepts[i].sock != INVALID_SOCKET) iocp__hooks.closesocket(e->accepts[i].sock);
  iocp__free(e->accepts);
  e->accepts = NULL;
  iocp__free(e->threads);
  e->threads = NULL;
  if (e->port != NULL) CloseHandle(e->port);
  e->port = NULL;
  if (e->wait_event != NULL) CloseHandle(e->wait_event);
  e->wait_event = NULL;
  iocp__cond_destroy(&e->accept_cond);
  iocp__mutex_destroy(&e->accept_lock);
  if (e->wsa_started) WSACleanup();
  e->wsa_started = 0;
}

int iocp__eng_start(iocp_server *s, const struct sockaddr *addr, int addrlen,
                    const iocp__tuning *tuning) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  WSADATA wsa;
  uint32_t i, want;
  int rc;

  memset(e, 0, sizeof(*e));
  e->listener = INVALID_SOCKET;
  e->family = addr->sa_family;
  e->zero_byte_recv = tuning->zero_byte_recv;
  e->skip_on_success = tuning->skip_on_success;
  e->try_send = tuning->try_send;
  e->dequeue_batch = (ULONG)tuning->dequeue_batch;
  iocp__win_hot_init(s, tuning->hot_budget, tuning->hot_idle_ms);
  iocp__mutex_init(&e->accept_lock, IOCP__RANK_ACCEPT);
  iocp__cond_init(&e->accept_cond);
  if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
    rc = IOCP_ESYSTEM;
    goto fail;
  }
  e->wsa_started = 1;

  want = iocp__worker_count(s);
  e->port = iocp__hooks.create_io_completion_port(INVALID_HANDLE_VALUE, NULL, 0, want);
  if (e->port == NULL) {
    rc = iocp__win_error(GetLastError());
    goto fail;
  }
  rc = open_listener(s, addr, addrlen);
  if (rc != IOCP_OK) goto fail;

  e->naccepts = iocp__server_config(s)->accepts_posted;
  e->accepts = iocp__calloc(e->naccepts, sizeof(*e->accepts));
  e->threads = iocp__calloc(want, sizeof(*e->threads));
  if (e->accepts == NULL || e->threads == NULL) {
    rc = IOCP_ENOMEM;
    goto fail;
  }
  for (i = 0; i < e->naccepts; i++) {
    e->accepts[i].op.kind = IOCP__OP_ACCEPT;
    e->accepts[i].server = s;
    e->accepts[i].sock = INVALID_SOCKET;
  }
  for (i = 0; i < want; i++) {
    e->threads[i] = CreateThread(NULL, 0, worker_main, s, 0, NULL);
    if (e->threads[i] == NULL) {
      rc = iocp__win_error(GetLastError());
      goto fail_workers;
    }
    e->nthreads++;
  }

  /* An accept that cannot be posted now is deferred and retried by the
   * workers; it does not fail the server. */
  e->accepting = 1;
  for (i = 0; i < e->naccepts; i++) post_accept(s, &e->accepts[i]);
  return IOCP_OK;

fail_workers:
  stop_workers(s);
fail:
  release(s);
  return rc;
}

void iocp__eng_stop_accepting(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  iocp__mutex_lock(&e->accept_lock);
  e->accepting = 0;
  if (e->listener != INVALID_SOCKET) {
    CancelIoEx((HANDLE)e->listener, NULL);
    iocp__hooks.closesocket(e->listener);
    e->listener = INVALID_SOCKET;
  }
  iocp__mutex_unlock(&e->accept_lock);
}

void iocp__eng_finish(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  iocp__mutex_lock(&e->accept_lock);
  while (e->accepts_pending != 0) iocp__cond_wait(&e->accept_cond, &e->accept_lock);
  iocp__mutex_unlock(&e->accept_lock);
  stop_workers(s);
  release(s);
}

/* ---- Connection operations (connection lock held) --------------------------- */

/* Gathers the buffers into WSABUFs, at most IOCP__SEND_MAX bytes in all: the
 * completion reports a 32-bit byte count, and a buffer cut short must be the
 * last one (bytes after a cut would go out before the rest of that buffer). */
static int gather_wsabufs(WSABUF *b, const iocp__iov *iov, int n) {
  size_t total = 0;
  int i;
  for (i = 0; i < n && total < IOCP__SEND_MAX; i++) {
    size_t len = iov[i].len < IOCP__SEND_MAX - total ? iov[i].len : IOCP__SEND_MAX - total;
    b[i].buf = (char *)iov[i].base;
    b[i].len = (ULONG)len;
    total += len;
  }
  return i;
}

int iocp__eng_send(iocp__conn *c, const iocp__iov *iov, int n) {
  struct iocp__eng_conn *e = iocp__conn_eng(c);
  WSABUF b[IOCP__MAX_IOV]; /* Winsock captures the array before returning */
  DWORD sent = 0, err;
  n = gather_wsabufs(b, iov, n);
  memset(&e->send_op.ol, 0, sizeof(e->send_op.ol));
  e->send_op.kind = IOCP__OP_SEND;
  if (iocp__hooks.wsasend(e->sock, b, (DWORD)n, &sent, 0, &e->send_op.ol, NULL) == 0)
    return e->skip_port ? iocp__win_completed_at_once(c, &e->send_op, sent) : IOCP_OK;
  err = WSAGetLastError();
  return err == WSA_IO_PENDING ? IOCP_OK : iocp__win_error(err);
}

int iocp__eng_post_run(iocp__conn *c) {
  memset(&iocp__conn_eng(c)->run_op.ol, 0, sizeof(iocp__conn_eng(c)->run_op.ol));
  iocp__conn_eng(c)->run_op.kind = IOCP__OP_RUN;
  if (!PostQueuedCompletionStatus(iocp__server_eng(iocp__conn_server(c))->port, 0, (ULONG_PTR)c, &iocp__conn_eng(c)->run_op.ol))
    return iocp__win_error(GetLastError());
  return IOCP_OK;
}

/* Queue mode: the waiting caller sleeps on the core's condition variable
 * here. (Serving the port from it, as the Linux engine serves loop 0, is
 * not done yet: the stop packets meant for workers would need passing on.) */
int iocp__eng_caller_serve(iocp_server *s, int32_t timeout_ms) {
  (void)s;
  (void)timeout_ms;
  return 0;
}

void iocp__eng_caller_wake(iocp_server *s) { (void)s; }

/* The wait handle (iocp_wait_handle()): a manual-reset event, so that every
 * waiter sees it set until the drainer resets it. The workers do all the
 * I/O here, so it stands for queued events only. */
int iocp__eng_wait_handle_open(iocp_server *s, intptr_t *handle) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  if (e->wait_event == NULL) {
    e->wait_event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (e->wait_event == NULL) return iocp__win_error(GetLastError());
  }
  *handle = (intptr_t)e->wait_event;
  return IOCP_OK;
}

void iocp__eng_wait_handle_signal(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  if (e->wait_event != NULL) SetEvent(e->wait_event);
}

void iocp__eng_wait_handle_clear(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  if (e->wait_event != NULL) ResetEvent(e->wait_event);
}

/* An immediate send, as uv_try_write: a send() on the non-blocking socket
 * takes what the socket has room for, with no operation to report. A call
 * without an OVERLAPPED queues no packet on the port, so the bytes cost no
 * trip through it (under Wine: no remove_completion request; with many
 * connections one request of the eight or so an echo costs there). What it
 * does not take becomes a WSASend operation, as before. Not on a socket
 * that stayed blocking (FIONBIO failed), or before ConnectEx completed. */
long long iocp__eng_try_send(iocp__conn *c, const uint8_t *data, size_t len) {
  struct iocp__eng_conn *e = iocp__conn_eng(c);
  int n, cap = len < IOCP__SEND_MAX ? (int)len : (int)IOCP__SEND_MAX;
  if (e->sock == INVALID_SOCKET || !e->nonblocking ||
      !iocp__server_eng(iocp__conn_server(c))->try_send)
    return 0;
  n = iocp__hooks.send(e->sock, (const char *)data, cap, 0);
  if (n >= 0) return n;
  return WSAGetLastError() == WSAEWOULDBLOCK ? 0 : -1;
}

int iocp__eng_shutdown_send(iocp__conn *c) {
  if (iocp__hooks.shutdown(iocp__conn_eng(c)->sock, SD_SEND) != 0) return iocp__win_error(WSAGetLastError());
  return IOCP_OK;
}

void iocp__eng_close(iocp__conn *c, int abortive) {
  SOCKET sock = iocp__conn_eng(c)->sock;
  if (sock == INVALID_SOCKET) return;
  if (abortive) {
    struct linger l;
    l.l_onoff = 1;
    l.l_linger = 0; /* RST, queued bytes dropped */
    iocp__hooks.setsockopt(sock, SOL_SOCKET, SO_LINGER, (const char *)&l, sizeof(l));
  }
  CancelIoEx((HANDLE)sock, NULL);
  iocp__hooks.closesocket(sock);
  iocp__conn_eng(c)->sock = INVALID_SOCKET;
}

void iocp__eng_conn_init(iocp__conn *c) { iocp__conn_eng(c)->sock = INVALID_SOCKET; }

void iocp__eng_conn_free(iocp__conn *c) {
  if (iocp__conn_eng(c)->sock != INVALID_SOCKET) iocp__hooks.closesocket(iocp__conn_eng(c)->sock);
  iocp__conn_eng(c)->sock = INVALID_SOCKET;
}
