#!/usr/bin/env python3
"""Black-box test of the proxy sample (sample_clients/c/proxy.c).

    proxy_driver.py [options] --echo ECHO_PROGRAM -- PROXY_PROGRAM [ARGS...]

Both programs follow the samples' command-line contract (see echo_driver.py,
whose process handling this reuses); the echo sample runs with the same
leading words as the proxy (e.g. `-- wine proxy.exe`). Checks:

  1. the echo sample and a proxy in front of it start
  2. 20 connections at once through the proxy, each echoing 64 KiB
     byte-exact and ending gracefully (our FIN travels through the proxy to
     the echo server and its FIN back)
  3. a second proxy, in front of a backend in this script: 16 MiB each way
     at once, byte-exact, while each receiving end reads slowly; the proxy's
     peak resident memory grows by less than --max-growth MiB (without
     backpressure it would hold most of the 2 x 16 MiB)
  4. a proxy whose target refuses: the client's connection is closed
  5. with stdin closed each exits with code 0 and its port is released

Ends with "N passed, M failed"; the exit code is 1 when anything failed.
Every wait has a deadline; the slow readers pace themselves with short
pauses by design (that is what makes them slow), nothing is synchronised by
sleeping. Python 3.11 standard library only; memory from /proc (Linux, also
for a Wine process).
"""

import argparse
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from echo_driver import Child, Results, connect_refused, echo_exchange  # noqa: E402

MiB = 1 << 20


def pattern(n, seed):
    block = bytes((i * 131 + seed) & 0xFF for i in range(65521))  # prime length
    out = bytearray()
    while len(out) < n:
        out += block
    return bytes(out[:n])


