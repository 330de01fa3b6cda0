#!/usr/bin/env python3
"""The IocpSrv NuGet package, made by `dotnet pack`, works for a .NET user.

  check_nupkg.py --dotnet DOTNET --project IocpSrv.csproj --version X.Y.Z
                 --native linux-x64=PATH --native win-x64=PATH --native win-x86=PATH
                 --consumer Consumer.cs --work DIR [--mono MONO [--async-consumer ConsumerAsync.cs]]

Checks that the native libraries are release builds (no debug information),
strips copies (strip, x86_64-/i686-w64-mingw32-strip), packs IocpSrv.csproj
with them (dotnet pack, the paths as MSBuild properties; with --artifacts
into the folder and under the lock the other .NET tests of the build share,
so the binding is compiled once per build),
then checks the package: nuspec id, version, license expression BSL-1.0,
readme, repository; lib/netstandard2.0, lib/net462 and lib/net8.0 with their XML
documentation; runtimes/RID/native/ holding each library stripped (smaller
than the build's); buildTransitive/IocpSrv.targets. Then a fresh console
project (net10.0) takes the package with `dotnet add package` from the
package's folder and runs the echo consumer with nothing copied by hand and
no LD_LIBRARY_PATH; with --mono, a .NET Framework 4.7.2 project does the
same, its output (where the package's targets put libiocpsrv.so) run on
Mono; with --async-consumer as well, a second .NET Framework 4.7.2 project
(C# 12) runs the Task and Pipelines API of the package's net462 assembly on
Mono (IocpListener, ConnectAsync, the pipes). Each consumer project restores once
(`dotnet add package`), their build and run do not restore again. Restores
reach the NuGet source the machine is configured with for everything else.
Prints one line per check and 'N passed, M failed'."""
import argparse
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile

from checks import check, finish

STRIP = {"linux-x64": "strip", "win-x64": "x86_64-w64-mingw32-strip",
         "win-x86": "i686-w64-mingw32-strip"}
NAME = {"linux-x64": "libiocpsrv.so", "win-x64": "iocpsrv.dll", "win-x86": "iocpsrv.dll"}
OBJDUMP = {"linux-x64": "objdump", "win-x64": "x86_64-w64-mingw32-objdump",
           "win-x86": "i686-w64-mingw32-objdump"}
PROP = {"linux-x64": "IocpSrvNativeLinuxX64", "win-x64": "IocpSrvNativeWinX64",
        "win-x86": "IocpSrvNativeWinX86"}


def env():
    e = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    e.update(DOTNET_CLI_TELEMETRY_OPTOUT="1", DOTNET_NOLOGO="1", DOTNET_SKIP_FIRST_TIME_EXPERIENCE="1")
    return e


def run(cmd, cwd=None, timeout=300, quiet=False):
    start = time.monotonic()
    p = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if not quiet:   # where the time goes
        print(f"  ({time.monotonic() - start:.1f} s: {' '.join(os.path.basename(c) for c in cmd[:4])})", flush=True)
    return p.returncode, p.stdout + p.stderr


WEB_PROGRAM = """using System.Net;
using System.Net.Sockets;
var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.ClearProviders();
builder.WebHost.UseIocpSrv();
builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
var app = builder.Build();
app.MapGet("/", () => "Hello, World!");
await app.StartAsync();
var uri = new Uri(app.Urls.First());
using var http = new HttpClient();
string body = await http.GetStringAsync(uri);
await app.StopAsync();
Console.WriteLine(body == "Hello, World!" ? "ok" : "got " + body);
"""


def consumer_project(a, results, folder, tfm, feed, extra="", sdk="Microsoft.NET.Sdk", package="IocpSrv", program=None):
    """A console project as `dotnet new console` makes it, with Consumer.cs
    as its program, a nuget.config adding the package's folder, and the
    package added by `dotnet add package` (which restores). Appends
    (what, ok, detail) to results; returns whether that worked."""
    os.makedirs(folder)
    with open(os.path.join(folder, "Consumer.csproj"), "w") as f:
        f.write(f"""<Project Sdk="{sdk}">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>{tfm}</TargetFramework>{extra}
  </PropertyGroup>
</Project>
""")
    if program is None:
        shutil.copy(a.consumer, folder)
    else:
        with open(os.path.join(folder, "Program.cs"), "w") as f:
            f.write(program)
    # A packages folder of its own: the user's may hold an older IocpSrv of
    # the same version, which restore would take instead of this one. It
    # lives beside --work and keeps the other packages between runs.
    with open(os.path.join(folder, "nuget.config"), "w") as f:
        f.write(f"""<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <config>
    <add key="globalPackagesFolder" value="{a.packages}" />
  </config>
  <packageSources>
    <add key="local" value="{feed}" />
  </packageSources>
</configuration>
""")
    rc, out = run([a.dotnet, "add", "package", package, "--version", a.version], cwd=folder)
    results.append((f"{tfm}: dotnet add package {package} {a.version} from the package's folder", rc == 0, out[-3000:]))
    return rc == 0


