/* The receive path of the I/O completion port engine: a zero-byte WSARecv
 * for a connection that is quiet, a buffered one for a connection that is
 * busy, and the sweep that turns a buffered receive that waits too long back
 * into a zero-byte one.
 *
 * A zero-byte WSARecv holds no memory while nothing arrives; when it
 * completes, a non-blocking recv reads what is there into a buffer of the
 * pool. That costs a busy connection one more system call per receive (under
 * Wine one more recv_socket request, with its get_handle_fd: the echo sample
 * needed 11.4 wineserver requests per echo against the minimal IOCP echo's
 * 8.3). So a connection whose last receive found bytes is "hot": its next
 * receive is a WSARecv into a buffer of the pool, whose bytes arrive with
 * the completion. Two bounds keep an idle connection small (no buffer while it waits):
 *
 * - a budget: at most hot_budget buffered receives posted at once in a
 *   server (by default 16 MiB worth of receive buffers, 16 to 4,096 of
 *   them: 256 of the default 64 KiB); past it a hot connection posts a
 *   zero-byte receive. It bounds what busy connections hold at once;
 * - a sweep, every hot_idle_ms by whichever worker sees it due: a buffered
 *   receive posted before the previous sweep (it waited one to two periods)
 *   is cancelled (CancelIoEx on its OVERLAPPED), its buffer goes back and a
 *   zero-byte receive takes its place; the connection is quiet again until
 *   bytes come.
 *
 * Cancelling races with the completion: the receive may complete with bytes
 * before the cancel takes (they are delivered as usual, nothing is lost:
 * a cancelled WSARecv took no bytes), and the socket may be closed meanwhile
 * (then the cancelled receive is reported aborted, as a close's is). Either
 * way the connection lock orders them: the sweep marks `demote` and cancels
 * under it; the completion reads and clears the mark under it. The bytes of
 * a buffered receive reach the core exactly as the pooled path's do (one
 * buffer of the pool, iocp__conn_recv_done), so on_data, ordering and
 * pause_recv are the same on both. */
#include "internal.h"

#include <assert.h>
#include <limits.h>
#include <string.h>

/* Whether sockets of a family may skip the port: only where the provider's
 * handles are real file handles (XP1_IFS_HANDLES). A layered provider that
 * is not (an old firewall's or proxy's LSP) completes operations itself and
 * may report one that skipped the port anyway, or none; libuv makes the same
 * check. Asked once per family, of the first connected socket; an error
 * counts as "not". */
static int ifs_handles(iocp_server *s, SOCKET sock, int v6) {
  volatile LONG *known = &iocp__server_eng(s)->ifs[v6];
  LONG v = InterlockedCompareExchange(known, 0, 0);
  if (v == 0) {
    WSAPROTOCOL_INFOW info;
    int len = sizeof(info);
    v = getsockopt(sock, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&info, &len) == 0 &&
                (info.dwServiceFlags1 & XP1_IFS_HANDLES)
            ? 1
            : 2;
    InterlockedExchange(known, v); /* racing askers store the same answer */
  }
  return v == 1;
}

void iocp__win_receive_mode(iocp__conn *c) {
  struct iocp__eng_conn *e = iocp__conn_eng(c);
  iocp_server *s = iocp__conn_server(c);
  u_long nonblocking = 1;
  /* The zero-byte receive reads with a non-blocking recv afterwards, and
   * an immediate send is a non-blocking send (engine.c); without
   * non-blocking mode the connection keeps a buffer posted and every send
   * is an operation. Overlapped operations are not affected by it. */
  e->nonblocking = iocp__hooks.ioctlsocket(e->sock, FIONBIO, &nonblocking) == 0;
  e->zero_byte = iocp__server_eng(s)->zero_byte_recv && e->nonblocking;
  e->hot = 0;
  e->demote = 0;
  /* Best effort: without it every completion goes through the port. The
   * socket's event is never waited on, so it need not be set either. */
  e->skip_port = iocp__server_eng(s)->skip_on_success &&
                 ifs_handles(s, e->sock, e->v6) &&
                 iocp__hooks.set_completion_modes(
                     (HANDLE)e->sock,
                     FILE_SKIP_COMPLETION_PORT_ON_SUCCESS | FILE_SKIP_SET_EVENT_ON_HANDLE);
}

