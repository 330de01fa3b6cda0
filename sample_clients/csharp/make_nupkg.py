#!/usr/bin/env python3
"""Builds the IocpSrv NuGet package with Debian's `nuget pack` (2.8, on Mono).

  make_nupkg.py --nuget NUGET --version X.Y.Z --assembly IocpSrv.Net.dll [--doc IocpSrv.Net.xml]
                --native RID=PATH [--native RID=PATH ...] [--license LICENSE_1_0.txt]
                --out IocpSrv.X.Y.Z.nupkg

The managed class library goes to lib/net45/, each native library to
runtimes/RID/native/ under the name the runtime looks for (iocpsrv.dll for
win-*, libiocpsrv.so for linux-*). A --native whose file does not exist is
left out (the Windows DLLs come from the sibling build folders, see
sample_clients/csharp/meson.build). The version comes from meson.build.
"""
import argparse
import os
import shutil
import subprocess
import sys
from xml.sax.saxutils import escape

NUSPEC = """<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://schemas.microsoft.com/packaging/2010/07/nuspec.xsd">
  <metadata>
    <id>IocpSrv</id>
    <version>{version}</version>
    <title>iocpsrv</title>
    <authors>The iocpsrv authors</authors>
    <licenseUrl>https://www.boost.org/LICENSE_1_0.txt</licenseUrl>
    <requireLicenseAcceptance>false</requireLicenseAcceptance>
    <description>{description}</description>
    <tags>iocp tcp server native pinvoke</tags>
  </metadata>
  <files>
{files}
  </files>
</package>
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nuget", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--assembly", required=True)
    ap.add_argument("--doc")
    ap.add_argument("--native", action="append", default=[])
    ap.add_argument("--license")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    out = os.path.abspath(a.out)
    stage = out + ".stage"
    shutil.rmtree(stage, ignore_errors=True)
    placed = []

    def place(src, rel):
        dst = os.path.join(stage, "content", rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
        placed.append(rel)

    place(a.assembly, "lib/net45/IocpSrv.Net.dll")
    if a.doc:
        place(a.doc, "lib/net45/IocpSrv.Net.xml")
    if a.license:
        place(a.license, "LICENSE_1_0.txt")
    for spec in a.native:
        rid, path = spec.split("=", 1)
        if os.path.isfile(path):
            name = "iocpsrv.dll" if rid.startswith("win") else "libiocpsrv.so"
            place(path, f"runtimes/{rid}/native/{name}")
    files = "\n".join(f'    <file src="content/{escape(r)}" target="{escape(os.path.dirname(r))}" />'
                      for r in placed)
    description = ("P/Invoke binding of iocpsrv, a scalable TCP server core on Windows I/O completion "
                   "ports (epoll on Linux), with the native library for "
                   + ", ".join(sorted(r.split("/")[1] for r in placed if r.startswith("runtimes/"))) + ".")
    with open(os.path.join(stage, "IocpSrv.nuspec"), "w", encoding="utf-8") as f:
        f.write(NUSPEC.format(version=escape(a.version), description=escape(description), files=files))
    dist = os.path.join(stage, "dist")
    os.makedirs(dist)
    env = dict(os.environ, HOME=stage)  # nuget writes its settings under HOME
    p = subprocess.run([a.nuget, "pack", "IocpSrv.nuspec", "-OutputDirectory", dist,
                        "-NoPackageAnalysis", "-NonInteractive"],
                       cwd=stage, env=env, capture_output=True, text=True)
    built = os.listdir(dist)
    if p.returncode != 0 or len(built) != 1:
        sys.stderr.write(p.stdout + p.stderr + f"\nmade: {built}\n")
        return 1
    shutil.move(os.path.join(dist, built[0]), out)
    shutil.rmtree(stage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
