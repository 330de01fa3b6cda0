#!/usr/bin/env python3
"""The C# binding's .NET SDK projects, built and checked, or the sample run.

    dotnet_project.py COMMON build --sources FILE...
    dotnet_project.py COMMON run [ECHOSERVER ARGS...]
    dotnet_project.py COMMON test --tests IocpSrv.Tests.csproj --library DIR
    dotnet_project.py COMMON kestrel --library DIR

    COMMON: --dotnet DOTNET --projects sample_clients/csharp
            --artifacts DIR --version X.Y.Z

build: `dotnet build -c Release` of EchoServer/EchoServer.csproj (which
builds IocpSrv/IocpSrv.csproj for net8.0) and of IocpSrv.csproj (both target
frameworks), with every output and intermediate file under --artifacts, not
in the source tree. Then checks, one line each: both builds succeed
(warnings are errors there); IocpSrv.Net.dll and its XML documentation exist
for netstandard2.0, net462 and net8.0, EchoServer.dll with IocpSrv.Net.dll
beside it; the files mcs compiles too were compiled again at C# 5 (the
project's IocpSrvCSharp5Check); the assembly version is --version; no bin/ or obj/ appeared beside the
projects; the .cs files of IocpSrv/ (what the project compiles) are exactly
--sources (meson's cs_binding_src, what mcs compiles).

run: builds EchoServer.csproj the same way unless EchoServer.dll is newer
than every input (the build's output shown only when it fails, on standard
error), then becomes `dotnet EchoServer.dll ARGS` (the samples' echo driver
runs it and appends --port 0).

test: `dotnet test -c Release` of an xunit project (test/csharp/IocpSrv.Tests,
or IocpSrv.Tests.NetStandard over the binding's netstandard2.0 assembly)
with the build's library on LD_LIBRARY_PATH, its output under --artifacts;
prints the runner's summary as "N passed, M failed".

kestrel: builds KestrelHello/KestrelHello.csproj (minimal API on the
iocpsrv Kestrel transport), starts it on port 0 with the build's library,
and checks real HTTP/1.1 over loopback: single requests on fresh
connections, keep-alive, pipelined requests, a 404; then ends its input and
checks that it exits 0 and that the iocpsrv listener served those connections.

All take a lock in --artifacts: the test and the sample may run at once.
Ends with "N passed, M failed" (build); exit code 1 when anything failed.
"""

import argparse
import fcntl
import glob
import os
import re
import socket
import subprocess
import sys
import tempfile


def dotnet_env():
    env = dict(os.environ)
    env.setdefault("DOTNET_CLI_TELEMETRY_OPTOUT", "1")
    env.setdefault("DOTNET_NOLOGO", "1")
    env.setdefault("DOTNET_SKIP_FIRST_TIME_EXPERIENCE", "1")
    return env


def dotnet_build(a, project, out):
    """dotnet build -c Release of one project into --artifacts; its return code.

    No build servers: nothing stays running after the test (a lingering
    MSBuild node or compiler server would hold the test's output open)."""
    cmd = [a.dotnet, "build", "-c", "Release", project,
           "--artifacts-path", a.artifacts, "--disable-build-servers",
           "-p:Version=" + a.version]
    print("$ " + " ".join(cmd), file=out, flush=True)
    return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=dotnet_env()).returncode


def locked(a):
    os.makedirs(a.artifacts, exist_ok=True)
    f = open(os.path.join(a.artifacts, "build.lock"), "w")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def echo_server_dll(a):
    return os.path.join(a.artifacts, "bin", "EchoServer", "release", "EchoServer.dll")


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {what}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {what}" + (f": {detail}" if detail else ""), flush=True)


