"""Routing by URL path, without I/O: what ``route()`` in ``ws13.asyncio.router``
and ``ws13.sync.router`` share.

``BaseRouter`` matches a handshake request's path against patterns (or a
werkzeug ``Map``), remembers the handler and parameters for the connection,
and builds the ``404 Not Found`` or redirect response otherwise; each I/O
layer's ``Router`` adds only ``handler()``, which calls the matched handler
the layer's way (awaited or not).

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
import urllib.parse
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from .http11 import Request, Response

__all__ = ["CONVERTERS", "BaseRouter", "Pattern", "Responder", "Routes", "build_router"]

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

#: A route's handler: a function (sync) or coroutine function (asyncio).
H = TypeVar("H")

#: ``{pattern: handler}``, ``(pattern, handler)`` pairs, or a werkzeug ``Map``.
Routes = Mapping[str, H] | Iterable[tuple[str, H]] | Any


class Responder(Protocol):
    """What a router needs of a server connection: ``respond()`` builds a response."""

    def respond(self, status: int, text: str) -> Response: ...


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


class BaseRouter(Generic[H]):
    """Dispatch connections by path; each I/O layer's ``Router`` adds ``handler()``.

    Args:
        routes: ``{pattern: handler}`` or ``(pattern, handler)`` pairs, in
            order of preference; or a werkzeug ``Map`` whose endpoints are
            handlers (werkzeug must be installed).
        server_name: with a werkzeug ``Map``, the host name its redirects
            use (default: the request's ``Host`` header, else ``localhost``).
        url_scheme: with a werkzeug ``Map``, ``"ws"`` or ``"wss"``.
    """

    def __init__(
        self, routes: Routes[H], server_name: str | None = None, url_scheme: str = "ws"
    ) -> None:
        self.server_name = server_name
        self.url_scheme = url_scheme
        self.url_map: Any = None
        self.routes: list[tuple[Pattern, H]] = []
        if hasattr(routes, "bind") and hasattr(routes, "iter_rules"):
            self.url_map = routes
            for rule in routes.iter_rules():
                rule.websocket = True
        else:
            pairs = routes.items() if isinstance(routes, Mapping) else routes
            self.routes = [(Pattern(pattern), handler) for pattern, handler in pairs]
        # Set by route_request(), read by matched(): a connection that never
        # reaches its handler (a failed handshake) leaves no entry behind.
        self._matched: weakref.WeakKeyDictionary[Any, tuple[H, dict[str, Any]]] = (
            weakref.WeakKeyDictionary()
        )

    def match(self, path: str) -> tuple[H, dict[str, Any]] | None:
        """The handler and parameters for ``path`` (query string ignored), if any."""
        path = path.partition("?")[0]
        for pattern, handler in self.routes:
            params = pattern.match(path)
            if params is not None:
                return handler, params
        return None

    def route_request(self, connection: Responder, request: Request) -> Response | None:
        """``process_request`` hook: 404 (or a werkzeug redirect) unless a route matches."""
        if self.url_map is not None:
            return self._route_werkzeug(connection, request)
        found = self.match(request.path)
        if found is None:
            return self.not_found(connection)
        self._matched[connection] = found
        return None

    def _route_werkzeug(self, connection: Responder, request: Request) -> Response | None:
        from werkzeug.exceptions import NotFound
        from werkzeug.routing import RequestRedirect

        host = self.server_name or request.headers.get("Host") or "localhost"
        urls = self.url_map.bind(host, url_scheme=self.url_scheme)
        path, _, query = request.path.partition("?")
        try:
            handler, params = urls.match(path, query_args=query, websocket=True)
        except RequestRedirect as redirect:
            return self.redirect(connection, redirect.new_url, redirect.code)
        except NotFound:
            return self.not_found(connection)
        self._matched[connection] = (handler, params)
        return None

    def not_found(self, connection: Responder) -> Response:
        """The answer to a path no route matches: ``404 Not Found``."""
        return connection.respond(404, "Not Found\n")

    def redirect(self, connection: Responder, url: str, status: int = 308) -> Response:
        """A werkzeug rule's redirect: ``status`` (werkzeug's, 308) to ``url``."""
        response = connection.respond(status, f"Moved to {url}\n")
        response.headers["Location"] = url
        return response

    def matched(self, connection: Responder) -> tuple[H, dict[str, Any]]:
        """The handler and parameters ``route_request()`` found for ``connection``."""
        return self._matched.pop(connection)


#: A ``Router`` class (or factory) of an I/O layer.
RouterT = TypeVar("RouterT", bound=BaseRouter[Any])


def build_router(
    create_router: Callable[[Any, str | None, str], RouterT],
    routes: Routes[Any],
    server_name: str | None,
    ssl: Any,
    kwargs: dict[str, Any],
) -> tuple[RouterT, Any]:
    """What ``route()`` does before ``serve()``: ``(router, process_request given)``.

    Takes the ``process_request`` out of ``kwargs`` (the layer runs it
    before the router) and puts an ``SSLContext`` given as ``ssl`` in.
    ``ssl=True`` (websockets' option for TLS ended by a reverse proxy) only
    makes a werkzeug ``Map``'s redirects ``wss://``; an ``SSLContext`` serves
    TLS and makes them ``wss://`` too; ``None`` or ``False``: ``ws://``, no TLS.
    """
    if ssl is not None and not isinstance(ssl, bool):
        kwargs["ssl"] = ssl
    router = create_router(routes, server_name, "wss" if ssl else "ws")
    return router, kwargs.pop("process_request", None)
