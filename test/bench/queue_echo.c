/* The C sample's echo in queue mode: one thread drains iocp_wait() batches
 * and sends every DATA event's bytes straight back. It separates the
 * library's own cost of queue delivery from a wrapper's (bench.py, lang).
 *
 *   queue_echo [--port N] [--threads N] [--batch N] [--stats]
 *
 * Prints "listening on port N"; stops when standard input ends. --stats
 * prints to stderr, at the end, how many iocp_wait() calls returned how
 * many events. */
#include "iocpsrv.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static iocp_server *server;
static uint32_t batch = 256;
static unsigned long long calls, events;

static void *drain(void *arg) {
  iocp_event *ev = calloc(batch, sizeof(*ev));
  (void)arg;
  if (ev == NULL) return NULL;
  for (;;) {
    int i, n = iocp_wait(server, ev, batch, -1);
    if (n < 0) break; /* IOCP_ECLOSED: stopped and drained */
    calls++;
    events += (unsigned)n;
    for (i = 0; i < n; i++) {
      if (ev[i].type != IOCP_EVENT_DATA) continue;
      if (iocp_send(server, ev[i].id, (const void *)(uintptr_t)ev[i].data, (size_t)ev[i].len) ==
          IOCP_EQUEUEFULL)
        iocp_close(server, ev[i].id);
    }
  }
  free(ev);
  return NULL;
}

int main(int argc, char **argv) {
  iocp_config config;
  pthread_t drainer;
  unsigned long port = 0, threads = 0;
  int i, rc, ch, stats = 0;

  for (i = 1; i < argc; i++) {
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--port") == 0 && val != NULL) {
      port = strtoul(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--threads") == 0 && val != NULL) {
      threads = strtoul(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--batch") == 0 && val != NULL && atoi(val) > 0) {
      batch = (uint32_t)atoi(argv[++i]);
    } else if (strcmp(argv[i], "--stats") == 0) {
      stats = 1;
    } else {
      fprintf(stderr, "usage: %s [--port N] [--threads N] [--batch N] [--stats]\n", argv[0]);
      return 2;
    }
  }
  iocp_config_init(&config, sizeof(config));
  config.port = (uint16_t)port;
  config.bind_address = "127.0.0.1";
  config.threads = (uint32_t)threads;
  config.delivery = IOCP_DELIVERY_QUEUE;
  rc = iocp_create(&config, NULL, NULL, &server);
  if (rc != IOCP_OK) {
    fprintf(stderr, "queue_echo: %s\n", iocp_strerror(rc));
    return 1;
  }
  if (pthread_create(&drainer, NULL, drain, NULL) != 0) {
    iocp_destroy(server);
    return 1;
  }
  printf("listening on port %u\n", (unsigned)iocp_port(server));
  fflush(stdout);
  do ch = getchar(); while (ch != EOF && ch != '\n');
  iocp_stop(server); /* the drainer takes the rest, then gets IOCP_ECLOSED */
  pthread_join(drainer, NULL);
  iocp_destroy(server);
  if (stats)
    fprintf(stderr, "queue_echo: %llu iocp_wait calls, %llu events, %.2f events per call\n", calls,
            events, calls != 0 ? (double)events / (double)calls : 0.0);
  return 0;
}
