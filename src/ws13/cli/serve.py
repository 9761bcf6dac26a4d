"""``ws13 serve``: the WebSocket lab — a demo page, echo, a live frame inspector.

Every path the server answers is in one table, ``DemoServer.routes``:

========== ============================= ==========================================
path       plain HTTP GET                WebSocket upgrade
========== ============================= ==========================================
/          the demo page                 the service (echo, or ``--exec CMD``)
/echo      426 Upgrade Required          the service
/inspect   426 Upgrade Required          the frame inspector (``inspector.py``)
/health    JSON status                   404
/lab.css   the page's stylesheet         404
/lab.js    the page's script             404
/ws13.js   the hub's browser client      404
/chat.html the hub demo: chat and ticker 404
/chat.css  its stylesheet                404
/chat.js   its script                    404
/favicon.* the page's icon (SVG)         404
/hub       426 Upgrade Required          the pub/sub hub (``ws13.hub``)
/metrics   metrics (``--metrics``)       404
(other)    404                           404
========== ============================= ==========================================

A service connection opened with ``?inspect=<id>`` streams its handshake and
every frame to the inspector with that id. Each WebSocket connection logs one
line when it opens and one when it closes; ``-v`` adds a line per frame.
``--log-format json`` writes every line of stderr as a JSON object
(``ws13.logs.JSONFormatter``). ``--metrics`` adds Prometheus metrics at
``/metrics`` (``--metrics-path``), counting every connection and the hub.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import ssl
import sys
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from ..asyncio.capture import start_capture
from ..asyncio.server import Server, ServerConnection, serve
from ..exceptions import ConnectionClosed
from ..headers import Headers
from ..http11 import Request, Response
from ..hub import SUBPROTOCOL
from ..hub.cli import add_serve_arguments, mount, start_hub
from ..logs import JSONFormatter
from ..protocol import FrameTracer
from ..workers import Worker
from . import fail
from .capture import add_pcap_arguments, pcap_writer
from .errors import os_error_reason
from .execproc import PTY_AVAILABLE, run_command
from .inspector import InspectorHub, Watch, format_peer
from .serveworkers import add_worker_arguments, parse_workers, run_workers
from .trace import Dissector, format_frame_line

__all__ = ["DemoServer", "Route", "add_parser", "run"]

logger = logging.getLogger("ws13.serve")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the WebSocket lab: demo page at /, echo at /echo, frame inspector",
        description="Serve the demo page with its live frame inspector at /, echo every "
        "message on /echo (or run CMD per connection with --exec), and a JSON status "
        "at /health.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (8765)")
    parser.add_argument(
        "--tls-cert", metavar="PEM", help="certificate chain: serve wss:// and https://"
    )
    parser.add_argument(
        "--tls-key", metavar="PEM", help="private key, if not in the --tls-cert file"
    )
    exec_group = parser.add_mutually_exclusive_group()
    exec_group.add_argument(
        "--exec",
        metavar="CMD",
        dest="command",
        help="run CMD (with /bin/sh -c) for each connection: messages to its stdin, "
        "a line each; its stdout lines back as messages. Most programs (tr, sed, grep, "
        "python) buffer what they write to a pipe and answer nothing until they exit: "
        "use --exec-pty, or the program's own option (sed -u, grep --line-buffered, "
        "python -u)",
    )
    exec_group.add_argument(
        "--exec-pty",
        metavar="CMD",
        dest="pty_command",
        help="like --exec, with CMD's stdout a pseudo-terminal so that it writes each "
        "line at once (POSIX only), e.g. --exec-pty 'tr a-z A-Z'",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=2**20,
        help="largest message accepted, in bytes (1048576); 0 for no limit",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="WebSocket connections open at once; one more gets 503 (no limit)",
    )
    parser.add_argument(
        "--max-connections-per-ip",
        type=int,
        metavar="N",
        help="the same per client address; one more gets 503 (no limit)",
    )
    parser.add_argument(
        "--max-handshake-rate",
        type=float,
        metavar="R",
        help="HTTP requests per second per client address, bursts of one second's "
        "worth; one more gets 429 (no limit)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop when installed (auto), or asyncio",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log every frame (-vv: also the library's debug log)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="stderr as text lines (text, the default) or one JSON object per line (json)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="serve Prometheus metrics at /metrics on the same port (needs ws13[metrics])",
    )
    parser.add_argument(
        "--metrics-path",
        metavar="PATH",
        default=None,
        help="where --metrics serves them (/metrics)",
    )
    add_serve_arguments(parser)
    add_pcap_arguments(parser, many=True)
    add_worker_arguments(parser)
    parser.set_defaults(run=run)


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory for ``--loop``; ImportError if uvloop is asked for but missing."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


Handler = Callable[[ServerConnection], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class Route:
    """What a path answers: ``http`` to a plain GET, ``websocket`` to an upgrade.

    ``inspectable``: a WebSocket connection may be watched with ``?inspect=<id>``.
    """

    http: Callable[[Request], Response] | None = None
    websocket: Handler | None = None
    inspectable: bool = False


class DemoServer:
    """The routes of ``ws13 serve``, their handlers, and the counters ``/health`` reports.

    Args:
        command: run this for each service connection instead of echoing.
        pty: run ``command`` with its stdout a pseudo-terminal (``--exec-pty``).
        log_frames: log a line per frame of every service connection.
        worker: the index ``/health`` reports (``--workers``: which one answered).
    """

    def __init__(
        self,
        command: str | None = None,
        log_frames: bool = False,
        *,
        pty: bool = False,
        worker: int = 0,
    ) -> None:
        self.command = command
        self.worker = worker
        self.pty = pty
        self.log_frames = log_frames
        self.started = time.monotonic()
        self.open_connections = 0
        self.messages_in = 0
        self.messages_out = 0
        self.inspectors = InspectorHub()
        self._watches: weakref.WeakKeyDictionary[ServerConnection, Watch] = (
            weakref.WeakKeyDictionary()
        )
        # The one table of paths (the hub is mounted beside it, at --hub-path).
        self.routes: dict[str, Route] = {
            "/": Route(http=static("index.html"), websocket=self.service, inspectable=True),
            "/echo": Route(websocket=self.service, inspectable=True),
            "/inspect": Route(websocket=self.inspectors.serve),
            "/capture": Route(http=self.capture),
            "/health": Route(http=self.health),
            "/lab.css": Route(http=static("lab.css")),
            "/lab.js": Route(http=static("lab.js")),
            "/ws13.js": Route(http=static("ws13.js")),
            "/chat.html": Route(http=static("chat.html")),
            "/chat.css": Route(http=static("chat.css")),
            "/chat.js": Route(http=static("chat.js")),
            # Browsers ask for /favicon.ico whatever the page says.
            "/favicon.svg": Route(http=static("favicon.svg")),
            "/favicon.ico": Route(http=static("favicon.svg")),
        }

    # -- HTTP ----------------------------------------------------------------

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Route ``request``: answer plain HTTP, refuse, or go on with the upgrade."""
        path, _, query = request.path.partition("?")
        route = self.routes.get(path)
        upgrade = (request.headers.get("Upgrade") or "").lower() == "websocket"
        if route is None or (upgrade and route.websocket is None):
            return connection.respond(404, f"Not Found: {path}\n")
        if not upgrade:
            if route.http is None:
                response = connection.respond(
                    426, f"Upgrade Required: {path} takes WebSocket connections\n"
                )
                response.headers["Upgrade"] = "websocket"
                return response
            return route.http(request)
        tracers: list[FrameTracer] = []
        if route.inspectable:
            inspect = parse_qs(query).get("inspect")
            if inspect:
                inspector = self.inspectors.get(inspect[0])
                if inspector is None:
                    return connection.respond(
                        400, f"Bad Request: no inspector with id {inspect[0]!r}; open /inspect\n"
                    )
                watch = Watch(inspector, connection)
                self._watches[connection] = watch
                tracers.append(watch.trace)
                # The same connection as pcapng for /capture: the request was
                # read already, the rest (the 101 on) is captured as it goes.
                start_capture(
                    connection, inspector.capture(), client=False, received=request.serialize()
                )
            if self.log_frames:
                tracers.append(_frame_logger(format_peer(connection)))
        connection.protocol.tracer = _fan_out(tracers)
        return None

    def capture(self, request: Request) -> Response:
        """``/capture?inspect=<id>``: the pcapng of the connections that inspector watched."""
        inspect = parse_qs(request.path.partition("?")[2]).get("inspect")
        inspector = None if not inspect else self.inspectors.get(inspect[0])
        if inspector is None:
            return _response(404, "Not Found: no inspector with that id\n", "text/plain")
        headers = Headers()
        headers["Content-Type"] = "application/x-pcapng"
        headers["Content-Disposition"] = f'attachment; filename="ws13-lab-{inspector.id}.pcapng"'
        headers["Cache-Control"] = "no-store"
        headers["Connection"] = "close"
        body = inspector.pcapng()
        headers["Content-Length"] = str(len(body))
        return Response(200, "OK", headers, body)

    def health(self, request: Request) -> Response:
        status = {
            "status": "ok",
            "worker": self.worker,
            "pid": os.getpid(),
            "uptime": round(time.monotonic() - self.started, 3),
            "connections": self.open_connections,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "inspectors": len(self.inspectors.inspectors),
        }
        return _response(200, json.dumps(status) + "\n", "application/json")

    # -- WebSocket -----------------------------------------------------------

    async def handler(self, connection: ServerConnection) -> None:
        """Every WebSocket connection: dispatch by path, log its open and close."""
        # The work before and after the await is in plain methods: this
        # coroutine stays suspended for the connection's whole life, and its
        # frame grows with its locals and its deepest call (100 bytes more).
        service, started, peer = self._opened(connection)
        self.open_connections += 1
        try:
            if service == self.service and self.command is None:
                # service()'s echo, run in this coroutine: service()'s own
                # would stay suspended beside it for the connection's whole
                # life (232 bytes).
                async for message in connection:
                    self.messages_in += 1
                    await connection.send(message)
                    self.messages_out += 1
                    # Or this frame keeps the last message while it waits
                    # for the next one (97 bytes for 48 characters).
                    del message
            else:
                await service(connection)
        except ConnectionClosed:
            pass
        finally:
            self.open_connections -= 1
            await connection.close()
            self._closed(connection, started, peer)

    def _opened(self, connection: ServerConnection) -> tuple[Handler, float, str]:
        """Route a new connection and log its open; return its service, and
        when it opened and its peer as logged, for ``_closed()``."""
        started = time.monotonic()
        peer = format_peer(connection)
        path, subprotocol = _describe(connection)
        route = self.routes[path.partition("?")[0]]
        assert route.websocket is not None
        _log(
            "open %s %s subprotocol=%s",
            peer,
            path,
            subprotocol,
            event="open",
            websocket=connection,
            remote=peer,
            path=path,
        )
        # A watch stays in _watches (weak keys) until the close: not in a
        # tuple the handler's frame would keep, 64 bytes per connection.
        watch = self._watches.get(connection)
        if watch is not None:
            watch.announce()
        return route.websocket, started, peer

    def _closed(self, connection: ServerConnection, started: float, peer: str) -> None:
        """Log a connection's close (and tell its inspector)."""
        watch = self._watches.pop(connection, None)
        if watch is not None:
            watch.closed()
        path, subprotocol = _describe(connection)
        duration = time.monotonic() - started
        _log(
            "close %s %s subprotocol=%s code=%s duration=%.3fs",
            peer,
            path,
            subprotocol,
            connection.close_code,
            duration,
            event="close",
            websocket=connection,
            remote=peer,
            path=path,
            duration=round(duration, 3),
        )

    async def service(self, connection: ServerConnection) -> None:
        """``/echo`` and ``/``: echo every message, or run ``--exec CMD``."""
        if self.command is not None:
            await run_command(connection, self.command, pty=self.pty)
            return
        async for message in connection:
            self.messages_in += 1
            await connection.send(message)
            self.messages_out += 1
            del message  # not kept while waiting for the next one


