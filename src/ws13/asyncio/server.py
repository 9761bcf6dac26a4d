"""The asyncio server: ``serve()``, ``unix_serve()`` and ``Server``."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Generator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..exceptions import ConnectionClosed
from ..extensions.base import ServerExtensionFactory
from ..extensions.permessage_deflate import enable_server_permessage_deflate
from ..frames import CloseCode
from ..http11 import Request, Response
from ..protocol import CLOSED, CONNECTING, OPEN
from ..server import ServerProtocol, connection_selector
from ..version import USER_AGENT
from .accepting import Acceptor
from .auth import basic_auth
from .broadcast import broadcast
from .capture import Pcap, open_pcap, tap
from .connection import Connection, closing_deadlines, idle_deadlines
from .limits import RETRY_AFTER, Limits
from .timers import Deadlines, Keepalive
from .tlscapture import KeyLog, relayed

if TYPE_CHECKING:
    from ..metrics import Metrics

# basic_auth and broadcast live in their own modules; websockets has them here.
__all__ = ["Server", "ServerConnection", "basic_auth", "broadcast", "serve", "unix_serve"]

Handler = Callable[["ServerConnection"], Awaitable[None]]
#: ``select_subprotocol(connection, offered)`` returns one of ``offered``, or
#: None for no subprotocol (websockets' signature).
SelectSubprotocol = Callable[["ServerConnection", Sequence[str]], "str | None"]
#: ``process_request(connection, request)`` returns None to go on with the
#: WebSocket handshake, or a Response (e.g. ``connection.respond(200, "OK")``)
#: to answer plain HTTP instead. It may be a coroutine function.
ProcessRequest = Callable[
    ["ServerConnection", Request], "Response | Awaitable[Response | None] | None"
]
#: ``process_response(connection, request, response)`` runs once the answer to
#: the handshake is built (the 101, a refusal, or what ``process_request``
#: returned) and before it is sent: it may change ``response`` in place
#: (e.g. add a header) and return None, or return another Response to send
#: instead. It may be a coroutine function. If it raises, the client gets 500.
ProcessResponse = Callable[
    ["ServerConnection", Request, Response], "Response | Awaitable[Response | None] | None"
]


class ServerConnection(Connection):
    """A connection accepted by a ``Server``; the argument of the handler.

    Attributes:
        server: the ``Server`` that accepted it.
        username: the user ``basic_auth()`` let in; ``None`` without it.
    """

    __slots__ = ("handler_task", "limit_address", "server", "username")

    protocol: ServerProtocol

    def __init__(self, protocol: ServerProtocol, server: Server, **kwargs: Any) -> None:
        super().__init__(protocol, **kwargs)
        self.server = server
        self.handler_task: asyncio.Future[None] | None = None
        self.username: str | None = None
        #: The source address holding a slot of ``Server.limits``, if any.
        self.limit_address: str | None = None

    def respond(self, status: int, text: str) -> Response:
        """Build a plain-text HTTP response, for ``process_request`` to return."""
        return self.protocol.reject(status, text)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.connections.add(self)
        if self.server.opening is not None:
            self.server.opening.add(self)
        if self.server.metrics is not None:
            self.server.metrics.connection_opened(self)

    def _open_timed_out(self) -> None:
        if self.protocol.state is CONNECTING and self.transport is not None:
            if self.debug:
                self.logger.debug("! opening handshake timed out")
            if self.server.metrics is not None:
                self.server.metrics.open_timeout()
            self.transport.abort()

    def _keepalive_timed_out(self) -> None:
        if self.server.metrics is not None:
            self.server.metrics.keepalive_timeout()
        super()._keepalive_timed_out()

    def _source(self) -> str:
        """The peer's address for ``Limits``: its IP, or "" on a Unix socket."""
        peer = self.remote_address
        return str(peer[0]) if isinstance(peer, tuple) else ""

    def _refuse(self, status: int, text: str, retry_after: int) -> Response:
        response = self.respond(status, text)
        response.headers["Retry-After"] = str(retry_after)
        return response

    def _handle_handshake(self, event: Request | Response) -> None:
        assert isinstance(event, Request)
        limits = self.server.limits
        if limits is not None and limits.rate is not None:
            wait = limits.wait_before_request(self._source())
            if wait is not None:
                self.logger.info("handshake refused: over max_handshake_rate")
                self._process_response(
                    event, self._refuse(429, "Too Many Requests: slow down\n", wait)
                )
                return
        process_request = self.server.process_request
        if process_request is None:
            self._process_response(event, None)
            return
        try:
            result = process_request(self, event)
        except Exception:
            self._process_response(event, self._hook_failed("process_request"))
            return
        if inspect.isawaitable(result):
            self.loop.create_task(self._await_process_request(event, result))
        else:
            self._process_response(event, result)

    def _hook_failed(self, name: str) -> Response:
        """Log the exception a hook raised; answer 500 instead."""
        self.logger.error("%s failed", name, exc_info=True, extra={"websocket": self})
        return self.respond(500, "Internal Server Error\n")

    async def _await_process_request(
        self, request: Request, result: Awaitable[Response | None]
    ) -> None:
        try:
            response = await result
        except Exception:
            response = self._hook_failed("process_request")
        if self.transport is not None:
            self._process_response(request, response)

    def _process_response(self, request: Request, response: Response | None) -> None:
        """Build the answer (101 unless ``process_request`` gave one), let
        ``process_response`` see or replace it, then send it."""
        limits = self.server.limits
        if response is None and limits is not None:
            source = self._source()
            if limits.admit(source):
                self.limit_address = source
            else:
                self.logger.info("handshake refused: too many connections")
                response = self._refuse(
                    503, "Service Unavailable: too many connections\n", RETRY_AFTER
                )
        if response is None:
            response = self.protocol.accept(request)
            if self.protocol.handshake_exc is not None:
                self.logger.info(
                    "opening handshake failed: %s",
                    self.protocol.handshake_exc,
                    extra={"websocket": self},
                )
        process_response = self.server.process_response
        if process_response is not None:
            try:
                result = process_response(self, request, response)
            except Exception:
                result = self._hook_failed("process_response")
            if inspect.isawaitable(result):
                self.loop.create_task(self._await_process_response(response, result))
                return
            if result is not None:
                response = result
        self._finish_handshake(response)

    async def _await_process_response(
        self, response: Response, result: Awaitable[Response | None]
    ) -> None:
        try:
            replacement = await result
        except Exception:
            replacement = self._hook_failed("process_response")
        if self.transport is not None:
            self._finish_handshake(response if replacement is None else replacement)

    def _finish_handshake(self, response: Response) -> None:
        protocol = self.protocol
        protocol.send_response(response)
        # The handshake is over: a select_subprotocol closure (over this
        # connection, about 200 bytes) has nothing more to choose.
        protocol.select_subprotocol = None
        if self.server.opening is not None:
            self.server.opening.discard(self)
        if self.protocol.state is OPEN:
            self._start_keepalive()
            self._start_handler()
        self._received()

    def _start_handler(self) -> None:
        """Run the handler as the task itself, with a done callback where a
        wrapper coroutine would wait for it (that coroutine cost about 200
        bytes per connection, for as long as the connection lived)."""
        try:
            awaitable = self.server.handler(self)
        except Exception as exc:
            self._handler_raised(exc)
            return
        task = asyncio.ensure_future(awaitable, loop=self.loop)
        task.add_done_callback(self._handler_done, context=self.server._done_context)
        self.handler_task = task

    def _handler_done(self, task: asyncio.Future[None]) -> None:
        # The task keeps the traceback of what the handler raised (its
        # frames refer to this connection): let it go, no cycle is left for
        # the garbage collector. A done handler needs no waiting at shutdown.
        self.handler_task = None
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, ConnectionClosed):
            # The connection's queue may keep this exception: without its
            # traceback (the handler's frames, which refer to the connection)
            # there is no reference cycle for the garbage collector to free.
            exc.__traceback__ = None
        elif exc is not None:
            self._handler_raised(exc)
            return
        if self.protocol.state is not CLOSED:
            self._start_closing()
        # else both Close frames are exchanged and the server already closes
        # TCP (section 7.1.1): nothing to wait for.

    def _handler_raised(self, exc: BaseException) -> None:
        self.logger.error("connection handler failed", exc_info=exc, extra={"websocket": self})
        self._start_closing(CloseCode.INTERNAL_ERROR)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.protocol.handshake_exc is not None and self.protocol.request is None:
            # A malformed request: the core answered 4xx and closed.
            self.logger.info(
                "opening handshake failed: %s",
                self.protocol.handshake_exc,
                extra={"websocket": self},
            )
        server = self.server
        if server.opening is not None:
            server.opening.discard(self)
        server.connections.discard(self)
        if self.limit_address is not None:
            assert server.limits is not None
            server.limits.release(self.limit_address)
            self.limit_address = None
        if server.acceptor is not None:
            server.acceptor.connection_closed()
        if server.metrics is not None:
            server.metrics.connection_closed(self)


