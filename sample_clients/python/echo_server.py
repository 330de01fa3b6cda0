#!/usr/bin/env python3
"""The original library's tutorial on the ctypes binding: an echo server.

    echo_server.py [--port N] [--bind ADDR] [--threads N] [--mode queue|callbacks]
                   [--tls CERT.p12 [--tls-password TEXT]]

--port defaults to 50000 (0 picks a free port), --bind to 127.0.0.1,
--threads to the library's default (one per processor; in queue mode one
fewer, at least one), --mode to queue (events taken in batches by
one Python thread; "callbacks" calls back from the library's workers).
With --tls every connection speaks TLS, done by the library
(iocpsrv.TlsConfig): CERT.p12 is the server's certificate and key as
PKCS#12, --tls-password its password; a file that cannot be used (a wrong
password, say) is reported and the sample exits 1 without listening.
Prints "listening on port N" when ready and
exits cleanly when Enter is pressed or standard input ends. The library is
found as the iocpsrv package describes (IOCPSRV_LIBRARY, the package's folder,
then LD_LIBRARY_PATH / PATH).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import iocpsrv  # noqa: E402


# A peer that sends but does not read fills its echo queue: at QUEUE_MAX the
# unsent chunk waits here and the connection stops receiving (TCP flow
# control then slows the peer); once the queue has fallen to DRAIN_MARK the
# chunk goes out and receiving resumes. Memory per connection stays bounded
# and a fast writer is slowed, never cut off.
QUEUE_MAX = 1 << 20
DRAIN_MARK = 256 << 10
waiting = {}   # conn -> the chunk that did not fit (only its own handlers touch it)


def on_data(server, conn, data):
    """Echo every byte back, pausing at the queue mark."""
    try:
        server.send(conn, data)
    except iocpsrv.IocpError as e:
        if e.code == iocpsrv.EQUEUEFULL:
            waiting[conn] = data
            server.pause_reading(conn)   # inside on_data: no more data arrives
        # Any other refusal (the connection is closing) needs nothing from us.


def on_drain(server, conn, queued):
    """The queue fell to DRAIN_MARK: send what waited and receive again."""
    data = waiting.pop(conn, None)
    if data is not None:
        try:
            server.send(conn, data)
            server.resume_reading(conn)
        except iocpsrv.IocpError:
            pass   # the connection is ending


def on_disconnect(server, conn, reason):
    waiting.pop(conn, None)


def parse_uint(text, maximum):
    if text is None or not text.isdigit():
        raise ValueError(text)
    value = int(text)
    if value > maximum:
        raise ValueError(text)
    return value


def usage(prog):
    print(f"usage: {prog} [--port N] [--bind ADDR] [--threads N] [--mode queue|callbacks] "
          "[--tls CERT.p12 [--tls-password TEXT]]", file=sys.stderr)
    return 2


def main(argv):
    port, threads, bind, mode = 50000, 0, "127.0.0.1", "queue"
    tls_file, tls_password = None, None
    i = 1
    while i < len(argv):
        arg = argv[i]
        val = argv[i + 1] if i + 1 < len(argv) else None
        try:
            if arg == "--port":
                port = parse_uint(val, 65535)
            elif arg == "--threads":
                threads = parse_uint(val, 1024)
            elif arg == "--bind" and val is not None:
                bind = val
            elif arg == "--mode" and val in ("queue", "callbacks"):
                mode = val
            elif arg == "--tls" and val is not None:
                tls_file = val
            elif arg == "--tls-password" and val is not None:
                tls_password = val
            else:
                return usage(argv[0])
        except ValueError:
            return usage(argv[0])
        i += 2

    try:
        iocpsrv.load()
    except iocpsrv.LibraryError as e:
        print(e, file=sys.stderr)
        return 1

    if tls_password is not None and tls_file is None:
        return usage(argv[0])
    tls = None
    if tls_file is not None:
        try:
            tls = iocpsrv.TlsConfig(tls_file, tls_password)
        except (OSError, ValueError) as e:
            print(f"cannot read {tls_file}: {e}", file=sys.stderr)
            return 1

    try:
        server = iocpsrv.Server(port=port, bind=bind, threads=threads, mode=mode,
                                max_send_queue=QUEUE_MAX, drain_mark=DRAIN_MARK,
                                on_data=on_data, on_drain=on_drain,
                                on_disconnect=on_disconnect, tls=tls)
    except (iocpsrv.IocpError, UnicodeError) as e:
        print(f"cannot listen on {bind} port {port}: {e}", file=sys.stderr)
        return 1

    with server:
        print(f"listening on port {server.port}", flush=True)
        try:
            sys.stdin.readline()  # Enter, or "" at end of input
        except KeyboardInterrupt:
            pass
        st = server.stats()
        print(f"served {st.connections_accepted} connections, {st.bytes_received} bytes in, "
              f"{st.bytes_sent} bytes out", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
