#!/usr/bin/env python3
"""ABI check: api/iocpsrv.h, iocpsrv.def and a built library agree.

  check_abi.py --def iocpsrv.def --header api/iocpsrv.h --dll iocpsrv.dll --objdump OBJDUMP
  check_abi.py --def iocpsrv.def --header api/iocpsrv.h --so libiocpsrv.so

Checks: every .def export has a fixed, unique ordinal; the .def names and the
header's IOCP_API functions are the same set; the library exports exactly the
.def names (undecorated: no _name or name@N), and a DLL with the .def's
ordinals. Prints one line per check and 'N passed, M failed'."""
import argparse
import importlib
import inspect
import re
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# The Linux library's build step reads the .def with the same parser.
sys.path.insert(0, os.path.join(HERE, "..", "..", "dll", "linux"))
from def_to_map import export_lines  # noqa: E402  (one .def parser for both tools)
from checks import check, finish  # noqa: E402  (test/check/checks.py)



def read_def(path):
    exports, bad = {}, []
    for line in export_lines(path):
        m = re.fullmatch(r"(\w+)\s+@(\d+)", line)
        if m:
            exports[m.group(1)] = int(m.group(2))
        else:
            bad.append(line)
    check("every .def export has a fixed ordinal", not bad, f"{bad}")
    return exports


def header_functions(path):
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return set(re.findall(r"IOCP_API\b[^;{]*?\b(iocp_\w+)\s*\(", text))


def dll_exports(path, objdump):
    out = subprocess.run([objdump, "-p", path], check=True, capture_output=True, text=True).stdout
    base = int(re.search(r"Ordinal Base\s+(\d+)", out).group(1))
    table = out.split("[Ordinal/Name Pointer] Table", 1)[1]
    names = {}
    for m in re.finditer(r"^\s*\[\s*(\d+)\]\s+(\S+)\s*$", table, flags=re.M):
        names[m.group(2)] = int(m.group(1)) + base
    imports = re.findall(r"DLL Name:\s*(\S+)", out)
    return names, imports


