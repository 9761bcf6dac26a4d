"""The asyncio client: ``connect()`` and ``unix_connect()``."""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import traceback
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Literal

from ..client import ClientProtocol, backoff, process_exception
from ..exceptions import InvalidMessage, InvalidRedirect, InvalidStatus, InvalidURI
from ..extensions.base import ClientExtensionFactory
from ..extensions.permessage_deflate import enable_client_permessage_deflate
from ..frames import CloseCode
from ..http11 import Request, Response
from ..proxy import Proxy, get_proxy, parse_proxy
from ..redirects import MAX_REDIRECTS, Redirects, is_redirect, same_origin, strip_credentials
from ..uri import WebSocketURI, parse_uri
from ..version import USER_AGENT
from .capture import Pcap, TapProtocol, open_pcap, tap, untap
from .connection import Connection, check_close_timeout, closing_deadlines, idle_deadlines
from .proxy import connect_http_proxy, connect_socks_proxy
from .timers import Keepalive
from .tlscapture import KeyLog, open_relayed

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

    Three ways to use it:

    * ``ws = await connect(uri)``: one connection, closed by you;
    * ``async with connect(uri) as ws:``: closed on exit;
    * ``async for ws in connect(uri):``: a new connection each time the
      previous one failed or closed, see *Reconnection* below.

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
        user_agent_header: the ``User-Agent`` header (of the handshake and of a
            proxy's ``CONNECT``), ``None`` for none.
        proxy: ``True`` (the default) uses the proxy the environment sets
            for ``uri`` (``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``,
            ``NO_PROXY``: see ``ws13.proxy.get_proxy()``); a URL
            (``http://[user:pass@]host:port``, ``https://...``,
            ``socks5h://``, ``socks5://``, ``socks4a://``, ``socks4://``) uses
            that proxy; ``None`` connects directly. SOCKS needs the
            ``ws13[proxy]`` extra (python-socks). Not used with ``unix=True``,
            ``sock=``, ``host=`` or ``port=``, which say where TCP goes.
        proxy_ssl: the TLS context to an ``https://`` proxy (default: the
            system's trusted CAs with hostname checks).
        proxy_server_hostname: the name checked in the proxy's certificate,
            if not the proxy's host.
        max_redirects: how many redirects (301, 302, 303, 307, 308) to follow
            (10); then, or on a loop, a ``wss://`` to ``ws://`` redirect or a
            bad ``Location``, raise ``InvalidRedirect`` (an ``InvalidStatus``).
            ``0`` follows none. See ``ws13.redirects``.
        open_timeout: seconds for everything before the connection is open:
            proxy, TCP, TLS, redirects and the opening handshake (10);
            ``None`` waits forever (but a SOCKS handshake still gives up after
            python-socks' 60 s).
        process_exception: with ``async for``, called with each exception
            that ended a connection attempt; returns ``None`` to retry, or the
            exception to raise (default: ``ws13.client.process_exception``:
            retry network errors, timeouts and 500/502/503/504).
        reconnect_delays: with ``async for``, a function returning the
            delays between attempts, an iterator of seconds (default:
            ``ws13.client.backoff``: random 0-5 s, then 3.1 s growing by
            1.618 times up to 90 s).
        ping_interval, ping_timeout, close_timeout, max_queue, write_limit:
            see ``Connection``.
        max_size: the largest message accepted, in bytes (1 MiB); ``None`` lifts it.
        ssl: an ``ssl.SSLContext`` for ``wss://`` (default: the system's
            trusted CAs with hostname checks).
        server_hostname: the TLS SNI and hostname to check, if not the URI's host.
        logger: logger to use (default ``ws13.client``).
        pcap: capture the connection to this pcapng file (a path, an open
            binary file or a ``ws13.pcap.PcapWriter``; a path is opened now:
            OSError if it can't be written). Through a proxy, the addresses
            are the proxy's. See docs/lab.md.
        pcap_tls: with ``pcap`` and ``wss://``, capture the TLS records as
            sent plus the session keys (a Decryption Secrets Block), so
            Wireshark decrypts them, instead of the plaintext (default
            False). It sets ``keylog_filename`` on the ``ssl`` context if
            unset; the connection's ``remote_address`` is then empty.
            Direct connections only (proxy environment variables are
            ignored). ValueError without ``pcap`` or ``wss://``, or with
            ``proxy``, ``unix`` or ``sock``. See docs/lab.md.
        **kwargs: passed to ``loop.create_connection()`` (e.g. ``sock``,
            ``local_addr``, ``family``; through an HTTP proxy they apply to
            the connection to the proxy), or ``loop.create_unix_connection()``
            with ``unix=True`` (then ``path`` is required).

    Reconnection: ``async for ws in connect(uri)`` yields an open connection;
    when your loop body is done with it (typically after ``ConnectionClosed``)
    the next iteration waits the first delay of a fresh ``reconnect_delays()``
    and connects again. A failed attempt goes to ``process_exception``: fatal,
    it is raised out of the loop; else the next delay is waited and the
    attempt repeated. Each retry logs one INFO line on ``logger``.

    The ``uri`` attribute (a ``WebSocketURI``) is where each attempt starts;
    ``process_exception`` may set it to fail over to another server.

    Raises:
        InvalidURI: ``uri`` isn't a valid WebSocket URI.
        InvalidProxy: ``proxy`` (or the environment's) isn't a valid proxy URL.
        OSError: TCP to the server or the proxy failed.
        ProxyError: the proxy refused (``InvalidProxyStatus``, e.g. 407) or
            answered nonsense (``InvalidProxyMessage``).
        InvalidHandshake: the opening handshake failed (``InvalidStatus`` for
            a refusal, ``InvalidRedirect`` for a redirect not followed).
        TimeoutError: ``open_timeout`` ran out.
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
        user_agent_header: str | None = USER_AGENT,
        proxy: str | Literal[True] | None = True,
        proxy_ssl: ssl_module.SSLContext | None = None,
        proxy_server_hostname: str | None = None,
        max_redirects: int = MAX_REDIRECTS,
        process_exception: Callable[[Exception], Exception | None] = process_exception,
        reconnect_delays: Callable[[], Iterator[float]] = backoff,
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
        pcap: Pcap | None = None,
        pcap_tls: bool = False,
        **kwargs: Any,
    ) -> None:
        self.uri = parse_uri(uri)
        # Checked here, not when the factory runs after TCP connected.
        check_close_timeout(close_timeout)
        Redirects(self.uri, max_redirects=max_redirects)
        if ssl is not None and not self.uri.secure:
            raise InvalidURI(uri, "ssl= was given for a ws:// URI; use wss://")
        self.ssl = ssl
        self.server_hostname = server_hostname
        if isinstance(proxy, str):
            if unix or not _DIRECT.isdisjoint(kwargs):
                raise ValueError("proxy= can't be used with unix=True, sock=, host= or port=")
            self._check_proxy_ssl(parse_proxy(proxy), proxy_ssl)
        self.proxy = proxy
        self.proxy_ssl = proxy_ssl
        self.proxy_server_hostname = proxy_server_hostname
        self.max_redirects = max_redirects
        self.process_exception = process_exception
        self.reconnect_delays = reconnect_delays
        self.open_timeout = open_timeout
        self.additional_headers = additional_headers
        self.user_agent_header = user_agent_header
        self.logger = logger or logging.getLogger("ws13.client")
        self.unix = unix
        self.kwargs = kwargs
        # Opened now: an unwritable path fails here, not after TCP connected.
        self.pcap = None if pcap is None else open_pcap(pcap)
        if pcap_tls and (pcap is None or not self.uri.secure):
            raise ValueError("pcap_tls=True needs pcap= and a wss:// URI")
        if pcap_tls and (unix or "sock" in kwargs or isinstance(proxy, str)):
            raise ValueError("pcap_tls=True can't be used with proxy=, unix=True or sock=")
        self.pcap_tls = pcap_tls
        self._keylog: KeyLog | None = None
        self.connection: ClientConnection | None = None
        self._default_ssl: ssl_module.SSLContext | None = None
        if compression == "deflate":
            extensions = enable_client_permessage_deflate(extensions)
        elif compression is not None:
            raise ValueError(f"unsupported compression: {compression!r}; use 'deflate' or None")

        def factory(
            uri: WebSocketURI, headers: Iterable[tuple[str, str]] | None
        ) -> ClientConnection:
            protocol = ClientProtocol(
                uri,
                origin=origin,
                subprotocols=subprotocols,
                extensions=extensions,
                max_size=max_size,
                logger=logger,
            )
            return ClientConnection(
                protocol,
                additional_headers=headers,
                user_agent=user_agent_header,
                keepalive=None if ping_interval is None else Keepalive(ping_interval, ping_timeout),
                closing=closing_deadlines(close_timeout),
                idle=idle_deadlines(),
                max_queue=max_queue,
                write_limit=write_limit,
            )

        #: Makes the ``ClientConnection`` of each attempt, for ``uri`` with
        #: these request headers; wrap it to watch or adjust every connection.
        self.factory: Callable[
            [WebSocketURI, Iterable[tuple[str, str]] | None], ClientConnection
        ] = factory

    @staticmethod
    def _check_proxy_ssl(proxy: Proxy, proxy_ssl: ssl_module.SSLContext | None) -> None:
        if proxy_ssl is not None and proxy.scheme != "https":
            raise ValueError(f"proxy_ssl= was given for the proxy {proxy}; use https://")

    def _ssl_for(self, uri: WebSocketURI) -> ssl_module.SSLContext | None:
        if not uri.secure:
            return None
        if self.ssl is not None:
            return self.ssl
        if self._default_ssl is None:
            self._default_ssl = ssl_module.create_default_context()
        return self._default_ssl

    def _proxy_for(self, uri: WebSocketURI) -> Proxy | None:
        if self.unix or not _DIRECT.isdisjoint(self.kwargs) or self.proxy is None:
            return None
        url = get_proxy(uri) if self.proxy is True else self.proxy
        if url is None:
            return None
        proxy = parse_proxy(url)
        self._check_proxy_ssl(proxy, self.proxy_ssl)
        return proxy

    async def _open(
        self, uri: WebSocketURI, headers: Iterable[tuple[str, str]] | None
    ) -> ClientConnection:
        """TCP (through the proxy, if any) and TLS to ``uri``; the handshake is sent."""
        loop = asyncio.get_running_loop()
        ssl = self._ssl_for(uri)
        hostname = (self.server_hostname or uri.host) if ssl is not None else None

        def make() -> ClientConnection:
            return self.factory(uri, headers)

        factory: Callable[[], ClientConnection | TapProtocol[ClientConnection]] = make
        if self.pcap is not None:
            factory = tap(make, self.pcap, client=True)
        if self.unix:
            _, connection = await loop.create_unix_connection(
                factory, ssl=ssl, server_hostname=hostname, **self.kwargs
            )
            return untap(connection)
        proxy = None if self.pcap_tls else self._proxy_for(uri)
        if proxy is None:
            kwargs = dict(self.kwargs)
            if "sock" not in kwargs:
                kwargs.setdefault("host", uri.host)
                kwargs.setdefault("port", uri.port)
            if self.pcap is not None and self.pcap_tls and ssl is not None:
                if self._keylog is None:
                    self._keylog = KeyLog(ssl)
                return await open_relayed(
                    make, self.pcap, self._keylog, ssl=ssl, server_hostname=hostname, **kwargs
                )
            _, connection = await loop.create_connection(
                factory, ssl=ssl, server_hostname=hostname, **kwargs
            )
            return untap(connection)
        self.logger.debug("connecting to %s through the proxy %s", uri, proxy)
        if proxy.is_socks:
            sock = await connect_socks_proxy(
                proxy,
                uri,
                handshake_timeout=self.open_timeout,
                local_addr=self.kwargs.get("local_addr"),
            )
            try:
                _, connection = await loop.create_connection(
                    factory, sock=sock, ssl=ssl, server_hostname=hostname
                )
            except BaseException:
                sock.close()
                raise
            return untap(connection)
        proxy_ssl = self.proxy_ssl
        if proxy.scheme == "https" and proxy_ssl is None:
            proxy_ssl = ssl_module.create_default_context()
        transport = await connect_http_proxy(
            proxy,
            uri,
            user_agent_header=self.user_agent_header,
            ssl=proxy_ssl,
            server_hostname=self.proxy_server_hostname,
            **self.kwargs,
        )
        protocol = factory()
        try:
            if ssl is not None:
                # TLS to the server inside the tunnel (inside TLS to an
                # https:// proxy: asyncio's start_tls nests them).
                tls = await loop.start_tls(transport, protocol, ssl, server_hostname=hostname)
                assert tls is not None
                transport = tls
            else:
                transport.set_protocol(protocol)
            protocol.connection_made(transport)
            transport.resume_reading()
        except BaseException:
            transport.abort()
            raise
        return untap(protocol)

    def _check_redirect(self, redirects: Redirects, response: Response) -> None:
        """Refuse what can't be followed with this connection's settings."""
        if "sock" in self.kwargs:
            raise InvalidRedirect(response, "can't open a new connection on the sock= given")
        if not same_origin(self.uri, redirects.uri) and (
            self.unix or "host" in self.kwargs or "port" in self.kwargs
        ):
            raise InvalidRedirect(
                response,
                f"won't follow a redirect to {redirects.uri} with unix=True, host= or port=",
            )

    async def connect(self) -> ClientConnection:
        """One connection, redirects followed: what ``await connect(...)`` does.

        The reconnecting loop calls it for each attempt; a subclass may wrap it.
        """
        redirects = Redirects(self.uri, max_redirects=self.max_redirects)
        headers = self.additional_headers
        try:
            async with asyncio.timeout(self.open_timeout):
                while True:
                    connection = await self._open(redirects.uri, headers)
                    try:
                        await connection._handshake
                    except InvalidStatus as exc:
                        _abort(connection)
                        response = exc.response
                        if response is None or not is_redirect(response):
                            raise
                        new = redirects.follow(response)
                        self._check_redirect(redirects, response)
                        self.logger.info("redirected (HTTP %d) to %s", exc.status, new)
                        if redirects.left_origin and headers is not None:
                            headers = strip_credentials(headers)
                    except BaseException:
                        _abort(connection)
                        raise
                    else:
                        return connection
        except TimeoutError as exc:
            limit = "" if self.open_timeout is None else f" (open_timeout={self.open_timeout:g} s)"
            raise TimeoutError(f"timed out opening a connection to {redirects.uri}{limit}") from exc

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self.connect().__await__()

    async def __aenter__(self) -> ClientConnection:
        self.connection = await self.connect()
        return self.connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self.connection is not None
        await self.connection.close(CloseCode.NORMAL_CLOSURE)

    async def __aiter__(self) -> AsyncGenerator[ClientConnection, None]:
        delays: Iterator[float] | None = None
        while True:
            try:
                async with self as connection:
                    yield connection
            except Exception as exc:
                try:
                    fatal = self.process_exception(exc)
                except Exception as raised:
                    # Raising instead of returning is a common slip; honour it.
                    fatal = raised
                if fatal is exc:
                    raise
                if fatal is not None:
                    raise fatal from exc
                if delays is None:
                    delays = iter(self.reconnect_delays())
                delay = next(delays)
                self.logger.info(
                    "connecting to %s failed: %s; retrying in %.1f s",
                    self.uri,
                    _describe(exc),
                    delay,
                )
            else:
                # RFC 6455 section 7.2.3: after a connection ends, wait a
                # random while before reconnecting, lest every client of a
                # restarted server come back at once. A fresh series of
                # delays: the connection worked.
                delays = iter(self.reconnect_delays())
                delay = next(delays)
                code = connection.close_code
                self.logger.info(
                    "connection to %s closed (%s); reconnecting in %.1f s", self.uri, code, delay
                )
            await asyncio.sleep(delay)


#: Keyword arguments that say where TCP goes: no proxy then.
_DIRECT = frozenset({"sock", "host", "port"})


def _abort(connection: ClientConnection) -> None:
    if connection.transport is not None:
        connection.transport.abort()


def _describe(exc: Exception) -> str:
    return "".join(traceback.format_exception_only(exc)).strip().replace("\n", " ")


def unix_connect(path: str, uri: str = "ws://localhost/", **kwargs: Any) -> connect:
    """Open a WebSocket connection over the Unix socket at ``path``.

    ``uri`` gives the Host header and request path. Other arguments are those
    of ``connect()``.
    """
    return connect(uri, unix=True, path=path, **kwargs)
