/* Unit tests of the platform-free core pieces that need no socket: the send
 * queue (dll/core/sendq.c), the id -> connection table
 * (dll/core/conn_table.c) and the receive buffer pool (dll/core/worker.c), linked against the static build so that the
 * allocator can be made to fail (dll/core/hooks.h). */
#include "tsupport.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- A failing allocator ------------------------------------------------------ */

static int fail_allocations; /* these tests are single-threaded */
static void *maybe_malloc(size_t n) { return fail_allocations ? NULL : malloc(n); }
static void *maybe_calloc(size_t n, size_t s) { return fail_allocations ? NULL : calloc(n, s); }

/* Buffer allocations of the pool's size, counted (the pool tests). */
static size_t counted_size;
static int counted_mallocs, counted_frees;
static void *counting_malloc(size_t n) {
  void *p = fail_allocations ? NULL : malloc(n + 16);
  if (p == NULL) return NULL;
  *(size_t *)p = n;
  if (n == counted_size) counted_mallocs++;
  return (char *)p + 16;
}
static void counting_free(void *p) {
  if (p == NULL) return;
  if (*(size_t *)((char *)p - 16) == counted_size) counted_frees++;
  free((char *)p - 16);
}
static void *counting_calloc(size_t n, size_t s) {
  void *p = counting_malloc(n * s);
  if (p != NULL) memset(p, 0, n * s);
  return p;
}

static int use_failing_allocator(void **state) {
  (void)state;
  fail_allocations = 0;
  iocp__hooks.malloc = maybe_malloc;
  iocp__hooks.calloc = maybe_calloc;
  return 0;
}

static int restore_hooks(void **state) {
  (void)state;
  iocp__hooks_reset();
  return 0;
}

/* ---- Send queue ---------------------------------------------------------------- */

/* The bytes gather() offers, concatenated (at most `cap`). */
static size_t gathered(const iocp__sendq *q, uint8_t *out, size_t cap, int *n_iov) {
  iocp__iov iov[IOCP__MAX_IOV];
  size_t total = 0;
  int i, n = iocp__sendq_gather(q, iov, IOCP__MAX_IOV);
  for (i = 0; i < n; i++) {
    assert_true(iov[i].len > 0);
    assert_true(total + iov[i].len <= cap);
    memcpy(out + total, iov[i].base, iov[i].len);
    total += iov[i].len;
  }
  if (n_iov != NULL) *n_iov = n;
  return total;
}

static void test_sendq_small_sends_share_a_chunk_in_order(void **state) {
  iocp__sendq q = {0};
  uint8_t out[64];
  int n;
  (void)state;
  assert_int_equal(iocp__sendq_push(&q, "abc", 3), IOCP_OK);
  assert_int_equal(iocp__sendq_push(&q, "", 0), IOCP_OK);
  assert_int_equal(iocp__sendq_push(&q, "defg", 4), IOCP_OK);
  assert_int_equal(q.queued, 7);
  assert_int_equal(gathered(&q, out, sizeof(out), &n), 7);
  assert_int_equal(n, 1);
  assert_memory_equal(out, "abcdefg", 7);
  iocp__sendq_clear(&q);
  assert_null(q.head);
  assert_int_equal(q.queued, 0);
}

static void test_sendq_partial_sends_consume_exactly_what_went_out(void **state) {
  iocp__sendq q = {0};
  static uint8_t big[10000], out[20000];
  size_t i;
  int n;
  (void)state;
  for (i = 0; i < sizeof(big); i++) big[i] = (uint8_t)(i * 7);
  assert_int_equal(iocp__sendq_push(&q, "hello", 5), IOCP_OK);
  assert_int_equal(iocp__sendq_push(&q, big, sizeof(big)), IOCP_OK); /* its own chunk */
  assert_int_equal(gathered(&q, out, sizeof(out), &n), 5 + sizeof(big));
  assert_int_equal(n, 2);

  iocp__sendq_consume(&q, 3); /* a short send: "he" went, then "l" */
  assert_int_equal(q.queued, 2 + sizeof(big));
  assert_int_equal(gathered(&q, out, sizeof(out), NULL), 2 + sizeof(big));
  assert_memory_equal(out, "lo", 2);
  assert_memory_equal(out + 2, big, sizeof(big));

  iocp__sendq_consume(&q, 2 + 100); /* across the chunk boundary */
  assert_int_equal(q.queued, sizeof(big) - 100);
  assert_int_equal(gathered(&q, out, sizeof(out), &n), sizeof(big) - 100);
  assert_int_equal(n, 1);
  assert_memory_equal(out, big + 100, sizeof(big) - 100);

  iocp__sendq_consume(&q, sizeof(big) - 100);
  assert_int_equal(q.queued, 0);
  assert_int_equal(iocp__sendq_gather(&q, (iocp__iov[1]){{0}}, 1), 0);
  iocp__sendq_clear(&q);
}

