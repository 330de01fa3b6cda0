/* Networking added in 1.1: the listening address reported back, dual-stack
 * listening, on_log for what used to pass in silence, and outbound
 * connections (iocp_connect). Linked against the static build, so that the
 * call table (dll/core/hooks.h) can make system calls fail; the hooks are
 * set before a server starts and reset after it is destroyed. */
#include "tsupport.h"
#include "internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if !defined(_WIN32)
#  include <arpa/inet.h>
#  include <dirent.h>
#  include <netinet/in.h>
#  include <errno.h>
#  include <sys/resource.h>
#  include <unistd.h>
#endif

/* ---- A server that records what the new callbacks report ------------------- */

#define NET_IDS 8

typedef struct net_conn {
  iocp_conn_id id;
  int state; /* 0 unused, 1 connected, 2 ended, 3 failed */
} net_conn;

typedef struct net_srv {
  iocp_server *srv;
  int refuse;           /* on_connect refuses */
  const char *greeting; /* sent from on_connect */
  uint16_t connect_port; /* the first on_connect connects there, from inside */
  atomic_int connect_rc;
  iocp_conn_id connected_id;
  ts_counter *connects, *failures, *disconnects, *bytes_in, *violations;
  ts_counter *logs, *log_warn_emfile, *log_info, *log_error;
  atomic_int last_error, last_reason, last_log_code;
  char last_addr[64];
  uint16_t last_port;
  uint8_t in[256];
  atomic_size_t in_len;
  net_conn conns[NET_IDS];
  atomic_flag lock;
} net_srv;

static void net_lock(net_srv *n) {
  while (atomic_flag_test_and_set(&n->lock)) {
  }
}
static void net_unlock(net_srv *n) { atomic_flag_clear(&n->lock); }

/* The record of id; created when `create`. */
static net_conn *conn_of(net_srv *n, iocp_conn_id id, int create) {
  int i;
  for (i = 0; i < NET_IDS; i++)
    if (n->conns[i].id == id) return &n->conns[i];
  if (!create) return NULL;
  for (i = 0; i < NET_IDS; i++)
    if (n->conns[i].id == 0) {
      n->conns[i].id = id;
      return &n->conns[i];
    }
  return NULL;
}

/* Moves id from state `from` to `to`, counting a violation otherwise. */
static void step(net_srv *n, iocp_conn_id id, int from, int to) {
  net_conn *c;
  net_lock(n);
  c = conn_of(n, id, from == 0);
  if (c == NULL || c->state != from)
    ts_counter_add(n->violations, 1);
  else
    c->state = to;
  net_unlock(n);
}

static int IOCP_CALL n_connect(iocp_server *s, void *user, iocp_conn_id id, const char *addr,
                               uint16_t port) {
  net_srv *n = user;
  if (s != n->srv) ts_counter_add(n->violations, 1);
  step(n, id, 0, 1);
  net_lock(n);
  snprintf(n->last_addr, sizeof(n->last_addr), "%s", addr);
  n->last_port = port;
  net_unlock(n);
  if (n->greeting != NULL && !n->refuse)
    if (iocp_send(s, id, n->greeting, strlen(n->greeting)) != IOCP_OK)
      ts_counter_add(n->violations, 1);
  if (n->connect_port != 0) {
    uint16_t port = n->connect_port;
    n->connect_port = 0; /* only the first, the one accepted */
    atomic_store(&n->connect_rc, iocp_connect(s, "127.0.0.1", port, &n->connected_id));
  }
  ts_counter_add(n->connects, 1);
  return n->refuse;
}

static void IOCP_CALL n_data(iocp_server *s, void *user, iocp_conn_id id, const uint8_t *d,
                             size_t len) {
  net_srv *n = user;
  size_t at;
  (void)s;
  net_lock(n);
  if (conn_of(n, id, 0) == NULL || conn_of(n, id, 0)->state != 1) ts_counter_add(n->violations, 1);
  at = atomic_load(&n->in_len);
  if (at + len <= sizeof(n->in)) {
    memcpy(n->in + at, d, len);
    atomic_store(&n->in_len, at + len);
  }
  net_unlock(n);
  ts_counter_add(n->bytes_in, (int64_t)len);
}

static void IOCP_CALL n_disconnect(iocp_server *s, void *user, iocp_conn_id id, int reason) {
  net_srv *n = user;
  (void)s;
  step(n, id, 1, 2);
  atomic_store(&n->last_reason, reason);
  ts_counter_add(n->disconnects, 1);
}

static void IOCP_CALL n_failed(iocp_server *s, void *user, iocp_conn_id id, int error) {
  net_srv *n = user;
  (void)s;
  step(n, id, 0, 3);
  atomic_store(&n->last_error, error);
  /* The id is stale now. */
  if (iocp_send(s, id, "x", 1) != IOCP_ENOTFOUND) ts_counter_add(n->violations, 1);
  ts_counter_add(n->failures, 1);
}

static void IOCP_CALL n_log(iocp_server *s, void *user, int level, int code, const char *text) {
  net_srv *n = user;
  (void)s;
  if (text == NULL || text[0] == '\0' || strchr(text, '\n') != NULL)
    ts_counter_add(n->violations, 1);
  atomic_store(&n->last_log_code, code);
  if (level == IOCP_LOG_WARN && code == IOCP_EMFILE) ts_counter_add(n->log_warn_emfile, 1);
  if (level == IOCP_LOG_INFO) ts_counter_add(n->log_info, 1);
  if (level == IOCP_LOG_ERROR) ts_counter_add(n->log_error, 1);
  ts_counter_add(n->logs, 1);
}

