#!/usr/bin/python3
"""aiohttp's hello-world app, the HTTP peer in bench.py (aiohttp section):
GET / answers "Hello, World!", no access log; on the standard event loop,
on uvloop (uvloop.install()) or on iocpsrv (iocpsrv.install(): the app is
not changed, the loop's create_server is iocpsrv's).

    aiohttp_hello.py [--loop asyncio|uvloop|iocpsrv|iocpsrv-pure|iocpsrv-helper] [--port N]

Follows the samples' contract: prints "listening on port N" when ready and
exits when standard input ends. Not a test; run by test/bench/bench.py.
"""

import asyncio
import os
import sys

from aiohttp import web


async def hello(request):
    return web.Response(text="Hello, World!")


async def main(port):
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"listening on port {runner.addresses[0][1]}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1]) if "--port" in args else 0
    loop_name = args[args.index("--loop") + 1] if "--loop" in args else "asyncio"
    if loop_name == "uvloop":
        import uvloop
        uvloop.install()
    elif loop_name in ("iocpsrv", "iocpsrv-pure", "iocpsrv-helper"):
        if loop_name == "iocpsrv-pure":
            os.environ["IOCPSRV_PURE_PYTHON"] = "1"   # without the C accelerator
        if loop_name == "iocpsrv-helper":
            os.environ["IOCPSRV_ASYNCIO_HELPER"] = "1"  # a helper thread waits for the loop
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        "..", "..", "sample_clients", "python"))
        import iocpsrv
        iocpsrv.install()
    asyncio.run(main(port))
