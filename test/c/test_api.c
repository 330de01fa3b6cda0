/* The C ABI's promises that need no traffic, or little: versions, error
 * texts, config handling, bad arguments, unknown and stale ids, busy ports. */
#include "tsupport.h"

#include <string.h>

static void test_version(void **state) {
  (void)state;
  assert_int_equal(iocp_version(), IOCP_VERSION_NUMBER);
  assert_true(IOCP_VERSION_COMPATIBLE(iocp_version()));
  assert_false(IOCP_VERSION_COMPATIBLE(iocp_version() + 0x010000u)); /* next major */
  assert_string_equal(iocp_version_string(), "1.2.0");
}

static void test_strerror_covers_every_code(void **state) {
  static const int codes[] = {
#define CODE_(name, code, text) IOCP_##name,
      IOCP_ERRNO_MAP(CODE_)
#undef CODE_
  };
  size_t i, j;
  (void)state;
  assert_string_equal(iocp_strerror(IOCP_OK), "success");
  assert_string_equal(iocp_err_name(IOCP_ENOTFOUND), "IOCP_ENOTFOUND");
  for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    assert_true(codes[i] < 0);
    assert_string_not_equal(iocp_strerror(codes[i]), "unknown error");
    assert_string_not_equal(iocp_err_name(codes[i]), "IOCP_UNKNOWN");
    for (j = 0; j < i; j++) assert_int_not_equal(codes[i], codes[j]);
  }
  assert_string_equal(iocp_strerror(-999), "unknown error");
  assert_string_equal(iocp_strerror(1), "unknown error");
  assert_string_equal(iocp_err_name(-999), "IOCP_UNKNOWN");
}

static void test_config_init(void **state) {
  iocp_config c;
  uint8_t bigger[sizeof(iocp_config) + 32];
  (void)state;
  assert_int_equal(iocp_config_init(NULL, sizeof(c)), IOCP_EINVAL);
  assert_int_equal(iocp_config_init(&c, 8), IOCP_EVERSION);
  memset(&c, 0xAB, sizeof(c));
  assert_int_equal(iocp_config_init(&c, sizeof(c)), IOCP_OK);
  assert_int_equal(c.size, sizeof(c));
  assert_int_equal(c.port, 0);
  assert_string_equal(c.bind_address, "127.0.0.1");
  assert_int_equal(c.threads, 0);
  assert_true(c.accepts_posted > 0);
  assert_true(c.recv_buffer_size >= 4096);
  assert_true(c.max_send_queue >= 1u << 20);
  assert_int_equal(c.delivery, IOCP_DELIVERY_CALLBACKS);
  assert_int_equal(c.queue_events, 0);
  /* The batched API's event: the same 40 bytes on every platform. */
  assert_int_equal(sizeof(iocp_event), 40);
  assert_int_equal(offsetof(iocp_event, value), 4);
  assert_int_equal(offsetof(iocp_event, id), 8);
  assert_int_equal(offsetof(iocp_event, data), 16);
  assert_int_equal(offsetof(iocp_event, len), 24);
  assert_int_equal(offsetof(iocp_event, context), 32);
  /* A newer caller's larger struct: what the library does not know is zeroed. */
  memset(bigger, 0xAB, sizeof(bigger));
  assert_int_equal(iocp_config_init((iocp_config *)bigger, sizeof(bigger)), IOCP_OK);
  assert_int_equal(bigger[sizeof(bigger) - 1], 0);
}

static iocp_callbacks no_callbacks(void) {
  iocp_callbacks cb;
  memset(&cb, 0, sizeof(cb));
  cb.size = sizeof(cb);
  return cb;
}

/* A caller built against the first release's header (1.0.0: iocp_config
 * ends with nodelay and reserved2_) still works: fields appended later get
 * their defaults. A shorter struct was never released: IOCP_EVERSION. */
static void test_config_of_an_older_caller(void **state) {
  iocp_callbacks cb = no_callbacks();
  iocp_config c;
  iocp_server *s = NULL;
  const uint32_t size_1_0 = (uint32_t)(offsetof(iocp_config, reserved2_) + sizeof(uint32_t));
  const uint32_t unreleased = (uint32_t)(offsetof(iocp_config, max_send_queue) + sizeof(uint64_t));
  (void)state;
  assert_int_equal(iocp_config_init(&c, size_1_0), IOCP_OK);
  assert_int_equal(c.size, size_1_0);
  assert_int_equal(c.nodelay, 1);
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_OK);
  assert_non_null(s);
  assert_int_equal(iocp_destroy(s), IOCP_OK);

  assert_int_equal(iocp_config_init(&c, unreleased), IOCP_EVERSION);
  iocp_config_init(&c, sizeof(c));
  c.size = unreleased;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EVERSION);
  assert_null(s);
}

