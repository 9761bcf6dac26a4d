"""The ASGI apps the uvicorn tests serve: the same WebSocket routes in Starlette and FastAPI.

uvicorn imports them by path (``tests.uvicorn.apps:starlette_app`` and
``:fastapi_app``). What an app saw of a connection that the client can't
see (the disconnect event, the scope) is recorded by key and read back over
``/report?key=...``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

#: What each connection's handler saw, by its ``key`` query parameter.
REPORTS: dict[str, Any] = {}

PAGE = "<!doctype html><title>ws13 under uvicorn</title><p>ok</p>\n"


def _key(ws: WebSocket) -> str:
    return ws.query_params.get("key", "")


async def echo(ws: WebSocket) -> None:
    """Echo text and binary; record the disconnect event (code, reason)."""
    await ws.accept()
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            REPORTS[_key(ws)] = {"code": message["code"], "reason": message.get("reason", "")}
            return
        if message.get("text") is not None:
            await ws.send_text(message["text"])
        else:
            await ws.send_bytes(message["bytes"])


async def scope(ws: WebSocket) -> None:
    """Accept with the first subprotocol offered of ours; send the scope as JSON."""
    offered = ws.scope["subprotocols"]
    chosen = next((p for p in ("chat.v2", "chat.v1") if p in offered), None)
    await ws.accept(subprotocol=chosen, headers=[(b"x-accepted", b"yes")])
    # The server's keys only (frameworks add theirs).
    keys = ("type", "asgi", "http_version", "scheme", "root_path", "path", "raw_path")
    keys += ("query_string", "subprotocols", "state", "extensions")
    shown = {
        key: value.decode("latin-1") if isinstance(value, bytes) else value
        for key, value in ws.scope.items()
        if key in keys
    }
    shown["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in ws.scope["headers"]]
    shown["client"] = list(ws.scope["client"]) if ws.scope["client"] else None
    shown["server"] = list(ws.scope["server"]) if ws.scope["server"] else None
    await ws.send_text(json.dumps(shown, default=str))
    await ws.receive()


async def reject(ws: WebSocket) -> None:
    """Close before accept: a plain 403."""
    await ws.close()


async def deny(ws: WebSocket) -> None:
    """The denial extension: a custom HTTP response instead of the upgrade."""
    response = Response(b"no tea here\n", status_code=418, headers={"x-reason": "teapot"})
    await ws.send_denial_response(response)


async def close(ws: WebSocket) -> None:
    """Accept, then close with the ``code`` and ``reason`` of the query string."""
    await ws.accept()
    await ws.close(int(ws.query_params["code"]), ws.query_params.get("reason", ""))
    await ws.receive()


async def leave(ws: WebSocket) -> None:
    """Accept, then return without closing (servers differ here: docs/uvicorn.md)."""
    await ws.accept()


async def late(ws: WebSocket) -> None:
    """Send once more after the disconnect: the server must say the client is gone."""
    await ws.accept()
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass
    try:
        await ws.send({"type": "websocket.send", "text": "too late"})
    except WebSocketDisconnect:  # Starlette's wrapping of the server's OSError
        pass


async def report(ws: WebSocket) -> None:
    """Send what the handler of ``key`` recorded, as JSON (``null`` if nothing yet)."""
    await ws.accept()
    await ws.send_text(json.dumps(REPORTS.get(_key(ws))))
    await ws.close()


async def page(request: Request) -> Response:
    """A page for Chromium to open WebSockets from (same origin)."""
    return HTMLResponse(PAGE)


async def health(request: Request) -> Response:
    return PlainTextResponse("ok\n")


WEBSOCKET_ROUTES = {
    "/echo": echo,
    "/scope": scope,
    "/reject": reject,
    "/deny": deny,
    "/close": close,
    "/leave": leave,
    "/late": late,
    "/report": report,
}

starlette_app = Starlette(
    routes=[
        Route("/", page),
        Route("/health", health),
        *(WebSocketRoute(path, handler) for path, handler in WEBSOCKET_ROUTES.items()),
    ]
)

fastapi_app = FastAPI()
fastapi_app.add_api_route("/", page)
fastapi_app.add_api_route("/health", health)
for _path, _handler in WEBSOCKET_ROUTES.items():
    fastapi_app.add_api_websocket_route(_path, _handler)