static net_srv *net_new(void) {
  net_srv *n = calloc(1, sizeof(*n));
  assert_non_null(n);
  n->connects = ts_counter_new();
  n->failures = ts_counter_new();
  n->disconnects = ts_counter_new();
  n->bytes_in = ts_counter_new();
  n->violations = ts_counter_new();
  n->logs = ts_counter_new();
  n->log_warn_emfile = ts_counter_new();
  n->log_info = ts_counter_new();
  n->log_error = ts_counter_new();
  atomic_flag_clear(&n->lock);
  return n;
}

static iocp_callbacks net_callbacks(void) {
  iocp_callbacks cb;
  memset(&cb, 0, sizeof(cb));
  cb.size = sizeof(cb);
  cb.on_connect = n_connect;
  cb.on_data = n_data;
  cb.on_disconnect = n_disconnect;
  cb.on_connect_failed = n_failed;
  cb.on_log = n_log;
  return cb;
}

/* Starts n's server (config may be NULL); returns iocp_create's code. */
static int net_start(net_srv *n, const iocp_config *config) {
  iocp_callbacks cb = net_callbacks();
  return iocp_create(config, &cb, n, &n->srv);
}

static void net_free(net_srv *n) {
  assert_int_equal(ts_counter_get(n->violations), 0);
  ts_counter_free(n->connects);
  ts_counter_free(n->failures);
  ts_counter_free(n->disconnects);
  ts_counter_free(n->bytes_in);
  ts_counter_free(n->violations);
  ts_counter_free(n->logs);
  ts_counter_free(n->log_warn_emfile);
  ts_counter_free(n->log_info);
  ts_counter_free(n->log_error);
  free(n);
}

static void net_stop(net_srv *n) {
  assert_int_equal(iocp_destroy(n->srv), IOCP_OK);
  /* Every connection that was kept ended exactly once. */
  assert_int_equal(ts_counter_get(n->disconnects) + (n->refuse ? ts_counter_get(n->connects) : 0),
                   ts_counter_get(n->connects));
  net_free(n);
}

/* ---- Listening address and dual stack --------------------------------------- */

static void test_listen_address(void **state) {
  iocp_config c;
  net_srv *n = net_new();
  char text[IOCP_ADDRSTRLEN];
  uint16_t port = 0;
  (void)state;
  assert_int_equal(net_start(n, NULL), IOCP_OK);
  assert_int_equal(iocp_listen_address(n->srv, text, sizeof(text), &port), IOCP_OK);
  assert_string_equal(text, "127.0.0.1");
  assert_int_equal(port, iocp_port(n->srv));
  assert_int_not_equal(port, 0);
  assert_int_equal(iocp_listen_address(n->srv, text, sizeof(text), NULL), IOCP_OK);
  /* Bad input: nothing written. */
  assert_int_equal(iocp_listen_address(NULL, text, sizeof(text), &port), IOCP_EINVAL);
  assert_int_equal(iocp_listen_address(n->srv, NULL, sizeof(text), &port), IOCP_EINVAL);
  memcpy(text, "untouched", 10);
  assert_int_equal(iocp_listen_address(n->srv, text, IOCP_ADDRSTRLEN - 1, &port), IOCP_EINVAL);
  assert_string_equal(text, "untouched");
  net_stop(n);

  n = net_new();
  iocp_config_init(&c, sizeof(c));
  c.bind_address = "::1";
  assert_int_equal(net_start(n, &c), IOCP_OK);
  assert_int_equal(iocp_listen_address(n->srv, text, sizeof(text), &port), IOCP_OK);
  assert_string_equal(text, "::1");
  assert_int_equal(port, iocp_port(n->srv));
  net_stop(n);
}

/* A TCP connect that succeeds or is refused, nothing else (no time-outs). */
static int reachable(const char *addr, uint16_t port) {
  ts_sock s = ts_connect_to(addr, port);
  if (s == TS_BAD_SOCK) return 0;
  ts_close(s);
  return 1;
}