def build(a):
    r = Results()
    lib_dir = os.path.join(a.projects, "IocpSrv")
    exe_dir = os.path.join(a.projects, "EchoServer")
    in_tree = [os.path.join(d, sub) for d in (lib_dir, exe_dir) for sub in ("bin", "obj")]
    there_before = {p for p in in_tree if os.path.exists(p)}

    in_folder = sorted(os.path.basename(p) for p in glob.glob(os.path.join(lib_dir, "*.cs")))
    listed = sorted(os.path.basename(p) for p in a.sources)
    r.check(in_folder == listed, "IocpSrv.csproj compiles the files meson's cs_binding_src lists",
            f"only in the folder: {sorted(set(in_folder) - set(listed))}, "
            f"only in cs_binding_src: {sorted(set(listed) - set(in_folder))}")

    with locked(a):
        rc = dotnet_build(a, os.path.join(exe_dir, "EchoServer.csproj"), sys.stdout)
        r.check(rc == 0, "dotnet build EchoServer.csproj (and IocpSrv.csproj for net8.0)", f"exit code {rc}")
        rc = dotnet_build(a, os.path.join(lib_dir, "IocpSrv.csproj"), sys.stdout)
        r.check(rc == 0, "dotnet build IocpSrv.csproj (netstandard2.0, net462 and net8.0)", f"exit code {rc}")

    csharp5 = os.path.join(a.artifacts, "obj", "IocpSrv", "release_net462", "csharp5", "IocpSrv.Net.dll")
    r.check(os.path.isfile(csharp5), "the files mcs compiles too compiled at C# 5", f"not at {csharp5}")
    for tfm in ("netstandard2.0", "net462", "net8.0"):
        out = os.path.join(a.artifacts, "bin", "IocpSrv", "release_" + tfm)
        for name in ("IocpSrv.Net.dll", "IocpSrv.Net.xml"):
            r.check(os.path.isfile(os.path.join(out, name)), f"{tfm}: {name}", f"not in {out}")
        # The attributes the SDK generated from the project's properties.
        info = glob.glob(os.path.join(a.artifacts, "obj", "IocpSrv", "release_" + tfm, "*.AssemblyInfo.cs"))
        text = "".join(open(f, encoding="utf-8").read() for f in info)
        r.check(f'AssemblyVersionAttribute("{a.version}.0")' in text,
                f"{tfm}: assembly version {a.version}.0", f"not in {info}")
    exe = echo_server_dll(a)
    r.check(os.path.isfile(exe), "EchoServer.dll", f"not at {exe}")
    r.check(os.path.isfile(os.path.join(os.path.dirname(exe), "IocpSrv.Net.dll")),
            "IocpSrv.Net.dll beside EchoServer.dll")
    appeared = sorted(p for p in in_tree if os.path.exists(p) and p not in there_before)
    r.check(not appeared, "nothing written beside the projects", f"new: {appeared}")

    print(f"{r.passed} passed, {r.failed} failed", flush=True)
    return 1 if r.failed else 0


def up_to_date(a):
    """EchoServer.dll is newer than every source, project and meson.build
    (the version): the run need not wait for another dotnet build."""
    exe = echo_server_dll(a)
    if not os.path.isfile(exe):
        return False
    inputs = glob.glob(os.path.join(a.projects, "*", "*.cs")) + \
        glob.glob(os.path.join(a.projects, "*", "*.csproj")) + \
        [os.path.join(a.projects, "..", "..", "meson.build")]
    built = os.path.getmtime(exe)
    return all(os.path.getmtime(f) < built for f in inputs)


def run(a, args):
    # The build's output only when it fails: what the sample prints is its own
    # (the driver's refusal checks read its standard error).
    with locked(a), tempfile.TemporaryFile("w+") as log:
        rc = 0 if up_to_date(a) else \
            dotnet_build(a, os.path.join(a.projects, "EchoServer", "EchoServer.csproj"), log)
        if rc != 0:
            log.seek(0)
            sys.stderr.write(log.read())
            print(f"dotnet build failed (exit code {rc})", file=sys.stderr)
            return 1
    sys.stdout.flush()
    os.execve(a.dotnet, [a.dotnet, echo_server_dll(a)] + args, dotnet_env())
    return 1   # not reached


