"""Idle connections: what each costs the server in resident memory, and
that each still echoes afterwards. A measurement, run on purpose; not a test.

    python3 test/bench/bench.py idle [--conns N] [--wine] [--warm] [--server "COMMAND"]

Starts the echo sample (natively: build/linux/sample_clients/echo_server;
with --wine: build/win64/sample_clients/echo_server.exe under Wine), or the
given server command (it must print "listening on port N" and exit when its
standard input ends), reads its resident set (VmRSS) once it listens, opens
N idle connections with test/bench/idle.c, waits until the server's resident
set stops growing, reads it again, then has every connection echo 32 bytes
and checks them. With --warm every connection echoes 32 bytes once before
the measurement: connections that were busy, then went idle (the Windows
engine's adaptive receive may keep a buffer posted on a few, within its
budget). Prints one line:

    server=... conns=N rss_before_kib=A rss_after_kib=B bytes_per_conn=C echo=ok

Under Wine the server's RSS is the Windows process's own (the socket state
Wine keeps in wineserver is printed apart as wineserver_bytes_per_conn).
Defaults: 15,000 connections natively, 10,000 under Wine (the process
descriptor limit here is 20,000, and Wine needs some for itself).
"""

import argparse
import os
import shlex
import subprocess
import time

from .procs import TOP, Server, children, die, raise_fd_limit, read_line, rss_kib, wine_env, wineserver_pid


def main(argv):
    p = argparse.ArgumentParser(prog="bench.py idle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter, usage=argparse.SUPPRESS)
    p.add_argument("--conns", type=int)
    p.add_argument("--wine", action="store_true")
    p.add_argument("--warm", action="store_true")
    p.add_argument("--server")
    o = p.parse_args(argv)
    conns = o.conns or (10000 if o.wine else 15000)
    os.chdir(TOP)
    raise_fd_limit()
    build = "build/win64" if o.wine else "build/linux"
    exe = "sample_clients/echo_server.exe" if o.wine else "sample_clients/echo_server"
    if subprocess.run(["ninja", "-C", build, exe, "test/bench/idle"], stdout=subprocess.DEVNULL).returncode:
        die(f"building {build} failed")
    if o.wine:
        wine_env("wineprefix-bench")
    server = o.server or (f"wine {build}/{exe}" if o.wine else f"{build}/{exe}")
    with open(os.devnull, "w") as null:
        try:
            srv = Server("the server", shlex.split(server), null, timeout=240)
        except RuntimeError as e:
            die(str(e))
    try:
        # The process that runs the server: under Wine the launcher execs into
        # it, or it is the youngest child.
        pid = srv.pid
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if o.wine and b".exe" not in f.read():
                pid = (children(pid) or [pid])[-1]
        before = rss_kib(pid)
        ws = wineserver_pid() if o.wine else 0
        ws_before = rss_kib(ws) if ws else 0
        cli = subprocess.Popen([f"{build}/test/bench/idle", "--port", str(srv.port), "--conns", str(conns),
                                "--warm", "1" if o.warm else "0"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if not read_line(cli.stdout, 600).startswith("connected"):
            cli.kill()
            die("the idle client did not connect every connection")
        # The server accepts behind the client's connects: wait until its
        # resident set has not grown for two seconds.
        last, still = -1, 0
        for _ in range(600):
            if still >= 4:
                break
            now = rss_kib(pid)
            still = still + 1 if now <= last else 0
            last = now
            time.sleep(0.5)
        after = rss_kib(pid)
        ws_after = rss_kib(ws) if ws else 0
        echoed = cli.communicate(b"go\n")[0].decode().strip().splitlines()
    finally:
        srv.stop()
    line = (f'server="{server}" conns={conns} warm={int(o.warm)} rss_before_kib={before} '
            f"rss_after_kib={after} bytes_per_conn={(after - before) * 1024 // conns}")
    if o.wine:
        line += f" wineserver_bytes_per_conn={(ws_after - ws_before) * 1024 // conns}"
    last_line = echoed[-1] if echoed else ""
    line += " echo=ok" if last_line == f"echoed {conns} ok" else f" echo=FAILED({last_line})"
    print(line)
    return 0
