"""``route()``: one server, a handler per URL path, with path parameters.

``route({"/": lobby, "/rooms/{room}": room, "/users/{id:int}": user}, host, port)``
starts a server like ``serve()``; each connection goes to the handler of the
first pattern that matches its path, with the parameters as keyword
arguments (``await room(connection, room="kitchen")``); a path that matches
none is answered ``404 Not Found`` before the WebSocket handshake.

The patterns (``{name}``, ``{name:int}``, ``{name:uuid}``, ``{name:path}``),
the matching, the werkzeug ``Map`` support and the 404 / redirect answers are
``ws13.routing``'s (its docstring has the rules); this module adds the
asyncio handler and ``route()`` / ``unix_route()``.
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Awaitable, Callable
from typing import Any

from ..http11 import Request, Response
from ..routing import BaseRouter, Pattern, Routes, build_router
from .server import ProcessRequest, ServerConnection, serve

__all__ = ["Pattern", "Router", "route", "unix_route"]

#: A handler: the connection, then the path parameters as keyword arguments.
RouteHandler = Callable[..., Awaitable[None]]


class Router(BaseRouter[RouteHandler]):
    """Dispatch connections by path: ``route()`` makes one.

    The arguments, matching and answers are ``ws13.routing.BaseRouter``'s.
    """

    async def handler(self, connection: ServerConnection) -> None:
        """The ``serve()`` handler: the matched route's, with its parameters."""
        handler, params = self.matched(connection)
        await handler(connection, **params)


def route(
    routes: Routes[RouteHandler],
    *args: Any,
    server_name: str | None = None,
    ssl: ssl_module.SSLContext | bool | None = None,
    create_router: type[Router] | None = None,
    **kwargs: Any,
) -> serve:
    """Start a server that sends each connection to the handler of its path.

    Takes ``serve()``'s arguments after ``routes`` (see ``Router`` and the
    module docstring for the patterns); returns what ``serve()`` does, so
    ``async with route(routes, host, port) as server:`` and
    ``await route(...)`` both work. A ``process_request`` given runs first;
    when it returns None the path is matched. ``ssl=True`` (websockets'
    option for TLS ended by a reverse proxy) only makes a werkzeug ``Map``'s
    redirects ``wss://``; an ``SSLContext`` serves TLS as in ``serve()``.
    ``create_router``: a ``Router`` subclass to use instead.
    """
    router, before = build_router(create_router or Router, routes, server_name, ssl, kwargs)
    process_request: ProcessRequest = router.route_request
    if before is not None:
        first: ProcessRequest = before

        async def process_request(
            connection: ServerConnection, request: Request
        ) -> Response | None:
            response = first(connection, request)
            if isinstance(response, Awaitable):
                response = await response
            if response is not None:
                return response
            return router.route_request(connection, request)

    return serve(router.handler, *args, process_request=process_request, **kwargs)


def unix_route(
    routes: Routes[RouteHandler],
    path: str | None = None,
    **kwargs: Any,
) -> serve:
    """``route()`` on the Unix socket at ``path``; see ``unix_serve()``."""
    return route(routes, unix=True, path=path, **kwargs)
