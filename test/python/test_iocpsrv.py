"""pytest suite of the Python package (sample_clients/python/iocpsrv), in
both delivery modes, against the built library (LD_LIBRARY_PATH or
IOCPSRV_LIBRARY; conftest.py puts the package on sys.path). Every wait has
a deadline; nothing sleeps to synchronise.

    LD_LIBRARY_PATH=build/linux python3 -m pytest test/python
"""

import asyncio
import os
import re
import socket
import threading
import time

import pytest

import iocpsrv

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 30.0
MODES = ["queue", "callbacks"]


class Recorder:
    """Handlers that record every event and check the per-connection order:
    on_connect first, on_disconnect last and once, handlers never overlap."""

    def __init__(self, echo=True, refuse=False):
        self.lock = threading.Condition()
        self.echo = echo
        self.refuse = refuse
        self.state = {}          # id -> "open" | "ended"
        self.busy = set()
        self.events = []         # (kind, id, arg)
        self.violations = []
        self.errors = []

    def _enter(self, id, connecting=False):
        with self.lock:
            if connecting:
                if id in self.state:
                    self.violations.append(("id reused", id))
                self.state[id] = "open"
            elif self.state.get(id) != "open":
                self.violations.append(("event outside the connection's life", id))
            if id in self.busy:
                self.violations.append(("overlap", id))
            self.busy.add(id)

    def _leave(self, kind, id, arg):
        with self.lock:
            self.busy.discard(id)
            self.events.append((kind, id, arg))
            self.lock.notify_all()

    def handlers(self):
        return dict(on_connect=self.on_connect, on_data=self.on_data,
                    on_disconnect=self.on_disconnect, on_error=self.on_error)

    def on_connect(self, server, id, address, port):
        self._enter(id, connecting=True)
        if self.refuse:
            with self.lock:
                self.state[id] = "refused"
        self._leave("connect", id, (address, port))
        return not self.refuse

    def on_data(self, server, id, data):
        self._enter(id)
        assert isinstance(data, bytes) and data
        if self.echo:
            server.send(id, data)
        self._leave("data", id, data)

    def on_disconnect(self, server, id, reason):
        self._enter(id)
        with pytest.raises(iocpsrv.IocpError) as e:   # stale from here on
            server.send(id, b"x")
        assert e.value.code == iocpsrv.ENOTFOUND
        with self.lock:
            self.state[id] = "ended"
        self._leave("disconnect", id, reason)

    def on_error(self, server, where, exc):
        with self.lock:
            self.errors.append((where, exc))
            self.lock.notify_all()

    def wait(self, predicate):
        with self.lock:
            assert self.lock.wait_for(lambda: predicate(self), TIMEOUT), self.events

    def count(self, kind):
        return sum(1 for e in self.events if e[0] == kind)


