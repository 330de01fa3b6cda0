/* A TCP proxy on the DLL: every accepted connection gets an outbound one to
 * the target (iocp_connect), and bytes are relayed both ways.
 *
 *   proxy --to HOST:PORT [--port N] [--bind ADDR] [--threads N]
 *         [--tls CERT.p12 [--tls-password TEXT]]
 *
 * --to is required; HOST may be a name (resolved once at start: the library
 * itself takes numeric addresses only) or an IPv6 address in brackets
 * ("[::1]:5000"). --port defaults to 50001 (0 picks a free port), --bind to
 * 127.0.0.1, --threads to one per processor. Prints "listening on port N"
 * when ready and exits cleanly when Enter is pressed or standard input ends.
 * With --tls it terminates TLS (the identity of the PKCS#12 file) in front
 * of a plain TCP target: clients speak TLS, the target sees plaintext.
 *
 * Both halves end together: a FIN from one side is passed on as a FIN
 * (iocp_shutdown) to the other, a reset or a failed connect closes the
 * other side at once.
 *
 * Backpressure: a relay never queues much more than HIGH_MARK bytes for a
 * slow receiver. Past it, the connection feeding that queue is paused
 * (iocp_pause_recv: its bytes stay in the kernel and TCP flow control slows
 * its sender) until on_drain says the queue is down to LOW_MARK; then it is
 * resumed. No worker ever waits. */
#include "iocpsrv.h"
#include "tls_option.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#  include <winsock2.h>
#  include <ws2tcpip.h>
#  include <windows.h>
typedef SRWLOCK lock_t;
#  define LOCK_INIT(l) InitializeSRWLock(l)
#  define LOCK(l) AcquireSRWLockExclusive(l)
#  define UNLOCK(l) ReleaseSRWLockExclusive(l)
#  define LOCK_FREE(l) ((void)(l))
#else
#  include <netdb.h>
#  include <pthread.h>
#  include <sys/socket.h>
typedef pthread_mutex_t lock_t;
#  define LOCK_INIT(l) pthread_mutex_init(l, NULL)
#  define LOCK(l) pthread_mutex_lock(l)
#  define UNLOCK(l) pthread_mutex_unlock(l)
#  define LOCK_FREE(l) pthread_mutex_destroy(l)
#endif

#define HIGH_MARK (256u << 10) /* pause the side that feeds a queue this long */
#define LOW_MARK (64u << 10)   /* and resume it when the queue is down to this */

/* ---- Pairs: the two connections of one relay -------------------------------- */

typedef struct pair {
  struct pair *next_in, *next_out; /* hash chains by inbound / outbound id */
  iocp_conn_id in, out;
  int ended; /* connections of the pair that ended (0, 1 or 2) */
} pair;

#define BUCKETS 1024

static struct {
  lock_t lock;
  pair *by_in[BUCKETS];
  pair *by_out[BUCKETS];
  char host[IOCP_ADDRSTRLEN];
  uint16_t port;
} g;

/* Under g.lock: the pair id belongs to, and the other id of it. */
static pair *find(iocp_conn_id id, iocp_conn_id *other) {
  pair *p;
  for (p = g.by_in[id % BUCKETS]; p != NULL; p = p->next_in)
    if (p->in == id) {
      if (other) *other = p->out;
      return p;
    }
  for (p = g.by_out[id % BUCKETS]; p != NULL; p = p->next_out)
    if (p->out == id) {
      if (other) *other = p->in;
      return p;
    }
  return NULL;
}

static iocp_conn_id other_of(iocp_conn_id id) {
  iocp_conn_id other = 0;
  LOCK(&g.lock);
  find(id, &other);
  UNLOCK(&g.lock);
  return other;
}

/* Under g.lock: unlinks p from both chains and frees it. */
static void drop(pair *p) {
  pair **pp;
  for (pp = &g.by_in[p->in % BUCKETS]; *pp != p; pp = &(*pp)->next_in) {
  }
  *pp = p->next_in;
  for (pp = &g.by_out[p->out % BUCKETS]; *pp != p; pp = &(*pp)->next_out) {
  }
  *pp = p->next_out;
  free(p);
}

