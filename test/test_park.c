/* Parking on Linux (dll/linux/park.c, loop.c): a worker lends its loop to
 * worker 0 when it is idle or when the machine leaves it waiting for a
 * processor, and worker 0 gives it back when it is busy and processors sit
 * idle. The policy is a function of one window's measurements, tested here
 * on synthetic windows (no timing); so are the readers of the kernel's
 * figures (schedstat, /proc/stat). Then the behaviour: with IOCPSRV_PARK=3
 * every worker parks and is unparked every few milliseconds, and every
 * connection's bytes still come back whole and in order while its loop
 * moves between its own worker and worker 0. (The suites workers, stress
 * and echo run again in that mode: suite park-churn in test/meson.build.) */
#include "tsupport.h"
#include "internal.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MS 1000000ull

static iocp__park_window win(uint64_t span_ms, uint64_t cpu_ms, int64_t wait_ms, int64_t idle_ms) {
  iocp__park_window w;
  w.span_ns = span_ms * MS;
  w.cpu_ns = cpu_ms * MS;
  w.wait_ns = wait_ms < 0 ? -1 : wait_ms * (int64_t)MS;
  w.idle_ns = idle_ms < 0 ? -1 : idle_ms * (int64_t)MS;
  return w;
}

/* ---- The policy -------------------------------------------------------------------- */

static void test_idle_worker_parks_unless_parking_is_off(void **state) {
  iocp__park_window w = win(100, 19, 0, -1);
  (void)state;
  assert_int_equal(iocp__park_guest(&w, IOCP__PARK_IDLE), IOCP__PARK_IDLE);
  assert_true(iocp__park_guest(&w, IOCP__PARK_OVERSUB));
  assert_false(iocp__park_guest(&w, IOCP__PARK_NEVER));
  w = win(100, 20, 0, -1); /* 20% is busy enough to stay */
  assert_false(iocp__park_guest(&w, IOCP__PARK_OVERSUB));
  w = win(0, 0, 0, -1); /* no window measured yet */
  assert_false(iocp__park_guest(&w, IOCP__PARK_OVERSUB));
}

/* What two workers and a client on two processors looked like (a worker
 * ran 42% of a window and waited for a processor 28%), against one libuv
 * loop beside the same client (ran 94%, waited 3%). */
static void test_oversubscribed_worker_parks(void **state) {
  iocp__park_window w = win(50, 21, 14, -1);
  (void)state;
  assert_int_equal(iocp__park_guest(&w, IOCP__PARK_OVERSUB), IOCP__PARK_OVERSUB);
  assert_false(iocp__park_guest(&w, IOCP__PARK_IDLE)); /* mode 1: idleness only */
  assert_false(iocp__park_guest(&w, IOCP__PARK_NEVER));
  w = win(50, 47, 2, -1);
  assert_false(iocp__park_guest(&w, IOCP__PARK_OVERSUB));
  /* The edge: waiting a fifth of the time it wanted a processor. */
  w = win(100, 80, 20, -1);
  assert_true(iocp__park_guest(&w, IOCP__PARK_OVERSUB));
  w = win(100, 80, 19, -1);
  assert_false(iocp__park_guest(&w, IOCP__PARK_OVERSUB));
  /* Unknown delay (no /proc): only idleness counts. */
  w = win(50, 21, -1, -1);
  assert_false(iocp__park_guest(&w, IOCP__PARK_OVERSUB));
}

static void test_busy_host_unparks_only_with_idle_processors(void **state) {
  iocp__park_window w = win(50, 49, -1, 30);
  (void)state;
  assert_true(iocp__park_host_busy(&w, IOCP__PARK_OVERSUB));
  assert_true(iocp__park_host(&w, IOCP__PARK_OVERSUB)); /* 60% of a processor idle */
  w = win(50, 49, -1, 10); /* the client has the other processor */
  assert_false(iocp__park_host(&w, IOCP__PARK_OVERSUB));
  assert_true(iocp__park_host(&w, IOCP__PARK_IDLE)); /* mode 1: its own load alone */
  assert_false(iocp__park_host(&w, IOCP__PARK_NEVER));
  w = win(50, 49, -1, -1); /* idleness unknown: its own load alone */
  assert_true(iocp__park_host(&w, IOCP__PARK_OVERSUB));
  w = win(50, 35, -1, 100); /* not busy: nothing to give back */
  assert_false(iocp__park_host_busy(&w, IOCP__PARK_OVERSUB));
  assert_false(iocp__park_host(&w, IOCP__PARK_OVERSUB));
  w = win(50, 36, -1, 25); /* over 70% busy, half a processor idle: the edges */
  assert_true(iocp__park_host(&w, IOCP__PARK_OVERSUB));
  w = win(50, 35, -1, 25);
  assert_false(iocp__park_host(&w, IOCP__PARK_OVERSUB));
  w = win(50, 36, -1, 24);
  assert_false(iocp__park_host(&w, IOCP__PARK_OVERSUB));
}

