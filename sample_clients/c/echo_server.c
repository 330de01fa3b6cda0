/* The original library's tutorial, in C on the DLL: an echo server.
 *
 *   echo_server [--port N] [--bind ADDR] [--threads N]
 *               [--tls CERT.p12 [--tls-password TEXT]]
 *
 * --port defaults to 50000 (0 picks a free port), --bind to 127.0.0.1,
 * --threads to one per processor; with --tls every connection speaks TLS
 * with the identity of the PKCS#12 file (try `openssl s_client`). Prints "listening on port N" when ready and
 * exits cleanly when Enter is pressed or standard input ends. */
#include "iocpsrv.h"
#include "tls_option.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Backpressure: a peer that sends faster than it reads its echo is slowed
 * down, not cut off. Above PAUSE_AT queued bytes the connection stops
 * receiving (its bytes wait in the kernel, and TCP flow control holds the
 * peer back); on_drain, once the queue is down to DRAIN_MARK (the config's
 * drain_mark), receives again. The queue never grows past PAUSE_AT plus
 * one receive, far below max_send_queue. */
#define PAUSE_AT (1u << 20)
#define DRAIN_MARK (256u << 10)

/* Echo every byte back. */
static void IOCP_CALL on_data(iocp_server *server, void *user, iocp_conn_id id,
                              const uint8_t *data, size_t len) {
  uint64_t queued = 0;
  (void)user;
  if (iocp_send(server, id, data, len) == IOCP_EQUEUEFULL) {
    iocp_close(server, id); /* not reached with the pause below */
    return;
  }
  /* Called inside on_data, the pause is exact: no more bytes arrive. */
  if (iocp_queued(server, id, &queued) == IOCP_OK && queued > PAUSE_AT)
    iocp_pause_recv(server, id);
}

static void IOCP_CALL on_drain(iocp_server *server, void *user, iocp_conn_id id,
                               uint64_t queued) {
  (void)user;
  (void)queued;
  iocp_resume_recv(server, id); /* a no-op when it was not paused */
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
  fprintf(stderr,
          "usage: %s [--port N] [--bind ADDR] [--threads N] [--tls CERT.p12 "
          "[--tls-password TEXT]]\n",
          prog);
  return 2;
}

int main(int argc, char **argv) {
  iocp_config config;
  iocp_callbacks callbacks;
  iocp_server *server = NULL;
  iocp_statistics stats;
  unsigned long port = 50000, threads = 0;
  const char *bind = "127.0.0.1", *tls = NULL, *tls_password = NULL;
  int i, rc, ch;

  for (i = 1; i < argc; i++) {
    const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(arg, "--port") == 0 && parse_uint(val, 65535, &port) == 0) {
      i++;
    } else if (strcmp(arg, "--threads") == 0 && parse_uint(val, 1024, &threads) == 0) {
      i++;
    } else if (strcmp(arg, "--tls") == 0 && val != NULL) {
      tls = val;
      i++;
    } else if (strcmp(arg, "--tls-password") == 0 && val != NULL) {
      tls_password = val;
      i++;
    } else if (strcmp(arg, "--bind") == 0 && val != NULL) {
      bind = val;
      i++;
    } else {
      return usage(argv[0]);
    }
  }

  if (!IOCP_VERSION_COMPATIBLE(iocp_version())) {
    fprintf(stderr, "iocpsrv %s loaded, but this program needs %d.%d or newer 1.x\n",
            iocp_version_string(), IOCP_VERSION_MAJOR, IOCP_VERSION_MINOR);
    return 1;
  }

  iocp_config_init(&config, sizeof(config));
  config.port = (uint16_t)port;
  config.bind_address = bind;
  config.threads = (uint32_t)threads;
  config.drain_mark = DRAIN_MARK;
  if (tls != NULL && sample_tls_load(&config, tls, tls_password) != 0) return 1;
  memset(&callbacks, 0, sizeof(callbacks));
  callbacks.size = sizeof(callbacks);
  callbacks.on_data = on_data;
  callbacks.on_drain = on_drain;

  rc = iocp_create(&config, &callbacks, NULL, &server);
  sample_tls_release(&config);
  if (rc != IOCP_OK) {
    fprintf(stderr, "cannot listen on %s port %lu: %s\n", bind, port, iocp_strerror(rc));
    return 1;
  }
  printf("listening on port %u\n", (unsigned)iocp_port(server));
  fflush(stdout);

  do ch = getchar(); while (ch != EOF && ch != '\n');

  stats.size = sizeof(stats);
  if (iocp_stats(server, &stats) == IOCP_OK) {
    printf("served %llu connections, %llu bytes in, %llu bytes out\n",
           (unsigned long long)stats.connections_accepted,
           (unsigned long long)stats.bytes_received, (unsigned long long)stats.bytes_sent);
    fflush(stdout);
  }
  iocp_destroy(server);
  return 0;
}
