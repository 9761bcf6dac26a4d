"""``route()``: one threaded server, a handler per URL path, with path parameters.

``route({"/": lobby, "/rooms/{room}": room, "/users/{id:int}": user}, host, port)``
makes a server like ``serve()``; each connection goes to the handler of the
first pattern that matches its path, with the parameters as keyword
arguments (``room(connection, room="kitchen")``, in the connection's
thread); a path that matches none is answered ``404 Not Found`` before the
WebSocket handshake.

The patterns (``{name}``, ``{name:int}``, ``{name:uuid}``, ``{name:path}``),
the matching, the werkzeug ``Map`` support and the 404 / redirect answers are
``ws13.routing``'s (its docstring has the rules), the same as
``ws13.asyncio.router``'s; this module adds the threaded handler and
``route()`` / ``unix_route()``, with ``websockets.sync.router``'s signatures.
"""

from __future__ import annotations

import os
import ssl as ssl_module
from collections.abc import Callable
from typing import Any

from ..http11 import Request, Response
from ..routing import BaseRouter, Pattern, Routes, build_router
from .server import ProcessRequest, Server, ServerConnection, serve

__all__ = ["Pattern", "Router", "route", "unix_route"]

#: A handler: the connection, then the path parameters as keyword arguments.
RouteHandler = Callable[..., None]


class Router(BaseRouter[RouteHandler]):
    """Dispatch connections by path: ``route()`` makes one.

    The arguments, matching and answers are ``ws13.routing.BaseRouter``'s.
    """

    def handler(self, connection: ServerConnection) -> None:
        """The ``serve()`` handler: the matched route's, with its parameters."""
        handler, params = self.matched(connection)
        handler(connection, **params)


def route(
    routes: Routes[RouteHandler],
    *args: Any,
    server_name: str | None = None,
    ssl: ssl_module.SSLContext | bool | None = None,
    create_router: type[Router] | None = None,
    **kwargs: Any,
) -> Server:
    """Make a server that sends each connection to the handler of its path.

    Takes ``serve()``'s arguments after ``routes`` (see ``ws13.routing`` for
    the patterns); returns the ``Server``: ``with route(routes, host, port)
    as server: server.serve_forever()``. A ``process_request`` given runs
    first; when it returns None the path is matched (so
    ``process_request=basic_auth(...)`` guards every route). ``ssl=True``
    (websockets' option for TLS ended by a reverse proxy) only makes a
    werkzeug ``Map``'s redirects ``wss://``; an ``SSLContext`` serves TLS as
    in ``serve()``. ``create_router``: a ``Router`` subclass to use instead.
    """
    router, before = build_router(create_router or Router, routes, server_name, ssl, kwargs)
    # The hook given first; its response, if any, wins over the router's.
    hooks: list[ProcessRequest] = (
        [before, router.route_request] if before else [router.route_request]
    )

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        responses = (hook(connection, request) for hook in hooks)
        return next((response for response in responses if response is not None), None)

    return serve(router.handler, *args, process_request=process_request, **kwargs)


def unix_route(
    routes: Routes[RouteHandler],
    path: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Server:
    """``route()`` on the Unix socket at ``path``; see ``unix_serve()``."""
    return route(routes, unix=True, path=path, **kwargs)
