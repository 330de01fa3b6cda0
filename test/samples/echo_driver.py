#!/usr/bin/env python3
"""Black-box test of a sample echo server, with a real TCP client.

    echo_driver.py [options] -- PROGRAM [ARGS...]

The program is one of the samples (C echo_server, C dynamic_load, Python
echo_server.py, C# EchoServer.exe; natively or through `wine`) and must follow
the samples' command-line contract: `--port 0` picks a free port, the line
"listening on port N" is printed (and flushed) when ready, and the program
exits with 0 once its standard input ends.

Checks, one output line each:
  1. it starts and prints "listening on port N" (within --start-timeout)
  2. 100 connections at once, each echoing 32 KiB byte-exact, each ending
     with a graceful close (our FIN, then the server's FIN)
  3. one 1 MiB transfer echoed byte-exact
  4. with stdin closed it exits with code 0 (within --timeout)
  5. nothing listens on the port any more: a connect is refused
  6. with --expect-backpressure: a client that writes 32 MiB without
     reading is held back by TCP flow control (the server stops receiving
     while its echo queue is long), not cut off: once it reads, every byte
     comes back in order and the connection ends with the server's FIN
  7. with --expect-stats: it printed "served N connections, I bytes in, O
     bytes out" (from iocp_stats) counting every connection and byte above

With --expect-no-library the program is run from an empty folder with
LD_LIBRARY_PATH / WINEPATH pointing only to an empty folder (or to
--library-dir, e.g. one holding a library of the wrong version) and must fail
cleanly instead: exit code 1, nothing on stdout, a message on stderr that
contains --expect-message (default "iocpsrv").

Ends with "N passed, M failed"; the exit code is 1 when anything failed.
Every wait has a deadline; nothing is synchronised by sleeping.
Python 3.11 standard library only.
"""

import argparse
import os
import queue
import random
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time

LISTENING = re.compile(rb"listening on port (\d+)")


class Results:
    def __init__(self, label):
        self.label = label
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {self.label}: {what}", flush=True)
        else:
            self.failed += 1
            suffix = f": {detail}" if detail else ""
            print(f"FAIL {self.label}: {what}{suffix}", flush=True)
        return ok

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed else 0


class Child:
    """The server process, with its stdout lines in a queue and its stderr
    collected by a background thread (so neither pipe can fill and block)."""

    def __init__(self, argv, env, cwd):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, cwd=cwd)
        self.lines = queue.Queue()
        self.stdout = []
        self.stderr = []
        self.drains = []
        for pipe, sink, q in ((self.proc.stdout, self.stdout, self.lines),
                              (self.proc.stderr, self.stderr, None)):
            t = threading.Thread(target=self._drain, args=(pipe, sink, q), daemon=True)
            t.start()
            self.drains.append(t)

    @staticmethod
    def _drain(pipe, sink, q):
        for line in iter(pipe.readline, b""):
            sink.append(line)
            if q is not None:
                q.put(line)
        if q is not None:
            q.put(None)  # end of output

    def wait_listening(self, timeout):
        """The port from the "listening on port N" line, or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            m = LISTENING.search(line)
            if m:
                return int(m.group(1))

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def join_output(self, timeout):
        """After the exit: waits (bounded) until both pipes reached their end,
        so that the last bytes written are in self.stdout / self.stderr. A
        pipe inherited by a grandchild (wineserver) only costs the timeout."""
        deadline = time.monotonic() + timeout
        for t in self.drains:
            t.join(max(0.0, deadline - time.monotonic()))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def diagnostics(self):
        err = b"".join(self.stderr).decode(errors="replace").strip()
        return f"stderr: {err[-2000:]!r}" if err else "stderr empty"


def echo_exchange(port, payloads, timeout):
    """Opens one connection per payload, all at once, and drives them with
    one selector: write the payload, read the echo, then half-close and wait
    for the server's FIN. Returns a list of error strings (empty = success)."""
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    errors = []
    states = []
    try:
        for i, payload in enumerate(payloads):
            s = socket.create_connection(("127.0.0.1", port), timeout=max(1.0, timeout))
            s.setblocking(False)
            st = {"i": i, "sock": s, "out": memoryview(payload), "want": payload,
                  "got": bytearray(), "shut": False, "done": False}
            states.append(st)
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, st)

        open_count = len(states)
        while open_count:
            left = deadline - time.monotonic()
            if left <= 0:
                pending = [st["i"] for st in states if not st["done"]]
                errors.append(f"timed out; connections not finished: {len(pending)} "
                              f"(first {pending[:5]}, got {[len(states[j]['got']) for j in pending[:5]]} bytes)")
                break
            for key, mask in sel.select(timeout=left):
                st = key.data
                s = st["sock"]
                if mask & selectors.EVENT_WRITE and st["out"]:
                    n = 0
                    try:
                        n = s.send(st["out"][:65536])
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        errors.append(f"conn {st['i']}: send: {e}")
                        st["done"] = True
                    st["out"] = st["out"][n:]
                    if not st["out"] and not st["done"]:
                        # Everything written: half-close and stop asking for writability.
                        s.shutdown(socket.SHUT_WR)
                        st["shut"] = True
                        sel.modify(s, selectors.EVENT_READ, st)
                if mask & selectors.EVENT_READ and not st["done"]:
                    try:
                        chunk = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        errors.append(f"conn {st['i']}: recv after {len(st['got'])} bytes: {e}")
                        chunk = None
                    if chunk:
                        st["got"] += chunk
                        if len(st["got"]) > len(st["want"]):
                            errors.append(f"conn {st['i']}: more bytes echoed than sent")
                            st["done"] = True
                    else:
                        # FIN (or error): the echo must be complete and exact.
                        if chunk is not None and st["got"] != st["want"]:
                            errors.append(f"conn {st['i']}: echo differs "
                                          f"({len(st['got'])} of {len(st['want'])} bytes back"
                                          f"{'' if st['shut'] else ', FIN before we finished sending'})")
                        st["done"] = True
                if st["done"]:
                    sel.unregister(s)
                    s.close()
                    open_count -= 1
    except OSError as e:
        errors.append(f"connect: {e}")
    finally:
        for st in states:
            if not st["done"]:
                try:
                    sel.unregister(st["sock"])
                except (KeyError, ValueError):
                    pass
                st["sock"].close()
        sel.close()
    return errors


