/* loadgen's io_uring driver (--io uring): the same connections, messages
 * and checks as the epoll driver, with a few system calls per hundred
 * echoes instead of two per echo, so that on a small machine the client
 * leaves the server the processors it does not need.
 *
 * Each connection has one multishot receive (into buffers the kernel takes
 * from a provided-buffer ring) and at most one send in flight, so its bytes
 * go out in order. One io_uring_enter() submits what the last completions
 * made due and waits for `batch` more, or WAIT_NS, whichever comes first;
 * with IORING_SETUP_DEFER_TASKRUN the kernel wakes the client only then.
 * No liburing: the raw system calls, as <linux/io_uring.h> describes them. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "loadgen.h"

#include <errno.h>
#include <linux/io_uring.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RING_ENTRIES 4096
#define MAX_CQ_ENTRIES 65536 /* the kernel's limit */
#define NBUF 4096 /* receive buffers, a power of two */
#define BUFSZ 4096
#define WAIT_NS 1000000L /* a wait ends with what has come after 1 ms */

enum { OP_RECV = 1, OP_SEND = 2 };

struct ring {
  int fd;
  unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
  unsigned sq_entries, tail;
  struct io_uring_sqe *sqes;
  struct io_uring_cqe *cqes;
  void *rings;
  size_t rings_len, sqes_len, br_len;
  struct io_uring_buf_ring *br;
  uint16_t br_tail;
  unsigned char *bufs;
};

static unsigned load_acquire(const unsigned *p) {
  return atomic_load_explicit((const _Atomic unsigned *)p, memory_order_acquire);
}

static void store_release(unsigned *p, unsigned v) {
  atomic_store_explicit((_Atomic unsigned *)p, v, memory_order_release);
}

static int enter(struct ring *r, unsigned min_complete, unsigned flags, void *arg, size_t argsz) {
  unsigned submit;
  store_release(r->sq_tail, r->tail);
  submit = r->tail - load_acquire(r->sq_head);
  return (int)syscall(__NR_io_uring_enter, r->fd, submit, min_complete, flags, arg, argsz);
}

static void ring_free(struct ring *r) {
  if (r->fd >= 0) close(r->fd);
  if (r->rings != NULL && r->rings != MAP_FAILED) munmap(r->rings, r->rings_len);
  if (r->sqes != NULL && (void *)r->sqes != MAP_FAILED) munmap(r->sqes, r->sqes_len);
  if (r->br != NULL && (void *)r->br != MAP_FAILED) munmap(r->br, r->br_len);
  free(r->bufs);
}

static void buf_give(struct ring *r, unsigned bid) {
  struct io_uring_buf *b = &r->br->bufs[r->br_tail & (NBUF - 1)];
  b->addr = (uint64_t)(uintptr_t)(r->bufs + (size_t)bid * BUFSZ);
  b->len = BUFSZ;
  b->bid = (uint16_t)bid;
  r->br_tail++;
  atomic_store_explicit((_Atomic uint16_t *)&r->br->tail, r->br_tail, memory_order_release);
}

/* 0, or errno with nothing left open. The completion ring holds a send's
 * and a few receives' completions for every connection, so that the first
 * sends (all completed before anything is reaped) never overflow it. */
