/* Per-worker data, the worker threads' identity, the receive buffer pool and
 * the statistics.
 *
 * Each worker owns one slot, and the slots sit a detected cache line apart,
 * so what a worker writes on its hot path (its counters, its cached
 * buffers) shares no line with another worker's. One more slot takes what
 * threads that are not workers add (a counter of bytes queued by iocp_send()
 * from an application thread, say); those add atomically.
 *
 * Receive buffers are lent, not owned: an engine takes one when bytes are
 * there to read and the core gives it back once on_data has returned (in
 * queue mode: once the batch is released, on the draining thread), so an
 * idle connection holds none. A worker keeps a few freed buffers for itself
 * (taken again at once by the next read, still in its cache); past that they
 * go to a shared pool, and past that back to the allocator.
 *
 * The shared pool keeps a few spares per worker, plus enough for the loans
 * of the last second or two: spares + lent <= base + the most buffers lent
 * at once in the current and the previous epoch (IOCP__POOL_EPOCH_MS). In
 * queue mode buffers are taken on the workers and given back a batch at a
 * time on the draining thread, so the number lent swings by a batch; a
 * pool smaller than the swing sent the surplus back to the allocator and
 * made the workers allocate (and fault in) new ones, which cost twice the
 * callbacks' CPU per echo under glibc. The spares follow the load down as
 * it falls (the bound is checked at every return to the pool), and a quiet
 * server keeps at most its last peak's worth (never more buffers than were
 * lent at once) until the pool is next used. */
#include "internal.h"

#include <string.h>

/* Buffers a worker keeps for itself, and the shared pool's size per worker. */
#define IOCP__WORKER_BUFS 4
#define IOCP__POOL_PER_WORKER 4
/* The shared pool sizes itself to the peak of buffers lent over this long. */
#define IOCP__POOL_EPOCH_MS 1000

struct iocp__worker {
  iocp__counter stats[IOCP__STAT_COUNT];
  iocp__counter lent; /* buffers taken minus given back by this slot's threads */
  int nbufs;
  uint8_t *bufs[IOCP__WORKER_BUFS];
};

static IOCP__TLS const iocp_server *tls_server; /* the server this thread works for */
static IOCP__TLS iocp__worker *tls_worker;

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

static iocp__worker *slot(const iocp__workers *w, uint32_t i) {
  return (iocp__worker *)(w->base + (size_t)i * w->stride);
}

int iocp__workers_init(iocp__workers *w, uint32_t threads, size_t line) {
  uint32_t i;
  memset(w, 0, sizeof(*w));
  w->count = threads ? threads : iocp__sys_cpu_count();
  w->line = line;
  w->stride = round_up(sizeof(iocp__worker), line);
  /* One extra line to align the first slot by hand. */
  w->mem = iocp__calloc(1, (size_t)(w->count + 1) * w->stride + line);
  if (w->mem == NULL) return IOCP_ENOMEM;
  w->base = (uint8_t *)round_up((size_t)(uintptr_t)w->mem, line);
  w->base_spares = IOCP__POOL_PER_WORKER * w->count;
  w->pool_cap = w->base_spares;
  w->pool = iocp__calloc(w->pool_cap, sizeof(*w->pool));
  if (w->pool == NULL) {
    iocp__free(w->mem);
    w->mem = NULL;
    return IOCP_ENOMEM;
  }
  iocp__mutex_init(&w->pool_lock, IOCP__RANK_BUFFERS);
  for (i = 0; i <= w->count; i++) slot(w, i)->nbufs = 0;
  return IOCP_OK;
}

void iocp__workers_free(iocp__workers *w) {
  uint32_t i;
  int j;
  if (w->mem == NULL) return;
  for (i = 0; i <= w->count; i++) {
    iocp__worker *k = slot(w, i);
    for (j = 0; j < k->nbufs; j++) iocp__free(k->bufs[j]);
    k->nbufs = 0;
  }
  while (w->pool_n > 0) iocp__free(w->pool[--w->pool_n]);
  iocp__free(w->pool);
  iocp__free(w->mem);
  iocp__mutex_destroy(&w->pool_lock);
  w->mem = NULL;
}

uint32_t iocp__worker_count(const iocp_server *s) { return s->workers.count; }

void iocp__worker_enter(iocp_server *s, uint32_t index) {
  assert(index < s->workers.count);
  assert(tls_server == NULL); /* a thread works for one server at a time */
  tls_server = s;
  tls_worker = slot(&s->workers, index);
}

void iocp__worker_leave(iocp_server *s) {
  assert(tls_server == s);
  (void)s;
  iocp__worker_flush();
  tls_server = NULL;
  tls_worker = NULL;
}

