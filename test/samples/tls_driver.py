#!/usr/bin/env python3
"""Black-box test of the C samples' --tls option (OpenSSL tools as clients).

    tls_driver.py --echo ECHO_SERVER --http HTTP_SERVER --proxy PROXY
                  [--runner WINE10_SH --rsa --newest-tls12]

--runner runs each sample through a command (test/tools/wine10.sh: the
Windows build under Wine 10; the identity is then made in the current
folder, which that runner shares); --rsa makes an RSA 2048 identity (Wine's
PKCS#12 import refuses ECDSA); --newest-tls12 checks TLS 1.2 only (Wine's
SChannel has no TLS 1.3).

Makes a throw-away identity (ECDSA P-256, PKCS#12 with a password) in a
temporary folder, then, one output line per check:
  1. echo_server --tls: Python's ssl client at TLS 1.2 and 1.3 (verifying
     the certificate) gets 1 MiB echoed byte-exact, then a close_notify
     answering its own; `openssl s_client` gets its line echoed; a TLS 1.2
     `openssl s_client` asking to renegotiate ("R") loses its connection
  2. echo_server --tls with a wrong password exits 1 without listening
  3. http_server --tls: `curl -k https://...` and a Python ssl client get
     "Hello, World!"
  4. proxy --tls in front of the plain echo_server: a TLS client's bytes
     come back through the plain target
Each server exits 0 when its standard input ends. Ends with "N passed, M
failed"; exit code 1 when anything failed. Every wait has a deadline.
"""

import argparse
import os
import queue
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from echo_driver import Child, Results  # noqa: E402

PASSWORD = "s3cret"