/* A loop given back and parked again for oversubscription within a second
 * was a wrong call: worker 0 waits 200 ms before the next, then twice as
 * long after each further one, up to 6.4 s; a loop kept a second or more,
 * or parked because its load went away, ends the backoff. */
static void test_wrong_unparks_back_off(void **state) {
  const uint64_t never = UINT64_MAX;
  uint64_t b = 0;
  int i;
  (void)state;
  b = iocp__park_backoff(b, 100 * MS, IOCP__PARK_OVERSUB, IOCP__PARK_OVERSUB);
  assert_int_equal(b, 200 * MS);
  b = iocp__park_backoff(b, 100 * MS, IOCP__PARK_OVERSUB, IOCP__PARK_OVERSUB);
  assert_int_equal(b, 400 * MS);
  for (i = 0; i < 10; i++) b = iocp__park_backoff(b, 999 * MS, IOCP__PARK_OVERSUB, IOCP__PARK_OVERSUB);
  assert_int_equal(b, 6400 * MS);
  /* Kept a second: the call was right, no wait. */
  assert_int_equal(iocp__park_backoff(b, 1000 * MS, IOCP__PARK_OVERSUB, IOCP__PARK_OVERSUB), 0);
  /* Never given back (a first park), or parked for idleness: no wait. */
  assert_int_equal(iocp__park_backoff(b, never, IOCP__PARK_OVERSUB, IOCP__PARK_OVERSUB), 0);
  assert_int_equal(iocp__park_backoff(b, 100 * MS, IOCP__PARK_IDLE, IOCP__PARK_OVERSUB), 0);
  /* The churn knob parks and unparks at will. */
  assert_int_equal(iocp__park_backoff(b, 1 * MS, IOCP__PARK_OVERSUB, IOCP__PARK_CHURN), 0);
}

static void test_churn_parks_and_unparks_at_every_window(void **state) {
  iocp__park_window w = win(2, 2, 0, 0);
  (void)state;
  assert_true(iocp__park_guest(&w, IOCP__PARK_CHURN));
  w = win(2, 0, 0, 0);
  assert_true(iocp__park_host_busy(&w, IOCP__PARK_CHURN));
  assert_true(iocp__park_host(&w, IOCP__PARK_CHURN));
}

static void test_mode_from_the_environment_value(void **state) {
  (void)state;
  assert_int_equal(iocp__park_mode_parse(NULL), IOCP__PARK_OVERSUB);
  assert_int_equal(iocp__park_mode_parse("0"), IOCP__PARK_NEVER);
  assert_int_equal(iocp__park_mode_parse("1"), IOCP__PARK_IDLE);
  assert_int_equal(iocp__park_mode_parse("2"), IOCP__PARK_OVERSUB);
  assert_int_equal(iocp__park_mode_parse("3"), IOCP__PARK_CHURN);
  assert_int_equal(iocp__park_mode_parse("4"), IOCP__PARK_OVERSUB);
  assert_int_equal(iocp__park_mode_parse("-1"), IOCP__PARK_OVERSUB);
  assert_int_equal(iocp__park_mode_parse(""), IOCP__PARK_OVERSUB);
  assert_int_equal(iocp__park_mode_parse("0x"), IOCP__PARK_OVERSUB);
  assert_int_equal(iocp__park_mode_parse("off"), IOCP__PARK_OVERSUB);
}

/* ---- The kernel's figures ---------------------------------------------------------- */

static const char stat_text[] =
    "cpu  500 0 300 4000 40 0 10 0 0 0\n"
    "cpu0 100 0 100 1000 10 0 5 0 0 0\n"
    "cpu1 100 0 100 1100 20 0 5 0 0 0\n"
    "cpu2 100 0 50 900 5 0 0 0 0 0\n"
    "cpu3 200 0 50 1000 5 0 0 0 0 0\n"
    "intr 12345 0 1 2\n"
    "ctxt 999\n";

