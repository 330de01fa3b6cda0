/* on_log: the library's one way of telling what it worked around or could
 * not do. It never prints; without on_log (or LOG events in queue mode) the
 * message is dropped. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

void iocp__log(iocp_server *s, int level, int code, const char *fmt, ...) {
  char text[IOCP__LOG_MAX];
  va_list ap;
  if (s->cb.on_log == NULL && !s->want_log) return;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  if (s->cb.on_log != NULL)
    s->cb.on_log(s, s->user, level, code, text);
  else
    iocp__evq_log(s, level, code, text); /* queue mode: a LOG event */
}
