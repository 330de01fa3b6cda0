/* A fault in every call of the internal call table (dll/core/hooks.h and the
 * engine's IOCP__ENGINE_HOOKS), at every point of a short scenario: create,
 * accept, echo, half-close, destroy. A clean run counts the calls each entry
 * gets; then for each entry and each N up to that count, the scenario runs
 * again with the N-th call of that entry failing as the system would fail it
 * (out of sockets, connection reset, ...). Each run must:
 *  - either fail iocp_create with a documented code and leave nothing, or
 *  - end the affected client cleanly (a reset or FIN, never a hang), and
 *    serve the next client in full;
 *  - and leave no allocation, descriptor or handle behind after destroy.
 * Set IOCP_FAULTSWEEP_MAX to bound the N per entry (default 40). */
#include "tsupport.h"
#include "internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(_WIN32)
#  include <errno.h>
#endif

typedef void (*any_fn)(void);

/* ---- Counting and failing ------------------------------------------------------- */

enum { MAX_HOOKS = 32 };
static atomic_int calls[MAX_HOOKS];
static atomic_int armed = -1; /* the entry that fails, or -1 */
static atomic_int fail_at;    /* ... at this call (1-based) */
static atomic_int fired;
static atomic_long live_blocks; /* allocations not yet freed */

static int hit(int h) {
  int n = atomic_fetch_add(&calls[h], 1) + 1;
  if (atomic_load(&armed) == h && n == atomic_load(&fail_at)) {
    atomic_store(&fired, 1);
    return 1;
  }
  return 0;
}

enum { H_MALLOC, H_CALLOC, H_FREE, H_ENGINE0 };

static void *fault_malloc(size_t n) {
  void *p = hit(H_MALLOC) ? NULL : malloc(n);
  if (p != NULL) atomic_fetch_add(&live_blocks, 1);
  return p;
}
static void *fault_calloc(size_t n, size_t s) {
  void *p = hit(H_CALLOC) ? NULL : calloc(n, s);
  if (p != NULL) atomic_fetch_add(&live_blocks, 1);
  return p;
}
static void fault_free(void *p) { /* cannot fail: only counted */
  atomic_fetch_add(&calls[H_FREE], 1);
  if (p != NULL) atomic_fetch_add(&live_blocks, -1);
  free(p);
}

