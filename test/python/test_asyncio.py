"""asyncio's server API on the core (iocpsrv.create_server, start_server,
install): transports and protocols as asyncio's own, streams, backpressure,
cancellation and stopping. Every wait has a deadline.

    LD_LIBRARY_PATH=build/linux python3 -m pytest test/python/test_asyncio.py
"""

import asyncio
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import iocpsrv
from conftest import echo_round_trips

TIMEOUT = 20.0
HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "..", "..", "sample_clients", "python")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def port_of(server):
    return server.sockets[0].getsockname()[1]


class Recorder(asyncio.Protocol):
    """Echoes and records the callbacks in order."""

    def __init__(self, log, keep_open=False):
        self.log = log
        self.keep_open = keep_open
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.log.append("made")

    def data_received(self, data):
        self.log.append(("data", data))
        self.transport.write(data)

    def eof_received(self):
        self.log.append("eof")
        if self.keep_open:
            self.transport.write(b"bye")
            self.transport.close()
        return self.keep_open

    def connection_lost(self, exc):
        self.log.append(("lost", exc))
        self.lost.set_result(exc)


@pytest.mark.parametrize("keep_open", [False, True])
def test_protocol_callbacks_as_asyncio(keep_open):
    async def main():
        log, protos = [], []

        def factory():
            protos.append(Recorder(log, keep_open))
            return protos[-1]

        async with await iocpsrv.create_server(factory, "127.0.0.1", 0) as server:
            assert server.is_serving()
            assert isinstance(server, asyncio.AbstractServer)
            r, w = await asyncio.open_connection("127.0.0.1", port_of(server))
            w.write(b"ping")
            assert await r.readexactly(4) == b"ping"
            t = protos[0].transport
            assert isinstance(t, asyncio.Transport)
            assert t.get_extra_info("peername") == w.get_extra_info("sockname")
            assert t.get_extra_info("sockname") == w.get_extra_info("peername")
            assert t.get_protocol() is protos[0]
            assert t.is_reading() and not t.is_closing() and t.can_write_eof()
            assert t.get_write_buffer_limits() == (16384, 65536)
            t.set_write_buffer_limits(high=1000)
            assert t.get_write_buffer_limits() == (250, 1000)
            assert t.get_write_buffer_size() == 0
            w.write_eof()
            rest = await r.read()
            assert rest == (b"bye" if keep_open else b"")
            assert await asyncio.wait_for(protos[0].lost, TIMEOUT) is None
            w.close()
        assert log == ["made", ("data", b"ping"), "eof", ("lost", None)]
        assert server._native.closed and not server.is_serving() and server.sockets == ()
    run(main())


def test_streams_readline_readexactly_drain():
    async def handle(reader, writer):
        while True:
            line = await reader.readline()
            if not line:
                break
            n = int(line)
            body = await reader.readexactly(n)
            writer.write(hashlib.sha256(body).hexdigest().encode() + b"\n")
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await iocpsrv.start_server(handle, "127.0.0.1", 0)
        r, w = await asyncio.open_connection("127.0.0.1", port_of(server))
        bodies = [os.urandom(n) for n in (0, 1, 1000, 300000)]
        for b in bodies:
            w.write(b"%d\n" % len(b) + b)
        w.write_eof()
        for b in bodies:
            assert (await r.readline()).strip() == hashlib.sha256(b).hexdigest().encode()
        assert await r.read() == b""
        w.close()
        await server.stop(1)
        assert server._native.closed
    run(main())


def test_localhost_name_is_resolved():
    async def main():
        server = await iocpsrv.create_server(asyncio.Protocol, "localhost", 0)
        assert server.sockets[0].getsockname()[0] in ("127.0.0.1", "::1")
        server.close()
        await server.wait_closed()
    run(main())


def test_port_in_use_is_an_oserror():
    async def main():
        server = await iocpsrv.create_server(asyncio.Protocol, "127.0.0.1", 0)
        with pytest.raises(OSError) as e:
            await iocpsrv.create_server(asyncio.Protocol, "127.0.0.1", port_of(server))
        import errno
        assert e.value.errno == errno.EADDRINUSE
        server.close()
        await server.wait_closed()
    run(main())


