"""TLS in the package: the library speaks it (OpenSSL 3 on Linux, SChannel on
Windows), so Python's ssl module takes no part and the byte path stays
plaintext. A server's identity is a TlsConfig (Server(tls=...), or
create_server/start_server(ssl=...)); outbound options are a TlsClient
(Server.connect(..., tls=...)); what a handshake settled is a TlsInfo
(Server.tls_info(id); a transport's get_extra_info("ssl_object")).
"""

from __future__ import annotations

import ctypes
import math
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ._abi import MAX_TIMEOUT_MS, TLS_1_2, TLS_1_3, _Config, _TlsClient, _TlsInfo

PathOrBytes = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]
Protocols = Union[str, Sequence[str], None]

_NAMES = {TLS_1_2: "TLSv1.2", TLS_1_3: "TLSv1.3"}

_NOT_SSL_CONTEXT = ("the library does the TLS, not Python's ssl module, so an "
                    "ssl.SSLContext cannot be used: pass an iocpsrv.TlsConfig(pkcs12, "
                    "password) (a server's identity as PKCS#12; `openssl pkcs12 -export "
                    "-in cert.pem -inkey key.pem -out server.p12` makes one from PEM files)")


def _version(value: Optional[int], what: str) -> int:
    """A minimum version: None, TLS_1_2 / TLS_1_3, or ssl.TLSVersion's
    TLSv1_2 / TLSv1_3 (the same numbers) -> the header's value (0: default)."""
    if value is None:
        return 0
    if value not in (TLS_1_2, TLS_1_3):
        raise ValueError(f"{what} must be TLS 1.2 or 1.3 (iocpsrv.TLS_1_2, iocpsrv.TLS_1_3 or "
                         f"ssl.TLSVersion.TLSv1_2/TLSv1_3), not {value!r}; TLS 1.0 and 1.1 "
                         "are never accepted")
    return int(value)


def _alpn(protocols: Protocols) -> Optional[bytes]:
    """A list of ALPN protocol names (or one comma-separated str) -> the
    header's comma-separated text, or None."""
    if protocols is None:
        return None
    names = protocols.split(",") if isinstance(protocols, str) else list(protocols)
    if not names:
        return None
    for name in names:
        if not isinstance(name, str) or not name or "," in name or len(name.encode()) > 255:
            raise ValueError(f"ALPN protocol {name!r} is not a name of 1 to 255 bytes")
    return ",".join(names).encode("ascii")


def _timeout_ms(seconds: Optional[float]) -> int:
    """A handshake timeout in seconds -> milliseconds (0: the library's 10 s)."""
    if seconds is None:
        return 0
    ms = math.ceil(seconds * 1000)
    if not 0 < ms <= MAX_TIMEOUT_MS:
        raise ValueError(f"handshake timeout {seconds!r} s is not above 0 and at most "
                         f"{MAX_TIMEOUT_MS // 1000} s")
    return ms


def _text(value: Union[str, bytes, None]) -> Optional[bytes]:
    return value.encode("utf-8") if isinstance(value, str) else value


