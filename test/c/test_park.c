/* Parking on Linux (dll/linux/park.c, park_policy.c): a worker lends its loop to
 * worker 0 when it is idle or when the machine leaves it waiting for a
 * processor, and worker 0 gives it back when it is busy and processors sit
 * idle. The policy is a function of one window's measurements, tested here
 * on synthetic windows (no timing); so are the readers of the kernel's
 * figures (schedstat, /proc/stat). Then the behaviour: with IOCPSRV_PARK=3
 * every worker parks and is unparked every few milliseconds, and every
 * connection's bytes still come back whole and in order while its loop
 * moves between its own worker and worker 0. (The suites workers, stress
 * and echo run again in that mode: suite park-churn in test/meson.build.)
 * Last, the timing of worker 0's give-backs on a scripted kernel: a loop
 * given back holds it, and worker 0 backs off after wrong give-backs. */
#include "tsupport.h"
#include "internal.h"
#include "../linux/internal.h" /* the engine's own: loops, parking */

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
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

/* The mode IOCPSRV_PARK's value names, as iocp_create reads it (core/tuning.c):
 * unset or nonsense, the default. */
static int park_mode_of(const char *v) {
  iocp__tuning t;
  if (v == NULL)
    unsetenv("IOCPSRV_PARK");
  else
    setenv("IOCPSRV_PARK", v, 1);
  iocp__tuning_load(&t);
  unsetenv("IOCPSRV_PARK");
  return t.park;
}

static void test_mode_from_the_environment_value(void **state) {
  (void)state;
  assert_int_equal(park_mode_of(NULL), IOCP__PARK_OVERSUB);
  assert_int_equal(park_mode_of("0"), IOCP__PARK_NEVER);
  assert_int_equal(park_mode_of("1"), IOCP__PARK_IDLE);
  assert_int_equal(park_mode_of("2"), IOCP__PARK_OVERSUB);
  assert_int_equal(park_mode_of("3"), IOCP__PARK_CHURN);
  assert_int_equal(park_mode_of("4"), IOCP__PARK_OVERSUB);
  assert_int_equal(park_mode_of("-1"), IOCP__PARK_OVERSUB);
  assert_int_equal(park_mode_of(""), IOCP__PARK_OVERSUB);
  assert_int_equal(park_mode_of("0x"), IOCP__PARK_OVERSUB);
  assert_int_equal(park_mode_of("off"), IOCP__PARK_OVERSUB);
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

/* ---- Behaviour: worker 0's give-backs, on a scripted kernel ---------------------------
 * A loop given back holds it two windows, and worker 0 backs off after
 * give-backs that proved wrong: both are matters of time, so these tests
 * script what the workers measure and keep the real clock. Through the call
 * table: their threads' CPU time (clock_gettime), worker 1's run-queue
 * delay and the processors' idle time (pread of schedstat and /proc/stat).
 * Worker 0 always runs 90% of the wall time with every processor idle, so
 * it gives a parked loop back at its second window unless something stops
 * it; worker 1 is idle, crowded or busy as the test says. Worker 0's waits
 * last 5 ms at most, so it accounts without traffic.
 *
 * The engine's own timestamps decide, on the clock it reads
 * (CLOCK_MONOTONIC_COARSE): a park is loop 1's set going into loop 0's
 * (epoll_ctl ADD, after the decision), a give-back is worker 0 taking it
 * out again (DEL, under park_lock, before loop 1's worker wakes), where the
 * backoff is read too. The bounds are from below only: a loaded machine
 * delays decisions, it never hastens them. */
#define TURN_MS 5
#define GIVEN_HOLD_MS 100 /* two windows of 50 ms (park.c) */

enum { HOST, GUEST, NOBODY };
enum { LOAD_IDLE, LOAD_CROWDED, LOAD_BUSY };
enum { EV_PARK, EV_GIVE, EV_TAKE }; /* a park; a give-back; a take-back from a stuck worker 0 */

typedef struct park_event {
  int kind;
  uint64_t at_ns, next_ns, backoff_ns; /* next and backoff: worker 0's, at a give-back */
} park_event;

#define MAX_EVENTS 64
#define MAX_STEPS 8

static atomic_int sets_made, loop_epfd[2];
static _Thread_local int role = -1; /* a worker's: from the first set it waits on */
static struct iocp__eng_server *_Atomic watched;
static pthread_mutex_t script_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  uint64_t at_ns, cpu_ns, wait_ns;
} meters[2];                       /* what each worker has run and waited so far */
static atomic_int guest_load;      /* LOAD_* */
static atomic_ullong busy_until_ns; /* worker 1 busy until then, whatever its load */
static int steps[MAX_STEPS];       /* its load from give-back i + 1 on (-1: unchanged) */
static uint64_t step_busy_ns;      /* with LOAD_BUSY: this long, then crowded */
static park_event events[MAX_EVENTS];
static int nevents;
static ts_counter *givebacks;

