/* The I/O completion port engine's own declarations, shared by its files
 * (engine.c, recv.c, connect.c, syserr.c) and by white-box tests; the core
 * never includes it (as libuv's src/win/internal.h). */
#ifndef IOCP_WIN_INTERNAL_H
#define IOCP_WIN_INTERNAL_H

#include "../core/engine.h"

#include <stdint.h>

enum iocp__op_kind {
  IOCP__OP_ACCEPT = 1,
  IOCP__OP_RECV,
  IOCP__OP_SEND,
  IOCP__OP_RUN,
  IOCP__OP_CONNECT
};

/* A pre-posted AcceptEx: its socket and the address buffer it fills. */
typedef struct iocp__accept_op {
  iocp__op op;
  iocp_server *server;
  SOCKET sock;
  int deferred; /* could not be posted; retried by a worker */
  char buf[2 * (sizeof(struct sockaddr_storage) + 16)];
} iocp__accept_op;

/* How the engine works: its switches in the server's tuning (core/engine.h,
 * read once by iocp_create; tests set each path; the shipped library never
 * changes them):
 *
 * zero_byte_recv 1 (default) posts a WSARecv of 0 bytes, which holds no
 * buffer while nothing arrives, then reads what is there with a
 * non-blocking recv into a buffer of the pool; 0 posts a WSARecv into a
 * buffer of the pool that it holds until bytes arrive.
 *
 * skip_on_success 1 (0 by default) sets FILE_SKIP_COMPLETION_PORT_ON_SUCCESS on each
 * connected socket (where its provider has IFS handles): a send that
 * succeeds at once queues no packet, and the engine reports it from the
 * worker's own list, at most IOCP__LOCAL_BUDGET of them per packet taken
 * from the port, the rest through the port (fairness); a receive that
 * succeeds at once is posted to the port, to wait its turn (engine.c says
 * why); 0 lets every completion go through the port.
 *
 * hot_budget -1 (default) lets at most 16 MiB of receive buffers (16 to
 * 4,096 buffers) wait in buffered receives of hot connections at once; N
 * >= 0 at most N (0: every receive is zero-byte). hot_idle_ms (default
 * 1000) is the sweep's period: a buffered receive that waited one to two
 * periods is turned into a zero-byte one (recv.c). Only with zero_byte_recv.
 *
 * dequeue_batch 1 (default) makes workers take one packet per
 * GetQueuedCompletionStatus; N > 1 up to N per GetQueuedCompletionStatusEx
 * (at most IOCP__DEQUEUE_MAX).
 *
 * try_send 1 (default): an iocp_send with nothing queued or in flight first
 * offers its bytes to a non-blocking send(), as the Linux engine does (no
 * operation, no packet for what the socket takes); 0: every send is a
 * WSASend operation (the producer test of test_fairness.c needs a chain of
 * send completions, which immediate sends leave no room for). */
#define IOCP__DEQUEUE_MAX IOCP__TUNING_DEQUEUE_MAX

/* Shared by engine.c and connect.c. */
typedef struct iocp__conn iocp__conn;
int iocp__win_extension(SOCKET sock, GUID guid, void *fn, DWORD size);
SOCKET iocp__win_socket(int family);
/* A ConnectEx completion (err: the operation's Win32 error, 0 on success). */
void iocp__win_connect_done(iocp__conn *c, DWORD err);

/* A connected socket (accepted, or outbound once ConnectEx succeeded; `v6`
 * set) is set up for the receive path the tuning selects, and to skip
 * the port on success where it may. Lock held. */
void iocp__win_receive_mode(iocp__conn *c);

/* recv.c: the receive path. A receive completed (no lock held; err: its
 * Win32 error). */
void iocp__win_recv_done(iocp__conn *c, DWORD err, DWORD bytes);
/* At server start: the budget (-1: the default) and the sweep's period. */
void iocp__win_hot_init(iocp_server *s, int budget, int idle_ms);
/* A worker's wait, shortened to the sweep's period while buffered receives
 * wait; and the sweep, run by whichever worker finds it due. */
DWORD iocp__win_hot_wait(iocp_server *s, DWORD wait);
void iocp__win_hot_sweep(iocp_server *s);

/* engine.c, for recv.c: an operation succeeded at once on a socket that
 * skips the port (lock held; 0 or an IOCP_ code), and the result class of
 * an operation's Win32 error. */
int iocp__win_completed_at_once(iocp__conn *c, iocp__op *op, DWORD bytes);
int iocp__win_io_result(DWORD err);

/* The one translation of Win32 and Winsock error codes to IOCP_ codes. */
int iocp__win_error(DWORD err);

#endif
