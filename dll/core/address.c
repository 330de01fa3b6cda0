/* Text addresses to socket addresses and back (IPv4 and IPv6 alike). */
#include "internal.h"

#include <string.h>
#if !defined(_WIN32)
#  include <arpa/inet.h>
#  include <netinet/in.h>
#  include <sys/socket.h>
#endif

int iocp__address_parse(const char *text, uint16_t port, struct sockaddr_storage *ss,
                        int *len) {
  struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  memset(ss, 0, sizeof(*ss));
  if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *len = (int)sizeof(*v4);
    return IOCP_OK;
  }
  memset(ss, 0, sizeof(*ss));
  if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *len = (int)sizeof(*v6);
    return IOCP_OK;
  }
  return IOCP_EINVAL;
}

/* ::ffff:a.b.c.d, how a dual-stack socket sees an IPv4 peer. */
static int is_v4_mapped(const uint8_t *b) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(b, prefix, sizeof(prefix)) == 0;
}

void iocp__address_format(const struct sockaddr *sa, char *text, size_t cap, uint16_t *port) {
  text[0] = '\0';
  *port = 0;
  if (sa == NULL) return;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, (void *)&v4->sin_addr, text, (socklen_t)cap);
    *port = ntohs(v4->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
    const uint8_t *b = (const uint8_t *)&v6->sin6_addr;
    if (is_v4_mapped(b))
      inet_ntop(AF_INET, (void *)(b + 12), text, (socklen_t)cap); /* a dual-stack peer */
    else
      inet_ntop(AF_INET6, (void *)&v6->sin6_addr, text, (socklen_t)cap);
    *port = ntohs(v6->sin6_port);
  }
}
