/* Sends past 1 GiB on one connection. The IOCP engine
 * once cut each gathered buffer at 1 GiB but kept the buffers after the cut
 * one (their bytes went out before the rest of it), and never capped the
 * total, whose completion count is 32 bits (4 GiB or more was resent without
 * end). Two checks:
 *  - white box, no memory needed: what one send operation hands to the
 *    system (WSASend / send or sendmsg, through the call table) for queues of
 *    64 MiB + 1.5 GiB + 4 KiB and of 5 x 1 GiB and 16 x 300 MiB;
 *  - end to end: 64 MiB + (1 GiB + 64 KiB) + 4 KiB queued on one connection
 *    arrive byte for byte (2.2 GiB of memory at the peak: the caller's bytes
 *    and the library's copy; with a 4 KiB first part, Wine happened to
 *    complete the old engine's sends short and hid the bug). Not in the ThreadSanitizer build, whose shadow
 *    memory would take four times that again. */
#include "tsupport.h"
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)

/* ---- What one send operation passes to the system ---------------------------- */

static uint64_t seen_len[IOCP__MAX_IOV];
static int seen_n;

#if defined(_WIN32)
static int WSAAPI capture_wsasend(SOCKET s, LPWSABUF b, DWORD n, LPDWORD sent, DWORD flags,
                                  LPWSAOVERLAPPED ol, LPWSAOVERLAPPED_COMPLETION_ROUTINE fn) {
  DWORD i;
  (void)s, (void)sent, (void)flags, (void)ol, (void)fn;
  seen_n = (int)n;
  for (i = 0; i < n && i < IOCP__MAX_IOV; i++) seen_len[i] = b[i].len;
  WSASetLastError(WSAECONNRESET); /* nothing is in flight afterwards */
  return SOCKET_ERROR;
}
static void install_capture(void) { iocp__hooks.wsasend = capture_wsasend; }
static void fake_conn_init(iocp__conn *c, iocp_server *s) {
  iocp__mutex_init(&c->lock, IOCP__RANK_CONN);
  c->server = s;
  c->eng.sock = (SOCKET)4242; /* never used: the hook answers */
}
#else
#  include <errno.h>
static ssize_t capture_sendmsg(int fd, const struct msghdr *m, int flags) {
  size_t i;
  (void)fd, (void)flags;
  seen_n = (int)m->msg_iovlen;
  for (i = 0; i < m->msg_iovlen && i < IOCP__MAX_IOV; i++) seen_len[i] = m->msg_iov[i].iov_len;
  errno = EAGAIN; /* stays posted: waits for readiness, which never comes */
  return -1;
}
/* One buffer goes through send(), not sendmsg(). */
static ssize_t capture_send(int fd, const void *b, size_t n, int flags) {
  (void)fd, (void)b, (void)flags;
  seen_n = 1;
  seen_len[0] = n;
  errno = EAGAIN;
  return -1;
}
static int ignore_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  (void)epfd, (void)op, (void)fd, (void)ev;
  return 0;
}
static void install_capture(void) {
  iocp__hooks.sendmsg = capture_sendmsg;
  iocp__hooks.send = capture_send;
  iocp__hooks.epoll_ctl = ignore_epoll_ctl;
}
static void fake_conn_init(iocp__conn *c, iocp_server *s) {
  iocp__mutex_init(&c->lock, IOCP__RANK_CONN);
  c->server = s;
  c->eng.fd = 4242; /* never used: the hooks answer */
  c->eng.writable = 1; /* as after registration: a send is tried at once */
}
#endif

/* Offers `n` buffers of the given sizes to the engine (the pointers are
 * never read) and checks what reached the system: something, less than
 * 4 GiB in all, and only the last buffer possibly cut short. */
static void offer(const uint64_t *lens, int n) {
  iocp__iov iov[IOCP__MAX_IOV];
  iocp__conn *c = calloc(1, sizeof(*c));
  iocp_server *s = calloc(1, sizeof(*s));
  uint64_t total = 0;
  int i;
  assert_non_null(c);
  assert_non_null(s);
  fake_conn_init(c, s);
  for (i = 0; i < n; i++) {
    iov[i].base = (const uint8_t *)(uintptr_t)(0x10000u * (unsigned)(i + 1));
    iov[i].len = (size_t)lens[i];
  }
  seen_n = 0;
  install_capture();
  iocp__conn_lock(c); /* as the core calls the engine */
  iocp__eng_send(c, iov, n); /* fails (Windows) or stays posted (Linux) */
  iocp__conn_unlock(c);
  iocp__hooks_reset();
  assert_true(seen_n >= 1 && seen_n <= n);
  for (i = 0; i < seen_n; i++) {
    total += seen_len[i];
    if (i < seen_n - 1) assert_true(seen_len[i] == lens[i]); /* whole, or last */
    assert_true(seen_len[i] <= lens[i] && seen_len[i] > 0);
  }
  assert_true(total < 4 * GIB);
  free(s);
  free(c);
}

