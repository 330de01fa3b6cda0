/* Connections spread over several workers. On Linux each connection belongs
 * to one worker's epoll set (dll/linux/loop.c); on Windows every worker
 * takes from one port. Either way, what a user relies on must hold with
 * connections on every worker: every byte echoed in order, controls called
 * from a foreign thread or from another connection's callback reach
 * connections wherever they live, and a stop or destroy ends every
 * connection exactly once. Four workers here, more than this machine's
 * processors, so every worker holds several connections. */
#include "tsupport.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKERS 4

/* The ids the server saw, in connect order (r->user). */
typedef struct id_list {
  iocp_conn_id ids[256];
  atomic_int next; /* workers accept side by side: each takes a slot */
  ts_counter *n;   /* slots filled (the test waits on it) */
} id_list;

static void record_id(rec_server *r, iocp_conn_id id) {
  id_list *l = r->user;
  int i = atomic_fetch_add(&l->next, 1);
  if (i >= 256) {
    rec_violation(r);
    return;
  }
  l->ids[i] = id;
  ts_counter_add(l->n, 1);
}

static rec_server *start_spread(int flags, const rec_hooks *extra, id_list *l) {
  iocp_config c;
  rec_hooks h;
  rec_server *r;
  memset(&h, 0, sizeof(h));
  if (extra != NULL) h = *extra;
  h.on_connect = record_id;
  memset(l, 0, sizeof(*l));
  atomic_init(&l->next, 0);
  l->n = ts_counter_new();
  iocp_config_init(&c, sizeof(c));
  c.threads = WORKERS;
  r = rec_start(flags, &c, &h);
  r->user = l;
  return r;
}

static void connect_all(rec_server *r, ts_sock *socks, int n) {
  int i;
  for (i = 0; i < n; i++) {
    socks[i] = ts_connect(r->port);
    assert_true(socks[i] != TS_BAD_SOCK);
    ts_set_timeout(socks[i], TS_TIMEOUT_MS);
  }
  assert_int_equal(ts_counter_wait(((id_list *)r->user)->n, n, TS_TIMEOUT_MS), 0);
}

/* ---- Echo over every worker ------------------------------------------------------- */

#define ECHO_CONNS 64
#define ECHO_ROUNDS 20
#define ECHO_SIZE 100

/* Every connection has a message in flight at once, round after round: the
 * workers serve their connections side by side and each stream comes back
 * whole and in order. */
static void test_many_connections_over_workers_all_echo(void **state) {
  id_list l;
  rec_server *r = start_spread(REC_ECHO, NULL, &l);
  static ts_sock socks[ECHO_CONNS];
  uint8_t buf[ECHO_SIZE];
  int i, round;
  (void)state;
  connect_all(r, socks, ECHO_CONNS);
  for (round = 0; round < ECHO_ROUNDS; round++) {
    uint64_t off = (uint64_t)round * ECHO_SIZE;
    for (i = 0; i < ECHO_CONNS; i++) {
      ts_fill(buf, sizeof(buf), (uint32_t)i, off);
      assert_int_equal(ts_send_all(socks[i], buf, sizeof(buf)), TS_OK);
    }
    for (i = 0; i < ECHO_CONNS; i++) {
      assert_int_equal(ts_recv_exact(socks[i], buf, sizeof(buf)), TS_OK);
      assert_int_equal(ts_check(buf, sizeof(buf), (uint32_t)i, off), sizeof(buf));
    }
  }
  for (i = 0; i < ECHO_CONNS; i++) ts_close(socks[i]);
  assert_int_equal(ts_counter_wait(r->disconnects, ECHO_CONNS, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->violations), 0);
  rec_stop(r);
  ts_counter_free(l.n);
}

/* ---- Controls from a foreign thread ------------------------------------------------ */

#define CTL_CONNS 16

static void send_to_all(void *arg) {
  rec_server *r = arg;
  id_list *l = r->user;
  char msg[32];
  int i;
  for (i = 0; i < CTL_CONNS; i++) {
    snprintf(msg, sizeof(msg), "%016llx", (unsigned long long)l->ids[i]);
    if (iocp_send(r->srv, l->ids[i], msg, 16) != IOCP_OK) rec_violation(r);
  }
}

/* One control applied to every connection, on a thread of the test's own. */
typedef struct apply_arg {
  rec_server *r;
  int (IOCP_CALL *op)(iocp_server *server, iocp_conn_id id);
} apply_arg;

