/* Idle-connection client: native Linux, one thread, blocking sockets.
 *
 *   idle --port N --conns C [--warm 1]
 *
 * Opens C connections to 127.0.0.1:N (with --warm 1, echoes 32 bytes on
 * each first: connections that were busy once) and leaves them idle, prints
 * "connected C" and waits for a line on standard input (the caller measures
 * the server meanwhile). Then sends 32 bytes on every connection, all before
 * reading any, reads every echo back and checks it, prints "echoed C ok" (or
 * "echoed K of C" and exits 1), closes everything and exits. Run it with a
 * descriptor limit above C. Used by `test/bench/bench.py idle`; not a test. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MSG 32

static int read_exact(int fd, unsigned char *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = recv(fd, buf + got, len - got, 0);
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return 0;
}

static void pattern(unsigned char *buf, int i) {
  int k;
  for (k = 0; k < MSG; k++) buf[k] = (unsigned char)(i * 7 + k * 13);
}

/* Sends 32 bytes on every connection, all before reading any, then reads
 * every echo back; returns how many came back whole. */
static int echo_all(const int *fds, int conns) {
  unsigned char out[MSG], in[MSG];
  int i, ok = 0;
  for (i = 0; i < conns; i++) {
    pattern(out, i);
    if (send(fds[i], out, MSG, MSG_NOSIGNAL) != MSG) break;
  }
  for (i = 0; i < conns; i++) {
    pattern(out, i);
    if (read_exact(fds[i], in, MSG) == 0 && memcmp(in, out, MSG) == 0) ok++;
  }
  return ok;
}

int main(int argc, char **argv) {
  struct sockaddr_in sa;
  struct timeval tv = {30, 0};
  char line[16];
  int port = 0, conns = 0, warm = 0, i, ok = 0;
  int *fds;
  for (i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--conns") == 0) conns = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--warm") == 0) warm = atoi(argv[i + 1]);
  }
  if (port <= 0 || port > 65535 || conns <= 0) {
    fprintf(stderr, "usage: idle --port N --conns C [--warm 1]\n");
    return 2;
  }
  fds = calloc((size_t)conns, sizeof(*fds));
  if (fds == NULL) return 1;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (i = 0; i < conns; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) != 0) {
      fprintf(stderr, "idle: connection %d failed\n", i);
      return 1;
    }
    setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  if (warm && echo_all(fds, conns) != conns) {
    fprintf(stderr, "idle: the first echo failed\n");
    return 1;
  }
  printf("connected %d\n", conns);
  fflush(stdout);
  if (fgets(line, sizeof(line), stdin) == NULL) { /* end of input: go on too */ }
  ok = echo_all(fds, conns);
  if (ok == conns)
    printf("echoed %d ok\n", conns);
  else
    printf("echoed %d of %d\n", ok, conns);
  fflush(stdout);
  for (i = 0; i < conns; i++) close(fds[i]);
  free(fds);
  return ok == conns ? 0 : 1;
}
