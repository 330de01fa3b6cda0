/* Error codes: the one table in iocpsrv.h turned into text. */
#include "internal.h"

const char *IOCP_CALL iocp_strerror(int err) {
  switch (err) {
  case IOCP_OK: return "success";
#define IOCP_STRERROR_CASE_(name, code, text) case IOCP_##name: return text;
  IOCP_ERRNO_MAP(IOCP_STRERROR_CASE_)
#undef IOCP_STRERROR_CASE_
  default: return "unknown error";
  }
}

const char *IOCP_CALL iocp_err_name(int err) {
  switch (err) {
  case IOCP_OK: return "IOCP_OK";
#define IOCP_ERR_NAME_CASE_(name, code, text) case IOCP_##name: return "IOCP_" #name;
  IOCP_ERRNO_MAP(IOCP_ERR_NAME_CASE_)
#undef IOCP_ERR_NAME_CASE_
  default: return "IOCP_UNKNOWN";
  }
}
