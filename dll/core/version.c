/* The version of the library actually loaded. */
#include "internal.h"

#define IOCP_STR_(x) #x
#define IOCP_STR(x) IOCP_STR_(x)

uint32_t IOCP_CALL iocp_version(void) { return IOCP_VERSION_NUMBER; }

const char *IOCP_CALL iocp_version_string(void) {
  return IOCP_STR(IOCP_VERSION_MAJOR) "." IOCP_STR(IOCP_VERSION_MINOR) "." IOCP_STR(
      IOCP_VERSION_PATCH);
}
