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
    inet_ntop(AF_INET6, (void *)&v6->sin6_addr, text, (socklen_t)cap);
    *port = ntohs(v6->sin6_port);
  }
}