#if defined(_WIN32)
enum {
  H_WSASOCKET = H_ENGINE0, H_BIND, H_LISTEN, H_SETSOCKOPT, H_CLOSESOCKET, H_SHUTDOWN,
  H_RECV, H_SEND, H_IOCTLSOCKET, H_WSARECV, H_WSASEND, H_ACCEPTEX, H_CONNECTEX, H_CIOCP, H_WSAIOCTL,
  H_SET_COMPLETION_MODES, H_COUNT
};
static SOCKET WSAAPI fault_wsasocket(int af, int type, int proto, LPWSAPROTOCOL_INFOW info,
                                     GROUP g, DWORD flags) {
  if (hit(H_WSASOCKET)) return WSASetLastError(WSAEMFILE), INVALID_SOCKET;
  return WSASocketW(af, type, proto, info, g, flags);
}
static int WSAAPI fault_bind(SOCKET s, const struct sockaddr *a, int len) {
  if (hit(H_BIND)) return WSASetLastError(WSAEADDRINUSE), SOCKET_ERROR;
  return bind(s, a, len);
}
static int WSAAPI fault_listen(SOCKET s, int backlog) {
  if (hit(H_LISTEN)) return WSASetLastError(WSAENOBUFS), SOCKET_ERROR;
  return listen(s, backlog);
}
static int WSAAPI fault_setsockopt(SOCKET s, int level, int name, const char *v, int len) {
  if (hit(H_SETSOCKOPT)) return WSASetLastError(WSAENOTCONN), SOCKET_ERROR;
  return setsockopt(s, level, name, v, len);
}
static int WSAAPI fault_closesocket(SOCKET s) { /* closes, then reports an error */
  int rc = closesocket(s);
  if (hit(H_CLOSESOCKET)) return WSASetLastError(WSAEINTR), SOCKET_ERROR;
  return rc;
}
static int WSAAPI fault_shutdown(SOCKET s, int how) {
  if (hit(H_SHUTDOWN)) return WSASetLastError(WSAENOTCONN), SOCKET_ERROR;
  return shutdown(s, how);
}
static int WSAAPI fault_recv(SOCKET s, char *buf, int len, int flags) {
  if (hit(H_RECV)) return WSASetLastError(WSAECONNRESET), SOCKET_ERROR;
  return recv(s, buf, len, flags);
}
static int WSAAPI fault_send(SOCKET s, const char *buf, int len, int flags) {
  if (hit(H_SEND)) return WSASetLastError(WSAECONNRESET), SOCKET_ERROR;
  return send(s, buf, len, flags);
}
static int WSAAPI fault_ioctlsocket(SOCKET s, long cmd, u_long *arg) {
  if (hit(H_IOCTLSOCKET)) return WSASetLastError(WSAENOBUFS), SOCKET_ERROR;
  return ioctlsocket(s, cmd, arg);
}
static int WSAAPI fault_wsarecv(SOCKET s, LPWSABUF b, DWORD n, LPDWORD got, LPDWORD flags,
                                LPWSAOVERLAPPED ol, LPWSAOVERLAPPED_COMPLETION_ROUTINE fn) {
  if (hit(H_WSARECV)) return WSASetLastError(WSAECONNRESET), SOCKET_ERROR;
  return WSARecv(s, b, n, got, flags, ol, fn);
}
static int WSAAPI fault_wsasend(SOCKET s, LPWSABUF b, DWORD n, LPDWORD sent, DWORD flags,
                                LPWSAOVERLAPPED ol, LPWSAOVERLAPPED_COMPLETION_ROUTINE fn) {
  if (hit(H_WSASEND)) return WSASetLastError(WSAECONNRESET), SOCKET_ERROR;
  return WSASend(s, b, n, sent, flags, ol, fn);
}
static BOOL fault_acceptex(iocp_server *s, SOCKET listener, SOCKET sock, void *buf,
                           OVERLAPPED *ol) {
  if (hit(H_ACCEPTEX)) return WSASetLastError(WSAENOBUFS), FALSE;
  return iocp__win_acceptex(s, listener, sock, buf, ol);
}
static BOOL fault_connectex(iocp_server *s, SOCKET sock, const struct sockaddr *a, int len,
                            OVERLAPPED *ol) {
  if (hit(H_CONNECTEX)) return WSASetLastError(WSAENOBUFS), FALSE;
  return iocp__win_connectex(s, sock, a, len, ol);
}
static HANDLE WINAPI fault_ciocp(HANDLE file, HANDLE port, ULONG_PTR key, DWORD threads) {
  if (hit(H_CIOCP)) return SetLastError(ERROR_NO_SYSTEM_RESOURCES), (HANDLE)NULL;
  return CreateIoCompletionPort(file, port, key, threads);
}
static int WSAAPI fault_wsaioctl(SOCKET s, DWORD code, void *in, DWORD inlen, void *out,
                                 DWORD outlen, LPDWORD got, LPWSAOVERLAPPED ol,
                                 LPWSAOVERLAPPED_COMPLETION_ROUTINE fn) {
  if (hit(H_WSAIOCTL)) return WSASetLastError(WSAENOBUFS), SOCKET_ERROR;
  return WSAIoctl(s, code, in, inlen, out, outlen, got, ol, fn);
}
static BOOL WINAPI fault_set_completion_modes(HANDLE file, UCHAR flags) {
  if (hit(H_SET_COMPLETION_MODES)) return SetLastError(ERROR_INVALID_FUNCTION), FALSE;
  return SetFileCompletionNotificationModes(file, flags);
}
#  define ENGINE_FAULTS                                                                    \
  FAULT(wsasocket), FAULT(bind), FAULT(listen), FAULT(setsockopt), FAULT(closesocket),   \
      FAULT(shutdown), FAULT(recv), FAULT(send), FAULT(ioctlsocket), FAULT(wsarecv),     \
      FAULT(wsasend),                                                                     \
      FAULT(acceptex), FAULT(connectex),                                                  \
      {"create_io_completion_port", offsetof(struct iocp__hooks, create_io_completion_port), \
       (any_fn)fault_ciocp},                                                              \
      FAULT(wsaioctl), FAULT(set_completion_modes)
