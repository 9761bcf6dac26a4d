"""The hub inside an ASGI app (Starlette, FastAPI...), under any ASGI server.

``HubEndpoint(hub)`` is an ASGI application for WebSocket scopes::

    endpoint = HubEndpoint(hub)
    app.add_websocket_route("/hub", endpoint)      # Starlette or FastAPI
    app.mount("/hub", endpoint)                     # or as a mounted app

    @app.websocket("/hub")                          # or from a FastAPI route
    async def hub_route(websocket: WebSocket) -> None:
        await endpoint.serve(websocket)

It reads the handshake from the scope, runs the hub's ``authorize`` hook on a
``Request`` built from it (the same hook as ``ws13 serve``'s), accepts with
the ``ws13.hub.v1`` subprotocol, then runs the hub's session logic
(``Hub.run_session``) over an ``ASGITransport``. Only the ASGI message
dictionaries are used: no Starlette import, any ASGI 3 server.

The app starts and stops the hub in its lifespan (``async with hub:``);
until it is started, connections are refused with HTTP 503.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - the hub is an I/O layer, like ws13.asyncio
import collections
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol

from ..exceptions import ConnectionClosed
from ..headers import Headers
from ..http11 import Request
from .auth import Principal, Refused
from .server import Hub
from .transport import Joined, Outgoing
from .wire import SUBPROTOCOL

__all__ = ["ASGITransport", "HubEndpoint", "WebSocketLike", "request_from_scope"]

logger = logging.getLogger("ws13.hub")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The ASGI extension that lets an app answer a handshake with any HTTP response.
DENIAL_EXTENSION = "websocket.http.response"


class WebSocketLike(Protocol):
    """What ``HubEndpoint.serve`` needs: Starlette's and FastAPI's ``WebSocket`` fit."""

    @property
    def scope(self) -> Scope: ...

    async def receive(self) -> Message: ...

    async def send(self, message: Message) -> None: ...


def request_from_scope(scope: Scope) -> Request:
    """The handshake of a WebSocket scope as the ``Request`` an ``authorize`` hook gets.

    ``path`` is the request target as the client sent it: ``raw_path`` (or
    ``path`` when the server gives no ``raw_path``) and ``?`` and the query
    string if there is one, so ``request_token()`` finds ``?token=``;
    ``headers`` are the scope's, decoded as Latin-1 (names in lower case, as
    ASGI gives them; lookups ignore case).
    """
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"")
    if query:
        path += "?" + query.decode("latin-1")
    headers = Headers(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
    )
    return Request(path, headers)


class ASGITransport:
    """``ws13.hub.transport.Transport`` over an ASGI server's ``receive`` and ``send``.

    ``send()`` is a coroutine, so ``write()`` queues the messages and one
    writer task per connection awaits ``send()`` for each, in order.
    ``buffered_amount`` is what was written and not yet accepted by the
    server's ``send()``: ASGI shows nothing of the server's own socket buffer,
    but servers make ``send()`` wait while that buffer is full (uvicorn's
    protocols do), so a client that stops reading makes ``buffered_amount``
    grow, ``writable`` turns false at ``write_limit`` bytes, and the hub's
    slow-consumer policy applies as under ``ws13 serve``.

    ``close()`` sends ``websocket.close`` after what was written, as a Close
    frame follows what is in a socket's buffer. ASGI has no way to abort a
    connection: a peer that reads nothing more is ended by the server (its
    keepalive pings, e.g. uvicorn's ``ws_ping_interval``/``ws_ping_timeout``).
    """

    def __init__(self, receive: Receive, send: Send, *, write_limit: int = 2**16) -> None:
        self._receive = receive
        self._send = send
        self.write_limit = write_limit
        #: Bytes (of frames) written and not yet accepted by the server's ``send()``.
        self.buffered_amount = 0
        self._pending: collections.deque[Outgoing] = collections.deque()
        self._open = True
        self._lost = False
        self._close: tuple[int, str] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    @property
    def open(self) -> bool:
        return self._open

    @property
    def writable(self) -> bool:
        return self._open and self.buffered_amount < self.write_limit

    def write(self, messages: Sequence[Outgoing]) -> None:
        if not self._open:
            raise ConnectionClosed(None, None)
        self._pending.extend(messages)
        self.buffered_amount += sum(message.size for message in messages)
        self._wake()

    def write_shared(self, joined: Joined) -> bool:
        # ASGI sends message texts: the joined frames are of no use here.
        if not self.writable:
            return False
        self.write(joined.messages)
        return True

    async def wait_writable(self) -> None:
        while True:
            if not self._open:
                raise ConnectionClosed(None, None)
            if self.buffered_amount < self.write_limit:
                return
            if self._drained is None or self._drained.done():
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drained)

    async def close(self, code: int, reason: str) -> None:
        if self._open:
            self._open = False
            self._close = (code, reason)
            self._wake()
            self._wake_drained()
        await asyncio.shield(self._writer)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str | bytes]:
        while not self._lost:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                yield text if text is not None else (message.get("bytes") or b"")
            elif kind == "websocket.disconnect":
                self.connection_lost()
            else:
                raise RuntimeError(f"unexpected ASGI message {kind!r} on a WebSocket")

    def connection_lost(self) -> None:
        """The connection is gone (disconnect received, or the app is done): stop writing."""
        self._open = False
        self._lost = True
        self._pending.clear()
        self.buffered_amount = 0
        self._wake()
        self._wake_drained()

    async def aclose(self) -> None:
        """Stop the writer task (a ``send()`` still waiting is cancelled)."""
        self.connection_lost()
        if not self._writer.done():
            self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _wake_drained(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def _write_loop(self) -> None:
        pending = self._pending
        send = self._send
        loop = asyncio.get_running_loop()
        try:
            while not self._lost:
                while pending:
                    # Counted until the server took it: that is the backpressure.
                    message = pending[0]
                    await send({"type": "websocket.send", "text": message.text})
                    if self._lost:
                        return
                    pending.popleft()
                    self.buffered_amount -= message.size
                    if self.buffered_amount < self.write_limit:
                        self._wake_drained()
                if self._close is not None:
                    code, reason = self._close
                    await send({"type": "websocket.close", "code": code, "reason": reason})
                    return
                self._wakeup = loop.create_future()
                await self._wakeup
        except Exception as exc:  # any send() failure means the peer is gone
            # ASGI servers raise an OSError (uvicorn's ClientDisconnected),
            # Starlette's WebSocket.send a WebSocketDisconnect.
            logger.debug("hub: ASGI send failed: %r", exc)
            self.connection_lost()


class HubEndpoint:
    """An ASGI app serving ``hub`` on WebSocket scopes (see the module docstring).

    Args:
        hub: the hub; the app starts it (``async with hub`` in its lifespan).
        write_limit: bytes written to a connection and not yet accepted by
            the server's ``send()`` beyond which the connection is not
            writable and the hub queues for it (64 KiB; see ``ASGITransport``).

    Handshakes: the ``authorize`` hook's ``Refused(status, message)`` becomes
    that HTTP response when the server supports the ``websocket.http.response``
    extension (uvicorn does), else a plain refusal (403 under uvicorn). A
    hub not started yet refuses with 503. The ``ws13.hub.v1`` subprotocol is
    selected when the client offers it. An HTTP request (``app.mount``) gets
    426 Upgrade Required.
    """

    def __init__(self, hub: Hub, *, write_limit: int = 2**16) -> None:
        self.hub = hub
        self.write_limit = write_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self.handle(scope, receive, send)
        elif kind == "http":
            await _respond_http(
                send, 426, b"ws13 hub: connect with WebSocket\n", [(b"upgrade", b"websocket")]
            )
        else:
            raise ValueError(f"HubEndpoint serves websocket and http scopes, not {kind!r}")

    async def serve(self, websocket: WebSocketLike, *, principal: Principal | None = None) -> None:
        """Serve a Starlette/FastAPI ``WebSocket`` that wasn't accepted yet.

        With ``principal``, the route has authorized the client itself (say,
        with FastAPI dependencies) and the hub's ``authorize`` hook is skipped.
        """
        await self.handle(websocket.scope, websocket.receive, websocket.send, principal=principal)

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, *, principal: Principal | None = None
    ) -> None:
        """Serve one WebSocket scope: handshake, then the hub's session until it closes."""
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return  # gone before the handshake
        if not self.hub.started:
            logger.error("hub: refused a connection: start the hub in the app's lifespan")
            await _deny(scope, send, 503, "hub not started")
            return
        if principal is None:
            try:
                principal = await self.hub.authorize_request(request_from_scope(scope))
            except Refused as exc:
                await _deny(scope, send, exc.status, exc.message)
                return
        offered = scope.get("subprotocols") or ()
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
        await send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": []})
        transport = ASGITransport(receive, send, write_limit=self.write_limit)
        try:
            await self.hub.run_session(transport, principal)
        finally:
            await transport.aclose()


async def _deny(scope: Scope, send: Send, status: int, message: str) -> None:
    """Refuse a handshake: ``status`` and ``message`` if the server can say them."""
    if DENIAL_EXTENSION in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": (message + "\n").encode()})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})


async def _respond_http(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
