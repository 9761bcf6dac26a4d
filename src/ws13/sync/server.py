"""The threaded server: ``serve()``, ``unix_serve()`` and ``Server``.

``Server.serve_forever()`` accepts connections and starts a thread for each:
it does TLS and the opening handshake (``process_request``,
``process_response``) within ``open_timeout``, then calls the handler with
the ``ServerConnection`` and closes the connection when the handler returns.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import ssl as ssl_module
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from ..exceptions import ConnectionClosed
from ..extensions.base import ServerExtensionFactory
from ..extensions.permessage_deflate import enable_server_permessage_deflate
from ..frames import CloseCode
from ..http11 import Request, Response
from ..protocol import OPEN
from ..server import ServerProtocol, connection_selector
from ..version import USER_AGENT
from .auth import basic_auth
from .connection import Connection, MaxQueue

# basic_auth lives in its own module; websockets has it here.
__all__ = ["Server", "ServerConnection", "basic_auth", "serve", "unix_serve"]

Handler = Callable[["ServerConnection"], None]
#: ``process_request(connection, request)`` returns None to go on with the
#: WebSocket handshake, or a Response (e.g. ``connection.respond(200, "OK")``)
#: to answer plain HTTP instead.
ProcessRequest = Callable[["ServerConnection", Request], "Response | None"]
#: ``process_response(connection, request, response)`` may change
#: ``response`` in place, or return another Response to send instead.
ProcessResponse = Callable[["ServerConnection", Request, Response], "Response | None"]


class ServerConnection(Connection):
    """A connection accepted by a ``Server``; the argument of the handler.

    The arguments after ``server`` are those of ``Connection``.

    Attributes:
        server: the ``Server`` that accepted it.
        username: the user ``basic_auth()`` let in; ``None`` without it.
    """

    protocol: ServerProtocol

    def __init__(
        self, sock: socket.socket, protocol: ServerProtocol, server: Server, **kwargs: Any
    ) -> None:
        super().__init__(sock, protocol, **kwargs)
        self.server = server
        self.username: str | None = None

    def respond(self, status: int, text: str) -> Response:
        """Build a plain-text HTTP response, for ``process_request`` to return."""
        return self.protocol.reject(status, text)

    def handshake(
        self,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        deadline: float | None = None,
    ) -> bool:
        """Read the request and answer it before ``deadline`` (``time.monotonic()``
        seconds); return whether the connection is OPEN.

        A hook that raises is logged and answered with 500; a request while
        the server shuts down with 503. Raises TimeoutError at the deadline.
        """
        protocol = self.protocol
        self._read_handshake(deadline)
        request = protocol.request
        if request is None:
            # Malformed (the core answered 4xx) or the client left.
            if protocol.handshake_exc is not None:
                self.logger.info("opening handshake failed: %s", protocol.handshake_exc)
            return False
        response = self._call_hook(process_request, "process_request", request)
        if response is None:
            response = protocol.accept(request)
        if process_response is not None:
            response = (
                self._call_hook(process_response, "process_response", request, response) or response
            )
        if response.status_code == 101 and self.server.closing:
            response = self.respond(503, "Server is shutting down.\n")
        protocol.send_response(response)
        if protocol.handshake_exc is not None:
            self.logger.info("opening handshake failed: %s", protocol.handshake_exc)
        self._write(protocol.data_to_send())
        if protocol.state is not OPEN:
            return False
        self._start(protocol.events_received())
        return True

    def _call_hook(
        self, hook: Callable[..., Response | None] | None, name: str, *args: Any
    ) -> Response | None:
        if hook is None:
            return None
        try:
            return hook(self, *args)
        except Exception:
            self.logger.error("%s failed", name, exc_info=True)
            return self.respond(500, "Internal Server Error\n")


class Server:
    """A WebSocket server; ``serve()`` makes one.

    Use it as ``with serve(handler, host, port) as server: server.serve_forever()``;
    ``shutdown()`` from another thread (or a handler) stops it.

    Args:
        sock: the listening socket.
        handler: ``handler(sock, address)`` for each accepted connection, in
            its own thread (``serve()`` gives the one that runs the WebSocket
            handler).
        logger: logger to use (default ``ws13.server``).
    """

    def __init__(
        self,
        sock: socket.socket,
        handler: Callable[[socket.socket, Any], None],
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self.socket = sock
        self.handler = handler
        self.logger = logger or logging.getLogger("ws13.server")
        self._lock = threading.Lock()
        self._all_connections: set[ServerConnection] = set()
        self._threads: set[threading.Thread] = set()
        # Wakes serve_forever() up at shutdown: closing a socket another
        # thread waits on doesn't wake it on Linux.
        self._wake_reader, self._wake_writer = socket.socketpair()
        #: Whether ``shutdown()`` started: new handshakes get 503.
        self.closing = False
        self._serving = False
        self._stopped_accepting = threading.Event()

    @property
    def connections(self) -> set[ServerConnection]:
        """The OPEN connections (handshake done, closing not started)."""
        with self._lock:
            return {c for c in self._all_connections if c.protocol.state is OPEN}

    @property
    def port(self) -> int:
        """The port of the listening TCP socket (useful with port 0)."""
        return int(self.socket.getsockname()[1])

    def fileno(self) -> int:
        """The listening socket's file descriptor."""
        return self.socket.fileno()

    def serve_forever(self) -> None:
        """Accept connections until ``shutdown()``, a thread for each."""
        poller = selectors.DefaultSelector()
        with self._lock:
            if self.closing:
                return
            self._serving = True
        try:
            poller.register(self._wake_reader, selectors.EVENT_READ)
            try:
                poller.register(self.socket, selectors.EVENT_READ)
            except (OSError, ValueError):
                return  # shutdown() already closed it
            self.logger.info("server listening on %s", self.socket.getsockname())
            while not self.closing:
                ready = poller.select()
                if self.closing:
                    break
                if not any(key.fileobj is self.socket for key, _ in ready):
                    continue
                try:
                    sock, address = self.socket.accept()
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if self.closing:
                        break
                    # E.g. EMFILE: out of file descriptors. Log and go on.
                    self.logger.error("accept() failed: %s", exc)
                    time.sleep(0.1)
                    continue
                thread = threading.Thread(
                    target=self._run, args=(sock, address), name=f"ws13-conn-{address}"
                )
                with self._lock:
                    self._threads.add(thread)
                thread.start()
        finally:
            poller.close()
            self._stopped_accepting.set()

    def _run(self, sock: socket.socket, address: Any) -> None:
        try:
            self.handler(sock, address)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def shutdown(
        self, close_connections: bool = True, code: int = CloseCode.GOING_AWAY, reason: str = ""
    ) -> None:
        """Stop the server: stop accepting, then wait for every handler.

        With ``close_connections`` (the default) the OPEN connections are
        closed with ``code`` (1001) and ``reason``, and handshakes under way
        get 503; otherwise handlers end on their own. Idempotent; from a
        handler, it waits for all the others.
        """
        with self._lock:
            first = not self.closing
            self.closing = True
        if first:
            self.logger.info("server closing")
            try:
                self._wake_writer.send(b"x")
            except OSError:
                pass
        if self._serving:
            # No thread is started after this: the set of threads is final.
            self._stopped_accepting.wait()
        self.socket.close()
        while True:
            with self._lock:
                threads = [t for t in self._threads if t is not threading.current_thread()]
                connections = [c for c in self._all_connections if c.protocol.state is OPEN]
            if not threads:
                break
            if close_connections:
                closers = [
                    threading.Thread(target=c.close, args=(code, reason)) for c in connections
                ]
                for closer in closers:
                    closer.start()
                for closer in closers:
                    closer.join()
            threads[0].join(0.1)
        self._wake_reader.close()
        self._wake_writer.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- what serve()'s handler uses -----------------------------------------

    def _add(self, connection: ServerConnection) -> None:
        with self._lock:
            self._all_connections.add(connection)

    def _discard(self, connection: ServerConnection) -> None:
        with self._lock:
            self._all_connections.discard(connection)