def _describe(connection: ServerConnection) -> tuple[str, str]:
    """The path (with its query) and the subprotocol ("-" for none), as logged."""
    request = connection.request
    return request.path if request is not None else "?", connection.subprotocol or "-"


def _log(message: str, *args: object, **extra: object) -> None:
    """``logger.info(message, *args, extra=extra)`` for the connection handlers.

    Called through this plain function, not straight from a handler's
    coroutine: logging looks up its caller's frame (``findCaller``), and a
    coroutine's frame, once looked up, stays a full frame object for as long
    as the coroutine is suspended, about 360 bytes per open connection. This
    function's frame is the one looked up, and it is gone when it returns.
    """
    logger.info(message, *args, extra=extra)


def static(name: str) -> Callable[[Request], Response]:
    """A route answering a file of ``ws13/static`` (read once, at the first request)."""
    content_type = {
        "html": "text/html; charset=utf-8",
        "css": "text/css; charset=utf-8",
        "js": "text/javascript; charset=utf-8",
        "svg": "image/svg+xml",
    }[name.rpartition(".")[2]]
    cache: list[str] = []

    def answer(request: Request) -> Response:
        if not cache:
            cache.append(resources.files("ws13").joinpath("static", name).read_text("utf-8"))
        return _response(200, cache[0], content_type)

    return answer


