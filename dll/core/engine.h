/* The interface between the platform-free core (dll/core) and one OS engine
 * (dll/win: I/O completion ports; dll/linux: epoll). Exactly one engine is
 * compiled in. The engine owns sockets, the completion machinery and the
 * worker threads; the core owns connection state, send queues, callbacks and
 * their ordering. */
#ifndef IOCP_CORE_ENGINE_H
#define IOCP_CORE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  include "../win/eng.h"
#else
#  include "../linux/eng.h"
#endif

typedef struct iocp_server iocp_server;
typedef struct iocp__conn iocp__conn;

/* A buffer of the send queue, handed to the engine for one gathered send. */
typedef struct iocp__iov {
  const uint8_t *base;
  size_t len;
} iocp__iov;

/* The most buffers one send operation gathers. */
#define IOCP__MAX_IOV 16

/* Result classes of a completed operation, as the core needs to see them. */
enum iocp__io_result {
  IOCP__IO_OK = 0,      /* success (a receive of 0 bytes is the peer's FIN) */
  IOCP__IO_ABORTED = 1, /* cancelled because we closed the socket */
  IOCP__IO_RESET = 2    /* the peer reset the connection, or an I/O error */
};

/* ---- Implemented by the engine -------------------------------------------
 * Unless noted, an engine function returns 0 or a negative IOCP_ code. */

/* Starts networking, binds and listens on the parsed address, starts the
 * workers and posts the accepts. On failure everything is undone. */
int iocp__eng_start(iocp_server *s, const struct sockaddr *addr, int addrlen);

/* Stops accepting: closes the listening socket; accepts in flight are
 * cancelled and cleaned up by the workers. Idempotent. */
void iocp__eng_stop_accepting(iocp_server *s);

/* After every connection is gone: waits for the cancelled accepts, stops and
 * joins the workers, releases everything iocp__eng_start made. */
void iocp__eng_finish(iocp_server *s);

/* Nonzero when the calling thread is one of s's workers. */
int iocp__eng_on_worker(const iocp_server *s);

/* Per-connection operations. Called with the connection's lock held; the
 * core adds one reference per operation it gets a 0 for and the engine
 * reports each such operation exactly once, through iocp__conn_recv_done,
 * iocp__conn_send_done or iocp__conn_run. */
int iocp__eng_recv(iocp__conn *c);                         /* into c->rbuf */
int iocp__eng_send(iocp__conn *c, const iocp__iov *iov, int n);
int iocp__eng_post_run(iocp__conn *c);                     /* iocp__conn_run on a worker */
int iocp__eng_shutdown_send(iocp__conn *c);                /* FIN after queued bytes */
/* Closes the socket (abortive: RST); pending operations complete, aborted. */
void iocp__eng_close(iocp__conn *c, int abortive);
/* Releases the engine part of a connection whose socket is closed. */
void iocp__eng_conn_free(iocp__conn *c);
/* Marks a connection as having no socket yet (an outbound one before
 * iocp__eng_connect): iocp__eng_close and iocp__eng_conn_free then do nothing. */
void iocp__eng_conn_init(iocp__conn *c);
/* Opens a socket and starts connecting it to addr. On 0 the engine reports
 * the attempt exactly once through iocp__conn_connected (the core adds the
 * reference it holds), also when the system fails it at once; a closed
 * socket reports it as IOCP_ECLOSED. Any other return: nothing was started
 * and nothing is left behind. */
int iocp__eng_connect(iocp__conn *c, const struct sockaddr *addr, int addrlen);

/* ---- Implemented by the core, called by the engine's workers ------------ */

/* A new socket was accepted: the engine filled c->eng; address and port are
 * the peer's. The core inserts c into the table and runs on_connect. Takes
 * over the engine's single reference to c. */
void iocp__conn_accepted(iocp__conn *c, const struct sockaddr *peer);
iocp__conn *iocp__conn_alloc(iocp_server *s);  /* NULL when out of memory */

/* An outbound connection's attempt ended: error is IOCP_OK (connected; the
 * engine has made the socket ready for receives and sends) or the negative
 * IOCP_ code that failed it. Drops the attempt's reference. */
void iocp__conn_connected(iocp__conn *c, int error);
void iocp__conn_recv_done(iocp__conn *c, int result, size_t bytes);
void iocp__conn_send_done(iocp__conn *c, int result, size_t bytes);
void iocp__conn_run(iocp__conn *c);
/* Drops one reference (each completed operation drops the one it held). */
void iocp__conn_unref(iocp__conn *c);

#endif
