"""Reaching the server through a proxy, for the asyncio client.

``connect_http_proxy()`` opens TCP (and TLS, for an ``https://`` proxy) to an
HTTP proxy and asks it for a tunnel with ``CONNECT``; ``connect_socks_proxy()``
does the SOCKS handshake with python-socks (the ``ws13[proxy]`` extra,
imported only then). Either way the caller then runs TLS to the server (for
``wss://``) and the WebSocket handshake over the tunnel. Neither has its own
timeout: ``connect()``'s ``open_timeout`` covers them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl as ssl_module
from typing import Any, cast

from ..exceptions import InvalidProxyMessage, ProxyError
from ..proxy import Proxy, parse_connect_response, prepare_connect_request
from ..uri import WebSocketURI

__all__ = ["connect_http_proxy", "connect_socks_proxy"]


class _ConnectTunnel(asyncio.Protocol):
    """Sends ``CONNECT`` and reads the proxy's answer; ``established`` tells how it went."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.established: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.established.done():
            return
        self.buffer += data
        self._parse(eof=False)

    def eof_received(self) -> bool | None:
        self._parse(eof=True)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.established.done():
            error = InvalidProxyMessage("proxy closed the connection before answering CONNECT")
            error.__cause__ = exc
            self.established.set_exception(error)

    def _parse(self, *, eof: bool) -> None:
        if self.established.done():
            return
        try:
            parsed = parse_connect_response(self.buffer, eof=eof)
        except ProxyError as exc:
            self.established.set_exception(exc)
            return
        if parsed is None:
            return
        _, size = parsed
        if len(self.buffer) > size:
            # The client speaks first, in TLS and in WebSocket alike: bytes
            # before that aren't from the server.
            self.established.set_exception(
                InvalidProxyMessage("proxy sent data after its answer to CONNECT")
            )
            return
        # Until the WebSocket connection takes the transport over.
        assert self.transport is not None
        self.transport.pause_reading()
        self.established.set_result(None)


async def connect_http_proxy(
    proxy: Proxy,
    uri: WebSocketURI,
    *,
    user_agent_header: str | None,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    **kwargs: Any,
) -> asyncio.Transport:
    """A transport tunnelled through ``proxy`` to ``uri``'s host and port, reading paused.

    Args:
        ssl: the TLS context for an ``https://`` proxy (``None`` for ``http://``).
        server_hostname: the name checked in the proxy's certificate (the
            proxy's host by default).
        **kwargs: passed to ``loop.create_connection()`` (``local_addr``, ``family``...).

    Raises:
        OSError: the proxy can't be reached (the message names it).
        InvalidProxyStatus: the proxy refused (e.g. 407 without credentials).
        InvalidProxyMessage: the proxy's answer isn't valid HTTP, or it closed.
    """
    loop = asyncio.get_running_loop()
    request = prepare_connect_request(proxy, uri, user_agent_header)
    if ssl is not None and server_hostname is None:
        server_hostname = proxy.host
    try:
        transport, tunnel = await loop.create_connection(
            lambda: _ConnectTunnel(request),
            proxy.host,
            proxy.port,
            ssl=ssl,
            server_hostname=server_hostname,
            **kwargs,
        )
    except ssl_module.SSLError:
        raise
    except OSError as exc:
        # Same class (ConnectionRefusedError...) so callers' handling holds;
        # the message says it was the proxy, not the server, that failed.
        raise type(exc)(exc.errno, f"cannot connect to proxy {proxy}: {_reason(exc)}") from exc
    try:
        await tunnel.established
    except BaseException:
        transport.abort()
        raise
    return transport


def _reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"could not resolve host ({exc.strerror})"
    # asyncio's "Connect call failed ('127.0.0.1', 1)" repeats what the
    # message says already; the errno's sentence is what it adds.
    return os.strerror(exc.errno) if exc.errno else str(exc)


async def connect_socks_proxy(
    proxy: Proxy,
    uri: WebSocketURI,
    *,
    handshake_timeout: float | None = None,
    **kwargs: Any,
) -> socket.socket:
    """A socket connected through the SOCKS ``proxy`` to ``uri``'s host and port.

    ``socks5h`` and ``socks4a`` let the proxy resolve the host name; ``socks5``
    and ``socks4`` resolve it here. ``handshake_timeout`` bounds the SOCKS handshake
    (python-socks' own default, 60 s, when ``None``).

    Raises:
        ImportError: python-socks isn't installed (``pip install 'ws13[proxy]'``).
        OSError: the proxy can't be reached.
        ProxyError: the proxy refused (bad credentials, host unreachable...).
        TimeoutError: python-socks' own timeout.
    """
    try:
        from python_socks import ProxyError as SocksProxyError
        from python_socks import ProxyType
        from python_socks.async_.asyncio import Proxy as SocksProxy
    except ImportError:
        raise ImportError(
            f"connecting through the SOCKS proxy {proxy} needs python-socks: "
            "pip install 'ws13[proxy]'"
        ) from None
    socks = SocksProxy(
        ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4,
        proxy.host,
        proxy.port,
        proxy.username,
        proxy.password,
        rdns=proxy.scheme in ("socks5h", "socks4a"),
    )
    try:
        return await socks.connect(uri.host, uri.port, timeout=handshake_timeout, **kwargs)
    except SocksProxyError as exc:
        raise ProxyError(f"SOCKS proxy {proxy} refused the connection: {exc}") from exc
