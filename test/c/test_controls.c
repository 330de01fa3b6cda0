/* The per-connection controls of 1.1: the caller's context pointer, pausing
 * and resuming receives (the peer's bytes stay in the kernel), and the drain
 * signal that lets a producer resume without polling; and what each returns
 * for bad input. */
#include "tsupport.h"

#include <stdlib.h>
#include <string.h>

/* How long a socket must stay unwritable to count as held back. */
#define STALL_MS 500

/* ---- Context -------------------------------------------------------------------- */

typedef struct ctx_obj {
  iocp_conn_id id;
  int magic;
} ctx_obj;

/* The contexts set, in connect order (read by the test after waiting on
 * the connect counter, which orders it after the write). */
static ctx_obj *ctx_made[2];

static void ctx_connect(rec_server *r, iocp_conn_id id) {
  ctx_obj *o = malloc(sizeof(*o));
  o->id = id;
  o->magic = 0x5eed;
  ctx_made[ts_counter_get(r->connects) & 1] = o;
  if (iocp_set_context(r->srv, id, o) != IOCP_OK) rec_violation(r);
}

static ctx_obj *ctx_of(rec_server *r, iocp_conn_id id) {
  void *p = (void *)1;
  if (iocp_get_context(r->srv, id, &p) != IOCP_OK) rec_violation(r);
  return p;
}

static void ctx_data(rec_server *r, iocp_conn_id id, const uint8_t *d, size_t n) {
  ctx_obj *o = ctx_of(r, id);
  (void)d;
  (void)n;
  if (o == NULL || o->id != id || o->magic != 0x5eed) rec_violation(r);
}

static void ctx_disconnect(rec_server *r, iocp_conn_id id, int reason) {
  ctx_obj *o = ctx_of(r, id); /* still there during the last callback */
  (void)reason;
  if (o == NULL || o->id != id || o->magic != 0x5eed) {
    rec_violation(r);
    return;
  }
  if (iocp_set_context(r->srv, id, NULL) != IOCP_ENOTFOUND) rec_violation(r); /* stale */
  /* Also for the calls that skip the table inside the connection's callbacks. */
  if (iocp_send(r->srv, id, "x", 1) != IOCP_ENOTFOUND) rec_violation(r);
  if (iocp_close(r->srv, id) != IOCP_ENOTFOUND) rec_violation(r);
  o->magic = 0;
  free(o);
}

