#!/usr/bin/env python3
"""Tests of the benchmark's client (test/bench/loadgen.c, loadgen_uring.c).

    test_loadgen.py --loadgen LOADGEN --echo ECHO_SERVER

The benchmark's numbers are only as good as its client, so its promises are
checked like the library's, against the C echo sample:

  1. each driver (epoll, io_uring) counts echoes and reports no error, no
     stalled connection, and its own CPU share
  2. bulk (100 x 64 KiB, 4 in flight): no connection waits over a second
     (`stuck=0`), as one connection the server kept busy once held the
     epoll client's read loop for seconds
  3. a server that closes, sends wrong bytes or sends more than it was
     given: each driver reports it and exits 1
  4. bad options: exit 2

Where io_uring is missing or forbidden, the io_uring cases check the
promise made for that case instead: `failed=io_uring`, exit 1, nothing
sent. Ends with "N passed, M failed". Every wait has a deadline.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "samples"))
from echo_driver import Child, Results  # noqa: E402

RUN_TIMEOUT = 60


def run(loadgen, port, *args):
    """(exit status, stdout's key=value pairs, stderr) of one loadgen run."""
    p = subprocess.run([loadgen, "--port", str(port), *args], capture_output=True, text=True,
                       timeout=RUN_TIMEOUT)
    kv = dict(re.findall(r"(\w+)=(\S+)", p.stdout))
    return p.returncode, kv, p.stderr.strip()


class BadServer:
    """A server in this script that misbehaves on each connection: 'close'
    (closes at the first bytes), 'wrong' (answers zeros), 'more' (answers
    every message twice)."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        with c:
            c.settimeout(RUN_TIMEOUT)
            try:
                data = c.recv(65536)
                if self.mode == "wrong":
                    c.sendall(bytes(len(data)))
                elif self.mode == "more":
                    c.sendall(data + data)
                if self.mode != "close":
                    c.recv(1)  # until the client goes
            except OSError:
                pass

    def close(self):
        self.sock.close()


def uring_missing(rc, kv, err):
    return kv.get("failed") == "io_uring"


def check_missing(res, label, rc, kv, err):
    res.check(rc == 1 and "io_uring is not available" in err and "echoes" not in kv,
              f"{label}: io_uring missing here: reported, exit 1, nothing counted",
              f"rc={rc} {kv} {err!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--echo", required=True)
    o = ap.parse_args()
    res = Results("loadgen")

    srv = Child([o.echo, "--port", "0"], os.environ.copy(), None)
    port = srv.wait_listening(60)
    if not res.check(port is not None, "the echo sample starts", srv.diagnostics()):
        srv.kill()
        return res.finish()
    try:
        for io in ("epoll", "uring"):
            rc, kv, err = run(o.loadgen, port, "--io", io, "--conns", "50", "--size", "64",
                              "--seconds", "0.5", "--warmup", "0.2", "--cpu-pid", str(srv.proc.pid))
            if io == "uring" and uring_missing(rc, kv, err):
                check_missing(res, "50 x 64 B", rc, kv, err)
                continue
            res.check(rc == 0 and kv.get("errors") == "0" and int(kv.get("echoes", "0")) > 0
                      and kv.get("stuck") == "0" and "client_cpu_pct" in kv
                      and "server_cpu_us_per_echo" in kv,
                      f"{io}: 50 x 64 B echoes counted, no error, none stalled, CPU read",
                      f"rc={rc} {kv} {err!r}")

        for io in ("epoll", "uring"):
            rc, kv, err = run(o.loadgen, port, "--io", io, "--conns", "100", "--size", "65536",
                              "--inflight", "4", "--seconds", "1.5", "--warmup", "0")
            if io == "uring" and uring_missing(rc, kv, err):
                check_missing(res, "bulk", rc, kv, err)
                continue
            res.check(rc == 0 and kv.get("errors") == "0" and kv.get("stuck") == "0",
                      f"{io}: bulk 100 x 64 KiB x 4, no connection waits over a second",
                      f"rc={rc} {kv} {err!r}")
    finally:
        srv.close_stdin()
        if srv.wait(30) is None:
            srv.kill()

    expect = {"close": ("closes at once", "closed by server"),
              "wrong": ("answers wrong bytes", "wrong bytes"),
              "more": ("answers twice", "only 64 sent and not yet echoed")}
    for mode, (what, words) in expect.items():
        bad = BadServer(mode)
        try:
            for io in ("epoll", "uring"):
                rc, kv, err = run(o.loadgen, bad.port, "--io", io, "--conns", "3", "--size", "64",
                                  "--seconds", "2", "--warmup", "0")
                if io == "uring" and uring_missing(rc, kv, err):
                    check_missing(res, f"a server that {what}", rc, kv, err)
                    continue
                # A doubled echo is wrong bytes to the epoll driver (it reads
                # no further than what it sent), too many to io_uring's.
                want = "wrong bytes" if (mode, io) == ("more", "epoll") else words
                res.check(rc == 1 and kv.get("errors") == "1" and want in err,
                          f"{io}: a server that {what} is reported, exit 1",
                          f"rc={rc} {kv} {err!r}")
        finally:
            bad.close()

    for args in (["--io", "kqueue"], ["--conns", "2", "--batch", "3"], ["--conns", "0"]):
        rc, _, err = run(o.loadgen, 9, *args)
        res.check(rc == 2 and "usage" in err, f"bad options {' '.join(args)}: exit 2", f"rc={rc}")
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