class Server:
    """A WebSocket server; ``serve()`` makes one.

    Attributes:
        connections: the open connections (including those in the handshake).
        server: the underlying ``asyncio.Server``: it owns the listening
            sockets, but the ``Acceptor`` accepts on them (see ``accepting``).
        acceptor: the accept loop, which pauses when file descriptors run out.
        limits: the connection and handshake-rate ``Limits``, if any is set.
        metrics: the ``ws13.metrics.Metrics`` its connections report to, if any.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        open_timeout: float | None = 10,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        metrics: Metrics | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.handler = handler
        self.metrics = metrics
        self.limits = limits
        self.process_request = process_request
        self.process_response = process_response
        self.open_timeout = open_timeout
        #: Connections still in the opening handshake, each aborted after
        #: ``open_timeout``: one loop timer for all of them.
        self.opening: Deadlines[ServerConnection] | None = (
            None
            if open_timeout is None
            else Deadlines(open_timeout, ServerConnection._open_timed_out)
        )
        self.logger = logger or logging.getLogger("ws13.server")
        self.connections: set[ServerConnection] = set()
        self.server: asyncio.Server | None = None
        self.acceptor: Acceptor | None = None
        #: Accepted sockets becoming connections (a TLS handshake, or a few
        #: loop callbacks without TLS).
        self.connecting: set[asyncio.Task[Any]] = set()
        self._close_task: asyncio.Task[None] | None = None
        #: Where the handlers' done callbacks run: one context for all, not
        #: a copy per connection (64 bytes each, for the connection's life).
        self._done_context = contextvars.copy_context()
        #: Done when close() starts: what serve_forever() waits for.
        self._stopping: asyncio.Future[None] | None = None

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        assert self.server is not None
        return tuple(self.server.sockets)

    @property
    def port(self) -> int:
        """The port of the first listening TCP socket (useful with port 0)."""
        return int(self.sockets[0].getsockname()[1])

    def close(self, code: int = CloseCode.GOING_AWAY, timeout: float | None = 10) -> None:
        """Stop accepting connections and close every open one with ``code`` (1001).

        Handlers get up to ``timeout`` seconds to finish; ``wait_closed()``
        waits for all of it.
        """
        if self._close_task is None:
            self._close_task = asyncio.get_running_loop().create_task(self._close(code, timeout))
            if self._stopping is not None and not self._stopping.done():
                self._stopping.set_result(None)

    async def _close(self, code: int, grace: float | None) -> None:
        assert self.server is not None
        if self.acceptor is not None:
            self.acceptor.close()
        for task in list(self.connecting):
            task.cancel()
        self.server.close()
        connections = list(self.connections)
        for connection in connections:
            if connection.protocol.state is CONNECTING and connection.transport is not None:
                connection.transport.close()
        # close() on a connection already closing just waits for its TCP
        # close: the grace period covers those too (a handler may have
        # returned while its connection's last bytes still drain).
        closing = [
            asyncio.ensure_future(c.close(code, "server shutting down"))
            for c in connections
            if c.protocol.state is not CONNECTING and not c._lost
        ]
        tasks = [c.handler_task for c in connections if c.handler_task is not None]
        pending: list[asyncio.Future[Any]] = [t for t in [*closing, *tasks] if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for waiting in still:
                waiting.cancel()
            if still:
                self.logger.warning("%d connection handler(s) cancelled at shutdown", len(still))
                await asyncio.wait(still, timeout=1)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        await self.server.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until ``close()`` has finished."""
        if self._close_task is not None:
            await asyncio.shield(self._close_task)
        elif self.server is not None:
            await self.server.wait_closed()

    async def serve_forever(self) -> None:
        """Serve until cancelled (then shut down gracefully) or closed."""
        assert self._stopping is not None
        # The Acceptor serves already: this only waits. Shielded so that
        # a cancellation leaves the future for close() to complete.
        try:
            await asyncio.shield(self._stopping)
        except asyncio.CancelledError:
            self.close()
            await self.wait_closed()
            raise

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()