static uint64_t coarse_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Percent of the wall time a worker runs, and waits for a processor. */
static void script_rates(int who, uint64_t now, unsigned *run, unsigned *wait) {
  int load = atomic_load(&guest_load);
  if (who == GUEST && now < atomic_load(&busy_until_ns)) load = LOAD_BUSY;
  *wait = who == GUEST && load == LOAD_CROWDED ? 40 : 0;
  *run = who == HOST || load == LOAD_BUSY ? 90 : load == LOAD_CROWDED ? 40 : 5;
}

static void meter_read(int who, uint64_t *cpu, uint64_t *wait) {
  uint64_t now = coarse_ns(), d;
  unsigned run, waited;
  pthread_mutex_lock(&script_lock);
  if (meters[who].at_ns == 0) meters[who].at_ns = now;
  d = now - meters[who].at_ns;
  script_rates(who, now, &run, &waited);
  meters[who].cpu_ns += d * run / 100;
  meters[who].wait_ns += d * waited / 100;
  meters[who].at_ns = now;
  *cpu = meters[who].cpu_ns;
  *wait = meters[who].wait_ns;
  pthread_mutex_unlock(&script_lock);
}

static int scripted_epoll_create1(int flags) {
  int fd = epoll_create1(flags), i = atomic_fetch_add(&sets_made, 1);
  if (i < 2) atomic_store(&loop_epfd[i], fd); /* loop i's set, made in order */
  return fd;
}

static int scripted_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout) {
  if (role < 0) /* a worker waits on its own set first */
    role = epfd == atomic_load(&loop_epfd[0]) ? HOST : epfd == atomic_load(&loop_epfd[1]) ? GUEST : NOBODY;
  if (role != NOBODY && (timeout < 0 || timeout > TURN_MS)) timeout = TURN_MS;
  return epoll_wait(epfd, evs, max, timeout);
}

static int scripted_clock_gettime(clockid_t id, struct timespec *ts) {
  uint64_t cpu, wait;
  if (id != CLOCK_THREAD_CPUTIME_ID || (role != HOST && role != GUEST)) return clock_gettime(id, ts);
  meter_read(role, &cpu, &wait);
  ts->tv_sec = (time_t)(cpu / 1000000000u);
  ts->tv_nsec = (long)(cpu % 1000000000u);
  return 0;
}

/* Worker 1 reads only its schedstat, worker 0 only /proc/stat: there,
 * every processor was idle all along. */
