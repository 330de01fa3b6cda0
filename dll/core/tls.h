/* The contract between the core's TLS plumbing (core/tls_conn.c) and one TLS
 * library (linux/tls_openssl.c: OpenSSL 3; win/tls_schannel.c: SChannel).
 *
 * A session is a byte machine: the core feeds it the ciphertext the socket
 * received, asks it for handshake progress or plaintext, gives it plaintext
 * to encrypt, and takes the ciphertext it produced to send. The library
 * never touches a socket, a lock or a thread of its own; every call is made
 * with the connection's lock held, one at a time per session.
 *
 * Unless noted, functions return 0 or a negative IOCP_ code; `why` (cap
 * bytes, may be NULL) receives a short English reason on failure. */
#ifndef IOCP_CORE_TLS_H
#define IOCP_CORE_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "iocpsrv.h"

typedef struct iocp__tls_cred iocp__tls_cred; /* a server's identity and settings */
typedef struct iocp__tls iocp__tls;           /* one connection's session */

/* Results of iocp__tls_handshake and iocp__tls_read (errors are negative). */
enum iocp__tls_status {
  IOCP__TLS_WANT = 0,   /* more ciphertext is needed */
  IOCP__TLS_DONE = 1,   /* handshake: completed; read: *n plaintext bytes */
  IOCP__TLS_CLOSED = 2  /* read: the peer's close_notify arrived */
};

/* The server side: the PKCS#12 blob is parsed and checked here (IOCP_EPKCS12,
 * IOCP_EPASSWORD, IOCP_ENOKEY, IOCP_ETLS). min_version is IOCP_TLS_1_2 or
 * IOCP_TLS_1_3; alpn a comma-separated list or NULL. */
int iocp__tls_cred_server(const void *p12, size_t p12_len, const char *password,
                          uint32_t min_version, const char *alpn, iocp__tls_cred **out,
                          char *why, size_t cap);
void iocp__tls_cred_free(iocp__tls_cred *cred);

/* A server session on cred (which must outlive it), or NULL (out of memory). */
iocp__tls *iocp__tls_new_server(iocp__tls_cred *cred);
/* A client session with its own settings (the options are validated by the
 * core; strings are copied). IOCP_ENOMEM, IOCP_ETLS (e.g. a CA text without
 * a certificate). */
int iocp__tls_new_client(const iocp_tls_client *opts, iocp__tls **out, char *why, size_t cap);
void iocp__tls_free(iocp__tls *t);

/* Takes `len` received ciphertext bytes, given only at the start or once
 * the session asked for more (IOCP__TLS_WANT). The session may read them in
 * place (OpenSSL does; SChannel copies them): they stay unchanged until
 * iocp__tls_handshake or iocp__tls_read returns IOCP__TLS_WANT,
 * iocp__tls_pending returns 0, or the session is freed. */
int iocp__tls_input(iocp__tls *t, const uint8_t *data, size_t len);
/* Advances the handshake: IOCP__TLS_WANT, IOCP__TLS_DONE, or IOCP_ETLS /
 * IOCP_ECERTVERIFY (the output may then hold an alert worth sending). */
int iocp__tls_handshake(iocp__tls *t, char *why, size_t cap);
/* Decrypts up to cap plaintext bytes into out: IOCP__TLS_DONE with *n > 0,
 * IOCP__TLS_WANT, IOCP__TLS_CLOSED, or IOCP_ETLS. */
int iocp__tls_read(iocp__tls *t, uint8_t *out, size_t cap, size_t *n, char *why, size_t cap_why);
/* Nonzero when decrypted or undecrypted input waits (read again before
 * receiving more). */
int iocp__tls_pending(iocp__tls *t);
/* Encrypts all `len` plaintext bytes into the output. */
int iocp__tls_write(iocp__tls *t, const uint8_t *data, size_t len);
/* Puts a close_notify alert into the output. */
int iocp__tls_close_notify(iocp__tls *t);
/* Moves up to cap bytes of produced ciphertext into out; returns the count
 * (0: nothing waits). */
size_t iocp__tls_output(iocp__tls *t, uint8_t *out, size_t cap);
/* Fills the negotiated version, cipher and ALPN (fields `info` has room for). */
void iocp__tls_info(iocp__tls *t, iocp_tls_info *info);

#endif
