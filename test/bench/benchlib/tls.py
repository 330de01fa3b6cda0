"""The tls section: the HTTP sample over TLS against nginx with the same
certificate, and the echo sample's TLS throughput against plain TCP.

For each identity (ECDSA P-256, RSA 2048; made by
test/c/support/make_certs.sh, nginx given the same certificate and key as
PEM) nginx and the HTTP sample (`--tls`) are started once and kept running;
each round drives each in turn (order reversed every other round), for TLS
1.3 and 1.2 (the clients pin the version), with two clients per figure:

  keep-alive  wrk (--http-conns[0] connections; its OpenSSL pinned by an
              OPENSSL_CONF of our own) and tls_loadgen --mode http;
  handshakes  a new connection, so a full handshake (no resumption), per
              request: wrk -H "Connection: close" and tls_loadgen --mode
              http-close (16 connections each), and `openssl s_time -new`
              (one connection at a time).

Echo: the echo sample with --tls and without, kept running, 100
connections x 64 KiB (tls_loadgen; loadgen as the second client on plain
TCP), the server's CPU per MB, and `openssl speed` of the cipher TLS
negotiated (AES-256-GCM). The model: TLS costs the server one decryption
and one encryption of every payload byte more than plain TCP.

nginx is configured as its careful users do: worker_processes auto,
keep-alive without a request limit, ssl_session_cache shared, no access
log, sendfile off (nothing to send from files)."""

import os
import re
import subprocess
import time

from .procs import CLK_TCK, Nginx, cpu_ticks, log, pinned
from .report import med, ok, quart, vals
from .runs import wrk_result

NAT = "build/linux"

NGINX_TLS_CONF = """\
# Written by test/bench/bench.py (tls section): as for production, with
# the benchmark's same small answer.
worker_processes auto;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 8192; }}
worker_rlimit_nofile 20000;
http {{
  access_log off;
  default_type text/plain;
  keepalive_requests 100000000;
  keepalive_timeout 65;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  ssl_session_timeout 1h;
  client_body_temp_path {prefix}/tmp/body;
  proxy_temp_path {prefix}/tmp/proxy;
  fastcgi_temp_path {prefix}/tmp/fastcgi;
  uwsgi_temp_path {prefix}/tmp/uwsgi;
  scgi_temp_path {prefix}/tmp/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{ return 200 "Hello, World!"; }}
  }}
}}
"""

# OPENSSL_CONF for wrk: the client's protocol version (OpenSSL 3 applies
# system_default to every SSL_CTX the program makes).
PIN_CONF = """\
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = pin
[pin]
MinProtocol = {v}
MaxProtocol = {v}
"""

VERSIONS = (("1.3", "TLSv1.3"), ("1.2", "TLSv1.2"))


def make_certs(out):
    """The test identities as PKCS#12 (the samples) and PEM (nginx)."""
    d = os.path.join(out, "certs")
    subprocess.run(["sh", "test/c/support/make_certs.sh", d, os.path.join(d, "stamp")], check=True)
    for k in ("rsa", "ecdsa"):
        p12 = os.path.join(d, f"{k}.p12")
        key = subprocess.run(["openssl", "pkcs12", "-in", p12, "-passin", "pass:secret", "-nocerts", "-nodes"],
                             stdout=subprocess.PIPE, check=True).stdout
        subprocess.run(["openssl", "pkey", "-out", os.path.join(d, f"{k}-key.pem")], input=key, check=True)
        crt = subprocess.run(["openssl", "pkcs12", "-in", p12, "-passin", "pass:secret", "-clcerts", "-nokeys"],
                             stdout=subprocess.PIPE, check=True).stdout
        subprocess.run(["openssl", "x509", "-out", os.path.join(d, f"{k}-cert.pem")], input=crt, check=True)
    for v, name in VERSIONS:
        with open(os.path.join(d, f"pin-{v}.cnf"), "w") as f:
            f.write(PIN_CONF.format(v=name))
    return d


