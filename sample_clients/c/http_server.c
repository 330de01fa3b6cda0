/* A small HTTP/1.1 server on iocpsrv: how to parse a byte stream.
 *
 *   http_server [--port N] [--bind ADDR] [--threads N]
 *               [--idle-timeout S] [--head-timeout S]
 *               [--tls CERT.p12 [--tls-password TEXT]]
 *
 * --port defaults to 8080 (0 picks a free port), --bind to 127.0.0.1,
 * --threads to one per processor; with --tls it serves HTTPS with the
 * identity of the PKCS#12 file (`curl -k https://127.0.0.1:8080/`). Prints "listening on port N" when ready and
 * exits cleanly when Enter is pressed or standard input ends.
 *
 * The settings a server facing the Internet needs, so that idle and slow
 * peers cannot hold connections (and their memory) for ever:
 * - an idle timeout (--idle-timeout, default 30 s; config.idle_timeout_ms):
 *   a connection that sends nothing for that long, between requests or in
 *   the middle of one, is reset by the library;
 * - a deadline for each request head (--head-timeout, default 10 s): a
 *   "slowloris" peer that trickles a byte now and then never looks idle,
 *   so a head not complete that long after its first byte gets 408 and a
 *   close (checked whenever bytes arrive; a peer that stops sending meets
 *   the idle timeout);
 * - a head size limit (MAX_HEAD) and a cap on connections
 *   (config.max_connections; past it new ones are reset at once).
 *
 * Every request gets "Hello, World!" (HEAD: the same headers, no body).
 * TCP delivers a stream, not messages: one on_data call may carry half a
 * request, one byte of it, or several pipelined requests. So each connection
 * keeps a little parse state between calls (struct http_conn):
 *
 * - Requests that arrive whole are parsed straight from the bytes on_data
 *   hands over, never copied; only an unfinished request head is kept, in a
 *   buffer of at most MAX_HEAD bytes allocated when first needed (an idle
 *   connection holds none).
 * - All the answers to one on_data call go out in one iocp_send().
 * - HTTP/1.1 keeps the connection open unless the client says
 *   "Connection: close"; HTTP/1.0 only if it says "Connection: keep-alive".
 * - A request body (Content-Length) is skipped. Chunked request bodies are
 *   not supported: 501 and a close.
 * - A malformed request, or a head larger than MAX_HEAD, gets 400 and a
 *   graceful close (iocp_shutdown: the answer goes out before our FIN, and
 *   whatever the client still sends is read and dropped).
 *
 * The state hangs on the connection itself (iocp_set_context in on_connect,
 * iocp_get_context in the later callbacks): read inside the connection's own
 * callback, that is a field read, no lookup and no lock of ours. Callbacks
 * of one connection never overlap, so the state itself needs no lock. */
#include "iocpsrv.h"
#include "tls_option.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(_MSC_VER)
#define THREAD_LOCAL __declspec(thread)
#else
#define THREAD_LOCAL _Thread_local
#endif

#define MAX_HEAD 8192 /* request line + headers, bytes */
#define MAX_CONNECTIONS 10000

/* Set by main() before the server starts, read-only afterwards. */
static time_t head_timeout_s = 10;
#define BODY "Hello, World!"

/* ---- Per-connection state ------------------------------------------------- */

typedef struct http_conn {
  char *head;             /* an unfinished request head, or NULL */
  size_t len;             /* bytes in head */
  size_t scanned;         /* of them, searched for the head's end already */
  uint64_t body_left;     /* bytes of the current request's body still to skip */
  int closing;            /* answered for the last time: drop further bytes */
  time_t head_since;      /* when the unfinished head's first byte came */
} http_conn;

/* The connection's state, as on_connect attached it. */
static http_conn *conn_state(iocp_server *server, iocp_conn_id id) {
  void *c = NULL;
  iocp_get_context(server, id, &c); /* in this connection's callback: cannot fail */
  return c;
}

/* A new connection gets its state; without memory for it, it is refused. */
static int IOCP_CALL on_connect(iocp_server *server, void *user, iocp_conn_id id,
                                const char *address, uint16_t port) {
  http_conn *c = calloc(1, sizeof(*c));
  (void)user, (void)address, (void)port;
  if (c == NULL) return 1;
  if (iocp_set_context(server, id, c) != IOCP_OK) { /* cannot happen: the id is live */
    free(c);
    return 1;
  }
  return 0;
}

/* The connection's last callback: its state goes. */
static void IOCP_CALL on_disconnect(iocp_server *server, void *user, iocp_conn_id id,
                                    int reason) {
  http_conn *c = conn_state(server, id);
  (void)user, (void)reason;
  if (c != NULL) free(c->head);
  free(c);
}

/* ---- Answers ---------------------------------------------------------------- */

