"""What the suites share (pytest loads this first): the package is
imported from the sources, sample_clients/python, and finds the library as
a user's program would (LD_LIBRARY_PATH, which meson test sets to the build
folder, or IOCPSRV_LIBRARY); and echo_round_trips, which the asyncio and
third-party suites import from here.

    LD_LIBRARY_PATH=build/linux python3 -m pytest test/python
"""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "sample_clients", "python"))


def echo_round_trips(port, conns=5, rounds=20, timeout=20.0):
    """Round trips on `conns` connections at once against an echo server
    on 127.0.0.1:port, each message checked; blocking (run it in a thread
    while the loop under test keeps running)."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=timeout)
             for _ in range(conns)]
    try:
        for r in range(rounds):
            for i, c in enumerate(socks):
                c.sendall(b"%03d:%03d" % (i, r))
            for i, c in enumerate(socks):
                want, got = b"%03d:%03d" % (i, r), b""
                while len(got) < len(want):
                    chunk = c.recv(len(want) - len(got))
                    assert chunk, "closed"
                    got += chunk
                assert got == want
    finally:
        for c in socks:
            c.close()
