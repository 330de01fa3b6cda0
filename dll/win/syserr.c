/* Win32 and Winsock error codes to IOCP_ codes: the only place that knows
 * them. Everything that is not a caller's mistake or a resource limit is
 * IOCP_ESYSTEM; a cancelled operation is IOCP_ECLOSED. */
#include "internal.h"

int iocp__win_error(DWORD err) {
  switch (err) {
  case 0: return IOCP_OK;
  case WSAEADDRINUSE:
  case ERROR_ADDRESS_ALREADY_ASSOCIATED: return IOCP_EADDRINUSE;
  case WSAEADDRNOTAVAIL: return IOCP_EADDRNOTAVAIL;
  case WSAEACCES:
  case ERROR_ACCESS_DENIED: return IOCP_EACCES;
  case WSAEAFNOSUPPORT:
  case WSAEPFNOSUPPORT:
  case WSAEPROTONOSUPPORT: return IOCP_EAFNOSUPPORT;
  case WSAEMFILE:
  case ERROR_TOO_MANY_OPEN_FILES: return IOCP_EMFILE;
  case WSAECONNREFUSED:
  case ERROR_CONNECTION_REFUSED: return IOCP_ECONNREFUSED;
  case WSAETIMEDOUT:
  case ERROR_SEM_TIMEOUT: return IOCP_ETIMEDOUT;
  case WSAENETUNREACH:
  case WSAEHOSTUNREACH:
  case WSAENETDOWN:
  case WSAEHOSTDOWN:
  case ERROR_NETWORK_UNREACHABLE:
  case ERROR_HOST_UNREACHABLE: return IOCP_EUNREACH;
  case WSAENOBUFS:
  case WSA_NOT_ENOUGH_MEMORY:
  case ERROR_OUTOFMEMORY:
  case ERROR_NO_SYSTEM_RESOURCES: return IOCP_ENOMEM;
  case ERROR_OPERATION_ABORTED:
  case WSAEINTR: return IOCP_ECLOSED;
  case WSAEINVAL: return IOCP_EINVAL;
  default: return IOCP_ESYSTEM;
  }
}
