"""``mount()``: a hub on one path of a ``serve()`` server, other handlers on the rest.

``Hub.handler`` and ``Hub.process_request`` serve a whole server; ``mount()``
wraps them with another handler (the lab, an echo, an app) so that one
listening socket serves both, and adds the hub's health to the other
``process_request``'s status answer (``/health``).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from ..asyncio.server import ServerConnection
from ..headers import Headers
from ..http11 import Request, Response
from .server import Hub

__all__ = ["Handler", "ProcessRequest", "mount"]

Handler = Callable[[ServerConnection], Awaitable[None]]
ProcessRequest = Callable[
    [ServerConnection, Request], "Response | Awaitable[Response | None] | None"
]


def mount(
    hub: Hub,
    handler: Handler | None = None,
    process_request: ProcessRequest | None = None,
    *,
    path: str = "/hub",
    health_path: str | None = "/health",
) -> tuple[Handler, ProcessRequest]:
    """Serve ``hub`` at ``path`` next to another handler; return ``(handler, process_request)``
    for ``serve()``.

    WebSocket requests for ``path`` (any query string) go to the hub, others
    to ``handler`` and ``process_request`` (404 without them). At
    ``health_path`` the other ``process_request``'s JSON answer gets a
    ``"hub"`` member, and its ``"status"`` becomes ``"degraded"`` (with status
    503) while the backplane is unreachable; without one, the hub answers alone.
    """

    def is_hub(request: Request) -> bool:
        return request.path.partition("?")[0] == path

    # A plain function returning the chosen handler's coroutine: a coroutine
    # of its own would stay suspended beside it for the connection's whole
    # life (about 220 bytes each).
    def mounted_handler(connection: ServerConnection) -> Awaitable[None]:
        if connection.request is not None and is_hub(connection.request):
            return hub.handler(connection)
        if handler is not None:
            return handler(connection)
        return _refused()

    async def mounted_process_request(
        connection: ServerConnection, request: Request
    ) -> Response | None:
        if is_hub(request):
            return await hub.process_request(connection, request)
        response: Response | None = None
        if process_request is not None:
            result = process_request(connection, request)
            response = await result if inspect.isawaitable(result) else result
        if (
            health_path is not None
            and request.path.partition("?")[0] == health_path
            and (response is None or response.status_code == 200)
        ):
            # Only the status answer gains the hub's health: a refusal (say,
            # a WebSocket upgrade on /health) stays what it was.
            return _health_response(hub, response)
        if response is None and handler is None:
            return connection.respond(404, f"Not Found: {request.path.partition('?')[0]}\n")
        return response

    return mounted_handler, mounted_process_request


async def _refused() -> None:
    """Nothing to do: a connection neither the hub nor a handler takes
    (``mounted_process_request`` refuses those with 404 before this)."""


def _health_response(hub: Hub, response: Response | None) -> Response:
    status: dict[str, Any] = {}
    if response is not None and response.status_code == 200:
        try:
            status = json.loads(response.body)
        except ValueError:
            status = {}
        if not isinstance(status, dict):
            status = {}
    health = hub.health()
    status["hub"] = health
    degraded = health["status"] != "ok"
    status["status"] = "degraded" if degraded else status.get("status", "ok")
    headers = Headers()
    headers["Content-Type"] = "application/json"
    headers["Cache-Control"] = "no-store"
    return Response.text(503 if degraded else 200, json.dumps(status) + "\n", headers)
