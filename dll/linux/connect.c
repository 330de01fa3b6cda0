/* Outbound connections on epoll: a non-blocking connect(), then the socket's
 * first writability (or error) ends the attempt and SO_ERROR says how. The
 * attempt is a posted operation like a receive or a send (connect_posted,
 * ended by the socket's first EPOLLOUT edge), so a close aborts it and the
 * core hears of it once.
 * The Linux twin of dll/win/connect.c. */
#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

int iocp__linux_connect_ready(iocp__conn *c, int *error) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (iocp__hooks.getsockopt(iocp__conn_eng(c)->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0 && iocp__linux_errclass(err) == IOCP__ERR_AGAIN) return 0; /* still going */
  iocp__conn_eng(c)->connect_posted = 0;
  *error = iocp__linux_error(err);
  if (err != 0 && *error == IOCP_OK) *error = IOCP_ESYSTEM;
  return 1;
}

int iocp__eng_connect(iocp__conn *c, const struct sockaddr *addr, int addrlen) {
  int fd, rc, err = 0;
  fd = iocp__hooks.socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          IPPROTO_TCP);
  if (fd < 0) return iocp__linux_error(errno);
  if (iocp__server_config(iocp__conn_server(c))->nodelay) {
    int on = 1; /* best effort, as on accepted sockets */
    iocp__hooks.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  }
  if (iocp__hooks.connect(fd, addr, (socklen_t)addrlen) != 0) err = errno;
  rc = iocp__linux_register(c, fd);
  if (rc != IOCP_OK) {
    iocp__hooks.close(fd);
    return rc;
  }
  if (err == EINPROGRESS || err == EINTR) {
    /* The usual case: the result comes with the first EPOLLOUT edge (the
     * lock is held, so that event waits for the flags set here). */
    iocp__conn_eng(c)->connect_posted = 1;
    iocp__conn_eng(c)->writable = 0;
    return IOCP_OK;
  }
  /* Known at once (loopback may connect or refuse inside the call): the
   * result still reaches the core from a worker, as every other. */
  rc = iocp__linux_error(err);
  if (err != 0 && rc == IOCP_OK) rc = IOCP_ESYSTEM;
  iocp__linux_task_done(c, &iocp__conn_eng(c)->connect_task, rc, 0);
  return IOCP_OK;
}

int iocp__eng_local_address(iocp__conn *c, struct sockaddr_storage *addr) {
  socklen_t len = sizeof *addr;
  if (iocp__conn_eng(c)->fd < 0) return IOCP_ECLOSED;
  if (iocp__hooks.getsockname(iocp__conn_eng(c)->fd, (struct sockaddr *)addr, &len) != 0)
    return iocp__linux_error(errno);
  return IOCP_OK;
}
