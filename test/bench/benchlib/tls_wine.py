"""The tls-wine section: under Debian 13's Wine 10 (test/tools/wine10.sh,
its SChannel has the server side), the echo sample with --tls against
baseline_schannel.c, a minimal SChannel echo on a completion port with no
library; the ratio is the figure (absolute numbers under Wine say little).

Both servers get the same RSA 2048 identity (Wine imports no ECDSA key),
are started once and kept running; each round drives each in turn (order
reversed every other round) with two clients, 100 connections x 64 KiB at
TLS 1.2 (Wine's SChannel has no 1.3), each message echoed whole and
compared: tls_loadgen (C, OpenSSL, epoll) and a Python ssl client (one
blocking thread per connection). A third row runs the baseline with its
receives capped at 16 KiB (one TLS record's worth): under Wine every
receive is a wineserver round trip, and the row shows what that costs."""

import os
import socket
import ssl
import statistics
import subprocess
import threading
import time

from .procs import log, wine_env
from .tls import make_certs

W64 = "build/win64"
WINE10 = "test/tools/wine10.sh"
CONNS, SIZE = 100, 65536


def python_client(port, seconds, warmup):
    """Echoes per second and MB/s of CONNS blocking ssl connections (one
    thread each), every echo compared; an "errors=N" line like loadgen's."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    msg = os.urandom(SIZE)
    start = time.monotonic() + warmup
    end = start + seconds
    counts, errors = [0] * CONNS, [0]

    def one(i):
        try:
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30))
            while time.monotonic() < end:
                s.sendall(msg)
                got = bytearray()
                while len(got) < SIZE:
                    chunk = s.recv(SIZE - len(got))
                    if not chunk:
                        raise OSError("closed")
                    got += chunk
                if got != msg:
                    raise OSError("echo differs")
                if time.monotonic() >= start:
                    counts[i] += 1
            s.close()
        except (OSError, ssl.SSLError):
            errors[0] += 1

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(CONNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + warmup + 60)
    n = sum(counts)
    return f"echoes_per_s={n / seconds:.1f} mb_per_s={n * SIZE / seconds / 1e6:.2f} errors={errors[0]}"


def run(b, o):
    """Records group "tls-wine": label = server, cfg = client."""
    os.makedirs(os.path.join(b.out, "certs"), exist_ok=True)
    certs = make_certs(b.out)
    p12 = os.path.join(certs, "rsa.p12")
    tls = ["--tls", p12, "--tls-password", "secret"]
    # Everything under the current folder (the top), which wine10.sh binds
    # into the chroot; iocpsrv.dll found through WINEPATH.
    wine_env("wineprefix-bench-wine10")
    base = [WINE10, f"{W64}/test/bench/baseline_schannel.exe"] + tls
    variants = [("baseline_schannel", base),
                ("iocpsrv echo_server --tls", [WINE10, f"{W64}/sample_clients/echo_server.exe"] + tls),
                ("baseline_schannel --recv 16384", base + ["--recv", "16384"])]
    servers = []
    log("bench.py: tls-wine (the first start makes the Wine 10 prefix, ~20 s)")
    try:
        for label, argv in variants:
            srv = b.start(label, argv, 180)
            if srv is None:
                return
            servers.append((label, srv))
        for r in range(o.rounds):
            for label, srv in (servers if r % 2 == 0 else servers[::-1]):  # A B C, C B A
                res = subprocess.run([f"{W64}/test/bench/tls_loadgen", "--port", str(srv.port), "--mode", "echo",
                                      "--conns", str(CONNS), "--size", str(SIZE), "--tls", "1.2",
                                      "--seconds", f"{o.seconds:g}", "--warmup", f"{o.warmup:g}",
                                      "--cpu-pid", str(srv.pid)],
                                     stdout=subprocess.PIPE, stderr=b.loadgen_err, text=True)
                b.record("tls-wine", label, "100x65536 TLS 1.2 (tls_loadgen)",
                         res.stdout.strip() or "errors=1 failed=tls_loadgen")
                b.record("tls-wine", label, "100x65536 TLS 1.2 (Python ssl)",
                         python_client(srv.port, o.seconds, o.warmup))
    finally:
        for _, srv in servers:
            srv.stop()


def table(runs):
    """Medians per server and client, and the median of the paired (same
    round) ratios iocpsrv / baseline_schannel."""
    rs = [r for r in runs if r["group"] == "tls-wine"]
    if not rs:
        return
    print("\n### TLS echo under Wine 10: iocpsrv against a minimal SChannel echo\n")
    print("| client | server | echoes/s (median) | MB/s (median) | errors |")
    print("|---|---|---:|---:|---:|")
    ratios = {}
    for cfg in dict.fromkeys(r["cfg"] for r in rs):
        per = {}
        for label in dict.fromkeys(r["label"] for r in rs):
            xs = [r for r in rs if r["cfg"] == cfg and r["label"] == label]
            per[label] = xs
            eps = [float(x.get("echoes_per_s", "nan")) for x in xs]
            mbs = [float(x.get("mb_per_s", "nan")) for x in xs]
            errs = sum(int(x.get("errors", "1")) for x in xs)
            print(f"| {cfg} | {label} | {statistics.median(eps):.1f} | {statistics.median(mbs):.2f} | {errs} |")
        base, lib = per.get("baseline_schannel", []), per.get("iocpsrv echo_server --tls", [])
        ratios[cfg] = [float(y["echoes_per_s"]) / float(x["echoes_per_s"])
                       for x, y in zip(base, lib) if float(x.get("echoes_per_s", 0)) > 0]
    print("\n| client | iocpsrv / baseline_schannel, paired rounds: median (min-max) |")
    print("|---|---|")
    for cfg, rr in ratios.items():
        if rr:
            print(f"| {cfg} | {statistics.median(rr):.2f} ({min(rr):.2f}-{max(rr):.2f}) |")
