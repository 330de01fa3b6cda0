"""The dotnet and kestrel sections: the C# binding on .NET (Release
builds of test/bench/DotnetEcho, sample_clients/csharp/EchoServer and
KestrelHello), each server started once per configuration, primed, kept
running and driven in turn (order reversed every other round).

dotnet: the echo. An IocpConnection Pipelines echo (as is, and with
CoalesceFlushes) against a System.Net.Sockets echo as its careful users
write it (DotnetEcho --impl sockets, the baseline), and the event-style
sample in queue mode against the C echo sample (the baseline), with the C
echo in queue mode (queue_echo: the library's own cost of iocp_wait).
loadgen, --lang-configs, --client.

kestrel: ASP.NET Core's "Hello, World!" minimal API (KestrelHello) on
Kestrel's default sockets transport (the baseline) and on the iocpsrv
transport (as is, and with CoalesceFlushes off: each flush its own
send), under wrk and under h2load (nghttp2-client, --h1: HTTP/1.1
keep-alive), the second, independent client. Not ApacheBench: ab speaks
HTTP/1.0, and Kestrel does not keep an HTTP/1.0 connection alive for a
response of unknown length (the minimal API's string is chunked on
HTTP/1.1), so ab -k would measure a connection per request. --http-conns.

The servers run with the environment bench.py has: DOTNET_TieredCompilation=0
and the like pass through. Each is primed first (PRIME_S seconds of load)
so that the JIT's tiering is behind it before the first measured run."""

import os
import re
import shutil
import subprocess
import sys

from .procs import TOP, die, log, measure_tool, pinned

NAT = "build/linux"
ART = "build/bench/dotnet"   # dotnet's --artifacts-path: nothing in the source tree
PROJECTS = ("test/bench/DotnetEcho/DotnetEcho.csproj", "sample_clients/csharp/EchoServer/EchoServer.csproj",
            "sample_clients/csharp/KestrelHello/KestrelHello.csproj")
PRIME_S = 3


def dll(name):
    return ["dotnet", os.path.join(ART, "bin", name, "release", name + ".dll")]


def newest_source():
    """The newest modification time of what the programs are built from."""
    newest = 0.0
    for d in ("sample_clients/csharp", "test/bench/DotnetEcho"):
        for root, dirs, files in os.walk(d):
            dirs[:] = [x for x in dirs if x not in ("bin", "obj")]
            for f in files:
                if f.endswith((".cs", ".csproj", ".props", ".targets")):
                    newest = max(newest, os.path.getmtime(os.path.join(root, f)))
    return newest