FAST_WRITER_BYTES = 32 * 1024 * 1024


def fast_writer(port, payload, timeout):
    """One client writes `payload` without reading until its socket stays
    unwritable for half a second (TCP flow control holds it back), then
    reads the echo while it writes the rest, half-closes and waits for the
    server's FIN. Small socket buffers on our side, set before connecting,
    keep what the kernels can hold well below the payload. Returns (held
    back, list of error strings)."""
    deadline = time.monotonic() + timeout
    errors = []
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sel = selectors.DefaultSelector()
    held = False
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        s.settimeout(max(1.0, timeout))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        out = memoryview(payload)
        sel.register(s, selectors.EVENT_WRITE)
        while out and time.monotonic() < deadline:
            if not sel.select(timeout=0.5):
                held = True  # unwritable for 0.5 s: held back
                break
            try:
                out = out[s.send(out[:65536]):]
            except BlockingIOError:
                pass
        got = bytearray()
        sel.modify(s, selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0))
        shut = False
        while time.monotonic() < deadline:
            if not out and not shut:
                s.shutdown(socket.SHUT_WR)
                shut = True
                sel.modify(s, selectors.EVENT_READ)
            ready = sel.select(timeout=max(0.0, deadline - time.monotonic()))
            for _key, mask in ready:
                if mask & selectors.EVENT_WRITE and out:
                    try:
                        out = out[s.send(out[:65536]):]
                    except BlockingIOError:
                        pass
                if mask & selectors.EVENT_READ:
                    try:
                        chunk = s.recv(65536)
                    except BlockingIOError:
                        continue
                    if not chunk:  # the server's FIN
                        if got != payload:
                            errors.append(f"echo differs ({len(got)} of {len(payload)} bytes back)")
                        return held, errors
                    got += chunk
        errors.append(f"timed out with {len(got)} of {len(payload)} bytes back")
    except OSError as e:
        errors.append(f"cut off: {e}")
    finally:
        sel.close()
        s.close()
    return held, errors


def connect_refused(port, timeout):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return True, ""
    except OSError as e:
        return False, f"connect failed otherwise: {e}"
    s.close()
    return False, "a connection was accepted"


