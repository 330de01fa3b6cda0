#!/usr/bin/env python3
"""Benchmarks; prints Markdown tables. Python 3.11, standard library only.

    python3 test/bench/bench.py [--rounds R] [--seconds D] [--warmup W]
        [--only "echo uv live live-epoll live-wine lang http live-http park"]
        [--configs "1x64 50x64 50x16384"] [--extra] [--win-tools]
        [--uv-configs "100x64 1000x64 100x65536x4"] [--lang-configs "100x64 1000x64"]
        [--park-configs "100x64 1000x64"] [--http-conns "100 1000"]
        [--http-threads 2] [--wrk-threads 1] [--client epoll|uring]
        [--server-cpus LIST] [--client-cpus LIST]
    python3 test/bench/bench.py idle [--conns N] [--wine] [--warm] [--server "COMMAND"]
    python3 test/bench/bench.py wine-requests [CxM] [SECONDS]

Sections (--only picks some; default "echo uv http"):

  echo  iocpsrv's C echo sample against the minimal IOCP echo
        (test/bench/baseline_iocp.c), and the C echo in queue mode
        (test/bench/queue_echo.c), all under the same Wine; and, if
        build/linux exists (or LINUX_ECHO_SERVER names a binary), the Linux
        build's echo sample against a one-thread epoll echo
        (test/bench/baseline_epoll.c). Configurations: --configs.
  uv    natively, the echo sample (its default worker count, and one worker)
        against a libuv echo written as careful libuv users write it
        (test/bench/baseline_uv.c): echoes/s and the server's CPU time per
        echo. Configurations: --uv-configs.
  lang  natively, the wrappers: the Python sample (echo_server.py) in queue
        (batched) and callback mode, and uvloop, against an asyncio Protocol
        echo (test/bench/asyncio_echo.py), all on Debian's /usr/bin/python3;
        and the C# sample on Mono in both modes and the C echo in queue mode
        (queue_echo.c: the library's own cost of iocp_wait) against the C
        sample. Configurations: --lang-configs.
  live  natively, the uv section's servers, but each started once per
        configuration and kept running: every round drives each in turn for
        D seconds after W of warm-up (order reversed every round), so the
        host's drift between rounds falls on all alike. Reports the median
        and quartiles of the paired (same-round) ratios of echoes/s and of
        CPU per echo. Slices of 1-3 s and 20 or more rounds tell 2-3% apart.
  live-epoll  the same method natively against the one-thread epoll echo
        (baseline_epoll.c): the echo sample and libuv, each over it.
        --uv-configs.
  live-wine  the same for the echo section's Wine servers: the echo sample
        and the minimal IOCP echo, under one Wine. --configs.
  live-http  the same for the http section: nginx and the HTTP sample kept
        running, a wrk run on each in turn. --http-conns.
  asyncio  natively, on Debian's /usr/bin/python3: asyncio echo servers
        as users write them (test/bench/asyncio_echo.py), a Protocol echo
        and a streams echo (start_server, readexactly/write/drain), each on
        uvloop (the baseline), the standard loop and iocpsrv
        (iocpsrv.create_server / iocpsrv.start_server); the live method
        (kept running, driven in turn). --lang-configs, --client.
  aiohttp  natively, aiohttp's hello-world app (test/bench/aiohttp_hello.py)
        on uvloop (the baseline), the standard loop and iocpsrv (through
        iocpsrv.install()), kept running, each round under wrk and under
        ApacheBench (ab -k, the second client). --http-conns.
  park  the live method on the Linux echo sample alone: parking on (the
        default, the baseline) against IOCPSRV_PARK=0 (never), IOCPSRV_PARK=1
        (idle workers only) and one worker. --park-configs.
  http  natively, the HTTP sample (sample_clients/c/http_server.c) against
        nginx (`return 200 "Hello, World!"`, the same number of workers,
        --http-threads) under wrk (--wrk-threads threads, --http-conns
        connections): requests/s and the server's CPU time per request.
  tls   natively, the HTTP sample with --tls against nginx over HTTPS with
        the same certificate (ECDSA P-256 and RSA 2048; TLS 1.3 and 1.2),
        both kept running: keep-alive requests/s (wrk and tls_loadgen,
        the first of --http-conns connections) and full handshakes per
        second (a new connection per request: wrk and tls_loadgen with 16
        connections, openssl s_time with one). benchlib/tls.py.
  dotnet  natively, the C# binding on .NET (Release builds): an
        IocpConnection Pipelines echo (as is, and with CoalesceFlushes)
        against a System.Net.Sockets echo as its careful users write it
        (test/bench/DotnetEcho), and the event-style sample in queue mode
        (sample_clients/csharp/EchoServer) against the C echo sample, with
        the C echo in queue mode; kept running, primed, driven in turn.
        --lang-configs, --client. benchlib/dotnet.py.
  kestrel  natively, ASP.NET Core's "Hello, World!" minimal API
        (sample_clients/csharp/KestrelHello) on Kestrel's sockets transport
        (the baseline) and on the iocpsrv transport (as is, and with
        CoalesceFlushes off), kept running, each round under wrk and under
        h2load (--h1). --http-conns. benchlib/dotnet.py.
  tls-echo  natively, the echo sample with --tls against itself on plain
        TCP: 100 connections x 64 KiB (tls_loadgen; loadgen on plain TCP),
        the server's CPU per MB, and `openssl speed` of the ciphers.
  tls-wine  under Debian 13's Wine 10 (test/tools/wine10.sh), the echo sample
        with --tls against a minimal SChannel echo on a completion port
        (test/bench/baseline_schannel.c), both kept running: 100
        connections x 64 KiB at TLS 1.2, tls_loadgen and a Python ssl
        client; medians and paired ratios. benchlib/tls_wine.py.

An echo configuration CxM[xK] is C connections each keeping K (default 1)
M-byte messages in flight, driven by one native client (test/bench/loadgen.c)
for every server: with epoll (two system calls per echo, like the servers',
so on 2 cores it runs a whole processor and sets the rate itself), or with
--client uring through io_uring (a few system calls per hundred echoes: the
server sets the rate). For each configuration the servers run in turn, R
rounds, the order reversed every round (A B, B A, ...) so drift hits all
alike; each run is a fresh server process (the live sections and park: one
kept running), warmed up for W seconds, measured for D. Under Wine absolute
numbers mean little (test/bench/README.md, "How to read it"): read the
ratio, a median over rounds, to the baseline measured in the same run. CPU
per echo or request is the server's user + system time (all its threads
and processes, from /proc) over the measured seconds.

--extra adds variants to the echo section: baseline with
GetQueuedCompletionStatusEx (64 per call), and both with one worker thread.
--win-tools adds the Windows engine with each of its completion tools on
(both off by default, see dll/win/eng.h): IOCPSRV_SKIP_ON_SUCCESS=1, and
IOCPSRV_DEQUEUE_BATCH=16 (BENCH_BATCH). --server-cpus and --client-cpus
(taskset lists, e.g. 0 and 1) pin the servers and the client (loadgen, wrk).

Subcommands: `idle` measures idle connections' resident memory
(benchlib/idle.py); `wine-requests` counts wineserver requests per echo
(benchlib/wine_requests.py); each has its own --help.

A benchmark, run on purpose; it asserts nothing and is not a test. Servers
are stopped by closing their standard input (nginx: SIGQUIT to its master,
which this script started); nginx listens on a fixed port (NGINX_PORT,
default 23080) with a private prefix under build/bench/; the Wine prefix is
a private one (build/win64/wineprefix-bench) whose wineserver is ended at
the end, so nothing is left running.
"""