def test_close_is_idempotent_and_stop_has_a_deadline():
    async def main():
        server = await iocpsrv.create_server(asyncio.Protocol, "127.0.0.1", 0)
        r, w = await asyncio.open_connection("127.0.0.1", port_of(server))
        await asyncio.sleep(0)
        while not server._conns:
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        await server.stop(0.3)       # the peer never closes: aborted at the deadline
        assert 0.25 < time.monotonic() - t0 < 2
        assert server._native.closed
        server.close()
        server.close()
        await server.wait_closed()
        await server.wait_closed()
        await server.stop(1)
        w.close()
    run(main())


def test_write_to_closing_transport_warns_not_raises(caplog):
    async def main():
        got = asyncio.get_running_loop().create_future()

        class P(asyncio.Protocol):
            def connection_made(self, t):
                t.close()
                for _ in range(8):
                    t.write(b"x")    # ignored; a warning after a few
                got.set_result(True)

        server = await iocpsrv.create_server(P, "127.0.0.1", 0)
        r, w = await asyncio.open_connection("127.0.0.1", port_of(server))
        await got
        assert await r.read() == b""
        w.close()
        await server.stop(1)
    with caplog.at_level(logging.WARNING, logger="iocpsrv"):
        run(main())
    assert "socket.send() raised exception." in caplog.text


def test_slow_reader_bounds_memory_and_loses_nothing():
    # A handler that awaits 10 ms per chunk against a client sending as fast
    # as it can: the reader's limit pauses the connection in the library,
    # the server's memory stays small, every byte arrives in order.
    def rss():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024

    async def main():
        digest = hashlib.sha256()
        received = [0]
        peak = [0]
        done = asyncio.get_running_loop().create_future()

        async def handle(reader, writer):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                digest.update(chunk)
                received[0] += len(chunk)
                peak[0] = max(peak[0], len(reader._buffer))
                await asyncio.sleep(0.01)
            writer.close()
            done.set_result(None)

        server = await iocpsrv.start_server(handle, "127.0.0.1", 0, limit=65536)
        base = rss()
        sent = hashlib.sha256()
        total = [0]

        def client():
            with socket.create_connection(("127.0.0.1", port_of(server)), TIMEOUT) as s:
                end = time.monotonic() + 2
                i = 0
                while time.monotonic() < end:
                    block = i.to_bytes(8, "little") * 8192
                    s.sendall(block)
                    sent.update(block)
                    total[0] += len(block)
                    i += 1
                s.shutdown(socket.SHUT_WR)
                s.recv(1)

        th = threading.Thread(target=client, daemon=True)
        th.start()
        growth = 0
        while not done.done():
            await asyncio.sleep(0.05)
            growth = max(growth, rss() - base)
            if not th.is_alive():
                break
        await asyncio.wait_for(done, TIMEOUT)
        th.join(TIMEOUT)
        assert received[0] == total[0]
        assert digest.digest() == sent.digest()
        assert growth < 64 << 20, growth
        assert peak[0] <= 2 * 65536 + 65536 * 2, peak[0]
        await server.stop(1)
    run(main())


def test_cancelling_serve_forever_releases_within_a_second():
    async def main():
        server = await iocpsrv.create_server(asyncio.Protocol, "127.0.0.1", 0)
        r, w = await asyncio.open_connection("127.0.0.1", port_of(server))
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)       # serving
        while not server._conns:
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 1
        assert server._native.closed
        try:
            assert await r.read() == b""   # aborted: FIN or reset
        except ConnectionResetError:
            pass
        w.close()
    run(main())


def test_timeout_ends_serving_within_a_second():
    async def main():
        server = await iocpsrv.create_server(asyncio.Protocol, "127.0.0.1", 0)
        t0 = time.monotonic()
        if sys.version_info >= (3, 11):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    async with server:
                        await server.serve_forever()
        else:   # before 3.11: the same through wait_for
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(server.serve_forever(), 0.2)
        assert time.monotonic() - t0 < 1.2
        assert server._native.closed
    run(main())


def test_failing_sibling_task_ends_serving_within_a_second():
    async def main():
        server = await iocpsrv.create_server(asyncio.Protocol, "127.0.0.1", 0)

        async def fail():
            await asyncio.sleep(0.1)
            raise ValueError("sibling failed")

        t0 = time.monotonic()
        if sys.version_info >= (3, 11):
            with pytest.raises(BaseException) as e:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(server.serve_forever())
                    tg.create_task(fail())
            assert e.group_contains(ValueError) if hasattr(e, "group_contains") else True
        else:   # before 3.11: gather, cancelling the rest on failure
            serving = asyncio.ensure_future(server.serve_forever())
            with pytest.raises(ValueError):
                await asyncio.gather(serving, fail())
            serving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await serving
        assert time.monotonic() - t0 < 1.1
        assert server._native.closed
    run(main())