#else
enum {
  H_SOCKET = H_ENGINE0, H_BIND, H_LISTEN, H_SETSOCKOPT, H_GETSOCKNAME, H_GETSOCKOPT, H_CONNECT,
  H_CLOSE, H_SHUTDOWN, H_RECV, H_SENDMSG, H_SEND, H_ACCEPT4, H_EPOLL_CREATE1, H_EPOLL_CTL,
  H_EPOLL_WAIT, H_EVENTFD, H_PTHREAD_CREATE, H_CLOCK_GETTIME, H_PREAD, H_COUNT
};
#  define FAIL_ERRNO(h, e) \
    if (hit(h)) return errno = (e), -1
static int fault_socket(int d, int t, int p) {
  FAIL_ERRNO(H_SOCKET, EMFILE);
  return socket(d, t, p);
}
static int fault_bind(int fd, const struct sockaddr *a, socklen_t len) {
  FAIL_ERRNO(H_BIND, EADDRINUSE);
  return bind(fd, a, len);
}
static int fault_listen(int fd, int backlog) {
  FAIL_ERRNO(H_LISTEN, ENOBUFS);
  return listen(fd, backlog);
}
static int fault_setsockopt(int fd, int level, int name, const void *v, socklen_t len) {
  FAIL_ERRNO(H_SETSOCKOPT, ENOMEM);
  return setsockopt(fd, level, name, v, len);
}
static int fault_getsockname(int fd, struct sockaddr *a, socklen_t *len) {
  FAIL_ERRNO(H_GETSOCKNAME, ENOBUFS);
  return getsockname(fd, a, len);
}
static int fault_getsockopt(int fd, int level, int name, void *v, socklen_t *len) {
  FAIL_ERRNO(H_GETSOCKOPT, ENOBUFS);
  return getsockopt(fd, level, name, v, len);
}
static int fault_connect(int fd, const struct sockaddr *a, socklen_t len) {
  FAIL_ERRNO(H_CONNECT, ENOBUFS);
  return connect(fd, a, len);
}
static int fault_close(int fd) { /* Linux releases the descriptor even then */
  int rc = close(fd);
  FAIL_ERRNO(H_CLOSE, EINTR);
  return rc;
}
static int fault_shutdown(int fd, int how) {
  FAIL_ERRNO(H_SHUTDOWN, ENOTCONN);
  return shutdown(fd, how);
}
static ssize_t fault_recv(int fd, void *b, size_t n, int flags) {
  FAIL_ERRNO(H_RECV, ECONNRESET);
  return recv(fd, b, n, flags);
}
static ssize_t fault_sendmsg(int fd, const struct msghdr *m, int flags) {
  FAIL_ERRNO(H_SENDMSG, EPIPE);
  return sendmsg(fd, m, flags);
}
static ssize_t fault_send(int fd, const void *b, size_t n, int flags) {
  FAIL_ERRNO(H_SEND, EPIPE);
  return send(fd, b, n, flags);
}
static int fault_accept4(int fd, struct sockaddr *a, socklen_t *len, int flags) {
  FAIL_ERRNO(H_ACCEPT4, EMFILE);
  return accept4(fd, a, len, flags);
}
static int fault_epoll_create1(int flags) {
  FAIL_ERRNO(H_EPOLL_CREATE1, EMFILE);
  return epoll_create1(flags);
}
static int fault_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  FAIL_ERRNO(H_EPOLL_CTL, ENOMEM);
  return epoll_ctl(epfd, op, fd, ev);
}
static int fault_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout) {
  FAIL_ERRNO(H_EPOLL_WAIT, EINTR); /* the only failure a valid set can see */
  return epoll_wait(epfd, evs, max, timeout);
}
static int fault_eventfd(unsigned int v, int flags) {
  FAIL_ERRNO(H_EVENTFD, EMFILE);
  return eventfd(v, flags);
}
static int fault_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
                                void *arg) {
  if (hit(H_PTHREAD_CREATE)) return EAGAIN;
  return pthread_create(t, attr, fn, arg);
}
static int fault_clock_gettime(clockid_t id, struct timespec *ts) {
  FAIL_ERRNO(H_CLOCK_GETTIME, EINVAL); /* never for parking's clocks: a reading of 0 */
  return clock_gettime(id, ts);
}
static ssize_t fault_pread(int fd, void *b, size_t n, off_t off) {
  FAIL_ERRNO(H_PREAD, EIO); /* /proc unreadable: parking measures less */
  return pread(fd, b, n, off);
}
#  define ENGINE_FAULTS                                                                     \
  FAULT(socket), FAULT(bind), FAULT(listen), FAULT(setsockopt), FAULT(getsockname),        \
      FAULT(getsockopt), FAULT(connect), FAULT(close), FAULT(shutdown), FAULT(recv),      \
      FAULT(sendmsg), FAULT(send), FAULT(accept4), FAULT(epoll_create1), FAULT(epoll_ctl),             \
      FAULT(epoll_wait), FAULT(eventfd), FAULT(pthread_create), FAULT(clock_gettime),     \
      FAULT(pread)