import argparse
import datetime
import os
import shlex
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib.procs import NGINX, TOP, die, loadavg, log, raise_fd_limit, wine_env  # noqa: E402
from benchlib.report import report  # noqa: E402
from benchlib.runs import CFG, Bench  # noqa: E402

SECTIONS = ("echo", "uv", "live", "live-epoll", "live-wine", "lang", "http", "live-http", "park",
            "asyncio", "aiohttp", "tls", "tls-echo", "tls-wine", "dotnet", "kestrel")
NAT = "build/linux"
W64 = "build/win64"


def parse(argv):
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter, usage=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=5, metavar="R", help="rounds per configuration (5)")
    p.add_argument("--seconds", type=float, default=3, metavar="D", help="seconds measured per run (3)")
    p.add_argument("--warmup", type=float, default=1, metavar="W", help="seconds of warm-up before each (1)")
    p.add_argument("--only", default="echo uv http", metavar="SECTIONS", help='sections, space-separated ("echo uv http")')
    p.add_argument("--configs", default="1x64 50x64 50x16384", metavar="CFGS", help="echo and live-wine")
    p.add_argument("--uv-configs", default="100x64 1000x64 100x65536x4", metavar="CFGS", help="uv and live")
    p.add_argument("--lang-configs", default="100x64 1000x64", metavar="CFGS", help="lang")
    p.add_argument("--park-configs", default="100x64 1000x64", metavar="CFGS", help="park")
    p.add_argument("--http-conns", default="100 1000", metavar="COUNTS", help="http and live-http")
    p.add_argument("--http-threads", type=int, default=2, metavar="N", help="workers of nginx and of the HTTP sample (2)")
    p.add_argument("--wrk-threads", type=int, default=1, metavar="N", help="wrk's threads (1)")
    p.add_argument("--client", choices=("epoll", "uring"), default="epoll", help="loadgen's I/O (epoll)")
    p.add_argument("--py-loops", default="uvloop asyncio iocpsrv iocpsrv-pure", metavar="LOOPS",
                   help="asyncio and aiohttp: the loops, the first the baseline (also iocpsrv-helper; "
                        "iocpsrv-uvloop: asyncio only)")
    p.add_argument("--extra", action="store_true", help="more Wine variants in echo")
    p.add_argument("--win-tools", action="store_true", help="the IOCP engine's completion tools in echo")
    p.add_argument("--server-cpus", default="", metavar="LIST", help="taskset list for the servers")
    p.add_argument("--client-cpus", default="", metavar="LIST", help="taskset list for loadgen and wrk")
    o = p.parse_args(argv)
    o.only = o.only.split()
    for sec in o.only:
        if sec not in SECTIONS:
            p.error(f"unknown section {sec}")
    for name in ("configs", "uv_configs", "lang_configs", "park_configs"):
        cfgs = getattr(o, name).split()
        for c in cfgs:
            if not CFG.match(c):
                p.error(f"bad configuration {c} (want CxM or CxMxK)")
        setattr(o, name, cfgs)
    o.py_loops = o.py_loops.split()
    for loop in o.py_loops:
        if loop not in ("uvloop", "asyncio", "iocpsrv", "iocpsrv-pure", "iocpsrv-helper", "iocpsrv-uvloop"):
            p.error(f"unknown loop {loop}")
    if "iocpsrv-uvloop" in o.py_loops and "aiohttp" in o.only:
        p.error("iocpsrv-uvloop is for the asyncio section only")
    o.http_conns = o.http_conns.split()
    for c in o.http_conns:
        if not c.isdigit():
            p.error(f"bad connection count {c}")
    if o.rounds < 1 or o.seconds <= 0 or o.warmup < 0:
        p.error("--rounds at least 1, --seconds above 0, --warmup 0 or more")
    o.nginx_port = int(os.environ.get("NGINX_PORT", "23080"))
    return o


