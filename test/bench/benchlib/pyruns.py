"""The asyncio and aiohttp sections: Python servers as asyncio users write
them, on the standard loop, on uvloop and on iocpsrv, each started once per
configuration and kept running, driven in turn (order reversed every other
round). Echo: loadgen (--client epoll or uring). HTTP: aiohttp's
hello-world under wrk, and under ApacheBench (`ab -k`, Debian's
apache2-utils) as the second, independent client."""

import os
import re
import shutil
import subprocess

from .procs import TOP, measure_tool, log, pinned

PY = "/usr/bin/python3"  # Debian's: python3-uvloop and python3-aiohttp are built for it
# The loops are bench.py's --py-loops, the first the tables' baseline:
# uvloop, asyncio (the standard loop), iocpsrv (its asyncio layer, the loop
# draining the library through its wait handle), iocpsrv-pure (the same
# without the C accelerator, IOCPSRV_PURE_PYTHON=1, as installed where no
# compiler was), iocpsrv-helper (a helper thread waiting in iocp_wait for
# the loop instead, IOCPSRV_ASYNCIO_HELPER=1, as on Windows' proactor loop),
# iocpsrv-uvloop (the layer on uvloop's loop: the echoes only).
SPEEDUPS = os.path.join(TOP, "build/linux/sample_clients/python")  # the accelerator meson built


def echo_variants(loops, streams_size):
    """(label, argv) of the Protocol echoes, or of the streams echoes
    (readexactly(streams_size), write, drain)."""
    kind = "streams" if streams_size else "Protocol"
    extra = ["--streams", str(streams_size)] if streams_size else []
    return [(f"{loop} {kind}", [PY, "test/bench/asyncio_echo.py", "--loop", loop] + extra)
            for loop in loops]


def prime(b, srv):
    """A short loadgen run whose connections then close. A fresh CPython
    server that reads with asyncio's 256 KiB recv() pays glibc an mmap, a
    page fault and a munmap per read until the first connection that closes
    frees a whole buffer, which raises glibc's dynamic mmap threshold
    (RESULTS.md); a server that has run for a while is past that, so every
    server is measured past it."""
    subprocess.run([b.loadgen, "--port", str(srv.port), "--conns", "10", "--size", "64",
                    "--seconds", "0.5", "--warmup", "0", "--io", "epoll"],
                   stdout=subprocess.DEVNULL, stderr=b.loadgen_err)


def live_primed(b, group, cfg, variants):
    """Bench.live, with each server primed once before the rounds."""
    log(f"bench.py: {group} {cfg}")
    servers = []
    try:
        for label, argv in variants:
            srv = b.start(label, argv)
            if srv is None:
                return
            servers.append(srv)
            prime(b, srv)
        for r in range(b.o.rounds):
            for srv in (servers if r % 2 == 0 else servers[::-1]):
                b.record(group, srv.label, cfg, b.drive(cfg, srv.pid, srv.port))
    finally:
        for srv in servers:
            srv.stop()


def run_asyncio(b, cfgs):
    os.environ["LD_LIBRARY_PATH"] = os.path.join(TOP, "build/linux")
    os.environ["IOCPSRV_SPEEDUPS_DIR"] = SPEEDUPS
    for cfg in cfgs:
        size = int(cfg.split("x")[1])
        live_primed(b, "py-proto", cfg, echo_variants(b.o.py_loops, 0))
        live_primed(b, "py-streams", cfg, echo_variants(b.o.py_loops, size))


def ab(b, conns, seconds, port):
    """ApacheBench with keep-alive for `seconds`: its report."""
    argv = ["ab", "-q", "-k", "-c", str(conns), "-t", f"{max(1, round(seconds))}",
            "-n", "100000000", f"http://127.0.0.1:{port}/"]
    return subprocess.run(pinned(argv, b.o.client_cpus), stdout=subprocess.PIPE,
                          stderr=b.wrk_err, text=True).stdout


def ab_result(text, cpu_s, wall_s):
    """ab's report as loadgen's fields (echoes_per_s is requests/s)."""
    rps = re.search(r"Requests per second:\s+([0-9.]+)", text)
    failed = re.search(r"Failed requests:\s+([0-9]+)", text)
    non2xx = re.search(r"Non-2xx responses:\s+([0-9]+)", text)
    if rps is None:
        return "errors=1 failed=ab"
    errors = int(failed.group(1)) if failed else 1
    errors += int(non2xx.group(1)) if non2xx else 0
    req = float(rps.group(1)) * wall_s
    return (f"echoes_per_s={rps.group(1)} server_cpu_pct={cpu_s / wall_s * 100:.1f} "
            f"server_cpu_us_per_echo={cpu_s * 1e6 / req if req else float('nan'):.3f} "
            f"errors={errors}")


def measure_ab(b, group, label, conns, port, pid):
    measure_tool(b, group, label, conns, port, pid, ab, ab_result, "ab.txt")


def run_aiohttp(b, conn_counts):
    os.environ["LD_LIBRARY_PATH"] = os.path.join(TOP, "build/linux")
    os.environ["IOCPSRV_SPEEDUPS_DIR"] = SPEEDUPS
    clients = [("aiohttp-wrk", b.measure_http)]
    if shutil.which("ab"):
        clients.append(("aiohttp-ab", lambda *a: measure_ab(b, *a)))
    else:
        log("bench.py: no ab (apache2-utils): aiohttp under wrk only")
    for conns in conn_counts:
        log(f"bench.py: aiohttp {conns} connections")
        servers = []
        try:
            for loop in b.o.py_loops:
                srv = b.start(f"aiohttp on {loop}", [PY, "test/bench/aiohttp_hello.py", "--loop", loop])
                if srv is None:
                    return
                servers.append(srv)
            for r in range(b.o.rounds):
                for group, measure in clients:
                    for srv in (servers if r % 2 == 0 else servers[::-1]):
                        measure(group, srv.label, int(conns), srv.port, srv.pid)
        finally:
            for srv in servers:
                srv.stop()
