"""Routing unmodified asyncio programs to the core: an event loop whose
create_server() is iocpsrv's (plain TCP, or TLS with ssl=iocpsrv.TlsConfig;
an ssl.SSLContext or sock= fall back to asyncio's own), its policy, and
install() to set that policy."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from ._tls import TlsConfig
from ._transport import create_server


class IocpEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop with create_server() on iocpsrv."""

    async def create_server(self, protocol_factory: Any, host: Any = None,
                            port: Any = None, **kwds: Any) -> Any:
        """Serve protocol_factory on the iocpsrv core (sock= and an ssl= that is
        not an iocpsrv.TlsConfig go to asyncio)."""
        ssl = kwds.get("ssl")
        if ((ssl is not None and not isinstance(ssl, TlsConfig)) or kwds.get("sock") is not None
                or not isinstance(host, (str, type(None)))):
            return await super().create_server(protocol_factory, host, port, **kwds)
        return await create_server(protocol_factory, host, port or 0, **kwds)


class IocpEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """The default policy, making IocpEventLoop loops."""
    _loop_factory = IocpEventLoop


def install() -> None:
    """Routes every new event loop's create_server() (asyncio.start_server
    included) to iocpsrv: sets IocpEventLoopPolicy. Call it before
    asyncio.run()."""
    asyncio.set_event_loop_policy(IocpEventLoopPolicy())


def new_event_loop() -> IocpEventLoop:
    """A loop with create_server() on iocpsrv (for asyncio.run(...,
    loop_factory=iocpsrv.new_event_loop) on Python 3.12+)."""
    return IocpEventLoop()


def run(main: Any, *, debug: Optional[bool] = None) -> Any:
    """asyncio.run(main) on an IocpEventLoop."""
    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(IocpEventLoopPolicy())
    try:
        return asyncio.run(main, debug=debug)
    finally:
        asyncio.set_event_loop_policy(policy)
