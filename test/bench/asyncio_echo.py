#!/usr/bin/python3
"""The peers of the Python sample in bench.py (lang): an asyncio Protocol echo server,
as its best users write it (a Protocol, not streams; transport.write straight
from data_received), on the standard event loop or on uvloop.

    asyncio_echo.py [--uvloop] [--port N]

Follows the samples' contract: prints "listening on port N" when ready and
exits when standard input ends. Not a test; run by test/bench/bench.py.
"""

import asyncio
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def main(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port)
    print(f"listening on port {server.sockets[0].getsockname()[1]}", flush=True)
    # Standard input ending is the signal to stop (read on a helper thread).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    args = sys.argv[1:]
    port = 0
    if "--port" in args:
        port = int(args[args.index("--port") + 1])
    if "--uvloop" in args:
        import uvloop
        uvloop.install()
    asyncio.run(main(port))
