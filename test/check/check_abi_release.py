"""Release to release: the library of an earlier release, built from the
repository's history, against this one with abidiff (abigail-tools).

Allowed: added functions, members appended at the end of the size-versioned
structs (abi_release.abignore), and the SONAME that 1.1 gave the library
(libiocpsrv.so.1; 1.0.0 had none: programs linked against it name
libiocpsrv.so, which the install keeps as a link). Anything else that abidiff
calls incompatible fails, as does a removed or changed function or variable.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import io


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def build_old(root, commit, work):
    """The old library, once per build folder."""
    lib = os.path.join(work, 'build', 'libiocpsrv.so')
    if os.path.exists(lib):
        return lib
    shutil.rmtree(work, ignore_errors=True)
    src = os.path.join(work, 'src')
    os.makedirs(src)
    tar = run(['git', '-C', root, 'archive', commit], stdout=subprocess.PIPE).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(src)
    env = {k: v for k, v in os.environ.items() if not k.startswith('MESON')}
    run(['meson', 'setup', os.path.join(work, 'build'), src, '-Dbuildtype=debug'],
        env=env, stdout=subprocess.DEVNULL)
    run(['ninja', '-C', os.path.join(work, 'build'), 'libiocpsrv.so'], env=env,
        stdout=subprocess.DEVNULL)
    return lib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--root', required=True)
    ap.add_argument('--commit', required=True)
    ap.add_argument('--work', required=True)
    ap.add_argument('--lib', required=True)
    ap.add_argument('--suppressions', required=True)
    a = ap.parse_args()

    old = build_old(a.root, a.commit, a.work)
    h1 = os.path.join(a.work, 'h1')
    os.makedirs(h1, exist_ok=True)
    with open(os.path.join(h1, 'iocpsrv.h'), 'wb') as f:
        f.write(run(['git', '-C', a.root, 'show', a.commit + ':api/iocpsrv.h'],
                    stdout=subprocess.PIPE).stdout)
    h2 = os.path.join(a.root, 'api')
    p = subprocess.run(['abidiff', '--suppressions', a.suppressions, '--headers-dir1', h1,
                        '--headers-dir2', h2, old, a.lib], stdout=subprocess.PIPE, text=True)
    report = p.stdout
    print(report)
    bad = []
    if p.returncode & 3:
        bad.append('abidiff failed (exit %d)' % p.returncode)
    for kind in ('Functions', 'Variables'):
        m = re.search(kind + r' changes summary: (\d+) Removed, (\d+) Changed', report)
        if m is None:
            bad.append('no %s summary' % kind)
        elif m.group(1) != '0' or m.group(2) != '0':
            bad.append('%s removed or changed: %s' % (kind.lower(), m.group(0)))
    if p.returncode & 8:
        soname = "SONAME changed from 'libiocpsrv.so' to 'libiocpsrv.so.1'" in report
        others = [l for l in report.splitlines()
                  if 'changed' in l.lower() and 'SONAME' not in l and 'summary' not in l]
        if not soname or others:
            bad.append('incompatible change: ' + '; '.join(others or ['see the report']))
    for b in bad:
        print('FAIL:', b)
    if not bad:
        print('ok: %s -> this library: compatible (added functions, appended members, the 1.1 SONAME)'
              % a.commit)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