class TlsNginx(Nginx):
    """nginx with the TLS configuration above."""

    def __init__(self, out, port, errlog, cert, key, cpus=None):
        self.conf_text = NGINX_TLS_CONF
        self.conf_args = dict(cert=cert, key=key)
        self.scheme = "https"
        super().__init__(out, 0, port, errlog, cpus)


class Tls:
    def __init__(self, bench, o):
        self.b = bench
        self.o = o
        self.tls_loadgen = f"{NAT}/test/bench/tls_loadgen"
        self.certs = make_certs(bench.out)
        self.speed = {}

    # ---- clients ---------------------------------------------------------

    def wrk(self, conns, port, v, close, seconds):
        argv = ["wrk", "-t", str(self.o.wrk_threads), "-c", str(conns), "-d", f"{max(1, round(seconds))}s",
                "--latency"] + (["-H", "Connection: close"] if close else []) + [f"https://127.0.0.1:{port}/"]
        env = dict(os.environ, OPENSSL_CONF=os.path.join(self.certs, f"pin-{v}.cnf"))
        return subprocess.run(pinned(argv, self.o.client_cpus), stdout=subprocess.PIPE,
                              stderr=self.b.wrk_err, text=True, env=env).stdout

    def wrk_run(self, cfg, label, conns, port, pid, v, close):
        if self.o.warmup > 0:
            self.wrk(conns, port, v, close, self.o.warmup)
        c0, t0 = cpu_ticks(pid), time.monotonic()
        w = self.wrk(conns, port, v, close, self.o.seconds)
        c1, t1 = cpu_ticks(pid), time.monotonic()
        with open(os.path.join(self.b.out, "wrk.txt"), "a") as f:
            f.write(f"{cfg} {label}\n{w}\n")
        self.b.record("tls", label, cfg, wrk_result(w, (c1 - c0) / CLK_TCK, t1 - t0))

    def loadgen_run(self, group, cfg, label, port, pid, args):
        argv = [self.tls_loadgen, "--port", str(port), "--seconds", f"{self.o.seconds:g}",
                "--warmup", f"{self.o.warmup:g}", "--cpu-pid", str(pid)] + args
        res = subprocess.run(pinned(argv, self.o.client_cpus), stdout=subprocess.PIPE,
                             stderr=self.b.loadgen_err, text=True)
        self.b.record(group, label, cfg, res.stdout.strip() or "errors=1 failed=tls_loadgen")

    def s_time(self, cfg, label, port, pid, v):
        """openssl s_time -new: full handshakes, one connection at a time."""
        argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time",
                str(max(1, round(self.o.seconds))), f"-tls{v.replace('.', '_')}"]
        c0, t0 = cpu_ticks(pid), time.monotonic()
        res = subprocess.run(pinned(argv, self.o.client_cpus), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        c1, t1 = cpu_ticks(pid), time.monotonic()
        m = re.search(r"(\d+) connections in ([\d.]+)s", res.stdout)
        if not m:
            self.b.record("tls", label, cfg, "errors=1 failed=s_time")
            return
        n = int(m.group(1))
        cpu = (c1 - c0) / CLK_TCK
        self.b.record("tls", label, cfg, f"echoes_per_s={n / (t1 - t0):.1f} "
                      f"server_cpu_us_per_echo={cpu * 1e6 / n if n else float('nan'):.3f} errors=0")

    # ---- sections --------------------------------------------------------

    def http(self):
        conns = int(self.o.http_conns[0])
        http = [f"{NAT}/sample_clients/http_server", "--threads", str(self.o.http_threads)]
        for ident in ("ecdsa", "rsa"):
            log(f"bench.py: tls http {ident}")
            c = self.certs
            try:
                nginx = TlsNginx(self.b.out, self.o.nginx_port, self.b.servers_err,
                                 os.path.join(c, f"{ident}-cert.pem"), os.path.join(c, f"{ident}-key.pem"),
                                 self.o.server_cpus)
            except RuntimeError as e:
                log(f"bench.py: {e}")
                return
            srv = None
            try:
                srv = self.b.start("iocpsrv http_server", http + ["--tls", os.path.join(c, f"{ident}.p12"),
                                                                  "--tls-password", "secret"])
                if srv is None:
                    return
                pair = [(nginx, "nginx"), (srv, "iocpsrv http_server")]
                for r in range(self.o.rounds):
                    for s, label in (pair if r % 2 == 0 else pair[::-1]):
                        for v, _ in VERSIONS:
                            k = f"{ident} TLS {v}"
                            self.wrk_run(f"{k} keep-alive {conns}c (wrk)", label, conns, s.port, s.pid, v, False)
                            self.loadgen_run("tls", f"{k} keep-alive {conns}c (tls_loadgen)", label, s.port,
                                             s.pid, ["--mode", "http", "--conns", str(conns), "--tls", v])
                            self.wrk_run(f"{k} handshakes 16c (wrk)", label, 16, s.port, s.pid, v, True)
                            self.loadgen_run("tls", f"{k} handshakes 16c (tls_loadgen)", label, s.port, s.pid,
                                             ["--mode", "http-close", "--conns", "16", "--tls", v])
                            self.s_time(f"{k} handshakes 1c (s_time)", label, s.port, s.pid, v)
            finally:
                if srv is not None:
                    srv.stop()
                nginx.stop()

    def echo(self):
        echo = f"{NAT}/sample_clients/echo_server"
        p12 = os.path.join(self.certs, "ecdsa.p12")
        plain = self.b.start("plain TCP", [echo])
        tls = self.b.start("TLS", [echo, "--tls", p12, "--tls-password", "secret"])
        try:
            if plain is None or tls is None:
                return
            for r in range(self.o.rounds):
                order = [0, 1] if r % 2 == 0 else [1, 0]
                for i in order:
                    if i == 0:
                        self.loadgen_run("tls-echo", "100x65536 (tls_loadgen)", "plain TCP", plain.port, plain.pid,
                                         ["--mode", "echo", "--conns", "100", "--size", "65536", "--tls", "off"])
                        self.b.record("tls-echo", "plain TCP", "100x65536 (loadgen)",
                                      self.b.drive("100x65536", plain.pid, plain.port))
                    else:
                        for v, _ in VERSIONS:
                            self.loadgen_run("tls-echo", "100x65536 (tls_loadgen)", f"TLS {v}", tls.port, tls.pid,
                                             ["--mode", "echo", "--conns", "100", "--size", "65536", "--tls", v])
        finally:
            for s in (plain, tls):
                if s is not None:
                    s.stop()
        # The cipher alone, one processor, 16 KiB records.
        for cipher in ("aes-256-gcm", "chacha20-poly1305"):
            res = subprocess.run(["openssl", "speed", "-evp", cipher, "-bytes", "16384", "-seconds", "2"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
            m = re.search(r"^\S+\s+([\d.]+)k\s*$", res.strip().splitlines()[-1]) if res.strip() else None
            if m:
                self.speed[cipher] = float(m.group(1)) * 1000 / 1e6  # kB/s (1000 B) -> MB/s
        log(f"bench.py: openssl speed (MB/s, 16 KiB): {self.speed}")


def table(runs, speed):
    """The tls tables (paired ratios over the rounds, as live_tables)."""
    if any(r["group"] == "tls" for r in runs):
        print()
        print("TLS: the HTTP sample against nginx, same certificate, both kept running and driven in turn "
              "(paired ratios: the same round's runs; median, and quartiles in brackets):")
        print()
        print("| what (client) | nginx req/s | iocpsrv req/s | paired ratio iocpsrv/nginx | nginx CPU us/req | "
              "iocpsrv CPU us/req | paired ratio of CPU per request | rounds | failed runs |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        cfgs = list(dict.fromkeys(r["cfg"] for r in runs if r["group"] == "tls"))
        for cfg in cfgs:
            b = [r for r in runs if r["group"] == "tls" and r["cfg"] == cfg and r["label"] == "nginx"]
            s = [r for r in runs if r["group"] == "tls" and r["cfg"] == cfg and r["label"] != "nginx"]
            both = [(x, y) for x, y in zip(b, s) if ok(x) and ok(y)]
            rate = [float(y["echoes_per_s"]) / float(x["echoes_per_s"]) for x, y in both
                    if float(x["echoes_per_s"]) > 0]
            cpu = [float(y["server_cpu_us_per_echo"]) / float(x["server_cpu_us_per_echo"]) for x, y in both
                   if float(x.get("server_cpu_us_per_echo", 0)) > 0 and "server_cpu_us_per_echo" in y]
            print(f"| {cfg} | {med(vals(b, 'echoes_per_s')):,.0f} | {med(vals(s, 'echoes_per_s')):,.0f} | "
                  f"{quart(rate)} | {med(vals(b, 'server_cpu_us_per_echo')):.1f} | "
                  f"{med(vals(s, 'server_cpu_us_per_echo')):.1f} | {quart(cpu)} | {len(both)} | "
                  f"{sum(not ok(r) for r in b + s)} |")
    e = [r for r in runs if r["group"] == "tls-echo"]
    if e:
        print()
        print("TLS echo, 100 connections x 64 KiB, the echo sample (ECDSA P-256; one run each per round, "
              "medians); server CPU per MB echoed:")
        print()
        print("| server (client) | MB/s | server CPU ms/MB | client CPU % | runs | failed runs |")
        print("|---|---:|---:|---:|---:|---:|")
        for key in dict.fromkeys((r["label"], r["cfg"]) for r in e):
            rs = [r for r in e if (r["label"], r["cfg"]) == key]
            mbs = vals(rs, "mb_per_s")
            per_mb = [float(r["server_cpu_us_per_echo"]) / 65536 * 1e6 / 1e3 for r in rs
                      if ok(r) and "server_cpu_us_per_echo" in r]
            print(f"| {key[0]} ({key[1]}) | {med(mbs):,.1f} | {med(per_mb):.2f} | "
                  f"{med(vals(rs, 'client_cpu_pct')):.0f} | {len(rs)} | {sum(not ok(r) for r in rs)} |")
        if speed:
            print()
            print("openssl speed -evp, 16 KiB blocks, one processor: "
                  + ", ".join(f"{c} {v:,.0f} MB/s ({2e3 / v:.2f} ms per MB for a decryption and an encryption)"
                              for c, v in speed.items()) + ".")
        if speed.get("aes-256-gcm"):
            # The model: plain TCP's CPU per MB (the same round's tls_loadgen
            # run) plus a decryption and an encryption of every byte.
            cipher = 2e3 / speed["aes-256-gcm"]
            per_mb = lambda r: float(r["server_cpu_us_per_echo"]) / 65536 * 1e3
            plain = [r for r in e if r["label"] == "plain TCP" and r["cfg"] == "100x65536 (tls_loadgen)"]
            parts = []
            for v in ("TLS 1.3", "TLS 1.2"):
                tls = [r for r in e if r["label"] == v]
                ratio = [per_mb(t) / (per_mb(p) + cipher) for p, t in zip(plain, tls)
                         if ok(p) and ok(t) and "server_cpu_us_per_echo" in p and "server_cpu_us_per_echo" in t]
                parts.append(f"{v} {quart(ratio)}")
            print()
            print(f"TLS echo against plain TCP plus the cipher ({cipher:.2f} ms per MB), server CPU per MB, "
                  "paired by round (median, quartiles): " + ", ".join(parts) + " (the target: at most 1.1).")
