#!/usr/bin/env python3
"""Every header compiles on its own: each header of api/ and dll/ is included
first in a file of its own and compiled with the host compiler, with no -D
from the build (only -I for the two include roots) and in the compiler's
default language (GNU C for gcc, as another build would use it), warnings
as errors.

    check_headers.py --cc CC [CC ARGS...] -- --root SRC --host windows|linux

Headers of the other engine (dll/linux on a Windows host, dll/win on Linux)
are skipped: they are not meant for that compiler. Exit status 1 on any
failure, with the compiler's message."""
import argparse
import os
import subprocess
import sys
import tempfile


def headers(root, host):
    other = 'linux' if host == 'windows' else 'win'
    found = []
    for top in ('api', 'dll'):
        for dirpath, _dirs, files in os.walk(os.path.join(root, top)):
            if os.path.basename(dirpath) == other:
                continue
            found += [os.path.join(dirpath, f) for f in sorted(files) if f.endswith('.h')]
    return sorted(found)


def main():
    argv = sys.argv[1:]
    if '--' not in argv:
        sys.exit(__doc__)
    cut = argv.index('--')
    cc = argv[:cut]
    if cc and cc[0] == '--cc':
        cc = cc[1:]
    ap = argparse.ArgumentParser()
    ap.add_argument('--root', required=True)
    ap.add_argument('--host', choices=('windows', 'linux'), required=True)
    args = ap.parse_args(argv[cut + 1:])
    found = headers(args.root, args.host)
    if not found:
        sys.exit('no headers found under ' + args.root)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for h in found:
            src = os.path.join(tmp, 'alone.c')
            with open(src, 'w') as f:
                f.write('#include "%s"\n' % os.path.abspath(h))
                f.write('int header_alone_check_(void);\n')
            cmd = cc + ['-Wall', '-Wextra', '-Werror', '-fsyntax-only',
                        '-I', os.path.join(args.root, 'api'), src]
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True)
            rel = os.path.relpath(h, args.root)
            if r.returncode != 0:
                failed += 1
                print('FAIL %s\n%s' % (rel, r.stdout))
            else:
                print('ok   %s' % rel)
    print('%d headers, %d failed' % (len(found), failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
