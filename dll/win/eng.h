/* The I/O completion port engine's part of the server and connection structs,
 * which the core embeds (core/engine.h: iocp__conn_eng, iocp__server_eng), and
 * its entries in the call table (core/hooks.h). Nothing else: the engine's own
 * declarations are in internal.h, which only the engine's files include. */
#ifndef IOCP_WIN_ENG_H
#define IOCP_WIN_ENG_H

#include "../core/sys.h" /* iocp__mutex */
#include <mswsock.h>
#include <stdint.h>

typedef struct iocp_server iocp_server;

/* One overlapped operation; recovered from its OVERLAPPED with
 * CONTAINING_RECORD. */
typedef struct iocp__op {
  OVERLAPPED ol;
  int kind; /* enum iocp__op_kind (internal.h) */
} iocp__op;

/* A receive pending on a socket that was cancelled (CancelIoEx) and closed
 * completes on Windows, aborted; under Wine it sometimes never completes,
 * and its connection's reference is never dropped. So iocp_destroy stops
 * waiting once no connection has ended for this long (core/evq.c), and
 * leaves such connections allocated: the system may still write their
 * OVERLAPPED (and a buffered receive's buffer, which is lent, never in the
 * pool) until the process ends. Their completions go nowhere: the port is
 * closed and no worker is left. */
#define IOCP__ENG_OPS_MAY_NOT_COMPLETE 1
#define IOCP__ENG_OPS_GRACE_MS 2000

/* The first member of the core's connection (core/engine.h); under the
 * connection's lock. */
struct iocp__eng_conn {
  SOCKET sock;
  unsigned nonblocking : 1; /* FIONBIO took: recv() and send() never block */
  unsigned zero_byte : 1; /* receives with a zero-byte WSARecv (zero_byte_recv) */
  unsigned skip_port : 1; /* no packet for an operation that succeeds at once */
  unsigned v6 : 1;        /* an IPv6 socket */
  unsigned hot : 1;       /* its last receive found bytes: the next one takes a buffer (recv.c) */
  unsigned demote : 1;    /* the sweep cancelled its buffered receive (recv.c) */
  uint8_t *rbuf; /* a buffered receive's buffer while it is posted, or NULL */
  uint32_t hot_gen; /* the server's hot_gen when its buffered receive was posted */
  iocp__op recv_op;
  iocp__op send_op;
  /* In a worker's list while send_op's report is owed: it completed at once
   * and skipped the port (engine.c); its byte count is in ol.InternalHigh. */
  struct iocp__eng_conn *next_sent;
  iocp__op run_op;
  iocp__op connect_op;
  DWORD connect_err; /* ConnectEx failed at once: the error its packet carries */
};

struct iocp__eng_server {
  HANDLE port;
  int family;
  int wsa_started;
  LPFN_ACCEPTEX acceptex;
  LPFN_GETACCEPTEXSOCKADDRS get_sockaddrs;
  HANDLE *threads;
  uint32_t nthreads;
  volatile LONG next_index; /* each worker takes its index from it */
  struct iocp__accept_op *accepts;
  uint32_t naccepts;

  iocp__mutex accept_lock;
  iocp__cond accept_cond;
  SOCKET listener;          /* under accept_lock */
  int accepting;            /* under accept_lock */
  uint32_t accepts_pending; /* under accept_lock: posted and not yet handled */
  volatile LONG accepts_deferred; /* accepts waiting to be posted again */
  int pause_logged;         /* under accept_lock: on_log heard of the deferring */
  LPFN_CONNECTEX connectex[2]; /* fetched once per family: [0] IPv4, [1] IPv6 */
  volatile LONG ifs[2]; /* per family: 0 not asked yet, 1 IFS handles, 2 not (an LSP) */
  /* The server's tuning (core/engine.h), as iocp__eng_start got it. */
  int zero_byte_recv;
  int skip_on_success;
  int try_send;
  ULONG dequeue_batch;  /* 1..IOCP__DEQUEUE_MAX */
  /* Buffered receives of hot connections (recv.c). */
  int hot_budget;            /* at most this many posted at once */
  DWORD hot_idle_ms;         /* the sweep's period */
  volatile LONG hot_posted;  /* posted now */
  volatile LONG hot_gen;     /* sweeps so far */
  volatile LONG hot_demoted; /* buffered receives the sweeps cancelled (for tests) */
  volatile LONG64 next_sweep; /* GetTickCount64() when the next sweep is due */
  /* iocp_wait_handle(): a manual-reset event the core sets and the
   * drainer resets; NULL until asked for. */
  HANDLE wait_event;
};