def serve(
    handler: Handler,
    host: str | None = None,
    port: int | None = None,
    *,
    sock: socket.socket | None = None,
    ssl: ssl_module.SSLContext | None = None,
    origins: Sequence[str | None] | None = None,
    extensions: Sequence[ServerExtensionFactory] | None = None,
    subprotocols: Sequence[str] | None = None,
    select_subprotocol: Callable[[ServerConnection, Sequence[str]], str | None] | None = None,
    compression: str | None = "deflate",
    process_request: ProcessRequest | None = None,
    process_response: ProcessResponse | None = None,
    server_header: str | None = USER_AGENT,
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    max_size: int | None = 2**20,
    max_queue: MaxQueue = 16,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    create_connection: type[ServerConnection] | None = None,
    **kwargs: Any,
) -> Server:
    """Listen on ``host`` and ``port``; return the ``Server`` (call its ``serve_forever()``).

    ``handler(connection)`` runs in a thread per connection; when it returns
    the connection is closed with 1000; if it raises, the error is logged
    (unless it is ConnectionClosed) and the connection closed with 1011.

    Args:
        handler: function taking a ``ServerConnection``.
        host, port: where to listen (``socket.create_server()``; port 0:
            any free port, see ``Server.port``).
        sock: a listening socket to use instead.
        ssl: an ``ssl.SSLContext`` to serve ``wss://``.
        origins: acceptable Origin values (``None`` in the list: no Origin
            header); refused ones get 403. Default: any.
        extensions: extension factories, e.g. a tuned
            ``ServerPerMessageDeflateFactory(...)``.
        subprotocols: subprotocols this server speaks, by preference.
        select_subprotocol: ``f(connection, offered) -> str | None`` to choose
            instead (websockets' signature; ``connection.request`` is the
            request); it must return one of ``offered``, or None.
        compression: ``"deflate"`` (the default) accepts permessage-deflate
            (RFC 7692) when the client offers it; ``None`` turns it off.
        process_request: hook to answer plain HTTP; see ``ProcessRequest``.
        process_response: hook to change the handshake response; see
            ``ProcessResponse``.
        server_header: ``Server`` header (``ws13/<version>``; ``None`` for none).
        open_timeout: seconds for TLS and the opening handshake (10);
            ``None`` waits without limit.
        ping_interval, ping_timeout, close_timeout, max_queue: see
            ``Connection`` (20, 20, 10, 16).
        max_size: the largest message accepted (1 MiB); ``None`` lifts it.
        logger: logger to use (default ``ws13.server``).
        create_connection: the ``ServerConnection`` subclass to build.
        **kwargs: passed to ``socket.create_server()`` (``family``,
            ``backlog``, ``reuse_port``, ``dualstack_ipv6``...).
    """
    if compression == "deflate":
        extensions = enable_server_permessage_deflate(extensions)
    elif compression is not None:
        raise ValueError(f"unsupported compression: {compression!r}; use 'deflate' or None")
    if open_timeout is not None and not open_timeout > 0:
        raise ValueError(f"open_timeout must be positive (or None), not {open_timeout}")
    extensions = None if extensions is None else tuple(extensions)
    origins = None if origins is None else tuple(origins)
    subprotocols = None if subprotocols is None else tuple(subprotocols)
    logger = logger or logging.getLogger("ws13.server")
    factory = create_connection or ServerConnection
    unix: bool = kwargs.pop("unix", False)
    path: str | os.PathLike[str] | None = kwargs.pop("path", None)
    if sock is None:
        if unix:
            if path is None:
                raise ValueError("unix_serve() needs the path of the socket (or sock=)")
            sock = socket.create_server(os.fspath(path), family=socket.AF_UNIX, **kwargs)
        else:
            if host is not None and ":" in host:
                kwargs.setdefault("family", socket.AF_INET6)  # an IPv6 address
            sock = socket.create_server((host or "", port or 0), **kwargs)

    def sock_handler(sock: socket.socket, address: Any) -> None:
        """One connection's thread: TLS, handshake, handler, close."""
        deadline = None if open_timeout is None else time.monotonic() + open_timeout
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
            if ssl is not None:
                sock.settimeout(open_timeout)  # the TLS handshake's share of it
                sock = ssl.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
            protocol = ServerProtocol(
                origins=origins,
                subprotocols=subprotocols,
                extensions=extensions,
                server_header=server_header,
                max_size=max_size,
                logger=logger,
            )
            connection = factory(
                sock,
                protocol,
                server,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                close_timeout=close_timeout,
                max_queue=max_queue,
            )
            if select_subprotocol is not None:
                protocol.select_subprotocol = connection_selector(select_subprotocol, connection)
            opened = connection.handshake(process_request, process_response, deadline)
        except Exception as exc:
            # TLS or handshake failure, timeout, client gone: nothing to run.
            logger.info("connection from %s failed to open: %s", address, exc)
            sock.close()
            return
        if not opened:
            sock.close()
            return
        server._add(connection)
        try:
            with connection:
                handler(connection)
        except ConnectionClosed:
            pass
        except Exception:
            logger.error("connection handler failed", exc_info=True)
        finally:
            server._discard(connection)

    server = Server(sock, sock_handler, logger)
    return server


def unix_serve(
    handler: Handler, path: str | os.PathLike[str] | None = None, **kwargs: Any
) -> Server:
    """Listen on the Unix socket at ``path``; see ``serve()``."""
    return serve(handler, unix=True, path=path, **kwargs)
