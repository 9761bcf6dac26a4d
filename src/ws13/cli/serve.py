"""``ws13 serve``: the demo server — a page at ``/``, echo at ``/echo`` and ``/``.

``GET /`` from a browser returns the demo page; a WebSocket upgrade on ``/``
or ``/echo`` echoes every message; ``GET /health`` returns a JSON status;
every other path is 404.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from ..asyncio.server import ServerConnection, serve
from ..exceptions import ConnectionClosed
from ..headers import Headers
from ..http11 import Request, Response
from . import fail

__all__ = ["add_parser", "run"]

logger = logging.getLogger("ws13.serve")

ECHO_PATHS = ("/", "/echo")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the demo server (page at /, echo at /echo)",
        description="Serve the demo page at /, echo every message on /echo and /, "
        "and a JSON status at /health.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (8765)")
    parser.add_argument(
        "--max-size",
        type=int,
        default=2**20,
        help="largest message accepted, in bytes (1048576); 0 for no limit",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop when installed (auto), or asyncio",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: frames)")
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


class DemoServer:
    """The handlers behind ``ws13 serve`` and the counters ``/health`` reports."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.open_connections = 0
        self.messages_in = 0
        self.messages_out = 0

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        upgrade = "upgrade" in (request.headers.get("Connection") or "").lower()
        if path == "/health":
            status = {
                "status": "ok",
                "uptime": round(time.monotonic() - self.started, 3),
                "connections": self.open_connections,
                "messages_in": self.messages_in,
                "messages_out": self.messages_out,
            }
            return _response(200, json.dumps(status) + "\n", "application/json")
        if path not in ECHO_PATHS:
            return connection.respond(404, f"Not Found: {path}\n")
        if path == "/" and not upgrade:
            page = resources.files("ws13").joinpath("static/index.html").read_text("utf-8")
            return _response(200, page, "text/html; charset=utf-8")
        return None

    async def handler(self, connection: ServerConnection) -> None:
        started = time.monotonic()
        peer = _format_address(connection.remote_address)
        path = connection.request.path if connection.request else "?"
        logger.info("open %s %s", peer, path)
        self.open_connections += 1
        try:
            async for message in connection:
                self.messages_in += 1
                await connection.send(message)
                self.messages_out += 1
        except ConnectionClosed:
            pass
        finally:
            self.open_connections -= 1
            await connection.close()
            logger.info(
                "close %s %s code=%s duration=%.3fs",
                peer,
                path,
                connection.close_code,
                time.monotonic() - started,
            )


def _response(status: int, body: str, content_type: str) -> Response:
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Cache-Control"] = "no-store"
    response = Response.text(status, body, headers)
    return response


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


async def _serve(args: argparse.Namespace) -> int:
    demo = DemoServer()
    try:
        server = await serve(
            demo.handler,
            args.host,
            args.port,
            process_request=demo.process_request,
            max_size=args.max_size or None,
        )
    except OSError as exc:
        return fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
    host = f"[{args.host}]" if ":" in args.host else args.host
    port = server.port
    print(
        f"ws13 serving on ws://{host}:{port}/echo — demo page: http://{host}:{port}/",
        file=sys.stderr,
        flush=True,
    )
    await stop
    print("ws13 shutting down", file=sys.stderr, flush=True)
    server.close()
    await server.wait_closed()
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        format="%(asctime)s %(message)s",
        level=logging.DEBUG if args.verbose >= 2 else logging.INFO,
    )
    if args.verbose < 2:
        logging.getLogger("ws13.server").setLevel(logging.WARNING)
    try:
        factory = loop_factory(args.loop)
    except ImportError:
        return fail("--loop uvloop: uvloop is not installed (pip install 'ws13[speed]')", 2)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_serve(args))