def full_rsa_key(key):
    """Whether every component of the RSA key is as long as Wine's crypt32
    copies it (the private exponent the modulus' bytes, primes and CRT
    values half that). Meeting a shorter one (about 1 key in 60 has one
    with a leading zero byte) Wine imports a broken key without a word:
    the sample listens and fails every handshake ("Public key signing has
    failed"), which made this driver fail now and then under Wine 10."""
    text = subprocess.run(["openssl", "rsa", "-in", key, "-noout", "-text"],
                          check=True, capture_output=True, text=True).stdout
    lens, name = {}, None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            name = line.rstrip()[:-1]
            lens[name] = b""
        elif name and line.startswith(" "):
            lens[name] += bytes.fromhex(line.strip().replace(":", ""))
    n = len(lens.get("modulus", b"").lstrip(b"\0"))
    want = {"privateExponent": n, "prime1": n // 2, "prime2": n // 2, "exponent1": n // 2,
            "exponent2": n // 2, "coefficient": n // 2}
    return n > 0 and all(len(lens.get(k, b"").lstrip(b"\0")) == v for k, v in want.items())


def make_identity(folder, rsa=False):
    key, pem, p12 = (os.path.join(folder, n) for n in ("key.pem", "cert.pem", "id.p12"))
    newkey = ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt",
                                                  "ec_paramgen_curve:P-256"]
    while True:
        subprocess.run(["openssl", "req", "-x509"] + newkey + [
                        "-nodes", "-keyout", key, "-out", pem,
                        "-days", "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        if not rsa or full_rsa_key(key):
            break
    subprocess.run(["openssl", "pkcs12", "-export", "-in", pem, "-inkey", key, "-out", p12,
                    "-passout", "pass:" + PASSWORD], check=True, capture_output=True)
    os.remove(key)
    return pem, p12


START_TIMEOUT = 30  # seconds; longer through a runner (Wine's first start)


def start(res, argv):
    child = Child(argv, dict(os.environ), None)
    child.failed_before = res.failed
    port = child.wait_listening(START_TIMEOUT)
    return child, port


def stop(res, child, what):
    """Ends the server; when a check failed while it ran, its stderr is
    shown with the exit check (Wine's and the program's own words)."""
    child.close_stdin()
    rc = child.wait(30)
    if rc is None:
        child.kill()
    child.join_output(5)
    res.check(rc == 0, f"{what} exits 0 when stdin ends", child.diagnostics())
    if res.failed > child.failed_before:
        print(f"{what}, {child.diagnostics()}", flush=True)


def tls_client(port, cafile, version=None):
    ctx = ssl.create_default_context(cafile=cafile)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def echo_bytes(s, data, step=64 << 10):
    """Sends data in steps and reads each step's echo before the next, on one
    thread: an SSL socket must not be read and written by two threads at once
    (OpenSSL's objects are not thread-safe, and CPython releases the GIL
    around them)."""
    got = bytearray()
    for at in range(0, len(data), step):
        s.sendall(data[at:at + step])
        want = min(at + step, len(data))
        while len(got) < want:
            chunk = s.recv(65536)
            if not chunk:
                return False
            got.extend(chunk)
    return bytes(got) == data


def wait_line(child, text, timeout):
    """Whether a line holding text comes from child within timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            line = child.lines.get(timeout=left)
        except queue.Empty:
            return False
        if line is None:
            return False
        if text in line:
            return True


def check_renegotiation(res, port, pem):
    """A TLS 1.2 client's renegotiation is refused: after its "R" command
    s_client's connection ends (Windows: the engine ends it; Linux: OpenSSL's
    no_renegotiation alert), with its standard input still open."""
    sc = Child(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
                "-CAfile", pem], dict(os.environ), None)
    try:
        sc.proc.stdin.write(b"before renegotiation\n")
        sc.proc.stdin.flush()
        echoed = wait_line(sc, b"before renegotiation", 30)
        sc.proc.stdin.write(b"R\n")
        sc.proc.stdin.flush()
        rc = sc.wait(30)
        res.check(echoed and rc is not None,
                  "a TLS 1.2 renegotiation (s_client R) ends the connection", sc.diagnostics())
    except OSError as e:
        res.check(False, "a TLS 1.2 renegotiation (s_client R) ends the connection", repr(e))
    finally:
        sc.close_stdin()
        sc.kill()


def check_echo(res, label, port, pem, versions):
    for version in versions:
        try:
            s = tls_client(port, pem, version)
            data = os.urandom(1 << 20)
            ok = echo_bytes(s, data)
            s.unwrap()  # our close_notify, then the server's
            s.close()
            res.check(ok, f"{label}: 1 MiB echoed byte-exact over {version.name}, close_notify both ways")
        except (OSError, ssl.SSLError) as e:
            res.check(False, f"{label}: 1 MiB echoed over {version.name}", repr(e))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--echo", required=True)
    ap.add_argument("--http", required=True)
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--runner")
    ap.add_argument("--rsa", action="store_true")
    ap.add_argument("--newest-tls12", action="store_true")
    a = ap.parse_args()
    run = [a.runner] if a.runner else []
    if a.runner:
        global START_TIMEOUT
        START_TIMEOUT = 180
    versions = [ssl.TLSVersion.TLSv1_2]
    if not a.newest_tls12:
        versions.append(ssl.TLSVersion.TLSv1_3)
    res = Results("tls samples")
    folder = tempfile.mkdtemp(dir=os.getcwd() if a.runner else None)
    try:
        pem, p12 = make_identity(folder, a.rsa)
        tls_args = ["--port", "0", "--tls", p12, "--tls-password", PASSWORD]

        echo, port = start(res, run + [a.echo] + tls_args)
        if res.check(port is not None, "echo_server --tls listens", echo.diagnostics()):
            check_echo(res, "echo_server", port, pem, versions)
            # -quiet implies -ign_eof: the line goes out, its echo is
            # awaited, then stdin's end ends s_client.
            sc = Child(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                        "localhost", "-CAfile", pem, "-quiet", "-verify_return_error",
                        "-no_ign_eof"], dict(os.environ), None)
            sc.proc.stdin.write(b"hello over s_client\n")
            sc.proc.stdin.flush()
            line = sc.lines.get(timeout=30)
            sc.close_stdin()
            if sc.wait(30) is None:
                sc.kill()
            res.check(line is not None and b"hello over s_client" in line,
                      "openssl s_client gets its line echoed", sc.diagnostics())
            check_renegotiation(res, port, pem)
            check_echo(res, "echo_server after the renegotiation", port, pem, versions[:1])
        stop(res, echo, "echo_server --tls")

        bad = Child(run + [a.echo, "--port", "0", "--tls", p12, "--tls-password", "wrong"],
                    dict(os.environ), None)
        rc = bad.wait(30)
        bad.join_output(5)
        res.check(rc == 1 and not bad.stdout, "a wrong password: exit 1, nothing listens",
                  bad.diagnostics())

        http, port = start(res, run + [a.http] + tls_args)
        if res.check(port is not None, "http_server --tls listens", http.diagnostics()):
            if shutil.which("curl"):
                out = subprocess.run(["curl", "-sk", f"https://127.0.0.1:{port}/"],
                                     capture_output=True, timeout=30)
                res.check(b"Hello, World!" in out.stdout, "curl -k https:// gets Hello, World!",
                          out.stderr.decode(errors="replace"))
            body = b""
            try:
                s = tls_client(port, pem)
                s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    body += chunk
                s.close()
            except (OSError, ssl.SSLError) as e:
                body += repr(e).encode()
            res.check(body.startswith(b"HTTP/1.1 200") and b"Hello, World!" in body,
                      "a Python ssl client gets the page", repr(body[:200]))
        stop(res, http, "http_server --tls")

        target, tport = start(res, run + [a.echo, "--port", "0"])
        proxy, port = start(res, run + [a.proxy, "--to", f"127.0.0.1:{tport}"] + tls_args)
        if res.check(port is not None and tport is not None, "proxy --tls listens",
                     proxy.diagnostics()):
            try:
                s = tls_client(port, pem)
                res.check(echo_bytes(s, os.urandom(256 << 10)),
                          "proxy --tls: 256 KiB through a plain target byte-exact")
                s.close()
            except (OSError, ssl.SSLError) as e:
                res.check(False, "proxy --tls: 256 KiB through a plain target byte-exact", repr(e))
        stop(res, proxy, "proxy --tls")
        stop(res, target, "the proxy's target")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
