#!/usr/bin/env python3
"""The 1.1 controls through the Python package (sample_clients/python/iocpsrv):
context, pause/resume, drain, idle timeout, the connection cap, graceful stop
and the errors of bad input, in both delivery modes. unittest.TestCase
classes, run by pytest (conftest.py puts the package on sys.path):

    LD_LIBRARY_PATH=build/linux python3 -m pytest test/python/test_controls.py
"""
import socket
import threading
import time
import unittest

import iocpsrv

TIMEOUT = 60.0


def wait_for(cond, timeout=TIMEOUT):
    """True once cond() holds; False after the time-out (polls a condition)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def refused(port):
    """True when a connection to port is ended at once (FIN or reset) with no
    bytes; the reset may even come before connect() returns."""
    try:
        s = connect(port)
    except ConnectionError:
        return True
    with s:
        return ended(s)


def ended(s):
    """True when the peer ended the connection (FIN or reset) with no bytes."""
    try:
        return s.recv(16) == b""
    except ConnectionError:
        return True


class Controls(unittest.TestCase):
    mode = "queue"  # the default; ControlsCallbacks runs every test in callback mode

    def test_context_and_pause(self):
        lock = threading.Lock()
        seen = {"ids": [], "received": 0, "ctx_ok": 0, "disconnects": 0}

        class Peer:
            def __init__(self, id):
                self.id = id

        def on_connect(srv, id, addr, port):
            srv.set_context(id, Peer(id))
            srv.pause_reading(id)
            with lock:
                seen["ids"].append(id)

        def on_data(srv, id, data):
            ok = isinstance(srv.context(id), Peer) and srv.context(id).id == id
            with lock:
                seen["received"] += len(data)
                seen["ctx_ok"] += ok

        def on_disconnect(srv, id, reason):
            ok = isinstance(srv.context(id), Peer)   # still there in the last callback
            with lock:
                seen["ctx_ok"] += ok
                seen["disconnects"] += 1

        with iocpsrv.Server(mode=self.mode, port=0, on_connect=on_connect, on_data=on_data,
                            on_disconnect=on_disconnect) as srv:
            c = connect(srv.port)
            self.assertTrue(wait_for(lambda: seen["ids"]))
            id = seen["ids"][0]
            # Paused: the peer fills the kernel's buffers and stalls.
            c.setblocking(False)
            held = 0
            while held < (256 << 20):
                try:
                    held += c.send(b"\x07" * 16384)
                except BlockingIOError:
                    import select
                    if not select.select([], [c], [], 0.5)[1]:
                        break
            c.setblocking(True)
            c.settimeout(TIMEOUT)
            self.assertTrue(0 < held < (64 << 20), held)
            self.assertEqual(seen["received"], 0)
            srv.resume_reading(id)
            self.assertTrue(wait_for(lambda: seen["received"] == held))
            self.assertIsInstance(srv.context(id), Peer)
            c.close()
            self.assertTrue(wait_for(lambda: seen["disconnects"] == 1))
            self.assertGreaterEqual(seen["ctx_ok"], 2)
            self.assertEqual(srv._contexts, {})  # released with the connection
            for call in (lambda: srv.context(id), lambda: srv.pause_reading(id),
                         lambda: srv.resume_reading(id), lambda: srv.set_context(id, 1)):
                with self.assertRaises(iocpsrv.IocpError) as e:
                    call()
                self.assertEqual(e.exception.code, iocpsrv.ENOTFOUND)

    def test_racing_setters_leak_no_context(self):
        # Two threads replacing one connection's context 5,000 times each:
        # once the connection ended, the server's table holds nothing.
        ids, ended = [], threading.Event()
        with iocpsrv.Server(mode=self.mode, port=0,
                            on_connect=lambda srv, id, a, p: ids.append(id),
                            on_disconnect=lambda srv, id, r: ended.set()) as srv:
            c = connect(srv.port)
            self.assertTrue(wait_for(lambda: ids))
            id = ids[0]

            def setter():
                for i in range(5000):
                    try:
                        srv.set_context(id, object())
                    except iocpsrv.IocpError:
                        return

            threads = [threading.Thread(target=setter) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(TIMEOUT)
            self.assertEqual(len(srv._contexts), 1)   # the last one set
            c.close()
            self.assertTrue(ended.wait(TIMEOUT))
            self.assertTrue(wait_for(lambda: not srv._contexts))

    def test_drain_drives_a_producer(self):
        total, chunk, mark = 4 << 20, 64 << 10, 128 << 10
        state = {"produced": 0, "drains": 0, "bad": 0, "stalls": 0}
        block = bytes(range(256)) * (chunk // 256)

        def produce(srv, id):
            while state["produced"] < total:
                try:
                    srv.send(id, block)
                except iocpsrv.IocpError as e:
                    if e.code == iocpsrv.EQUEUEFULL:
                        state["stalls"] += 1
                        return  # on_drain resumes
                    raise
                state["produced"] += chunk
            srv.shutdown(id)

        def on_drain(srv, id, queued):
            state["drains"] += 1
            state["bad"] += queued > mark
            if state["produced"] < total:
                produce(srv, id)

        with iocpsrv.Server(mode=self.mode, port=0, max_send_queue=1 << 20, drain_mark=mark,
                            on_connect=lambda srv, id, a, p: produce(srv, id),
                            on_drain=on_drain, on_peer_closed=lambda srv, id: None) as srv:
            c = connect(srv.port)
            # Not reading until the queue was full once: from there on only
            # on_drain restarts the producer (the kernel's buffers fill first).
            self.assertTrue(wait_for(lambda: state["stalls"] >= 1))
            got = bytearray()
            while True:
                b = c.recv(1 << 16)
                if not b:
                    break
                got += b
            self.assertEqual(len(got), total)
            self.assertEqual(bytes(got), block * (total // chunk))
            self.assertGreaterEqual(state["drains"], state["stalls"])
            self.assertEqual(state["bad"], 0)
            c.close()
            with self.assertRaises(iocpsrv.IocpError) as e:
                srv.set_drain_mark(12345678, 0)
            self.assertEqual(e.exception.code, iocpsrv.ENOTFOUND)

    def test_idle_timeout_and_cap(self):
        reasons = []
        with iocpsrv.Server(mode=self.mode, port=0, idle_timeout_ms=200, max_connections=1,
                            on_disconnect=lambda srv, id, r: reasons.append(r)) as srv:
            a = connect(srv.port)
            self.assertTrue(wait_for(lambda: srv.connection_count == 1))
            self.assertTrue(refused(srv.port))  # past the cap: refused, counted
            self.assertTrue(wait_for(lambda: srv.refused_count == 1))
            self.assertTrue(ended(a))        # silent: dropped at the timeout
            self.assertTrue(wait_for(lambda: reasons == [iocpsrv.REASON_IDLE_TIMEOUT]))
            c = connect(srv.port)            # a slot again
            self.assertTrue(wait_for(lambda: srv.connection_count == 1))
            for x in (a, c):
                x.close()
            with self.assertRaises(iocpsrv.IocpError) as e:
                srv.set_idle_timeout(1, iocpsrv.MAX_TIMEOUT_MS + 1)
            self.assertEqual(e.exception.code, iocpsrv.EINVAL)
        for bad in ({"idle_timeout_ms": iocpsrv.MAX_TIMEOUT_MS + 1},
                    {"keepalive": True, "keepalive_idle_ms": iocpsrv.MAX_KEEPALIVE_MS + 1},
                    {"keepalive": True, "keepalive_interval_ms": iocpsrv.MAX_KEEPALIVE_MS + 1},
                    {"drain_mark": 8 << 20}):
            with self.assertRaises(iocpsrv.IocpError) as e:
                iocpsrv.Server(mode=self.mode, port=0, **bad)
            self.assertEqual(e.exception.code, iocpsrv.EINVAL)
        # Keep-alive on: a working server (the options reach the socket:
        # see test_keepalive.c).
        with iocpsrv.Server(mode=self.mode, port=0, keepalive=True, keepalive_idle_ms=2000,
                            keepalive_interval_ms=1000,
                            on_data=lambda srv, id, d: srv.send(id, d)) as srv:
            with connect(srv.port) as k:
                k.sendall(b"ka")
                self.assertEqual(k.recv(2), b"ka")

    def test_graceful_stop(self):
        reasons, errors = [], []

        def on_connect(srv, id, addr, port):
            srv.send(id, b"bye")
            try:
                srv.stop(0)
            except iocpsrv.IocpError as e:
                errors.append(e.code)

        with iocpsrv.Server(mode=self.mode, port=0, on_connect=on_connect,
                            on_disconnect=lambda srv, id, r: reasons.append(r)) as srv:
            polite, rude = connect(srv.port), connect(srv.port)
            self.assertTrue(wait_for(lambda: srv.connection_count == 2))

            def read_all():
                data = b""
                while True:
                    b = polite.recv(16)
                    if not b:
                        break
                    data += b
                polite.close()
                reader.data = data
            reader = threading.Thread(target=read_all)
            reader.start()
            self.assertEqual(srv.stop(1.0), 1)
            reader.join()
            self.assertEqual(reader.data, b"bye")
            self.assertEqual(sorted(reasons),
                             [iocpsrv.REASON_PEER_CLOSED, iocpsrv.REASON_STOP_DEADLINE])
            self.assertEqual(errors, [iocpsrv.EINCALLBACK] * 2)
            with self.assertRaises(iocpsrv.IocpError) as e:
                srv.stop(0)
            self.assertEqual(e.exception.code, iocpsrv.ESTOPPED)
            rude.close()


class ControlsCallbacks(Controls):
    mode = "callbacks"
