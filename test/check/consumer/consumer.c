/* A program as a user of the installed library writes it: only the public
 * header, linked against what `meson install` put down (pkg-config's flags,
 * or the MSVC import library iocpsrv.lib with lld-link). It starts a server
 * on port 0, checks the loaded library's version and exits 0 on success.
 *
 * With CONSUMER_NO_CRT it needs no C runtime (lld-link links it with only
 * iocpsrv.lib and kernel32.lib, none of MSVC's libraries being here). */
#include "iocpsrv.h"

static int run(void) {
  iocp_config cfg;
  iocp_callbacks cb;
  iocp_server *srv = 0;
  unsigned char *p = (unsigned char *)&cb;
  size_t i;

  if (!IOCP_VERSION_COMPATIBLE(iocp_version())) return 2;
  if (iocp_version() != IOCP_VERSION_NUMBER) return 3;
  if (iocp_config_init(&cfg, sizeof cfg) != IOCP_OK) return 4;
  for (i = 0; i < sizeof cb; i++) p[i] = 0;
  cb.size = sizeof cb;
  if (iocp_create(&cfg, &cb, 0, &srv) != IOCP_OK) return 5;
  if (iocp_port(srv) == 0) return 6;
  if (iocp_destroy(srv) != IOCP_OK) return 7;
  return 0;
}

#ifdef CONSUMER_NO_CRT
__declspec(dllimport) void __stdcall ExitProcess(unsigned int code);

void consumer_start(void) { ExitProcess((unsigned int)run()); }
#else
#include <stdio.h>

int main(void) {
  int rc = run();
  printf("iocpsrv %s: %s\n", iocp_version_string(), rc == 0 ? "ok" : "failed");
  return rc;
}
#endif
