"""Counts wineserver requests per echo: under Wine every socket operation
and every packet taken from a completion port is one or more requests to the
single-threaded wineserver, so this is the Windows engine's cost there,
counted rather than timed (a busy machine changes it little).

    python3 test/bench/bench.py wine-requests [CxM] [SECONDS]      (default 50x64 2)

For each server (the echo sample with neither completion tool, without its
immediate sends (IOCPSRV_TRY_SEND=0), with IOCPSRV_SKIP_ON_SUCCESS=1, with
IOCPSRV_DEQUEUE_BATCH=16, and the minimal IOCP echo
test/bench/baseline_iocp.c), a fresh wineserver traces every request (-d1)
while the native client (test/bench/loadgen.c) runs C connections of M-byte
echoes for SECONDS; prints requests per echo and the most frequent requests.
Uses build/win64 and build/linux (`bench.py --only echo` builds both) and a
private Wine prefix, build/win64/wineprefix-requests, whose wineserver it
ends. A measurement, not a test.
"""

import argparse
import collections
import os
import re
import subprocess
import time

from .procs import TOP, Server, die, wine_env

VARIANTS = (
    ("echo sample", [], "sample_clients/echo_server.exe"),
    ("echo sample, no immediate send", ["IOCPSRV_TRY_SEND=0"], "sample_clients/echo_server.exe"),
    ("echo sample, skip port on success", ["IOCPSRV_SKIP_ON_SUCCESS=1"], "sample_clients/echo_server.exe"),
    ("echo sample, GQCSEx 16", ["IOCPSRV_DEQUEUE_BATCH=16"], "sample_clients/echo_server.exe"),
    ("baseline_iocp", [], "test/bench/baseline_iocp.exe"),
)
# A request is "ID: name( ... )"; its reply "ID: name() = STATUS { ... }".
REQUEST = re.compile(r"^[0-9a-f]+: ([a-z_]+)\(")


def requests(log):
    with open(log, errors="replace") as f:
        return [m.group(1) for line in f if (m := REQUEST.match(line)) and ") = " not in line]


def main(argv):
    p = argparse.ArgumentParser(prog="bench.py wine-requests", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter, usage=argparse.SUPPRESS)
    p.add_argument("cfg", nargs="?", default="50x64")
    p.add_argument("seconds", nargs="?", default="2")
    o = p.parse_args(argv)
    if not re.match(r"^[0-9]+x[0-9]+$", o.cfg):
        p.error(f"bad configuration {o.cfg} (want CxM)")
    conns, size = o.cfg.split("x")
    os.chdir(TOP)
    loadgen = "build/linux/test/bench/loadgen"
    for f in (loadgen, "build/win64/sample_clients/echo_server.exe", "build/win64/test/bench/baseline_iocp.exe"):
        if not os.path.exists(f):
            die(f"{f} missing (run python3 test/bench/bench.py --only echo once)")
    wine_env("wineprefix-requests")
    if not os.path.isdir(os.environ["WINEPREFIX"]):
        subprocess.run(["wineboot", "-i"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = os.path.join(TOP, "build", "win64", "wineserver-requests.log")
    print(f"| server | {o.cfg}: echoes | wineserver requests per echo | most frequent, per echo |")
    print("|---|---:|---:|---|")
    try:
        for label, env, prog in VARIANTS:
            subprocess.run(["wineserver", "-k"], stderr=subprocess.DEVNULL)
            with open(log, "w") as trace:
                tracer = subprocess.Popen(["wineserver", "-f", "-p", "-d1"], stderr=trace)
            with open(os.devnull, "w") as null:
                try:
                    srv = Server(label, ["env", *env, "wine", f"build/win64/{prog}"], null, timeout=120)
                except RuntimeError as e:
                    die(str(e))
            try:
                time.sleep(1)  # start-up requests settle before the count starts
                before = len(requests(log))
                res = subprocess.run([loadgen, "--port", str(srv.port), "--conns", conns, "--size", size,
                                      "--seconds", o.seconds, "--warmup", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
                names = requests(log)[before:]
            finally:
                srv.stop()
            m = re.search(r" echoes=([0-9]+)", res)
            echoes = max(int(m.group(1)) if m else 0, 1)
            top = ", ".join(f"{n} {c / echoes:.2f}" for n, c in collections.Counter(names).most_common(5))
            print(f"| {label} | {echoes if m else 0:,} | {len(names) / echoes:.2f} | {top} |", flush=True)
            subprocess.run(["wineserver", "-k"], stderr=subprocess.DEVNULL)
            tracer.wait()
    finally:
        subprocess.run(["wineserver", "-k"], stderr=subprocess.DEVNULL)
        if os.path.exists(log):
            os.remove(log)
    return 0
