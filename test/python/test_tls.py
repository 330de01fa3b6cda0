"""TLS in the Python package, in every mode: Server(tls=...) with queue and
callback delivery, create_server(ssl=...) with a Protocol, start_server(ssl=...)
with streams, and Server.connect(..., tls=...) outbound. The peer is Python's
own ssl module (OpenSSL), at TLS 1.2 and 1.3. Every wait has a deadline.

The identities are the C suites' (test/c/support/make_certs.sh): meson
passes their folder as IOCP_TEST_CERTS; run by hand, the script makes them
in a temporary folder.

    LD_LIBRARY_PATH=build/linux python3 -m pytest test/python/test_tls.py
"""

import asyncio
import hashlib
import os
import socket
import ssl
import subprocess
import sys
import threading

import pytest

import iocpsrv

TIMEOUT = 20.0
HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_CERTS = os.path.join(HERE, "..", "c", "support", "make_certs.sh")
PASSWORD = "secret"
MODES = ["queue", "callbacks"]
VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]
MIB = bytes(range(256)) * 4096   # 1 MiB, every byte value


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    folder = os.environ.get("IOCP_TEST_CERTS")
    if folder:
        return folder
    folder = str(tmp_path_factory.mktemp("certs"))
    subprocess.run(["sh", MAKE_CERTS, folder, os.path.join(folder, "stamp")], check=True)
    return folder


@pytest.fixture(scope="module")
def identity(certs):
    return iocpsrv.TlsConfig(os.path.join(certs, "ecdsa.p12"), PASSWORD,
                             alpn=["h2", "http/1.1"])


def client_context(certs, version=None, alpn=None):
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ecdsa.pem"))
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(port, certs, version=None, alpn=None):
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return client_context(certs, version, alpn).wrap_socket(raw, server_hostname="localhost")


def echo_lockstep(s, data, step=64 << 10):
    """Sends data in steps, reading each step's echo before the next, on one
    thread (an SSL socket is not for two threads at once); the bytes read."""
    got = bytearray()
    for at in range(0, len(data), step):
        s.sendall(data[at:at + step])
        want = min(at + step, len(data))
        while len(got) < want:
            chunk = s.recv(1 << 16)
            assert chunk, f"end of stream after {len(got)} bytes"
            got += chunk
    return bytes(got)