def test_ctrl_c_under_asyncio_run_ends_within_a_second():
    program = textwrap.dedent("""
        import asyncio, sys, iocpsrv
        async def main():
            server = await iocpsrv.start_server(lambda r, w: None, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            try:
                # The port is printed once serving (Ctrl-C may come at once).
                asyncio.get_running_loop().call_soon(lambda: print(port, flush=True))
                await server.serve_forever()
            finally:
                print("released" if server._native.closed else "held", flush=True)
        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=PACKAGE)
    p = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, env=env,
                         text=True)
    try:
        port = int(p.stdout.readline())
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=TIMEOUT)
        assert time.monotonic() - t0 < 1.5
        assert "released" in out and "interrupted" in out, out
    finally:
        p.kill()
        p.wait()


def test_install_routes_asyncio_start_server():
    async def handle(reader, writer):
        writer.write(await reader.readexactly(3))
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        assert isinstance(server, iocpsrv.IocpServer)
        r, w = await asyncio.open_connection("127.0.0.1", port_of(server))
        w.write(b"abc")
        assert await r.read() == b"abc"
        w.close()
        await server.stop(1)

    iocpsrv.run(asyncio.wait_for(main(), TIMEOUT))
    assert not isinstance(asyncio.get_event_loop_policy(), iocpsrv.IocpEventLoopPolicy)


def test_pause_writing_and_resume_writing_follow_the_buffer():
    async def main():
        events = []
        state = {}

        class Producer(asyncio.Protocol):
            def connection_made(self, t):
                self.t = t
                t.set_write_buffer_limits(high=256 << 10)
                while not events:
                    t.write(b"z" * 65536)
                state["written"] = t.get_write_buffer_size()

            def pause_writing(self):
                events.append("pause")

            def resume_writing(self):
                events.append("resume")
                self.t.close()

        server = await iocpsrv.create_server(Producer, "127.0.0.1", 0)
        r, w = await asyncio.open_connection("127.0.0.1", port_of(server))
        while not events:
            await asyncio.sleep(0.01)
        got = len(await r.read())
        assert events == ["pause", "resume"]
        assert got >= state["written"] > 256 << 10
        w.close()
        await server.stop(1)
    run(main())


def test_a_turns_writes_keep_their_order_and_go_before_the_fin():
    """Writes wait for the end of the loop's turn, joined when small: in
    order whatever their type, counted at once by get_write_buffer_size(),
    sent before write_eof()'s FIN; abort() drops them."""
    parts = [b"a" * 10, bytearray(b"b" * 20), memoryview(b"c" * 30), b"d" * 100000, b"e"]
    expected = b"".join(bytes(p) for p in parts)

    async def main():
        sizes = []
        aborted = asyncio.Event()

        class Writer(asyncio.Protocol):
            def connection_made(self, t):
                if sizes:               # the second connection: written, then aborted
                    t.write(b"lost")
                    t.abort()
                    sizes.append(t.get_write_buffer_size())
                    aborted.set()
                    return
                for p in parts:
                    t.write(p)
                sizes.append(t.get_write_buffer_size())
                t.write_eof()
                t.close()

        server = await iocpsrv.create_server(Writer, "127.0.0.1", 0)
        r, w = await asyncio.open_connection("127.0.0.1", port_of(server))
        assert await r.read() == expected       # everything, then the FIN
        assert sizes == [len(expected)]
        w.close()
        try:                            # the reset may even beat the connect's completion
            r, w = await asyncio.open_connection("127.0.0.1", port_of(server))
            try:
                got = await r.read()
            finally:
                w.close()
        except ConnectionResetError:
            got = b""
        assert got == b""
        await aborted.wait()
        assert sizes[1] == 0
        await server.stop(1)
    run(main())


def test_a_sequence_of_hosts_is_a_type_error():
    async def main():
        with pytest.raises(TypeError):
            await iocpsrv.create_server(asyncio.Protocol, ["127.0.0.1", "::1"], 0)
    run(main())


def test_start_serving_false_holds_an_early_peer_until_serving():
    async def main():
        log = []
        server = await iocpsrv.create_server(lambda: Recorder(log), "127.0.0.1", 0,
                                             start_serving=False)
        assert not server.is_serving()
        r, w = await asyncio.open_connection("127.0.0.1", port_of(server))
        w.write(b"early")
        await server.start_serving()
        assert server.is_serving()
        assert await r.readexactly(5) == b"early"
        assert log[:2] == ["made", ("data", b"early")]
        w.close()
        server.close()
        await server.wait_closed()
    run(main())


def test_close_resets_new_peers_until_the_last_connection_ends():
    async def main():
        log = []
        server = await iocpsrv.create_server(lambda: Recorder(log), "127.0.0.1", 0)
        port = port_of(server)
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"x")
        assert await r.readexactly(1) == b"x"
        server.close()
        assert server.sockets == ()
        # The port is still open: a new peer is accepted, then reset (seen
        # by the client as its connect failing, or as its first read).
        try:
            r2, w2 = await asyncio.open_connection("127.0.0.1", port)
            try:
                assert await r2.read(1) == b""
            finally:
                w2.close()
        except ConnectionResetError:
            pass
        assert log.count("made") == 1
        # Once the last connection has ended the library server is stopped.
        w.close()
        await server.wait_closed()
        while not server._native.closed:
            await asyncio.sleep(0.01)
        # Refused (or reset, when the SYN meets the listener being closed).
        with pytest.raises((ConnectionRefusedError, ConnectionResetError)):
            await asyncio.open_connection("127.0.0.1", port)
    run(main())


