"""Unmodified third-party asyncio servers on the core, serving real HTTP
requests: aiohttp's web server and uvicorn (Debian's python3-aiohttp and
uvicorn, so this suite runs under Debian's python3 only), their
loop.create_server routed to iocpsrv; and iocpsrv's own asyncio layer on
uvloop's loop (Debian's python3-uvloop).

    LD_LIBRARY_PATH=build/linux /usr/bin/python3 -m pytest test/python/test_thirdparty.py
"""

import asyncio
import json
import os

import aiohttp
import aiohttp.web
import uvicorn
import uvloop

import iocpsrv
from conftest import echo_round_trips

TIMEOUT = 20.0


async def get(port, path, n=3):
    """n requests on one keep-alive connection (aiohttp's client, on
    asyncio's own create_connection): their (status, body) pairs."""
    out = []
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            async with session.get(f"http://127.0.0.1:{port}{path}?i={i}") as resp:
                out.append((resp.status, await resp.read()))
    return out


def test_aiohttp_web_server():
    async def hello(request):
        return aiohttp.web.Response(text="hello " + request.query["i"])

    async def echo(request):
        return aiohttp.web.json_response({"got": len(await request.read())})

    async def main():
        app = aiohttp.web.Application()
        app.router.add_get("/", hello)
        app.router.add_post("/echo", echo)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, iocpsrv.IocpServer)
        port = server.sockets[0].getsockname()[1]
        assert await get(port, "/") == [(200, b"hello %d" % i) for i in range(3)]
        async with aiohttp.ClientSession() as session:
            body = b"x" * 1_000_000
            async with session.post(f"http://127.0.0.1:{port}/echo", data=body) as resp:
                assert json.loads(await resp.read()) == {"got": len(body)}
        await runner.cleanup()
        await asyncio.wait_for(asyncio.shield(server._done), TIMEOUT)
        assert server._native.closed

    iocpsrv.run(asyncio.wait_for(main(), TIMEOUT))


def test_uvicorn():
    async def app(scope, receive, send):
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body",
                    "body": b"uvicorn " + scope["query_string"] + b" %d" % len(body)})

    async def main():
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                lifespan="off", loop="none", http="h11")
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None
        serving = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        (listener,) = server.servers
        assert isinstance(listener, iocpsrv.IocpServer)
        port = listener.sockets[0].getsockname()[1]
        assert await get(port, "/") == [(200, b"uvicorn i=%d 0" % i) for i in range(3)]
        server.should_exit = True
        await serving

    iocpsrv.run(asyncio.wait_for(main(), TIMEOUT))


def test_iocpsrv_server_on_uvloop():
    """iocpsrv's asyncio layer on uvloop's loop (Debian's python3-uvloop):
    the wait handle among uvloop's readers, echoes on five connections at
    once, then a graceful stop that releases the library server."""
    async def echo(reader, writer):
        try:
            while data := await reader.read(64):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def main():
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        server = await iocpsrv.start_server(echo, "127.0.0.1", 0)
        try:
            helper = os.environ.get("IOCPSRV_ASYNCIO_HELPER") == "1"
            assert (server._fd is not None) == (not helper)   # the handle, or the helper
            port = server.sockets[0].getsockname()[1]
            await asyncio.get_running_loop().run_in_executor(None, echo_round_trips, port)
        finally:
            await server.stop()
        assert server._native.closed
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), TIMEOUT))
    finally:
        loop.close()