static ssize_t scripted_pread(int fd, void *buf, size_t n, off_t off) {
  static _Thread_local char text[8192];
  size_t len = 0;
  uint64_t cpu, wait;
  if (role == GUEST) {
    meter_read(GUEST, &cpu, &wait);
    len = (size_t)snprintf(text, sizeof(text), "%llu %llu 1\n", (unsigned long long)cpu,
                           (unsigned long long)wait);
  } else if (role == HOST) {
    unsigned long long idle = coarse_ns() / (1000000000u / (unsigned long long)sysconf(_SC_CLK_TCK));
    long cpus = sysconf(_SC_NPROCESSORS_CONF), i;
    len = (size_t)snprintf(text, sizeof(text), "cpu  0 0 0 0 0\n");
    for (i = 0; i < cpus && i < 128; i++)
      len += (size_t)snprintf(text + len, sizeof(text) - len, "cpu%ld 0 0 0 %llu 0\n", i, idle);
    len += (size_t)snprintf(text + len, sizeof(text) - len, "intr 0\n");
  } else {
    return pread(fd, buf, n, off);
  }
  if (len > n) len = n;
  memcpy(buf, text, len);
  return (ssize_t)len;
}

/* Notes parks and give-backs; a give-back moves worker 1's script on. */
static int scripted_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  struct iocp__eng_server *e = atomic_load(&watched);
  if (epfd == atomic_load(&loop_epfd[0]) && fd == atomic_load(&loop_epfd[1]) &&
      (op == EPOLL_CTL_ADD || (op == EPOLL_CTL_DEL && (role == HOST || role == GUEST)))) {
    park_event pe;
    pe.kind = op == EPOLL_CTL_ADD ? EV_PARK : role == HOST ? EV_GIVE : EV_TAKE;
    pe.at_ns = coarse_ns();
    pe.next_ns = pe.backoff_ns = UINT64_MAX;
    if (pe.kind == EV_GIVE && e != NULL) { /* park_lock is held here */
      pe.next_ns = atomic_load(&e->unpark_next_ns);
      pe.backoff_ns = e->unpark_backoff_ns;
    }
    pthread_mutex_lock(&script_lock);
    if (nevents < MAX_EVENTS) events[nevents++] = pe;
    if (pe.kind == EV_GIVE) {
      int64_t i = ts_counter_get(givebacks);
      if (i < MAX_STEPS && steps[i] == LOAD_BUSY) { /* busy a while, then crowded */
        atomic_store(&busy_until_ns, pe.at_ns + step_busy_ns);
        atomic_store(&guest_load, LOAD_CROWDED);
      } else if (i < MAX_STEPS && steps[i] >= 0) {
        atomic_store(&guest_load, steps[i]);
      }
    }
    pthread_mutex_unlock(&script_lock);
    if (pe.kind == EV_GIVE) ts_counter_add(givebacks, 1);
  }
  return epoll_ctl(epfd, op, fd, ev);
}

/* Starts two workers in `mode` on the script; returns once worker 0 has
 * given loop 1 back `n` times, and stops the server. */
static void run_script(const char *mode, int load, int n) {
  rec_server *r;
  atomic_store(&sets_made, 0);
  atomic_store(&loop_epfd[0], -1);
  atomic_store(&loop_epfd[1], -1);
  atomic_store(&watched, NULL);
  memset(meters, 0, sizeof(meters));
  atomic_store(&guest_load, load);
  atomic_store(&busy_until_ns, 0);
  nevents = 0;
  givebacks = ts_counter_new();
  iocp__hooks.epoll_create1 = scripted_epoll_create1; /* before any worker runs */
  iocp__hooks.epoll_wait = scripted_epoll_wait;
  iocp__hooks.epoll_ctl = scripted_epoll_ctl;
  iocp__hooks.clock_gettime = scripted_clock_gettime;
  iocp__hooks.pread = scripted_pread;
  r = start_with_mode(mode, 2);
  atomic_store(&watched, iocp__server_eng(r->srv)); /* loop 1 parks a second after the start */
  assert_int_equal(ts_counter_wait(givebacks, n, TS_TIMEOUT_MS), 0);
  rec_stop(r);
  iocp__hooks_reset();
  ts_counter_free(givebacks);
}