def command_line(o):
    """The effective command, defaults spelled out, for the report."""
    want = set(o.only)
    c = (f"python3 test/bench/bench.py --rounds {o.rounds} --seconds {o.seconds:g} --warmup {o.warmup:g} "
         f"--only \"{' '.join(o.only)}\"")
    if want & {"echo", "live-wine"}:
        c += f" --configs \"{' '.join(o.configs)}\""
    if want & {"uv", "live", "live-epoll"}:
        c += f" --uv-configs \"{' '.join(o.uv_configs)}\""
    if want & {"lang", "asyncio", "dotnet"}:
        c += f" --lang-configs \"{' '.join(o.lang_configs)}\""
    if "park" in want:
        c += f" --park-configs \"{' '.join(o.park_configs)}\""
    if want & {"http", "live-http", "aiohttp", "tls", "kestrel"}:
        c += (f" --http-conns \"{' '.join(o.http_conns)}\" --http-threads {o.http_threads}"
              f" --wrk-threads {o.wrk_threads}")
    c += " --extra" * o.extra + " --win-tools" * o.win_tools
    c += f" --client {o.client}" * (o.client != "epoll")
    if want & {"asyncio", "aiohttp"} and o.py_loops != "uvloop asyncio iocpsrv iocpsrv-pure".split():
        c += f" --py-loops \"{' '.join(o.py_loops)}\""
    c += f" --server-cpus {o.server_cpus}" * bool(o.server_cpus)
    c += f" --client-cpus {o.client_cpus}" * bool(o.client_cpus)
    return c