/* The answers to one on_data call, sent together. */
typedef struct out_buf {
  iocp_server *server;
  iocp_conn_id id;
  size_t len;
  int failed; /* the send queue refused: the connection is being closed */
  char data[8192];
} out_buf;

static void out_flush(out_buf *o) {
  int rc = o->len && !o->failed ? iocp_send(o->server, o->id, o->data, o->len) : IOCP_OK;
  o->len = 0;
  if (rc == IOCP_OK) return;
  o->failed = 1;
  /* A client that pipelines but never reads fills its queue: cut it off.
   * Other errors mean the connection is already closing. */
  if (rc == IOCP_EQUEUEFULL) iocp_close(o->server, o->id);
}

static void out_add(out_buf *o, const char *text, size_t len) {
  if (sizeof(o->data) - o->len < len) out_flush(o);
  memcpy(o->data + o->len, text, len); /* every answer is far smaller than data */
  o->len += len;
}

/* Answers carry the time, to the second; each worker thread keeps its own
 * copy of the current second's text, so no lock is needed. */
static THREAD_LOCAL time_t date_when = -1;
static THREAD_LOCAL char date_text[64]; /* "Date: Wed, 25 Nov 2026 21:00:00 GMT\r\n" */

static void date_update(void) {
  time_t now = time(NULL);
  if (now != date_when) {
    struct tm tm;
#ifdef _WIN32
    gmtime_s(&tm, &now);
#else
    gmtime_r(&now, &tm);
#endif
    strftime(date_text, sizeof(date_text), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    date_when = now;
  }
}

/* status: 200, 400, 408 or 501; conn_header: NULL or "close" / "keep-alive".
 * The usual answer (200, with its body, connection kept) is formatted once
 * a second per thread and copied from then on. */
static void answer(out_buf *o, int status, int with_body, const char *conn_header) {
  static THREAD_LOCAL time_t usual_when = -1;
  static THREAD_LOCAL char usual[256];
  static THREAD_LOCAL size_t usual_len;
  char text[512];
  const char *status_line = status == 200   ? "200 OK"
                            : status == 400 ? "400 Bad Request"
                            : status == 408 ? "408 Request Timeout"
                                            : "501 Not Implemented";
  const char *body = status == 200   ? BODY
                     : status == 400 ? "Bad Request"
                     : status == 408 ? "Request Timeout"
                                     : "Not Implemented";
  int usual_case = status == 200 && with_body && conn_header == NULL, n;
  date_update();
  if (usual_case && usual_when == date_when) {
    out_add(o, usual, usual_len);
    return;
  }
  n = snprintf(text, sizeof(text),
               "HTTP/1.1 %s\r\nServer: iocpsrv\r\n%sContent-Type: text/plain\r\n"
               "Content-Length: %u\r\n%s%s%s\r\n%s",
               status_line, date_text, (unsigned)strlen(body),
               conn_header ? "Connection: " : "", conn_header ? conn_header : "",
               conn_header ? "\r\n" : "", with_body ? body : "");
  if (usual_case && (size_t)n < sizeof(usual)) {
    memcpy(usual, text, (size_t)n);
    usual_len = (size_t)n;
    usual_when = date_when;
  }
  out_add(o, text, (size_t)n);
}

/* The last answer on this connection: send it, then close gracefully. */
static void answer_and_close(out_buf *o, http_conn *c, int status, int with_body) {
  answer(o, status, with_body, "close");
  out_flush(o);
  if (!o->failed) iocp_shutdown(o->server, o->id);
  c->closing = 1;
}

/* ---- Parsing ------------------------------------------------------------------ */

/* Offset just past the blank line that ends a head ("\r\n\r\n" or "\n\n";
 * a lone CR is checked later), searching from `from`; 0 if none yet. */
static size_t head_end(const char *p, size_t n, size_t from) {
  size_t i;
  for (i = from; i < n; i++) {
    if (p[i] != '\n') continue;
    if (i + 1 < n && p[i + 1] == '\n') return i + 2;
    if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n') return i + 3;
  }
  return 0;
}

/* RFC 9110 token characters (methods, header names). */
static int is_tchar(unsigned char ch) {
  return (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') ||
         (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int lower(int ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; }

static int same_text(const char *a, size_t n, const char *lit) {
  size_t i;
  for (i = 0; i < n; i++)
    if (lit[i] == '\0' || lower((unsigned char)a[i]) != lit[i]) return 0;
  return lit[n] == '\0';
}

/* Does the comma-separated list v[0..n) hold the token `lit` (lower case)? */
static int list_has(const char *v, size_t n, const char *lit) {
  size_t i = 0;
  while (i < n) {
    size_t start, end;
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
    start = i;
    while (i < n && v[i] != ',') i++;
    end = i;
    while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) end--;
    if (end > start && same_text(v + start, end - start, lit)) return 1;
  }
  return 0;
}

/* One request head, p[0..n) including its blank line. */
typedef struct request {
  int head_only;   /* HEAD: no body in the answer */
  int minor;       /* HTTP/1.minor */
  int hosts;       /* Host headers seen */
  int conn_close, conn_keep_alive;
  int chunked;     /* a Transfer-Encoding header */
  int has_length;
  uint64_t length; /* Content-Length */
} request;

/* Next line of p[*at..n) without its CR LF (or LF); -1 on a stray CR. */
static int next_line(const char *p, size_t n, size_t *at, const char **line, size_t *len) {
  const char *s = p + *at, *nl = memchr(s, '\n', n - *at);
  size_t l = (size_t)(nl - s); /* the head ends with a LF: never NULL */
  *at += l + 1;
  if (l > 0 && s[l - 1] == '\r') l--;
  if (memchr(s, '\r', l) != NULL) return -1;
  *line = s;
  *len = l;
  return 0;
}

static int parse_request_line(const char *s, size_t n, request *r) {
  size_t i = 0, start;
  while (i < n && is_tchar((unsigned char)s[i])) i++;
  if (i == 0 || i >= n || s[i] != ' ') return -1;
  r->head_only = i == 4 && memcmp(s, "HEAD", 4) == 0;
  start = ++i; /* the target: visible characters */
  while (i < n && (unsigned char)s[i] > ' ' && (unsigned char)s[i] < 0x7f) i++;
  if (i == start || i >= n || s[i] != ' ') return -1;
  i++;
  if (n - i != 8 || memcmp(s + i, "HTTP/1.", 7) != 0 || s[i + 7] < '0' || s[i + 7] > '9')
    return -1;
  r->minor = s[i + 7] - '0';
  return 0;
}

static int parse_header(const char *s, size_t n, request *r) {
  size_t i = 0, name_len, v, e;
  while (i < n && is_tchar((unsigned char)s[i])) i++;
  if (i == 0 || i >= n || s[i] != ':') return -1; /* no space before the colon */
  name_len = i;
  for (v = i + 1; v < n && (s[v] == ' ' || s[v] == '\t'); v++) {
  }
  for (e = n; e > v && (s[e - 1] == ' ' || s[e - 1] == '\t'); e--) {
  }
  for (i = v; i < e; i++) /* no control characters but TAB in a value */
    if (((unsigned char)s[i] < ' ' && s[i] != '\t') || s[i] == 0x7f) return -1;
  if (same_text(s, name_len, "host")) {
    r->hosts++;
  } else if (same_text(s, name_len, "connection")) {
    r->conn_close |= list_has(s + v, e - v, "close");
    r->conn_keep_alive |= list_has(s + v, e - v, "keep-alive");
  } else if (same_text(s, name_len, "transfer-encoding")) {
    r->chunked = 1;
  } else if (same_text(s, name_len, "content-length")) {
    uint64_t len = 0;
    if (v == e || e - v > 15) return -1; /* digits only, below 10^15 */
    for (i = v; i < e; i++) {
      if (s[i] < '0' || s[i] > '9') return -1;
      len = len * 10 + (uint64_t)(s[i] - '0');
    }
    if (r->has_length && r->length != len) return -1;
    r->has_length = 1;
    r->length = len;
  }
  return 0;
}

/* Answers one complete head p[0..n). */
static void handle_request(out_buf *o, http_conn *c, const char *p, size_t n) {
  request r;
  const char *line;
  size_t at = 0, len;
  int keep, bad;
  memset(&r, 0, sizeof(r));
  if (next_line(p, n, &at, &line, &len) != 0 || parse_request_line(line, len, &r) != 0) {
    answer_and_close(o, c, 400, 1);
    return;
  }
  do { /* header lines up to the blank one, which ends the head (at == n) */
    bad = next_line(p, n, &at, &line, &len) != 0;
    /* A line folded onto the previous one (obsolete) is refused too. */
    if (!bad && len > 0)
      bad = line[0] == ' ' || line[0] == '\t' || parse_header(line, len, &r) != 0;
  } while (!bad && len > 0);
  if (bad || (r.minor >= 1 && r.hosts != 1) || r.hosts > 1) {
    answer_and_close(o, c, 400, !r.head_only);
    return;
  }
  if (r.chunked) {
    answer_and_close(o, c, 501, !r.head_only);
    return;
  }
  c->body_left = r.length;
  keep = r.minor >= 1 ? !r.conn_close : r.conn_keep_alive && !r.conn_close;
  if (!keep) {
    answer_and_close(o, c, 200, !r.head_only);
    return;
  }
  answer(o, 200, !r.head_only, r.minor == 0 ? "keep-alive" : NULL);
}

/* Consumes the bytes of one on_data call: bodies to skip, whole heads
 * parsed in place, and the start of an unfinished head kept for later. */
static void consume(out_buf *o, http_conn *c, const char *p, size_t n) {
  if (c->len > 0 && !c->closing && time(NULL) - c->head_since >= head_timeout_s) {
    answer_and_close(o, c, 408, 1); /* a slow head: trickled, never idle */
    return;
  }
  while (n > 0 && !c->closing && !o->failed) {
    size_t end, take;
    if (c->body_left > 0) {
      take = c->body_left < n ? (size_t)c->body_left : n;
      c->body_left -= take;
      p += take, n -= take;
      continue;
    }
    if (c->len == 0) {
      /* Between requests: empty lines are allowed (RFC 9112, 2.2). */
      if (*p == '\r' || *p == '\n') {
        p++, n--;
        continue;
      }
      end = head_end(p, n, 0);
      if (end > MAX_HEAD || (end == 0 && n >= MAX_HEAD)) {
        answer_and_close(o, c, 400, 1);
        return;
      }
      if (end > 0) { /* the usual case: a whole request, parsed in place */
        handle_request(o, c, p, end);
        p += end, n -= end;
        continue;
      }
      if (c->head == NULL && (c->head = malloc(MAX_HEAD)) == NULL) {
        iocp_close(o->server, o->id); /* out of memory: this connection only */
        c->closing = 1;
        return;
      }
    }
    /* An unfinished head: add what fits and look again past what was searched. */
    if (c->len == 0) c->head_since = time(NULL);
    take = MAX_HEAD - c->len < n ? MAX_HEAD - c->len : n;
    memcpy(c->head + c->len, p, take);
    end = head_end(c->head, c->len + take, c->scanned);
    if (end == 0) {
      if (c->len + take == MAX_HEAD) {
        answer_and_close(o, c, 400, 1);
        return;
      }
      c->len += take;
      c->scanned = c->len >= 2 ? c->len - 2 : 0; /* a terminator may straddle calls */
      p += take, n -= take;
      continue;
    }
    take = end - c->len; /* of this call's bytes, those that finish the head */
    c->len = c->scanned = 0;
    handle_request(o, c, c->head, end);
    p += take, n -= take;
  }
}

static void IOCP_CALL on_data(iocp_server *server, void *user, iocp_conn_id id,
                              const uint8_t *data, size_t len) {
  out_buf o;
  http_conn *c = conn_state(server, id);
  (void)user;
  if (c == NULL) return; /* cannot happen: on_connect made it */
  o.server = server;
  o.id = id;
  o.len = 0;
  o.failed = 0;
  consume(&o, c, (const char *)data, len);
  out_flush(&o);
}

/* ---- Command line ------------------------------------------------------------- */

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
          "usage: %s [--port N] [--bind ADDR] [--threads N] [--idle-timeout S] "
          "[--head-timeout S] [--tls CERT.p12 [--tls-password TEXT]]\n",
          prog);
  return 2;
}

int main(int argc, char **argv) {
  iocp_config config;
  iocp_callbacks callbacks;
  iocp_server *server = NULL;
  unsigned long port = 8080, threads = 0, idle_s = 30, head_s = 10;
  const char *bind = "127.0.0.1", *tls = NULL, *tls_password = NULL;
  int i, rc, ch;

  for (i = 1; i < argc; i++) {
    const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(arg, "--port") == 0 && parse_uint(val, 65535, &port) == 0) {
      i++;
    } else if (strcmp(arg, "--threads") == 0 && parse_uint(val, 1024, &threads) == 0) {
      i++;
    } else if (strcmp(arg, "--idle-timeout") == 0 && parse_uint(val, 86400, &idle_s) == 0) {
      i++;
    } else if (strcmp(arg, "--head-timeout") == 0 && parse_uint(val, 86400, &head_s) == 0 &&
               head_s > 0) {
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
  config.idle_timeout_ms = (uint32_t)idle_s * 1000u; /* 0: none */
  config.max_connections = MAX_CONNECTIONS;
  head_timeout_s = (time_t)head_s;
  if (tls != NULL && sample_tls_load(&config, tls, tls_password) != 0) return 1;
  memset(&callbacks, 0, sizeof(callbacks));
  callbacks.size = sizeof(callbacks);
  callbacks.on_connect = on_connect;
  callbacks.on_data = on_data;
  callbacks.on_disconnect = on_disconnect;

  rc = iocp_create(&config, &callbacks, NULL, &server);
  sample_tls_release(&config);
  if (rc != IOCP_OK) {
    fprintf(stderr, "cannot listen on %s port %lu: %s\n", bind, port, iocp_strerror(rc));
    return 1;
  }
  printf("listening on port %u\n", (unsigned)iocp_port(server));
  fflush(stdout);

  do ch = getchar(); while (ch != EOF && ch != '\n');

  iocp_destroy(server);
  return 0;
}