static void test_dual_stack(void **state) {
  iocp_config c;
  net_srv *n;
  char text[IOCP_ADDRSTRLEN];
  uint16_t port;
  (void)state;

  /* The default: "::" is IPv6 only, on both systems. */
  n = net_new();
  iocp_config_init(&c, sizeof(c));
  assert_int_equal(c.dual_stack, 0);
  c.bind_address = "::";
  assert_int_equal(net_start(n, &c), IOCP_OK);
  port = iocp_port(n->srv);
  assert_true(reachable("::1", port));
  assert_false(reachable("127.0.0.1", port));
  assert_int_equal(ts_counter_wait(n->disconnects, 1, TS_TIMEOUT_MS), 0);
  net_stop(n);

  /* Dual stack: one server for both, IPv4 peers as plain IPv4 text. */
  n = net_new();
  iocp_config_init(&c, sizeof(c));
  c.bind_address = "::";
  c.dual_stack = 1;
  assert_int_equal(net_start(n, &c), IOCP_OK);
  port = iocp_port(n->srv);
  assert_int_equal(iocp_listen_address(n->srv, text, sizeof(text), NULL), IOCP_OK);
  assert_string_equal(text, "::");
  assert_true(reachable("127.0.0.1", port));
  assert_int_equal(ts_counter_wait(n->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_string_equal(n->last_addr, "127.0.0.1");
  assert_true(reachable("::1", port));
  assert_int_equal(ts_counter_wait(n->disconnects, 2, TS_TIMEOUT_MS), 0);
  assert_string_equal(n->last_addr, "::1");
  net_stop(n);

  /* Out of range, or asked of an IPv4 address: refused, nothing started. */
  n = net_new();
  iocp_config_init(&c, sizeof(c));
  c.bind_address = "::";
  c.dual_stack = 2;
  assert_int_equal(net_start(n, &c), IOCP_EINVAL);
  assert_null(n->srv);
  c.dual_stack = 1;
  c.bind_address = "127.0.0.1";
  assert_int_equal(net_start(n, &c), IOCP_EINVAL);
  assert_null(n->srv);
  /* A 1.0 caller's struct ends before dual_stack: whatever lies there is
   * not read. */
  iocp_config_init(&c, (uint32_t)offsetof(iocp_config, dual_stack));
  c.bind_address = "127.0.0.1";
  c.dual_stack = 7;
  assert_int_equal(net_start(n, &c), IOCP_OK);
  assert_int_equal(iocp_destroy(n->srv), IOCP_OK);
  net_free(n);
}

/* ---- on_log ---------------------------------------------------------------- */

/* A 1.0 caller's callbacks struct ends before on_log: it is never called. */
static void test_log_not_read_past_callbacks_size(void **state) {
  iocp_callbacks cb = net_callbacks();
  net_srv *n = net_new();
  (void)state;
  cb.size = (uint32_t)offsetof(iocp_callbacks, on_log);
  cb.on_log = (iocp_on_log_fn)(uintptr_t)1; /* would crash if called */
  cb.on_connect_failed = (iocp_on_connect_failed_fn)(uintptr_t)1;
  assert_int_equal(iocp_create(NULL, &cb, n, &n->srv), IOCP_OK);
  assert_true(reachable("127.0.0.1", iocp_port(n->srv)));
  assert_int_equal(ts_counter_wait(n->disconnects, 1, TS_TIMEOUT_MS), 0);
  net_stop(n);
}

static atomic_int faults_left;

#if defined(_WIN32)
static int WSAAPI exclusive_fails(SOCKET s, int level, int name, const char *v, int len) {
  if (level == SOL_SOCKET && name == SO_EXCLUSIVEADDRUSE) {
    WSASetLastError(WSAEINVAL);
    return SOCKET_ERROR;
  }
  return setsockopt(s, level, name, v, len);
}

static SOCKET WSAAPI sockets_run_out(int af, int type, int proto, LPWSAPROTOCOL_INFOW info,
                                     GROUP g, DWORD flags) {
  if (atomic_fetch_sub(&faults_left, 1) > 0) {
    WSASetLastError(WSAEMFILE);
    return INVALID_SOCKET;
  }
  return WSASocketW(af, type, proto, info, g, flags);
}
#else
static int v6only_fails(int fd, int level, int name, const void *v, socklen_t len) {
  if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY) {
    errno = ENOPROTOOPT;
    return -1;
  }
  return setsockopt(fd, level, name, v, len);
}

static int sockets_run_out(int domain, int type, int proto) {
  if (atomic_fetch_sub(&faults_left, 1) > 0) {
    errno = EMFILE;
    return -1;
  }
  return socket(domain, type, proto);
}

static int epoll_wait_breaks(int epfd, struct epoll_event *evs, int max, int timeout) {
  if (atomic_fetch_sub(&faults_left, 1) > 0) {
    errno = EBADF;
    return -1;
  }
  return epoll_wait(epfd, evs, max, timeout);
}
#endif

/* Windows: without SO_EXCLUSIVEADDRUSE another process could bind the port
 * and take our connections, so iocp_create fails and on_log says why.
 * Linux: the same for IPV6_V6ONLY, which decides what "::" serves. */
static void test_create_fails_when_a_socket_option_fails(void **state) {
  iocp_config c;
  net_srv *n = net_new();
  long before = ts_handle_count();
  int rc;
  (void)state;
  iocp_config_init(&c, sizeof(c));
#if defined(_WIN32)
  iocp__hooks.setsockopt = exclusive_fails;
#else
  iocp__hooks.setsockopt = v6only_fails;
  c.bind_address = "::1";
#endif
  rc = net_start(n, &c);
  iocp__hooks_reset();
  assert_true(rc < 0);
  assert_null(n->srv);
  assert_int_equal(ts_counter_get(n->log_error), 1);
  assert_int_equal(atomic_load(&n->last_log_code), rc);
  assert_true(ts_handle_count() <= before + 2);
  net_free(n);
}

/* Descriptor exhaustion while accepting is reported once as it starts
 * (IOCP_LOG_WARN, IOCP_EMFILE) and once as it ends (IOCP_LOG_INFO), and the
 * waiting client is served. Linux: the descriptor limit is really lowered
 * so that accept4 fails with EMFILE. Windows: the call table makes socket
 * creation fail with WSAEMFILE, so AcceptEx cannot be re-posted. */
#if !defined(_WIN32)
static int highest_fd(void) {
  int hi = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  assert_non_null(d);
  while ((e = readdir(d)) != NULL) {
    int fd = atoi(e->d_name);
    if (fd > hi) hi = fd;
  }
  closedir(d);
  return hi;
}
#endif

static void test_log_sees_descriptor_exhaustion(void **state) {
  iocp_config c;
  net_srv *n = net_new();
  ts_sock a;
  (void)state;
  iocp_config_init(&c, sizeof(c));
  c.accepts_posted = 1;
#if defined(_WIN32)
  atomic_store(&faults_left, 0);
  iocp__hooks.wsasocket = sockets_run_out;
  assert_int_equal(net_start(n, &c), IOCP_OK);
  atomic_store(&faults_left, 1 << 30);
  a = ts_connect(iocp_port(n->srv)); /* takes the posted accept; no new one */
  assert_true(a != TS_BAD_SOCK);
  assert_int_equal(ts_counter_wait(n->log_warn_emfile, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_wait(n->connects, 1, TS_TIMEOUT_MS), 0);
  {
    ts_sock b = ts_connect(iocp_port(n->srv)); /* waits in the backlog */
    assert_true(b != TS_BAD_SOCK);
    atomic_store(&faults_left, 0); /* sockets are back */
    assert_int_equal(ts_counter_wait(n->log_info, 1, TS_TIMEOUT_MS), 0);
    assert_int_equal(ts_counter_wait(n->connects, 2, TS_TIMEOUT_MS), 0);
    ts_close(b);
  }
#else
  {
    struct rlimit old, low;
    ts_sock b;
    int waited, fill[4096], nfill;
    assert_int_equal(net_start(n, &c), IOCP_OK);
    b = ts_connect(iocp_port(n->srv)); /* first, a normal connection */
    assert_int_equal(ts_counter_wait(n->connects, 1, TS_TIMEOUT_MS), 0);
    a = (ts_sock)socket(AF_INET, SOCK_STREAM, 0); /* made before the limit drops */
    assert_true(a >= 0);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)highest_fd() + 1;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    /* Fill the holes below the limit: no new descriptor anywhere now. */
    for (nfill = 0; nfill < (int)(sizeof(fill) / sizeof(fill[0])); nfill++)
      if ((fill[nfill] = dup(0)) < 0) break;
    assert_int_equal(errno, EMFILE);
    {
      struct sockaddr_in to;
      memset(&to, 0, sizeof(to));
      to.sin_family = AF_INET;
      to.sin_port = htons(iocp_port(n->srv));
      to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      assert_int_equal(connect((int)a, (struct sockaddr *)&to, sizeof(to)), 0);
    }
    waited = ts_counter_wait(n->log_warn_emfile, 1, TS_TIMEOUT_MS);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    while (nfill > 0) close(fill[--nfill]);
    assert_int_equal(waited, 0);
    assert_int_equal(ts_counter_wait(n->log_info, 1, TS_TIMEOUT_MS), 0);
    assert_int_equal(ts_counter_wait(n->connects, 2, TS_TIMEOUT_MS), 0);
    ts_close(b);
  }
#endif
  /* Said once while it lasted, not at every retry. */
  assert_int_equal(ts_counter_get(n->log_warn_emfile), 1);
  ts_set_timeout(a, 20000);
  assert_int_equal(ts_send_all(a, "1", 1), TS_OK);
  ts_close(a);
  assert_int_equal(ts_counter_wait(n->disconnects, 2, TS_TIMEOUT_MS), 0);
  net_stop(n);
  iocp__hooks_reset();
}

#if !defined(_WIN32)
/* A worker whose epoll_wait breaks leaves, and says so; the others serve on. */
static void test_log_sees_a_worker_leave(void **state) {
  iocp_config c;
  net_srv *n = net_new();
  (void)state;
  iocp_config_init(&c, sizeof(c));
  c.threads = 2;
  atomic_store(&faults_left, 1);
  iocp__hooks.epoll_wait = epoll_wait_breaks;
  assert_int_equal(net_start(n, &c), IOCP_OK);
  assert_int_equal(ts_counter_wait(n->log_error, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(atomic_load(&n->last_log_code), IOCP_ESYSTEM);
  assert_true(reachable("127.0.0.1", iocp_port(n->srv)));
  assert_int_equal(ts_counter_wait(n->disconnects, 1, TS_TIMEOUT_MS), 0);
  net_stop(n);
  iocp__hooks_reset();
}
#endif

/* ---- Outbound connections ----------------------------------------------------- */

/* A plain echo target with the recorder (which checks the contract). */
static void test_connect_gets_the_events_of_an_accepted_connection(void **state) {
  rec_server *target = rec_start(REC_ECHO, NULL, NULL);
  net_srv *n = net_new();
  iocp_conn_id id = 0;
  (void)state;
  n->greeting = "hello";
  assert_int_equal(net_start(n, NULL), IOCP_OK);
  assert_int_equal(iocp_connect(n->srv, "127.0.0.1", target->port, &id), IOCP_OK);
  assert_int_not_equal(id, 0);
  assert_int_equal(ts_counter_wait(n->connects, 1, TS_TIMEOUT_MS), 0);
  assert_string_equal(n->last_addr, "127.0.0.1");
  assert_int_equal(n->last_port, target->port);
  assert_int_equal(ts_counter_wait(n->bytes_in, 5, TS_TIMEOUT_MS), 0); /* the echo */
  assert_memory_equal(n->in, "hello", 5);
  assert_int_equal(iocp_connection_count(n->srv), 1);
  /* A graceful end from our side, as for an accepted connection. */
  assert_int_equal(iocp_shutdown(n->srv, id), IOCP_OK);
  assert_int_equal(ts_counter_wait(n->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(atomic_load(&n->last_reason), IOCP_REASON_PEER_CLOSED);
  assert_int_equal(ts_counter_get(n->failures), 0);
  assert_int_equal(iocp_send(n->srv, id, "x", 1), IOCP_ENOTFOUND); /* stale */
  net_stop(n);
  assert_int_equal(ts_counter_wait(target->disconnects, 1, TS_TIMEOUT_MS), 0);
  rec_stop(target);
}

/* The local address of both ends of one loopback connection: the outbound
 * one reports the port the system chose, which the accepting side saw as
 * its peer's; the accepted one reports the listening address and port. */
static void test_local_address_of_both_ends(void **state) {
  net_srv *a = net_new(), *b = net_new();
  iocp_conn_id out = 0, in;
  char text[IOCP_ADDRSTRLEN];
  uint16_t port = 0;
  (void)state;
  assert_int_equal(net_start(a, NULL), IOCP_OK);
  assert_int_equal(net_start(b, NULL), IOCP_OK);
  assert_int_equal(iocp_connect(b->srv, "127.0.0.1", iocp_port(a->srv), &out), IOCP_OK);
  assert_int_equal(ts_counter_wait(b->connects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_wait(a->connects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(iocp_local_address(b->srv, out, text, sizeof(text), &port), IOCP_OK);
  assert_string_equal(text, "127.0.0.1");
  net_lock(a);
  assert_int_equal(port, a->last_port);
  in = a->conns[0].id;
  net_unlock(a);
  assert_int_not_equal(port, 0);
  assert_int_equal(iocp_local_address(a->srv, in, text, sizeof(text), &port), IOCP_OK);
  assert_string_equal(text, "127.0.0.1");
  assert_int_equal(port, iocp_port(a->srv));
  assert_int_equal(iocp_local_address(a->srv, in, text, sizeof(text), NULL), IOCP_OK);
  /* Bad input: nothing written. */
  memcpy(text, "untouched", 10);
  assert_int_equal(iocp_local_address(NULL, in, text, sizeof(text), &port), IOCP_EINVAL);
  assert_int_equal(iocp_local_address(a->srv, in, NULL, sizeof(text), &port), IOCP_EINVAL);
  assert_int_equal(iocp_local_address(a->srv, in, text, IOCP_ADDRSTRLEN - 1, &port), IOCP_EINVAL);
  assert_int_equal(iocp_local_address(a->srv, in + 1000, text, sizeof(text), &port), IOCP_ENOTFOUND);
  assert_string_equal(text, "untouched");
  assert_int_equal(iocp_close(b->srv, out), IOCP_OK);
  assert_int_equal(ts_counter_wait(b->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(iocp_local_address(b->srv, out, text, sizeof(text), &port), IOCP_ENOTFOUND);
  assert_int_equal(ts_counter_wait(a->disconnects, 1, TS_TIMEOUT_MS), 0);
  net_stop(b);
  net_stop(a);
}

/* Bytes sent before the connection is up go out after on_connect; IPv6. */
static void test_connect_sends_what_was_queued_before(void **state) {
  iocp_config tc;
  rec_server *target;
  net_srv *n = net_new();
  iocp_conn_id id = 0;
  uint64_t q = 0;
  (void)state;
  iocp_config_init(&tc, sizeof(tc));
  tc.bind_address = "::1";
  target = rec_start(REC_ECHO, &tc, NULL);
  assert_int_equal(net_start(n, NULL), IOCP_OK);
  assert_int_equal(iocp_connect(n->srv, "::1", target->port, &id), IOCP_OK);
  assert_int_equal(iocp_send(n->srv, id, "early", 5), IOCP_OK);
  assert_int_equal(iocp_queued(n->srv, id, &q), IOCP_OK);
  assert_int_equal(ts_counter_wait(n->bytes_in, 5, TS_TIMEOUT_MS), 0);
  assert_memory_equal(n->in, "early", 5);
  assert_string_equal(n->last_addr, "::1");
  assert_int_equal(iocp_close(n->srv, id), IOCP_OK);
  assert_int_equal(ts_counter_wait(n->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(atomic_load(&n->last_reason), IOCP_REASON_LOCAL_CLOSE);
  net_stop(n);
  assert_int_equal(ts_counter_wait(target->disconnects, 1, TS_TIMEOUT_MS), 0);
  rec_stop(target);
}

/* An IPv4-mapped target reaches an IPv4 listener over IPv4, on Windows
 * (whose IPv6 sockets are v6-only unless told) as on Linux. */
static void test_connect_to_an_ipv4_mapped_address(void **state) {
  rec_server *target = rec_start(REC_ECHO, NULL, NULL); /* 127.0.0.1 */
  net_srv *n = net_new();
  iocp_conn_id id = 0;
  (void)state;
  n->greeting = "mapped";
  assert_int_equal(net_start(n, NULL), IOCP_OK);
  assert_int_equal(iocp_connect(n->srv, "::ffff:127.0.0.1", target->port, &id), IOCP_OK);
  assert_int_equal(ts_counter_wait(n->bytes_in, 6, TS_TIMEOUT_MS), 0); /* the echo */
  assert_memory_equal(n->in, "mapped", 6);
  assert_int_equal(ts_counter_get(n->failures), 0);
  assert_int_equal(iocp_close(n->srv, id), IOCP_OK);
  assert_int_equal(ts_counter_wait(n->disconnects, 1, TS_TIMEOUT_MS), 0);
  net_stop(n);
  assert_int_equal(ts_counter_wait(target->disconnects, 1, TS_TIMEOUT_MS), 0);
  rec_stop(target);
}

/* A link-local address without its scope cannot be reached from here: the
 * header's IOCP_EUNREACH on both engines, not the system's "invalid". */
static void test_connect_to_link_local_without_scope(void **state) {
  net_srv *n = net_new();
  iocp_conn_id id = 0;
  (void)state;
  assert_int_equal(net_start(n, NULL), IOCP_OK);
  assert_int_equal(iocp_connect(n->srv, "fe80::1", 9, &id), IOCP_OK);
  assert_int_equal(ts_counter_wait(n->failures, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(atomic_load(&n->last_error), IOCP_EUNREACH);
  assert_int_equal(ts_counter_get(n->connects), 0);
  net_stop(n);
}

/* A port where nothing listens: on_connect_failed(IOCP_ECONNREFUSED) is the
 * only callback of the id. */
static void test_connect_refused(void **state) {
  net_srv *n = net_new();
  iocp_conn_id id = 0;
  uint16_t port;
  ts_sock l = ts_listen_any(&port);
  (void)state;
  ts_close(l); /* the port is free again: connects to it are refused */
  assert_int_equal(net_start(n, NULL), IOCP_OK);
  assert_int_equal(iocp_connect(n->srv, "127.0.0.1", port, &id), IOCP_OK);
  assert_int_equal(ts_counter_wait(n->failures, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(atomic_load(&n->last_error), IOCP_ECONNREFUSED);
  assert_int_equal(ts_counter_get(n->connects), 0);
  assert_int_equal(iocp_close(n->srv, id), IOCP_ENOTFOUND);
  assert_int_equal(iocp_connection_count(n->srv), 0);
  net_stop(n);
}

/* A listener whose backlog is full: the kernel drops our SYN, so the attempt
 * stays pending for seconds. */
static ts_sock full_listener(uint16_t *port, ts_sock *queued) {
  struct sockaddr_in a;
  ts_sock l;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  l = (ts_sock)socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  assert_int_equal(bind((intptr_t)l, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen((intptr_t)l, 0), 0);
  *port = ts_local_port(l);
  *queued = ts_connect(*port); /* fills the queue of one */
  assert_true(*queued != TS_BAD_SOCK);
  return l;
}

/* Closing or destroying while connecting ends the id with
 * on_connect_failed(IOCP_ECLOSED); a connect that wins the race instead
 * goes through on_connect and on_disconnect. Exactly one of the two. */
static void test_close_and_destroy_while_connecting(void **state) {
  net_srv *n = net_new();
  iocp_conn_id id = 0, id2 = 0;
  uint16_t port;
  ts_sock queued, l = full_listener(&port, &queued);
  (void)state;
  assert_int_equal(net_start(n, NULL), IOCP_OK);
  assert_int_equal(iocp_connect(n->srv, "127.0.0.1", port, &id), IOCP_OK);
  assert_int_equal(iocp_connection_count(n->srv), 1); /* counted while connecting */
  assert_int_equal(iocp_close(n->srv, id), IOCP_OK);
  assert_int_equal(ts_counter_wait(n->failures, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(atomic_load(&n->last_error), IOCP_ECLOSED);
  assert_int_equal(ts_counter_get(n->connects), 0);
  assert_int_equal(iocp_close(n->srv, id), IOCP_ENOTFOUND);
  /* Destroyed with an attempt pending: its one callback comes first. */
  assert_int_equal(iocp_connect(n->srv, "127.0.0.1", port, &id2), IOCP_OK);
  assert_int_not_equal(id2, id);
  assert_int_equal(iocp_destroy(n->srv), IOCP_OK);
  assert_int_equal(ts_counter_get(n->failures), 2);
  assert_int_equal(ts_counter_get(n->connects), 0);
  net_free(n);
  ts_close(queued);
  ts_close(l);
}

/* iocp_connect from inside a callback (as a proxy does in on_connect): the
 * new connection's callbacks follow on a worker, never inside the call. */
static void test_connect_from_inside_a_callback(void **state) {
  rec_server *target = rec_start(REC_ECHO, NULL, NULL);
  net_srv *n = net_new();
  ts_sock a;
  (void)state;
  n->connect_port = target->port;
  assert_int_equal(net_start(n, NULL), IOCP_OK);
  a = ts_connect(iocp_port(n->srv));
  assert_int_equal(ts_counter_wait(n->connects, 2, TS_TIMEOUT_MS), 0);
  assert_int_equal(atomic_load(&n->connect_rc), IOCP_OK);
  assert_int_not_equal(n->connected_id, 0);
  assert_int_equal(iocp_send(n->srv, n->connected_id, "in", 2), IOCP_OK);
  assert_int_equal(ts_counter_wait(n->bytes_in, 2, TS_TIMEOUT_MS), 0);
  ts_close(a);
  assert_int_equal(ts_counter_wait(n->disconnects, 1, TS_TIMEOUT_MS), 0);
  net_stop(n); /* ends the outbound one too */
  assert_int_equal(ts_counter_wait(target->disconnects, 1, TS_TIMEOUT_MS), 0);
  rec_stop(target);
}

/* on_connect may refuse an outbound connection like an accepted one: no
 * on_disconnect follows, the remote end sees the connection end. */
static void test_connect_refused_by_on_connect(void **state) {
  rec_server *target = rec_start(REC_ECHO, NULL, NULL);
  net_srv *n = net_new();
  iocp_conn_id id = 0;
  (void)state;
  n->refuse = 1;
  assert_int_equal(net_start(n, NULL), IOCP_OK);
  assert_int_equal(iocp_connect(n->srv, "127.0.0.1", target->port, &id), IOCP_OK);
  assert_int_equal(ts_counter_wait(n->connects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_wait(target->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(n->disconnects), 0);
  assert_int_equal(ts_counter_get(n->failures), 0);
  net_stop(n);
  rec_stop(target);
}

static void test_connect_rejects_bad_arguments(void **state) {
  net_srv *n = net_new();
  iocp_conn_id id = 99;
  long before;
  (void)state;
  assert_int_equal(net_start(n, NULL), IOCP_OK);
  before = ts_handle_count();
  assert_int_equal(iocp_connect(NULL, "127.0.0.1", 80, &id), IOCP_EINVAL);
  assert_int_equal(id, 0);
  id = 99;
  assert_int_equal(iocp_connect(n->srv, NULL, 80, &id), IOCP_EINVAL);
  assert_int_equal(id, 0);
  assert_int_equal(iocp_connect(n->srv, "127.0.0.1", 80, NULL), IOCP_EINVAL);
  assert_int_equal(iocp_connect(n->srv, "127.0.0.1", 0, &id), IOCP_EINVAL);
  assert_int_equal(iocp_connect(n->srv, "localhost", 80, &id), IOCP_EINVAL); /* no DNS */
  assert_int_equal(iocp_connect(n->srv, "127.0.0.1:80", 80, &id), IOCP_EINVAL);
  assert_int_equal(iocp_connect(n->srv, "", 80, &id), IOCP_EINVAL);
  assert_int_equal(iocp_connect(n->srv, "1.2.3", 80, &id), IOCP_EINVAL);
  assert_int_equal(iocp_connect(n->srv, "::1%", 80, &id), IOCP_EINVAL);
  assert_int_equal(id, 0);
  assert_int_equal(iocp_connection_count(n->srv), 0);
  assert_int_equal(ts_counter_get(n->failures), 0);
  assert_true(ts_handle_count() <= before + 2);
  net_stop(n);
}

/* Out of sockets when iocp_connect makes one: IOCP_EMFILE at once, no id,
 * no callback, nothing left behind. */
static void test_connect_out_of_sockets(void **state) {
  net_srv *n = net_new();
  iocp_conn_id id = 99;
  (void)state;
  atomic_store(&faults_left, 0);
#if defined(_WIN32)
  iocp__hooks.wsasocket = sockets_run_out;
#else
  iocp__hooks.socket = sockets_run_out;
#endif
  assert_int_equal(net_start(n, NULL), IOCP_OK);
  atomic_store(&faults_left, 1);
  assert_int_equal(iocp_connect(n->srv, "127.0.0.1", 9, &id), IOCP_EMFILE);
  assert_int_equal(id, 0);
  assert_int_equal(iocp_connection_count(n->srv), 0);
  net_stop(n);
  iocp__hooks_reset();
}

/* ---- Queue mode: outbound connections and log messages as events ------------- */

/* iocp_connect in queue mode: ACCEPTED once connected (with the remote end
 * and, later, the context), or one CONNECT_FAILED: refused, or closed while
 * connecting. */
static void test_queue_connect_events(void **state) {
  rec_server *target = rec_start(REC_ECHO, NULL, NULL);
  iocp_server *s = ts_queue_start(0);
  iocp_conn_id id = 0, id2 = 0;
  iocp_event ev;
  uint16_t port;
  ts_sock queued, l;
  int marker;
  (void)state;
  assert_int_equal(iocp_connect(s, "127.0.0.1", target->port, &id), IOCP_OK);
  ev = ts_queue_next(s, IOCP_EVENT_ACCEPTED);
  assert_true(ev.id == id);
  assert_int_equal(ev.value, target->port);
  assert_string_equal((const char *)(uintptr_t)ev.data, "127.0.0.1");
  assert_int_equal(iocp_set_context(s, id, &marker), IOCP_OK);
  assert_int_equal(iocp_send(s, id, "hi", 2), IOCP_OK);
  ev = ts_queue_next(s, IOCP_EVENT_DATA);
  assert_true(ev.id == id);
  assert_int_equal(ev.len, 2);
  assert_memory_equal((const void *)(uintptr_t)ev.data, "hi", 2);
  assert_ptr_equal((void *)(uintptr_t)ev.context, &marker);
  assert_int_equal(iocp_close(s, id), IOCP_OK);
  ev = ts_queue_next(s, IOCP_EVENT_DISCONNECTED);
  assert_int_equal(ev.value, IOCP_REASON_LOCAL_CLOSE);
  assert_ptr_equal((void *)(uintptr_t)ev.context, &marker);

  /* Refused: one CONNECT_FAILED, the id stale. */
  l = ts_listen_any(&port);
  ts_close(l);
  assert_int_equal(iocp_connect(s, "127.0.0.1", port, &id), IOCP_OK);
  ev = ts_queue_next(s, IOCP_EVENT_CONNECT_FAILED);
  assert_true(ev.id == id);
  assert_int_equal(ev.value, IOCP_ECONNREFUSED);
  assert_int_equal(iocp_close(s, id), IOCP_ENOTFOUND);

  /* Closed while connecting: CONNECT_FAILED(IOCP_ECLOSED), nothing else. */
  l = full_listener(&port, &queued);
  assert_int_equal(iocp_connect(s, "127.0.0.1", port, &id2), IOCP_OK);
  assert_int_equal(iocp_close(s, id2), IOCP_OK);
  ev = ts_queue_next(s, IOCP_EVENT_CONNECT_FAILED);
  assert_true(ev.id == id2);
  assert_int_equal(ev.value, IOCP_ECLOSED);
  assert_int_equal(iocp_wait(s, &ev, 1, 100), 0);
  assert_int_equal(iocp_connection_count(s), 0);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
  ts_close(queued);
  ts_close(l);
  assert_int_equal(ts_counter_wait(target->disconnects, 1, TS_TIMEOUT_MS), 0);
  rec_stop(target);
}

static atomic_int conn_allocs_to_fail;
static ts_counter *conn_allocs_failed;

/* Fails the allocation of a connection (and nothing else) while asked to. */
static void *conn_calloc_fails(size_t n, size_t size) {
  if (size == sizeof(iocp__conn) && atomic_fetch_sub(&conn_allocs_to_fail, 1) > 0) {
    ts_counter_add(conn_allocs_failed, 1);
    return NULL;
  }
  return calloc(n, size);
}

/* Counts LOG events (and the losses their notes report) from one batch. */
static void count_logs(const iocp_event *ev, int n, int64_t *messages, int64_t *lost) {
  int i;
  for (i = 0; i < n; i++) {
    const char *text = (const char *)(uintptr_t)ev[i].data;
    assert_int_equal(ev[i].type, IOCP_EVENT_LOG);
    assert_true(ev[i].id == 0);
    assert_int_equal(ev[i].value, IOCP_LOG_WARN);
    assert_int_equal(strlen(text), ev[i].len);
    if (strstr(text, "lost") != NULL) {
      assert_true((int64_t)ev[i].context == 0);
      *lost += atoi(text);
    } else {
      assert_true((int64_t)ev[i].context == IOCP_ENOMEM);
      assert_non_null(strstr(text, "out of memory"));
      ++*messages;
    }
  }
}

/* LOG events: what on_log would hear, queued; when more wait than the queue
 * holds, the next one that fits is preceded by a note of how many were lost. */
static void test_queue_log_events(void **state) {
  iocp_server *s;
  iocp_event ev[64];
  int64_t messages = 0, lost = 0;
  int n, i;
  ts_sock a[21];
  (void)state;
  conn_allocs_failed = ts_counter_new();
  iocp__hooks.calloc = conn_calloc_fails;
  s = ts_queue_start(IOCP_EVENT_BIT(IOCP_EVENT_LOG));
  /* Nobody drains while 20 connections are dropped: 16 fit. */
  atomic_store(&conn_allocs_to_fail, 20);
  for (i = 0; i < 20; i++) a[i] = ts_connect(iocp_port(s));
  assert_int_equal(ts_counter_wait(conn_allocs_failed, 20, TS_TIMEOUT_MS), 0);
  n = iocp_wait(s, ev, 64, TS_TIMEOUT_MS);
  assert_true(n > 0 && n <= IOCP_LOG_QUEUE_MAX);
  count_logs(ev, n, &messages, &lost);
  while ((n = iocp_wait(s, ev, 64, 200)) > 0) count_logs(ev, n, &messages, &lost);
  /* One more: any loss is reported before it. */
  atomic_store(&conn_allocs_to_fail, 1);
  a[20] = ts_connect(iocp_port(s));
  while (messages + lost < 21) {
    n = iocp_wait(s, ev, 64, TS_TIMEOUT_MS);
    assert_true(n > 0);
    count_logs(ev, n, &messages, &lost);
  }
  assert_int_equal(messages + lost, 21);
  assert_true(messages >= IOCP_LOG_QUEUE_MAX - 1);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
  for (i = 0; i < 21; i++) ts_close(a[i]);
  iocp__hooks_reset();
  ts_counter_free(conn_allocs_failed);
}

#if defined(_WIN32)
/* ---- An operation the system never completes ----------------------------------
 * Under Wine a receive pending when its socket is cancelled and closed
 * sometimes never completes (Windows reports it aborted), and iocp_destroy
 * waited for its reference forever. Here every receive is one the system
 * never completes: it claims to be pending and nothing will ever write its
 * OVERLAPPED. iocp_destroy must return all the same, and say so. */
static int WSAAPI recv_never_completes(SOCKET s, LPWSABUF bufs, DWORD n, LPDWORD got,
                                       LPDWORD flags, LPWSAOVERLAPPED ol,
                                       LPWSAOVERLAPPED_COMPLETION_ROUTINE fn) {
  (void)s, (void)bufs, (void)n, (void)got, (void)flags, (void)ol, (void)fn;
  WSASetLastError(WSA_IO_PENDING);
  return SOCKET_ERROR;
}

typedef struct lost_destroy {
  iocp_server *srv;
  ts_counter *done;
  int rc;
} lost_destroy;

static void lost_destroy_main(void *arg) {
  lost_destroy *d = arg;
  d->rc = iocp_destroy(d->srv);
  ts_counter_add(d->done, 1);
}

static void test_destroy_returns_despite_receives_never_completed(void **state) {
  net_srv *n = net_new();
  ts_sock a, b;
  iocp_conn_id out = 0;
  lost_destroy d;
  ts_thread *t;
  (void)state;
  iocp__hooks.wsarecv = recv_never_completes;
  assert_int_equal(net_start(n, NULL), IOCP_OK);
  a = ts_connect(iocp_port(n->srv));
  b = ts_connect(iocp_port(n->srv));
  assert_true(a != TS_BAD_SOCK && b != TS_BAD_SOCK);
  assert_int_equal(ts_counter_wait(n->connects, 2, TS_TIMEOUT_MS), 0);
  /* One closed by the application, one left for destroy: both keep a
   * receive the system will never complete. */
  net_lock(n);
  out = n->conns[0].id;
  net_unlock(n);
  assert_int_equal(iocp_close(n->srv, out), IOCP_OK);
  assert_int_equal(ts_counter_wait(n->disconnects, 1, TS_TIMEOUT_MS), 0);
  d.srv = n->srv;
  d.done = ts_counter_new();
  d.rc = -1;
  t = ts_thread_start(lost_destroy_main, &d);
  if (ts_counter_wait(d.done, 1, 30000) != 0) fail_msg("iocp_destroy did not return");
  ts_thread_join(t);
  assert_int_equal(d.rc, IOCP_OK);
  assert_int_equal(ts_counter_get(n->disconnects), 2);
  /* "2 connection(s) left allocated" */
  assert_int_equal(atomic_load(&n->last_log_code), IOCP_ESYSTEM);
  assert_int_equal(ts_counter_get(n->violations), 0);
  ts_counter_free(d.done);
  ts_close(a);
  ts_close(b);
  net_free(n);
  iocp__hooks_reset();
}
#endif

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_listen_address),
      cmocka_unit_test(test_dual_stack),
      cmocka_unit_test(test_log_not_read_past_callbacks_size),
      cmocka_unit_test(test_create_fails_when_a_socket_option_fails),
      cmocka_unit_test(test_log_sees_descriptor_exhaustion),
#if !defined(_WIN32)
      cmocka_unit_test(test_log_sees_a_worker_leave),
#endif
      cmocka_unit_test(test_connect_gets_the_events_of_an_accepted_connection),
      cmocka_unit_test(test_connect_sends_what_was_queued_before),
      cmocka_unit_test(test_local_address_of_both_ends),
      cmocka_unit_test(test_connect_refused),
      cmocka_unit_test(test_connect_to_an_ipv4_mapped_address),
      cmocka_unit_test(test_connect_to_link_local_without_scope),
      cmocka_unit_test(test_close_and_destroy_while_connecting),
      cmocka_unit_test(test_connect_from_inside_a_callback),
      cmocka_unit_test(test_connect_refused_by_on_connect),
      cmocka_unit_test(test_connect_rejects_bad_arguments),
      cmocka_unit_test(test_connect_out_of_sockets),
      cmocka_unit_test(test_queue_connect_events),
      cmocka_unit_test(test_queue_log_events),
#if defined(_WIN32)
      cmocka_unit_test(test_destroy_returns_despite_receives_never_completed),
#endif
  };
  ts_net_init();
  return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