/* The run's events, relative to its first (printed when a check fails). */
static void print_events(void) {
  int i;
  for (i = 0; i < nevents; i++) {
    const park_event *pe = &events[i];
    print_message("  %-9s at %5lld ms", pe->kind == EV_PARK ? "park" : pe->kind == EV_GIVE ? "give-back" : "take-back",
                  (long long)(int64_t)(pe->at_ns - events[0].at_ns) / (long long)MS);
    if (pe->kind == EV_GIVE && pe->next_ns != UINT64_MAX)
      print_message(" (allowed from %lld ms, backoff %llu ms)",
                    (long long)(int64_t)(pe->next_ns - events[0].at_ns) / (long long)MS,
                    (unsigned long long)(pe->backoff_ns / MS));
    print_message("\n");
  }
}

#define CHECK(cond)                                                                        \
  do {                                                                                     \
    if (!(cond)) print_events();                                                           \
    assert_true(cond);                                                                     \
  } while (0)

static int takebacks(void) {
  int i, n = 0;
  for (i = 0; i < nevents; i++) n += events[i].kind == EV_TAKE;
  return n;
}

/* Every park after a give-back came GIVEN_HOLD_MS or more after it. */
static void assert_held_after_givebacks(void) {
  uint64_t given = 0;
  int i;
  for (i = 0; i < nevents; i++) {
    if (events[i].kind == EV_PARK && given != 0) CHECK(events[i].at_ns - given >= GIVEN_HOLD_MS * MS);
    given = events[i].kind == EV_GIVE ? events[i].at_ns : 0;
  }
}

/* Worker 1 idle throughout (IOCPSRV_PARK=1, parked for idleness, so no
 * backoff): worker 0 gives its loop back every other window, and each time
 * it parks again two windows later at the earliest (without the hold, one
 * window later: some 50 ms). */
static void test_loop_given_back_holds_it_two_windows(void **state) {
  int i;
  (void)state;
  for (i = 0; i < MAX_STEPS; i++) steps[i] = -1;
  run_script("1", LOAD_IDLE, 6);
  assert_held_after_givebacks();
}

/* Worker 1 crowded (IOCPSRV_PARK=2): each give-back proves wrong, and
 * worker 0 waits 200, 400, 800 ms before the next; a park for idleness ends
 * the backoff, and so does a loop kept a second (here 1.5 s busy first).
 * Each give-back comes no sooner than the backoff allowed. */
static void test_worker_0_backs_off_after_wrong_givebacks(void **state) {
  static const uint64_t want_ms[] = {0, 200, 400, 800, 0, 200, 0};
  int i, tries;
  (void)state;
  for (i = 0; i < MAX_STEPS; i++) steps[i] = -1;
  steps[3] = LOAD_IDLE;    /* from the 4th give-back: the 5th follows a park for idleness */
  steps[4] = LOAD_CROWDED; /* the 6th: wrong again, the backoff starts over */
  steps[5] = LOAD_BUSY;    /* the 7th: kept 1.5 s, then crowded */
  step_busy_ns = 1500 * MS;
  /* A take-back (worker 0 looked stuck for 40 ms: a loaded machine) starts
   * the sequence over: then the run is tried again. */
  for (tries = 0; tries < 3; tries++) {
    int k = 0;
    run_script("2", LOAD_CROWDED, 7);
    assert_held_after_givebacks();
    for (i = 0; i < nevents; i++) {
      if (events[i].kind != EV_GIVE) continue;
      CHECK(events[i].next_ns != UINT64_MAX);
      CHECK(events[i].at_ns >= events[i].next_ns); /* never before the backoff ends */
      if (takebacks() == 0 && k < 7) CHECK(events[i].backoff_ns == want_ms[k] * MS);
      k++;
    }
    if (takebacks() == 0) break;
    print_message("  worker 1 took its loop back %d time(s): once more\n", takebacks());
  }
  assert_true(tries < 3);
}

/* IOCPSRV_PARK=0 is read when the server starts: its workers never park
 * (park.c skips the accounting) and keep no schedstat open. */
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
      cmocka_unit_test(test_loop_given_back_holds_it_two_windows),
      cmocka_unit_test(test_worker_0_backs_off_after_wrong_givebacks),
      cmocka_unit_test(test_parking_off_from_the_environment),
  };
  ts_net_init();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