static void test_sendq_gather_stops_at_max_and_keeps_order(void **state) {
  iocp__sendq q = {0};
  static uint8_t block[5000];
  iocp__iov iov[3];
  int i;
  (void)state;
  for (i = 0; i < 5; i++) {
    memset(block, 'a' + i, sizeof(block));
    assert_int_equal(iocp__sendq_push(&q, block, sizeof(block)), IOCP_OK);
  }
  assert_int_equal(iocp__sendq_gather(&q, iov, 3), 3);
  for (i = 0; i < 3; i++) {
    assert_int_equal(iov[i].len, sizeof(block));
    assert_int_equal(((const uint8_t *)iov[i].base)[0], 'a' + i);
  }
  iocp__sendq_clear(&q);
}

/* A queue whose bytes are all sent holds no chunk (an idle connection that
 * once spoke costs nothing for its queue), and the next send still works. */
static void test_sendq_frees_its_emptied_chunk(void **state) {
  iocp__sendq q = {0};
  uint8_t out[16];
  (void)state;
  assert_int_equal(iocp__sendq_push(&q, "one", 3), IOCP_OK);
  assert_non_null(q.head);
  iocp__sendq_consume(&q, 3);
  assert_null(q.head);
  assert_null(q.tail);
  assert_int_equal(q.queued, 0);
  assert_int_equal(iocp__sendq_push(&q, "two", 3), IOCP_OK);
  assert_int_equal(gathered(&q, out, sizeof(out), NULL), 3);
  assert_memory_equal(out, "two", 3);
  iocp__sendq_consume(&q, 2); /* a short send keeps the rest */
  assert_int_equal(gathered(&q, out, sizeof(out), NULL), 1);
  assert_memory_equal(out, "o", 1);
  iocp__sendq_consume(&q, 1);
  assert_null(q.head);
  iocp__sendq_clear(&q);
}

static void test_sendq_out_of_memory_queues_nothing(void **state) {
  iocp__sendq q = {0};
  static uint8_t big[8192];
  uint8_t out[16];
  (void)state;
  assert_int_equal(iocp__sendq_push(&q, "keep", 4), IOCP_OK);
  fail_allocations = 1;
  assert_int_equal(iocp__sendq_push(&q, big, sizeof(big)), IOCP_ENOMEM);
  assert_int_equal(iocp__sendq_push(&q, "fits", 4), IOCP_OK); /* room in the tail */
  fail_allocations = 0;
  assert_int_equal(q.queued, 8);
  assert_int_equal(gathered(&q, out, sizeof(out), NULL), 8);
  assert_memory_equal(out, "keepfits", 8);
  iocp__sendq_clear(&q);
}

/* Many pushes and short sends of assorted sizes: what goes out is exactly
 * the pushed stream, in order, with `queued` right at every step. */
static void test_sendq_stream_is_byte_exact(void **state) {
  iocp__sendq q = {0};
  static uint8_t in[1 << 20], out[1 << 20];
  size_t pushed = 0, sent = 0;
  uint32_t rng = 12345;
  (void)state;
  for (size_t i = 0; i < sizeof(in); i++) in[i] = (uint8_t)(i ^ (i >> 8));
  while (sent < sizeof(in)) {
    rng = rng * 1103515245u + 12345u;
    if (pushed < sizeof(in) && (rng >> 16) % 3 != 0) {
      size_t len = (rng >> 8) % 9000;
      if (len > sizeof(in) - pushed) len = sizeof(in) - pushed;
      assert_int_equal(iocp__sendq_push(&q, in + pushed, len), IOCP_OK);
      pushed += len;
    } else {
      iocp__iov iov[IOCP__MAX_IOV];
      size_t avail = 0, take;
      int n = iocp__sendq_gather(&q, iov, IOCP__MAX_IOV);
      for (int i = 0; i < n; i++) {
        memcpy(out + sent + avail, iov[i].base, iov[i].len);
        avail += iov[i].len;
      }
      take = avail == 0 ? 0 : 1 + (rng >> 4) % avail; /* the system took some */
      iocp__sendq_consume(&q, take);
      sent += take;
    }
    assert_int_equal(q.queued, pushed - sent);
  }
  assert_memory_equal(out, in, sizeof(in));
  iocp__sendq_clear(&q);
}

