#!/usr/bin/env python3
"""A TLS 1.2 echo peer for the client-side TLS suite (test_tls_client), run
where Windows' own server-side TLS is not (Wine 8's SChannel has none):

    tls_peer.py CERTS_DIR -- COMMAND...

Serves TLS 1.2 on 127.0.0.1 (an ephemeral port) with CERTS_DIR/rsa.pem and
its key (CERTS_DIR/rsa.key), echoing every byte; answers a close_notify
with its own. Runs COMMAND with IOCP_TLS_PEER_PORT and IOCP_TLS_PEER_CERTS
in its environment and exits with its exit code."""
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


def main():
    certs = sys.argv[1]
    command = sys.argv[sys.argv.index("--") + 1:]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(certs, "rsa.pem"), os.path.join(certs, "rsa.key"))
    ls = socket.create_server(("127.0.0.1", 0))
    port = ls.getsockname()[1]

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
    env = dict(os.environ, IOCP_TLS_PEER_PORT=str(port), IOCP_TLS_PEER_CERTS=certs)
    rc = subprocess.run(command, env=env).returncode
    ls.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