void iocp__win_hot_init(iocp_server *s, int budget, int idle_ms) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  if (budget < 0) {
    size_t n = ((size_t)16 << 20) / iocp__buf_size(s);
    budget = n < 16 ? 16 : n > 4096 ? 4096 : (int)n;
  }
  e->hot_budget = budget;
  e->hot_idle_ms = idle_ms > 0 ? (DWORD)idle_ms : 1000;
  e->hot_posted = 0;
  e->hot_gen = 0;
  e->hot_demoted = 0;
  e->next_sweep = (LONG64)(iocp__now_ms() + e->hot_idle_ms);
}

/* Lock held. Whether this receive takes a buffer: always without zero-byte
 * receives; for a hot connection while the server's budget allows (then
 * counted in hot_posted until its completion). */
static int take_budget(struct iocp__eng_server *se, struct iocp__eng_conn *e) {
  if (!e->hot || se->hot_budget <= 0) return 0;
  if (InterlockedIncrement(&se->hot_posted) <= se->hot_budget) return 1;
  InterlockedDecrement(&se->hot_posted);
  return 0;
}

static int post_recv_locked(iocp__conn *c) {
  assert(iocp__conn_held(c));
  struct iocp__eng_conn *e = iocp__conn_eng(c);
  iocp_server *s = iocp__conn_server(c);
  struct iocp__eng_server *se = iocp__server_eng(s);
  int counted = e->zero_byte && take_budget(se, e);
  WSABUF b;
  DWORD flags = 0, got = 0;
  int rc = IOCP_OK;
  b.buf = NULL;
  b.len = 0;
  assert(e->rbuf == NULL);
  if (!e->zero_byte || counted) {
    e->rbuf = iocp__buf_get(s);
    if (e->rbuf == NULL && !counted) return IOCP_ENOMEM;
    if (e->rbuf == NULL) { /* a zero-byte receive needs no memory */
      InterlockedDecrement(&se->hot_posted);
      counted = 0;
    } else {
      b.buf = (char *)e->rbuf;
      b.len = (ULONG)iocp__buf_size(s);
    }
  }
  if (counted) e->hot_gen = (uint32_t)se->hot_gen;
  memset(&e->recv_op.ol, 0, sizeof(e->recv_op.ol));
  e->recv_op.kind = IOCP__OP_RECV;
  if (iocp__hooks.wsarecv(e->sock, &b, 1, &got, &flags, &e->recv_op.ol, NULL) == 0) {
    if (e->skip_port) rc = iocp__win_completed_at_once(c, &e->recv_op, got); /* else a packet comes */
  } else {
    DWORD err = WSAGetLastError();
    if (err != WSA_IO_PENDING) rc = iocp__win_error(err);
  }
  if (rc != IOCP_OK) {
    iocp__buf_put(s, e->rbuf);
    e->rbuf = NULL;
    if (counted) InterlockedDecrement(&se->hot_posted);
  }
  return rc;
}

int iocp__eng_recv(iocp__conn *c) {
  if (iocp__conn_eng(c)->sock == INVALID_SOCKET) return IOCP_ECLOSED;
  return post_recv_locked(c);
}

/* After a zero-byte WSARecv completed: reads what is there into a buffer of
 * the pool, or posts the zero-byte receive again when nothing is (the bytes
 * that woke it may have been taken by an earlier read). Returns 1 when the
 * receive is reported in *buf / *n / *result, 0 when it is posted again. */
