"""The asyncio client: ``connect()`` and ``unix_connect()``."""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections.abc import Generator, Iterable, Sequence
from types import TracebackType
from typing import Any

from ..client import ClientProtocol
from ..exceptions import InvalidMessage, InvalidURI
from ..extensions.base import ClientExtensionFactory
from ..extensions.permessage_deflate import enable_client_permessage_deflate
from ..frames import CloseCode
from ..http11 import Request, Response
from ..uri import parse_uri
from ..version import USER_AGENT
from .connection import Connection, check_close_timeout, closing_deadlines
from .timers import Keepalive

__all__ = ["ClientConnection", "connect", "unix_connect"]


class ClientConnection(Connection):
    """A client connection; ``connect()`` returns one once the handshake succeeded."""

    __slots__ = ("_additional_headers", "_handshake", "_user_agent")

    protocol: ClientProtocol

    def __init__(
        self,
        protocol: ClientProtocol,
        *,
        additional_headers: Iterable[tuple[str, str]] | None = None,
        user_agent: str | None = USER_AGENT,
        **kwargs: Any,
    ) -> None:
        super().__init__(protocol, **kwargs)
        self._additional_headers = additional_headers
        self._user_agent = user_agent
        self._handshake: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        request = self.protocol.connect(self._additional_headers, self._user_agent)
        self.protocol.send_request(request)
        self._flush()

    def _handle_handshake(self, event: Request | Response) -> None:
        self._check_handshake()

    def _check_handshake(self) -> None:
        protocol = self.protocol
        if protocol.handshake_exc is not None:
            self._handshake.set_exception(protocol.handshake_exc)
        elif protocol.response is not None:
            self._handshake.set_result(None)
            self._start_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self._handshake.done():
            self._check_handshake()
        if not self._handshake.done():
            error = InvalidMessage("connection closed during the opening handshake")
            error.__cause__ = exc
            self._handshake.set_exception(error)


class connect:
    """Open a WebSocket connection to ``uri``.

    Use it as ``ws = await connect(uri)`` or ``async with connect(uri) as ws:``
    (which closes the connection on exit).

    Args:
        uri: ``ws://`` or ``wss://`` URI; ``user:password@`` becomes a Basic
            ``Authorization`` header.
        origin: the ``Origin`` header, if any.
        subprotocols: subprotocols to offer, in order of preference.
        compression: ``"deflate"`` (the default) offers permessage-deflate
            (RFC 7692) with default settings; ``None`` turns it off.
        extensions: extension factories to offer, e.g. a tuned
            ``ClientPerMessageDeflateFactory(...)``.
        additional_headers: extra request headers, as (name, value) pairs.
        user_agent: the ``User-Agent`` header, ``None`` for none.
        open_timeout: seconds for TCP, TLS and the opening handshake (10);
            ``None`` waits forever.
        ping_interval, ping_timeout, close_timeout, max_queue, write_limit:
            see ``Connection``.
        max_size: the largest message accepted, in bytes (1 MiB); ``None`` lifts it.
        ssl: an ``ssl.SSLContext`` for ``wss://`` (default: the system's
            trusted CAs with hostname checks).
        server_hostname: the TLS SNI and hostname to check, if not the URI's host.
        logger: logger to use (default ``ws13.client``).
        **kwargs: passed to ``loop.create_connection()`` (e.g. ``sock``,
            ``local_addr``, ``family``), or ``loop.create_unix_connection()``
            with ``unix=True`` (then ``path`` is required).
    """

    def __init__(
        self,
        uri: str,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        compression: str | None = "deflate",
        extensions: Sequence[ClientExtensionFactory] | None = None,
        additional_headers: Iterable[tuple[str, str]] | None = None,
        user_agent: str | None = USER_AGENT,
        open_timeout: float | None = 10,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_size: int | None = 2**20,
        max_queue: int | None = 16,
        write_limit: int = 2**16,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        unix: bool = False,
        **kwargs: Any,
    ) -> None:
        self.uri = parse_uri(uri)
        # Checked here, not when the factory runs after TCP connected.
        check_close_timeout(close_timeout)
        if ssl is not None and not self.uri.secure:
            raise InvalidURI(uri, "ssl= was given for a ws:// URI; use wss://")
        if self.uri.secure and ssl is None:
            ssl = ssl_module.create_default_context()
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.open_timeout = open_timeout
        self.unix = unix
        self.kwargs = kwargs
        self.connection: ClientConnection | None = None
        if compression == "deflate":
            extensions = enable_client_permessage_deflate(extensions)
        elif compression is not None:
            raise ValueError(f"unsupported compression: {compression!r}; use 'deflate' or None")

        def factory() -> ClientConnection:
            protocol = ClientProtocol(
                self.uri,
                origin=origin,
                subprotocols=subprotocols,
                extensions=extensions,
                max_size=max_size,
                logger=logger,
            )
            return ClientConnection(
                protocol,
                additional_headers=additional_headers,
                user_agent=user_agent,
                keepalive=None if ping_interval is None else Keepalive(ping_interval, ping_timeout),
                closing=closing_deadlines(close_timeout),
                max_queue=max_queue,
                write_limit=write_limit,
            )

        self.factory = factory

    async def _connect(self) -> ClientConnection:
        loop = asyncio.get_running_loop()
        connection: ClientConnection | None = None
        try:
            async with asyncio.timeout(self.open_timeout):
                if self.unix:
                    _, connection = await loop.create_unix_connection(
                        self.factory,
                        ssl=self.ssl,
                        server_hostname=self._hostname(),
                        **self.kwargs,
                    )
                else:
                    kwargs = dict(self.kwargs)
                    if "sock" not in kwargs:
                        kwargs.setdefault("host", self.uri.host)
                        kwargs.setdefault("port", self.uri.port)
                    _, connection = await loop.create_connection(
                        self.factory,
                        ssl=self.ssl,
                        server_hostname=self._hostname(),
                        **kwargs,
                    )
                await connection._handshake
        except BaseException:
            if connection is not None and connection.transport is not None:
                connection.transport.abort()
            raise
        return connection

    def _hostname(self) -> str | None:
        if self.ssl is None:
            return None
        return self.server_hostname or self.uri.host

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._connect().__await__()

    async def __aenter__(self) -> ClientConnection:
        self.connection = await self._connect()
        return self.connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self.connection is not None
        await self.connection.close(CloseCode.NORMAL_CLOSURE)


def unix_connect(path: str, uri: str = "ws://localhost/", **kwargs: Any) -> connect:
    """Open a WebSocket connection over the Unix socket at ``path``.

    ``uri`` gives the Host header and request path. Other arguments are those
    of ``connect()``.
    """
    return connect(uri, unix=True, path=path, **kwargs)
