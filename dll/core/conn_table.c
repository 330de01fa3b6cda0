/* The id -> connection table: sixteen independently locked hash shards, so
 * iocp_send() from many threads rarely meets another thread on one lock, and
 * each shard on cache lines of its own (the line size is detected at run
 * time), so two threads on two shards never write to one line. Ids come
 * from one 64-bit counter and are never reused. */
#include "internal.h"

#include <string.h>

static size_t shard_of(iocp_conn_id id) { return (size_t)(id % IOCP__TABLE_SHARDS); }

static size_t bucket_index(iocp_conn_id id, size_t nbuckets) {
  uint64_t h = (id / IOCP__TABLE_SHARDS) * UINT64_C(0x9E3779B97F4A7C15);
  return (size_t)(h >> 32) & (nbuckets - 1);
}

static size_t bucket_of(const iocp__table_shard *sh, iocp_conn_id id) {
  return bucket_index(id, sh->nbuckets);
}

static iocp__table_shard *shard(const iocp__table *t, size_t i) {
  return (iocp__table_shard *)(t->base + i * t->stride);
}

int iocp__table_init(iocp__table *t, size_t line) {
  size_t i;
  t->stride = (sizeof(iocp__table_shard) + line - 1) / line * line;
  /* One extra line to align the first shard by hand. */
  t->mem = iocp__calloc(1, IOCP__TABLE_SHARDS * t->stride + line);
  if (t->mem == NULL) return IOCP_ENOMEM;
  t->base = (uint8_t *)(((uintptr_t)t->mem + line - 1) / line * line);
  for (i = 0; i < IOCP__TABLE_SHARDS; i++) iocp__mutex_init(&shard(t, i)->lock, IOCP__RANK_SHARD);
  return IOCP_OK;
}

void iocp__table_free(iocp__table *t) {
  size_t i;
  if (t->mem == NULL) return;
  for (i = 0; i < IOCP__TABLE_SHARDS; i++) {
    iocp__free(shard(t, i)->buckets);
    iocp__mutex_destroy(&shard(t, i)->lock);
  }
  iocp__free(t->mem);
  t->mem = NULL;
}

/* Doubles the bucket array; keeps the old one when out of memory (chains
 * just get longer). */
static void shard_grow(iocp__table_shard *sh) {
  size_t n = sh->nbuckets ? sh->nbuckets * 2 : 64, i;
  iocp__conn **b = iocp__calloc(n, sizeof(*b));
  if (b == NULL) return;
  for (i = 0; i < sh->nbuckets; i++) {
    iocp__conn *c = sh->buckets[i];
    while (c != NULL) {
      iocp__conn *next = c->table_next;
      size_t j = bucket_index(c->id, n);
      c->table_next = b[j];
      b[j] = c;
      c = next;
    }
  }
  iocp__free(sh->buckets);
  sh->buckets = b;
  sh->nbuckets = n;
}

int iocp__table_insert(iocp__table *t, iocp__conn *c, uint32_t limit) {
  iocp__table_shard *sh = shard(t, shard_of(c->id));
  int rc = IOCP_OK;
  size_t j;
  iocp__mutex_lock(&sh->lock);
  if (sh->closed) {
    rc = IOCP_ECLOSED;
    goto out;
  }
  if ((size_t)sh->count >= sh->nbuckets) shard_grow(sh);
  if (sh->nbuckets == 0) {
    rc = IOCP_ENOMEM;
    goto out;
  }
  /* Under a limit, a slot taken atomically across shards (the one shared
   * write, paid only by servers with max_connections). */
  if (limit != 0) {
    if (iocp__ref_add(&t->capped, 1) >= (long)limit) {
      iocp__ref_add(&t->capped, -1);
      rc = IOCP__EFULL;
      goto out;
    }
    c->capped = 1;
  }
  j = bucket_of(sh, c->id);
  c->table_next = sh->buckets[j];
  sh->buckets[j] = c;
  iocp__counter_add(&sh->count, 1);
  iocp__conn_ref(c);
out:
  iocp__mutex_unlock(&sh->lock);
  return rc;
}

iocp__conn *iocp__table_remove(iocp__table *t, iocp_conn_id id) {
  iocp__table_shard *sh = shard(t, shard_of(id));
  iocp__conn **pp, *c = NULL;
  iocp__mutex_lock(&sh->lock);
  if (sh->nbuckets == 0) goto out;
  for (pp = &sh->buckets[bucket_of(sh, id)]; *pp != NULL; pp = &(*pp)->table_next) {
    if ((*pp)->id == id) {
      c = *pp;
      *pp = c->table_next;
      c->table_next = NULL;
      c->delisted = 1;
      iocp__counter_add(&sh->count, -1);
      if (c->capped) iocp__ref_add(&t->capped, -1);
      break;
    }
  }
out:
  iocp__mutex_unlock(&sh->lock);
  return c;
}

iocp__conn *iocp__table_get(iocp__table *t, iocp_conn_id id) {
  iocp__table_shard *sh = shard(t, shard_of(id));
  iocp__conn *c = NULL;
  iocp__mutex_lock(&sh->lock);
  if (sh->nbuckets != 0) {
    for (c = sh->buckets[bucket_of(sh, id)]; c != NULL; c = c->table_next)
      if (c->id == id) break;
    if (c != NULL) iocp__conn_ref(c);
  }
  iocp__mutex_unlock(&sh->lock);
  return c;
}

void iocp__table_close(iocp__table *t, void (*fn)(iocp__conn *c, void *arg), void *arg) {
  size_t i;
  /* Every shard closed first: no insert anywhere once any fn runs. */
  for (i = 0; i < IOCP__TABLE_SHARDS; i++) {
    iocp__table_shard *sh = shard(t, i);
    iocp__mutex_lock(&sh->lock);
    sh->closed = 1;
    iocp__mutex_unlock(&sh->lock);
  }
  iocp__table_each(t, fn, arg);
}

void iocp__table_each(iocp__table *t, void (*fn)(iocp__conn *c, void *arg), void *arg) {
  size_t i, j;
  for (i = 0; i < IOCP__TABLE_SHARDS; i++) {
    iocp__table_shard *sh = shard(t, i);
    iocp__mutex_lock(&sh->lock);
    for (j = 0; j < sh->nbuckets; j++) {
      iocp__conn *c;
      for (c = sh->buckets[j]; c != NULL; c = c->table_next) fn(c, arg);
    }
    iocp__mutex_unlock(&sh->lock);
  }
}

void iocp__conn_each(iocp_server *s, void (*fn)(iocp__conn *c, void *arg), void *arg) {
  iocp__table_each(&s->table, fn, arg);
}

/* Without a lock: each shard's count is read whole; the sum is a snapshot. */
uint64_t iocp__table_count(const iocp__table *t) {
  int64_t n = 0;
  size_t i;
  for (i = 0; i < IOCP__TABLE_SHARDS; i++) n += iocp__counter_read(&shard(t, i)->count);
  return n > 0 ? (uint64_t)n : 0;
}
