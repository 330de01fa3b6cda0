/* loadgen's parts: the run's bookkeeping (loadgen.c) and its two drivers,
 * epoll (loadgen.c) and io_uring (loadgen_uring.c). */
#ifndef LOADGEN_H
#define LOADGEN_H

#include <stddef.h>
#include <stdint.h>

/* Messages are numbered from 1 (the number varies the pattern from echo to
 * echo); message `seq` lives in slot seq % K of msg and t_start. */
struct conn {
  int fd;
  int idx;
  uint32_t send_seq;  /* the message being sent, or the next one to send */
  uint32_t recv_seq;  /* the oldest message not yet echoed whole */
  uint32_t filled;    /* the newest message written into its slot */
  size_t sent, got;   /* bytes of send_seq sent / of recv_seq echoed back */
  int want_out;       /* epoll: EPOLLOUT currently requested */
  int send_busy;      /* io_uring: a send operation in flight */
  int recv_armed;     /* io_uring: a multishot receive in flight */
  double *t_start;    /* [K]: when each message's first byte went out */
  unsigned char *msg; /* [K * M] */
};

/* One run: its parameters, clocks, counts and round trips. */
struct lg {
  size_t size;       /* M */
  uint32_t inflight; /* K */
  int conns;
  double t_measure, t_end;   /* the measured seconds */
  long cpu_pid, watch_pid;   /* 0: none */
  int measuring;
  /* CPU times at the measured seconds' start [0] and end [1], and when read */
  double cpu0, cpu1, self0, self1, watch0, watch1, tcpu0, tcpu1;
  uint64_t echoes, total, total0, total1;
  double *lat;
  size_t nlat, caplat;
  unsigned errors;
};

double lg_now(void);

/* Before message send_seq's first byte goes out: writes it into its slot
 * and starts its clock (once). */
void lg_prepare_send(struct lg *g, struct conn *c);
const unsigned char *lg_send_ptr(const struct lg *g, const struct conn *c);
/* Records n bytes of send_seq as sent. */
void lg_sent(struct lg *g, struct conn *c, size_t n);
/* 1 when another message may go out (fewer than K in flight). */
int lg_may_send(const struct lg *g, const struct conn *c);
/* Bytes sent and not yet echoed back. */
size_t lg_want(const struct lg *g, const struct conn *c);
/* Checks and counts n echoed bytes; the number of echoes completed, or -1
 * (reported, and g->errors raised) at a wrong byte or one never sent. */
int lg_take(struct lg *g, struct conn *c, const unsigned char *buf, size_t n);
/* Starts and ends the measured seconds at time t: 1 once they are over. */
int lg_tick(struct lg *g, double t);
/* Reports a connection's failure: `what` failed with errno e (0: the
 * server closed it). Raises g->errors; the drivers stop at the first. */
void lg_fail(struct lg *g, const struct conn *c, const char *what, int e);

/* The io_uring driver: runs the measured seconds over cs[0..conns) (their
 * sockets blocking, nothing sent yet), at least `batch` completions per wait.
 * 0, or -1 with g->errors raised; 1 if io_uring is not available here
 * (before anything was sent). */
int lg_drive_uring(struct lg *g, struct conn *cs, unsigned batch);

#endif