static void test_create_rejects_bad_arguments(void **state) {
  iocp_callbacks cb = no_callbacks();
  iocp_config c;
  iocp_server *s = (iocp_server *)&c; /* must be reset to NULL on failure */
  (void)state;
  iocp_config_init(&c, sizeof(c));

  assert_int_equal(iocp_create(&c, &cb, NULL, NULL), IOCP_EINVAL);
  assert_int_equal(iocp_create(&c, NULL, NULL, &s), IOCP_EINVAL);
  assert_null(s);

  c.bind_address = "not-an-address";
  s = (iocp_server *)&c;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EINVAL);
  assert_null(s);
  iocp_config_init(&c, sizeof(c));

  c.size = 4;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EVERSION);
  iocp_config_init(&c, sizeof(c));
  cb.size = 4;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EVERSION);
  cb = no_callbacks();

  c.recv_buffer_size = 0;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EINVAL);
  iocp_config_init(&c, sizeof(c));
  c.accepts_posted = 0;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EINVAL);
  iocp_config_init(&c, sizeof(c));
  c.max_send_queue = 0;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EINVAL);
  assert_null(s);

  /* An address that is not on this machine. */
  iocp_config_init(&c, sizeof(c));
  c.bind_address = "192.0.2.1";
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EADDRNOTAVAIL);
  assert_null(s);
}

/* The limits the header writes beside each field: just past each edge is
 * IOCP_EINVAL; the cheap edges themselves are accepted. */
static void test_config_limits_are_the_documented_ones(void **state) {
  static const struct { uint32_t threads, accepts, rbuf; int rc; } cases[] = {
      {1025, 16, 16384, IOCP_EINVAL},
      {1, 4097, 16384, IOCP_EINVAL},
      {1, 16, 63, IOCP_EINVAL},
      {1, 16, (64u << 20) + 1, IOCP_EINVAL},
      {1, 1, 64, IOCP_OK},
      {1, 1, 64u << 20, IOCP_OK},
  };
  iocp_callbacks cb = no_callbacks();
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    iocp_server *s = NULL;
    iocp_config c;
    iocp_config_init(&c, sizeof(c));
    c.threads = cases[i].threads;
    c.accepts_posted = cases[i].accepts;
    c.recv_buffer_size = cases[i].rbuf;
    assert_int_equal(iocp_create(&c, &cb, NULL, &s), cases[i].rc);
    assert_int_equal(iocp_destroy(s), IOCP_OK);
  }
}

static void test_null_config_means_defaults(void **state) {
  iocp_callbacks cb = no_callbacks();
  iocp_server *s = NULL;
  (void)state;
  assert_int_equal(iocp_create(NULL, &cb, NULL, &s), IOCP_OK);
  assert_non_null(s);
  assert_true(iocp_port(s) != 0);
  assert_int_equal(iocp_connection_count(s), 0);
  assert_int_equal(iocp_destroy(s), IOCP_OK);
}

static void test_null_handles_and_unknown_ids(void **state) {
  rec_server *r = rec_start(REC_ECHO, NULL, NULL);
  uint64_t q = 0;
  (void)state;
  assert_int_equal(iocp_send(NULL, 1, "x", 1), IOCP_EINVAL);
  assert_int_equal(iocp_send(r->srv, 1, NULL, 1), IOCP_EINVAL);
  assert_int_equal(iocp_shutdown(NULL, 1), IOCP_EINVAL);
  assert_int_equal(iocp_close(NULL, 1), IOCP_EINVAL);
  assert_int_equal(iocp_queued(NULL, 1, &q), IOCP_EINVAL);
  assert_int_equal(iocp_queued(r->srv, 1, NULL), IOCP_EINVAL);
  assert_int_equal(iocp_port(NULL), 0);
  assert_int_equal(iocp_connection_count(NULL), 0);
  assert_int_equal(iocp_destroy(NULL), IOCP_OK);

  assert_int_equal(iocp_send(r->srv, 0, "x", 1), IOCP_ENOTFOUND);
  assert_int_equal(iocp_send(r->srv, UINT64_MAX, "x", 1), IOCP_ENOTFOUND);
  assert_int_equal(iocp_shutdown(r->srv, 12345678), IOCP_ENOTFOUND);
  assert_int_equal(iocp_close(r->srv, 12345678), IOCP_ENOTFOUND);
  assert_int_equal(iocp_queued(r->srv, 12345678, &q), IOCP_ENOTFOUND);
  rec_stop(r);
}

