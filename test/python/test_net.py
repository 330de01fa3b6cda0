#!/usr/bin/env python3
"""The Python package's 1.1 networking: listen_address, dual_stack, connect()
with on_connect_failed, and on_log seeing descriptor exhaustion.
unittest.TestCase classes, run by pytest (conftest.py puts the package on
sys.path):

    LD_LIBRARY_PATH=build/linux python3 -m pytest test/python/test_net.py

Every wait has a deadline (threading.Event); nothing sleeps. Python 3.11
standard library only (resource: Linux)."""

import os
import resource
import socket
import threading
import unittest

import iocpsrv

TIMEOUT = 30


def free_port():
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Events:
    """Callbacks that record, with an Event per kind to wait on."""

    def __init__(self):
        self.lock = threading.Lock()
        self.log = []
        self.connected = threading.Event()
        self.failed = threading.Event()
        self.ended = threading.Event()
        self.data = b""
        self.data_cond = threading.Condition(self.lock)
        self.emfile = threading.Event()
        self.resumed = threading.Event()
        self.failure = None
        self.reason = None
        self.peer = None

    def kwargs(self):
        return dict(on_connect=self.on_connect, on_data=self.on_data,
                    on_disconnect=self.on_disconnect,
                    on_connect_failed=self.on_connect_failed, on_log=self.on_log)

    def on_connect(self, server, id, address, port):
        self.peer = (address, port)
        self.connected.set()

    def on_data(self, server, id, data):
        with self.lock:
            self.data += data
            self.data_cond.notify_all()

    def on_disconnect(self, server, id, reason):
        self.reason = reason
        self.ended.set()

    def on_connect_failed(self, server, id, error):
        self.failure = error
        self.failed.set()

    def on_log(self, server, level, code, text):
        with self.lock:
            self.log.append((level, code, text))
        if level == iocpsrv.LOG_WARN and code == iocpsrv.EMFILE:
            self.emfile.set()
        if level == iocpsrv.LOG_INFO:
            self.resumed.set()


def echo(server, id, data):
    server.send(id, data)


class NetTest(unittest.TestCase):
    mode = "queue"  # the default; NetTestCallbacks runs every test in callback mode

    def test_listen_address(self):
        with iocpsrv.Server(mode=self.mode, port=0) as s:
            self.assertEqual(s.listen_address, ("127.0.0.1", s.port))
        with iocpsrv.Server(mode=self.mode, port=0, bind="::1") as s:
            self.assertEqual(s.listen_address, ("::1", s.port))

    def test_dual_stack(self):
        ev = Events()
        with iocpsrv.Server(mode=self.mode, port=0, bind="::", dual_stack=True, **ev.kwargs()) as s:
            self.assertEqual(s.listen_address[0], "::")
            with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT):
                self.assertTrue(ev.connected.wait(TIMEOUT))
            self.assertEqual(ev.peer[0], "127.0.0.1")
        with self.assertRaises(iocpsrv.IocpError) as e:
            iocpsrv.Server(mode=self.mode, port=0, bind="127.0.0.1", dual_stack=True)
        self.assertEqual(e.exception.code, iocpsrv.EINVAL)

    def test_connect_echo(self):
        ev = Events()
        with iocpsrv.Server(mode=self.mode, port=0, on_data=echo) as target, \
                iocpsrv.Server(mode=self.mode, port=0, **ev.kwargs()) as client:
            id = client.connect("127.0.0.1", target.port)
            client.send(id, b"queued before on_connect")
            self.assertTrue(ev.connected.wait(TIMEOUT))
            self.assertEqual(ev.peer, ("127.0.0.1", target.port))
            with ev.lock:
                ev.data_cond.wait_for(lambda: len(ev.data) >= 24, TIMEOUT)
            self.assertEqual(ev.data, b"queued before on_connect")
            # Its own end: the port the system chose for it.
            host, port = client.local_address(id)
            self.assertEqual(host, "127.0.0.1")
            self.assertNotIn(port, (0, target.port))
            client.close(id)
            self.assertTrue(ev.ended.wait(TIMEOUT))
            self.assertEqual(ev.reason, iocpsrv.REASON_LOCAL_CLOSE)
            self.assertFalse(ev.failed.is_set())
            with self.assertRaises(iocpsrv.IocpError) as e:
                client.local_address(id)
            self.assertEqual(e.exception.code, iocpsrv.ENOTFOUND)

    def test_connect_refused(self):
        ev = Events()
        with iocpsrv.Server(mode=self.mode, port=0, **ev.kwargs()) as client:
            id = client.connect("127.0.0.1", free_port())
            self.assertTrue(ev.failed.wait(TIMEOUT))
            self.assertEqual(ev.failure, iocpsrv.ECONNREFUSED)
            self.assertFalse(ev.connected.is_set())
            with self.assertRaises(iocpsrv.IocpError) as e:
                client.send(id, b"x")
            self.assertEqual(e.exception.code, iocpsrv.ENOTFOUND)

    def test_connect_bad_arguments(self):
        with iocpsrv.Server(mode=self.mode, port=0) as s:
            for host in ("localhost", "", "1.2.3", "127.0.0.1:80"):
                with self.assertRaises(iocpsrv.IocpError) as e:
                    s.connect(host, 80)
                self.assertEqual(e.exception.code, iocpsrv.EINVAL)
            for port in (0, 65536, -1):
                with self.assertRaises(ValueError):
                    s.connect("127.0.0.1", port)
            self.assertEqual(s.connection_count, 0)
        with self.assertRaises(ValueError):
            s.connect("127.0.0.1", 80)  # destroyed

    def test_log_sees_descriptor_exhaustion(self):
        ev = Events()
        with iocpsrv.Server(mode=self.mode, port=0, accepts_posted=1, **ev.kwargs()) as s:
            client = socket.socket()  # made before the limit drops
            old = resource.getrlimit(resource.RLIMIT_NOFILE)
            highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
            fill = []
            resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, old[1]))
            try:
                try:
                    while True:  # the holes below the limit, too
                        fill.append(os.dup(0))
                except OSError:
                    pass
                client.connect(("127.0.0.1", s.port))
                saw = ev.emfile.wait(TIMEOUT)
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, old)
                for fd in fill:
                    os.close(fd)
            self.assertTrue(saw)
            self.assertTrue(ev.resumed.wait(TIMEOUT))
            self.assertTrue(ev.connected.wait(TIMEOUT))
            client.close()
            self.assertTrue(ev.ended.wait(TIMEOUT))
        warns = [entry for entry in ev.log if entry[0] == iocpsrv.LOG_WARN]
        self.assertEqual(len(warns), 1, ev.log)
        self.assertIn("descriptors", warns[0][2])


class NetTestCallbacks(NetTest):
    mode = "callbacks"
