/* on_log: the library's one way of telling what it worked around or could
 * not do. It never prints; without on_log the message is dropped. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

/* Messages are one short line; longer ones are cut. */
#define IOCP__LOG_MAX 160

void iocp__log(iocp_server *s, int level, int code, const char *fmt, ...) {
  char text[IOCP__LOG_MAX];
  va_list ap;
  if (s->cb.on_log == NULL) return;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  s->cb.on_log(s, s->user, level, code, text);
}
