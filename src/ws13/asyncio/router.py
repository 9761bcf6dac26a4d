"""``route()``: one server, a handler per URL path, with path parameters.

``route({"/": lobby, "/rooms/{room}": room, "/users/{id:int}": user}, host, port)``
starts a server like ``serve()``; each connection goes to the handler of the
first pattern that matches its path, with the parameters as keyword
arguments (``await room(connection, room="kitchen")``); a path that matches
none is answered ``404 Not Found`` before the WebSocket handshake.

The patterns, matched against the request path without its query string:

* a pattern starts with ``/`` and matches the whole path: ``/rooms`` doesn't
  match ``/rooms/`` nor ``/rooms/x``;
* ``{name}`` (or ``{name:str}``) matches one non-empty path segment (no
  ``/``), ``{name:int}`` one made of digits 0-9 (given as ``int``),
  ``{name:uuid}`` a UUID (given as ``uuid.UUID``), ``{name:path}`` the rest
  of the path, slashes included (non-empty);
* values are percent-decoded after matching (``%2F`` in a segment is a
  ``/`` in the value, not a separator);
* the first pattern that matches wins, in the order given;
* a malformed pattern, an unknown converter or a name used twice raises
  ValueError when the router is made.

websockets' ``route()`` takes a werkzeug ``Map``; so does this one when
werkzeug is installed (``pip install werkzeug``): its rules, converters and
redirects then apply, as in websockets. ws13 needs no werkzeug otherwise.
"""

from __future__ import annotations

import re
import ssl as ssl_module
import urllib.parse
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from ..http11 import Request, Response
from .server import ProcessRequest, ServerConnection, serve

__all__ = ["Router", "route", "unix_route"]

#: A handler: the connection, then the path parameters as keyword arguments.
RouteHandler = Callable[..., Awaitable[None]]

#: Converter name -> (regular expression of the value, conversion).
CONVERTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "str": (r"[^/]+", str),
    "int": (r"[0-9]+", int),
    "uuid": (
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        uuid.UUID,
    ),
    "path": (r".+", str),
}

_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+))?\}")


class Pattern:
    """One compiled path pattern (see the module docstring for the rules)."""

    def __init__(self, pattern: str) -> None:
        if not pattern.startswith("/"):
            raise ValueError(f"a route pattern starts with '/': {pattern!r}")
        self.pattern = pattern
        regex = []
        self.converters: dict[str, Callable[[str], Any]] = {}
        position = 0
        for match in _PARAMETER.finditer(pattern):
            regex.append(self._literal(pattern[position : match.start()]))
            name, kind = match.group(1), match.group(2) or "str"
            if kind not in CONVERTERS:
                raise ValueError(f"unknown converter {kind!r} in route {pattern!r}")
            if name in self.converters:
                raise ValueError(f"parameter {name!r} used twice in route {pattern!r}")
            expression, convert = CONVERTERS[kind]
            self.converters[name] = convert
            regex.append(f"(?P<{name}>{expression})")
            position = match.end()
        regex.append(self._literal(pattern[position:]))
        self.regex = re.compile("".join(regex))

    def _literal(self, text: str) -> str:
        if "{" in text or "}" in text:
            raise ValueError(f"malformed parameter in route {self.pattern!r}")
        return re.escape(text)

    def match(self, path: str) -> dict[str, Any] | None:
        """The parameters if ``path`` matches, else ``None``."""
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        return {
            name: self.converters[name](urllib.parse.unquote(value))
            for name, value in found.groupdict().items()
        }


class Router:
    """Dispatch connections by path: ``route()`` makes one.

    Args:
        routes: ``{pattern: handler}`` or ``(pattern, handler)`` pairs, in
            order of preference; or a werkzeug ``Map`` whose endpoints are
            handlers (werkzeug must be installed).
        server_name: with a werkzeug ``Map``, the host name its redirects
            use (default: the request's ``Host`` header).
        url_scheme: with a werkzeug ``Map``, ``"ws"`` or ``"wss"``.
    """

    def __init__(
        self,
        routes: Mapping[str, RouteHandler] | Iterable[tuple[str, RouteHandler]] | Any,
        server_name: str | None = None,
        url_scheme: str = "ws",
    ) -> None:
        self.server_name = server_name
        self.url_scheme = url_scheme
        self.url_map: Any = None
        self.routes: list[tuple[Pattern, RouteHandler]] = []
        if hasattr(routes, "bind") and hasattr(routes, "iter_rules"):
            self.url_map = routes
            for rule in routes.iter_rules():
                rule.websocket = True
        else:
            pairs = routes.items() if isinstance(routes, Mapping) else routes
            self.routes = [(Pattern(pattern), handler) for pattern, handler in pairs]
        # Set by route_request(), read by handler(): a connection that never
        # reaches its handler (a failed handshake) leaves no entry behind.
        self._matched: weakref.WeakKeyDictionary[
            ServerConnection, tuple[RouteHandler, dict[str, Any]]
        ] = weakref.WeakKeyDictionary()

    def match(self, path: str) -> tuple[RouteHandler, dict[str, Any]] | None:
        """The handler and parameters for ``path`` (query string ignored), if any."""
        path = path.partition("?")[0]
        for pattern, handler in self.routes:
            params = pattern.match(path)
            if params is not None:
                return handler, params
        return None

    def route_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """``process_request`` hook: 404 for a path no route matches."""
        if self.url_map is not None:
            return self._route_werkzeug(connection, request)
        found = self.match(request.path)
        if found is None:
            return connection.respond(404, "Not Found\n")
        self._matched[connection] = found
        return None

    def _route_werkzeug(self, connection: ServerConnection, request: Request) -> Response | None:
        from werkzeug.exceptions import NotFound
        from werkzeug.routing import RequestRedirect

        host = self.server_name or request.headers.get("Host") or "localhost"
        urls = self.url_map.bind(host, url_scheme=self.url_scheme)
        path, _, query = request.path.partition("?")
        try:
            handler, params = urls.match(path, query_args=query, websocket=True)
        except RequestRedirect as redirect:
            response = connection.respond(redirect.code, f"Moved to {redirect.new_url}\n")
            response.headers["Location"] = redirect.new_url
            return response
        except NotFound:
            return connection.respond(404, "Not Found\n")
        self._matched[connection] = (handler, params)
        return None

    async def handler(self, connection: ServerConnection) -> None:
        """The ``serve()`` handler: the matched route's, with its parameters."""
        handler, params = self._matched.pop(connection)
        await handler(connection, **params)


def route(
    routes: Mapping[str, RouteHandler] | Iterable[tuple[str, RouteHandler]] | Any,
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
    if ssl is not None and ssl is not True and ssl is not False:
        kwargs["ssl"] = ssl
    router = (create_router or Router)(routes, server_name, "ws" if not ssl else "wss")
    before: ProcessRequest | None = kwargs.pop("process_request", None)
    process_request: ProcessRequest = router.route_request
    if before is not None:
        first = before

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
    routes: Mapping[str, RouteHandler] | Iterable[tuple[str, RouteHandler]] | Any,
    path: str | None = None,
    **kwargs: Any,
) -> serve:
    """``route()`` on the Unix socket at ``path``; see ``unix_serve()``."""
    return route(routes, unix=True, path=path, **kwargs)
