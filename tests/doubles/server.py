"""The start/stop code both doubles share: an aiohttp app on 127.0.0.1, used with ``async with``.

A double subclasses `LocalServer`, builds its routes in `build_app` and may clean up in
`before_close`. `go_offline`/`go_online` play a host that cannot be reached (connections are
refused, and requests on connections already open are reset), on the same port afterwards.
"""

from __future__ import annotations

import asyncio
import socket
from types import TracebackType
from typing import Self

from aiohttp import web
from aiohttp.typedefs import Handler


class LocalServer:
    """An aiohttp application served on 127.0.0.1 (a free port unless one is given)."""

    shutdown_timeout = 1.0

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._port = 0
        self.offline = False  # go_offline(): refuse connections, reset open ones

    # -- to implement --------------------------------------------------------------------

    def build_app(self) -> web.Application:
        raise NotImplementedError

    async def before_close(self) -> None:
        """Hook: stop background work before the server goes away."""

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        app = self.build_app()
        app.middlewares.insert(0, self._offline_middleware)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.shutdown_timeout)
        await self._runner.setup()
        await self._listen(port)

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self._site = web.SockSite(self._runner, sock)
        await self._site.start()
        self._port = int(sock.getsockname()[1])

    async def close(self) -> None:
        await self.before_close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if not self._port or self._runner is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self._port}"

    # -- reachability --------------------------------------------------------------------

    async def go_offline(self) -> None:
        """The host becomes unreachable: new connections are refused (the listening socket
        closes) and requests arriving on kept-alive connections are reset."""
        self.offline = True
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def go_online(self) -> None:
        """The host is back, on the same port."""
        self.offline = False
        if self._site is None and self._runner is not None:
            await self._listen(self._port)

    @web.middleware
    async def _offline_middleware(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if self.offline:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        return await handler(request)
