"""The package's documented uses, written as a user would with full type
hints: `mypy --strict` must accept this file (the python-typing test).
It is checked, not run."""

import asyncio
import errno

import iocpsrv


async def on_data(server: iocpsrv.Server, conn: int, data: bytes) -> None:
    await asyncio.sleep(0)
    server.send(conn, data)


def on_disconnect(server: iocpsrv.Server, conn: int, reason: int) -> None:
    print(iocpsrv.Reason(reason).name)


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = await reader.readline()
    writer.write(line)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def main() -> None:
    try:
        server = iocpsrv.Server(port=0, thread=False, on_data=on_data,
                                on_disconnect=on_disconnect)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return
        raise
    serving = asyncio.ensure_future(server.serve_async())
    await asyncio.sleep(0)      # serving
    await server.aclose()
    await serving

    protocol_server = await iocpsrv.create_server(Echo, "localhost", 0)
    port: int = protocol_server.sockets[0].getsockname()[1]
    print(port)
    async with protocol_server:
        stream_server = await iocpsrv.start_server(handle, "127.0.0.1", 0, limit=1 << 16)
        await stream_server.stop(1.0)
        try:
            await asyncio.wait_for(protocol_server.serve_forever(), 0.1)
        except asyncio.TimeoutError:
            pass
    print(iocpsrv.__version__, iocpsrv.ErrorCode.EADDRINUSE)


async def tls_main(p12: str) -> None:
    # TLS, done by the library: a PKCS#12 identity as ssl= or tls=.
    tls = iocpsrv.TlsConfig(p12, "secret", alpn=["http/1.1"], min_version=iocpsrv.TLS_1_2,
                            handshake_timeout=5.0)
    try:
        stream_server = await iocpsrv.start_server(handle, "127.0.0.1", 0, ssl=tls)
    except iocpsrv.TlsIdentityError as e:
        print(e.code)
        return
    stream_server.close()
    with iocpsrv.Server(port=0, tls=tls) as server:
        client = iocpsrv.TlsClient(server_hostname="localhost", cafile="ca.pem")
        conn = server.connect("127.0.0.1", server.port, tls=client)
        info: iocpsrv.TlsInfo = server.tls_info(conn)
        print(info.version(), info.cipher()[0], info.selected_alpn_protocol())


if __name__ == "__main__":
    iocpsrv.run(main())