/* ---- Connection table ----------------------------------------------------------- */

#define CONNS 5000

static void test_table_finds_every_id_and_only_those(void **state) {
  iocp__table t;
  iocp__conn *c = calloc(CONNS, sizeof(*c));
  size_t i;
  (void)state;
  assert_non_null(c);
  assert_int_equal(iocp__table_init(&t, 64), IOCP_OK);
  for (i = 0; i < CONNS; i++) {
    /* Ids of one shard and spread ones alike: the table grows on the way. */
    c[i].id = i % 2 ? (i + 1) * IOCP__TABLE_SHARDS : i + 1;
    assert_int_equal(iocp__table_insert(&t, &c[i], 0), IOCP_OK);
  }
  assert_int_equal(iocp__table_count(&t), CONNS);
  for (i = 0; i < CONNS; i++) assert_ptr_equal(iocp__table_get(&t, c[i].id), &c[i]);
  assert_null(iocp__table_get(&t, 0));
  assert_null(iocp__table_get(&t, UINT64_MAX));
  assert_null(iocp__table_get(&t, (CONNS + 2) * IOCP__TABLE_SHARDS));

  for (i = 0; i < CONNS; i += 3) assert_ptr_equal(iocp__table_remove(&t, c[i].id), &c[i]);
  assert_null(iocp__table_remove(&t, c[0].id)); /* gone already */
  for (i = 0; i < CONNS; i++) {
    if (i % 3 == 0)
      assert_null(iocp__table_get(&t, c[i].id));
    else
      assert_ptr_equal(iocp__table_get(&t, c[i].id), &c[i]);
  }
  assert_int_equal(iocp__table_count(&t), CONNS - (CONNS + 2) / 3);
  iocp__table_free(&t);
  free(c);
}

static void count_visit(iocp__conn *c, void *arg) {
  (void)c;
  (*(int *)arg)++;
}

static void test_table_close_visits_each_and_refuses_more(void **state) {
  iocp__table t;
  static iocp__conn c[40], late;
  int visited = 0, i;
  (void)state;
  assert_int_equal(iocp__table_init(&t, 64), IOCP_OK);
  for (i = 0; i < 40; i++) {
    c[i].id = (iocp_conn_id)i + 1;
    assert_int_equal(iocp__table_insert(&t, &c[i], 0), IOCP_OK);
  }
  iocp__table_close(&t, count_visit, &visited);
  assert_int_equal(visited, 40);
  late.id = 1000;
  assert_int_equal(iocp__table_insert(&t, &late, 0), IOCP_ECLOSED);
  assert_null(iocp__table_get(&t, 1000));
  assert_ptr_equal(iocp__table_get(&t, 7), &c[6]); /* still found until removed */
  iocp__table_free(&t);
}

static void test_table_out_of_memory(void **state) {
  iocp__table t;
  static iocp__conn c[200];
  int i;
  (void)state;
  fail_allocations = 1;
  assert_int_equal(iocp__table_init(&t, 64), IOCP_ENOMEM);
  fail_allocations = 0;
  assert_int_equal(iocp__table_init(&t, 64), IOCP_OK);
  c[0].id = 1;
  fail_allocations = 1;
  assert_int_equal(iocp__table_insert(&t, &c[0], 0), IOCP_ENOMEM); /* no buckets at all */
  assert_null(iocp__table_get(&t, 1));
  fail_allocations = 0;
  assert_int_equal(iocp__table_insert(&t, &c[0], 0), IOCP_OK);
  /* Growth fails from here on: chains get longer, nothing is lost. */
  fail_allocations = 1;
  for (i = 1; i < 200; i++) {
    c[i].id = (iocp_conn_id)i * IOCP__TABLE_SHARDS + 1; /* the same shard as id 1 */
    assert_int_equal(iocp__table_insert(&t, &c[i], 0), IOCP_OK);
  }
  fail_allocations = 0;
  for (i = 0; i < 200; i++) assert_ptr_equal(iocp__table_get(&t, c[i].id), &c[i]);
  assert_int_equal(iocp__table_count(&t), 200);
  iocp__table_free(&t);
}