static void apply_all(void *arg) {
  apply_arg *a = arg;
  id_list *l = a->r->user;
  int i;
  for (i = 0; i < CTL_CONNS; i++)
    if (a->op(a->r->srv, l->ids[i]) != IOCP_OK) rec_violation(a->r);
}

static void on_other_thread(rec_server *r, int (IOCP_CALL *op)(iocp_server *, iocp_conn_id)) {
  apply_arg a;
  a.r = r;
  a.op = op;
  ts_thread_join(ts_thread_start(apply_all, &a));
}

/* A thread of the application's sends to, pauses, resumes and closes
 * connections of every worker: each call reaches its connection's worker,
 * asleep or not. */
static void test_foreign_thread_controls_reach_every_worker(void **state) {
  id_list l;
  rec_server *r = start_spread(REC_ECHO, NULL, &l);
  ts_sock socks[CTL_CONNS];
  int seen[CTL_CONNS] = {0};
  char buf[17];
  uint8_t end[4];
  size_t got;
  int i, j;
  (void)state;
  connect_all(r, socks, CTL_CONNS);

  /* Sends: each client gets the message naming its own connection. */
  ts_thread_join(ts_thread_start(send_to_all, r));
  for (i = 0; i < CTL_CONNS; i++) {
    unsigned long long id = 0;
    assert_int_equal(ts_recv_exact(socks[i], buf, 16), TS_OK);
    buf[16] = 0;
    assert_int_equal(sscanf(buf, "%16llx", &id), 1);
    for (j = 0; j < CTL_CONNS; j++)
      if (l.ids[j] == (iocp_conn_id)id) seen[j]++;
  }
  for (j = 0; j < CTL_CONNS; j++) assert_int_equal(seen[j], 1);

  /* Paused: the bytes wait in the kernel; resumed: they are echoed. */
  on_other_thread(r, iocp_pause_recv);
  for (i = 0; i < CTL_CONNS; i++) assert_int_equal(ts_send_all(socks[i], "ping", 4), TS_OK);
  on_other_thread(r, iocp_resume_recv);
  for (i = 0; i < CTL_CONNS; i++) {
    assert_int_equal(ts_recv_exact(socks[i], buf, 4), TS_OK);
    assert_memory_equal(buf, "ping", 4);
  }

  /* Closed: every client sees the end, every connection ends once. */
  on_other_thread(r, iocp_close);
  for (i = 0; i < CTL_CONNS; i++) {
    int rc = ts_recv_to_end(socks[i], end, sizeof(end), &got);
    assert_true(rc == TS_EOF || rc == TS_RESET);
    assert_int_equal(got, 0);
    ts_close(socks[i]);
  }
  assert_int_equal(ts_counter_wait(r->reasons[IOCP_REASON_LOCAL_CLOSE], CTL_CONNS, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->violations), 0);
  rec_stop(r);
  ts_counter_free(l.n);
}

/* ---- Sends between connections of different workers ------------------------------- */

#define RELAY_CONNS 12
#define RELAY_SIZE 8

/* Each connection's bytes go out on the next connection (in connect order). */
static void relay_data(rec_server *r, iocp_conn_id id, const uint8_t *data, size_t len) {
  id_list *l = r->user;
  int i;
  for (i = 0; i < RELAY_CONNS; i++) {
    if (l->ids[i] != id) continue;
    if (iocp_send(r->srv, l->ids[(i + 1) % RELAY_CONNS], data, len) != IOCP_OK) rec_violation(r);
    return;
  }
  rec_violation(r);
}

/* A callback on one worker sends on connections that other workers serve
 * (and whose own callbacks may run at that moment): every message arrives
 * once, whole. */
