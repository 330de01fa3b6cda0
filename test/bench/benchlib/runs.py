"""The runs: one loadgen (or wrk) measurement against a server, rounds of
fresh servers with the order reversed every other round, and servers kept
running and driven in turn. Every result is one record (a dict of strings:
group, label, cfg and loadgen's key=value fields), also appended to
raw.txt as loadgen's line with group=, label= and cfg= in front."""

import math
import os
import re
import subprocess
import time

from .procs import CLK_TCK, Nginx, Server, cpu_ticks, log, pinned

CFG = re.compile(r"^[0-9]+x[0-9]+(x[0-9]+)?$")


class Bench:
    """What every run needs: the options, the output folder, the records."""

    def __init__(self, opts, out, loadgen):
        self.o = opts
        self.out = out
        self.loadgen = loadgen
        self.records = []
        self.raw = os.path.join(out, "raw.txt")
        self.servers_err = open(os.path.join(out, "servers.err"), "a")
        self.loadgen_err = open(os.path.join(out, "loadgen.err"), "a")
        self.wrk_err = open(os.path.join(out, "wrk.err"), "a")

    def record(self, group, label, cfg, result):
        fields = dict(kv.split("=", 1) for kv in result.split() if "=" in kv)
        self.records.append(dict(fields, group=group, label=label, cfg=cfg))
        with open(self.raw, "a") as f:
            f.write(f"group={group} label={label} cfg={cfg} {result}\n")
        log(f"  {cfg} {label}: {result}")

    def drive(self, cfg, server_pid, port, watch=0):
        """One loadgen run of configuration CxM[xK]: its key=value line."""
        conns, size, *k = cfg.split("x")
        argv = [self.loadgen, "--port", str(port), "--conns", conns, "--size", size,
                "--inflight", k[0] if k else "1", "--seconds", f"{self.o.seconds:g}",
                "--warmup", f"{self.o.warmup:g}", "--cpu-pid", str(server_pid), "--io", self.o.client]
        if watch:
            argv += ["--watch-pid", str(watch)]
        res = subprocess.run(pinned(argv, self.o.client_cpus), stdout=subprocess.PIPE,
                             stderr=self.loadgen_err, text=True)
        return res.stdout.strip() or "errors=1 failed=loadgen"

    def start(self, label, argv, timeout=60):
        try:
            return Server(label, pinned(argv, self.o.server_cpus), self.servers_err, timeout)
        except RuntimeError as e:
            log(f"bench.py: {e}")
            return None

    def start_nginx(self):
        try:
            return Nginx(self.out, self.o.http_threads, self.o.nginx_port, self.servers_err,
                         self.o.server_cpus)
        except RuntimeError as e:
            log(f"bench.py: {e}")
            return None

    # ---- rounds of fresh servers ----------------------------------------

    def echo_one(self, group, label, cfg, argv):
        """A fresh echo server, one loadgen run, the server stopped."""
        srv = self.start(label, argv)
        if srv is None:
            self.record(group, label, cfg, "errors=1 failed=start")
            return
        try:
            result = self.drive(cfg, srv.pid, srv.port)
        finally:
            srv.stop()
        self.record(group, label, cfg, result)

    def http_one(self, group, label, conns, argv):
        """A fresh HTTP server (argv None: nginx), a wrk warm-up and run."""
        srv = self.start_nginx() if argv is None else self.start(label, argv)
        if srv is None:
            self.record(group, label, f"{conns}c", "errors=1 failed=start")
            return
        try:
            self.measure_http(group, label, conns, srv.port, srv.pid)
        finally:
            srv.stop()

    def rounds(self, runner, cfg, variants):
        """R rounds of every variant ((group, label, argv); the first of a
        group is the baseline the others are divided by), the order
        reversed every other round."""
        for r in range(self.o.rounds):
            for group, label, argv in (variants if r % 2 == 0 else variants[::-1]):
                runner(group, label, cfg, argv)

    # ---- servers kept running -------------------------------------------

    def live(self, group, cfg, variants, watch=0, timeout=60):
        """Every variant ((label, argv)) started once and kept running, idle
        but for the one being driven; R rounds drive each in turn (order
        reversed every other round) with one loadgen run. `watch`: a process
        whose CPU share loadgen reports too (0: none)."""
        log(f"bench.py: {group} {cfg}")
        servers = []
        try:
            for label, argv in variants:
                srv = self.start(label, argv, timeout)
                if srv is None:
                    return
                servers.append(srv)
            for r in range(self.o.rounds):
                for srv in (servers if r % 2 == 0 else servers[::-1]):
                    self.record(group, srv.label, cfg, self.drive(cfg, srv.pid, srv.port, watch))
        finally:
            for srv in servers:
                srv.stop()

    def live_http(self, conns, http_argv):
        """nginx and the HTTP sample started once and kept running; R rounds
        measure each in turn (order reversed every other round)."""
        log(f"bench.py: live-http {conns} connections")
        nginx = self.start_nginx()
        if nginx is None:
            return
        try:
            srv = self.start("iocpsrv http_server", http_argv)
            if srv is None:
                return
            try:
                pair = [(nginx, "nginx"), (srv, "iocpsrv http_server")]
                for r in range(self.o.rounds):
                    for s, label in (pair if r % 2 == 0 else pair[::-1]):
                        self.measure_http("live-http", label, conns, s.port, s.pid)
            finally:
                srv.stop()
        finally:
            nginx.stop()

    # ---- wrk --------------------------------------------------------------

    def wrk(self, conns, seconds, port, latency):
        argv = ["wrk", "-t", str(self.o.wrk_threads), "-c", str(conns),
                "-d", f"{max(1, math.ceil(seconds))}s"]  # wrk takes whole seconds
        argv += (["--latency"] if latency else []) + [f"http://127.0.0.1:{port}/"]
        return subprocess.run(pinned(argv, self.o.client_cpus), stdout=subprocess.PIPE,
                              stderr=self.wrk_err, text=True).stdout

    def measure_http(self, group, label, conns, port, pid):
        """A wrk warm-up, then the measured wrk run with the server's CPU read
        around it."""
        if self.o.warmup > 0:
            self.wrk(conns, self.o.warmup, port, False)
        c0, t0 = cpu_ticks(pid), time.monotonic()
        w = self.wrk(conns, self.o.seconds, port, True)
        c1, t1 = cpu_ticks(pid), time.monotonic()
        with open(os.path.join(self.out, "wrk.txt"), "a") as f:
            f.write(w + "\n")
        self.record(group, label, f"{conns}c", wrk_result(w, (c1 - c0) / CLK_TCK, t1 - t0))


def wrk_result(text, cpu_s, wall_s):
    """wrk's report as loadgen's fields (echoes_per_s is requests/s)."""
    rps = p99 = None
    errors = 0
    for line in text.splitlines():
        f = line.split()
        if line.startswith("Requests/sec:"):
            rps = float(f[1])
        elif f and f[0] == "99%":
            p99 = f[1]
        elif "Non-2xx" in line:
            errors += int(f[-1])
        elif "Socket errors" in line:
            errors += sum(int(x.rstrip(",")) for x in f[3:10:2])
    if rps is None:
        return "errors=1 failed=wrk"
    p99_ms = float("nan")
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if p99 and p99.endswith(unit):
            try:
                p99_ms = float(p99[:-len(unit)]) * scale
            except ValueError:
                pass
            break
    req = rps * wall_s
    return (f"echoes_per_s={rps} server_cpu_pct={cpu_s / wall_s * 100:.1f} "
            f"server_cpu_us_per_echo={cpu_s * 1e6 / req if req else float('nan'):.3f} "
            f"p99_us={p99_ms * 1e3:.1f} errors={errors}")