static int ring_init(struct ring *r, int conns) {
  struct io_uring_params p;
  struct io_uring_buf_reg reg;
  unsigned cq = RING_ENTRIES * 4, i;
  char *m;
  int e;
  while (cq < (unsigned)conns * 4 && cq < MAX_CQ_ENTRIES) cq *= 2;
  memset(r, 0, sizeof(*r));
  memset(&p, 0, sizeof(p));
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
  p.cq_entries = cq;
  r->fd = (int)syscall(__NR_io_uring_setup, RING_ENTRIES, &p);
  if (r->fd < 0 && errno == EINVAL) { /* before Linux 6.1: no deferred task work */
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = cq;
    r->fd = (int)syscall(__NR_io_uring_setup, RING_ENTRIES, &p);
  }
  if (r->fd < 0) return errno;
  if (!(p.features & IORING_FEAT_SINGLE_MMAP) || !(p.features & IORING_FEAT_EXT_ARG)) {
    e = ENOSYS;
    goto fail;
  }
  r->rings_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  if (p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe) > r->rings_len)
    r->rings_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  r->rings = mmap(NULL, r->rings_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                  IORING_OFF_SQ_RING);
  r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
  r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                 IORING_OFF_SQES);
  r->br_len = NBUF * sizeof(struct io_uring_buf);
  r->br = mmap(NULL, r->br_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  r->bufs = malloc((size_t)NBUF * BUFSZ);
  if (r->rings == MAP_FAILED || (void *)r->sqes == MAP_FAILED || (void *)r->br == MAP_FAILED ||
      r->bufs == NULL) {
    e = ENOMEM;
    goto fail;
  }
  m = r->rings;
  r->sq_head = (unsigned *)(m + p.sq_off.head);
  r->sq_tail = (unsigned *)(m + p.sq_off.tail);
  r->sq_mask = (unsigned *)(m + p.sq_off.ring_mask);
  r->sq_array = (unsigned *)(m + p.sq_off.array);
  r->cq_head = (unsigned *)(m + p.cq_off.head);
  r->cq_tail = (unsigned *)(m + p.cq_off.tail);
  r->cq_mask = (unsigned *)(m + p.cq_off.ring_mask);
  r->cqes = (struct io_uring_cqe *)(m + p.cq_off.cqes);
  r->sq_entries = p.sq_entries;
  r->tail = *r->sq_tail;
  memset(&reg, 0, sizeof(reg));
  reg.ring_addr = (uint64_t)(uintptr_t)r->br;
  reg.ring_entries = NBUF;
  reg.bgid = 0;
  if (syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_PBUF_RING, &reg, 1) != 0) {
    e = errno;
    goto fail;
  }
  for (i = 0; i < NBUF; i++) buf_give(r, i);
  return 0;
fail:
  ring_free(r);
  return e;
}

/* A cleared submission entry; submits what is queued when the ring is full.
 * NULL (errno set) if the kernel takes none of it. */
static struct io_uring_sqe *sqe_get(struct ring *r) {
  struct io_uring_sqe *s;
  unsigned idx;
  while (r->tail - load_acquire(r->sq_head) >= r->sq_entries) {
    int n = enter(r, 0, 0, NULL, 0);
    if (n < 0 && errno != EINTR) return NULL;
    if (n == 0) {
      errno = EBUSY;
      return NULL;
    }
  }
  idx = r->tail & *r->sq_mask;
  s = &r->sqes[idx];
  memset(s, 0, sizeof(*s));
  r->sq_array[idx] = idx;
  r->tail++;
  return s;
}

static int arm_recv(struct ring *r, struct lg *g, struct conn *c) {
  struct io_uring_sqe *s = sqe_get(r);
  if (s == NULL) {
    lg_fail(g, c, "io_uring submit", errno);
    return -1;
  }
  s->opcode = IORING_OP_RECV;
  s->fd = c->fd;
  s->ioprio = IORING_RECV_MULTISHOT;
  s->flags = IOSQE_BUFFER_SELECT;
  s->buf_group = 0;
  s->user_data = (uint64_t)OP_RECV << 32 | (uint32_t)c->idx;
  c->recv_armed = 1;
  return 0;
}

/* Offers the current message's rest if no send is in flight and fewer
 * than K messages are; *nsend counts the sends submitted. */
static int pump(struct ring *r, struct lg *g, struct conn *c, unsigned *nsend) {
  struct io_uring_sqe *s;
  if (c->send_busy || !lg_may_send(g, c)) return 0;
  lg_prepare_send(g, c);
  s = sqe_get(r);
  if (s == NULL) {
    lg_fail(g, c, "io_uring submit", errno);
    return -1;
  }
  s->opcode = IORING_OP_SEND;
  s->fd = c->fd;
  s->addr = (uint64_t)(uintptr_t)lg_send_ptr(g, c);
  s->len = (uint32_t)(g->size - c->sent);
  s->msg_flags = MSG_NOSIGNAL;
  s->user_data = (uint64_t)OP_SEND << 32 | (uint32_t)c->idx;
  c->send_busy = 1;
  (*nsend)++;
  return 0;
}