def test(a):
    env = dotnet_env()
    env["LD_LIBRARY_PATH"] = a.library + (os.pathsep + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    cmd = [a.dotnet, "test", a.tests, "-c", "Release", "--artifacts-path", a.artifacts,
           "--disable-build-servers", "-p:Version=" + a.version]
    print("$ " + " ".join(cmd), flush=True)
    with locked(a):
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(p.stdout, flush=True)
    m = re.findall(r"Failed:\s+(\d+), Passed:\s+(\d+)", p.stdout)
    if m:
        failed, passed = int(m[-1][0]), int(m[-1][1])
    else:
        failed, passed = 1, 0
    if p.returncode != 0 and failed == 0:
        failed = 1
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def http_exchange(port, requests):
    """Sends the raw requests on one connection, half-closes, reads to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        c.sendall(b"".join(requests))
        c.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return data
            data += chunk


def kestrel(a):
    r = Results()
    env = dotnet_env()
    env["LD_LIBRARY_PATH"] = a.library
    project = os.path.join(a.projects, "KestrelHello", "KestrelHello.csproj")
    with locked(a):
        rc = dotnet_build(a, project, sys.stdout)
    r.check(rc == 0, "dotnet build KestrelHello.csproj (and IocpSrv.Kestrel.csproj)", f"exit code {rc}")
    if rc != 0:
        print(f"{r.passed} passed, {r.failed} failed", flush=True)
        return 1
    dll = os.path.join(a.artifacts, "bin", "KestrelHello", "release", "KestrelHello.dll")
    p = subprocess.Popen([a.dotnet, dll, "--port", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = p.stdout.readline()
        m = re.match(r"listening on port (\d+)", line)
        r.check(m, "it listens", line)
        if not m:
            return 1
        port = int(m.group(1))
        get = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
        hello = b"HTTP/1.1 200 OK"
        out = http_exchange(port, [get])
        r.check(out.startswith(hello) and b"\r\n\r\nd\r\nHello, World!\r\n0\r\n\r\n" in out,
                "GET / answers Hello, World! (chunked)", out[:300])
        out = http_exchange(port, [get] * 5)
        r.check(out.count(hello) == 5 and out.count(b"Hello, World!") == 5,
                "five pipelined requests on one connection get five answers", out[:300])
        out = http_exchange(port, [b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n"])
        r.check(out.startswith(b"HTTP/1.1 404"), "an unknown path is a 404", out[:300])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
            ok = True
            for _ in range(3):   # keep-alive: one request at a time
                c.sendall(get)
                data = b""
                while not data.endswith(b"\r\n0\r\n\r\n"):   # the last chunk
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                ok = ok and data.startswith(hello) and b"Hello, World!" in data
            r.check(ok, "keep-alive: three requests in turn on one connection")
        rest, _ = p.communicate("", timeout=60)
        r.check(p.returncode == 0, "it exits 0 at the end of its input", f"exit {p.returncode}: {rest}")
        m = re.search(r"served (\d+) connections", rest)
        r.check(m and int(m.group(1)) == 4, "the iocpsrv transport served the four connections", rest)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        print(f"{r.passed} passed, {r.failed} failed", flush=True)
    return 1 if r.failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dotnet", required=True)
    ap.add_argument("--projects", required=True, help="sample_clients/csharp of the source tree")
    ap.add_argument("--artifacts", required=True, help="dotnet's --artifacts-path, in the build folder")
    ap.add_argument("--version", required=True, help="meson.build's project version")
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--sources", nargs="+", required=True, help="meson's cs_binding_src")
    sub.add_parser("run")
    t = sub.add_parser("test")
    t.add_argument("--tests", required=True, help="IocpSrv.Tests.csproj")
    t.add_argument("--library", required=True, help="the folder of libiocpsrv.so")
    k = sub.add_parser("kestrel")
    k.add_argument("--library", required=True, help="the folder of libiocpsrv.so")
    # Everything after "run" belongs to EchoServer, options included.
    argv = sys.argv[1:]
    rest = []
    if "run" in argv:
        at = argv.index("run")
        argv, rest = argv[:at + 1], argv[at + 1:]
    a = ap.parse_args(argv)
    a.artifacts = os.path.abspath(a.artifacts)
    if a.command == "test":
        return test(a)
    if a.command == "kestrel":
        return kestrel(a)
    return build(a) if a.command == "build" else run(a, rest)


if __name__ == "__main__":
    sys.exit(main())
