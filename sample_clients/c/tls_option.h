/* The samples' --tls CERT.p12 and --tls-password TEXT options: reads the
 * PKCS#12 file into config.tls_pkcs12. iocp_create() only reads the blob,
 * so sample_tls_release() frees it as soon as that returned. */
#ifndef SAMPLE_TLS_OPTION_H
#define SAMPLE_TLS_OPTION_H

#include "iocpsrv.h"

#include <stdio.h>
#include <stdlib.h>

/* 0, or -1 after printing why the file could not be read. */
static int sample_tls_load(iocp_config *config, const char *p12_path, const char *password) {
  FILE *f = fopen(p12_path, "rb");
  unsigned char *blob = NULL;
  long len;
  if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) <= 0 ||
      len > (1L << 24) || fseek(f, 0, SEEK_SET) != 0 ||
      (blob = malloc((size_t)len)) == NULL || fread(blob, 1, (size_t)len, f) != (size_t)len) {
    fprintf(stderr, "cannot read %s\n", p12_path);
    if (f != NULL) fclose(f);
    free(blob);
    return -1;
  }
  fclose(f);
  config->tls_pkcs12 = blob;
  config->tls_pkcs12_len = (uint32_t)len;
  config->tls_password = password;
  return 0;
}

static void sample_tls_release(iocp_config *config) {
  free((void *)(uintptr_t)config->tls_pkcs12);
  config->tls_pkcs12 = NULL;
  config->tls_pkcs12_len = 0;
}

#endif
