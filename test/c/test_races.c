/* Application threads racing the workers on live connections, as a user of
 * the controls does: contexts set while peers reset (every context a setter
 * was told it stored is the one handed back at the end); closes, shutdowns
 * and sends on busy connections; outbound connections closed while they
 * connect and run. Meant for ThreadSanitizer and ASan as much as for the
 * assertions: each runs about a second. In queue mode (IOCP_TEST_DELIVERY=
 * queue) the events go through iocp_wait() on a drainer thread. */
#include "tsupport.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define RUN_MS 1200
#define SLOTS 64        /* ids the racing threads pick from: id % SLOTS */
#define RACERS 4        /* application threads; SLOTS is a multiple */
#define CLIENTS 3
#define MAP_SIZE 65536  /* connection records, by id % MAP_SIZE */

/* The ids the racers work on; a slot holds the latest connected id. */
static _Atomic iocp_conn_id live[SLOTS];
static atomic_int stop_racing;

static iocp_conn_id pick(unsigned *seed, int racer) {
  unsigned slot;
  *seed = *seed * 1103515245u + 12345u;
  /* Racer r owns the slots r, r + RACERS, ...: so one thread at a time sets
   * a given connection's context, and "the last one stored" is defined. */
  slot = ((*seed >> 16) % (SLOTS / RACERS)) * RACERS + (unsigned)racer;
  return atomic_load(&live[slot]);
}

static void clear_live(void) {
  int i;
  for (i = 0; i < SLOTS; i++) atomic_store(&live[i], 0);
  atomic_store(&stop_racing, 0);
}

typedef struct racer_arg {
  rec_server *r;
  iocp_server *srv;
  int index;
  long ok, notfound, other; /* other: a code the header does not allow */
} racer_arg;

static void start_racers(racer_arg *a, ts_thread **t, rec_server *r, iocp_server *srv,
                         void (*fn)(void *)) {
  int i;
  for (i = 0; i < RACERS; i++) {
    memset(&a[i], 0, sizeof(a[i]));
    a[i].r = r;
    a[i].srv = srv;
    a[i].index = i;
    t[i] = ts_thread_start(fn, &a[i]);
  }
}

static void join_racers(racer_arg *a, ts_thread **t, long *ok) {
  int i;
  atomic_store(&stop_racing, 1);
  *ok = 0;
  for (i = 0; i < RACERS; i++) {
    ts_thread_join(t[i]);
    assert_int_equal(a[i].other, 0);
    *ok += a[i].ok;
  }
}

/* ---- Clients that connect and reset ---------------------------------------- */

typedef struct client_arg {
  uint16_t port;
  uint64_t until;
  int busy;   /* send and read echoes before the end */
  long made;
} client_arg;

static void client_main(void *arg) {
  client_arg *c = arg;
  uint8_t buf[1024];
  unsigned n = 0;
  memset(buf, 'c', sizeof(buf));
  while (ts_now_ms() < c->until) {
    ts_sock s = ts_connect(c->port);
    int rounds;
    if (s == TS_BAD_SOCK) continue;
    c->made++;
    n++;
    ts_set_timeout(s, 5000);
    /* Echoes while the connection lasts (application threads may close it,
     * shut it down or add bytes of their own meanwhile). */
    for (rounds = 0; c->busy && rounds < 20; rounds++)
      if (ts_send_all(s, buf, sizeof(buf)) != TS_OK || ts_recv_exact(s, buf, 64) != TS_OK) break;
    if (n % 3 == 0)
      ts_close(s);
    else
      ts_close_reset(s);
  }
}

static void run_clients(uint16_t port, int busy, long *made) {
  client_arg c[CLIENTS];
  ts_thread *t[CLIENTS];
  int i;
  *made = 0;
  for (i = 0; i < CLIENTS; i++) {
    c[i].port = port;
    c[i].until = ts_now_ms() + RUN_MS;
    c[i].busy = busy;
    c[i].made = 0;
    t[i] = ts_thread_start(client_main, &c[i]);
  }
  for (i = 0; i < CLIENTS; i++) {
    ts_thread_join(t[i]);
    *made += c[i].made;
  }
}

/* ---- Contexts set while connections end ------------------------------------- */

typedef struct ctx_record {
  _Atomic iocp_conn_id id;
  _Atomic uintptr_t last_ok; /* the last context iocp_set_context took (IOCP_OK) */
  _Atomic uintptr_t handed;  /* the context on_disconnect had */
  atomic_int ended;
} ctx_record;

static ctx_record *ctx_map;

static void ctx_connect(rec_server *r, iocp_conn_id id) {
  ctx_record *m = &ctx_map[id % MAP_SIZE];
  (void)r;
  atomic_store(&m->last_ok, 0);
  atomic_store(&m->handed, 0);
  atomic_store(&m->ended, 0);
  atomic_store(&m->id, id);
  atomic_store(&live[id % SLOTS], id);
}

