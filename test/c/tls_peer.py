#!/usr/bin/env python3
"""TLS echo peers for the client-side TLS suite (test_tls_client), run
where Windows' own server-side TLS is not (Wine 8's SChannel has none):

    tls_peer.py CERTS_DIR -- COMMAND...

Serves on 127.0.0.1 (ephemeral ports) with CERTS_DIR/rsa.pem and its key
(CERTS_DIR/rsa.key), echoing every byte and answering a close_notify with
its own: TLS 1.2 only, without ALPN, on IOCP_TLS_PEER_PORT; TLS 1.2 and 1.3
with ALPN (it prefers h2, then http/1.1) on IOCP_TLS_PEER_ALPN_PORT. Runs
COMMAND with those two and IOCP_TLS_PEER_CERTS in its environment and
exits with its exit code."""
import os
import socket
import ssl
import subprocess
import sys
import threading


def serve_one(conn):
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
        conn.unwrap()
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


def serve(certs, newest, alpn):
    """Starts one listener; returns it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = newest
    if alpn:
        ctx.set_alpn_protocols(alpn)
    ctx.load_cert_chain(os.path.join(certs, "rsa.pem"), os.path.join(certs, "rsa.key"))
    ls = socket.create_server(("127.0.0.1", 0))

    def accept_loop():
        while True:
            try:
                raw, _ = ls.accept()
            except OSError:
                return
            try:
                raw.settimeout(60)
                conn = ctx.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()
                continue
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    return ls


def main():
    certs = sys.argv[1]
    command = sys.argv[sys.argv.index("--") + 1:]
    plain = serve(certs, ssl.TLSVersion.TLSv1_2, None)
    alpn = serve(certs, ssl.TLSVersion.TLSv1_3, ["h2", "http/1.1"])
    env = dict(os.environ, IOCP_TLS_PEER_CERTS=certs,
               IOCP_TLS_PEER_PORT=str(plain.getsockname()[1]),
               IOCP_TLS_PEER_ALPN_PORT=str(alpn.getsockname()[1]))
    rc = subprocess.run(command, env=env).returncode
    plain.close()
    alpn.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
