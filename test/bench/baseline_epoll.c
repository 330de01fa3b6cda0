/* The native yardstick: the simplest correct epoll echo server, one thread,
 * for comparison with a Linux build of iocpsrv (build/linux).
 *
 *   baseline_epoll [--port N]
 *
 * Level-triggered; each connection reads up to 16 KiB, writes it back, and
 * while a short write is pending stops reading (waits for EPOLLOUT), so it
 * never buffers more than one read. Same contract as the echo sample: binds
 * 127.0.0.1, prints "listening on port N", exits when standard input ends
 * (or a line is entered). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 16384

struct conn {
  int fd;
  size_t len, off; /* bytes read, bytes of them written back */
  char buf[BUF_SIZE];
};

static int ep;

static void conn_close(struct conn *c) {
  close(c->fd); /* also leaves the epoll set */
  free(c);
}

static void want(struct conn *c, uint32_t events) {
  struct epoll_event ev;
  ev.events = events;
  ev.data.ptr = c;
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes what is pending; returns -1 if the connection is gone. */
static int flush(struct conn *c) {
  while (c->off < c->len) {
    ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (n > 0) {
      c->off += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      want(c, EPOLLOUT);
      return 0;
    } else {
      return -1;
    }
  }
  return 0;
}

static void on_event(struct conn *c, uint32_t events) {
  if (c->off < c->len) { /* EPOLLOUT: finish the pending write first */
    if (flush(c) != 0) goto gone;
    if (c->off == c->len) want(c, EPOLLIN);
    return;
  }
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
    ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) goto gone;
    c->len = (size_t)n;
    c->off = 0;
    if (flush(c) != 0) goto gone;
  }
  return;
gone:
  conn_close(c);
}

int main(int argc, char **argv) {
  struct sockaddr_in sa;
  socklen_t salen = sizeof(sa);
  struct epoll_event ev;
  unsigned long port = 50000;
  int lfd, one = 1;
  static char listener_tag, stdin_tag;

  if (argc == 3 && strcmp(argv[1], "--port") == 0) {
    char *end;
    port = strtoul(argv[2], &end, 10);
    if (*end != '\0' || port > 65535) argc = 0;
  }
  if (argc != 1 && argc != 3) {
    fprintf(stderr, "usage: %s [--port N]\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (lfd < 0 || ep < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      listen(lfd, SOMAXCONN) != 0 || getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0) {
    perror("baseline_epoll: listen");
    return 1;
  }
  ev.events = EPOLLIN;
  ev.data.ptr = &listener_tag;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  ev.data.ptr = &stdin_tag; /* stdin readable: a line or EOF, time to stop */
  if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) != 0) {
    fprintf(stderr, "baseline_epoll: standard input must be a pipe or a terminal\n");
    return 1;
  }
  printf("listening on port %u\n", (unsigned)ntohs(sa.sin_port));
  fflush(stdout);

  for (;;) {
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, -1), i;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return 1;
    for (i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == &stdin_tag) return 0; /* open connections close with the process */
      if (p == &listener_tag) {
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          struct conn *c = malloc(sizeof(*c));
          if (c == NULL) {
            close(fd);
            continue;
          }
          c->fd = fd;
          c->len = c->off = 0;
          ev.events = EPOLLIN;
          ev.data.ptr = c;
          if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) conn_close(c);
        }
        continue;
      }
      on_event(p, evs[i].events);
    }
  }
}
