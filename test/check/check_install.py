#!/usr/bin/env python3
"""What `meson install` puts down works for a user of the library.

  check_install.py --build BUILD --source SRC --version X.Y.Z --cc CC...
                   [--windows --wine WINE [--clang CLANG --lld-link LLD --dlltool T]]
                   [--header-modes CLANG CXX]

Installs BUILD into a fresh DESTDIR and checks: the header, the library
(Linux: libiocpsrv.so.X.Y.Z, its SONAME libiocpsrv.so.X and both links;
Windows: iocpsrv.dll, iocpsrv.dll.a and the MSVC-format iocpsrv.lib) and
iocpsrv.pc are there; a program built with `pkg-config --cflags --libs
iocpsrv` against that tree runs (under Wine for Windows); on Windows x64, a
program compiled in MSVC mode by clang and linked by lld-link against
iocpsrv.lib alone (no C runtime) runs under Wine. With --header-modes, the
public header compiles on its own in MSVC mode (x64, x86; C and C++) with
nothing but clang's own headers, and as C++ with the native compiler.
Prints one line per check and 'N passed, M failed'."""
import argparse
import os
import shutil
import subprocess
import sys

from checks import check, finish



def run(cmd, env=None, cwd=None):
    """(returncode, output) of a command; never raises."""
    try:
        p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=240)
        return p.returncode, (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return -1, str(e)


def find(root, name):
    for d, _, files in os.walk(root):
        if name in files:
            return os.path.join(d, name)
    return None


def header_modes(src, clang, cxx, tmp):
    probe = os.path.join(tmp, "header_alone.c")
    with open(probe, "w", encoding="ascii") as f:
        f.write('#include "iocpsrv.h"\n'
                "int main(void) { iocp_config c; c.size = sizeof c;"
                " return (int)c.size - (int)sizeof(iocp_config) + IOCP_VERSION_MAJOR - 1; }\n")
    inc = "-I" + os.path.join(src, "api")
    warn = ["-Wall", "-Wextra", "-Werror"]
    for target in ("x86_64-pc-windows-msvc", "i686-pc-windows-msvc"):
        for lang in ("c", "c++"):
            rc, out = run([clang, "--target=" + target, "-fms-compatibility", "-x", lang,
                           "-fsyntax-only", inc, probe] + warn)
            check(f"the header compiles alone as {lang.upper()} in MSVC mode ({target})", rc == 0, out)
    rc, out = run([cxx, "-x", "c++", "-std=c++11", "-pedantic", "-fsyntax-only", inc, probe] + warn)
    check(f"the header compiles alone as C++11 ({os.path.basename(cxx)})", rc == 0, out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--meson", default="meson")
    ap.add_argument("--cc", required=True, nargs="+")
    ap.add_argument("--windows", action="store_true")
    ap.add_argument("--wine")
    ap.add_argument("--clang")
    ap.add_argument("--lld-link")
    ap.add_argument("--dlltool")
    ap.add_argument("--header-modes", nargs=2, metavar=("CLANG", "CXX"))
    a = ap.parse_args()

    tmp = os.path.join(os.path.abspath(a.build), "install-test")
    shutil.rmtree(tmp, ignore_errors=True)
    dest = os.path.join(tmp, "destdir")
    os.makedirs(tmp)
    rc, out = run([a.meson, "install", "-C", a.build, "--no-rebuild", "--destdir", dest])
    if not check("meson install into a DESTDIR", rc == 0, out[-2000:]):
        return 1
    consumer = os.path.join(a.source, "test", "check", "consumer", "consumer.c")
    major = a.version.split(".")[0]

    header = find(dest, "iocpsrv.h")
    check("the header is installed under include/", header and header.endswith("include/iocpsrv.h"))
    pc = find(dest, "iocpsrv.pc")
    check("iocpsrv.pc is installed", pc is not None)
    if a.windows:
        dll = find(dest, "iocpsrv.dll")
        check("iocpsrv.dll is installed under bin/", dll and dll.endswith("bin/iocpsrv.dll"))
        libdir = os.path.dirname(pc) if pc else None
        implibs = {n: find(dest, n) for n in ("iocpsrv.dll.a", "iocpsrv.lib")}
        check("the GNU (iocpsrv.dll.a) and MSVC (iocpsrv.lib) import libraries are installed",
              all(implibs.values()), f"{implibs}")
        with open(implibs["iocpsrv.lib"] or os.devnull, "rb") as f:
            check("iocpsrv.lib is an import library (an ar archive, as link.exe reads)",
                  f.read(8) == b"!<arch>\n")
        run_env = dict(os.environ, WINEPATH=os.path.dirname(dll or dest).replace("/", "\\"))
        run_env["WINEPATH"] = "Z:" + run_env["WINEPATH"]
        runner = [a.wine]
        exe_name = "consumer.exe"
    else:
        real = find(dest, f"libiocpsrv.so.{a.version}")
        libdir = os.path.dirname(real) if real else None
        check(f"libiocpsrv.so.{a.version} is installed", real is not None)
        if real:
            links = {n: os.readlink(os.path.join(libdir, n)) if os.path.islink(os.path.join(libdir, n)) else None
                     for n in (f"libiocpsrv.so.{major}", "libiocpsrv.so")}
            check(f"libiocpsrv.so -> libiocpsrv.so.{major} -> libiocpsrv.so.{a.version}",
                  links == {f"libiocpsrv.so.{major}": f"libiocpsrv.so.{a.version}",
                            "libiocpsrv.so": f"libiocpsrv.so.{major}"}, f"{links}")
            rc, out = run(["readelf", "-d", real])
            check(f"its SONAME is libiocpsrv.so.{major}", f"[libiocpsrv.so.{major}]" in out, out[-500:])
        run_env = dict(os.environ, LD_LIBRARY_PATH=libdir or "")
        runner = []
        exe_name = "consumer"

    if pc:
        pc_env = dict(os.environ, PKG_CONFIG_LIBDIR=os.path.dirname(pc), PKG_CONFIG_SYSROOT_DIR=dest)
        pc_env.pop("PKG_CONFIG_PATH", None)
        rc, ver = run(["pkg-config", "--modversion", "iocpsrv"], env=pc_env)
        check(f"pkg-config --modversion iocpsrv says {a.version}", ver == a.version, ver)
        rc, flags = run(["pkg-config", "--cflags", "--libs", "iocpsrv"], env=pc_env)
        exe = os.path.join(tmp, exe_name)
        rc, out = run(a.cc + [consumer, "-o", exe] + flags.split()
                      + (["-static-libgcc"] if a.windows else []))
        if check("a program builds with `pkg-config --cflags --libs iocpsrv` against the tree",
                 rc == 0, f"flags {flags!r}: {out}"):
            rc, out = run(runner + [exe], env=run_env)
            check("and runs against the installed library", rc == 0 and "ok" in out, f"exit {rc}: {out}")
            if not a.windows:
                rc, out = run(["readelf", "-d", exe])
                check(f"and needs libiocpsrv.so.{major} (the SONAME), not the unversioned link",
                      f"[libiocpsrv.so.{major}]" in out, out[-500:])

    if a.windows and a.clang and a.lld_link and a.dlltool and implibs["iocpsrv.lib"]:
        k32 = os.path.join(tmp, "kernel32.def")
        with open(k32, "w", encoding="ascii") as f:
            f.write("LIBRARY kernel32.dll\nEXPORTS\nExitProcess\n")
        obj, exe = os.path.join(tmp, "consumer.obj"), os.path.join(tmp, "consumer_lld.exe")
        steps = [
            [a.dlltool, "-m", "i386:x86-64", "-d", k32, "-l", os.path.join(tmp, "kernel32.lib")],
            [a.clang, "--target=x86_64-pc-windows-msvc", "-ffreestanding", "-fno-builtin",
             "-fno-stack-protector", "-O1", "-DCONSUMER_NO_CRT", "-I" + os.path.dirname(header),
             "-c", consumer, "-o", obj],
            [a.lld_link, "/nologo", "/entry:consumer_start", "/subsystem:console", "/nodefaultlib",
             obj, implibs["iocpsrv.lib"], os.path.join(tmp, "kernel32.lib"), "/out:" + exe],
        ]
        rc, out = 0, ""
        for cmd in steps:
            rc, out = run(cmd)
            if rc != 0:
                out = " ".join(cmd) + ": " + out
                break
        if check("clang (MSVC mode) + lld-link link a program against iocpsrv.lib", rc == 0, out):
            rc, out = run(runner + [exe], env=run_env)
            check("and it runs under Wine with the installed iocpsrv.dll", rc == 0, f"exit {rc}: {out}")

    if a.header_modes:
        header_modes(a.source, a.header_modes[0], a.header_modes[1], tmp)

    return finish()


if __name__ == "__main__":
    sys.exit(main())