static void ctx_disconnect(rec_server *r, iocp_conn_id id, int reason) {
  ctx_record *m = &ctx_map[id % MAP_SIZE];
  void *p = NULL;
  (void)reason;
  /* Callback mode: read from the connection; queue mode: the
   * DISCONNECTED event's context (the recorder checked they agree). */
  if (iocp_get_context(r->srv, id, &p) != IOCP_OK) rec_violation(r);
  if (atomic_load(&m->id) != id) rec_violation(r); /* two ids on one record */
  atomic_store(&m->handed, (uintptr_t)p);
  atomic_store(&m->ended, 1);
}

static void setter_main(void *arg) {
  racer_arg *a = arg;
  unsigned seed = 7u + (unsigned)a->index, seq = 0;
  while (!atomic_load(&stop_racing)) {
    iocp_conn_id id = pick(&seed, a->index);
    /* Unique, never NULL, and says which thread stored it. */
    uintptr_t token = ((uintptr_t)++seq << 4) | (uintptr_t)(a->index + 1);
    int rc;
    if (id == 0) continue;
    rc = iocp_set_context(a->srv, id, (void *)token);
    if (rc == IOCP_OK) {
      a->ok++;
      atomic_store(&ctx_map[id % MAP_SIZE].last_ok, token);
    } else if (rc == IOCP_ENOTFOUND) {
      a->notfound++;
    } else {
      a->other++;
    }
  }
}

static void test_context_set_while_connections_reset_is_handed_back(void **state) {
  rec_hooks h = {0};
  rec_server *r;
  racer_arg a[RACERS];
  ts_thread *t[RACERS];
  long made, ok, ended = 0, lost = 0, i;
  (void)state;
  ctx_map = calloc(MAP_SIZE, sizeof(*ctx_map));
  assert_non_null(ctx_map);
  clear_live();
  h.on_connect = ctx_connect;
  h.on_disconnect = ctx_disconnect;
  r = rec_start(0, NULL, &h);
  start_racers(a, t, r, r->srv, setter_main);
  run_clients(r->port, 0, &made);
  /* Every connection the server saw has ended (the clients reset them all). */
  assert_int_equal(ts_counter_wait(r->disconnects, ts_counter_get(r->connects), TS_TIMEOUT_MS), 0);
  join_racers(a, t, &ok);
  rec_stop(r);
  for (i = 0; i < MAP_SIZE; i++) {
    ctx_record *m = &ctx_map[i];
    if (atomic_load(&m->id) == 0 || !atomic_load(&m->ended)) continue;
    ended++;
    /* What the setter was told it stored is what the owner gets back. */
    if (atomic_load(&m->handed) != atomic_load(&m->last_ok)) lost++;
  }
  print_message("%ld clients, %ld connections ended, %ld contexts stored, %ld lost\n", made,
                ended, ok, lost);
  assert_true(ended > 0 && ok > 0);
  assert_int_equal(lost, 0);
  free(ctx_map);
}


/* ---- Closes, shutdowns, sends and controls on busy connections --------------- */

static void busy_connect(rec_server *r, iocp_conn_id id) {
  (void)r;
  atomic_store(&live[id % SLOTS], id);
}

/* The echo, with the codes a connection that application threads shut
 * down or fill may give. */
static void busy_data(rec_server *r, iocp_conn_id id, const uint8_t *d, size_t n) {
  int rc = iocp_send(r->srv, id, d, n);
  if (rc != IOCP_OK && rc != IOCP_ECLOSED && rc != IOCP_ESHUTDOWN && rc != IOCP_EQUEUEFULL)
    rec_violation(r);
}