def hub_subprotocol(hub_path: str) -> Callable[[ServerConnection, Sequence[str]], str | None]:
    """Agree to ``ws13.hub.v1`` on the hub's path only.

    Elsewhere (``/echo``, ``/``) the server doesn't speak it: agreeing there
    would let a hub client believe it reached the hub and wait for a welcome
    that never comes.
    """

    def select(connection: ServerConnection, offered: Sequence[str]) -> str | None:
        request = connection.request
        assert request is not None  # the handshake is being checked
        if request.path.partition("?")[0] == hub_path and SUBPROTOCOL in offered:
            return SUBPROTOCOL
        return None

    return select


def _frame_logger(peer: str) -> FrameTracer:
    dissector = Dissector(preview=64)

    def log_frame(outgoing: bool, header: bytes, payload: bytes) -> None:
        record = dissector.frame(not outgoing, header, payload)
        logger.info(
            "%s %s",
            peer,
            format_frame_line(record, outgoing),
            extra={"event": "frame", "remote": peer},
        )

    return log_frame


def _fan_out(tracers: list[FrameTracer]) -> FrameTracer | None:
    if not tracers:
        return None
    if len(tracers) == 1:
        return tracers[0]

    def trace(outgoing: bool, header: bytes, payload: bytes) -> None:
        for tracer in tracers:
            tracer(outgoing, header, payload)

    return trace