static void test_context_round_trips_until_the_last_callback(void **state) {
  rec_hooks h = {0};
  rec_server *r;
  iocp_conn_id id;
  void *p = NULL;
  char buf[5];
  ts_sock a, b;
  (void)state;
  h.on_connect = ctx_connect;
  h.on_data = ctx_data;
  h.on_disconnect = ctx_disconnect;
  r = rec_start(REC_ECHO, NULL, &h);
  a = ts_connect(r->port);
  id = rec_wait_connect(r, 1);
  b = ts_connect(r->port);
  assert_true(rec_wait_connect(r, 2) != id);
  assert_int_equal(ts_send_all(a, "hello", 5), TS_OK);
  assert_int_equal(ts_recv_exact(a, buf, 5), TS_OK);
  /* From another thread: looked up by id. */
  assert_int_equal(iocp_get_context(r->srv, id, &p), IOCP_OK);
  assert_non_null(p);
  assert_ptr_equal(p, ctx_made[0]);
  ts_close(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  p = (void *)1;
  assert_int_equal(iocp_get_context(r->srv, id, &p), IOCP_ENOTFOUND);
  assert_null(p);
  ts_close(b);
  rec_stop(r); /* the second one's context is freed in its on_disconnect */
}

/* ---- Pause and resume -------------------------------------------------------------- */

static void pause_at_connect(rec_server *r, iocp_conn_id id) {
  if (iocp_pause_recv(r->srv, id) != IOCP_OK) rec_violation(r);
  if (iocp_pause_recv(r->srv, id) != IOCP_OK) rec_violation(r); /* twice: no-op */
}

/* Checks that bytes arrive in order: stream 5 from offset 0. */
static void check_stream(rec_server *r, iocp_conn_id id, const uint8_t *d, size_t n) {
  uint64_t off = (uint64_t)ts_counter_get(r->bytes_in); /* on_data is serialised */
  (void)id;
  if (ts_check(d, n, 5, off) != n) rec_violation(r);
}

static void test_paused_peer_bytes_stay_in_kernel_and_arrive_after_resume(void **state) {
  rec_hooks h = {0};
  rec_server *r;
  iocp_conn_id id;
  uint8_t *more = malloc(1u << 20);
  size_t held;
  ts_sock a;
  (void)state;
  h.on_connect = pause_at_connect;
  h.on_data = check_stream;
  r = rec_start(0, NULL, &h);
  a = ts_connect(r->port);
  id = rec_wait_connect(r, 1);
  /* Nothing is read: the peer fills the kernel's buffers and stalls. */
  held = ts_send_until_stalled(a, 5, 0, STALL_MS);
  assert_true(held > 0);
  assert_true(held < (64u << 20));
  assert_int_equal(ts_counter_get(r->bytes_in), 0);
  assert_int_equal(iocp_resume_recv(r->srv, id), IOCP_OK);
  assert_int_equal(iocp_resume_recv(r->srv, id), IOCP_OK); /* not paused: no-op */
  ts_fill(more, 1u << 20, 5, held);
  assert_int_equal(ts_send_all(a, more, 1u << 20), TS_OK);
  assert_int_equal(ts_counter_wait(r->bytes_in, (int64_t)held + (1 << 20), TS_TIMEOUT_MS), 0);
  ts_close(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  free(more);
  rec_stop(r);
}

/* Paused inside on_data: not one more byte arrives until the resume, which
 * comes from another thread. */
static void pause_in_data(rec_server *r, iocp_conn_id id, const uint8_t *d, size_t n) {
  check_stream(r, id, d, n);
  if (iocp_pause_recv(r->srv, id) != IOCP_OK) rec_violation(r);
}

static void test_pause_inside_on_data_is_exact(void **state) {
  rec_hooks h = {0};
  rec_server *r;
  iocp_conn_id id;
  uint8_t first[100];
  int64_t got;
  size_t held;
  ts_sock a;
  (void)state;
  h.on_data = pause_in_data;
  r = rec_start(0, NULL, &h);
  a = ts_connect(r->port);
  id = rec_wait_connect(r, 1);
  ts_fill(first, sizeof(first), 5, 0);
  assert_int_equal(ts_send_all(a, first, sizeof(first)), TS_OK);
  assert_int_equal(ts_counter_wait(r->bytes_in, 1, TS_TIMEOUT_MS), 0);
  got = ts_counter_get(r->bytes_in);
  held = ts_send_until_stalled(a, 5, (uint64_t)sizeof(first), STALL_MS);
  assert_true(held > 0);
  assert_int_equal(ts_counter_get(r->bytes_in), got);
  /* Each resume lets exactly one on_data through (the hook pauses again). */
  while (ts_counter_get(r->bytes_in) < (int64_t)(sizeof(first) + held)) {
    int64_t before = ts_counter_get(r->bytes_in);
    assert_int_equal(iocp_resume_recv(r->srv, id), IOCP_OK);
    assert_int_equal(ts_counter_wait(r->bytes_in, before + 1, TS_TIMEOUT_MS), 0);
  }
  assert_int_equal(ts_counter_get(r->bytes_in), (int64_t)(sizeof(first) + held));
  ts_close(a);
  assert_int_equal(iocp_resume_recv(r->srv, id), IOCP_OK);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  rec_stop(r);
}

/* ---- Drain --------------------------------------------------------------------------- */

#define DRAIN_TOTAL (8u << 20)
#define DRAIN_QUEUE (1u << 20)
#define DRAIN_MARK (256u << 10)
#define DRAIN_CHUNK (64u << 10)

typedef struct producer {
  uint64_t off; /* bytes queued so far; only touched in this connection's callbacks */
  ts_counter *stalls; /* times iocp_send said the queue was full */
  uint8_t buf[DRAIN_CHUNK];
} producer;

/* Sends until the queue is full; on_drain calls it again. */
static void produce(rec_server *r, iocp_conn_id id) {
  producer *p = r->user;
  while (p->off < DRAIN_TOTAL) {
    int rc;
    ts_fill(p->buf, DRAIN_CHUNK, 9, p->off);
    rc = iocp_send(r->srv, id, p->buf, DRAIN_CHUNK);
    if (rc == IOCP_EQUEUEFULL) {
      ts_counter_add(p->stalls, 1);
      return;
    }
    if (rc != IOCP_OK) {
      rec_violation(r);
      return;
    }
    p->off += DRAIN_CHUNK;
  }
  if (iocp_shutdown(r->srv, id) != IOCP_OK) rec_violation(r);
}

static void drain_resumes(rec_server *r, iocp_conn_id id, uint64_t queued) {
  uint64_t now = 0;
  if (queued > DRAIN_MARK) rec_violation(r); /* fired at the mark, not above */
  if (iocp_queued(r->srv, id, &now) != IOCP_OK || now > DRAIN_MARK) rec_violation(r);
  produce(r, id);
}

static void test_drain_fires_at_the_mark_and_drives_a_producer(void **state) {
  rec_hooks h = {0};
  iocp_config c;
  rec_server *r;
  producer *p = calloc(1, sizeof(*p));
  uint8_t *buf = malloc(DRAIN_TOTAL + 16);
  size_t got = 0;
  ts_sock a;
  (void)state;
  iocp_config_init(&c, sizeof(c));
  c.max_send_queue = DRAIN_QUEUE;
  c.drain_mark = DRAIN_MARK;
  h.on_connect = produce;
  h.on_drain = drain_resumes;
  r = rec_start(REC_DRAIN | REC_HANDLE_PEER_CLOSE, &c, &h);
  p->stalls = ts_counter_new();
  r->user = p;
  a = ts_connect_rcvbuf(r->port, 16384);
  /* Not reading until the producer has met a full queue (the kernel's buffers
   * fill first, then the library's): from there on only on_drain restarts it,
   * so all 8 MiB arriving means every stall was answered by a drain. */
  assert_int_equal(ts_counter_wait(p->stalls, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_recv_to_end(a, buf, DRAIN_TOTAL + 16, &got), TS_EOF);
  assert_int_equal(got, DRAIN_TOTAL);
  assert_int_equal(ts_check(buf, got, 9, 0), got);
  assert_true(ts_counter_get(r->drains) >= ts_counter_get(p->stalls));
  ts_close(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  free(buf);
  rec_stop(r);
  ts_counter_free(p->stalls);
  free(p);
}

/* A mark set per connection: 0 = empty. */
static void drain_to_empty(rec_server *r, iocp_conn_id id, uint64_t queued) {
  (void)id;
  if (queued != 0) rec_violation(r);
}

#define MARK_CHUNK (1u << 20)
#define MARK_CHUNKS 32

static void test_drain_mark_per_connection(void **state) {
  rec_hooks h = {0};
  iocp_config c;
  rec_server *r;
  uint8_t *big = calloc(1, MARK_CHUNK), *buf = malloc(MARK_CHUNK);
  uint64_t queued = 0;
  size_t sent = 0, got = 0;
  iocp_conn_id id;
  ts_sock a;
  (void)state;
  iocp_config_init(&c, sizeof(c));
  c.drain_mark = 1u << 20; /* the server's; this connection sets its own */
  h.on_drain = drain_to_empty;
  r = rec_start(REC_DRAIN, &c, &h);
  a = ts_connect_rcvbuf(r->port, 16384);
  id = rec_wait_connect(r, 1);
  assert_int_equal(iocp_set_drain_mark(r->srv, id, 0), IOCP_OK);
  /* Bytes the socket takes at once are never queued (the Linux engine
   * writes them inside iocp_send): send until some wait in the queue. */
  while (queued == 0 && sent < (size_t)MARK_CHUNK * MARK_CHUNKS) {
    assert_int_equal(iocp_send(r->srv, id, big, MARK_CHUNK), IOCP_OK);
    sent += MARK_CHUNK;
    assert_int_equal(iocp_queued(r->srv, id, &queued), IOCP_OK);
  }
  assert_true(queued > 0);
  for (got = 0; got < sent; got += MARK_CHUNK)
    assert_int_equal(ts_recv_exact(a, buf, MARK_CHUNK), TS_OK);
  assert_int_equal(ts_counter_wait(r->drains, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(ts_counter_wait(r->bytes_sent, (int64_t)sent, TS_TIMEOUT_MS), 0);
  ts_close(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  /* A drain each time the queue fell to the mark, and it rose above it
   * only in an iocp_send (which may have happened more than once: the
   * socket can take the queued rest between two sends of the loop). */
  assert_true(ts_counter_get(r->drains) >= 1);
  assert_true(ts_counter_get(r->drains) <= (int64_t)(sent / MARK_CHUNK));
  free(big);
  free(buf);
  rec_stop(r);
}

/* ---- Bad input ------------------------------------------------------------------------ */

static void controls_on_closed(rec_server *r, iocp_conn_id id, const uint8_t *d, size_t n) {
  void *p = NULL;
  (void)d;
  (void)n;
  if (iocp_close(r->srv, id) != IOCP_OK) rec_violation(r);
  /* Closing, not yet ended: the controls say so, the context still works. */
  if (iocp_pause_recv(r->srv, id) != IOCP_ECLOSED) rec_violation(r);
  if (iocp_resume_recv(r->srv, id) != IOCP_ECLOSED) rec_violation(r);
  if (iocp_set_drain_mark(r->srv, id, 0) != IOCP_ECLOSED) rec_violation(r);
  if (iocp_set_idle_timeout(r->srv, id, 1000) != IOCP_ECLOSED) rec_violation(r);
  if (iocp_set_context(r->srv, id, r) != IOCP_OK) rec_violation(r);
  if (iocp_get_context(r->srv, id, &p) != IOCP_OK || p != r) rec_violation(r);
}

static void test_controls_bad_input(void **state) {
  rec_hooks h = {0};
  rec_server *r;
  iocp_conn_id id;
  void *p = (void *)1;
  ts_sock a;
  (void)state;
  h.on_data = controls_on_closed;
  r = rec_start(0, NULL, &h);
  /* NULL server, NULL out-pointer. */
  assert_int_equal(iocp_set_context(NULL, 1, NULL), IOCP_EINVAL);
  assert_int_equal(iocp_get_context(NULL, 1, &p), IOCP_EINVAL);
  assert_null(p);
  assert_int_equal(iocp_get_context(r->srv, 1, NULL), IOCP_EINVAL);
  assert_int_equal(iocp_pause_recv(NULL, 1), IOCP_EINVAL);
  assert_int_equal(iocp_resume_recv(NULL, 1), IOCP_EINVAL);
  assert_int_equal(iocp_set_drain_mark(NULL, 1, 0), IOCP_EINVAL);
  assert_int_equal(iocp_set_idle_timeout(NULL, 1, 0), IOCP_EINVAL);
  assert_int_equal(iocp_refused_count(NULL), 0);
  assert_int_equal(iocp_stop_graceful(NULL, 0), IOCP_EINVAL);
  /* Unknown ids (0 is never one). */
  assert_int_equal(iocp_set_context(r->srv, 0, NULL), IOCP_ENOTFOUND);
  assert_int_equal(iocp_get_context(r->srv, 0, &p), IOCP_ENOTFOUND);
  assert_int_equal(iocp_pause_recv(r->srv, 12345678), IOCP_ENOTFOUND);
  assert_int_equal(iocp_resume_recv(r->srv, 12345678), IOCP_ENOTFOUND);
  assert_int_equal(iocp_set_drain_mark(r->srv, 12345678, 0), IOCP_ENOTFOUND);
  assert_int_equal(iocp_set_idle_timeout(r->srv, 12345678, 0), IOCP_ENOTFOUND);
  /* Out of range, checked before the id. */
  assert_int_equal(iocp_set_idle_timeout(r->srv, 12345678, IOCP_MAX_TIMEOUT_MS + 1u), IOCP_EINVAL);
  assert_int_equal(iocp_set_idle_timeout(r->srv, 12345678, UINT32_MAX), IOCP_EINVAL);
  assert_int_equal(iocp_stop_graceful(r->srv, UINT32_MAX), IOCP_EINVAL);

  a = ts_connect(r->port);
  id = rec_wait_connect(r, 1);
  /* A drain mark the queue can never exceed. */
  assert_int_equal(iocp_set_drain_mark(r->srv, id, 8u << 20), IOCP_EINVAL);
  assert_int_equal(iocp_set_drain_mark(r->srv, id, UINT64_MAX), IOCP_EINVAL);
  assert_int_equal(iocp_set_drain_mark(r->srv, id, (8u << 20) - 1), IOCP_OK);
  /* The id closes inside on_data (see controls_on_closed), then is stale. */
  assert_int_equal(ts_send_all(a, "x", 1), TS_OK);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  assert_int_equal(iocp_set_context(r->srv, id, NULL), IOCP_ENOTFOUND);
  assert_int_equal(iocp_pause_recv(r->srv, id), IOCP_ENOTFOUND);
  assert_int_equal(iocp_resume_recv(r->srv, id), IOCP_ENOTFOUND);
  assert_int_equal(iocp_set_drain_mark(r->srv, id, 0), IOCP_ENOTFOUND);
  assert_int_equal(iocp_set_idle_timeout(r->srv, id, 10), IOCP_ENOTFOUND);
  ts_close(a);
  rec_stop(r);
}

/* Config values out of range are refused by iocp_create. */
static void test_config_out_of_range(void **state) {
  iocp_callbacks cb;
  iocp_config c;
  iocp_server *s = (iocp_server *)&cb;
  (void)state;
  memset(&cb, 0, sizeof(cb));
  cb.size = sizeof(cb);
  iocp_config_init(&c, sizeof(c));
  c.idle_timeout_ms = IOCP_MAX_TIMEOUT_MS + 1u;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EINVAL);
  assert_null(s);
  iocp_config_init(&c, sizeof(c));
  c.max_connections = UINT32_MAX;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EINVAL);
  iocp_config_init(&c, sizeof(c));
  c.keepalive = 2;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EINVAL);
  iocp_config_init(&c, sizeof(c));
  c.keepalive = 1;
  c.keepalive_idle_ms = IOCP_MAX_KEEPALIVE_MS + 1u;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EINVAL);
  iocp_config_init(&c, sizeof(c));
  c.keepalive = 1;
  c.keepalive_interval_ms = UINT32_MAX;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EINVAL);
  iocp_config_init(&c, sizeof(c));
  c.drain_mark = c.max_send_queue;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EINVAL);
  /* The defaults: everything new is off. */
  iocp_config_init(&c, sizeof(c));
  assert_int_equal(c.idle_timeout_ms, 0);
  assert_int_equal(c.max_connections, 0);
  assert_int_equal(c.keepalive, 0);
  assert_int_equal(c.drain_mark, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_context_round_trips_until_the_last_callback),
      cmocka_unit_test(test_paused_peer_bytes_stay_in_kernel_and_arrive_after_resume),
      cmocka_unit_test(test_pause_inside_on_data_is_exact),
      cmocka_unit_test(test_drain_fires_at_the_mark_and_drives_a_producer),
      cmocka_unit_test(test_drain_mark_per_connection),
      cmocka_unit_test(test_controls_bad_input),
      cmocka_unit_test(test_config_out_of_range),
  };
  ts_net_init();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