static void control_main(void *arg) {
  racer_arg *a = arg;
  unsigned seed = 99u + (unsigned)a->index;
  static const char extra[64] = "from an application thread";
  while (!atomic_load(&stop_racing)) {
    iocp_conn_id id = pick(&seed, a->index);
    uint64_t q;
    int rc;
    if (id == 0) continue;
    switch ((seed >> 8) % 12) {
    case 0:
      rc = iocp_close(a->srv, id);
      if (rc != IOCP_OK && rc != IOCP_ENOTFOUND && rc != IOCP_ECLOSED) a->other++;
      break;
    case 1:
      rc = iocp_shutdown(a->srv, id);
      if (rc != IOCP_OK && rc != IOCP_ENOTFOUND && rc != IOCP_ECLOSED) a->other++;
      break;
    case 2: {
      void *p;
      rc = iocp_get_context(a->srv, id, &p);
      if (rc != IOCP_OK && rc != IOCP_ENOTFOUND) a->other++;
      break;
    }
    case 3:
      rc = iocp_queued(a->srv, id, &q);
      if (rc != IOCP_OK && rc != IOCP_ENOTFOUND) a->other++;
      break;
    case 4: /* paused for a moment only: the clients wait for echoes */
      rc = iocp_pause_recv(a->srv, id);
      if (rc != IOCP_OK && rc != IOCP_ENOTFOUND && rc != IOCP_ECLOSED) a->other++;
      rc = iocp_resume_recv(a->srv, id);
      if (rc != IOCP_OK && rc != IOCP_ENOTFOUND && rc != IOCP_ECLOSED) a->other++;
      break;
    case 5: /* the timer thread's sweep joins the race */
      rc = iocp_set_idle_timeout(a->srv, id, 300);
      if (rc != IOCP_OK && rc != IOCP_ENOTFOUND && rc != IOCP_ECLOSED) a->other++;
      break;
    case 6:
      rc = iocp_set_drain_mark(a->srv, id, 4096);
      if (rc != IOCP_OK && rc != IOCP_ENOTFOUND && rc != IOCP_ECLOSED) a->other++;
      break;
    default:
      rc = iocp_send(a->srv, id, extra, sizeof(extra));
      if (rc != IOCP_OK && rc != IOCP_ENOTFOUND && rc != IOCP_ECLOSED && rc != IOCP_ESHUTDOWN &&
          rc != IOCP_EQUEUEFULL)
        a->other++;
      break;
    }
    if (rc == IOCP_OK) a->ok++;
  }
}

static void test_close_shutdown_send_on_busy_connections(void **state) {
  rec_hooks h = {0};
  rec_server *r;
  racer_arg a[RACERS];
  ts_thread *t[RACERS];
  long made, ok;
  (void)state;
  clear_live();
  h.on_connect = busy_connect;
  h.on_data = busy_data;
  r = rec_start(0, NULL, &h);
  start_racers(a, t, r, r->srv, control_main);
  run_clients(r->port, 1, &made);
  assert_int_equal(ts_counter_wait(r->disconnects, ts_counter_get(r->connects), TS_TIMEOUT_MS), 0);
  join_racers(a, t, &ok);
  print_message("%ld clients, %ld calls took effect\n", made, ok);
  assert_true(made > 0 && ok > 0);
  ts_echo_check(r->port, "still serving", TS_TIMEOUT_MS);
  rec_stop(r); /* each connect matched by one disconnect, no violation */
}

/* ---- Outbound connections closed while they connect and run ------------------ */

#define OUT_MAX 6000    /* attempts in all, and at most OUT_OPEN unfinished */
#define OUT_OPEN 256

typedef struct outbound {
  iocp_server *srv;
  atomic_long started, connected, ended, failed;
  ts_counter *finished; /* on_disconnect and on_connect_failed */
  iocp_conn_id *ids; /* started, by the connector threads' own halves */
  atomic_long nids;
  ts_thread *drainer;
} outbound;

static outbound out;

static int ob_connect(iocp_server *s, void *u, iocp_conn_id id, const char *addr, uint16_t port) {
  (void)u;
  (void)addr;
  (void)port;
  atomic_fetch_add(&out.connected, 1);
  atomic_store(&live[id % SLOTS], id);
  iocp_send(s, id, "ping", 4); /* the echo keeps it busy */
  return 0;
}

static void ob_data(iocp_server *s, void *u, iocp_conn_id id, const uint8_t *d, size_t n) {
  (void)u;
  iocp_send(s, id, d, n);
}

static void ob_disconnect(iocp_server *s, void *u, iocp_conn_id id, int reason) {
  (void)s;
  (void)u;
  (void)id;
  (void)reason;
  atomic_fetch_add(&out.ended, 1);
  ts_counter_add(out.finished, 1);
}

static void ob_failed(iocp_server *s, void *u, iocp_conn_id id, int error) {
  (void)s;
  (void)u;
  (void)id;
  (void)error;
  atomic_fetch_add(&out.failed, 1);
  ts_counter_add(out.finished, 1);
}

static void ob_drain(void *arg) {
  iocp_event ev[32];
  (void)arg;
  for (;;) {
    int i, n = iocp_wait(out.srv, ev, 32, -1);
    if (n < 0) break; /* IOCP_ECLOSED: destroyed */
    for (i = 0; i < n; i++) {
      const iocp_event *e = &ev[i];
      switch (e->type) {
      case IOCP_EVENT_ACCEPTED: ob_connect(out.srv, NULL, e->id, NULL, 0); break;
      case IOCP_EVENT_DATA:
        ob_data(out.srv, NULL, e->id, (const uint8_t *)(uintptr_t)e->data, (size_t)e->len);
        break;
      case IOCP_EVENT_DISCONNECTED: ob_disconnect(out.srv, NULL, e->id, e->value); break;
      case IOCP_EVENT_CONNECT_FAILED: ob_failed(out.srv, NULL, e->id, e->value); break;
      default: break;
      }
    }
  }
}

