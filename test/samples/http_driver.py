#!/usr/bin/env python3
"""Black-box test of the HTTP/1.1 sample (sample_clients/c/http_server.c).

    http_driver.py [options] -- PROGRAM [ARGS...]

PROGRAM is the sample, natively or through `wine`; it follows the samples'
command-line contract (see echo_driver.py, whose process handling this
reuses). One server serves every check, over real TCP connections:

  - a simple GET: 200, the headers, "Hello, World!", the connection stays open
  - keep-alive: several requests one after another on one connection
  - pipelining: GET and HEAD requests in one write, answered in order
  - a request split one byte at a time (every split point of the stream)
  - a request body (Content-Length) skipped, the next request answered
  - HTTP/1.0 without keep-alive, and "Connection: close": answer, then close
  - malformed requests: 400, "Connection: close", then an orderly close
  - oversized headers (over 8 KiB), whole and in pieces: 400 and a close
  - a chunked request body: 501 and a close
  - many connections at once, each pipelining
  - with stdin closed it exits with code 0 (an idle connection still open)
    and nothing listens on the port any more
  - a second server started with short limits (--idle-timeout 1
    --head-timeout 2): a connection that sends nothing is closed after the
    idle timeout; a "slowloris" peer that trickles its head a byte at a
    time, often enough never to be idle, gets 408 and an orderly close
    once the head deadline has passed

Ends with "N passed, M failed"; the exit code is 1 when anything failed.
Every wait has a deadline; nothing is synchronised by sleeping (the only
pause paces the one-byte writes, so that the server tends to read them one
by one; the checks do not depend on it). Python 3.11 standard library only.
"""

import argparse
import os
import random
import selectors
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from echo_driver import Child, Results, connect_refused, parse_with_program  # noqa: E402

BODY = b"Hello, World!"
GET = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: http_test\r\n\r\n"
HEAD = b"HEAD /x HTTP/1.1\r\nHost: localhost\r\n\r\n"


class HttpError(Exception):
    pass


class Client:
    """One connection, reading whole responses with a deadline."""

    def __init__(self, port, timeout):
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise HttpError(f"no answer within {self.timeout}s (have {self.buf[:80]!r})")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise HttpError(f"no answer within {self.timeout}s (have {self.buf[:80]!r})")
        except ConnectionResetError:
            raise HttpError(f"connection reset (have {self.buf[:80]!r})")
        if not chunk:
            raise HttpError(f"connection closed (have {self.buf[:80]!r})")
        self.buf += chunk

    def response(self, head_request=False):
        """(status, headers dict with lower-case names, body)."""
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or parts[0] != "HTTP/1.1" or not parts[1].isdigit():
            raise HttpError(f"bad status line {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpError(f"bad header line {line!r}")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if head_request:
            length = 0
        while len(self.buf) < length:
            self._fill(deadline)
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(parts[1]), headers, body

    def closed_by_server(self):
        """True once the server's FIN arrives with nothing more before it; a
        reset is an error string (a graceful close was promised)."""
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "still open"
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return "still open"
            except ConnectionResetError:
                return "reset instead of an orderly close"
            if not chunk:
                return True
            self.buf += chunk
            return f"more bytes after the last answer: {self.buf[:80]!r}"

    def still_open(self):
        """A request on this connection is still answered."""
        self.send(GET)
        status, _, body = self.response()
        return status == 200 and body == BODY


def ok_200(resp, head_request=False):
    status, headers, body = resp
    want = b"" if head_request else BODY
    return (status == 200 and body == want and headers.get("content-length") == "13"
            and headers.get("content-type") == "text/plain" and "date" in headers)


def check_simple_get(port, args, res):
    c = Client(port, args.timeout)
    try:
        c.send(GET)
        resp = c.response()
        res.check(ok_200(resp) and resp[1].get("connection", "") != "close",
                  "simple GET: 200, Content-Length 13, \"Hello, World!\", kept open", repr(resp))
    finally:
        c.close()


def check_keep_alive(port, args, res):
    c = Client(port, args.timeout)
    try:
        got = []
        for i in range(10):
            c.send(HEAD if i % 3 == 2 else GET)
            got.append(ok_200(c.response(i % 3 == 2), i % 3 == 2))
        res.check(all(got), "keep-alive: 10 requests one after another on one connection", repr(got))
    finally:
        c.close()


def check_pipelined(port, args, res):
    kinds = [i % 4 == 1 for i in range(40)]  # True: HEAD
    c = Client(port, args.timeout)
    try:
        c.send(b"".join(HEAD if h else GET for h in kinds))
        got = [ok_200(c.response(h), h) for h in kinds]
        res.check(all(got), "pipelining: 40 GET/HEAD requests in one write, answered in order",
                  f"wrong answers at {[i for i, g in enumerate(got) if not g][:5]}")
    finally:
        c.close()


def check_split(port, args, res):
    stream = GET + HEAD + b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabcde" + GET
    c = Client(port, args.timeout)
    try:
        for b in stream:
            c.send(bytes([b]))
            time.sleep(args.byte_pause)  # pacing only, see the module docstring
        got = [ok_200(c.response()), ok_200(c.response(True), True), ok_200(c.response()),
               ok_200(c.response())]
        res.check(all(got), f"requests split one byte at a time ({len(stream)} writes), "
                  "a body among them", repr(got))
    finally:
        c.close()
    # Every split point of two pipelined requests, in two writes each.
    bad = []
    stream = GET + GET
    for cut in range(1, len(stream)):
        c = Client(port, args.timeout)
        try:
            c.send(stream[:cut])
            c.send(stream[cut:])
            if not (ok_200(c.response()) and ok_200(c.response())):
                bad.append(cut)
        except HttpError as e:
            bad.append((cut, str(e)))
        finally:
            c.close()
    res.check(not bad, f"two requests cut at each of {len(stream) - 1} points", repr(bad[:5]))


def check_body_skipped(port, args, res):
    c = Client(port, args.timeout)
    try:
        body = bytes(random.Random(8).randbytes(100000))
        c.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body) + body + GET)
        got = [ok_200(c.response()), ok_200(c.response())]
        res.check(all(got), "a 100 kB request body is skipped, the next request answered", repr(got))
    finally:
        c.close()


