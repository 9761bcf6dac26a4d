"""The threaded client: ``connect()`` and ``unix_connect()``.

``connect()`` opens the socket (TCP or Unix, with TLS for ``wss://``), does
the opening handshake in the calling thread within ``open_timeout``, and
returns a ``ClientConnection`` whose reader thread then runs until the
connection closes.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl as ssl_module
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, cast

from ..client import ClientProtocol, backoff, process_exception
from ..exceptions import InvalidStatus, InvalidURI
from ..extensions.base import ClientExtensionFactory
from ..extensions.permessage_deflate import enable_client_permessage_deflate
from ..headers import Headers
from ..proxy import get_proxy, parse_proxy
from ..redirects import MAX_REDIRECTS, Redirects, is_redirect, strip_credentials
from ..uri import WebSocketURI, parse_uri
from ..version import USER_AGENT
from .connection import Connection, MaxQueue
from .proxies import TLSInTLS, open_proxy_socket

__all__ = ["ClientConnection", "connect", "reconnect", "unix_connect"]

#: ``additional_headers``: ``Headers``, a mapping, or (name, value) pairs.
HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]]


class ClientConnection(Connection):
    """A client connection; ``connect()`` returns one once the handshake succeeded.

    The arguments after ``protocol`` are those of ``Connection``.
    """

    protocol: ClientProtocol

    def __init__(self, sock: socket.socket, protocol: ClientProtocol, **kwargs: Any) -> None:
        super().__init__(sock, protocol, **kwargs)

    def handshake(
        self,
        additional_headers: HeadersLike | None = None,
        user_agent_header: str | None = USER_AGENT,
        deadline: float | None = None,
    ) -> None:
        """Send the opening handshake request and read the response until
        ``deadline`` (``time.monotonic()`` seconds; ``None``: no limit).

        Raises InvalidHandshake (InvalidStatus with the response for a
        status other than 101), InvalidMessage if the server closed the
        connection first, TimeoutError at the deadline.
        """
        protocol = self.protocol
        headers: Iterable[tuple[str, str]] | None = None
        if isinstance(additional_headers, (Headers, Mapping)):
            headers = list(additional_headers.items())
        elif additional_headers is not None:
            headers = additional_headers
        protocol.send_request(protocol.connect(headers, user_agent_header))
        self._write(protocol.data_to_send())
        events = self._read_handshake(deadline)
        if protocol.handshake_exc is not None:
            raise protocol.handshake_exc
        # The first event is the Response; messages may have come with it.
        self._start(events[1:])


def connect(
    uri: str,
    *,
    sock: socket.socket | None = None,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    origin: str | None = None,
    extensions: Sequence[ClientExtensionFactory] | None = None,
    subprotocols: Sequence[str] | None = None,
    compression: str | None = "deflate",
    additional_headers: HeadersLike | None = None,
    user_agent_header: str | None = USER_AGENT,
    proxy: str | Literal[True] | None = True,
    proxy_ssl: ssl_module.SSLContext | None = None,
    proxy_server_hostname: str | None = None,
    max_redirects: int = MAX_REDIRECTS,
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    max_size: int | None = 2**20,
    max_queue: MaxQueue = 16,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    create_connection: type[ClientConnection] | None = None,
    **kwargs: Any,
) -> ClientConnection:
    """Open a WebSocket connection to ``uri``; return it once the handshake succeeded.

    Use it as ``with connect(uri) as ws: ...`` (closing the connection with
    1000 on exit, 1011 if the block raised) or ``ws = connect(uri)`` and
    ``ws.close()`` when done.

    Args:
        uri: ``ws://`` or ``wss://`` URI; ``user:password@`` becomes a Basic
            ``Authorization`` header.
        sock: an already connected socket to use instead of opening one
            (then ``proxy`` is ignored and redirects aren't followed).
        ssl: an ``ssl.SSLContext`` for ``wss://`` (default: the system's
            trusted CAs with hostname checks); refused with ``ws://``.
        server_hostname: the TLS SNI and hostname to check, if not the URI's host.
        origin: the ``Origin`` header, if any.
        extensions: extension factories to offer, e.g. a tuned
            ``ClientPerMessageDeflateFactory(...)``.
        subprotocols: subprotocols to offer, in order of preference.
        compression: ``"deflate"`` (the default) offers permessage-deflate
            (RFC 7692) with default settings; ``None`` turns it off.
        additional_headers: extra request headers: ``Headers``, a mapping or
            (name, value) pairs.
        user_agent_header: the ``User-Agent`` header (``ws13/<version>``),
            ``None`` for none; also sent to an HTTP proxy.
        proxy: ``True`` (the default) uses the proxy the environment
            configures (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``,
            ``NO_PROXY``... as urllib reads them; see ``ws13.proxy.get_proxy``);
            a URL (``http://``, ``https://``, ``socks5h://``, ``socks5://``,
            ``socks4a://``, ``socks4://``, with ``user:password@`` for
            authentication) uses that proxy; ``None`` connects directly.
            SOCKS needs python-socks (``pip install 'ws13[proxy]'``).
        proxy_ssl: the ``ssl.SSLContext`` for TLS to an ``https://`` proxy
            (default: the system's trusted CAs).
        proxy_server_hostname: the TLS name to check for the proxy, if not its host.
        max_redirects: redirects (301, 302, 303, 307, 308) followed on the
            handshake (10); 0 follows none. Never from ``wss://`` to
            ``ws://``; credentials don't follow to another origin.
        open_timeout: seconds for TCP, the proxy, TLS, redirects and the
            opening handshake, all together (10); ``None`` waits without limit.
        ping_interval, ping_timeout, close_timeout, max_queue: see
            ``Connection`` (20, 20, 10, 16).
        max_size: the largest message accepted, in bytes (1 MiB); a larger
            one closes the connection with 1009. ``None`` lifts it.
        logger: logger to use (default ``ws13.client``).
        create_connection: the ``ClientConnection`` subclass to build.
        **kwargs: passed to ``socket.create_connection()``, e.g.
            ``source_address``, or ``address=(host, port)`` to connect
            elsewhere than the URI says (Host, TLS name and path stay the
            URI's; not for a redirect's new URI).

    Raises:
        InvalidURI: ``uri`` can't be used.
        InvalidProxy: ``proxy`` can't be used.
        OSError: the TCP connection or TLS failed.
        ProxyError: the proxy refused (InvalidProxyStatus holds its
            response) or answered nonsense (InvalidProxyMessage).
        InvalidHandshake: the server refused the handshake (InvalidStatus
            holds its response; InvalidRedirect, a redirect not followed).
        TimeoutError: ``open_timeout`` passed.
    """
    wsuri = parse_uri(uri)
    if ssl is not None and not wsuri.secure:
        raise InvalidURI(uri, "ssl= was given for a ws:// URI; use wss://")
    if compression == "deflate":
        extensions = enable_client_permessage_deflate(extensions)
    elif compression is not None:
        raise ValueError(f"unsupported compression: {compression!r}; use 'deflate' or None")
    if open_timeout is not None and not open_timeout > 0:
        raise ValueError(f"open_timeout must be positive (or None), not {open_timeout}")
    if isinstance(proxy, str):
        parse_proxy(proxy)  # an InvalidProxy now, not after a redirect
    deadline = None if open_timeout is None else time.monotonic() + open_timeout
    unix: bool = kwargs.pop("unix", False)
    path: str | os.PathLike[str] | None = kwargs.pop("path", None)
    headers: list[tuple[str, str]] | None = None
    if isinstance(additional_headers, (Headers, Mapping)):
        headers = list(additional_headers.items())
    elif additional_headers is not None:
        headers = list(additional_headers)
    redirects = Redirects(wsuri, max_redirects=max_redirects)
    options: dict[str, Any] = {
        "ping_interval": ping_interval,
        "ping_timeout": ping_timeout,
        "close_timeout": close_timeout,
        "max_queue": max_queue,
    }
    while True:
        target = redirects.uri
        if sock is not None:
            opened = sock
        elif unix:
            opened = _unix_socket(path, deadline)
        else:
            opened = _open_socket(
                target,
                proxy,
                deadline,
                kwargs,
                user_agent_header=user_agent_header,
                proxy_ssl=proxy_ssl,
                proxy_server_hostname=proxy_server_hostname,
            )
            kwargs.pop("address", None)  # the first URI's only
        # wrap_socket() detaches `opened`: `current` is what to close.
        current = opened
        try:
            current = _start_tls(opened, target, ssl, server_hostname, deadline)
            protocol = ClientProtocol(
                target,
                origin=origin,
                subprotocols=subprotocols,
                extensions=extensions,
                max_size=max_size,
                logger=logger,
            )
            connection = (create_connection or ClientConnection)(current, protocol, **options)
            connection.handshake(headers, user_agent_header, deadline)
        except InvalidStatus as exc:
            current.close()
            response = exc.response
            if sock is not None or unix or response is None or not is_redirect(response):
                raise
            target = redirects.follow(response)
            if redirects.left_origin and headers is not None:
                headers = strip_credentials(headers)
            protocol.logger.info("redirected (%d) to %s", response.status_code, target)
            continue
        except BaseException:
            current.close()
            raise
        return connection


class reconnect:
    """Yield a connection to ``uri``, then a new one after each ends; retry failures.

    ::

        for ws in reconnect("wss://example.com/feed"):
            try:
                for message in ws:
                    handle(message)
            except ConnectionClosed:
                continue  # reconnects

    Each connection is closed when the loop's body is done with it; the next
    one is opened right away. A connection attempt that fails is retried
    after the next of ``reconnect_delays()`` (default ``ws13.client.backoff``:
    a random delay up to 5 s, then 3.1 s growing 1.618 times up to 90 s),
    logging a line at INFO per attempt, unless ``process_exception(exc)``
    (default ``ws13.client.process_exception``: network errors, timeouts,
    HTTP 500, 502, 503, 504 are retried) returns an exception: then that is
    raised and the loop ends. The delays start over after a success. The
    other arguments are those of ``connect()``; ``sock`` can't be reused.
    """

    def __init__(
        self,
        uri: str,
        *,
        process_exception: Callable[[Exception], Exception | None] = process_exception,
        reconnect_delays: Callable[[], Iterator[float]] = backoff,
        **kwargs: Any,
    ) -> None:
        if "sock" in kwargs:
            raise TypeError("reconnect() opens a new socket each time: sock= can't be used")
        parse_uri(uri)  # an InvalidURI now, not at the first attempt
        self.uri = uri
        self.process_exception = process_exception
        self.reconnect_delays = reconnect_delays
        self.kwargs = kwargs
        self.logger = kwargs.get("logger") or logging.getLogger("ws13.client")

    def __iter__(self) -> Iterator[ClientConnection]:
        delays: Iterator[float] | None = None
        while True:
            try:
                connection = connect(self.uri, **self.kwargs)
            except Exception as exc:
                fatal = self.process_exception(exc)
                if fatal is exc:
                    raise
                if fatal is not None:
                    raise fatal from exc
                if delays is None:
                    delays = self.reconnect_delays()
                delay = next(delays)
                self.logger.info("connect failed; reconnecting in %.1f seconds: %s", delay, exc)
                time.sleep(delay)
                continue
            delays = None
            try:
                yield connection
            finally:
                # Also when the loop ends (break, return, an exception): its
                # body's exceptions never come in here, so always 1000.
                connection.close()


def unix_connect(
    path: str | os.PathLike[str] | None = None, uri: str | None = None, **kwargs: Any
) -> ClientConnection:
    """Open a WebSocket connection over the Unix socket at ``path``.

    ``uri`` gives the Host header and request path (default
    ``ws://localhost/``, or ``wss://localhost/`` with ``ssl``). Other
    arguments are those of ``connect()``.
    """
    if uri is None:
        uri = "wss://localhost/" if kwargs.get("ssl") is not None else "ws://localhost/"
    return connect(uri, unix=True, path=path, **kwargs)


def _open_socket(
    uri: WebSocketURI,
    proxy: str | Literal[True] | None,
    deadline: float | None,
    kwargs: dict[str, Any],
    **proxy_options: Any,
) -> socket.socket:
    """A TCP connection to ``uri``'s host and port, through a proxy if any."""
    if proxy is True:
        proxy = get_proxy(uri)
    if proxy is None:
        options = dict(kwargs)
        options.setdefault("address", (uri.host, uri.port))
        options.setdefault("timeout", _remaining(deadline))
        return socket.create_connection(**options)
    return open_proxy_socket(
        parse_proxy(proxy),
        uri,
        lambda: _remaining(deadline),
        source_address=kwargs.get("source_address"),
        **proxy_options,
    )


def _start_tls(
    sock: socket.socket,
    uri: WebSocketURI,
    ssl: ssl_module.SSLContext | None,
    server_hostname: str | None,
    deadline: float | None,
) -> socket.socket:
    """TCP_NODELAY, and TLS for ``wss://`` (inside the proxy's TLS if need be)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # Frames go out whole: don't let Nagle's algorithm hold them back.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    if uri.secure:
        context = ssl or ssl_module.create_default_context()
        hostname = server_hostname or uri.host
        sock.settimeout(_remaining(deadline))
        if isinstance(sock, ssl_module.SSLSocket):
            # An https:// proxy's tunnel: TLS to the server inside it.
            sock = cast(socket.socket, TLSInTLS(sock, context, hostname))
        else:
            sock = context.wrap_socket(sock, server_hostname=hostname)
    sock.settimeout(None)
    return sock


def _remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline``; TimeoutError once it passed."""
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out while opening the connection")
    return remaining


def _unix_socket(path: str | os.PathLike[str] | None, deadline: float | None) -> socket.socket:
    if path is None:
        raise ValueError("unix_connect() needs the path of the socket (or sock=)")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(_remaining(deadline))
        sock.connect(os.fspath(path))
    except BaseException:
        sock.close()
        raise
    return sock