/* ---- Receive buffer pool --------------------------------------------------------- */

#define POOL_BUF 4096 /* an odd size for this test, so only buffers are counted */

static int use_counting_allocator(void **state) {
  (void)state;
  fail_allocations = 0;
  counted_size = POOL_BUF + IOCP__TLS_RECV_SLACK(POOL_BUF); /* a pool buffer's allocation */
  counted_mallocs = counted_frees = 0;
  iocp__hooks.malloc = counting_malloc;
  iocp__hooks.calloc = counting_calloc;
  iocp__hooks.free = counting_free;
  return 0;
}

/* A server shell with just what the pool uses; this thread is no worker, as
 * the thread draining a queue-mode server is not. */
static iocp_server *pool_server(uint32_t workers) {
  iocp_server *s = calloc(1, sizeof(*s));
  assert_non_null(s);
  s->cfg.recv_buffer_size = POOL_BUF;
  assert_int_equal(iocp__workers_init(&s->workers, workers, 64), IOCP_OK);
  return s;
}

static void pool_server_free(iocp_server *s) {
  iocp__workers_free(&s->workers);
  free(s);
}

/* Queue mode's pattern: buffers taken one by one, given back a batch at a
 * time from a thread that is no worker. Once the pool has seen the load, a
 * batch's buffers serve the next batch: no allocation (and no fault-in)
 * per event, as there is none in callback mode. */
static void test_pool_keeps_a_batch_swing(void **state) {
  enum { BATCH = 100, ROUNDS = 50 };
  iocp_server *s = pool_server(2);
  uint8_t *b[BATCH];
  int r, i, warm = 0;
  (void)state;
  for (r = 0; r < ROUNDS; r++) {
    for (i = 0; i < BATCH; i++) assert_non_null(b[i] = iocp__buf_get(s));
    for (i = 0; i < BATCH; i++) iocp__buf_put(s, b[i]);
    if (r == 0) warm = counted_mallocs;
  }
  assert_int_equal(warm, BATCH);
  assert_int_equal(counted_mallocs, BATCH); /* nothing more after the first round */
  assert_int_equal(counted_frees, 0);
  pool_server_free(s);
  assert_int_equal(counted_frees, counted_mallocs); /* all given back at the end */
}

/* Out of memory while the pool grows: the buffer goes back to the
 * allocator, nothing is lost and the pool still works. */
static void test_pool_growth_out_of_memory(void **state) {
  iocp_server *s = pool_server(1);
  uint8_t *b[20];
  int i;
  (void)state;
  for (i = 0; i < 20; i++) assert_non_null(b[i] = iocp__buf_get(s));
  fail_allocations = 1;
  for (i = 0; i < 20; i++) iocp__buf_put(s, b[i]);
  assert_true(s->workers.pool_n <= s->workers.pool_cap);
  assert_int_equal(counted_frees, 20 - (int)s->workers.pool_n);
  fail_allocations = 0;
  for (i = 0; i < 20; i++) assert_non_null(b[i] = iocp__buf_get(s));
  for (i = 0; i < 20; i++) iocp__buf_put(s, b[i]);
  pool_server_free(s);
  assert_int_equal(counted_frees, counted_mallocs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sendq_small_sends_share_a_chunk_in_order),
      cmocka_unit_test(test_sendq_partial_sends_consume_exactly_what_went_out),
      cmocka_unit_test(test_sendq_gather_stops_at_max_and_keeps_order),
      cmocka_unit_test(test_sendq_frees_its_emptied_chunk),
      cmocka_unit_test(test_sendq_stream_is_byte_exact),
      cmocka_unit_test_setup_teardown(test_sendq_out_of_memory_queues_nothing,
                                      use_failing_allocator, restore_hooks),
      cmocka_unit_test(test_table_finds_every_id_and_only_those),
      cmocka_unit_test(test_table_close_visits_each_and_refuses_more),
      cmocka_unit_test_setup_teardown(test_table_out_of_memory, use_failing_allocator, restore_hooks),
      cmocka_unit_test_setup_teardown(test_pool_keeps_a_batch_swing, use_counting_allocator,
                                      restore_hooks),
      cmocka_unit_test_setup_teardown(test_pool_growth_out_of_memory, use_counting_allocator,
                                      restore_hooks),
  };
  return cmocka_run_group_tests_name("units", tests, NULL, NULL);
}