#endif

/* Every entry of the table, in its order, with its faulting twin. */
typedef struct hook_fault {
  const char *name;
  size_t offset; /* of the entry in struct iocp__hooks */
  any_fn fn;
} hook_fault;

#define FAULT(name) {#name, offsetof(struct iocp__hooks, name), (any_fn)fault_##name}
static const hook_fault faults[] = {FAULT(malloc), FAULT(calloc), FAULT(free), ENGINE_FAULTS};
#define NFAULTS ((int)(sizeof(faults) / sizeof(faults[0])))

/* A new entry in the table without a twin here fails the build. */
_Static_assert(sizeof(struct iocp__hooks) == sizeof(faults) / sizeof(faults[0]) * sizeof(any_fn),
               "every entry of struct iocp__hooks needs a fault in test_faultsweep.c");
_Static_assert((size_t)H_COUNT == sizeof(faults) / sizeof(faults[0]) && (int)H_COUNT <= (int)MAX_HOOKS,
               "the H_ numbers follow the table");

static void install_faults(void) {
  int i;
  for (i = 0; i < NFAULTS; i++) memcpy((char *)&iocp__hooks + faults[i].offset, &faults[i].fn, sizeof(any_fn));
}

/* cmocka teardown: the real table comes back even after a failed test. */
static int restore_hooks(void **state) {
  (void)state;
  atomic_store(&armed, -1);
  iocp__hooks_reset();
  return 0;
}

/* ---- The scenario ------------------------------------------------------------------ */

enum { CLIENT_MS = 20000 };

/* One echo on a new connection: TS_OK, or how it ended (never a hang). */
static int echo_try(uint16_t port, const char *msg) {
  char buf[16];
  size_t len = strlen(msg), got = 0;
  int rc;
  ts_sock a = ts_connect(port);
  if (a == TS_BAD_SOCK) return TS_ERROR;
  ts_set_timeout(a, CLIENT_MS);
  rc = ts_send_all(a, msg, len);
  if (rc == TS_OK) rc = ts_recv_exact(a, buf, len);
  if (rc == TS_OK && memcmp(buf, msg, len) != 0) rc = TS_ERROR;
  if (rc == TS_OK) {
    /* Half-close and keep reading: the server finishes, then FIN. */
    ts_shutdown_send(a);
    rc = ts_recv_to_end(a, (uint8_t *)buf, sizeof(buf), &got);
    if (rc == TS_EOF && got == 0) rc = TS_OK;
  }
  ts_close(a);
  return rc;
}

/* The application's echo: a failed iocp_send is a documented code, and the
 * application answers it as a real one would, by closing the connection. */
static void sweep_echo(rec_server *r, iocp_conn_id id, const uint8_t *data, size_t len) {
  int rc = iocp_send(r->srv, id, data, len);
  if (rc == IOCP_OK || rc == IOCP_ECLOSED) return;
  if (rc != IOCP_ENOMEM) rec_violation(r);
  iocp_close(r->srv, id);
}

static int known_create_error(int rc) {
  return rc == IOCP_ENOMEM || rc == IOCP_ESYSTEM || rc == IOCP_EMFILE || rc == IOCP_EADDRINUSE ||
         rc == IOCP_EACCES || rc == IOCP_EINVAL;
}