def net10_consumer(a, feed):
    """A fresh .NET console project: the runtime finds runtimes/linux-x64/native."""
    results = []
    app = os.path.join(a.work, "net10")
    if consumer_project(a, results, app, "net10.0", feed):
        rc, out = run([a.dotnet, "run", "--no-restore", "--", a.version], cwd=app)
        results.append(("net10.0: it builds and echoes with the packaged library (dotnet run)",
                        rc == 0 and out.strip().endswith("ok"), out[-3000:]))
        copied = [os.path.join(root, f) for root, _, fs in os.walk(os.path.join(app, "bin"))
                  for f in fs if f == "libiocpsrv.so"]
        results.append(("net10.0: the library comes from runtimes/RID/native, not copied by the targets",
                         copied and all("runtimes" in f for f in copied), f"{copied}"))
    return results


def web_consumer(a, feed):
    """The Kestrel transport's package: a fresh web project serves a request on it."""
    results = []
    app = os.path.join(a.work, "web")
    if consumer_project(a, results, app, "net10.0", feed, "\n    <ImplicitUsings>enable</ImplicitUsings>",
                        sdk="Microsoft.NET.Sdk.Web", package="IocpSrv.Kestrel", program=WEB_PROGRAM):
        rc, out = run([a.dotnet, "run", "--no-restore"], cwd=app)
        results.append(("a fresh web project answers HTTP on UseIocpSrv() (dotnet run)",
                        rc == 0 and out.strip().endswith("ok"), out[-3000:]))
    return results


def net472_consumer(a, feed):
    """A classic .NET Framework project, run on Mono: the targets copy the library."""
    results = []
    app = os.path.join(a.work, "net472")
    if consumer_project(a, results, app, "net472", feed, "\n    <LangVersion>5</LangVersion>"):
        rc, out = run([a.dotnet, "build", "--no-restore", "-c", "Release", "-o", "out",
                       "--disable-build-servers"], cwd=app)
        results.append(("net472: it builds", rc == 0, out[-3000:]))
        outdir = os.path.join(app, "out")
        results.append(("net472: the package's targets put libiocpsrv.so and iocpsrv.dll (x64) beside the program",
                        os.path.isfile(os.path.join(outdir, "libiocpsrv.so"))
                        and os.path.isfile(os.path.join(outdir, "iocpsrv.dll")),
                        f"{os.listdir(outdir) if os.path.isdir(outdir) else 'no ' + outdir}"))
        rc, out = run([a.mono, os.path.join(outdir, "Consumer.exe"), a.version], cwd=outdir, timeout=120)
        results.append(("net472: it echoes on Mono with the library the targets copied",
                        rc == 0 and out.strip() == "ok", out[-3000:]))
    return results


def net472_async_consumer(a, feed):
    """The Task API on .NET Framework: the net462 assembly and its packages on Mono."""
    results = []
    app = os.path.join(a.work, "net472-async")
    with open(a.async_consumer, encoding="utf-8") as f:
        program = f.read()
    if consumer_project(a, results, app, "net472", feed, "\n    <LangVersion>12</LangVersion>", program=program):
        rc, out = run([a.dotnet, "build", "--no-restore", "-c", "Release", "-o", "out",
                       "--disable-build-servers"], cwd=app)
        results.append(("net472: a program on IocpListener builds", rc == 0, out[-3000:]))
        outdir = os.path.join(app, "out")
        rc, out = run([a.mono, os.path.join(outdir, "Consumer.exe")], cwd=outdir, timeout=120)
        results.append(("net472: IocpListener accepts, connects and echoes through the pipes on Mono",
                        rc == 0 and out.strip() == "ok", out[-3000:]))
    return results


