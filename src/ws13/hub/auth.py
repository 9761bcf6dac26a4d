"""Authorization: map the opening handshake to who the client is and what it may do.

The hub calls ``authorize(request)`` once per connection, during the
handshake. It returns a ``Principal`` (an identity, presence info, and the
channel patterns it may subscribe to and publish on) or raises ``Refused``,
which answers the handshake with 401 or 403 instead of upgrading. A refused
``subscribe`` or ``publish`` later gets an error reply with code 403.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Awaitable, Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any

from ..http11 import Request
from .channels import matches

__all__ = [
    "TOKEN_COOKIE",
    "TOKEN_QUERY",
    "Authorize",
    "Principal",
    "Refused",
    "allow_all",
    "request_token",
]

#: The query parameter ``request_token()`` reads: ``/hub?token=...``.
TOKEN_QUERY = "token"
#: The cookie ``request_token()`` reads.
TOKEN_COOKIE = "ws13_token"


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who a connection is and what it may do.

    Args:
        user: an identity shown in presence (``None``: anonymous).
        info: JSON-serializable data shown in presence (a nickname...).
        subscribe: ``fnmatch`` patterns of the channels it may subscribe to
            (and read the history and presence of).
        publish: patterns of the channels it may publish on.
    """

    user: str | None = None
    info: Any = None
    subscribe: tuple[str, ...] = ("*",)
    publish: tuple[str, ...] = ("*",)

    def may_subscribe(self, channel: str) -> bool:
        return matches(channel, self.subscribe)

    def may_publish(self, channel: str) -> bool:
        return matches(channel, self.publish)


class Refused(Exception):
    """Raised by an ``Authorize`` hook to refuse the handshake.

    Args:
        status: 401 (no or bad credentials) or 403 (not allowed).
        message: the plain-text body of the refusal.
    """

    def __init__(self, status: int = 403, message: str = "Forbidden") -> None:
        if status not in (401, 403):
            raise ValueError("status must be 401 or 403")
        super().__init__(message)
        self.status = status
        self.message = message


#: ``authorize(request)`` returns a Principal (or an awaitable of one), or
#: raises Refused.
Authorize = Callable[[Request], "Principal | Awaitable[Principal]"]


def allow_all(request: Request) -> Principal:
    """The default hook: an anonymous principal that may do everything."""
    return Principal()


def request_token(request: Request) -> str | None:
    """The client's token, from the first of: ``?token=``, ``Authorization: Bearer``,
    the ``ws13_token`` cookie. Browsers can't set headers on a WebSocket, so
    they use the query or the cookie.
    """
    query = urllib.parse.urlsplit(request.path).query
    values = urllib.parse.parse_qs(query).get(TOKEN_QUERY)
    if values:
        return values[0]
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    cookie_header = request.headers.get("Cookie")
    if cookie_header is not None:
        cookie = SimpleCookie()
        try:
            cookie.load(cookie_header)
        except CookieError:
            return None
        morsel = cookie.get(TOKEN_COOKIE)
        if morsel is not None:
            return morsel.value
    return None
