#!/bin/sh
# Test identities for the TLS suites, made at build time (no private key is
# committed): make_certs.sh OUTDIR STAMP
#   rsa.p12, ecdsa.p12   self-signed for localhost and 127.0.0.1 (RSA 2048,
#                        ECDSA P-256), PKCS#12 with the password "secret"
#   rsa.pem, ecdsa.pem   their certificates (a client's trust anchors)
#   rsa2.p12, rsa2.pem   a second RSA identity (two identities loaded at once)
#   rsa-3des.p12         rsa.pem and its key in the older PKCS#12 encryption
#                        (3DES, SHA-1 MAC) that Windows before Server 2019 needs
#   nokey.p12            rsa.pem alone, without its key
#   other.pem            an unrelated certificate (a trust anchor that fails)
#   mismatch.p12         rsa.pem with rsa2's key (a key that matches no certificate)
#   keyenc.p12           rsa's key, its certificate's keyUsage keyEncipherment only
#                        (no digitalSignature: it may not sign a handshake)
#   ecdsa-keyenc.p12     the same with ecdsa's key (OpenSSL's server cannot use it)
#   clientauth.p12       rsa's key, its certificate's extendedKeyUsage clientAuth only
#   serverauth.p12       rsa's key, keyUsage digitalSignature,keyEncipherment and
#                        extendedKeyUsage serverAuth (usages that are fine)
set -eu
out=$1
stamp=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
mkdir -p "$out"
cd "$out"
san="subjectAltName=DNS:localhost,IP:127.0.0.1"
# An RSA key Wine can use: its crypt32 copies each component at its full
# length (the private exponent the modulus' bytes, the primes and CRT
# values half that) and, meeting a shorter one (about 1 key in 60 has one
# with a leading zero byte), imports a broken key without a word; the
# server then listens and fails every handshake ("Public key signing has
# failed"). So a key with a short component is made again.
full_rsa_key() {
  openssl rsa -in "$1" -noout -text 2>/dev/null | awk '
    /^[a-zA-Z0-9]+:/ { name = $1; sub(":", "", name); next }
    /^ +[0-9a-f:]+$/ && name != "" { gsub(/[ :]/, ""); hex[name] = hex[name] $0 }
    END {
      for (k in hex) { h = hex[k]; sub(/^(00)+/, "", h); len[k] = length(h) / 2 }
      n = len["modulus"]
      if (n == 0 || len["privateExponent"] != n) exit 1
      split("prime1 prime2 exponent1 exponent2 coefficient", half, " ")
      for (i in half) if (len[half[i]] != n / 2) exit 1
    }'
}
rsa_identity() { # name
  until [ -f "$1.key" ] && full_rsa_key "$1.key"; do
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.pem" -days 3650 \
      -subj /CN=localhost -addext "$san" 2>/dev/null
  done
}
rm -f rsa.key rsa2.key
rsa_identity rsa
rsa_identity rsa2
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ecdsa.key \
  -out ecdsa.pem -days 3650 -subj /CN=localhost -addext "$san" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key \
  -out other.pem -days 3650 -subj /CN=other 2>/dev/null
openssl pkcs12 -export -in rsa.pem -inkey rsa.key -out rsa.p12 -passout pass:secret
openssl pkcs12 -export -in rsa.pem -inkey rsa.key -out rsa-3des.p12 -passout pass:secret \
  -certpbe PBE-SHA1-3DES -keypbe PBE-SHA1-3DES -macalg sha1
openssl pkcs12 -export -in rsa2.pem -inkey rsa2.key -out rsa2.p12 -passout pass:secret
openssl pkcs12 -export -in ecdsa.pem -inkey ecdsa.key -out ecdsa.p12 -passout pass:secret
openssl pkcs12 -export -nokeys -in rsa.pem -out nokey.p12 -passout pass:secret
# The CLI pairs a key with a certificate only when they match; a key given
# with -nocerts and a certificate with -certfile go in unpaired.
openssl pkcs12 -export -nocerts -inkey rsa2.key -certfile rsa.pem -out mismatch.p12 \
  -passout pass:secret 2>/dev/null
usage_identity() { # name key extension...
  name=$1
  key=$2
  shift 2
  for ext in "$@"; do set -- "$@" -addext "$ext"; shift; done
  openssl req -x509 -key "$key" -out "$name.pem" -days 3650 -subj /CN=localhost \
    -addext "$san" "$@" 2>/dev/null
  openssl pkcs12 -export -in "$name.pem" -inkey "$key" -out "$name.p12" -passout pass:secret
  rm -f "$name.pem"
}
usage_identity keyenc rsa.key keyUsage=keyEncipherment
usage_identity clientauth rsa.key extendedKeyUsage=clientAuth
usage_identity ecdsa-keyenc ecdsa.key keyUsage=keyEncipherment
usage_identity serverauth rsa.key keyUsage=digitalSignature,keyEncipherment extendedKeyUsage=serverAuth
# rsa.key stays for tls_peer.py (a TLS peer in Python); the rest go.
rm -f rsa2.key ecdsa.key other.key
touch "$stamp"
