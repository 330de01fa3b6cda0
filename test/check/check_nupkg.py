#!/usr/bin/env python3
"""The IocpSrv NuGet package works for a .NET user.

  check_nupkg.py --nupkg IocpSrv.X.Y.Z.nupkg --version X.Y.Z --mcs MCS --mono MONO
                 --consumer Consumer.cs --work DIR [--expect-native RID=PATH ...]

Unpacks the package, checks its nuspec version, the class library under
lib/net45/ and each expected native library under runtimes/RID/native/
(byte for byte the build's), builds a program against the packaged
IocpSrv.Net.dll alone, deploys it with the packaged linux-x64 library beside it
(no LD_LIBRARY_PATH) and runs it on Mono. Prints one line per check and
'N passed, M failed'."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import zipfile

from checks import check, finish



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nupkg", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--mcs", required=True)
    ap.add_argument("--mono", required=True)
    ap.add_argument("--consumer", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--expect-native", action="append", default=[])
    a = ap.parse_args()

    shutil.rmtree(a.work, ignore_errors=True)
    pkg = os.path.join(a.work, "package")
    with zipfile.ZipFile(a.nupkg) as z:
        z.extractall(pkg)
    nuspec = open(os.path.join(pkg, "IocpSrv.nuspec"), encoding="utf-8").read()
    check(f"the nuspec says IocpSrv {a.version}",
          re.search(r"<id>IocpSrv</id>", nuspec) and f"<version>{a.version}</version>" in nuspec)
    lib = os.path.join(pkg, "lib", "net45", "IocpSrv.Net.dll")
    check("the class library and its documentation are under lib/net45/",
          os.path.isfile(lib) and os.path.isfile(os.path.join(pkg, "lib", "net45", "IocpSrv.Net.xml")))
    for spec in a.expect_native:
        rid, path = spec.split("=", 1)
        name = "iocpsrv.dll" if rid.startswith("win") else "libiocpsrv.so"
        packed = os.path.join(pkg, "runtimes", rid, "native", name)
        same = os.path.isfile(packed) and open(packed, "rb").read() == open(path, "rb").read()
        check(f"runtimes/{rid}/native/{name} is the build's {os.path.basename(path)}", same,
              "missing" if not os.path.isfile(packed) else "differs (stale package: rebuild)")

    app = os.path.join(a.work, "app")
    os.makedirs(app)
    exe = os.path.join(app, "Consumer.exe")
    p = subprocess.run([a.mcs, "-nologo", "-warn:4", "-warnaserror", "-r:" + lib, "-out:" + exe, a.consumer],
                       capture_output=True, text=True)
    if not check("a program builds against the packaged IocpSrv.Net.dll", p.returncode == 0, p.stdout + p.stderr):
        return 1
    shutil.copy(lib, app)
    shutil.copy(os.path.join(pkg, "runtimes", "linux-x64", "native", "libiocpsrv.so"), app)
    # On Windows the managed and the native library share the program's
    # folder, whose file names ignore case.
    names = [n.lower() for n in os.listdir(app)]
    check("the managed assembly's file name differs from iocpsrv.dll in any case",
          "iocpsrv.dll" not in names and len(set(names)) == len(names), f"{os.listdir(app)}")
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    p = subprocess.run([a.mono, exe, a.version], cwd=app, env=env, capture_output=True, text=True, timeout=120)
    check("it runs on Mono with the packaged native library beside it (echo over loopback)",
          p.returncode == 0 and p.stdout.strip() == "ok", f"exit {p.returncode}: {p.stdout}{p.stderr}")

    return finish()


if __name__ == "__main__":
    sys.exit(main())
