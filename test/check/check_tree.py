#!/usr/bin/env python3
"""The rules of the source tree, checked on the files git tracks:

- the top level is the design card's (api, dll, sample_clients, test,
  iocpsrv.def, meson.build, LICENSE_1_0.txt) plus README.md, .ci/ and
  dotfiles;
- README.md is for users: at most 400 lines, no dated runs;
- no test source at the top of test/, and test/tools/ holds entry points
  (shell scripts) only;
- no file names a tracker entry (an issue or defect by number): name the
  behaviour;
- the library reads its environment in one file of dll/ (the tuning knobs);
- an engine (dll/linux, dll/win) calls no public iocp_ export: it sees the
  core through dll/core/engine.h only.

  check_tree.py --root SRC

Prints one line per check and 'N passed, M failed'."""
import argparse
import os
import re
import subprocess
import sys

from checks import check, finish

CARD = {"api", "dll", "sample_clients", "test", "iocpsrv.def", "meson.build",
        "LICENSE_1_0.txt", "README.md", ".ci"}
TRACKER = re.compile(r"\b[Ii]ssues? #?[0-9]+\b|\b[Dd]efects? [0-9]+\b")
DATE = re.compile(r"\b20[0-9]{2}-[01][0-9]-[0-3][0-9]\b")
ENVIRONMENT = re.compile(r"\bgetenv\s*\(|\bGetEnvironmentVariable[AW]?\s*\(")
# A call of a public function: iocp_name( but not iocp__name( (internal).
EXPORT_CALL = re.compile(r"\biocp_[a-z][a-z0-9_]*\s*\(")
TEXT_SUFFIXES = (".c", ".h", ".py", ".cs", ".sh", ".md", ".build", ".txt", ".def", ".in",
                 ".toml", ".csproj", ".targets", ".props", "run")


def tracked(root):
    out = subprocess.run(["git", "-C", root, "ls-files"], capture_output=True, text=True)
    if out.returncode != 0:  # not a checkout (an unpacked source tree): every file
        return sorted(os.path.relpath(os.path.join(d, f), root)
                      for d, _, fs in os.walk(root) if "/build" not in d and "/.git" not in d
                      for f in fs)
    return out.stdout.split()


def read(root, path):
    try:
        with open(os.path.join(root, path), encoding="utf-8") as f:
            return f.read()
    except (UnicodeDecodeError, FileNotFoundError):
        return ""


def without_comments(c_text):
    """C source without /* */ and // comments or string literals."""
    c_text = re.sub(r"/\*.*?\*/", " ", c_text, flags=re.S)
    c_text = re.sub(r"//[^\n]*", " ", c_text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', c_text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    a = ap.parse_args()
    files = tracked(a.root)

    top = {f.split("/")[0] for f in files}
    extra = sorted(t for t in top if t not in CARD and not t.startswith("."))
    check("top level is the design card's plus README.md, .ci and dotfiles", not extra, extra)

    readme = read(a.root, "README.md").splitlines()
    check("README.md has at most 400 lines", len(readme) <= 400, f"{len(readme)} lines")
    dated = [i + 1 for i, line in enumerate(readme) if DATE.search(line)]
    check("README.md has no dated runs", not dated, f"dates on lines {dated}")

    loose = [f for f in files if f.startswith("test/") and f.count("/") == 1
             and os.path.basename(f) not in ("meson.build", "README.md")]
    check("no test source at the top of test/", not loose, loose)
    tools = [f for f in files if f.startswith("test/tools/") and not f.endswith(".sh")]
    check("test/tools holds entry points (shell scripts) only", not tools, tools)

    named = []
    for f in files:
        if f.endswith(TEXT_SUFFIXES) or "/" not in f:
            for i, line in enumerate(read(a.root, f).splitlines()):
                if TRACKER.search(line):
                    named.append(f"{f}:{i + 1}")
    check("no file names a tracker entry", not named, named[:10])

    env = sorted(f for f in files if f.startswith("dll/") and f.endswith((".c", ".h"))
                 and ENVIRONMENT.search(without_comments(read(a.root, f))))
    check("the environment is read in one file of dll/", len(env) == 1, env)

    calls = []
    for f in files:
        if f.startswith(("dll/linux/", "dll/win/")) and f.endswith((".c", ".h")):
            for m in EXPORT_CALL.finditer(without_comments(read(a.root, f))):
                calls.append(f"{f}: {m.group(0)}")
    check("the engines call no public export", not calls, calls[:10])
    return finish()


if __name__ == "__main__":
    sys.exit(main())