static void test_one_send_never_passes_a_cut_buffer_or_4_gib(void **state) {
  static const uint64_t cut_in_middle[] = {64 * MIB, 1536 * MIB, 4096};
  static const uint64_t five_gib[] = {GIB, GIB, GIB, GIB, GIB};
  uint64_t many[IOCP__MAX_IOV];
  int i;
  (void)state;
  for (i = 0; i < IOCP__MAX_IOV; i++) many[i] = 300 * MIB;
  offer(cut_in_middle, 3);
  offer(five_gib, 5);
  offer(many, IOCP__MAX_IOV);
}

/* ---- An immediate send (iocp_send with nothing queued) ----------------------- *
 * Both engines hand the socket what it takes at once, with a plain
 * non-blocking send(): no operation, no completion (under Wine, one
 * wineserver request less per echo). Checked through the call table: the
 * length offered is capped, what the socket took is what is reported, a
 * full socket takes nothing, a failed one says so, and (Windows) a socket
 * that stayed blocking is never offered anything. */

static size_t try_seen, try_takes;
static int try_calls, try_fails; /* 0: takes; 1: full; 2: broken */

#if defined(_WIN32)
static int WSAAPI try_capture(SOCKET s, const char *b, int n, int flags) {
  (void)s, (void)b, (void)flags;
  try_calls++;
  try_seen = (size_t)n;
  if (try_fails)
    return WSASetLastError(try_fails == 1 ? WSAEWOULDBLOCK : WSAECONNRESET), SOCKET_ERROR;
  return (int)((size_t)n < try_takes ? (size_t)n : try_takes);
}
static void try_conn_init(iocp__conn *c, iocp_server *s, int nonblocking) {
  iocp__mutex_init(&c->lock, IOCP__RANK_CONN);
  c->server = s;
  c->eng.sock = (SOCKET)4242; /* never used: the hook answers */
  c->eng.nonblocking = nonblocking ? 1 : 0;
  iocp__server_eng(s)->try_send = 1; /* as iocp__tuning_defaults has it */
}
#else
static ssize_t try_capture(int fd, const void *b, size_t n, int flags) {
  (void)fd, (void)b, (void)flags;
  try_calls++;
  try_seen = n;
  if (try_fails) return errno = try_fails == 1 ? EAGAIN : ECONNRESET, -1;
  return (ssize_t)(n < try_takes ? n : try_takes);
}
static void try_conn_init(iocp__conn *c, iocp_server *s, int nonblocking) {
  iocp__mutex_init(&c->lock, IOCP__RANK_CONN);
  c->server = s;
  c->eng.fd = 4242;
  c->eng.writable = nonblocking ? 1 : 0; /* here: no writability seen, nothing tried */
}
#endif

static long long try_once(int fails, size_t takes, size_t len, int nonblocking) {
  iocp__conn *c = calloc(1, sizeof(*c));
  iocp_server *s = calloc(1, sizeof(*s));
  long long n;
  assert_non_null(c);
  assert_non_null(s);
  try_conn_init(c, s, nonblocking);
  try_fails = fails;
  try_takes = takes;
  try_calls = 0;
  try_seen = 0;
  iocp__hooks.send = try_capture;
  iocp__conn_lock(c); /* as the core calls the engine */
  n = iocp__eng_try_send(c, (const uint8_t *)(uintptr_t)0x10000u, len);
  iocp__conn_unlock(c);
  iocp__hooks_reset();
  free(s);
  free(c);
  return n;
}

static void test_an_immediate_send_reports_what_the_socket_took(void **state) {
  (void)state;
  /* Far more than one call may carry: offered capped, at 1 GiB at most. */
  assert_int_equal(try_once(0, 1000, SIZE_MAX, 1), 1000);
  assert_int_equal(try_calls, 1);
  assert_true(try_seen > 0 && try_seen <= GIB);
  /* All of a small send. */
  assert_int_equal(try_once(0, SIZE_MAX, 64, 1), 64);
  assert_true(try_seen == 64);
  /* A full socket takes nothing: the bytes wait in the queue. */
  assert_int_equal(try_once(1, 0, 64, 1), 0);
  assert_int_equal(try_calls, 1);
  /* A broken one: -1, and the core tears the connection down. */
  assert_int_equal(try_once(2, 0, 64, 1), -1);
  /* Not tried at all on a socket that may block (Windows: FIONBIO failed;
   * Linux: no writability seen yet). */
  assert_int_equal(try_once(0, SIZE_MAX, 64, 0), 0);
  assert_int_equal(try_calls, 0);
}

