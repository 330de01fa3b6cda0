#!/usr/bin/python3
"""The Python echo peers in bench.py (lang and asyncio sections): an asyncio
echo server as its best users write it, on the standard event loop, on
uvloop or on iocpsrv.

    asyncio_echo.py [--loop asyncio|uvloop|iocpsrv|iocpsrv-pure|iocpsrv-helper|iocpsrv-uvloop]
                    [--uvloop] [--streams SIZE] [--port N]

The default is a Protocol echo (transport.write straight from
data_received); --streams SIZE a streams echo (start_server; each message
read with readexactly(SIZE), written back, then drain()). --loop iocpsrv
serves through iocpsrv.create_server / iocpsrv.start_server on the
standard loop (iocpsrv-pure: without its C accelerator,
IOCPSRV_PURE_PYTHON=1; iocpsrv-uvloop: on uvloop's loop, which says what
the standard loop's own Python costs); --uvloop is --loop uvloop.

Follows the samples' contract: prints "listening on port N" when ready and
exits when standard input ends. Not a test; run by test/bench/bench.py.
"""

import asyncio
import os
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


def streams_echo(size):
    async def echo(reader, writer):
        try:
            while True:
                data = await reader.readexactly(size)
                writer.write(data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
    return echo


async def main(port, loop_name, size):
    loop = asyncio.get_running_loop()
    if loop_name == "iocpsrv":
        import iocpsrv
        if size:
            server = await iocpsrv.start_server(streams_echo(size), "127.0.0.1", port)
        else:
            server = await iocpsrv.create_server(Echo, "127.0.0.1", port)
    elif size:
        server = await asyncio.start_server(streams_echo(size), "127.0.0.1", port)
    else:
        server = await loop.create_server(Echo, "127.0.0.1", port)
    print(f"listening on port {server.sockets[0].getsockname()[1]}", flush=True)
    # Standard input ending is the signal to stop (read on a helper thread).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    if loop_name == "iocpsrv":
        server.abort_clients()
    await server.wait_closed()


if __name__ == "__main__":
    args = sys.argv[1:]
    port, size, loop_name = 0, 0, "asyncio"
    if "--port" in args:
        port = int(args[args.index("--port") + 1])
    if "--streams" in args:
        size = int(args[args.index("--streams") + 1])
    if "--loop" in args:
        loop_name = args[args.index("--loop") + 1]
    if "--uvloop" in args:
        loop_name = "uvloop"
    if loop_name in ("uvloop", "iocpsrv-uvloop"):
        import uvloop
        uvloop.install()
    if loop_name in ("iocpsrv", "iocpsrv-pure", "iocpsrv-helper", "iocpsrv-uvloop"):
        if loop_name == "iocpsrv-pure":
            os.environ["IOCPSRV_PURE_PYTHON"] = "1"   # without the C accelerator
        if loop_name == "iocpsrv-helper":
            os.environ["IOCPSRV_ASYNCIO_HELPER"] = "1"  # a helper thread waits for the loop
        loop_name = "iocpsrv"
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        "..", "..", "sample_clients", "python"))
    asyncio.run(main(port, loop_name, size))