def ninja(build, *targets):
    return subprocess.run(["ninja", "-C", build, *targets], stdout=sys.stderr).returncode == 0


def build(o):
    """The native programs come from build/linux, made if missing (every
    section but echo and live-wine needs it; echo uses it when it is
    there); the Wine ones from build/win64. Returns whether the native
    build is there."""
    want = set(o.only)
    wine = bool(want & {"echo", "live-wine"})
    http = bool(want & {"http", "live-http", "tls"})
    tools = ["meson", "ninja", "cc", "python3"] + ["taskset"] * bool(o.server_cpus or o.client_cpus)
    tools += ["x86_64-w64-mingw32-gcc", "wine", "wineserver"] * wine + ["wrk", "curl"] * http
    tools += ["wrk"] * bool(want & {"aiohttp", "kestrel"})
    for t in tools:
        if shutil.which(t) is None:
            die(f"{t} missing (see test/tools/install-deps.sh)")
    if http and not os.access(NGINX, os.X_OK):
        die(f"{NGINX} missing (Debian's nginx-light, see test/tools/install-deps.sh)")
    if want - {"echo", "live-wine", "tls-wine"} and not os.path.exists(f"{NAT}/build.ninja"):
        subprocess.run(["meson", "setup", NAT], stdout=sys.stderr, check=True)
    native = os.path.exists(f"{NAT}/build.ninja")
    if native:
        if not ninja(NAT, "test/bench/loadgen", "test/bench/baseline_epoll", "sample_clients/echo_server",
                     "sample_clients/http_server", "test/bench/queue_echo"):
            die("the native build failed")
        if want & {"dotnet", "kestrel"}:
            ninja(NAT)  # the library
            from benchlib import dotnet
            dotnet.build()
        if want & {"tls", "tls-echo"} and not ninja(NAT, "test/bench/tls_loadgen"):
            die("no tls_loadgen: is libssl-dev installed? (test/tools/install-deps.sh)")
        if want & {"lang", "asyncio", "aiohttp"}:
            ninja(NAT)  # the library, and the C# sample when mcs is there
            if subprocess.run(["/usr/bin/python3", "-c", "import uvloop"], stderr=subprocess.DEVNULL).returncode:
                die("/usr/bin/python3 lacks uvloop (python3-uvloop, test/tools/install-deps.sh)")
        if want & {"uv", "live", "live-epoll"} and not ninja(NAT, "test/bench/baseline_uv"):
            die("no baseline_uv: is libuv1-dev installed? (test/tools/install-deps.sh)")
    if wine:
        if not os.path.exists(f"{W64}/build.ninja"):
            subprocess.run(["meson", "setup", W64, "--cross-file", "test/cross/mingw-w64-x86_64.txt"],
                           stdout=sys.stderr, check=True)
        if not ninja(W64, "iocpsrv.dll", "sample_clients/echo_server.exe", "test/bench/queue_echo.exe",
                     "test/bench/baseline_iocp.exe", "test/bench/loadgen", "test/bench/baseline_epoll"):
            die("the Wine build failed")
    if "tls-wine" in want:
        if not os.path.exists("/var/cache/iocpsrv/trixie/.iocpsrv-wine10"):
            die("no Wine 10 chroot (run test/tools/install-wine10.sh as root)")
        if not os.path.exists(f"{W64}/build.ninja"):
            subprocess.run(["meson", "setup", W64, "--cross-file", "test/cross/mingw-w64-x86_64.txt"],
                           stdout=sys.stderr, check=True)
        if not ninja(W64, "iocpsrv.dll", "sample_clients/echo_server.exe", "test/bench/baseline_schannel.exe",
                     "test/bench/tls_loadgen"):
            die("the Wine build failed (tls_loadgen needs libssl-dev)")
    return native