static void test_idle_time_of_our_processors_from_proc_stat(void **state) {
  uint64_t mask[IOCP__PARK_CPU_WORDS];
  const int64_t tick = 10 * (int64_t)MS; /* USER_HZ 100 */
  char cut[sizeof(stat_text)];
  (void)state;
  /* All processors: their lines, not the sum's (idle + iowait). */
  assert_int_equal(iocp__park_stat_idle(stat_text, NULL, 100), (1010 + 1120 + 905 + 1005) * tick);
  memset(mask, 0, sizeof(mask));
  mask[0] = (1u << 1) | (1u << 3); /* taskset -c 1,3 */
  assert_int_equal(iocp__park_stat_idle(stat_text, mask, 100), (1120 + 1005) * tick);
  mask[0] = 1u << 7; /* a processor the file does not list */
  assert_int_equal(iocp__park_stat_idle(stat_text, mask, 100), -1);
  /* A buffer that cut cpu3's line short: that line does not count. */
  memcpy(cut, stat_text, sizeof(cut));
  cut[strstr(stat_text, "cpu3") - stat_text + 12] = '\0';
  assert_int_equal(iocp__park_stat_idle(cut, NULL, 100), (1010 + 1120 + 905) * tick);
  assert_int_equal(iocp__park_stat_idle("intr 1 2 3\n", NULL, 100), -1);
  assert_int_equal(iocp__park_stat_idle(stat_text, NULL, 0), -1);
}

static int temp_file(const char *text) {
  char name[] = "/tmp/iocpsrv-park-XXXXXX";
  int fd = mkstemp(name);
  assert_true(fd >= 0);
  unlink(name);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  return fd;
}

static void test_run_queue_delay_from_schedstat(void **state) {
  int fd;
  int64_t a, b;
  (void)state;
  fd = temp_file("123456 789012 34\n");
  assert_int_equal(iocp__park_wait_ns(fd), 789012);
  close(fd);
  fd = temp_file("123456\n");
  assert_int_equal(iocp__park_wait_ns(fd), -1);
  close(fd);
  fd = temp_file("");
  assert_int_equal(iocp__park_wait_ns(fd), -1);
  close(fd);
  assert_int_equal(iocp__park_wait_ns(-1), -1);
  /* This kernel's own file, read twice: a delay that never goes back. */
  fd = iocp__park_open_self();
  assert_true(fd >= 0);
  a = iocp__park_wait_ns(fd);
  b = iocp__park_wait_ns(fd);
  assert_true(a >= 0 && b >= a);
  close(fd);
}

static void test_idle_time_of_this_machine(void **state) {
  struct iocp__eng_server *e = calloc(1, sizeof(*e));
  int64_t a, b;
  (void)state;
  assert_non_null(e);
  iocp__park_stat_open(e);
  assert_true(e->stat_fd >= 0);
  a = iocp__park_idle_ns(e);
  b = iocp__park_idle_ns(e);
  assert_true(a >= 0 && b >= a);
  iocp__park_stat_close(e);
  assert_int_equal(e->stat_fd, -1);
  assert_int_equal(iocp__park_idle_ns(e), -1);
  free(e);
}

/* ---- Behaviour: echoes while loops move ----------------------------------------------- */

#define WORKERS 4
#define CONNS 48
#define SIZE 200
#define PARKS 40 /* parks seen across the workers before the test ends */

static unsigned parks_so_far(rec_server *r) {
  struct iocp__eng_server *e = iocp__server_eng(r->srv);
  unsigned i, n = 0;
  for (i = 1; i < e->nloops; i++) n += atomic_load(&iocp__linux_loop(e, i)->parks);
  return n;
}

static rec_server *start_with_mode(const char *mode, uint32_t threads) {
  iocp_config c;
  rec_server *r;
  setenv("IOCPSRV_PARK", mode, 1);
  iocp_config_init(&c, sizeof(c));
  c.threads = threads;
  r = rec_start(REC_ECHO, &c, NULL);
  unsetenv("IOCPSRV_PARK");
  return r;
}

/* Every connection keeps a message in flight, round after round, until the
 * workers have parked and been unparked PARKS times between them: every
 * stream comes back whole and in order. */