/* ---- End to end: 64 MiB + 1.5 GiB + 4 KiB, byte for byte ------------------------ */
#if !defined(BIGSEND_NO_END_TO_END) /* not in the TSan build: see the top */

/* A pattern without a short period (ts_pattern repeats every 64 KiB, and the
 * old bug's misplaced bytes sat a multiple of that away): byte `off` of a
 * stream of 64-bit words, word i being i times an odd constant, so no two
 * words are equal. */
static uint64_t word_at(uint64_t i) { return (i + 1) * UINT64_C(0x9E3779B97F4A7C15); }

static void fill(uint8_t *buf, size_t len, uint64_t off) {
  size_t k = 0;
  while (k < len && ((off + k) & 7) != 0) {
    buf[k] = (uint8_t)(word_at((off + k) >> 3) >> (8 * ((off + k) & 7)));
    k++;
  }
  for (; k + 8 <= len; k += 8) {
    uint64_t w = word_at((off + k) >> 3);
    memcpy(buf + k, &w, 8); /* little-endian on every platform we build */
  }
  for (; k < len; k++) buf[k] = (uint8_t)(word_at((off + k) >> 3) >> (8 * ((off + k) & 7)));
}

/* The middle part is more than 1 GiB, so one send operation cannot carry it
 * whole; the small parts around it show bytes out of order. Long runs may
 * set IOCP_BIGSEND_MIB to a larger middle part (test/tools/longrun.sh). */
static void test_gigabytes_on_one_connection_arrive_byte_exact(void **state) {
  const size_t piece = 1u << 20;
  const char *env = getenv("IOCP_BIGSEND_MIB");
  uint64_t parts[3], total, off = 0, first_bad = UINT64_MAX;
  iocp_config cfg;
  rec_server *r;
  iocp_conn_id id;
  uint8_t *src, *got, *want;
  ts_sock a;
  size_t tail = 0;
  int i;
  (void)state;

  parts[0] = 64 * MIB;
  parts[1] = env != NULL && atoi(env) > 0 ? (uint64_t)atoi(env) * MIB : GIB + 65536;
  parts[2] = 4096;
  total = parts[0] + parts[1] + parts[2];
  src = malloc((size_t)total);
  got = malloc(piece);
  want = malloc(piece);
  assert_non_null(src);
  assert_non_null(got);
  assert_non_null(want);
  fill(src, (size_t)total, 0);

  iocp_config_init(&cfg, sizeof(cfg));
  cfg.max_send_queue = total;
  r = rec_start(0, &cfg, NULL);
  a = ts_connect(r->port);
  assert_true(a != TS_BAD_SOCK);
  id = rec_wait_connect(r, 1);
  assert_true(id != 0);
  for (i = 0; i < 3; i++) {
    assert_int_equal(iocp_send(r->srv, id, src + off, (size_t)parts[i]), IOCP_OK);
    off += parts[i];
  }
  free(src); /* the library holds its own copy */
  assert_int_equal(iocp_shutdown(r->srv, id), IOCP_OK);

  for (off = 0; off < total; off += piece) {
    size_t n = total - off < piece ? (size_t)(total - off) : piece;
    size_t bad;
    assert_int_equal(ts_recv_exact(a, got, n), TS_OK);
    fill(want, n, off);
    if (memcmp(got, want, n) == 0) continue;
    for (bad = 0; got[bad] == want[bad]; bad++) continue;
    first_bad = off + bad;
    break;
  }
  if (first_bad != UINT64_MAX) print_error("first wrong byte at offset %llu\n", (unsigned long long)first_bad);
  assert_true(first_bad == UINT64_MAX);
  /* Then the FIN, and not one byte more. */
  assert_int_equal(ts_recv_to_end(a, got, piece, &tail), TS_EOF);
  assert_int_equal(tail, 0);
  ts_close(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  rec_stop(r);
  free(got);
  free(want);
}
#endif

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_send_never_passes_a_cut_buffer_or_4_gib),
      cmocka_unit_test(test_an_immediate_send_reports_what_the_socket_took),
#if !defined(BIGSEND_NO_END_TO_END)
      cmocka_unit_test(test_gigabytes_on_one_connection_arrive_byte_exact),
#endif
  };
  ts_net_init();
  return cmocka_run_group_tests_name("bigsend", tests, NULL, NULL);
}