class BioClient:
    """A TLS client over ssl.MemoryBIO, so that it can send its close_notify
    without a FIN and still read what the server sends afterwards (an
    SSLSocket's unwrap() would discard it)."""

    def __init__(self, port, certs):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = client_context(certs).wrap_bio(self.inc, self.out,
                                                  server_hostname="localhost")
        self._io(self.obj.do_handshake)

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _io(self, op, *args):
        while True:
            try:
                result = op(*args)
                self._flush()
                return result
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(1 << 16)
                if not data:
                    self.inc.write_eof()
                else:
                    self.inc.write(data)

    def send(self, data):
        self._io(self.obj.write, data)

    def send_close_notify(self):
        """unwrap() writes close_notify, then waits for the server's: only
        the first half here."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()

    def read_to_close_notify(self):
        """Everything until the server's close_notify; then the raw socket
        must see the FIN."""
        got = bytearray()
        while True:
            try:
                chunk = self._io(self.obj.read, 1 << 16)
            except ssl.SSLZeroReturnError:
                break
            if not chunk:
                break
            got += chunk
        return bytes(got)

    def close(self):
        self.sock.close()


class Recorder:
    """Handlers that echo and record, for both delivery modes."""

    def __init__(self, on_peer_closed=False):
        self.infos = {}
        self.reasons = {}
        self.peer_closed = threading.Event()
        self.ended = threading.Event()
        self.failed = {}
        self.connected = threading.Event()
        self.data = bytearray()
        self.with_peer_closed = on_peer_closed

    def kwargs(self):
        kw = dict(on_connect=self.on_connect, on_data=self.on_data,
                  on_disconnect=self.on_disconnect, on_connect_failed=self.on_connect_failed)
        if self.with_peer_closed:
            kw["on_peer_closed"] = self.on_peer_closed
        return kw

    def on_connect(self, server, id, address, port):
        self.infos[id] = server.tls_info(id)
        self.connected.set()

    def on_data(self, server, id, data):
        server.send(id, data)

    def on_peer_closed(self, server, id):
        server.send(id, b"bye")
        server.shutdown(id)
        self.peer_closed.set()

    def on_disconnect(self, server, id, reason):
        self.reasons[id] = reason
        self.ended.set()

    def on_connect_failed(self, server, id, error):
        self.failed[id] = error
        self.ended.set()


# ---- Server(tls=...): queue and callback delivery ---------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
def test_echoes_1mib_at_each_version(certs, identity, mode, version):
    rec = Recorder()
    with iocpsrv.Server(port=0, mode=mode, tls=identity, **rec.kwargs()) as server:
        with tls_connect(server.port, certs, version, alpn=["http/1.1"]) as c:
            assert echo_lockstep(c, MIB) == MIB
            (info,) = rec.infos.values()
            assert info.protocol == version and info.version() == c.version()
            assert info.alpn == "http/1.1" == c.selected_alpn_protocol()
            if version == ssl.TLSVersion.TLSv1_3:   # OpenSSL's names are IANA's there
                assert info.cipher() == c.cipher()
            else:
                assert info.cipher_name.startswith("TLS_ECDHE_ECDSA_WITH_")
        assert rec.ended.wait(TIMEOUT)
        stats = server.stats()
        assert (stats.tls_handshakes, stats.bytes_received) == (1, len(MIB))


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
def test_a_returning_client_resumes_its_session(certs, identity, version):
    """A ticket from the first handshake lets the second skip the full one,
    at either version; the server keeps no session state of its own."""
    rec = Recorder()
    ctx = client_context(certs, version, None)
    with iocpsrv.Server(port=0, tls=identity, **rec.kwargs()) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        with ctx.wrap_socket(raw, server_hostname="localhost") as first:
            assert echo_lockstep(first, b"ticket?") == b"ticket?"   # 1.3's ticket comes after
            assert not first.session_reused
            session, version_first = first.session, first.version()
        assert session is not None and session.has_ticket
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as again:
            assert echo_lockstep(again, b"again") == b"again"
            assert again.session_reused
            assert again.version() == version_first
        assert server.stats().tls_handshakes == 2


@pytest.mark.parametrize("mode", MODES)
def test_close_notify_half_closes_both_ways(certs, identity, mode):
    rec = Recorder(on_peer_closed=True)
    with iocpsrv.Server(port=0, mode=mode, tls=identity, **rec.kwargs()) as server:
        c = BioClient(server.port, certs)
        try:
            c.send(b"ping")
            c.send_close_notify()                 # no FIN: the socket stays open
            assert rec.peer_closed.wait(TIMEOUT)  # the close_notify is on_peer_closed
            assert c.read_to_close_notify() == b"pingbye"
            assert c.sock.recv(1) == b""          # the server's FIN came after its close_notify
        finally:
            c.close()
        assert rec.ended.wait(TIMEOUT)
        assert list(rec.reasons.values()) == [iocpsrv.Reason.PEER_CLOSED]


@pytest.mark.parametrize("mode", MODES)
def test_fin_without_close_notify_is_truncated(certs, identity, mode):
    rec = Recorder()
    with iocpsrv.Server(port=0, mode=mode, tls=identity, **rec.kwargs()) as server:
        with tls_connect(server.port, certs) as c:
            assert echo_lockstep(c, b"abc") == b"abc"
            c.shutdown(socket.SHUT_WR)            # an SSLSocket's shutdown: no close_notify
            assert rec.ended.wait(TIMEOUT)
        assert list(rec.reasons.values()) == [iocpsrv.Reason.TLS_TRUNCATED]


def test_identity_errors_are_tls_identity_errors(certs):
    cases = [(iocpsrv.TlsConfig(os.path.join(certs, "ecdsa.p12"), "wrong"), iocpsrv.EPASSWORD),
             (iocpsrv.TlsConfig(os.path.join(certs, "nokey.p12"), PASSWORD), iocpsrv.ENOKEY),
             (iocpsrv.TlsConfig(b"not a PKCS#12 blob", PASSWORD), iocpsrv.EPKCS12)]
    for tls, code in cases:
        for mode in MODES:
            with pytest.raises(iocpsrv.TlsIdentityError) as e:
                iocpsrv.Server(port=0, mode=mode, tls=tls)
            assert e.value.code == code and iocpsrv.ErrorCode(code).name in e.value.name
            # What code written for Python's ssl module catches, too.
            assert isinstance(e.value, ssl.SSLError) and isinstance(e.value, iocpsrv.IocpError)


def test_settings_are_checked_when_made(certs):
    p12 = os.path.join(certs, "ecdsa.p12")
    with pytest.raises(ValueError):
        iocpsrv.TlsConfig(p12, PASSWORD, min_version=ssl.TLSVersion.TLSv1_1)
    with pytest.raises(ValueError):
        iocpsrv.TlsConfig(p12, PASSWORD, alpn=["h2", ""])
    with pytest.raises(ValueError):
        iocpsrv.TlsConfig(p12, PASSWORD, handshake_timeout=0)
    with pytest.raises(FileNotFoundError):
        iocpsrv.TlsConfig(os.path.join(certs, "missing.p12"), PASSWORD)
    # Python's own SSLContext cannot stand in: the library does the TLS.
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with pytest.raises(TypeError, match="TlsConfig"):
        iocpsrv.Server(port=0, tls=ctx)


def test_tls_1_3_minimum_refuses_a_1_2_client(certs):
    tls = iocpsrv.TlsConfig(os.path.join(certs, "ecdsa.p12"), PASSWORD,
                            min_version=iocpsrv.TLS_1_3)
    rec = Recorder()
    with iocpsrv.Server(port=0, tls=tls, **rec.kwargs()) as server:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_connect(server.port, certs, ssl.TLSVersion.TLSv1_2).close()
        with tls_connect(server.port, certs) as c:
            assert c.version() == "TLSv1.3"
            assert echo_lockstep(c, b"ok") == b"ok"
        stats = server.stats()
        assert (stats.tls_handshake_failures, stats.tls_handshakes) == (1, 1)
        assert len(rec.infos) == 1   # the refused handshake never reached on_connect


def test_a_stalled_handshake_ends_at_the_timeout(certs):
    tls = iocpsrv.TlsConfig(os.path.join(certs, "ecdsa.p12"), PASSWORD, handshake_timeout=0.2)
    rec = Recorder()
    with iocpsrv.Server(port=0, tls=tls, **rec.kwargs()) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw:
            try:
                assert raw.recv(1) == b""      # sends nothing: the server gives up
            except ConnectionResetError:
                pass
        stats = server.stats()
        assert (stats.tls_handshake_timeouts, stats.tls_handshakes) == (1, 0)
        assert not rec.infos                   # it never reached on_connect


@pytest.mark.parametrize("mode", MODES)
def test_plain_connection_has_no_tls_info(mode):
    got = []

    def on_connect(server, id, address, port):
        try:
            server.tls_info(id)
        except iocpsrv.TlsError as e:
            got.append(e.code)
        return True
    with iocpsrv.Server(port=0, mode=mode, on_connect=on_connect) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as c:
            c.sendall(b"x")
            c.shutdown(socket.SHUT_WR)
            assert c.recv(1) == b""
    assert got == [iocpsrv.ENOTLS]


# ---- Server.connect(..., tls=...): outbound ----------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_outbound_tls_verifies_and_echoes(certs, identity, mode):
    target = Recorder()
    got = bytearray()
    done = threading.Event()
    infos = {}

    def on_connect(server, id, address, port):
        infos[id] = server.tls_info(id)
        server.send(id, b"hello over tls")

    def on_data(server, id, data):
        got.extend(data)
        if len(got) == 14:
            done.set()
    rec = Recorder()
    with iocpsrv.Server(port=0, tls=identity, **target.kwargs()) as tls_server, \
            iocpsrv.Server(port=0, mode=mode, on_connect=on_connect, on_data=on_data,
                           on_connect_failed=rec.on_connect_failed) as client:
        good = iocpsrv.TlsClient(server_hostname="localhost",
                                 cafile=os.path.join(certs, "ecdsa.pem"), alpn=["h2"])
        id = client.connect("127.0.0.1", tls_server.port, tls=good)
        assert done.wait(TIMEOUT) and bytes(got) == b"hello over tls"
        assert infos[id].alpn == "h2" and infos[id].protocol == iocpsrv.TLS_1_3
        # A certificate not signed by the trust anchors given: ECERTVERIFY.
        bad = iocpsrv.TlsClient(server_hostname="localhost",
                                cafile=os.path.join(certs, "other.pem"))
        id = client.connect("127.0.0.1", tls_server.port, tls=bad)
        assert rec.ended.wait(TIMEOUT)
        assert rec.failed == {id: iocpsrv.ECERTVERIFY}
        with pytest.raises(TypeError):
            client.connect("127.0.0.1", tls_server.port, tls=ssl.create_default_context())


# ---- asyncio: create_server(ssl=...) and start_server(ssl=...) ---------------

def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


class EchoProtocol(asyncio.Protocol):
    def __init__(self, log, ended):
        self.log = log
        self.lost = asyncio.get_running_loop().create_future()
        ended.append(self.lost)

    def connection_made(self, transport):
        self.transport = transport
        self.log.append(("made", transport.get_extra_info("ssl_object").version(),
                         transport.get_extra_info("alpn"), transport.get_extra_info("cipher")[0],
                         transport.get_extra_info("peername")[0]))

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        self.log.append("eof")
        self.transport.write(b"bye")
        self.transport.close()
        return True

    def connection_lost(self, exc):
        self.log.append(("lost", exc))
        self.lost.set_result(None)


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
def test_create_server_protocol(certs, identity, version):
    log = []

    def client(port):
        with tls_connect(port, certs, version, alpn=["h2"]) as c:
            sha = hashlib.sha256(echo_lockstep(c, MIB)).hexdigest()
        b = BioClient(port, certs)
        try:
            b.send(b"last")
            b.send_close_notify()
            tail = b.read_to_close_notify()
            return sha, tail, b.sock.recv(1)
        finally:
            b.close()

    async def main():
        loop = asyncio.get_running_loop()
        ended = []
        server = await iocpsrv.create_server(lambda: EchoProtocol(log, ended), "127.0.0.1", 0,
                                             ssl=identity)
        async with server:
            port = server.sockets[0].getsockname()[1]
            result = await loop.run_in_executor(None, client, port)
            await asyncio.gather(*ended)
            server.close()
            await server.wait_closed()
        return result
    sha, tail, fin = run(main())
    assert sha == hashlib.sha256(MIB).hexdigest()
    assert (tail, fin) == (b"lastbye", b"")
    name = "TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
    made = [e for e in log if e[0] == "made"]
    assert [m[:3] for m in made] == [("made", name, "h2"), ("made", "TLSv1.3", None)]
    assert made[0][4] == "127.0.0.1"
    # The SSLSocket closed without close_notify (a truncated stream) and the
    # BIO client with one: both are eof_received, as asyncio's TLS gives them.
    assert [e if e == "eof" else e[0] for e in log] == ["made", "eof", "lost"] * 2
    assert log[2] == log[5] == ("lost", None)


def test_start_server_streams(certs, identity):
    seen = []

    async def handle(reader, writer):
        info = writer.get_extra_info("ssl_object")
        seen.append((info.version(), info.selected_alpn_protocol(),
                     writer.get_extra_info("tls_version")))
        data = await reader.read()       # to the client's close_notify
        writer.write(hashlib.sha256(data).digest())
        await writer.drain()
        writer.close()

    def client(port):
        b = BioClient(port, certs)
        try:
            for at in range(0, len(MIB), 1 << 16):
                b.send(MIB[at:at + (1 << 16)])
            b.send_close_notify()
            return b.read_to_close_notify()
        finally:
            b.close()

    async def main():
        server = await iocpsrv.start_server(handle, "127.0.0.1", 0, ssl=identity,
                                            ssl_handshake_timeout=5.0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            digest = await asyncio.get_running_loop().run_in_executor(None, client, port)
            server.close()
            await server.wait_closed()
        return digest
    assert run(main()) == hashlib.sha256(MIB).digest()
    assert seen == [("TLSv1.3", None, "TLSv1.3")]


def test_the_event_loop_serves_a_tls_config_and_leaves_an_ssl_context_to_asyncio(certs, identity):
    async def main():
        async def handle(reader, writer):
            writer.close()
        ours = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=identity)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(os.path.join(certs, "rsa.pem"), os.path.join(certs, "rsa.key"))
        theirs = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
        kinds = type(ours), type(theirs)
        for server in (ours, theirs):
            server.close()
            await server.wait_closed()
        return kinds
    loop = iocpsrv.new_event_loop()
    try:
        ours, theirs = loop.run_until_complete(asyncio.wait_for(main(), TIMEOUT))
    finally:
        loop.close()
    assert ours is iocpsrv.IocpServer and theirs is asyncio.Server


def test_asyncio_refuses_an_ssl_context(certs):
    async def main():
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with pytest.raises(TypeError, match="TlsConfig"):
            await iocpsrv.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=ctx)
        with pytest.raises(TypeError, match="TlsConfig"):
            await iocpsrv.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=ctx)
    run(main())


@pytest.mark.parametrize("mode", MODES)
def test_echo_sample_with_tls(certs, mode):
    """The Python echo sample's --tls CERT.p12 --tls-password PW, as the C
    samples': Python's ssl client handshakes (TLS 1.2 and 1.3, verifying
    the certificate) and gets 1 MiB back byte-exact; a wrong password is
    reported and the sample exits 1 without listening."""
    sample = os.path.join(HERE, "..", "..", "sample_clients", "python", "echo_server.py")
    p12 = os.path.join(certs, "ecdsa.p12")
    p = subprocess.Popen([sys.executable, sample, "--port", "0", "--mode", mode,
                          "--tls", p12, "--tls-password", PASSWORD],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("listening on port "), line
        port = int(line.split()[-1])
        for version in VERSIONS:
            s = tls_connect(port, certs, version)
            assert s.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                   ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            assert echo_lockstep(s, MIB) == MIB
            s.unwrap()   # our close_notify, then the sample's
            s.close()
    finally:
        p.stdin.close()
        assert p.wait(TIMEOUT) == 0
        p.stdout.close()
    bad = subprocess.run([sys.executable, sample, "--port", "0", "--mode", mode,
                          "--tls", p12, "--tls-password", "wrong"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert bad.returncode == 1 and bad.stdout == "", bad
    assert "password" in bad.stderr, bad.stderr