static void test_callback_sends_reach_connections_of_other_workers(void **state) {
  id_list l;
  rec_hooks h;
  rec_server *r;
  ts_sock socks[RELAY_CONNS];
  int seen[RELAY_CONNS] = {0};
  char buf[RELAY_SIZE + 1];
  int i, k, round;
  (void)state;
  memset(&h, 0, sizeof(h));
  h.on_data = relay_data;
  r = start_spread(0, &h, &l);
  connect_all(r, socks, RELAY_CONNS);
  for (round = 0; round < 10; round++) {
    memset(seen, 0, sizeof(seen));
    for (i = 0; i < RELAY_CONNS; i++) {
      snprintf(buf, sizeof(buf), "%04d%04d", round, i);
      assert_int_equal(ts_send_all(socks[i], buf, RELAY_SIZE), TS_OK);
    }
    /* Which client receives which message depends on the ids' order: each
     * receives exactly one, and all of them arrive. */
    for (i = 0; i < RELAY_CONNS; i++) {
      int rnd = -1;
      assert_int_equal(ts_recv_exact(socks[i], buf, RELAY_SIZE), TS_OK);
      buf[RELAY_SIZE] = 0;
      assert_int_equal(sscanf(buf, "%4d%4d", &rnd, &k), 2);
      assert_int_equal(rnd, round);
      assert_true(k >= 0 && k < RELAY_CONNS);
      seen[k]++;
    }
    for (k = 0; k < RELAY_CONNS; k++) assert_int_equal(seen[k], 1);
  }
  for (i = 0; i < RELAY_CONNS; i++) ts_close(socks[i]);
  assert_int_equal(ts_counter_wait(r->disconnects, RELAY_CONNS, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->violations), 0);
  rec_stop(r);
  ts_counter_free(l.n);
}

/* ---- Stop and destroy with connections on every worker ------------------------------ */

#define END_CONNS 32

typedef struct sender {
  id_list *ids; /* not r: rec_stop frees r while this thread still runs */
  iocp_server *srv;
  ts_counter *stop;
  int bad;
} sender;

/* Sends on every connection until told to stop; once the server is being
 * destroyed, calls fail with a documented code and nothing else. */
static void keep_sending(void *arg) {
  sender *s = arg;
  id_list *l = s->ids;
  while (ts_counter_get(s->stop) == 0) {
    int i;
    for (i = 0; i < END_CONNS; i++) {
      int rc = iocp_send(s->srv, l->ids[i], "0123456789abcdef", 16);
      if (rc != IOCP_OK && rc != IOCP_ECLOSED && rc != IOCP_ENOTFOUND && rc != IOCP_ESHUTDOWN)
        s->bad++;
    }
  }
}

/* iocp_destroy while every worker has connections that receive and send
 * (an application thread keeps sending to all of them, the clients keep
 * sending too): every connection ends exactly once, before destroy
 * returns, and nothing runs after it. */
static void test_destroy_with_connections_on_every_worker(void **state) {
  id_list l;
  rec_server *r = start_spread(REC_ECHO, NULL, &l);
  ts_sock socks[END_CONNS];
  sender snd;
  ts_thread *t;
  int i;
  (void)state;
  connect_all(r, socks, END_CONNS);
  for (i = 0; i < END_CONNS; i++) assert_int_equal(ts_send_all(socks[i], "hello", 5), TS_OK);
  assert_int_equal(ts_counter_wait(r->bytes_in, 5 * END_CONNS, TS_TIMEOUT_MS), 0);
  snd.ids = &l;
  snd.srv = r->srv;
  snd.stop = ts_counter_new();
  snd.bad = 0;
  t = ts_thread_start(keep_sending, &snd);
  /* rec_stop destroys the server and checks that every on_connect had its
   * on_disconnect, none overlapped and none came late. */
  rec_stop(r);
  ts_counter_add(snd.stop, 1);
  ts_thread_join(t);
  assert_int_equal(snd.bad, 0);
  for (i = 0; i < END_CONNS; i++) ts_close(socks[i]);
  ts_counter_free(snd.stop);
  ts_counter_free(l.n);
}

typedef struct stopper {
  rec_server *r;
  int rc;
} stopper;

static void stop_main(void *arg) {
  stopper *s = arg;
  s->rc = iocp_stop_graceful(s->r->srv, TS_TIMEOUT_MS);
}

/* iocp_stop_graceful with connections on every worker: each is half-closed
 * after its queued bytes, the clients read everything to the end and close,
 * and every connection ends as the peer's close, none at the deadline. */