def _response(status: int, body: str, content_type: str) -> Response:
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Cache-Control"] = "no-store"
    return Response.text(status, body, headers)


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context for ``--tls-cert`` / ``--tls-key``; ValueError with a one-line reason."""
    if args.tls_cert is None:
        if args.tls_key is not None:
            raise ValueError("--tls-key needs --tls-cert")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except ssl.SSLError as exc:  # before OSError: SSLError is one
        reason = exc.reason or "no PEM data, or the key doesn't match the certificate"
        raise ValueError(f"cannot load the TLS certificate or key: {reason}") from None
    except OSError as exc:
        raise ValueError(f"cannot read {exc.filename or args.tls_cert}: {exc.strerror}") from None
    return context


def _say(args: argparse.Namespace, message: str, event: str, **fields: Any) -> None:
    """Tell the operator: a plain line on stderr, or with ``--log-format json`` a JSON one."""
    if args.log_format == "json":
        logger.info(message, extra={"event": event, **fields})
    else:
        print(message, file=sys.stderr, flush=True)


def _fail(args: argparse.Namespace, message: str, status: int = 1) -> int:
    """``fail()``, as a JSON line with ``--log-format json``."""
    if args.log_format == "json":
        logger.error("%s", message, extra={"event": "error"})
        return status
    return fail(message, status)


def _metrics(args: argparse.Namespace, demo: DemoServer, *, routed: bool = True) -> Any:
    """The ``Metrics`` for ``--metrics``, routed at its path (``routed``); None without it.

    Raises ValueError with a one-line reason (prometheus_client missing, a
    path already taken).
    """
    if args.metrics_path is not None and not args.metrics:
        raise ValueError("--metrics-path needs --metrics")
    if not args.metrics:
        return None
    path = args.metrics_path or "/metrics"
    if not path.startswith("/") or "?" in path:
        raise ValueError(f"--metrics-path {path}: must start with / and have no query")
    if path in demo.routes or path == args.hub_path:
        raise ValueError(f"--metrics-path {path}: that path is already served")
    try:
        import prometheus_client

        from ..metrics import Metrics
    except ImportError:
        raise ValueError("--metrics needs prometheus_client: pip install 'ws13[metrics]'") from None
    # The global registry: prometheus_client adds the process's CPU, memory
    # and file descriptors to it, which an operator wants beside ours.
    metrics = Metrics(registry=prometheus_client.REGISTRY)
    if routed:
        demo.routes[path] = Route(http=metrics.response)
    return metrics


async def _serve(args: argparse.Namespace, worker: Worker | None = None) -> int:
    """Serve until SIGTERM/SIGINT; ``worker``: as one of ``--workers N`` (``serveworkers.py``)."""
    try:
        context = _tls_context(args)
    except ValueError as exc:
        return _fail(args, str(exc), 2)
    demo = DemoServer(
        args.command or args.pty_command,
        log_frames=args.verbose >= 1,
        pty=args.pty_command is not None,
        worker=0 if worker is None else worker.index,
    )
    try:
        metrics = _metrics(args, demo, routed=worker is None)
        pcap = pcap_writer(args)
        if args.pcap_tls and context is None:
            raise ValueError("--pcap-tls needs --tls-cert: without TLS there are no records")
    except ValueError as exc:
        return _fail(args, str(exc), 2)
    # Signal handlers first: a SIGTERM right after the port opens must stop
    # the server cleanly, not kill it.
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)
        elif worker is not None:
            # The parent forwards a second signal: hurry, exit now.
            logger.warning("exiting now, without closing connections")
            logging.shutdown()
            os._exit(1)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    if worker is not None:
        # The parent died (even by SIGKILL): stop rather than run orphaned.
        loop.add_reader(worker.lifeline, on_signal)
    try:
        hub = await start_hub(args, metrics=metrics)
    except (ValueError, ImportError) as exc:
        return _fail(args, str(exc), 2)
    # The pub/sub hub at --hub-path (/hub) beside the demo routes; /health
    # then also reports the hub (503 "degraded" while Redis is unreachable).
    handler, process_request = mount(hub, demo.handler, demo.process_request, path=args.hub_path)
    servers: list[Server] = []
    port = args.port
    try:
        servers.append(
            await serve(
                handler,
                args.host,
                args.port,
                process_request=process_request,
                select_subprotocol=hub_subprotocol(args.hub_path),
                max_size=args.max_size or None,
                ssl=context,
                metrics=metrics,
                pcap=pcap,
                max_connections=args.max_connections,
                max_connections_per_ip=args.max_connections_per_ip,
                max_handshake_rate=args.max_handshake_rate,
                pcap_tls=args.pcap_tls,
                process_response=None if worker is None else _worker_header(worker.index),
                reuse_port=worker is not None or None,
            )
        )
        if worker is not None and metrics is not None:
            port = args.metrics_port + worker.index
            servers.append(await _metrics_server(args, metrics, port))
    except OSError as exc:
        for server in servers:
            server.close()
        await hub.aclose()
        reason = os_error_reason(exc, args.host)
        return _fail(args, f"cannot listen on {args.host}:{port}: {reason}")
    if worker is None:
        say_listening(args, servers[0].port, context is not None, demo.command)
    else:
        logger.info("serving (pid %d)", os.getpid(), extra={"event": "listening"})
        worker.ready()
    await stop
    if worker is None:
        _say(args, "ws13 shutting down", "shutdown")
    else:
        logger.info("shutting down", extra={"event": "shutdown"})
    for server in servers:
        server.close()
    for server in servers:
        await server.wait_closed()
    await hub.aclose()
    return 0


def _worker_header(index: int) -> Callable[[ServerConnection, Request, Response], None]:
    """Name the worker in every answer (``Ws13-Worker: 1 pid=4242``): which one served it."""
    value = f"{index} pid={os.getpid()}"

    def add(connection: ServerConnection, request: Request, response: Response) -> None:
        response.headers["Ws13-Worker"] = value

    return add


async def _metrics_server(args: argparse.Namespace, metrics: Any, port: int) -> Server:
    """A worker's own metrics port: ``/metrics`` (``--metrics-path``) and 404 elsewhere."""
    path = args.metrics_path or "/metrics"

    def answer(connection: ServerConnection, request: Request) -> Response:
        if request.path.partition("?")[0] == path:
            response: Response = metrics.response(request)
            return response
        return connection.respond(404, f"Not Found: metrics are at {path}\n")

    async def refuse(connection: ServerConnection) -> None:
        pass  # answer() answers every request: no connection gets here

    return await serve(refuse, args.host, port, process_request=answer)