def run_echo_checks(args, res):
    env = dict(os.environ)
    child = Child(args.program + ["--port", "0"], env, None)
    try:
        port = child.wait_listening(args.start_timeout)
        if not res.check(port is not None and port > 0, "starts and prints 'listening on port N'",
                         f"no such line within {args.start_timeout}s (exit code "
                         f"{child.proc.poll()}, {child.diagnostics()})"):
            return

        rng = random.Random(20240501)
        payloads = [rng.randbytes(32 * 1024) for _ in range(args.connections)]
        errors = echo_exchange(port, payloads, args.timeout)
        res.check(not errors, f"{args.connections} concurrent connections x 32 KiB echoed byte-exact",
                  "; ".join(errors[:5]))

        errors = echo_exchange(port, [rng.randbytes(1024 * 1024)], args.timeout)
        res.check(not errors, "1 MiB transfer echoed byte-exact", "; ".join(errors[:5]))
        connections, total = args.connections + 1, sum(len(p) for p in payloads) + 1024 * 1024

        if args.expect_backpressure:
            held, errors = fast_writer(port, rng.randbytes(FAST_WRITER_BYTES), args.timeout)
            res.check(held and not errors,
                      "a client writing 32 MiB without reading is slowed, not cut off",
                      "; ".join(errors[:5]) or "never held back")
            connections, total = connections + 1, total + FAST_WRITER_BYTES

        child.close_stdin()
        code = child.wait(args.timeout)
        res.check(code == 0, "exits with code 0 when stdin ends",
                  f"{'still running' if code is None else f'exit code {code}'}"
                  f" after {args.timeout}s, {child.diagnostics()}")

        if args.expect_stats:
            check_stats_line(child, res, connections, total, args.timeout)

        if code is not None:
            ok, why = connect_refused(port, args.timeout)
            res.check(ok, f"nothing listens on port {port} afterwards", why)
        else:
            res.check(False, f"nothing listens on port {port} afterwards", "server did not exit")
    finally:
        child.kill()


STATS = re.compile(rb"served (\d+) connections, (\d+) bytes in, (\d+) bytes out")


def check_stats_line(child, res, connections, total, timeout):
    """The sample's statistics line agrees with what this test did."""
    child.join_output(timeout)
    found = [STATS.search(line) for line in child.stdout]
    found = [m for m in found if m]
    want = (connections, total, total)
    got = tuple(int(x) for x in found[-1].groups()) if found else None
    res.check(got == want, "its statistics count every connection and byte",
              f"printed {got}, expected (connections, in, out) = {want}")


def wine_path(path):
    return "Z:" + os.path.abspath(path).replace("/", "\\")


def run_missing_library_check(args, res):
    what = "is incompatible" if args.library_dir else "cannot be found"
    with tempfile.TemporaryDirectory(prefix="iocpsrv-nolib-") as empty:
        libdir = os.path.abspath(args.library_dir) if args.library_dir else empty
        env = dict(os.environ)
        env.pop("IOCPSRV_LIBRARY", None)
        env["LD_LIBRARY_PATH"] = libdir
        env["WINEPATH"] = wine_path(libdir)
        # An empty working folder too: Windows (and Wine) also search the
        # current directory for DLLs.
        child = Child(args.program + ["--port", "0"], env, empty)
        try:
            child.close_stdin()
            code = child.wait(args.start_timeout)
            res.check(code == 1, f"exits with code 1 when the library {what}",
                      f"{'still running' if code is None else f'exit code {code}'}, "
                      f"{child.diagnostics()}")
            child.join_output(args.timeout)
            stderr = b"".join(child.stderr).decode(errors="replace")
            res.check(not any(LISTENING.search(line) for line in child.stdout),
                      "does not claim to listen")
            res.check(args.expect_message in stderr,
                      f"says on stderr that the iocpsrv library {what} "
                      f"(mentions {args.expect_message!r})",
                      child.diagnostics())
        finally:
            child.kill()


def parse_with_program(ap):
    """Parses the options of `ap` followed by `-- PROGRAM [ARGS...]` (args.program)."""
    ap.add_argument("program", nargs=argparse.REMAINDER, help="the server's command line")
    args = ap.parse_args()
    if args.program and args.program[0] == "--":
        args.program = args.program[1:]
    if not args.program:
        ap.error("no program given")
    # Meson passes build paths relative to its working folder; the
    # no-library check runs the program from elsewhere.
    args.program = [os.path.abspath(a) if os.path.isfile(a) else a for a in args.program]
    return args


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--label", default=None, help="name printed with each check")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds allowed for each exchange and for the exit")
    ap.add_argument("--start-timeout", type=float, default=60.0,
                    help="seconds allowed until 'listening on port N' (Wine's first start is slow)")
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--expect-stats", action="store_true",
                    help="check the 'served N connections, I bytes in, O bytes out' line at exit")
    ap.add_argument("--expect-backpressure", action="store_true",
                    help="check that a client writing without reading is slowed, not cut off")
    ap.add_argument("--expect-no-library", action="store_true",
                    help="check the clean refusal to start without the library instead")
    ap.add_argument("--library-dir", default=None,
                    help="with --expect-no-library: the only library folder (default: an empty one)")
    ap.add_argument("--expect-message", default="iocpsrv",
                    help="with --expect-no-library: text stderr must contain")
    args = parse_with_program(ap)

    label = args.label or os.path.basename(args.program[-1])
    res = Results(label)
    try:
        if args.expect_no_library:
            run_missing_library_check(args, res)
        else:
            run_echo_checks(args, res)
    except Exception as e:  # a bug here must still show up as a failure
        res.check(False, "test harness", repr(e))
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