/* One connection of a pair ended: the pair goes once both have. */
static void ended(iocp_conn_id id) {
  pair *p;
  LOCK(&g.lock);
  p = find(id, NULL);
  if (p != NULL && ++p->ended == 2) drop(p);
  UNLOCK(&g.lock);
}

/* ---- Callbacks ------------------------------------------------------------------ */

static int IOCP_CALL on_connect(iocp_server *s, void *user, iocp_conn_id id, const char *address,
                                uint16_t port) {
  pair *p;
  int rc;
  (void)user;
  (void)address;
  (void)port;
  LOCK(&g.lock);
  if (find(id, NULL) != NULL) { /* our outbound connection came up */
    UNLOCK(&g.lock);
    return 0;
  }
  p = calloc(1, sizeof(*p));
  if (p == NULL) {
    UNLOCK(&g.lock);
    return 1; /* refuse */
  }
  /* Held across iocp_connect, so that the outbound connection's callbacks
   * find the pair (they wait for the lock). */
  rc = iocp_connect(s, g.host, g.port, &p->out);
  if (rc != IOCP_OK) {
    UNLOCK(&g.lock);
    free(p);
    return 1;
  }
  p->in = id;
  p->next_in = g.by_in[id % BUCKETS];
  g.by_in[id % BUCKETS] = p;
  p->next_out = g.by_out[p->out % BUCKETS];
  g.by_out[p->out % BUCKETS] = p;
  UNLOCK(&g.lock);
  return 0;
}

/* Relays the bytes. Bytes for an outbound connection that is still
 * connecting are queued and go out once it is up. */
static void IOCP_CALL on_data(iocp_server *s, void *user, iocp_conn_id id, const uint8_t *data,
                              size_t len) {
  iocp_conn_id other = other_of(id);
  uint64_t queued = 0;
  (void)user;
  if (other == 0 || iocp_send(s, other, data, len) != IOCP_OK) {
    iocp_close(s, id);
    return;
  }
  if (iocp_queued(s, other, &queued) == IOCP_OK && queued >= HIGH_MARK) {
    iocp_pause_recv(s, id);
    /* If the queue drained between the two calls, on_drain came before the
     * pause and will not come again: look once more. */
    if (iocp_queued(s, other, &queued) != IOCP_OK || queued <= LOW_MARK) iocp_resume_recv(s, id);
  }
}

/* id's queue is down to LOW_MARK: the side feeding it may send again. */
static void IOCP_CALL on_drain(iocp_server *s, void *user, iocp_conn_id id, uint64_t queued) {
  iocp_conn_id other = other_of(id);
  (void)user;
  (void)queued;
  if (other != 0) iocp_resume_recv(s, other);
}

/* A FIN from one side: passed on after what is queued for the other. */
static void IOCP_CALL on_peer_closed(iocp_server *s, void *user, iocp_conn_id id) {
  iocp_conn_id other = other_of(id);
  (void)user;
  if (other != 0) iocp_shutdown(s, other);
}

/* A graceful end (the peer's FIN can end a connection before on_peer_closed
 * would run) is passed on as a FIN after what is queued; a reset, a local
 * close or the end of the program closes the other side at once. */
static void IOCP_CALL on_disconnect(iocp_server *s, void *user, iocp_conn_id id, int reason) {
  iocp_conn_id other = other_of(id);
  (void)user;
  if (other != 0) {
    if (reason == IOCP_REASON_PEER_CLOSED)
      iocp_shutdown(s, other);
    else
      iocp_close(s, other);
  }
  ended(id);
}

/* The target could not be reached: the client is reset. */
static void IOCP_CALL on_connect_failed(iocp_server *s, void *user, iocp_conn_id id, int error) {
  iocp_conn_id other = other_of(id);
  (void)user;
  (void)error;
  if (other != 0) iocp_close(s, other);
  ended(id);
}

static void IOCP_CALL on_log(iocp_server *s, void *user, int level, int code, const char *text) {
  (void)s;
  (void)user;
  (void)code;
  if (level <= IOCP_LOG_WARN) fprintf(stderr, "proxy: %s\n", text);
}