class TlsConfig:
    """A TLS server's identity and settings: Server(tls=TlsConfig(...)), or
    ssl= of create_server() and start_server().

    pkcs12: the path of a PKCS#12 file (read here, once) or its bytes: the
    certificate, its private key and optionally the chain. password: the
    file's password (str or bytes; None: empty). alpn: the ALPN protocols
    accepted, most preferred first (["h2", "http/1.1"]). min_version:
    TLS_1_2 (the default) or TLS_1_3 (ssl.TLSVersion.TLSv1_2 and TLSv1_3 are
    the same numbers); 1.0 and 1.1 are refused. handshake_timeout: seconds
    a handshake may take (None: 10).

    A bad file, a wrong password or a certificate without its key is found
    when the server is created: TlsIdentityError (EPKCS12, EPASSWORD,
    ENOKEY), and nothing listens.
    """

    __slots__ = ("pkcs12", "password", "alpn", "min_version", "handshake_timeout")

    def __init__(self, pkcs12: PathOrBytes, password: Union[str, bytes, None] = None, *,
                 alpn: Protocols = None, min_version: Optional[int] = None,
                 handshake_timeout: Optional[float] = None) -> None:
        if isinstance(pkcs12, (bytes, bytearray, memoryview)):
            data = bytes(pkcs12)
        elif isinstance(pkcs12, (str, os.PathLike)):
            with open(pkcs12, "rb") as f:
                data = f.read()
        else:
            raise TypeError(f"pkcs12 must be a path or bytes, not {type(pkcs12).__name__}")
        if not data or len(data) > 0xFFFFFFFF:
            raise ValueError("pkcs12 is empty" if not data else "pkcs12 is larger than 4 GiB")
        self.pkcs12 = data
        self.password = password
        self.alpn = alpn
        self.min_version = min_version
        self.handshake_timeout = handshake_timeout
        self._fields()   # every setting checked now, not at create time

    def __repr__(self) -> str:
        return (f"<iocpsrv.TlsConfig {len(self.pkcs12)} bytes alpn={self.alpn!r} "
                f"min_version={self.min_version!r}>")

    def _fields(self) -> Tuple[Any, ...]:
        # Each call checks: the attributes may have been changed since.
        return (self.pkcs12, _text(self.password), _alpn(self.alpn),
                _version(self.min_version, "min_version"), _timeout_ms(self.handshake_timeout))

    def _apply(self, config: _Config, keep: List[Any]) -> None:
        """Fills config's tls_ fields; what they point to is appended to
        `keep`, which must live until iocp_create() returns."""
        data, password, alpn, version, timeout = self._fields()
        blob = ctypes.create_string_buffer(data, len(data))
        keep.append(blob)
        config.tls_pkcs12 = ctypes.addressof(blob)
        config.tls_pkcs12_len = len(data)
        config.tls_password = password
        config.tls_alpn = alpn
        config.tls_min_version = version
        config.tls_handshake_timeout_ms = timeout


def as_server_tls(value: Any, what: str) -> Optional[TlsConfig]:
    """A server's tls=/ssl= argument: None or a TlsConfig; anything else is
    a TypeError saying what to pass."""
    if value is None or isinstance(value, TlsConfig):
        return value
    if _is_ssl_context(value):
        raise TypeError(f"{what}: {_NOT_SSL_CONTEXT}")
    raise TypeError(f"{what} must be an iocpsrv.TlsConfig, not {type(value).__name__}")


def _is_ssl_context(value: Any) -> bool:
    try:
        import ssl
    except ImportError:   # a Python built without ssl
        return False
    return isinstance(value, ssl.SSLContext) or value is True


class TlsClient:
    """Options of an outbound TLS connection: Server.connect(host, port,
    tls=TlsClient(...)).

    server_hostname: sent as SNI and checked against the certificate (an IP
    address text is checked as an address); None: no SNI and no name check.
    cafile (a PEM file's path) or cadata (PEM text): the trust anchors;
    neither: the system's. verify=False accepts any certificate (tests
    only). alpn, min_version and handshake_timeout as in TlsConfig. A
    handshake that fails ends the attempt with on_connect_failed(ECERTVERIFY)
    (not trusted, or not for server_hostname), (ETIMEDOUT) when it took
    too long, or (ETLS).
    """

    __slots__ = ("server_hostname", "cadata", "verify", "alpn", "min_version",
                 "handshake_timeout")

    def __init__(self, *, server_hostname: Optional[str] = None,
                 cafile: Union[str, "os.PathLike[str]", None] = None,
                 cadata: Union[str, bytes, None] = None, verify: bool = True,
                 alpn: Protocols = None, min_version: Optional[int] = None,
                 handshake_timeout: Optional[float] = None) -> None:
        if cafile is not None:
            with open(cafile, "rb") as f:
                pem = f.read()
            cadata = pem + b"\n" + (_text(cadata) or b"")
        self.server_hostname = server_hostname
        self.cadata = cadata
        self.verify = verify
        self.alpn = alpn
        self.min_version = min_version
        self.handshake_timeout = handshake_timeout
        self._struct([])

    def __repr__(self) -> str:
        return f"<iocpsrv.TlsClient server_hostname={self.server_hostname!r}>"

    def _struct(self, keep: List[Any]) -> _TlsClient:
        """The struct iocp_tls_client; what it points to goes to `keep`."""
        tc = _TlsClient()
        tc.size = ctypes.sizeof(tc)
        tc.no_verify = 0 if self.verify else 1
        tc.server_name = _text(self.server_hostname)
        ca = _text(self.cadata)
        if ca:
            buf = ctypes.create_string_buffer(ca, len(ca))
            keep.append(buf)
            tc.ca_pem = ctypes.addressof(buf)
            tc.ca_pem_len = len(ca)
        tc.min_version = _version(self.min_version, "min_version")
        tc.alpn = _alpn(self.alpn)
        tc.handshake_timeout_ms = _timeout_ms(self.handshake_timeout)
        return tc