def so_exports(path, nm):
    out = subprocess.run([nm, "-D", "--defined-only", path], check=True, capture_output=True,
                         text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "TtWwDdBbRrVvi":
            names.add(parts[2].split("@")[0])
    return names


def python_api_gaps(mod):
    """What the public API (the names in __all__, and the public methods and
    properties of its classes) lacks: docstrings and type hints."""
    gaps = []

    def function(name, fn, method=False):
        params = list(inspect.signature(fn).parameters.values())[1 if method else 0:]
        missing = [p.name for p in params if p.annotation is inspect.Parameter.empty]
        if "return" not in fn.__annotations__:
            missing.append("return")
        # A constructor is documented by its class's docstring.
        if not name.endswith(".__init__") and not (fn.__doc__ or "").strip():
            gaps.append(f"{name}: add a docstring")
        if missing:
            gaps.append(f"{name}: add type hints for {', '.join(missing)}")

    for name in getattr(mod, "__all__", []):
        obj = getattr(mod, name)
        if inspect.isfunction(obj):
            function(name, obj)
        elif inspect.isclass(obj):
            if not (obj.__doc__ or "").strip():
                gaps.append(f"{name}: add a docstring")
            for attr, val in vars(obj).items():
                if attr.startswith("_") and attr not in ("__init__", "__enter__", "__exit__"):
                    continue
                if isinstance(val, property):
                    function(f"{name}.{attr}", val.fget, method=True)
                elif inspect.isfunction(val):
                    function(f"{name}.{attr}", val, method=True)
    return gaps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--def", dest="deffile", required=True)
    ap.add_argument("--header", required=True)
    ap.add_argument("--dll")
    ap.add_argument("--objdump", default="objdump")
    ap.add_argument("--so")
    ap.add_argument("--implib", help="import library to check for cdecl names")
    ap.add_argument("--nm", default="nm", help="nm of the build's binutils (import library, shared object)")
    ap.add_argument("--csharp", nargs="+", help="C# binding's files: every import and delegate is Cdecl")
    ap.add_argument("--python", help="the ctypes package's folder: CDLL and CFUNCTYPE only")
    a = ap.parse_args()

    exports = read_def(a.deffile)
    ords = list(exports.values())
    check("the .def lists exports", len(exports) > 0)
    check("the .def ordinals are unique", len(set(ords)) == len(ords))
    declared = header_functions(a.header)
    check("every .def export is declared in the header", set(exports) <= declared,
          f"missing: {sorted(set(exports) - declared)}")
    check("every IOCP_API function of the header is in the .def", declared <= set(exports),
          f"not exported: {sorted(declared - set(exports))}")

    if a.dll:
        names, imports = dll_exports(a.dll, a.objdump)
        check("the DLL exports exactly the .def names", set(names) == set(exports),
              f"extra {sorted(set(names) - set(exports))}, missing {sorted(set(exports) - set(names))}")
        check("the DLL's names are undecorated",
              all(not n.startswith("_") and "@" not in n for n in names))
        check("the DLL uses the .def ordinals",
              all(names.get(n) == o for n, o in exports.items()),
              f"{ {n: names.get(n) for n in exports if names.get(n) != exports[n]} }")
        allowed = {"kernel32.dll", "ws2_32.dll", "msvcrt.dll", "advapi32.dll", "ntdll.dll",
                   "secur32.dll", "crypt32.dll"}  # TLS: SChannel and the PKCS#12 import
        bad = [i for i in imports if i.lower() not in allowed and not i.lower().startswith("api-ms-win-")]
        check("the DLL imports only system DLLs", not bad, f"imports {bad}")
    if a.implib:
        out = subprocess.run([a.nm, a.implib], check=True, capture_output=True, text=True).stdout
        syms = {l.split()[-1] for l in out.splitlines() if " T " in l or " I " in l}
        decorated = sorted(s for s in syms if "iocp_" in s and "@" in s)
        check("the import library has cdecl (not stdcall @N) names", not decorated, f"{decorated}")
        check("the import library has every .def name",
              all(any(s.endswith(n) for s in syms) for n in exports))
    if a.so:
        names = so_exports(a.so, a.nm)
        check("the shared object exports exactly the .def names", names == set(exports),
              f"extra {sorted(names - set(exports))}, missing {sorted(set(exports) - names)}")

    if a.csharp:
        cs = "\n".join(open(f, encoding="utf-8").read() for f in a.csharp)
        imports = re.findall(r"\[DllImport\(([^)]*)\)\]", cs)
        imported = set(re.findall(r"static extern [^(]*?\b(iocp_\w+)\s*\(", cs))
        check("C#: every DllImport says CallingConvention.Cdecl",
              imports and all("CallingConvention.Cdecl" in i for i in imports))
        check("C#: every delegate type is UnmanagedFunctionPointer(Cdecl)",
              cs.count("delegate ") > 0 and
              len(re.findall(r"\[UnmanagedFunctionPointer\(CallingConvention\.Cdecl\)\]\s*(?:internal |public )?delegate", cs))
              == len(re.findall(r"\]\s*(?:internal |public )?delegate", cs)))
        check("C#: imports only exported names", imported <= set(exports),
              f"{sorted(imported - set(exports))}")
    if a.python:
        py = "".join(open(os.path.join(a.python, f), encoding="utf-8").read()
                     for f in sorted(os.listdir(a.python)) if f.endswith(".py"))
        check("Python: CDLL and CFUNCTYPE (cdecl), never WinDLL/WINFUNCTYPE",
              "ctypes.CDLL" in py and "CFUNCTYPE" in py and "WinDLL" not in py
              and "WINFUNCTYPE" not in py)
        # Imported as the package it is (it loads the library on first use, not here).
        sys.path.insert(0, os.path.dirname(os.path.abspath(a.python)))
        lacking = python_api_gaps(importlib.import_module(os.path.basename(os.path.abspath(a.python))))
        check("Python: every public function, class, method and property has a docstring "
              "and type hints", not lacking,
              f"in {a.python}: " + "; ".join(lacking))

    return finish()


if __name__ == "__main__":
    sys.exit(main())