typedef struct connector_arg {
  uint16_t port;
  uint64_t until;
  long other;
} connector_arg;

static void connector_main(void *arg) {
  connector_arg *c = arg;
  unsigned n = 0;
  while (ts_now_ms() < c->until && atomic_load(&out.nids) < OUT_MAX) {
    iocp_conn_id id = 0;
    int rc;
    /* Bounded, so sockets and ports never run out. */
    if (ts_counter_wait(out.finished, atomic_load(&out.started) - OUT_OPEN, TS_TIMEOUT_MS) != 0) {
      c->other++;
      break;
    }
    rc = iocp_connect(out.srv, "127.0.0.1", c->port, &id);
    if (rc != IOCP_OK) {
      print_message("iocp_connect: %s\n", iocp_strerror(rc));
      c->other++;
      continue;
    }
    out.ids[atomic_fetch_add(&out.nids, 1)] = id;
    atomic_fetch_add(&out.started, 1);
    /* Every fourth closed at once: it races its own connect. */
    if (++n % 4 == 0) {
      rc = iocp_close(out.srv, id);
      if (rc != IOCP_OK && rc != IOCP_ENOTFOUND && rc != IOCP_ECLOSED) c->other++;
    }
  }
}

static int queue_env(void) {
  const char *v = getenv("IOCP_TEST_DELIVERY");
  return v != NULL && strcmp(v, "queue") == 0;
}

static void test_outbound_connections_closed_while_connecting_and_running(void **state) {
  rec_server *target = rec_start(REC_ECHO, NULL, NULL);
  iocp_callbacks cb;
  iocp_config cfg;
  racer_arg a[RACERS];
  ts_thread *t[RACERS], *ct[2];
  connector_arg c[2];
  long ok, i, n;
  (void)state;
  clear_live();
  memset(&out, 0, sizeof(out));
  out.finished = ts_counter_new();
  out.ids = calloc(OUT_MAX, sizeof(*out.ids));
  assert_non_null(out.ids);
  assert_int_equal(iocp_config_init(&cfg, sizeof(cfg)), IOCP_OK);
  cfg.port = 0;
  cfg.bind_address = "127.0.0.1";
  memset(&cb, 0, sizeof(cb));
  cb.size = sizeof(cb);
  if (queue_env()) {
    cfg.delivery = IOCP_DELIVERY_QUEUE;
    assert_int_equal(iocp_create(&cfg, NULL, NULL, &out.srv), IOCP_OK);
    out.drainer = ts_thread_start(ob_drain, NULL);
  } else {
    cb.on_connect = ob_connect;
    cb.on_data = ob_data;
    cb.on_disconnect = ob_disconnect;
    cb.on_connect_failed = ob_failed;
    assert_int_equal(iocp_create(&cfg, &cb, NULL, &out.srv), IOCP_OK);
  }
  start_racers(a, t, NULL, out.srv, control_main);
  for (i = 0; i < 2; i++) {
    c[i].port = target->port;
    c[i].until = ts_now_ms() + RUN_MS;
    c[i].other = 0;
    ct[i] = ts_thread_start(connector_main, &c[i]);
  }
  for (i = 0; i < 2; i++) {
    ts_thread_join(ct[i]);
    assert_int_equal(c[i].other, 0);
  }
  join_racers(a, t, &ok);
  /* Close what is left; then every attempt ends with exactly one of
   * on_disconnect (it was connected) or on_connect_failed. */
  n = atomic_load(&out.nids);
  for (i = 0; i < n; i++) iocp_close(out.srv, out.ids[i]);
  assert_int_equal(ts_counter_wait(out.finished, n, TS_TIMEOUT_MS), 0);
  print_message("%ld outbound connections, %ld connected, %ld calls took effect\n", n,
                (long)atomic_load(&out.connected), ok);
  assert_int_equal(atomic_load(&out.ended) + atomic_load(&out.failed), n);
  assert_int_equal(atomic_load(&out.ended), atomic_load(&out.connected));
  assert_true(atomic_load(&out.connected) > 0);
  iocp_destroy(out.srv);
  if (out.drainer != NULL) ts_thread_join(out.drainer);
  free(out.ids);
  ts_counter_free(out.finished);
  rec_stop(target);
}


int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_context_set_while_connections_reset_is_handed_back),
      cmocka_unit_test(test_close_shutdown_send_on_busy_connections),
      cmocka_unit_test(test_outbound_connections_closed_while_connecting_and_running),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