def test_accelerator_is_used_as_asked():
    """The C accelerator (iocpsrv/_speedups.c) serves when the build put it
    where IOCPSRV_SPEEDUPS_DIR says, and IOCPSRV_PURE_PYTHON=1 turns it off:
    the meson suites run both ways, so each must be the way it says."""
    async def main():
        server = await iocpsrv.create_server(asyncio.Protocol, "127.0.0.1", 0)
        try:
            if os.environ.get("IOCPSRV_PURE_PYTHON"):
                assert server._speedups is None
            elif os.environ.get("IOCPSRV_SPEEDUPS_DIR"):
                assert server._speedups is not None, "no _speedups for this Python there"
            else:
                from iocpsrv._accel import speedups
                assert server._speedups is speedups(iocpsrv.load())
        finally:
            server.close()
            await server.wait_closed()
    run(main())


def test_the_loop_drains_as_asked():
    """Where the loop watches descriptors (Linux) its own thread drains the
    library through the wait handle, no helper thread; with
    IOCPSRV_ASYNCIO_HELPER=1 (as on Windows' proactor loop) a helper thread
    waits for it. Echoes go through either way."""
    async def main():
        server = await iocpsrv.create_server(lambda: Recorder([]), "127.0.0.1", 0)
        try:
            helper = os.environ.get("IOCPSRV_ASYNCIO_HELPER") == "1" or sys.platform == "win32"
            assert (server._helper is not None) == helper
            assert (server._fd is not None) == (not helper)
            await asyncio.get_running_loop().run_in_executor(None, echo_round_trips,
                                                             port_of(server))
            name = f"iocpsrv-asyncio:{port_of(server)}"
            assert [t.name for t in threading.enumerate()].count(name) == int(helper)
        finally:
            await server.stop()
        assert server._fd is None and server._native.closed
    run(main())


def test_failing_data_received_aborts_only_its_connection():
    """data_received raising: the loop's exception handler hears of it and
    that connection is reset, as asyncio's transports do; another one keeps
    echoing."""
    class Picky(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            if data.startswith(b"bad"):
                raise ValueError("picky")
            self.transport.write(data)

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        server = await iocpsrv.create_server(Picky, "127.0.0.1", 0)
        r1, w1 = await asyncio.open_connection("127.0.0.1", port_of(server))
        r2, w2 = await asyncio.open_connection("127.0.0.1", port_of(server))
        w1.write(b"bad bytes")
        try:
            assert await r1.read() == b""
        except ConnectionResetError:
            pass
        w2.write(b"good")
        assert await r2.readexactly(4) == b"good"
        assert len(errors) == 1
        assert errors[0]["message"] == "Fatal error: protocol.data_received() call failed."
        assert isinstance(errors[0]["exception"], ValueError)
        assert errors[0]["exception"].__traceback__ is not None
        for w in (w1, w2):
            w.close()
        server.close()
        server.abort_clients()
        await server.wait_closed()
    run(main())