/* Runs the scenario once with entry `h` failing at call `n` (h = -1: clean). */
static void run_once(int h, int n, const char *what) {
  rec_hooks echo_hooks = {0};
  iocp_config cfg;
  rec_server *r;
#if !defined(_WIN32)
  long handles = ts_handle_count();
#endif
  long blocks;
  int rc, i;

  for (i = 0; i < NFAULTS; i++) atomic_store(&calls[i], 0);
  atomic_store(&fired, 0);
  atomic_store(&fail_at, n);
  atomic_store(&armed, h);
  blocks = atomic_load(&live_blocks);
  install_faults(); /* no server runs: safe to change the table */

  echo_hooks.on_data = sweep_echo;
  iocp_config_init(&cfg, sizeof(cfg));
  cfg.threads = 2;
  cfg.accepts_posted = 2;
  r = rec_try_start(REC_HANDLE_PEER_CLOSE, &cfg, &echo_hooks, &rc);
  if (r == NULL) {
    if (!known_create_error(rc)) print_error("%s: iocp_create returned %s\n", what, iocp_err_name(rc));
    assert_true(known_create_error(rc));
  } else {
    /* The first client may be the one the fault hits: a clean end is fine. */
    int first = echo_try(r->port, "first");
    int second = echo_try(r->port, "second");
    if (second != TS_OK) second = echo_try(r->port, "third"); /* the fault hit the second */
    if (first == TS_TIMEOUT || second != TS_OK)
      print_error("%s: first client %d, next one %d\n", what, first, second);
    assert_int_not_equal(first, TS_TIMEOUT);
    assert_int_equal(second, TS_OK);
    assert_int_equal(ts_counter_wait(r->disconnects, ts_counter_get(r->connects), TS_TIMEOUT_MS), 0);
    rec_stop(r); /* one disconnect per connect, no violation, nothing late */
  }
  atomic_store(&armed, -1);
  iocp__hooks_reset();
  if (atomic_load(&live_blocks) != blocks)
    print_error("%s: %ld blocks leaked\n", what, atomic_load(&live_blocks) - blocks);
  assert_int_equal(atomic_load(&live_blocks), blocks);
#if !defined(_WIN32)
  /* Windows: counted over the whole sweep (under Wine each count walks the
   * handle table through wineserver, too slow for every run). */
  if (ts_handle_count() != handles) print_error("%s: descriptors %ld -> %ld\n", what, handles, ts_handle_count());
  assert_int_equal(ts_handle_count(), handles);
#endif
}

static void test_every_call_fails_at_every_point(void **state) {
  const char *env = getenv("IOCP_FAULTSWEEP_MAX");
  int max = env != NULL && atoi(env) > 0 ? atoi(env) : 40;
  int counts[MAX_HOOKS], h, n, runs = 0;
  long start_handles;
  char what[96];
  (void)state;

  /* Warm-up without the table: the pool's server struct (which the runs then
   * reuse, never free), lazily made system handles. */
  rec_stop(rec_start(REC_ECHO, NULL, NULL));
  run_once(-1, 0, "clean");
  for (h = 0; h < NFAULTS; h++) counts[h] = atomic_load(&calls[h]);
  start_handles = ts_handle_count();
  for (h = 0; h < NFAULTS; h++) {
    if (h == H_FREE) continue; /* cannot fail */
    for (n = 1; n <= counts[h] && n <= max; n++) {
      snprintf(what, sizeof(what), "%s call %d of %d", faults[h].name, n, counts[h]);
      run_once(h, n, what);
      runs++;
    }
  }
  print_message("%d runs; calls per entry in the clean run:", runs);
  for (h = 0; h < NFAULTS; h++) print_message(" %s=%d", faults[h].name, counts[h]);
  print_message("\n");
  /* A handle lost per run would show here many times over. */
  assert_true(ts_handle_count() <= start_handles + 8);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_every_call_fails_at_every_point, restore_hooks),
  };
  ts_net_init();
  return cmocka_run_group_tests_name("faultsweep", tests, NULL, NULL);
}