def build():
    """Release builds of the three programs, unless every one is newer than
    its sources (an up-to-date dotnet build still takes half a minute)."""
    if shutil.which("dotnet") is None:
        die("dotnet missing (the .NET SDK, see test/tools/install-deps.sh)")
    os.environ["LD_LIBRARY_PATH"] = os.path.join(TOP, NAT)
    outputs = [dll(os.path.basename(p)[:-len(".csproj")])[1] for p in PROJECTS]
    if all(os.path.exists(o) for o in outputs) and min(os.path.getmtime(o) for o in outputs) > newest_source():
        return
    env = dict(os.environ, DOTNET_CLI_TELEMETRY_OPTOUT="1", DOTNET_NOLOGO="1")
    for p in PROJECTS:
        log(f"bench.py: dotnet build -c Release {p}")
        r = subprocess.run(["dotnet", "build", "-c", "Release", "--artifacts-path", ART, p],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        if r.returncode:
            sys.stderr.write(r.stdout)
            die(f"dotnet build of {p} failed")


def echo_variants():
    pipes = dll("DotnetEcho")
    return {
        "dn-echo": [("Socket loop (System.Net.Sockets)", pipes + ["--impl", "sockets"]),
                    ("IocpConnection Pipelines", pipes + ["--impl", "pipelines"]),
                    ("IocpConnection Pipelines, CoalesceFlushes", pipes + ["--impl", "pipelines-coalesce"])],
        "dn-queue": [("C echo_server", [f"{NAT}/sample_clients/echo_server"]),
                     ("C# EchoServer queue (.NET)", dll("EchoServer") + ["--mode", "queue"]),
                     ("C queue_echo (iocp_wait)", [f"{NAT}/test/bench/queue_echo"])],
    }


def kept_running(b, variants, prime, rounds_body):
    """Starts every (label, argv), primes each, runs rounds_body(servers, r)
    for every round, stops them all."""
    servers = []
    try:
        for label, argv in variants:
            srv = b.start(label, argv, timeout=120)
            if srv is None:
                return
            servers.append(srv)
            prime(srv)
        for r in range(b.o.rounds):
            rounds_body(servers if r % 2 == 0 else servers[::-1])
    finally:
        for srv in servers:
            srv.stop()


def run_echo(b, cfgs):
    def prime(srv):
        subprocess.run([b.loadgen, "--port", str(srv.port), "--conns", "100", "--size", "64",
                        "--seconds", str(PRIME_S), "--warmup", "0", "--io", "epoll"],
                       stdout=subprocess.DEVNULL, stderr=b.loadgen_err)
    for group, variants in echo_variants().items():
        for cfg in cfgs:
            log(f"bench.py: {group} {cfg}")
            kept_running(b, variants, prime, lambda servers: [
                b.record(group, s.label, cfg, b.drive(cfg, s.pid, s.port)) for s in servers])


def h2load(b, conns, seconds, port):
    """h2load over HTTP/1.1 (keep-alive) for `seconds`, one thread: its report."""
    argv = ["h2load", "--h1", "-t", "1", "-c", str(conns), "-D", f"{max(1, round(seconds))}",
            f"http://127.0.0.1:{port}/"]
    # At 1,000 connections h2load now and then never ends (a run waited
    # minutes after its duration): such a run is a failed one.
    try:
        return subprocess.run(pinned(argv, b.o.client_cpus), stdout=subprocess.PIPE,
                              stderr=b.wrk_err, text=True, timeout=seconds + 30).stdout
    except subprocess.TimeoutExpired:
        log(f"bench.py: h2load did not end {seconds + 30:g} s after its start; killed")
        return ""


def h2load_result(text, cpu_s, wall_s):
    """h2load's report as loadgen's fields (echoes_per_s is requests/s)."""
    rps = re.search(r"finished in [0-9.]+s, ([0-9.]+) req/s", text)
    req = re.search(r"requests: [0-9]+ total, [0-9]+ started, [0-9]+ done, ([0-9]+) succeeded, "
                    r"([0-9]+) failed, ([0-9]+) errored, ([0-9]+) timeout", text)
    codes = re.search(r"status codes: ([0-9]+) 2xx, ([0-9]+) 3xx, ([0-9]+) 4xx, ([0-9]+) 5xx", text)
    if rps is None or req is None:
        return "errors=1 failed=h2load"
    errors = sum(int(x) for x in req.groups()[1:]) + (sum(int(x) for x in codes.groups()[1:]) if codes else 1)
    n = float(rps.group(1)) * wall_s
    return (f"echoes_per_s={rps.group(1)} server_cpu_pct={cpu_s / wall_s * 100:.1f} "
            f"server_cpu_us_per_echo={cpu_s * 1e6 / n if n else float('nan'):.3f} errors={errors}")


def measure_h2load(b, group, label, conns, port, pid):
    measure_tool(b, group, label, conns, port, pid, h2load, h2load_result, "h2load.txt")


def run_kestrel(b, conn_counts):
    clients = [("kestrel-wrk", b.measure_http)]
    if shutil.which("h2load"):
        clients.append(("kestrel-h2load", lambda *a: measure_h2load(b, *a)))
    else:
        log("bench.py: no h2load (nghttp2-client): Kestrel under wrk only")
    hello = dll("KestrelHello")
    variants = [("Kestrel, sockets transport", hello + ["--transport", "sockets"]),
                ("Kestrel, iocpsrv transport", hello + ["--transport", "iocpsrv"]),
                ("Kestrel, iocpsrv transport, CoalesceFlushes off", hello + ["--transport", "iocpsrv", "--no-coalesce"])]

    def prime(srv):
        b.wrk(100, PRIME_S, srv.port, False)
    for conns in conn_counts:
        log(f"bench.py: kestrel {conns} connections")

        def body(servers):
            for group, measure in clients:
                for s in servers:
                    measure(group, s.label, int(conns), s.port, s.pid)
        kept_running(b, variants, prime, body)