static int read_now_locked(iocp__conn *c, uint8_t **buf, size_t *n, int *result) {
  assert(iocp__conn_held(c));
  struct iocp__eng_conn *e = iocp__conn_eng(c);
  iocp_server *s = iocp__conn_server(c);
  size_t cap = iocp__buf_size(s);
  int got;
  *buf = NULL;
  *n = 0;
  *result = IOCP__IO_ABORTED;
  if (e->sock == INVALID_SOCKET) return 1; /* closed meanwhile */
  *buf = iocp__buf_get(s);
  if (*buf == NULL) {
    *result = IOCP__IO_RESET;
    return 1;
  }
  got = iocp__hooks.recv(e->sock, (char *)*buf, cap > INT_MAX ? INT_MAX : (int)cap, 0);
  if (got > 0) {
    *n = (size_t)got;
    *result = IOCP__IO_OK;
    e->hot = 1; /* bytes came: the next receive brings its own buffer */
    return 1;
  }
  iocp__buf_put(s, *buf);
  *buf = NULL;
  if (got == 0) {
    *result = IOCP__IO_OK; /* the peer's FIN */
    return 1;
  }
  if (WSAGetLastError() == WSAEWOULDBLOCK && post_recv_locked(c) == IOCP_OK) return 0;
  iocp__stat_add(s, IOCP__STAT_SYSTEM_ERRORS, 1);
  *result = IOCP__IO_RESET;
  return 1;
}

/* A receive completed (no lock held). */
void iocp__win_recv_done(iocp__conn *c, DWORD err, DWORD bytes) {
  struct iocp__eng_conn *e = iocp__conn_eng(c);
  iocp_server *s = iocp__conn_server(c);
  uint8_t *buf;
  size_t n = bytes;
  int result = iocp__win_io_result(err), demoted;
  iocp__conn_lock(c);
  buf = e->rbuf; /* set while a buffered receive was posted */
  e->rbuf = NULL;
  demoted = e->demote;
  e->demote = 0;
  if (buf != NULL && e->zero_byte) InterlockedDecrement(&iocp__server_eng(s)->hot_posted);
  if (demoted && result == IOCP__IO_ABORTED && e->sock != INVALID_SOCKET) {
    /* The sweep cancelled it (it took no bytes): wait with no buffer. */
    iocp__buf_put(s, buf);
    buf = NULL;
    e->hot = 0;
    if (post_recv_locked(c) == IOCP_OK) {
      iocp__conn_unlock(c);
      return; /* posted again: still owed a report */
    }
    iocp__stat_add(s, IOCP__STAT_SYSTEM_ERRORS, 1);
    result = IOCP__IO_RESET;
  } else if (buf == NULL && result == IOCP__IO_OK && !read_now_locked(c, &buf, &n, &result)) {
    iocp__conn_unlock(c);
    return; /* posted again: still owed a report */
  }
  iocp__conn_unlock(c);
  if (result != IOCP__IO_OK || n == 0) {
    iocp__buf_put(s, buf);
    buf = NULL;
  }
  iocp__conn_recv_done(c, result, buf, n);
}

/* ---- The sweep ---------------------------------------------------------------- */

static void sweep_one(iocp__conn *c, void *arg) {
  struct iocp__eng_conn *e = iocp__conn_eng(c);
  uint32_t gen = *(const uint32_t *)arg;
  iocp__conn_lock(c);
  if (e->zero_byte && e->rbuf != NULL && !e->demote && e->sock != INVALID_SOCKET &&
      gen - e->hot_gen >= 2) {
    e->demote = 1;
    InterlockedIncrement(&iocp__server_eng(iocp__conn_server(c))->hot_demoted);
    /* Fails (ERROR_NOT_FOUND) when it completed meanwhile: its packet is on
     * its way and clears the mark. */
    CancelIoEx((HANDLE)e->sock, &e->recv_op.ol);
  }
  iocp__conn_unlock(c);
}

DWORD iocp__win_hot_wait(iocp_server *s, DWORD wait) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  if (e->hot_posted <= 0) return wait;
  return wait < e->hot_idle_ms ? wait : e->hot_idle_ms;
}

void iocp__win_hot_sweep(iocp_server *s) {
  struct iocp__eng_server *e = iocp__server_eng(s);
  uint64_t now;
  LONG64 due = e->next_sweep;
  uint32_t gen;
  if (e->hot_posted <= 0) return;
  now = iocp__now_ms();
  if ((LONG64)now < due) return;
  /* One worker sweeps per period: the one that moves the deadline. */
  if (InterlockedCompareExchange64(&e->next_sweep, (LONG64)(now + e->hot_idle_ms), due) != due)
    return;
  gen = (uint32_t)InterlockedIncrement(&e->hot_gen);
  iocp__conn_each(s, sweep_one, &gen);
}