class serve:
    """Start a WebSocket server on ``host`` and ``port``.

    Use it as ``server = await serve(handler, host, port)`` or
    ``async with serve(handler, host, port) as server: await server.serve_forever()``.
    ``handler(connection)`` runs for each connection; when it returns the
    connection is closed with 1000; if it raises, the error is logged and the
    connection closed with 1011.

    Args:
        handler: coroutine function taking a ``ServerConnection``.
        host, port: where to listen (``None`` host: all interfaces; port 0:
            any free port, see ``Server.port``).
        origins: acceptable Origin values (``None`` in the list: no Origin
            header); refused ones get 403. Default: any.
        subprotocols: subprotocols this server speaks, by preference.
        select_subprotocol: ``f(connection, offered) -> str | None`` to choose
            instead (websockets' signature; ``connection.request`` is the
            request); it must return one of ``offered``, or None.
        compression: ``"deflate"`` (the default) accepts permessage-deflate
            (RFC 7692) when the client offers it; ``None`` turns it off.
        extensions: extension factories, e.g. a tuned
            ``ServerPerMessageDeflateFactory(...)``.
        process_request: hook to answer plain HTTP; see ``ProcessRequest``.
        process_response: hook to see or replace the handshake's answer
            before it is sent; see ``ProcessResponse``.
        server_header: ``Server`` header (``None`` for none).
        open_timeout: seconds for the client to complete the handshake (10).
        ping_interval, ping_timeout, close_timeout, max_queue, write_limit:
            see ``Connection``.
        max_size: the largest message accepted (1 MiB); ``None`` lifts it.
        ssl: an ``ssl.SSLContext`` to serve ``wss://``.
        logger: logger to use (default ``ws13.server``).
        metrics: a ``ws13.metrics.Metrics`` (``ws13[metrics]``) to count this
            server's connections, handshakes, messages, bytes and closes in;
            ``None`` (the default) counts nothing but each connection's own
            counters (see ``Connection``). Serving them over HTTP is up to
            ``process_request``: see ``Metrics.mount()``.
        pcap: capture every connection to this pcapng file (a path, an open
            binary file or a ``ws13.pcap.PcapWriter``; a path is opened now:
            OSError if it can't be written). ``None`` (the default) captures
            nothing. See docs/lab.md.
        max_connections: WebSocket connections open at once (``None``, the
            default: no limit); one more gets 503 with ``Retry-After: 5``.
        max_connections_per_ip: the same per source address (``None``: no
            limit); also 503.
        max_handshake_rate: HTTP requests per second per source address, a
            token bucket with a one-second burst (``None``: no limit); one more
            gets 429 with ``Retry-After``. See ``ws13.asyncio.limits.Limits``.
        pcap_tls: with ``pcap`` and ``ssl``, capture the TLS records as
            sent plus the session keys (a Decryption Secrets Block), so
            Wireshark decrypts them, instead of the plaintext (default
            False). It sets ``keylog_filename`` on the ``ssl`` context if
            unset; the connections' ``remote_address`` is then empty.
            ValueError without ``pcap`` and ``ssl``, or with ``unix=True``.
        **kwargs: passed to ``loop.create_server()`` (``sock``, ``reuse_port``,
            ``backlog`` (100), ``ssl_handshake_timeout``...) or, with
            ``unix=True``, ``loop.create_unix_server()``.

    The server accepts connections itself (``ws13.asyncio.accepting``): when
    ``accept()`` fails for want of file descriptors (or memory) it logs one
    warning, stops accepting while open connections go on, and starts again
    when a connection closes or, at the latest, every 2 s.
    """

    def __init__(
        self,
        handler: Handler,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        origins: Sequence[str | None] | None = None,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: SelectSubprotocol | None = None,
        compression: str | None = "deflate",
        extensions: Sequence[ServerExtensionFactory] | None = None,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        server_header: str | None = USER_AGENT,
        open_timeout: float | None = 10,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_size: int | None = 2**20,
        max_queue: int | None = 16,
        write_limit: int = 2**16,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        metrics: Metrics | None = None,
        pcap: Pcap | None = None,
        max_connections: int | None = None,
        max_connections_per_ip: int | None = None,
        max_handshake_rate: float | None = None,
        pcap_tls: bool = False,
        unix: bool = False,
        **kwargs: Any,
    ) -> None:
        limits = None
        if (max_connections, max_connections_per_ip, max_handshake_rate) != (None, None, None):
            limits = Limits(max_connections, max_connections_per_ip, max_handshake_rate)
        if "start_serving" in kwargs:
            raise TypeError("serve() starts serving at once: start_serving is not supported")
        if pcap_tls and (pcap is None or kwargs.get("ssl") is None or unix):
            raise ValueError("pcap_tls=True needs pcap= and ssl=, and not unix=True")
        self.pcap = None if pcap is None else open_pcap(pcap)
        self.keylog = KeyLog(kwargs["ssl"]) if pcap_tls else None
        self.server = Server(
            handler,
            process_request=process_request,
            process_response=process_response,
            open_timeout=open_timeout,
            logger=logger,
            metrics=metrics,
            limits=limits,
        )
        if compression == "deflate":
            extensions = enable_server_permessage_deflate(extensions)
        elif compression is not None:
            raise ValueError(f"unsupported compression: {compression!r}; use 'deflate' or None")
        # Tuples, made once: ServerProtocol keeps a tuple as it is, so every
        # connection shares these instead of copying them.
        extensions = None if extensions is None else tuple(extensions)
        origins = None if origins is None else tuple(origins)
        subprotocols = None if subprotocols is None else tuple(subprotocols)
        self.host = host
        self.port = port
        self.unix = unix
        self.kwargs = kwargs
        server = self.server
        # One keepalive (two loop timers) for all the server's connections.
        keepalive: Keepalive[Connection] | None = (
            None if ping_interval is None else Keepalive(ping_interval, ping_timeout)
        )
        # One loop timer for all the close_timeout deadlines too.
        closing = closing_deadlines(close_timeout)
        # And one for freeing idle connections' compression state.
        idle = idle_deadlines()
        # The server's logger, looked up once rather than per connection.
        logger = server.logger

        def factory() -> ServerConnection:
            protocol = ServerProtocol(
                origins=origins,
                subprotocols=subprotocols,
                extensions=extensions,
                server_header=server_header,
                max_size=max_size,
                logger=logger,
            )
            connection = ServerConnection(
                protocol,
                server,
                keepalive=keepalive,
                closing=closing,
                idle=idle,
                max_queue=max_queue,
                write_limit=write_limit,
            )
            if select_subprotocol is not None:
                protocol.select_subprotocol = connection_selector(select_subprotocol, connection)
            return connection

        self.factory = factory

    async def _start(self) -> Server:
        loop = asyncio.get_running_loop()
        factory: Callable[[], asyncio.Protocol] = self.factory
        kwargs = self.kwargs
        if self.keylog is not None:
            assert self.pcap is not None
            kwargs = dict(kwargs)
            factory = relayed(self.factory, self.pcap, self.keylog, ssl=kwargs.pop("ssl"))
        elif self.pcap is not None:
            factory = tap(self.factory, self.pcap, client=False)
        # The loop makes and binds the listening sockets (hosts, IPv6,
        # reuse_port, sock=, Unix paths: all its own), but never accepts on
        # them: the Acceptor does, on duplicates of them.
        if self.unix:
            server = await loop.create_unix_server(factory, start_serving=False, **kwargs)
        else:
            server = await loop.create_server(
                factory, self.host, self.port, start_serving=False, **kwargs
            )
        ws_server = self.server
        ws_server.server = server
        ws_server._stopping = loop.create_future()
        listeners = [
            socket.socket(s.family, s.type, s.proto, os.dup(s.fileno())) for s in server.sockets
        ]
        for listener in listeners:
            listener.setblocking(False)
        tls: dict[str, Any] = {
            key: kwargs[key]
            for key in ("ssl", "ssl_handshake_timeout", "ssl_shutdown_timeout")
            if kwargs.get(key) is not None
        }
        logger = ws_server.logger
        # Kept until done (the loop holds tasks weakly); close() cancels
        # those still in a TLS handshake.
        connecting = ws_server.connecting

        def connected(task: asyncio.Task[Any]) -> None:
            connecting.discard(task)
            if not task.cancelled() and (exc := task.exception()) is not None:
                # A failed TLS handshake, or a client gone already: the
                # transport has closed the socket.
                logger.debug("! connection failed before the handshake: %s", exc)

        def accepted(sock: socket.socket) -> None:
            # The loop's coroutine as the task, no wrapper: this is the
            # accept path's one cost over the loop's own accept loop.
            task = loop.create_task(loop.connect_accepted_socket(factory, sock, **tls))
            connecting.add(task)
            task.add_done_callback(connected)

        ws_server.acceptor = Acceptor(
            loop,
            listeners,
            accepted,
            backlog=kwargs.get("backlog", 100),
            logger=logger,
            # Those still connecting hold a descriptor too.
            open_connections=lambda: len(ws_server.connections) + len(connecting),
        )
        ws_server.acceptor.start()
        return ws_server

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def __aenter__(self) -> Server:
        return await self._start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.server.close()
        await self.server.wait_closed()


def unix_serve(handler: Handler, path: str | None = None, **kwargs: Any) -> serve:
    """Start a WebSocket server on the Unix socket at ``path``; see ``serve()``."""
    return serve(handler, unix=True, path=path, **kwargs)
