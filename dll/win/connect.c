/* Outbound connections on the completion port: ConnectEx on a socket that
 * is bound to the wildcard address of the target's family and associated
 * with the port first (ConnectEx requires both), fetched once per family
 * with WSAIoctl. The completion sets SO_UPDATE_CONNECT_CONTEXT, so that
 * shutdown() and getpeername() work, and hands the result to the core. The
 * Windows twin of dll/linux/connect.c. */
#include "internal.h"

#include <string.h>

BOOL iocp__win_connectex(iocp_server *s, SOCKET sock, const struct sockaddr *addr, int len,
                         OVERLAPPED *ol) {
  LPFN_CONNECTEX fn = iocp__server_eng(s)->connectex[addr->sa_family == AF_INET6];
  return fn(sock, addr, len, NULL, 0, NULL, ol);
}

/* The extension pointer for this family; written once, racing writers store
 * the same value. */
static int fetch_connectex(iocp_server *s, SOCKET sock, int family) {
  LPFN_CONNECTEX *slot = &iocp__server_eng(s)->connectex[family == AF_INET6];
  LPFN_CONNECTEX fn = NULL;
  GUID g = WSAID_CONNECTEX;
  int rc;
  if (InterlockedCompareExchangePointer((void *volatile *)slot, NULL, NULL) != NULL)
    return IOCP_OK;
  rc = iocp__win_extension(sock, g, &fn, sizeof(fn));
  if (rc != IOCP_OK) return rc;
  InterlockedExchangePointer((void *volatile *)slot, (void *)fn);
  return IOCP_OK;
}

static int bind_wildcard(SOCKET sock, int family) {
  struct sockaddr_storage any;
  int len = family == AF_INET6 ? (int)sizeof(struct sockaddr_in6) : (int)sizeof(struct sockaddr_in);
  memset(&any, 0, sizeof(any));
  any.ss_family = (ADDRESS_FAMILY)family; /* address and port 0: any */
  if (iocp__hooks.bind(sock, (const struct sockaddr *)&any, len) != 0)
    return iocp__win_error(WSAGetLastError());
  return IOCP_OK;
}

int iocp__eng_connect(iocp__conn *c, const struct sockaddr *addr, int addrlen) {
  iocp_server *s = iocp__conn_server(c);
  SOCKET sock = iocp__win_socket(addr->sa_family);
  int rc;
  if (sock == INVALID_SOCKET) return iocp__win_error(WSAGetLastError());
  if (addr->sa_family == AF_INET6) {
    /* Windows makes IPv6 sockets v6-only: an IPv4-mapped target
     * (::ffff:a.b.c.d) would be unreachable, where Linux connects. Best
     * effort: without it only such targets fail. */
    DWORD v6only = 0;
    iocp__hooks.setsockopt(sock, IPPROTO_IPV6, IPV6_V6ONLY, (const char *)&v6only, sizeof(v6only));
  }
  rc = bind_wildcard(sock, addr->sa_family);
  if (rc == IOCP_OK) rc = fetch_connectex(s, sock, addr->sa_family);
  if (rc == IOCP_OK &&
      iocp__hooks.create_io_completion_port((HANDLE)sock, iocp__server_eng(s)->port, (ULONG_PTR)c, 0) == NULL)
    rc = iocp__win_error(GetLastError());
  if (rc != IOCP_OK) {
    iocp__hooks.closesocket(sock);
    return rc;
  }
  iocp__conn_eng(c)->sock = sock;
  iocp__conn_eng(c)->v6 = addr->sa_family == AF_INET6;
  iocp__conn_eng(c)->connect_err = 0;
  memset(&iocp__conn_eng(c)->connect_op.ol, 0, sizeof(iocp__conn_eng(c)->connect_op.ol));
  iocp__conn_eng(c)->connect_op.kind = IOCP__OP_CONNECT;
  if (!iocp__hooks.connectex(s, sock, addr, addrlen, &iocp__conn_eng(c)->connect_op.ol)) {
    DWORD err = WSAGetLastError();
    if (err != ERROR_IO_PENDING) {
      /* Failed at once (no packet will come): report it from a worker all
       * the same, as the connection's own error. */
      iocp__conn_eng(c)->connect_err = err != 0 ? err : WSAEINVAL;
      if (!PostQueuedCompletionStatus(iocp__server_eng(s)->port, 0, (ULONG_PTR)c, &iocp__conn_eng(c)->connect_op.ol)) {
        rc = iocp__win_error(GetLastError());
        iocp__eng_close(c, 1);
        return rc;
      }
    }
  }
  return IOCP_OK;
}

void iocp__win_connect_done(iocp__conn *c, DWORD err) {
  int rc;
  iocp__conn_lock(c);
  if (err == 0) err = iocp__conn_eng(c)->connect_err;
  if (iocp__conn_eng(c)->sock == INVALID_SOCKET) {
    err = ERROR_OPERATION_ABORTED; /* closed meanwhile */
  } else if (err == 0) {
    if (iocp__hooks.setsockopt(iocp__conn_eng(c)->sock, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0) != 0)
      err = WSAGetLastError() ? WSAGetLastError() : WSAENOTCONN;
    if (err == 0) iocp__win_receive_mode(c);
    if (err == 0 && iocp__server_config(iocp__conn_server(c))->nodelay) {
      BOOL on = TRUE; /* best effort, as on accepted sockets */
      iocp__hooks.setsockopt(iocp__conn_eng(c)->sock, IPPROTO_TCP, TCP_NODELAY, (const char *)&on, sizeof(on));
    }
  }
  iocp__conn_unlock(c);
  rc = iocp__win_error(err);
  if (err != 0 && rc == IOCP_OK) rc = IOCP_ESYSTEM;
  iocp__conn_connected(c, rc);
}

int iocp__eng_local_address(iocp__conn *c, struct sockaddr_storage *addr) {
  int len = (int)sizeof *addr;
  if (iocp__conn_eng(c)->sock == INVALID_SOCKET) return IOCP_ECLOSED;
  if (getsockname(iocp__conn_eng(c)->sock, (struct sockaddr *)addr, &len) != 0)
    return iocp__win_error((DWORD)WSAGetLastError());
  return IOCP_OK;
}