_BITS = re.compile(r"AES_(128|256)|(CHACHA20)")


class TlsInfo:
    """What a connection's handshake settled (iocp_tls_get_info): its
    `protocol` (TLS_1_2 or TLS_1_3, which ssl.TLSVersion compares equal to),
    `cipher_name` (the IANA name, e.g. "TLS_AES_128_GCM_SHA256") and `alpn`
    (the protocol ALPN chose, or None). Its methods answer as ssl.SSLObject's
    do, so code written for asyncio's ssl transports reads it unchanged."""

    __slots__ = ("protocol", "cipher_name", "alpn", "server_side")

    def __init__(self, protocol: int, cipher_name: str, alpn: Optional[str],
                 server_side: bool = True) -> None:
        self.protocol = protocol
        self.cipher_name = cipher_name
        self.alpn = alpn
        self.server_side = server_side

    def __repr__(self) -> str:
        return f"<iocpsrv.TlsInfo {self.version()} {self.cipher_name} alpn={self.alpn!r}>"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TlsInfo) and (self.protocol, self.cipher_name, self.alpn)
                == (other.protocol, other.cipher_name, other.alpn))

    def __hash__(self) -> int:
        return hash((self.protocol, self.cipher_name, self.alpn))

    def version(self) -> str:
        """The protocol as ssl.SSLObject.version() names it: "TLSv1.3"."""
        return _NAMES.get(self.protocol, f"0x{self.protocol:04x}")

    def cipher(self) -> Tuple[str, str, Optional[int]]:
        """As ssl.SSLObject.cipher(): (name, protocol, secret bits), the name
        being the IANA one; the bits are None for a cipher not recognised."""
        m = _BITS.search(self.cipher_name)
        bits = None if m is None else (256 if m.group(2) else int(m.group(1)))
        return (self.cipher_name, self.version(), bits)

    def selected_alpn_protocol(self) -> Optional[str]:
        """As ssl.SSLObject.selected_alpn_protocol(): the ALPN protocol, or None."""
        return self.alpn

    def getpeercert(self, binary_form: bool = False) -> None:
        """None: the library asks no client certificate."""
        return None

    def compression(self) -> None:
        """None: TLS compression is never used."""
        return None


def read_info(lib: Any, ptr: Any, id: int) -> Tuple[int, Optional[TlsInfo]]:
    """iocp_tls_get_info(id) -> (0, TlsInfo), or (negative code, None)."""
    info = _TlsInfo()
    info.size = ctypes.sizeof(info)
    rc = lib.iocp_tls_get_info(ptr, id, ctypes.byref(info))
    if rc < 0:
        return rc, None
    return 0, TlsInfo(info.version, info.cipher.decode("ascii", "replace"),
                      info.alpn.decode("ascii", "replace") or None)


def extra_info(info: TlsInfo) -> Dict[str, Any]:
    """What a TLS transport's get_extra_info() adds: asyncio's own keys
    ("ssl_object", "cipher", "peercert", "compression") and iocpsrv's
    ("tls_version", "alpn"). Not "sslcontext": asyncio's streams take it
    for a transport that cannot half-close, which this one can."""
    return {"ssl_object": info, "cipher": info.cipher(), "peercert": None,
            "compression": None, "tls_version": info.version(), "alpn": info.alpn}