def pack(a, project, feed, props=()):
    """dotnet pack of one project into feed, under the shared lock when
    --artifacts is given (the other .NET tests of the build use it)."""
    artifacts = a.artifacts or os.path.join(a.work, "artifacts")
    os.makedirs(artifacts, exist_ok=True)
    with open(os.path.join(artifacts, "build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return run([a.dotnet, "pack", "-c", "Release", project, "--artifacts-path", artifacts,
                    "--disable-build-servers", "-o", feed, "-p:Version=" + a.version] + list(props))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dotnet", required=True)
    ap.add_argument("--project", required=True)
    ap.add_argument("--kestrel-project", help="IocpSrv.Kestrel.csproj: packed and used by a web project too")
    ap.add_argument("--version", required=True)
    ap.add_argument("--native", action="append", default=[])
    ap.add_argument("--consumer", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--artifacts", help="dotnet's --artifacts-path shared with the build's other .NET tests")
    ap.add_argument("--mono")
    ap.add_argument("--async-consumer", help="ConsumerAsync.cs: the Task API on Mono (with --mono)")
    a = ap.parse_args()
    a.work = os.path.abspath(a.work)
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    a.packages = a.work.rstrip("/") + "-packages"
    for name in ("iocpsrv", "iocpsrv.kestrel"):   # this run's packages, never an older build's
        shutil.rmtree(os.path.join(a.packages, name), ignore_errors=True)

    native = dict(spec.split("=", 1) for spec in a.native)
    if not check("the three native libraries are built", set(native) == set(STRIP)
                 and all(os.path.isfile(p) for p in native.values()), f"{native}"):
        return finish()
    a.props = []
    for rid, path in native.items():
        # (mingw's static runtime brings debug information of its own.)
        rc, out = run([shutil.which(OBJDUMP[rid]) or OBJDUMP[rid], "--dwarf=info", path], quiet=True)
        ours = sorted(set(re.findall(r"DW_AT_name\s*:.*?(\S*dll/(?:core|linux|win)/\S+)", out)))
        check(f"{rid}: {os.path.basename(path)} is a release build (no debug information of the library's sources)",
              rc == 0 and not ours, f"{path}: exit {rc}, {ours[:5]}")
        stripped = os.path.join(a.work, "native", rid, NAME[rid])
        os.makedirs(os.path.dirname(stripped))
        rc, out = run([shutil.which(STRIP[rid]) or STRIP[rid], "--strip-unneeded", "-o", stripped, path])
        check(f"{rid}: {NAME[rid]} stripped", rc == 0, out)
        a.props.append(f"-p:{PROP[rid]}={stripped}")

    feed = os.path.join(a.work, "feed")
    rc, out = pack(a, a.project, feed, a.props)
    nupkg = os.path.join(feed, f"IocpSrv.{a.version}.nupkg")
    if not check("dotnet pack makes IocpSrv.nupkg", rc == 0 and os.path.isfile(nupkg), out[-3000:]):
        return finish()

    with zipfile.ZipFile(nupkg) as z:
        names = set(z.namelist())
        nuspec = z.read("IocpSrv.nuspec").decode("utf-8")
        for rid in STRIP:
            entry = f"runtimes/{rid}/native/{NAME[rid]}"
            data = z.read(entry) if entry in names else b""
            check(f"{entry}: stripped, smaller than the build's ({len(data)} bytes)",
                  data and data == open(os.path.join(a.work, "native", rid, NAME[rid]), "rb").read()
                  and len(data) < os.path.getsize(native[rid]), "missing" if not data else "differs")
    check(f"the nuspec says IocpSrv {a.version}",
          "<id>IocpSrv</id>" in nuspec and f"<version>{a.version}</version>" in nuspec)
    # (NuGet adds a licenseUrl of licenses.nuget.org for old clients itself.)
    urls = re.findall(r"<licenseUrl>(.*?)</licenseUrl>", nuspec)
    check("license expression BSL-1.0, no license URL of our own",
          '<license type="expression">BSL-1.0</license>' in nuspec
          and all(u == "https://licenses.nuget.org/BSL-1.0" for u in urls), nuspec)
    check("a readme", "<readme>README.md</readme>" in nuspec and "README.md" in names)
    check("repository metadata", re.search(r'<repository type="git"', nuspec), nuspec)
    for tfm in ("netstandard2.0", "net462", "net8.0"):
        check(f"lib/{tfm}: IocpSrv.Net.dll and its documentation",
              {f"lib/{tfm}/IocpSrv.Net.dll", f"lib/{tfm}/IocpSrv.Net.xml"} <= names)
    check("buildTransitive/IocpSrv.targets for classic projects",
          {"buildTransitive/IocpSrv.targets", "build/IocpSrv.targets"} <= names)

    # The Kestrel transport's package: it depends on this IocpSrv.
    consumers = [net10_consumer]
    if a.kestrel_project:
        rc, out = pack(a, a.kestrel_project, feed)
        knupkg = os.path.join(feed, f"IocpSrv.Kestrel.{a.version}.nupkg")
        if check("dotnet pack makes IocpSrv.Kestrel.nupkg", rc == 0 and os.path.isfile(knupkg), out[-3000:]):
            with zipfile.ZipFile(knupkg) as z:
                kspec = z.read("IocpSrv.Kestrel.nuspec").decode("utf-8")
            check(f"IocpSrv.Kestrel depends on IocpSrv {a.version}, BSL-1.0",
                  f'<dependency id="IocpSrv" version="{a.version}"' in kspec and "BSL-1.0" in kspec, kspec)
            consumers.append(web_consumer)
    if a.mono:
        consumers.append(net472_consumer)
        if a.async_consumer:
            consumers.append(net472_async_consumer)
    # One after the other: on a loaded machine (meson runs tests side by
    # side) building them at once made each slower by as much.
    for consumer in consumers:
        for what, ok, detail in consumer(a, feed):
            check(what, ok, detail)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