def memory_kib(pid):
    """(VmRSS, VmHWM) of a process in KiB, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            vals = {}
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    vals[k] = int(v.split()[0])
            return vals.get("VmRSS"), vals.get("VmHWM")
    except OSError:
        return None


def start(argv, extra, args, res, what):
    child = Child(argv + extra, env=os.environ.copy(), cwd=None)
    port = child.wait_listening(args.start_timeout)
    if not res.check(port is not None, f"{what} starts and prints 'listening on port N'",
                     child.diagnostics()):
        child.kill()
        return None, None
    return child, port


def stop(child, port, res, what, timeout):
    child.close_stdin()
    rc = child.wait(timeout)
    if rc is None:
        child.kill()
    res.check(rc == 0, f"{what} exits with code 0 when stdin ends", f"code {rc}; {child.diagnostics()}")
    res.check(connect_refused(port, timeout), f"{what} released its port")


def slow_recv_all(sock, n, out, errors, what):
    """Reads n bytes in small pieces with a pause after each: a slow reader."""
    buf = bytearray()
    try:
        while len(buf) < n:
            chunk = sock.recv(16384)
            if not chunk:
                break
            buf += chunk
            time.sleep(0.002)
    except OSError as e:
        errors.append(f"{what}: recv after {len(buf)} bytes: {e}")
    out.append(bytes(buf))


def send_all(sock, data, errors, what):
    try:
        sock.sendall(data)
    except OSError as e:
        errors.append(f"{what}: send: {e}")


def check_slow_readers(proxy_argv, args, res):
    """16 MiB each way through a proxy whose both ends read slowly."""
    size = args.size * MiB
    down, up = pattern(size, 7), pattern(size, 91)
    backend = socket.socket()
    # Little room in the kernel, set before the connection exists (accepted
    # sockets inherit it): shrunk once connected, a full buffer drops what its
    # larger offered window let in, and the stream can stall (tsupport.h).
    backend.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    backend.bind(("127.0.0.1", 0))
    backend.listen(4)
    bport = backend.getsockname()[1]
    proxy, pport = start(proxy_argv, ["--to", f"127.0.0.1:{bport}"], args, res, "proxy (slow readers)")
    if proxy is None:
        backend.close()
        return
    errors, got_down, got_up = [], [], []
    base = memory_kib(proxy.proc.pid)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # little room in the kernel
    client.settimeout(args.timeout)
    client.connect(("127.0.0.1", pport))
    backend.settimeout(args.timeout)
    try:
        conn, _ = backend.accept()
    except OSError as e:
        res.check(False, "the proxy connects to its target", str(e))
        client.close()
        stop(proxy, pport, res, "proxy (slow readers)", args.timeout)
        return
    conn.settimeout(args.timeout)
    threads = [
        threading.Thread(target=send_all, args=(conn, down, errors, "backend")),
        threading.Thread(target=send_all, args=(client, up, errors, "client")),
        threading.Thread(target=slow_recv_all, args=(client, size, got_down, errors, "client")),
        threading.Thread(target=slow_recv_all, args=(conn, size, got_up, errors, "backend")),
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + args.timeout * 2
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    finished = not any(t.is_alive() for t in threads)
    peak = memory_kib(proxy.proc.pid)
    res.check(finished and not errors, f"{args.size} MiB each way through slow readers",
              f"finished={finished} errors={errors[:3]}")
    res.check(got_down and got_down[0] == down, f"backend -> client: {args.size} MiB byte-exact",
              f"got {len(got_down[0]) if got_down else 0} bytes")
    res.check(got_up and got_up[0] == up, f"client -> backend: {args.size} MiB byte-exact",
              f"got {len(got_up[0]) if got_up else 0} bytes")
    if base and peak and base[0] is not None and peak[1] is not None:
        growth = (peak[1] - base[0]) / 1024
        res.check(growth < args.max_growth,
                  f"the proxy's memory stays bounded (peak grew {growth:.1f} MiB, limit {args.max_growth})")
    else:
        res.check(False, "the proxy's memory can be read from /proc")
    # A graceful end through the proxy, both ways.
    for s in (client, conn):
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # reset: the checks below say so
    for s, what in ((client, "client"), (conn, "backend")):
        try:
            rest = s.recv(1)
        except OSError as e:
            rest = str(e)
        res.check(rest == b"", f"{what} sees the other end's FIN through the proxy", repr(rest))
        s.close()
    backend.close()
    stop(proxy, pport, res, "proxy (slow readers)", args.timeout)


def check_refused_target(proxy_argv, args, res):
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    dead = spare.getsockname()[1]
    spare.close()  # nothing listens there now
    proxy, pport = start(proxy_argv, ["--to", f"127.0.0.1:{dead}"], args, res, "proxy (dead target)")
    if proxy is None:
        return
    try:
        with socket.create_connection(("127.0.0.1", pport), timeout=args.timeout) as c:
            ended = c.recv(1) == b""
    except ConnectionResetError:
        ended = True  # the reset may even beat connect() back
    except OSError:
        ended = False
    res.check(ended, "a client of a proxy whose target refuses is closed")
    stop(proxy, pport, res, "proxy (dead target)", args.timeout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--echo", required=True, help="the echo sample")
    ap.add_argument("--start-timeout", type=float, default=30)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--size", type=int, default=16, help="MiB each way in the slow check")
    ap.add_argument("--max-growth", type=float, default=8.0, help="MiB")
    ap.add_argument("program", nargs="+")
    args = ap.parse_args()
    wrap = args.program[:-1]  # e.g. wine, for both programs
    proxy_argv = args.program
    res = Results("proxy")

    echo, eport = start(wrap + [args.echo], ["--port", "0"], args, res, "echo sample")
    if echo is not None:
        proxy, pport = start(proxy_argv, ["--port", "0", "--to", f"127.0.0.1:{eport}"], args, res,
                             "proxy (echo)")
        if proxy is not None:
            payloads = [pattern(64 * 1024, i) for i in range(20)]
            errors = echo_exchange(pport, payloads, args.timeout)
            res.check(not errors, "20 connections echo 64 KiB each through the proxy", "; ".join(errors[:3]))
            stop(proxy, pport, res, "proxy (echo)", args.timeout)
        stop(echo, eport, res, "echo sample", args.timeout)

    proxy_argv_port = proxy_argv + ["--port", "0"]
    check_slow_readers(proxy_argv_port, args, res)
    check_refused_target(proxy_argv_port, args, res)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