static int on_recv(struct ring *r, struct lg *g, struct conn *c, const struct io_uring_cqe *q,
                   unsigned *nsend) {
  if (!(q->flags & IORING_CQE_F_MORE)) c->recv_armed = 0;
  if (q->res > 0 && !(q->flags & IORING_CQE_F_BUFFER)) {
    lg_fail(g, c, "recv without a buffer", EINVAL);
    return -1;
  }
  if (q->res > 0) {
    unsigned bid = q->flags >> IORING_CQE_BUFFER_SHIFT;
    int done = lg_take(g, c, r->bufs + (size_t)bid * BUFSZ, (size_t)q->res);
    buf_give(r, bid);
    if (done < 0 || (done > 0 && pump(r, g, c, nsend) != 0)) return -1;
  } else if (q->res != -ENOBUFS) { /* out of buffers: armed again below */
    lg_fail(g, c, "recv", q->res == 0 ? 0 : -q->res);
    return -1;
  }
  return c->recv_armed ? 0 : arm_recv(r, g, c);
}

static int on_send(struct ring *r, struct lg *g, struct conn *c, const struct io_uring_cqe *q,
                   unsigned *nsend) {
  c->send_busy = 0;
  if (q->res <= 0) {
    lg_fail(g, c, "send", q->res == 0 ? EPIPE : -q->res);
    return -1;
  }
  lg_sent(g, c, (size_t)q->res);
  return pump(r, g, c, nsend);
}

int lg_drive_uring(struct lg *g, struct conn *cs, unsigned batch) {
  struct ring r;
  unsigned nsend = 0;
  int e = ring_init(&r, g->conns), i, rc = -1;
  if (e != 0) {
    fprintf(stderr, "loadgen: io_uring is not available here: %s\n", strerror(e));
    return 1;
  }
  for (i = 0; i < g->conns; i++)
    if (arm_recv(&r, g, &cs[i]) != 0 || pump(&r, g, &cs[i], &nsend) != 0) goto out;
  for (;;) {
    struct io_uring_getevents_arg arg;
    struct __kernel_timespec ts;
    double t = lg_now(), left;
    unsigned head, tail;
    if (lg_tick(g, t)) break;
    left = (g->t_end - t) * 1e9 + 1000;
    ts.tv_sec = 0;
    ts.tv_nsec = left < WAIT_NS ? (long long)left : WAIT_NS;
    memset(&arg, 0, sizeof(arg));
    arg.ts = (uint64_t)(uintptr_t)&ts;
    /* The sends just submitted mostly complete at once: wait for `batch`
     * completions beyond theirs. */
    if (enter(&r, batch + nsend, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg,
              sizeof(arg)) < 0 &&
        errno != ETIME && errno != EINTR && errno != EBUSY && errno != EAGAIN) {
      fprintf(stderr, "loadgen: io_uring_enter: %s\n", strerror(errno));
      g->errors++;
      goto out;
    }
    nsend = 0;
    head = *r.cq_head;
    tail = load_acquire(r.cq_tail);
    for (; head != tail; head++) {
      const struct io_uring_cqe *q = &r.cqes[head & *r.cq_mask];
      uint32_t idx = (uint32_t)q->user_data;
      int op = (int)(q->user_data >> 32);
      if (idx >= (uint32_t)g->conns ||
          (op == OP_RECV ? on_recv(&r, g, &cs[idx], q, &nsend)
                         : on_send(&r, g, &cs[idx], q, &nsend)) != 0) {
        if (g->errors == 0) g->errors++;
        store_release(r.cq_head, head + 1);
        goto out;
      }
    }
    store_release(r.cq_head, head);
  }
  rc = 0;
out:
  ring_free(&r); /* cancels what is still in flight */
  return rc;
}