static void test_graceful_stop_with_connections_on_every_worker(void **state) {
  id_list l;
  rec_server *r = start_spread(REC_ECHO, NULL, &l);
  ts_sock socks[END_CONNS];
  uint8_t buf[64];
  stopper st;
  ts_thread *t;
  size_t got;
  int i;
  (void)state;
  connect_all(r, socks, END_CONNS);
  for (i = 0; i < END_CONNS; i++) {
    ts_fill(buf, 32, (uint32_t)i, 0);
    assert_int_equal(ts_send_all(socks[i], buf, 32), TS_OK);
  }
  assert_int_equal(ts_counter_wait(r->bytes_in, 32 * END_CONNS, TS_TIMEOUT_MS), 0);
  /* The stop waits for the clients, which close once they read the FIN. */
  st.r = r;
  st.rc = -1;
  t = ts_thread_start(stop_main, &st);
  for (i = 0; i < END_CONNS; i++) {
    got = 0;
    assert_int_equal(ts_recv_to_end(socks[i], buf, sizeof(buf), &got), TS_EOF);
    assert_int_equal(got, 32);
    assert_int_equal(ts_check(buf, 32, (uint32_t)i, 0), 32);
    ts_close(socks[i]);
  }
  ts_thread_join(t);
  assert_int_equal(st.rc, 0);
  assert_int_equal(ts_counter_get(r->reasons[IOCP_REASON_PEER_CLOSED]), END_CONNS);
  rec_stop(r);
  ts_counter_free(l.n);
}

#if defined(__linux__)
#  include <dirent.h>
#  include <signal.h>

/* The mask of thread `tid` of this process (SigBlk in its status). */
static unsigned long long blocked_of(const char *tid) {
  char path[320], line[256];
  unsigned long long mask = 0;
  FILE *f;
  snprintf(path, sizeof(path), "/proc/self/task/%s/status", tid);
  f = fopen(path, "r");
  if (f == NULL) return 0;
  while (fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, "SigBlk:", 7) == 0) mask = strtoull(line + 7, NULL, 16);
  fclose(f);
  return mask;
}

#  define SIGBIT(n) (1ull << ((n)-1))

/* Linux: every thread of the library (the workers, and the idle timer that
 * an application thread starts) blocks the process-wide signals, so Ctrl-C,
 * termination and SIGPIPE reach the application's threads; and a peer's
 * reset while the library writes raises no SIGPIPE. */
static void test_library_threads_block_process_signals(void **state) {
  iocp_config cfg;
  iocp_callbacks cb;
  iocp_server *s = NULL;
  char before[4096] = " ";
  struct dirent *d;
  DIR *dir;
  int library_threads = 0;
  sigset_t none, old;
  (void)state;
  /* Created from a thread that blocks nothing. */
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, &old);
  dir = opendir("/proc/self/task");
  assert_non_null(dir);
  while ((d = readdir(dir)) != NULL) {
    strncat(before, d->d_name, sizeof(before) - strlen(before) - 2);
    strcat(before, " ");
  }
  closedir(dir);
  assert_int_equal(iocp_config_init(&cfg, sizeof(cfg)), IOCP_OK);
  cfg.port = 0;
  cfg.threads = 2;
  cfg.idle_timeout_ms = 1000; /* the timer thread too */
  memset(&cb, 0, sizeof(cb));
  cb.size = sizeof(cb);
  if (getenv("IOCP_TEST_DELIVERY") != NULL && strcmp(getenv("IOCP_TEST_DELIVERY"), "queue") == 0)
    cfg.delivery = IOCP_DELIVERY_QUEUE;
  assert_int_equal(iocp_create(&cfg, cfg.delivery == IOCP_DELIVERY_QUEUE ? NULL : &cb, NULL, &s),
                   IOCP_OK);
  dir = opendir("/proc/self/task");
  assert_non_null(dir);
  while ((d = readdir(dir)) != NULL) {
    char key[300];
    unsigned long long m;
    if (d->d_name[0] == '.') continue;
    snprintf(key, sizeof(key), " %s ", d->d_name);
    if (strstr(before, key) != NULL) continue; /* not the library's */
    library_threads++;
    m = blocked_of(d->d_name);
    assert_true((m & SIGBIT(SIGINT)) && (m & SIGBIT(SIGTERM)) && (m & SIGBIT(SIGPIPE)));
  }
  closedir(dir);
  assert_true(library_threads >= 3); /* two workers and the timer */
  assert_int_equal(iocp_destroy(s), IOCP_OK);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}
#endif

int main(void) {
  const struct CMUnitTest tests[] = {
#if defined(__linux__)
      cmocka_unit_test(test_library_threads_block_process_signals),
#endif
      cmocka_unit_test(test_many_connections_over_workers_all_echo),
      cmocka_unit_test(test_foreign_thread_controls_reach_every_worker),
      cmocka_unit_test(test_callback_sends_reach_connections_of_other_workers),
      cmocka_unit_test(test_destroy_with_connections_on_every_worker),
      cmocka_unit_test(test_graceful_stop_with_connections_on_every_worker),
  };
  ts_net_init();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