def client(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.settimeout(TIMEOUT)
    return s


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "connection ended early"
        buf += chunk
    return buf


@pytest.mark.parametrize("mode", MODES)
def test_echo_and_lifecycle(mode):
    rec = Recorder()
    with iocpsrv.Server(port=0, mode=mode, **rec.handlers()) as server:
        socks = [client(server.port) for _ in range(20)]
        for i, s in enumerate(socks):
            for k in range(5):
                msg = f"{i}:{k};".encode()
                s.sendall(msg)
                assert recv_exact(s, len(msg)) == msg
        for s in socks:
            s.close()
        rec.wait(lambda r: r.count("disconnect") == 20)
        assert server.connection_count == 0
    assert rec.count("connect") == 20
    assert all(r == iocpsrv.REASON_PEER_CLOSED for k, _, r in rec.events if k == "disconnect")
    assert not rec.violations and not rec.errors


@pytest.mark.parametrize("mode", MODES)
def test_destroy_delivers_every_disconnect(mode):
    rec = Recorder()
    server = iocpsrv.Server(port=0, mode=mode, **rec.handlers())
    socks = [client(server.port) for _ in range(10)]
    rec.wait(lambda r: r.count("connect") == 10)
    server.destroy()
    n = len(rec.events)
    assert rec.count("disconnect") == 10
    assert all(r == iocpsrv.REASON_DESTROY for k, _, r in rec.events if k == "disconnect")
    assert server.closed
    server.destroy()  # a no-op
    assert len(rec.events) == n  # nothing after destroy
    for s in socks:
        s.close()
    assert not rec.violations


@pytest.mark.parametrize("mode", MODES)
def test_refusal_gets_no_other_handler(mode):
    rec = Recorder(refuse=True)
    with iocpsrv.Server(port=0, mode=mode, **rec.handlers()) as server:
        try:
            s = client(server.port)   # the reset may already end the connect
            rec.wait(lambda r: r.count("connect") == 1)
            s.sendall(b"hello")
            assert s.recv(10) == b""   # a reset, or (Wine) an end
            s.close()
        except ConnectionError:
            pass
        rec.wait(lambda r: r.count("connect") == 1)
    assert rec.count("disconnect") == 0 and rec.count("data") == 0
    assert not rec.violations


@pytest.mark.parametrize("mode", MODES)
def test_exceptions_go_to_on_error(mode):
    rec = Recorder()

    def on_data(server, id, data):
        raise RuntimeError("boom")

    handlers = rec.handlers()
    handlers["on_data"] = on_data
    with iocpsrv.Server(port=0, mode=mode, **handlers) as server:
        s = client(server.port)
        s.sendall(b"x")
        rec.wait(lambda r: r.errors)
        s.sendall(b"y")   # the server still serves
        rec.wait(lambda r: len(r.errors) == 2)
        s.close()
    assert rec.errors[0][0] == "on_data"
    assert isinstance(rec.errors[0][1], RuntimeError)


@pytest.mark.parametrize("mode", MODES)
def test_destroy_inside_a_handler_is_refused(mode):
    outcome = []
    done = threading.Event()

    def on_data(server, id, data):
        try:
            server.destroy()
        except iocpsrv.IocpError as e:
            outcome.append(e.code)
        done.set()

    with iocpsrv.Server(port=0, mode=mode, on_data=on_data) as server:
        s = client(server.port)
        s.sendall(b"x")
        assert done.wait(TIMEOUT)
        assert not server.closed
        s.close()
    assert outcome == [iocpsrv.EINCALLBACK]


def test_serve_forever_on_the_callers_thread():
    rec = Recorder()
    server = iocpsrv.Server(port=0, thread=False, **rec.handlers())
    t = threading.Thread(target=server.serve_forever)
    t.start()
    s = client(server.port)
    s.sendall(b"abc")
    assert recv_exact(s, 3) == b"abc"
    with pytest.raises(iocpsrv.IocpError) as e:   # one drainer at a time
        server.serve_forever()
    assert e.value.code == iocpsrv.EBUSY
    server.destroy()   # from another thread: the loop delivers the rest, ends
    t.join(TIMEOUT)
    assert not t.is_alive()
    assert rec.count("disconnect") == 1
    s.close()


def test_destroy_without_a_drainer_still_delivers():
    rec = Recorder()
    server = iocpsrv.Server(port=0, thread=False, **rec.handlers())
    s = client(server.port)
    deadline = time.monotonic() + TIMEOUT
    while server.connection_count == 0:   # accepted (its event is queued)
        assert time.monotonic() < deadline
    server.destroy()   # drains here: on_connect, then on_disconnect(DESTROY)
    assert [k for k, _, _ in rec.events] == ["connect", "disconnect"]
    s.close()


def test_asyncio_handlers_may_await():
    order = {}

    async def on_data(server, id, data):
        await asyncio.sleep(0)
        order.setdefault(id, []).append(data)
        server.send(id, data)

    async def main():
        server = iocpsrv.Server(port=0, thread=False, on_data=on_data)
        serving = asyncio.ensure_future(server.serve_async())
        loop = asyncio.get_running_loop()

        def talk():
            s = client(server.port)
            got = b""
            for k in range(20):
                msg = f"<{k}>".encode()
                s.sendall(msg)
                got += recv_exact(s, len(msg))
            s.close()
            return got

        results = await asyncio.wait_for(
            asyncio.gather(*[loop.run_in_executor(None, talk) for _ in range(4)]), TIMEOUT)
        await server.aclose()
        await asyncio.wait_for(serving, TIMEOUT)
        return results

    results = asyncio.run(main())
    want = b"".join(f"<{k}>".encode() for k in range(20))
    assert results == [want] * 4
    for chunks in order.values():   # in order per connection
        assert b"".join(chunks) == want


def test_asyncio_refusal_context_and_graceful_stop():
    """serve_async: a refusal gets no other handler; the context set in
    on_connect is there in an awaiting on_disconnect; astop() ends every
    connection gracefully while the loop keeps running the handlers."""
    seen = []

    def on_connect(server, id, address, port):
        if len(seen) == 0:
            seen.append(("refused", id))
            return False
        server.set_context(id, {"id": id})
        seen.append(("kept", id))
        return None

    async def on_disconnect(server, id, reason):
        await asyncio.sleep(0)
        seen.append(("end", id, reason, server.context(id)))

    async def main():
        server = iocpsrv.Server(port=0, thread=False, on_connect=on_connect,
                                on_disconnect=on_disconnect,
                                on_data=lambda srv, id, data: srv.send(id, data))
        serving = asyncio.ensure_future(server.serve_async())
        loop = asyncio.get_running_loop()

        def refused_then_kept():
            try:
                with client(server.port) as s:
                    assert s.recv(10) == b""
            except ConnectionError:
                pass
            s = client(server.port)
            s.sendall(b"hi")
            assert recv_exact(s, 2) == b"hi"
            return s

        s = await asyncio.wait_for(loop.run_in_executor(None, refused_then_kept), TIMEOUT)
        # The peer reads to the end (the server's FIN), then closes: graceful.
        closer = loop.run_in_executor(None, lambda: (s.recv(10), s.close()))
        assert await asyncio.wait_for(server.astop(TIMEOUT), TIMEOUT) == 0
        await closer
        await asyncio.wait_for(serving, TIMEOUT)
        server.destroy()
        assert server._contexts == {}

    asyncio.run(main())
    kept = [e[1] for e in seen if e[0] == "kept"]
    assert [e[0] for e in seen] == ["refused", "kept", "end"]
    assert seen[2] == ("end", kept[0], iocpsrv.REASON_PEER_CLOSED, {"id": kept[0]})


def test_bad_arguments():
    with pytest.raises(ValueError):
        iocpsrv.Server(port=0, mode="poll")
    with pytest.raises(ValueError):
        iocpsrv.Server(port=70000)
    with iocpsrv.Server(port=0) as server:
        with pytest.raises(iocpsrv.IocpError) as e:
            server.send(12345678, b"x")
        assert e.value.code == iocpsrv.ENOTFOUND
    with pytest.raises(ValueError):
        server.send(1, b"x")   # destroyed


def test_constants_match_the_header():
    header = open(os.path.join(TOP, "api", "iocpsrv.h"), encoding="utf-8").read()
    for name, code in re.findall(r"X\((\w+),\s*(-\d+),", header):
        assert getattr(iocpsrv, name) == int(code), name
    for name, value in re.findall(r"IOCP_(EVENT_\w+|REASON_\w+|DELIVERY_\w+) = (\d+)", header):
        assert getattr(iocpsrv, name) == int(value), name
    assert iocpsrv.EVENT_SIZE == 40
    assert iocpsrv.LOG_QUEUE_MAX == int(re.search(r"IOCP_LOG_QUEUE_MAX (\d+)", header).group(1))
    assert iocpsrv.VERSION_NUMBER == int(
        re.search(r"IOCP_VERSION_MINOR (\d+)", header).group(1)) << 8 | 1 << 16
    # The package's version is the header's (which is meson.build's).
    assert iocpsrv.__version__ == ".".join(
        re.search(rf"IOCP_VERSION_{part} (\d+)", header).group(1)
        for part in ("MAJOR", "MINOR", "PATCH"))


def test_asyncio_slow_handler_slows_its_peer():
    """serve_async: an on_data coroutine that awaits 10 ms per chunk against
    a client sending as fast as it can for 2 s: the connection is paused in
    the library while the handler runs, so the server's memory stays small,
    and every byte arrives in order; aclose() returns promptly."""
    import hashlib

    def rss():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024

    got = hashlib.sha256()
    count = [0]

    async def on_data(server, id, data):
        got.update(data)
        count[0] += len(data)
        await asyncio.sleep(0.01)

    async def main():
        server = iocpsrv.Server(port=0, thread=False, on_data=on_data)
        serving = asyncio.ensure_future(server.serve_async())
        base = rss()
        sent = hashlib.sha256()
        total = [0]

        def talk():
            with client(server.port) as s:
                end = time.monotonic() + 2
                i = 0
                while time.monotonic() < end:
                    block = i.to_bytes(8, "little") * 8192
                    s.sendall(block)
                    sent.update(block)
                    total[0] += len(block)
                    i += 1

        th = threading.Thread(target=talk, daemon=True)
        th.start()
        growth = 0
        while th.is_alive():
            await asyncio.sleep(0.05)
            growth = max(growth, rss() - base)
        th.join()
        deadline = time.monotonic() + TIMEOUT
        while count[0] < total[0] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        await server.aclose()
        await asyncio.wait_for(serving, TIMEOUT)
        assert time.monotonic() - t0 < 2
        assert count[0] == total[0]
        assert got.digest() == sent.digest()
        assert growth < 64 << 20, growth

    asyncio.run(main())


@pytest.mark.parametrize("mode", MODES)
def test_echo_sample_pauses_a_peer_that_does_not_read(mode):
    """The echo sample slows a peer that sends 32 MiB without reading (its
    queue stops at 1 MiB, then receiving pauses) instead of cutting it off:
    once the peer reads, every byte comes back in order."""
    import subprocess
    import sys
    sample = os.path.join(TOP, "sample_clients", "python", "echo_server.py")
    p = subprocess.Popen([sys.executable, sample, "--port", "0", "--mode", mode],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(p.stdout.readline().split()[-1])
        s = client(port)
        block = bytes(range(256)) * 256
        total = 32 << 20
        sent = [0]

        def write():
            for _ in range(total // len(block)):
                s.sendall(block)
                sent[0] += len(block)

        th = threading.Thread(target=write, daemon=True)
        th.start()
        # Wait until the writer stalls (the server stopped reading) or ends.
        last, still = -1, time.monotonic()
        while th.is_alive() and time.monotonic() - still < 0.5:
            if sent[0] != last:
                last, still = sent[0], time.monotonic()
            time.sleep(0.02)
        assert sent[0] < total      # paused: the peer was slowed
        got = recv_exact(s, total)
        assert got == block * (total // len(block))
        th.join(TIMEOUT)
        s.close()
    finally:
        p.stdin.close()
        p.wait(TIMEOUT)


def test_asyncio_stop_and_aclose_are_idempotent():
    async def main():
        server = iocpsrv.Server(port=0, thread=False)
        serving = asyncio.ensure_future(server.serve_async())
        await asyncio.sleep(0)
        assert await asyncio.wait_for(server.astop(1), TIMEOUT) == 0
        assert await asyncio.wait_for(server.astop(1), TIMEOUT) == 0
        await asyncio.wait_for(serving, TIMEOUT)
        await server.aclose()
        await server.aclose()
        assert server.closed

    asyncio.run(main())