/* ---- Command line ------------------------------------------------------------------ */

static int parse_uint(const char *text, unsigned long max, unsigned long *out) {
  char *end;
  unsigned long v;
  if (text == NULL || *text == '\0') return -1;
  v = strtoul(text, &end, 10);
  if (*end != '\0' || v > max) return -1;
  *out = v;
  return 0;
}

/* "host:port" or "[v6]:port" -> numeric host text and port (resolved once). */
static int parse_target(const char *arg) {
  char host[256];
  const char *colon;
  unsigned long port;
  struct addrinfo hints, *res = NULL;
  size_t n;
  int rc;
  if (arg == NULL) return -1;
  if (arg[0] == '[') {
    const char *close = strchr(arg, ']');
    if (close == NULL || close[1] != ':') return -1;
    n = (size_t)(close - arg - 1);
    if (n >= sizeof(host)) return -1;
    memcpy(host, arg + 1, n);
    colon = close + 1;
  } else {
    colon = strrchr(arg, ':');
    if (colon == NULL) return -1;
    n = (size_t)(colon - arg);
    if (n >= sizeof(host)) return -1;
    memcpy(host, arg, n);
  }
  host[n] = '\0';
  if (parse_uint(colon + 1, 65535, &port) != 0 || port == 0) return -1;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL) return -1;
  rc = getnameinfo(res->ai_addr, (socklen_t)res->ai_addrlen, g.host, sizeof(g.host), NULL, 0,
                   NI_NUMERICHOST);
  freeaddrinfo(res);
  g.port = (uint16_t)port;
  return rc == 0 ? 0 : -1;
}

static int usage(const char *prog) {
  fprintf(stderr,
          "usage: %s --to HOST:PORT [--port N] [--bind ADDR] [--threads N] [--tls CERT.p12 "
          "[--tls-password TEXT]]\n",
          prog);
  return 2;
}

int main(int argc, char **argv) {
  iocp_config config;
  iocp_callbacks callbacks;
  iocp_server *server = NULL;
  unsigned long port = 50001, threads = 0;
  const char *bind = "127.0.0.1", *to = NULL, *tls = NULL, *tls_password = NULL;
  int i, rc, ch;
#if defined(_WIN32)
  WSADATA wsa; /* for getaddrinfo only: the library sets itself up */
  if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return 1;
#endif

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
    } else if (strcmp(arg, "--to") == 0 && val != NULL) {
      to = val;
      i++;
    } else {
      return usage(argv[0]);
    }
  }
  if (to == NULL) return usage(argv[0]);
  if (parse_target(to) != 0) {
    fprintf(stderr, "cannot use target %s: want HOST:PORT with a port 1-65535\n", to);
    return 2;
  }

  if (!IOCP_VERSION_COMPATIBLE(iocp_version())) {
    fprintf(stderr, "iocpsrv %s loaded, but this program needs %d.%d or newer 1.x\n",
            iocp_version_string(), IOCP_VERSION_MAJOR, IOCP_VERSION_MINOR);
    return 1;
  }

  LOCK_INIT(&g.lock);
  iocp_config_init(&config, sizeof(config));
  config.port = (uint16_t)port;
  config.bind_address = bind;
  config.threads = (uint32_t)threads;
  if (tls != NULL && sample_tls_load(&config, tls, tls_password) != 0) return 1;
  config.drain_mark = LOW_MARK; /* on_drain when a queue is down to it */
  memset(&callbacks, 0, sizeof(callbacks));
  callbacks.size = sizeof(callbacks);
  callbacks.on_connect = on_connect;
  callbacks.on_data = on_data;
  callbacks.on_peer_closed = on_peer_closed;
  callbacks.on_disconnect = on_disconnect;
  callbacks.on_connect_failed = on_connect_failed;
  callbacks.on_log = on_log;
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

  iocp_destroy(server); /* every pair ends: their memory is freed */
  LOCK_FREE(&g.lock);
#if defined(_WIN32)
  WSACleanup();
#endif
  return 0;
}
