#!/usr/bin/env python3
"""Black-box test of the C# echo sample's --tls option (EchoServer.cs), with
the C samples' TLS checks (../samples/tls_driver.py).

    echo_tls.py -- COMMAND...

COMMAND starts the sample (on .NET: dotnet_project.py ... run; on Mono:
mono EchoServer.exe); --port 0 and the --tls options are appended. Makes a
throw-away identity (ECDSA P-256, PKCS#12 with a password), then, one
output line per check: the sample listens; Python's ssl client at TLS 1.2
and 1.3 (verifying the certificate) gets 1 MiB echoed byte-exact, then a
close_notify answering its own; `openssl s_client` gets its line echoed;
it exits 0 when its standard input ends; with a wrong password, and with a
file that is not there, it exits 1 without listening. Ends with "N passed,
M failed"; exit code 1 when anything failed. Every wait has a deadline.
"""

import os
import shutil
import ssl
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "samples"))
import tls_driver  # noqa: E402
from echo_driver import Child, Results  # noqa: E402


def refused(res, argv, what):
    bad = Child(argv, dict(os.environ), None)
    rc = bad.wait(240)
    if rc is None:
        bad.kill()
    bad.join_output(5)
    res.check(rc == 1 and not bad.stdout, f"{what}: exit 1, nothing listens", bad.diagnostics())


def main():
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    tls_driver.START_TIMEOUT = 240  # the first start may build the sample
    res = Results("C# sample --tls")
    folder = tempfile.mkdtemp()
    try:
        pem, p12 = tls_driver.make_identity(folder)
        echo, port = tls_driver.start(res, argv + ["--port", "0", "--tls", p12,
                                                    "--tls-password", tls_driver.PASSWORD])
        if res.check(port is not None, "EchoServer --tls listens", echo.diagnostics()):
            tls_driver.check_echo(res, "EchoServer", port, pem, [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
            sc = Child(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                        "localhost", "-CAfile", pem, "-quiet", "-verify_return_error",
                        "-no_ign_eof"], dict(os.environ), None)
            sc.proc.stdin.write(b"hello over s_client\n")
            sc.proc.stdin.flush()
            line = tls_driver.wait_line(sc, b"hello over s_client", 30)
            sc.close_stdin()
            if sc.wait(30) is None:
                sc.kill()
            res.check(line, "openssl s_client gets its line echoed", sc.diagnostics())
        tls_driver.stop(res, echo, "EchoServer --tls")
        refused(res, argv + ["--port", "0", "--tls", p12, "--tls-password", "wrong"], "a wrong password")
        refused(res, argv + ["--port", "0", "--tls", os.path.join(folder, "missing.p12")], "a missing file")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