static void test_stale_id_never_reaches_a_newer_client(void **state) {
  rec_server *r = rec_start(REC_ECHO, NULL, NULL);
  ts_sock a, b;
  iocp_conn_id first, second;
  char buf[8];
  size_t got = 0;
  (void)state;

  a = ts_connect(r->port);
  first = rec_wait_connect(r, 1);
  assert_true(first != 0);
  ts_close(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);

  b = ts_connect(r->port);
  second = rec_wait_connect(r, 2);
  assert_true(second != 0 && second != first);
  /* The old id fails clearly and the new client receives nothing from it. */
  assert_int_equal(iocp_send(r->srv, first, "stale", 5), IOCP_ENOTFOUND);
  assert_int_equal(iocp_shutdown(r->srv, first), IOCP_ENOTFOUND);
  assert_int_equal(iocp_close(r->srv, first), IOCP_ENOTFOUND);
  assert_int_equal(iocp_send(r->srv, second, "fresh", 5), IOCP_OK);
  assert_int_equal(ts_recv_exact(b, buf, 5), TS_OK);
  assert_memory_equal(buf, "fresh", 5);
  assert_int_equal(iocp_shutdown(r->srv, second), IOCP_OK);
  assert_int_equal(ts_recv_to_end(b, (uint8_t *)buf, sizeof(buf), &got), TS_EOF);
  assert_int_equal(got, 0);
  ts_close(b);
  rec_stop(r);
}

static void test_port_in_use(void **state) {
  uint16_t port;
  ts_sock busy = ts_listen_any(&port);
  iocp_callbacks cb = no_callbacks();
  iocp_config c;
  iocp_server *s = (iocp_server *)&c;
  rec_server *r;
  (void)state;

  iocp_config_init(&c, sizeof(c));
  c.port = port;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EADDRINUSE);
  assert_null(s);
  ts_close(busy);

  /* Two servers of ours: the second one fails, the first keeps serving. */
  r = rec_start(REC_ECHO, NULL, NULL);
  c.port = r->port;
  s = (iocp_server *)&c;
  assert_int_equal(iocp_create(&c, &cb, NULL, &s), IOCP_EADDRINUSE);
  assert_null(s);
  ts_echo_check(r->port, "ping", TS_TIMEOUT_MS);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  rec_stop(r);
}

static void test_ipv6_loopback(void **state) {
  iocp_config c;
  rec_server *r;
  ts_sock a;
  char buf[5];
  (void)state;
  iocp_config_init(&c, sizeof(c));
  c.bind_address = "::1";
  r = rec_start(REC_ECHO, &c, NULL);
  a = ts_connect_to("::1", r->port);
  assert_true(a != TS_BAD_SOCK);
  assert_true(rec_wait_connect(r, 1) != 0);
  assert_string_equal(r->last_addr, "::1");
  assert_int_equal(r->last_peer_port, ts_local_port(a));
  assert_int_equal(ts_send_all(a, "hello", 5), TS_OK);
  assert_int_equal(ts_recv_exact(a, buf, 5), TS_OK);
  assert_memory_equal(buf, "hello", 5);
  ts_close(a);
  assert_int_equal(ts_counter_wait(r->disconnects, 1, TS_TIMEOUT_MS), 0);
  rec_stop(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version),
      cmocka_unit_test(test_strerror_covers_every_code),
      cmocka_unit_test(test_config_init),
      cmocka_unit_test(test_config_of_an_older_caller),
      cmocka_unit_test(test_create_rejects_bad_arguments),
      cmocka_unit_test(test_config_limits_are_the_documented_ones),
      cmocka_unit_test(test_null_config_means_defaults),
      cmocka_unit_test(test_null_handles_and_unknown_ids),
      cmocka_unit_test(test_stale_id_never_reaches_a_newer_client),
      cmocka_unit_test(test_port_in_use),
      cmocka_unit_test(test_ipv6_loopback),
  };
  ts_net_init();
  return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}