int iocp__on_worker(const iocp_server *s) { return s != NULL && tls_server == s; }

/* This thread's slot of s: its own as a worker, the shared one otherwise. */
static iocp__worker *mine(iocp_server *s, int *own) {
  *own = tls_server == s;
  return *own ? tls_worker : slot(&s->workers, s->workers.count);
}

/* ---- Receive buffers -------------------------------------------------------- */

/* Buffers lent out now (a snapshot: workers change it meanwhile). */
static int64_t lent_now(const iocp__workers *w) {
  int64_t sum = 0;
  uint32_t i;
  for (i = 0; i <= w->count; i++) sum += iocp__counter_read(&slot(w, i)->lent);
  return sum;
}

/* The most buffers the pool should let exist (lent + spare) now, given that
 * `lent` are lent; pool_lock held. */
static int64_t pool_limit_locked(iocp__workers *w, int64_t lent) {
  assert(iocp__mutex_held(&w->pool_lock));
  uint64_t now = iocp__now_ms();
  if (now - w->epoch_ms >= IOCP__POOL_EPOCH_MS) {
    w->peak_prev = now - w->epoch_ms >= 2 * IOCP__POOL_EPOCH_MS ? 0 : w->peak; /* quiet since */
    w->peak = 0;
    w->epoch_ms = now;
  }
  if (lent > w->peak) w->peak = lent;
  return (int64_t)w->base_spares + (w->peak > w->peak_prev ? w->peak : w->peak_prev);
}

uint8_t *iocp__buf_get(iocp_server *s) {
  int own;
  iocp__worker *k = mine(s, &own);
  uint8_t *b = NULL;
  if (own && k->nbufs > 0) {
    b = k->bufs[--k->nbufs];
  } else {
    iocp__workers *w = &s->workers;
    iocp__mutex_lock(&w->pool_lock);
    if (w->pool_n > 0) b = w->pool[--w->pool_n];
    (void)pool_limit_locked(w, lent_now(w) + 1); /* records the peak */
    iocp__mutex_unlock(&w->pool_lock);
    if (b == NULL) {
      size_t n = s->cfg.recv_buffer_size;
      b = iocp__malloc(n + IOCP__TLS_RECV_SLACK(n)); /* room for a TLS receive */
    }
  }
  if (b != NULL) iocp__counter_add(&k->lent, 1);
  return b;
}

/* Room for one more spare; pool_lock held. A failed growth only means the
 * buffer goes back to the allocator. */
static int pool_room_locked(iocp__workers *w) {
  assert(iocp__mutex_held(&w->pool_lock));
  uint8_t **bigger;
  uint32_t cap;
  if (w->pool_n < w->pool_cap) return 1;
  cap = w->pool_cap * 2;
  bigger = iocp__malloc(cap * sizeof(*bigger));
  if (bigger == NULL) return 0;
  memcpy(bigger, w->pool, w->pool_n * sizeof(*bigger));
  iocp__free(w->pool);
  w->pool = bigger;
  w->pool_cap = cap;
  return 1;
}

void iocp__buf_put(iocp_server *s, uint8_t *b) {
  int own;
  iocp__worker *k;
  iocp__workers *w = &s->workers;
  uint8_t *extra = NULL;
  int64_t lent, room;
  if (b == NULL) return;
  k = mine(s, &own);
  iocp__counter_add(&k->lent, -1);
  if (own && k->nbufs < IOCP__WORKER_BUFS) {
    k->bufs[k->nbufs++] = b;
    return;
  }
  iocp__mutex_lock(&w->pool_lock);
  lent = lent_now(w);
  room = pool_limit_locked(w, lent) - lent - (int64_t)w->pool_n;
  if (room > 0 && pool_room_locked(w)) {
    w->pool[w->pool_n++] = b;
    b = NULL;
  } else if (room < 0 && w->pool_n > 0) {
    extra = w->pool[--w->pool_n]; /* a lower peak now: the pool shrinks with it */
  }
  iocp__mutex_unlock(&w->pool_lock);
  iocp__free(b);
  iocp__free(extra);
}

size_t iocp__buf_size(const iocp_server *s) { return s->cfg.recv_buffer_size; }

/* ---- Statistics ------------------------------------------------------------------ */

void iocp__stat_add(iocp_server *s, int which, int64_t n) {
  int own;
  assert(which >= 0 && which < IOCP__STAT_COUNT);
  iocp__counter_add(&mine(s, &own)->stats[which], n);
}

int64_t iocp__stat_sum(iocp_server *s, int which) {
  int64_t sum = 0;
  uint32_t i;
  for (i = 0; i <= s->workers.count; i++)
    sum += iocp__counter_read(&slot(&s->workers, i)->stats[which]);
  return sum;
}
