/* The TLS sessions of core/tls.h on Windows: not yet implemented (SChannel
 * goes here); every setup fails with IOCP_ETLS. */
#include "../core/tls.h"

#include <stdio.h>

static int unsupported(char *why, size_t cap) {
  if (why != NULL && cap > 0) snprintf(why, cap, "TLS is not available in this build");
  return IOCP_ETLS;
}

int iocp__tls_cred_server(const void *p12, size_t p12_len, const char *password,
                          uint32_t min_version, const char *alpn, iocp__tls_cred **out,
                          char *why, size_t cap) {
  (void)p12, (void)p12_len, (void)password, (void)min_version, (void)alpn;
  *out = NULL;
  return unsupported(why, cap);
}
void iocp__tls_cred_free(iocp__tls_cred *cred) { (void)cred; }
iocp__tls *iocp__tls_new_server(iocp__tls_cred *cred) { (void)cred; return NULL; }
int iocp__tls_new_client(const iocp_tls_client *opts, iocp__tls **out, char *why, size_t cap) {
  (void)opts;
  *out = NULL;
  return unsupported(why, cap);
}
void iocp__tls_free(iocp__tls *t) { (void)t; }
int iocp__tls_input(iocp__tls *t, const uint8_t *d, size_t n) { (void)t, (void)d, (void)n; return IOCP_ETLS; }
int iocp__tls_handshake(iocp__tls *t, char *why, size_t cap) { (void)t; return unsupported(why, cap); }
int iocp__tls_read(iocp__tls *t, uint8_t *o, size_t cap, size_t *n, char *why, size_t cw) {
  (void)t, (void)o, (void)cap;
  *n = 0;
  return unsupported(why, cw);
}
int iocp__tls_pending(iocp__tls *t) { (void)t; return 0; }
int iocp__tls_write(iocp__tls *t, const uint8_t *d, size_t n) { (void)t, (void)d, (void)n; return IOCP_ETLS; }
int iocp__tls_close_notify(iocp__tls *t) { (void)t; return IOCP_ETLS; }
size_t iocp__tls_output(iocp__tls *t, uint8_t *o, size_t cap) { (void)t, (void)o, (void)cap; return 0; }
void iocp__tls_info(iocp__tls *t, iocp_tls_info *info) { (void)t, (void)info; }