def say_listening(args: argparse.Namespace, port: int, tls: bool, command: str | None) -> None:
    """Tell the operator where the server listens (once, by the parent with workers)."""
    host = f"[{args.host}]" if ":" in args.host else args.host
    ws, http = ("wss", "https") if tls else ("ws", "http")
    _say(
        args,
        f"ws13 serving on {ws}://{host}:{port}/echo — demo page: {http}://{host}:{port}/",
        "listening",
        url=f"{ws}://{host}:{port}/echo",
    )
    if args.metrics:
        path = args.metrics_path or "/metrics"
        where = f"{http}://{host}:{port}{path}"
        if args.workers != "1":
            where = f"{http}://{host}:{args.metrics_port}+N{path} for worker N"
        _say(args, f"ws13 metrics at {where}", "metrics", path=path)
    if command is not None:
        terminal = " with a pseudo-terminal" if args.pty_command is not None else ""
        _say(
            args,
            f"ws13 running {command!r}{terminal} for each connection",
            "exec",
            command=command,
        )


def run(args: argparse.Namespace) -> int:
    level = logging.DEBUG if args.verbose >= 2 else logging.INFO
    if args.log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JSONFormatter())
        logging.basicConfig(level=level, handlers=[handler])
        # Python's warnings too, or they would be the one line that isn't JSON.
        logging.captureWarnings(True)
    else:
        logging.basicConfig(format="%(asctime)s %(message)s", level=level)
    if args.verbose < 2:
        logging.getLogger("ws13.server").setLevel(logging.WARNING)
    if not 0 <= args.port <= 65535:
        return _fail(args, f"--port {args.port}: must be between 0 and 65535", 2)
    if args.max_size < 0:
        return _fail(args, f"--max-size {args.max_size}: must be 0 (no limit) or more", 2)
    for option, number in (
        ("--max-connections", args.max_connections),
        ("--max-connections-per-ip", args.max_connections_per_ip),
        ("--max-handshake-rate", args.max_handshake_rate),
    ):
        if number is not None and not number > 0:
            return _fail(args, f"{option} {number:g}: must be more than 0", 2)
    if args.pty_command is not None and not PTY_AVAILABLE:
        return _fail(
            args, "--exec-pty needs pseudo-terminals (os.openpty), which this system lacks", 2
        )
    for option, value in (("--exec", args.command), ("--exec-pty", args.pty_command)):
        if value is not None and not value.strip():
            return _fail(args, f"{option}: the command is empty", 2)
    try:
        workers = parse_workers(args.workers)
    except ValueError as exc:
        return _fail(args, str(exc), 2)
    try:
        factory = loop_factory(args.loop)
    except ImportError:
        return _fail(args, "--loop uvloop: uvloop is not installed (pip install 'ws13[speed]')", 2)
    if workers == 1 and args.metrics_port is not None:
        return _fail(args, "--metrics-port is for --workers 2 or more", 2)
    if workers > 1:
        try:
            tls = _tls_context(args) is not None
        except ValueError as exc:
            return _fail(args, str(exc), 2)
        command = args.command or args.pty_command
        return run_workers(
            args,
            workers,
            _serve,
            factory,
            started=lambda: say_listening(args, args.port, tls, command),
        )
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_serve(args))