static void test_echoes_while_workers_park_and_unpark(void **state) {
  rec_server *r = start_with_mode("3", WORKERS);
  static ts_sock socks[CONNS];
  uint8_t buf[SIZE];
  uint64_t t0 = ts_now_ms();
  int i, round;
  (void)state;
  assert_int_equal(iocp__server_eng(r->srv)->park_mode, IOCP__PARK_CHURN);
  for (i = 0; i < CONNS; i++) {
    socks[i] = ts_connect(r->port);
    assert_true(socks[i] != TS_BAD_SOCK);
    ts_set_timeout(socks[i], TS_TIMEOUT_MS);
  }
  for (round = 0; round < 10 || parks_so_far(r) < PARKS; round++) {
    uint64_t off = (uint64_t)round * SIZE;
    assert_true(ts_now_ms() - t0 < (uint64_t)TS_TIMEOUT_MS * 4);
    for (i = 0; i < CONNS; i++) {
      ts_fill(buf, sizeof(buf), (uint32_t)i, off);
      assert_int_equal(ts_send_all(socks[i], buf, sizeof(buf)), TS_OK);
    }
    for (i = 0; i < CONNS; i++) {
      assert_int_equal(ts_recv_exact(socks[i], buf, sizeof(buf)), TS_OK);
      assert_int_equal(ts_check(buf, sizeof(buf), (uint32_t)i, off), sizeof(buf));
    }
  }
  for (i = 0; i < CONNS; i++) ts_close(socks[i]);
  assert_int_equal(ts_counter_wait(r->disconnects, CONNS, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->violations), 0);
  rec_stop(r);
}

/* A parked worker's connections move into worker 0's own set, and one
 * made for it while it is parked is registered there: worker 0 serves
 * their echoes with its one wait per turn, and never waits on the parked
 * loop's set for them (served through that nested set, each turn cost a
 * second epoll_wait). Counted with the engine's epoll_wait hook. */
static atomic_int counted_epfd = -1;
static atomic_uint waits_counted;

static int count_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout) {
  if (epfd == atomic_load(&counted_epfd)) atomic_fetch_add(&waits_counted, 1);
  return epoll_wait(epfd, evs, max, timeout);
}

#define MOVE_CONNS 4 /* made before loop 1 parks, and as many after */
#define MOVE_ECHOES 50

static void connect_some(rec_server *r, ts_sock *socks, int n, int64_t connects) {
  int i;
  for (i = 0; i < n; i++) { /* round robin: half of them on loop 1 */
    socks[i] = ts_connect(r->port);
    assert_true(socks[i] != TS_BAD_SOCK);
    ts_set_timeout(socks[i], TS_TIMEOUT_MS);
  }
  assert_int_equal(ts_counter_wait(r->connects, connects + n, TS_TIMEOUT_MS), 0);
}

static void wait_parked(struct iocp__eng_loop *l, uint64_t t0) {
  while (!atomic_load(&l->parked)) { /* an idle worker parks a second after it started */
    assert_true(ts_now_ms() - t0 < (uint64_t)TS_TIMEOUT_MS);
    usleep(5000);
  }
}

static void test_parked_loops_connections_are_served_from_worker_0s_set(void **state) {
  rec_server *r;
  struct iocp__eng_loop *l;
  ts_sock socks[2 * MOVE_CONNS];
  uint64_t t0 = ts_now_ms();
  int i, k, clean = 0;
  (void)state;
  iocp__hooks.epoll_wait = count_epoll_wait; /* before any worker runs */
  r = start_with_mode("1", 2);               /* idle workers park */
  l = iocp__linux_loop(iocp__server_eng(r->srv), 1);
  connect_some(r, socks, MOVE_CONNS, 0);
  wait_parked(l, t0);
  connect_some(r, socks + MOVE_CONNS, MOVE_CONNS, MOVE_CONNS);
  atomic_store(&counted_epfd, l->epfd);
  /* A round counts only if loop 1 stayed parked throughout (a loaded
   * machine can make worker 0 busy enough to give it back meanwhile). */
  while (!clean) {
    unsigned parks, waits;
    wait_parked(l, t0);
    parks = atomic_load(&l->parks);
    waits = atomic_load(&waits_counted);
    for (k = 0; k <= MOVE_ECHOES; k++) {
      /* The first pass lets worker 0 take what the nested set still held
       * (the listener, readable in every set, brought it the connects). */
      if (k == 1) waits = atomic_load(&waits_counted);
      for (i = 0; i < 2 * MOVE_CONNS; i++) {
        char buf[8] = "echo-";
        buf[5] = (char)('0' + i);
        assert_int_equal(ts_send_all(socks[i], buf, 6), TS_OK);
        assert_int_equal(ts_recv_exact(socks[i], buf, 6), TS_OK);
        assert_int_equal(buf[5], '0' + i);
      }
    }
    if (!atomic_load(&l->parked) || atomic_load(&l->parks) != parks) continue;
    /* 100 or more through the nested set; here a stray wake-up at most. */
    assert_true(atomic_load(&waits_counted) - waits <= 2);
    clean = 1;
  }
  for (i = 0; i < 2 * MOVE_CONNS; i++) ts_close(socks[i]);
  assert_int_equal(ts_counter_wait(r->disconnects, 2 * MOVE_CONNS, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->violations), 0);
  rec_stop(r);
  iocp__hooks_reset();
}

