/* The libuv peer: an echo server written the way a careful libuv user
 * writes it, for comparison with a Linux build of iocpsrv.
 *
 *   baseline_uv [--port N]
 *
 * One loop, one thread (libuv's model). One read buffer for the whole loop:
 * the alloc callback hands out the same static 64 KiB buffer every time, so
 * an idle connection holds no buffer. Each read is echoed with uv_try_write
 * first; only the bytes the socket did not take are copied, into a uv_write
 * request freed by its callback. While a connection has more than
 * MAX_QUEUED bytes waiting it stops reading, so a peer that does not read
 * cannot grow memory without bound. TCP_NODELAY as in iocpsrv's default.
 *
 * Same contract as the other servers: binds 127.0.0.1, prints "listening
 * on port N", exits when standard input ends (or a line is entered). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* uv.h needs the POSIX thread types beyond C11 */
#endif
#include <uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_BUF (64 * 1024)
#define MAX_QUEUED (1024 * 1024)

static char read_buf[READ_BUF]; /* one per loop: the loop is single-threaded */

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
  char data[]; /* the unsent rest of one read */
} echo_write;

static void on_closed(uv_handle_t *h) { free(h); }

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h, (void)suggested;
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status) {
  uv_stream_t *s = req->handle;
  free(req); /* the request is the first member of echo_write */
  if (status < 0) {
    if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, on_closed);
    return;
  }
  /* Reading was stopped (s->data set) and the queue drained: read again. */
  if (s->data != NULL && s->write_queue_size <= MAX_QUEUED && !uv_is_closing((uv_handle_t *)s)) {
    s->data = NULL;
    uv_read_start(s, on_alloc, on_read);
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  uv_buf_t out;
  echo_write *w;
  int n;
  if (nread == 0) return; /* EAGAIN */
  if (nread < 0) {        /* end of stream or error */
    uv_close((uv_handle_t *)s, on_closed);
    return;
  }
  out = uv_buf_init(buf->base, (unsigned)nread);
  n = uv_try_write(s, &out, 1); /* UV_EAGAIN while writes are queued: order kept */
  if (n == nread) return;
  if (n < 0 && n != UV_EAGAIN) {
    uv_close((uv_handle_t *)s, on_closed);
    return;
  }
  if (n < 0) n = 0;
  w = malloc(sizeof(*w) + (size_t)(nread - n));
  if (w == NULL) {
    uv_close((uv_handle_t *)s, on_closed);
    return;
  }
  memcpy(w->data, buf->base + n, (size_t)(nread - n));
  w->buf = uv_buf_init(w->data, (unsigned)(nread - n));
  if (uv_write(&w->req, s, &w->buf, 1, on_written) != 0) {
    free(w);
    uv_close((uv_handle_t *)s, on_closed);
    return;
  }
  if (s->write_queue_size > MAX_QUEUED) {
    uv_read_stop(s);
    s->data = s; /* stopped */
  }
}

static void on_connection(uv_stream_t *server, int status) {
  uv_tcp_t *c;
  if (status < 0) return;
  c = malloc(sizeof(*c));
  if (c == NULL) return; /* the connection waits in the backlog */
  uv_tcp_init(server->loop, c);
  if (uv_accept(server, (uv_stream_t *)c) != 0) {
    uv_close((uv_handle_t *)c, on_closed);
    return;
  }
  c->data = NULL; /* reading */
  uv_tcp_nodelay(c, 1);
  uv_read_start((uv_stream_t *)c, on_alloc, on_read);
}

/* Standard input readable: a line or its end. Open connections close with
 * the process, as in baseline_epoll. */
static void on_stdin(uv_poll_t *h, int status, int events) {
  (void)h, (void)status, (void)events;
  exit(0);
}

int main(int argc, char **argv) {
  uv_loop_t *loop = uv_default_loop();
  uv_tcp_t listener;
  uv_poll_t in;
  struct sockaddr_in sa;
  int salen = sizeof(sa), rc;
  unsigned long port = 50000;

  if (argc == 3 && strcmp(argv[1], "--port") == 0) {
    char *end;
    port = strtoul(argv[2], &end, 10);
    if (*end != '\0' || port > 65535) argc = 0;
  }
  if (argc != 1 && argc != 3) {
    fprintf(stderr, "usage: %s [--port N]\n", argv[0]);
    return 2;
  }
  uv_ip4_addr("127.0.0.1", (int)port, &sa);
  uv_tcp_init(loop, &listener);
  if ((rc = uv_tcp_bind(&listener, (const struct sockaddr *)&sa, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&listener, SOMAXCONN, on_connection)) != 0 ||
      (rc = uv_tcp_getsockname(&listener, (struct sockaddr *)&sa, &salen)) != 0) {
    fprintf(stderr, "baseline_uv: listen: %s\n", uv_strerror(rc));
    return 1;
  }
  if (uv_poll_init(loop, &in, 0) != 0 || uv_poll_start(&in, UV_READABLE, on_stdin) != 0) {
    fprintf(stderr, "baseline_uv: standard input must be a pipe or a terminal\n");
    return 1;
  }
  printf("listening on port %u\n", (unsigned)ntohs(sa.sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