/* Socket calls of this engine, replaceable by tests. */
BOOL iocp__win_acceptex(iocp_server *s, SOCKET listener, SOCKET sock, void *buf,
                        OVERLAPPED *ol);
BOOL iocp__win_connectex(iocp_server *s, SOCKET sock, const struct sockaddr *addr, int len,
                         OVERLAPPED *ol);

#define IOCP__ENGINE_HOOKS                                                          \
  SOCKET(WSAAPI *wsasocket)(int af, int type, int proto, LPWSAPROTOCOL_INFOW info,  \
                            GROUP g, DWORD flags);                                  \
  int(WSAAPI *bind)(SOCKET s, const struct sockaddr *addr, int len);                \
  int(WSAAPI *listen)(SOCKET s, int backlog);                                       \
  int(WSAAPI *setsockopt)(SOCKET s, int level, int name, const char *val, int len); \
  int(WSAAPI *closesocket)(SOCKET s);                                               \
  int(WSAAPI *shutdown)(SOCKET s, int how);                                         \
  int(WSAAPI *recv)(SOCKET s, char *buf, int len, int flags);                       \
  int(WSAAPI *send)(SOCKET s, const char *buf, int len, int flags);                 \
  int(WSAAPI *ioctlsocket)(SOCKET s, long cmd, u_long *arg);                        \
  int(WSAAPI *wsarecv)(SOCKET s, LPWSABUF bufs, DWORD n, LPDWORD got, LPDWORD flags, \
                       LPWSAOVERLAPPED ol, LPWSAOVERLAPPED_COMPLETION_ROUTINE fn);  \
  int(WSAAPI *wsasend)(SOCKET s, LPWSABUF bufs, DWORD n, LPDWORD sent, DWORD flags, \
                       LPWSAOVERLAPPED ol, LPWSAOVERLAPPED_COMPLETION_ROUTINE fn);  \
  BOOL (*acceptex)(iocp_server * s, SOCKET listener, SOCKET sock, void *buf,        \
                   OVERLAPPED *ol);                                                 \
  BOOL (*connectex)(iocp_server * s, SOCKET sock, const struct sockaddr *addr,      \
                    int len, OVERLAPPED *ol);                                       \
  HANDLE(WINAPI *create_io_completion_port)(HANDLE file, HANDLE port, ULONG_PTR key, \
                                            DWORD threads);                         \
  int(WSAAPI *wsaioctl)(SOCKET s, DWORD code, void *in, DWORD inlen, void *out,     \
                        DWORD outlen, LPDWORD got, LPWSAOVERLAPPED ol,               \
                        LPWSAOVERLAPPED_COMPLETION_ROUTINE fn);                             \
  BOOL(WINAPI *set_completion_modes)(HANDLE file, UCHAR flags);

#define IOCP__ENGINE_HOOKS_DEFAULT                                                     \
  WSASocketW, bind, listen, setsockopt, closesocket, shutdown, recv, send, ioctlsocket, \
      WSARecv, WSASend,                                                                \
      iocp__win_acceptex, iocp__win_connectex, CreateIoCompletionPort, WSAIoctl,       \
      SetFileCompletionNotificationModes

#endif