def check_close_requested(port, args, res):
    for what, req in (("HTTP/1.0 without keep-alive", b"GET / HTTP/1.0\r\n\r\n"),
                      ("Connection: close", b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")):
        c = Client(port, args.timeout)
        try:
            c.send(req)
            resp = c.response()
            closed = c.closed_by_server()
            res.check(ok_200(resp) and resp[1].get("connection") == "close" and closed is True,
                      f"{what}: 200, then the server closes", f"{resp!r}, {closed}")
        finally:
            c.close()
    c = Client(port, args.timeout)
    try:
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        resp = c.response()
        res.check(ok_200(resp) and resp[1].get("connection") == "keep-alive" and c.still_open(),
                  "HTTP/1.0 with Connection: keep-alive stays open", repr(resp))
    finally:
        c.close()


MALFORMED = [
    ("no version", b"GET /\r\n\r\n"),
    ("not a method", b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("unknown version", b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
    ("two spaces", b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("header without colon", b"GET / HTTP/1.1\r\nHost h\r\n\r\n"),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
    ("folded header", b"GET / HTTP/1.1\r\nHost: h\r\n x\r\n\r\n"),
    ("no Host in HTTP/1.1", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("bad Content-Length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n"),
    ("conflicting Content-Length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
                                   b"Content-Length: 2\r\n\r\nab"),
    ("stray CR", b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"),
    ("control byte in a value", b"GET / HTTP/1.1\r\nHost: h\x01\r\n\r\n"),
    ("binary garbage", bytes(random.Random(1).randbytes(3000)) + b"\r\n\r\n"),
    ("NUL bytes", b"\x00" * 100 + b"\n\n"),
]


def expect_status_and_close(c, status, what, res, head_request=False):
    try:
        resp = c.response(head_request)
    except HttpError as e:
        res.check(False, what, str(e))
        return
    closed = c.closed_by_server()
    res.check(resp[0] == status and resp[1].get("connection") == "close" and closed is True,
              what, f"{resp!r}, {closed}")


def check_malformed(port, args, res):
    for what, req in MALFORMED:
        c = Client(port, args.timeout)
        try:
            # A good request first: a bad one later on a connection is refused alike.
            c.send(GET + req + GET)
            if not ok_200(c.response()):
                res.check(False, f"malformed ({what})", "the good request before it failed")
                continue
            expect_status_and_close(c, 400, f"malformed ({what}): 400, then an orderly close", res)
        finally:
            c.close()


def check_oversized(port, args, res):
    big = b"X-Filler: " + b"a" * 9000 + b"\r\n"
    cases = [
        ("one 9 kB header, whole request in one write",
         [b"GET / HTTP/1.1\r\nHost: h\r\n" + big + b"\r\n"]),
        ("9 kB of headers in 1 kB writes, never ended",
         [b"GET / HTTP/1.1\r\nHost: h\r\n"] + [b"X: " + b"b" * 1000 + b"\r\n"] * 9),
        ("64 kB without a line end", [b"A" * 65536]),
    ]
    for what, writes in cases:
        c = Client(port, args.timeout)
        try:
            for w in writes:
                c.send(w)
            expect_status_and_close(c, 400, f"oversized ({what}): 400, then an orderly close", res)
        except OSError as e:
            res.check(False, f"oversized ({what})", repr(e))
        finally:
            c.close()
    # Just under the limit is fine.
    c = Client(port, args.timeout)
    try:
        req = b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"c" * 8000 + b"\r\n\r\n"
        c.send(req[:3000])
        c.send(req[3000:])
        res.check(ok_200(c.response()), f"a {len(req)}-byte head (under 8 KiB) in two writes is answered")
    finally:
        c.close()


def check_chunked(port, args, res):
    c = Client(port, args.timeout)
    try:
        c.send(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n")
        expect_status_and_close(c, 501, "chunked request body: 501, then an orderly close", res)
    finally:
        c.close()


def check_many(port, args, res):
    errors = []

    def one(i):
        try:
            c = Client(port, args.timeout)
            try:
                for _ in range(5):
                    c.send(GET * 10)
                    for _ in range(10):
                        if not ok_200(c.response()):
                            errors.append(f"conn {i}: wrong answer")
                            return
            finally:
                c.close()
        except (OSError, HttpError) as e:
            errors.append(f"conn {i}: {e}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res.check(not errors, f"{args.connections} connections at once, 50 pipelined requests each",
              "; ".join(errors[:5]))


def check_slow_peers(args, res):
    child = Child(args.program + ["--port", "0", "--idle-timeout", "1", "--head-timeout", "2"],
                  dict(os.environ), None)
    try:
        port = child.wait_listening(args.start_timeout)
        if not res.check(port is not None and port > 0,
                         "with short limits: starts and prints 'listening on port N'",
                         f"exit code {child.proc.poll()}, {child.diagnostics()}"):
            return
        # Idle: nothing sent; the library resets it between 1 and 1.25 s.
        s = socket.create_connection(("127.0.0.1", port), timeout=args.timeout)
        start = time.monotonic()
        try:
            ended = s.recv(1) == b""
        except ConnectionResetError:
            ended = True
        except socket.timeout:
            ended = False
        finally:
            s.close()
        took = time.monotonic() - start
        res.check(ended and took >= 0.9, "an idle connection is closed after the idle timeout",
                  f"{'ended' if ended else 'still open'} after {took:.2f}s")

        # Slowloris: a byte whenever 0.3 s pass without an answer, so the
        # connection is never idle for 1 s; the head deadline (2 s after its
        # first byte, counted in whole seconds) must end it within 3 s.
        c = Client(port, args.timeout)
        try:
            c.send(b"GET / HTTP/1.1\r\nHost: h\r\n")
            start = time.monotonic()
            sel = selectors.DefaultSelector()
            sel.register(c.sock, selectors.EVENT_READ)
            answered = False
            sent = 0
            while time.monotonic() - start < 10 and not answered:
                if sel.select(timeout=0.3):
                    answered = True  # the answer (or the close) is there
                else:
                    c.send(b"X")
                    sent += 1
            sel.close()
            took = time.monotonic() - start
            res.check(answered and took < 3.5,
                      "a head trickled a byte at a time is cut at the head deadline",
                      f"{'answered' if answered else 'no answer'} after {took:.2f}s, {sent} bytes")
            if answered:
                expect_status_and_close(c, 408, "the trickled head gets 408, then an orderly close",
                                        res)
        finally:
            c.close()
        child.close_stdin()
        code = child.wait(args.timeout)
        res.check(code == 0, "with short limits: exits with code 0 when stdin ends",
                  f"{'still running' if code is None else f'exit code {code}'}")
    finally:
        child.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="seconds allowed for each answer and for the exit")
    ap.add_argument("--start-timeout", type=float, default=60.0,
                    help="seconds allowed until 'listening on port N' (Wine's first start is slow)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--byte-pause", type=float, default=0.001,
                    help="pause between one-byte writes, seconds (pacing, not synchronisation)")
    args = parse_with_program(ap)

    res = Results(os.path.basename(args.program[-1]))
    child = Child(args.program + ["--port", "0"], dict(os.environ), None)
    try:
        port = child.wait_listening(args.start_timeout)
        if not res.check(port is not None and port > 0, "starts and prints 'listening on port N'",
                         f"exit code {child.proc.poll()}, {child.diagnostics()}"):
            return res.finish()
        for check in (check_simple_get, check_keep_alive, check_pipelined, check_split,
                      check_body_skipped, check_close_requested, check_malformed,
                      check_oversized, check_chunked, check_many):
            try:
                check(port, args, res)
            except (OSError, HttpError) as e:
                res.check(False, check.__name__, repr(e))

        idle = Client(port, args.timeout)  # open while the server stops
        try:
            child.close_stdin()
            code = child.wait(args.timeout)
            res.check(code == 0, "exits with code 0 when stdin ends, a connection still open",
                      f"{'still running' if code is None else f'exit code {code}'}, "
                      f"{child.diagnostics()}")
        finally:
            idle.close()
        if code is not None:
            ok, why = connect_refused(port, args.timeout)
            res.check(ok, f"nothing listens on port {port} afterwards", why)
        check_slow_peers(args, res)
    except Exception as e:  # a bug here must still show up as a failure
        res.check(False, "test harness", repr(e))
    finally:
        child.kill()
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