/* A move makes each moved socket report its readiness again, behind what
 * is already ready in the new set, in the table's order. Here every wait
 * takes 3 ms, longer than a churn window: were the loops to give their
 * sockets away after a wait or two of 64 events each time, the connections
 * late in the table would be read only now and then (under load, with
 * more of them, never: a minute without a read). Each loop first takes a
 * pass over what it was given, so every connection echoes within a few
 * moves (without the pass: some 130 moves and 1.8 s here). */
#define PASS_CONNS 400
#define PASS_MOVES 8

static int slow_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout) {
  usleep(3000);
  return epoll_wait(epfd, evs, max, timeout);
}

static void test_every_connection_is_read_while_slow_loops_churn(void **state) {
  rec_server *r;
  static ts_sock socks[PASS_CONNS];
  uint64_t t0 = ts_now_ms();
  char buf[4];
  unsigned parks;
  int i;
  (void)state;
  iocp__hooks.epoll_wait = slow_epoll_wait; /* before any worker runs */
  r = start_with_mode("3", 2);
  for (i = 0; i < PASS_CONNS; i++) {
    socks[i] = ts_connect(r->port);
    assert_true(socks[i] != TS_BAD_SOCK);
  }
  assert_int_equal(ts_counter_wait(r->connects, PASS_CONNS, TS_TIMEOUT_MS), 0);
  for (i = 0; parks_so_far(r) < 4; i = !i) { /* traffic on both loops while they churn */
    assert_true(ts_now_ms() - t0 < (uint64_t)TS_TIMEOUT_MS);
    assert_int_equal(ts_send_all(socks[i], "warm", 4), TS_OK);
    assert_int_equal(ts_recv_exact(socks[i], buf, 4), TS_OK);
  }
  parks = parks_so_far(r);
  for (i = 0; i < PASS_CONNS; i++) assert_int_equal(ts_send_all(socks[i], "ping", 4), TS_OK);
  for (i = 0; i < PASS_CONNS; i++) {
    assert_int_equal(ts_recv_exact(socks[i], buf, 4), TS_OK);
    assert_memory_equal(buf, "ping", 4);
  }
  assert_true(parks_so_far(r) - parks <= PASS_MOVES);
  for (i = 0; i < PASS_CONNS; i++) ts_close(socks[i]);
  assert_int_equal(ts_counter_wait(r->disconnects, PASS_CONNS, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_get(r->violations), 0);
  rec_stop(r);
  iocp__hooks_reset();
}

/* IOCPSRV_PARK=0 is read when the server starts: its workers never park
 * (loop.c skips the accounting) and keep no schedstat open. */
static void test_parking_off_from_the_environment(void **state) {
  rec_server *r = start_with_mode("0", 2);
  struct iocp__eng_server *e = iocp__server_eng(r->srv);
  (void)state;
  assert_int_equal(e->park_mode, IOCP__PARK_NEVER);
  assert_int_equal(e->stat_fd, -1);
  ts_echo_check(r->port, "parking off", TS_TIMEOUT_MS);
  assert_int_equal(parks_so_far(r), 0);
  rec_stop(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_idle_worker_parks_unless_parking_is_off),
      cmocka_unit_test(test_oversubscribed_worker_parks),
      cmocka_unit_test(test_busy_host_unparks_only_with_idle_processors),
      cmocka_unit_test(test_wrong_unparks_back_off),
      cmocka_unit_test(test_churn_parks_and_unparks_at_every_window),
      cmocka_unit_test(test_mode_from_the_environment_value),
      cmocka_unit_test(test_idle_time_of_our_processors_from_proc_stat),
      cmocka_unit_test(test_run_queue_delay_from_schedstat),
      cmocka_unit_test(test_idle_time_of_this_machine),
      cmocka_unit_test(test_echoes_while_workers_park_and_unpark),
      cmocka_unit_test(test_parked_loops_connections_are_served_from_worker_0s_set),
      cmocka_unit_test(test_every_connection_is_read_while_slow_loops_churn),
      cmocka_unit_test(test_parking_off_from_the_environment),
  };
  ts_net_init();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
