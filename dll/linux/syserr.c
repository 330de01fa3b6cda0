/* errno values to IOCP_ codes and to the engine's reactions: the only place
 * that knows them. Everything that is not a caller's mistake or a resource
 * limit is IOCP_ESYSTEM; a cancelled operation is IOCP_ECLOSED. */
#include "internal.h"

#include <errno.h>

int iocp__linux_error(int err) {
  switch (err) {
  case 0: return IOCP_OK;
  case EADDRINUSE: return IOCP_EADDRINUSE;
  case EADDRNOTAVAIL: return IOCP_EADDRNOTAVAIL;
  case EACCES:
  case EPERM: return IOCP_EACCES;
  case EAFNOSUPPORT:
  case EPFNOSUPPORT:
  case EPROTONOSUPPORT: return IOCP_EAFNOSUPPORT;
  case EMFILE:
  case ENFILE: return IOCP_EMFILE;
  case ENOMEM:
  case ENOBUFS:
  case EAGAIN: /* pthread_create: out of threads or memory */
    return IOCP_ENOMEM;
  case ECONNREFUSED: return IOCP_ECONNREFUSED;
  case ETIMEDOUT: return IOCP_ETIMEDOUT;
  case ENETUNREACH:
  case EHOSTUNREACH:
  case ENETDOWN:
  case EHOSTDOWN: return IOCP_EUNREACH;
  case ECANCELED: return IOCP_ECLOSED;
  case EINVAL: return IOCP_EINVAL;
  default: return IOCP_ESYSTEM;
  }
}

int iocp__linux_errclass(int err) {
  switch (err) {
  case EAGAIN:
#if EWOULDBLOCK != EAGAIN
  case EWOULDBLOCK:
#endif
  case EINTR: return IOCP__ERR_AGAIN;
  case ENOMEM:
  case ENOBUFS:
  case EMFILE:
  case ENFILE: return IOCP__ERR_RESOURCE;
  /* accept4(2): errors of the pending connection itself. */
  case ECONNABORTED:
  case ECONNRESET:
  case EPROTO:
  case EPERM:
  case ETIMEDOUT:
  case ENETDOWN:
  case ENETUNREACH:
  case EHOSTDOWN:
  case EHOSTUNREACH:
  case ENONET:
  case ENOPROTOOPT:
  case EOPNOTSUPP: return IOCP__ERR_PEER;
  default: return IOCP__ERR_OTHER;
  }
}
