/* The id -> connection table: sixteen independently locked hash shards, so
 * iocp_send() from many threads rarely meets another thread on one lock.
 * Ids come from one 64-bit counter and are never reused. */
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

void iocp__table_init(iocp__table *t) {
  int i;
  memset(t, 0, sizeof(*t));
  for (i = 0; i < IOCP__TABLE_SHARDS; i++) iocp__mutex_init(&t->shards[i].lock);
}

void iocp__table_free(iocp__table *t) {
  int i;
  for (i = 0; i < IOCP__TABLE_SHARDS; i++) {
    iocp__free(t->shards[i].buckets);
    iocp__mutex_destroy(&t->shards[i].lock);
  }
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
  iocp__table_shard *sh = &t->shards[shard_of(c->id)];
  int rc = IOCP_OK;
  size_t j;
  iocp__mutex_lock(&sh->lock);
  if (t->closed) {
    rc = IOCP_ECLOSED;
    goto out;
  }
  if (sh->count >= sh->nbuckets) shard_grow(sh);
  if (sh->nbuckets == 0) {
    rc = IOCP_ENOMEM;
    goto out;
  }
  /* A slot under the limit, taken atomically across shards. */
  if (iocp__ref_add(&t->total, 1) >= (long)limit && limit != 0) {
    iocp__ref_add(&t->total, -1);
    rc = IOCP__EFULL;
    goto out;
  }
  j = bucket_of(sh, c->id);
  c->table_next = sh->buckets[j];
  sh->buckets[j] = c;
  sh->count++;
  iocp__conn_ref(c);
out:
  iocp__mutex_unlock(&sh->lock);
  return rc;
}

iocp__conn *iocp__table_remove(iocp__table *t, iocp_conn_id id) {
  iocp__table_shard *sh = &t->shards[shard_of(id)];
  iocp__conn **pp, *c = NULL;
  iocp__mutex_lock(&sh->lock);
  if (sh->nbuckets == 0) goto out;
  for (pp = &sh->buckets[bucket_of(sh, id)]; *pp != NULL; pp = &(*pp)->table_next) {
    if ((*pp)->id == id) {
      c = *pp;
      *pp = c->table_next;
      c->table_next = NULL;
      sh->count--;
      iocp__ref_add(&t->total, -1);
      break;
    }
  }
out:
  iocp__mutex_unlock(&sh->lock);
  return c;
}

iocp__conn *iocp__table_get(iocp__table *t, iocp_conn_id id) {
  iocp__table_shard *sh = &t->shards[shard_of(id)];
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
  int i;
  for (i = 0; i < IOCP__TABLE_SHARDS; i++) iocp__mutex_lock(&t->shards[i].lock);
  t->closed = 1;
  for (i = 0; i < IOCP__TABLE_SHARDS; i++) iocp__mutex_unlock(&t->shards[i].lock);
  iocp__table_each(t, fn, arg);
}

void iocp__table_each(iocp__table *t, void (*fn)(iocp__conn *c, void *arg), void *arg) {
  int i;
  size_t j;
  for (i = 0; i < IOCP__TABLE_SHARDS; i++) {
    iocp__table_shard *sh = &t->shards[i];
    iocp__mutex_lock(&sh->lock);
    for (j = 0; j < sh->nbuckets; j++) {
      iocp__conn *c;
      for (c = sh->buckets[j]; c != NULL; c = c->table_next) fn(c, arg);
    }
    iocp__mutex_unlock(&sh->lock);
  }
}

uint64_t iocp__table_count(iocp__table *t) {
  uint64_t n = 0;
  int i;
  for (i = 0; i < IOCP__TABLE_SHARDS; i++) {
    iocp__mutex_lock(&t->shards[i].lock);
    n += t->shards[i].count;
    iocp__mutex_unlock(&t->shards[i].lock);
  }
  return n;
}
