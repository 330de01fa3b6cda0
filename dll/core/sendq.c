/* A connection's send queue: a list of chunks holding copies of the bytes
 * iocp_send() was given. Small sends share the tail chunk; one send
 * operation gathers up to IOCP__MAX_IOV chunks, and a completion consumes
 * exactly the bytes the system reports sent (which may be fewer than asked).
 * A chunk is freed as soon as its bytes are sent: a connection whose queue is
 * empty holds no memory for it (an idle connection that once spoke costs no
 * more than one that never did; the allocator recycles chunks between
 * connections). */
#include "internal.h"

#include <string.h>

/* Small sends are packed into chunks at least this large once a queue is
 * backed up; the first chunk of an empty queue is only rounded up to
 * IOCP__CHUNK_FIRST, so that many connections each sending a few bytes at
 * once (a broadcast, a burst of replies) do not grow the heap by 4 KiB each. */
#define IOCP__CHUNK_MIN 4096
#define IOCP__CHUNK_FIRST 256

int iocp__sendq_push(iocp__sendq *q, const void *data, size_t len) {
  return iocp__sendq_push_cap(q, data, len, 0);
}

int iocp__sendq_push_cap(iocp__sendq *q, const void *data, size_t len, size_t want) {
  iocp__chunk *t = q->tail, *c;
  size_t room, cap;

  if (len == 0) return IOCP_OK;
  /* Bytes appended past a chunk's `len` are outside any send in flight. */
  room = t != NULL ? t->cap - t->len : 0;
  if (room >= len) {
    memcpy(t->data + t->len, data, len);
    t->len += len;
    q->queued += len;
    return IOCP_OK;
  }
  if (t == NULL)
    cap = len < IOCP__CHUNK_FIRST ? IOCP__CHUNK_FIRST : len;
  else
    cap = len < IOCP__CHUNK_MIN ? IOCP__CHUNK_MIN : len;
  if (cap < want) cap = want;
  if (cap > SIZE_MAX - sizeof(*c)) return IOCP_ENOMEM;
  c = iocp__malloc(sizeof(*c) + cap);
  if (c == NULL) return IOCP_ENOMEM;
  c->next = NULL;
  c->off = 0;
  c->len = len;
  c->cap = cap;
  memcpy(c->data, data, len);
  if (t != NULL)
    t->next = c;
  else
    q->head = c;
  q->tail = c;
  q->queued += len;
  return IOCP_OK;
}

uint8_t *iocp__sendq_room(iocp__sendq *q, size_t *room) {
  iocp__chunk *t = q->tail;
  *room = t != NULL ? t->cap - t->len : 0;
  return *room > 0 ? t->data + t->len : NULL;
}

void iocp__sendq_commit(iocp__sendq *q, size_t n) {
  assert(n == 0 || (q->tail != NULL && n <= q->tail->cap - q->tail->len));
  if (n == 0) return;
  q->tail->len += n;
  q->queued += n;
}

int iocp__sendq_gather(const iocp__sendq *q, iocp__iov *iov, int max) {
  const iocp__chunk *c;
  int n = 0;
  for (c = q->head; c != NULL && n < max; c = c->next) {
    if (c->len == c->off) continue;
    iov[n].base = c->data + c->off;
    iov[n].len = c->len - c->off;
    n++;
  }
  return n;
}

void iocp__sendq_consume(iocp__sendq *q, size_t n) {
  while (n > 0 && q->head != NULL) {
    iocp__chunk *c = q->head;
    size_t avail = c->len - c->off;
    size_t take = n < avail ? n : avail;
    c->off += take;
    q->queued -= take;
    n -= take;
    if (c->off < c->len) break;
    q->head = c->next;
    if (q->head == NULL) q->tail = NULL;
    iocp__free(c);
  }
}

void iocp__sendq_clear(iocp__sendq *q) {
  iocp__chunk *c = q->head;
  while (c != NULL) {
    iocp__chunk *next = c->next;
    iocp__free(c);
    c = next;
  }
  q->head = q->tail = NULL;
  q->queued = 0;
}
