/* A program built against the 1.0.0 header (written into the build folder
 * from the repository's history: see ../meson.build) runs on this library:
 * the 1.0 structs' sizes are accepted, the calls 1.0 had keep their
 * meaning, and the loaded version is one 1.0's own check accepts. Exits 0
 * on success, else the number of the check that failed. */
#include "iocpsrv.h"

#include <stdio.h>
#include <string.h>

static int run(void) {
  iocp_config cfg;
  iocp_callbacks cb;
  iocp_server *srv = 0;
  uint64_t q = 0;

  if (!IOCP_VERSION_COMPATIBLE(iocp_version())) return 1;
  if (iocp_config_init(&cfg, sizeof cfg) != IOCP_OK) return 2;
  cfg.bind_address = "127.0.0.1";
  memset(&cb, 0, sizeof cb);
  cb.size = sizeof cb;
  if (iocp_create(&cfg, &cb, 0, &srv) != IOCP_OK || srv == 0) return 3;
  if (iocp_port(srv) == 0) return 4;
  if (iocp_connection_count(srv) != 0) return 5;
  if (iocp_send(srv, 12345, "x", 1) != IOCP_ENOTFOUND) return 6;
  if (iocp_queued(srv, 12345, &q) != IOCP_ENOTFOUND) return 7;
  if (strcmp(iocp_err_name(IOCP_ENOTFOUND), "IOCP_ENOTFOUND") != 0) return 8;
  if (iocp_destroy(srv) != IOCP_OK) return 9;
  return 0;
}

int main(void) {
  int rc = run();
  printf("built against 1.0.0, running on %s: %s (%d)\n", iocp_version_string(),
         rc == 0 ? "ok" : "failed", rc);
  return rc;
}
