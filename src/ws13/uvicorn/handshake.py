"""The opening handshake under uvicorn: per-server settings, the ASGI scope, the responses.

Everything here runs once per server or once per connection, never per
message: the hot path lives in ``protocol.py``.
"""

from __future__ import annotations

import email.utils
import logging
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from ..extensions.base import ServerExtensionFactory
from ..extensions.permessage_deflate import ServerPerMessageDeflateFactory
from ..headers import Headers
from ..http11 import Request, Response, reason_phrase

__all__ = [
    "CLOSE_TIMEOUT",
    "Settings",
    "accept_response",
    "denial_response",
    "make_scope",
    "plain_response",
]

#: Seconds to wait for the client's Close (and TCP close) once the server
#: sent its own, then abort: uvicorn's own protocols use the same constant.
CLOSE_TIMEOUT = 10.0

#: The permessage-deflate parameters of uvicorn's own protocols
#: (``ws_per_message_deflate``): 4 KiB windows, memLevel 5.
_DEFLATE = ServerPerMessageDeflateFactory(
    server_max_window_bits=12,
    client_max_window_bits=12,
    compress_settings={"memLevel": 5},
)

#: Settings by uvicorn ``Config``: read once per server, not per connection.
_SETTINGS: weakref.WeakKeyDictionary[Any, Settings] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class Settings:
    """What a connection needs from uvicorn's ``Config``, read once per server.

    Attributes:
        max_size: ``ws_max_size``, the largest message in bytes (uvicorn's
            default 16 MiB); a larger one closes with 1009.
        max_queue: ``ws_max_queue``, messages waiting for the app's
            ``receive()`` before reading pauses (uvicorn's default 32);
            reading resumes once the app has taken it down to a quarter;
            ``None`` (``ws_max_queue`` 0) never pauses.
        ping_interval: ``ws_ping_interval``, seconds between keepalive pings
            (20); ``None`` or 0 sends none.
        ping_timeout: ``ws_ping_timeout``, seconds to wait for the pong
            before closing with 1011 (20); ``None`` waits without limit.
        extensions: permessage-deflate when ``ws_per_message_deflate`` (on by
            default), with uvicorn's parameters.
        root_path, asgi_version: as uvicorn puts them in the scope.
        logger: ``uvicorn.error``, where uvicorn's own protocols log.
        metrics: ``config.ws13_metrics`` (a ``ws13.metrics.Metrics``) if the
            application set one, else ``None``; see ``with_metrics()``.
    """

    max_size: int | None
    max_queue: int | None
    ping_interval: float | None
    ping_timeout: float | None
    extensions: tuple[ServerExtensionFactory, ...]
    root_path: str
    asgi_version: str
    logger: logging.Logger
    metrics: Any

    @classmethod
    def of(cls, config: Any) -> Settings:
        """The settings of uvicorn ``config``, computed at its first connection."""
        settings = _SETTINGS.get(config)
        if settings is None:
            max_queue = config.ws_max_queue
            interval = config.ws_ping_interval
            settings = cls(
                max_size=config.ws_max_size,
                # 0 (or less, or None): no limit, as asyncio.Queue's maxsize
                # and uvicorn's `websockets` protocol take it.
                max_queue=max_queue if max_queue and max_queue > 0 else None,
                ping_interval=interval if interval else None,
                ping_timeout=config.ws_ping_timeout,
                extensions=(_DEFLATE,) if config.ws_per_message_deflate else (),
                root_path=config.root_path,
                asgi_version=config.asgi_version,
                logger=logging.getLogger("uvicorn.error"),
                metrics=getattr(config, "ws13_metrics", None),
            )
            _SETTINGS[config] = settings
        return settings


def make_scope(
    request: Request,
    settings: Settings,
    scheme: str,
    server: tuple[str, int | None] | None,
    client: tuple[str, int] | None,
    app_state: dict[str, Any],
) -> dict[str, Any]:
    """The ASGI ``websocket`` scope (spec 2.4), filled as uvicorn's own protocols do."""
    raw_path, _, query_string = request.path.partition("?")
    root_path = settings.root_path
    # Header names in lower case (ASGI requires it); values as sent, Latin-1.
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in request.headers.items()
    ]
    subprotocols = [
        token.strip()
        for value in request.headers.get_all("Sec-WebSocket-Protocol")
        for token in value.split(",")
        if token.strip()
    ]
    return {
        "type": "websocket",
        "asgi": {"version": settings.asgi_version, "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": scheme,
        "server": server,
        "client": client,
        "root_path": root_path,
        "path": root_path + unquote(raw_path),
        "raw_path": root_path.encode("ascii") + raw_path.encode("ascii"),
        "query_string": query_string.encode("ascii"),
        "headers": headers,
        "subprotocols": subprotocols,
        "state": app_state.copy(),
        "extensions": {"websocket.http.response": {}},
    }


def _decoded(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [
        (bytes(name).decode("latin-1"), bytes(value).decode("latin-1")) for name, value in headers
    ]


def accept_response(
    response: Response,
    default_headers: Iterable[tuple[bytes, bytes]],
    message: dict[str, Any],
) -> Response:
    """The 101 of the core's ``accept()`` completed with the app's ``websocket.accept``.

    Adds uvicorn's default headers (``server``, ``date``, ``--header``), the
    app's ``headers`` and its ``subprotocol``.
    """
    headers = response.headers
    headers.update(_decoded(default_headers))
    headers.update(_decoded(message.get("headers") or ()))
    subprotocol = message.get("subprotocol")
    if subprotocol:
        headers["Sec-WebSocket-Protocol"] = subprotocol
    return response


def plain_response(status: int, default_headers: Iterable[tuple[bytes, bytes]]) -> Response:
    """A refusal with an empty body: 403 (closed before accept) or 500 (app failed)."""
    return Response.text(status, "", Headers(_decoded(default_headers)))


def denial_response(status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> Response:
    """The app's ``websocket.http.response`` (the denial extension), sent as it gave it.

    Like uvicorn's protocols: ``Date``, ``Connection: close``,
    ``Content-Length`` and a plain-text ``Content-Type`` are added when the
    app didn't set them.
    """
    response_headers = Headers(_decoded(headers))
    defaults = (
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Connection", "close"),
        ("Content-Length", str(len(body))),
        ("Content-Type", "text/plain; charset=utf-8"),
    )
    for name, value in defaults:
        if name not in response_headers:
            response_headers[name] = value
    return Response(status, reason_phrase(status), response_headers, body)
