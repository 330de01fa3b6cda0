/* The echo server of echo_server.c, with the library loaded at run time.
 *
 *   dynamic_load [--port N] [--bind ADDR] [--threads N]
 *
 * Same command line and behaviour as echo_server.c. The difference: nothing
 * links against iocpsrv. The program finds the library through the platform's
 * normal search (Windows: the program's folder, then PATH; Linux:
 * LD_LIBRARY_PATH and the ld.so cache), fetches every function by name and
 * checks, before calling anything else, that the library it got is compatible
 * with the header it was compiled with. A missing library, a missing symbol or
 * an incompatible version ends the program with a message and exit code 1.
 *
 * Only the header's types, macros and IOCP_CALL are used: every function
 * pointer below carries IOCP_CALL (cdecl on Windows x86 and x64). */
#include "iocpsrv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#  include <windows.h>
#  define LIBRARY_NAME "iocpsrv.dll"
typedef HMODULE lib_handle;
#else
#  include <dlfcn.h>
#  define LIBRARY_NAME "libiocpsrv.so"
typedef void *lib_handle;
#endif

/* The functions this program uses, with the header's calling convention. */
typedef uint32_t(IOCP_CALL *version_fn)(void);
typedef const char *(IOCP_CALL *version_string_fn)(void);
typedef const char *(IOCP_CALL *strerror_fn)(int err);
typedef int(IOCP_CALL *config_init_fn)(iocp_config *config, uint32_t size);
typedef int(IOCP_CALL *create_fn)(const iocp_config *config,
                                  const iocp_callbacks *callbacks, void *user,
                                  iocp_server **server);
typedef int(IOCP_CALL *send_fn)(iocp_server *server, iocp_conn_id id,
                                const void *data, size_t len);
typedef int(IOCP_CALL *close_fn)(iocp_server *server, iocp_conn_id id);
typedef uint16_t(IOCP_CALL *port_fn)(iocp_server *server);
typedef int(IOCP_CALL *destroy_fn)(iocp_server *server);

struct api {
  version_fn version;
  version_string_fn version_string;
  strerror_fn strerror;
  config_init_fn config_init;
  create_fn create;
  send_fn send;
  close_fn close;
  port_fn port;
  destroy_fn destroy;
};

/* Filled once in main() before the server starts; read-only afterwards, so
 * the worker threads may read it without locking. */
static struct api lib;

static lib_handle open_library(void) {
#if defined(_WIN32)
  return LoadLibraryA(LIBRARY_NAME);
#else
  return dlopen(LIBRARY_NAME, RTLD_NOW | RTLD_LOCAL);
#endif
}

static void report_open_failure(void) {
#if defined(_WIN32)
  fprintf(stderr, "cannot load %s (Windows error %lu): put it next to this program or on PATH\n",
          LIBRARY_NAME, (unsigned long)GetLastError());
#else
  fprintf(stderr, "cannot load %s (%s): add its folder to LD_LIBRARY_PATH\n", LIBRARY_NAME,
          dlerror());
#endif
}

static void close_library(lib_handle h) {
#if defined(_WIN32)
  FreeLibrary(h);
#else
  dlclose(h);
#endif
}

/* Looks up one symbol. Converting the data pointer dlsym() returns (or the
 * FARPROC of GetProcAddress) to a function pointer goes through memcpy, which
 * is well defined wherever these functions exist and keeps -Wpedantic quiet. */
static int load_symbol(lib_handle h, const char *name, void *fn_out, size_t fn_size) {
#if defined(_WIN32)
  FARPROC p = GetProcAddress(h, name);
#else
  void *p = dlsym(h, name);
#endif
  if (p == NULL) {
    fprintf(stderr, "%s has no symbol %s: not an iocpsrv library, or too old\n", LIBRARY_NAME,
            name);
    return -1;
  }
  memcpy(fn_out, &p, fn_size);
  return 0;
}

#define LOAD(h, field, name) load_symbol((h), (name), &lib.field, sizeof(lib.field))

static int load_api(lib_handle h) {
  /* iocp_version first: it is the one symbol every version has. */
  if (LOAD(h, version, "iocp_version") != 0) return -1;
  if (LOAD(h, version_string, "iocp_version_string") != 0) return -1;
  if (!IOCP_VERSION_COMPATIBLE(lib.version())) {
    fprintf(stderr, "iocpsrv %s loaded, but this program needs %d.%d or newer 1.x\n",
            lib.version_string(), IOCP_VERSION_MAJOR, IOCP_VERSION_MINOR);
    return -1;
  }
  if (LOAD(h, strerror, "iocp_strerror") != 0 || LOAD(h, config_init, "iocp_config_init") != 0 ||
      LOAD(h, create, "iocp_create") != 0 || LOAD(h, send, "iocp_send") != 0 ||
      LOAD(h, close, "iocp_close") != 0 || LOAD(h, port, "iocp_port") != 0 ||
      LOAD(h, destroy, "iocp_destroy") != 0)
    return -1;
  return 0;
}

/* Echo every byte back; a peer that never reads is cut off (see echo_server.c). */
static void IOCP_CALL on_data(iocp_server *server, void *user, iocp_conn_id id,
                              const uint8_t *data, size_t len) {
  (void)user;
  if (lib.send(server, id, data, len) == IOCP_EQUEUEFULL) lib.close(server, id);
}

static int parse_uint(const char *text, unsigned long max, unsigned long *out) {
  char *end;
  unsigned long v;
  if (text == NULL || *text == '\0') return -1;
  v = strtoul(text, &end, 10);
  if (*end != '\0' || v > max) return -1;
  *out = v;
  return 0;
}

static int usage(const char *prog) {
  fprintf(stderr, "usage: %s [--port N] [--bind ADDR] [--threads N]\n", prog);
  return 2;
}

int main(int argc, char **argv) {
  iocp_config config;
  iocp_callbacks callbacks;
  iocp_server *server = NULL;
  lib_handle h;
  unsigned long port = 50000, threads = 0;
  const char *bind = "127.0.0.1";
  int i, rc, ch;

  for (i = 1; i < argc; i++) {
    const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(arg, "--port") == 0 && parse_uint(val, 65535, &port) == 0) {
      i++;
    } else if (strcmp(arg, "--threads") == 0 && parse_uint(val, 1024, &threads) == 0) {
      i++;
    } else if (strcmp(arg, "--bind") == 0 && val != NULL) {
      bind = val;
      i++;
    } else {
      return usage(argv[0]);
    }
  }

  h = open_library();
  if (h == NULL) {
    report_open_failure();
    return 1;
  }
  if (load_api(h) != 0) {
    close_library(h);
    return 1;
  }

  lib.config_init(&config, sizeof(config));
  config.port = (uint16_t)port;
  config.bind_address = bind;
  config.threads = (uint32_t)threads;
  memset(&callbacks, 0, sizeof(callbacks));
  callbacks.size = sizeof(callbacks);
  callbacks.on_data = on_data;

  rc = lib.create(&config, &callbacks, NULL, &server);
  if (rc != IOCP_OK) {
    fprintf(stderr, "cannot listen on %s port %lu: %s\n", bind, port, lib.strerror(rc));
    close_library(h);
    return 1;
  }
  printf("listening on port %u\n", (unsigned)lib.port(server));
  fflush(stdout);

  do ch = getchar(); while (ch != EOF && ch != '\n');

  /* No callback runs once iocp_destroy() has returned, so the code they
   * point into may be unloaded afterwards. */
  lib.destroy(server);
  close_library(h);
  return 0;
}