def run_sections(o, b, native, linux_echo, winever):
    want = set(o.only)
    echo = shlex.split(linux_echo)
    wine = lambda exe, *args: ["wine", f"{W64}/{exe}", *args]
    if "echo" in want:
        v = [("wine", "baseline_iocp", wine("test/bench/baseline_iocp.exe")),
             ("wine", "iocpsrv", wine("sample_clients/echo_server.exe")),
             ("wine", "iocpsrv queue mode (queue_echo)", wine("test/bench/queue_echo.exe"))]
        if o.extra:
            v += [("wine", "baseline_iocp GQCSEx", wine("test/bench/baseline_iocp.exe", "--batch", "64")),
                  ("wine", "baseline_iocp 1 thread", wine("test/bench/baseline_iocp.exe", "--threads", "1")),
                  ("wine", "iocpsrv 1 thread", wine("sample_clients/echo_server.exe", "--threads", "1"))]
        if o.win_tools:
            batch = os.environ.get("BENCH_BATCH", "16")
            v += [("wine", "iocpsrv skip port on success",
                   ["env", "IOCPSRV_SKIP_ON_SUCCESS=1"] + wine("sample_clients/echo_server.exe")),
                  ("wine", f"iocpsrv GQCSEx {batch}",
                   ["env", f"IOCPSRV_DEQUEUE_BATCH={batch}"] + wine("sample_clients/echo_server.exe"))]
        if native:
            v += [("native", "baseline_epoll", [f"{NAT}/test/bench/baseline_epoll"]),
                  ("native", "iocpsrv (Linux)", echo)]
        for cfg in o.configs:
            log(f"bench.py: echo {cfg}")
            b.rounds(b.echo_one, cfg, v)
    uv = [("libuv", [f"{NAT}/test/bench/baseline_uv"]), ("iocpsrv (Linux)", echo),
          ("iocpsrv (Linux) 1 worker", echo + ["--threads", "1"])]
    if "uv" in want:
        for cfg in o.uv_configs:
            log(f"bench.py: uv {cfg}")
            b.rounds(b.echo_one, cfg, [("uv", label, argv) for label, argv in uv])
    if "live" in want:
        for cfg in o.uv_configs:
            b.live("live", cfg, uv)
    if "live-epoll" in want:
        for cfg in o.uv_configs:
            b.live("live-epoll", cfg, [("baseline_epoll", [f"{NAT}/test/bench/baseline_epoll"]),
                                       ("iocpsrv (Linux)", echo), ("libuv", uv[0][1])])
    if "park" in want:
        park = [("parking on (default)", echo), ("parking off (IOCPSRV_PARK=0)", ["env", "IOCPSRV_PARK=0"] + echo),
                ("idle parking only (IOCPSRV_PARK=1)", ["env", "IOCPSRV_PARK=1"] + echo),
                ("1 worker", echo + ["--threads", "1"])]
        for cfg in o.park_configs:
            b.live("park", cfg, park)
    if "live-wine" in want:
        from benchlib.procs import wineserver_pid
        for cfg in o.configs:
            b.live("live-wine", cfg, [("baseline_iocp", wine("test/bench/baseline_iocp.exe")),
                                      ("iocpsrv", wine("sample_clients/echo_server.exe"))], wineserver_pid())
    if "lang" in want:
        os.environ["LD_LIBRARY_PATH"] = os.path.join(TOP, NAT)
        py = "/usr/bin/python3"  # Debian's: python3-uvloop is built for it
        v = [("py", "asyncio Protocol", [py, "test/bench/asyncio_echo.py"]),
             ("py", "uvloop Protocol", [py, "test/bench/asyncio_echo.py", "--uvloop"]),
             ("py", "iocpsrv.py queue", [py, "sample_clients/python/echo_server.py", "--mode", "queue"]),
             ("py", "iocpsrv.py callbacks", [py, "sample_clients/python/echo_server.py", "--mode", "callbacks"])]
        cs = f"{NAT}/sample_clients/csharp/EchoServer.exe"
        if shutil.which("mono") and os.path.exists(cs):
            v += [("cs", "C echo_server", echo), ("cs", "C queue_echo (iocp_wait)", [f"{NAT}/test/bench/queue_echo"]),
                  ("cs", "C# queue (Mono)", ["mono", cs, "--mode", "queue"]),
                  ("cs", "C# callbacks (Mono)", ["mono", cs, "--mode", "callbacks"])]
        for cfg in o.lang_configs:
            log(f"bench.py: lang {cfg}")
            b.rounds(b.echo_one, cfg, v)
    if want & {"asyncio", "aiohttp"}:
        from benchlib import pyruns
        if "asyncio" in want:
            pyruns.run_asyncio(b, o.lang_configs)
        if "aiohttp" in want:
            pyruns.run_aiohttp(b, o.http_conns)
    if want & {"dotnet", "kestrel"}:
        from benchlib import dotnet
        if "dotnet" in want:
            dotnet.run_echo(b, o.lang_configs)
        if "kestrel" in want:
            dotnet.run_kestrel(b, o.http_conns)
    http = [f"{NAT}/sample_clients/http_server", "--threads", str(o.http_threads)]
    if "http" in want:
        for conns in o.http_conns:
            log(f"bench.py: http {conns} connections")
            b.rounds(b.http_one, int(conns), [("http", "nginx", None), ("http", "iocpsrv http_server", http)])
    if "live-http" in want:
        for conns in o.http_conns:
            b.live_http(int(conns), http)
    if want & {"tls", "tls-echo"}:
        from benchlib.tls import Tls
        b.tls = Tls(b, o)
        if "tls" in want:
            b.tls.http()
        if "tls-echo" in want:
            b.tls.echo()
    if "tls-wine" in want:
        from benchlib import tls_wine
        tls_wine.run(b, o)


def main(argv):
    if argv and argv[0] == "idle":
        from benchlib import idle
        return idle.main(argv[1:])
    if argv and argv[0] == "wine-requests":
        from benchlib import wine_requests
        return wine_requests.main(argv[1:])
    o = parse(argv)
    # A TERM unwinds like an interrupt: every server started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.chdir(TOP)
    cmdline = command_line(o)
    native = build(o)
    loadgen = f"{NAT}/test/bench/loadgen" if native else f"{W64}/test/bench/loadgen"
    # LINUX_ECHO_SERVER=path picks another native echo_server binary.
    linux_echo = os.environ.get("LINUX_ECHO_SERVER", f"{NAT}/sample_clients/echo_server")
    if not os.access(shlex.split(linux_echo)[0], os.X_OK):
        native = False
        if set(o.only) - {"echo", "live-wine", "tls-wine"}:
            die(f"no native echo server {linux_echo}")
    raise_fd_limit()
    out = os.path.join(TOP, "build", "bench", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    b = Bench(o, out, loadgen)
    wine = bool(set(o.only) & {"echo", "live-wine"})
    winever = "unknown"
    if wine:
        wine_env("wineprefix-bench")
        if not os.path.isdir(os.environ["WINEPREFIX"]):
            log("bench.py: creating the Wine prefix (once, ~10 s)")
            subprocess.run(["wineboot", "-i"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # One wineserver for the whole run, so no run pays for its start-up.
        subprocess.run(["wineserver", "-p"])
        winever = subprocess.run(["wine", "--version"], stdout=subprocess.PIPE, text=True).stdout.strip() or winever
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    load_start = loadavg()
    try:
        run_sections(o, b, native, linux_echo, winever)
    except KeyboardInterrupt:
        return 130
    finally:
        if wine and os.path.isdir(os.environ["WINEPREFIX"]):
            # Only our private prefix: ends its wineserver and what is attached to it.
            subprocess.run(["wineserver", "-k"], stderr=subprocess.DEVNULL)
    report(b.records, o, cmdline, started, winever, load_start, loadavg(), b.raw)
    if hasattr(b, "tls"):
        from benchlib.tls import table
        table(b.records, b.tls.speed)
    if "tls-wine" in o.only:
        from benchlib import tls_wine
        tls_wine.table(b.records)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
