"""WebSocket URIs (RFC 6455 section 3).

``ws://host[:port]/path?query`` and ``wss://...``; the default ports are 80
and 443; an empty path is ``/``; fragments are not allowed ("Fragment
identifiers are meaningless in the context of WebSocket URIs and MUST NOT be
used on these URIs.").
"""

from __future__ import annotations

import base64
import dataclasses
import urllib.parse

from .exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri"]


@dataclasses.dataclass(slots=True, frozen=True)
class WebSocketURI:
    """A parsed WebSocket URI.

    Attributes:
        secure: ``True`` for ``wss://``.
        host: host name or IP address, without brackets for IPv6.
        port: port, explicit or the scheme's default.
        path: path and query, at least ``/``; this is the request target.
        user, password: credentials from ``user:password@``, if any.
    """

    secure: bool
    host: str
    port: int
    path: str
    user: str | None = None
    password: str | None = None

    @property
    def host_header(self) -> str:
        """The value of the ``Host`` header: the port only when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == (443 if self.secure else 80):
            return host
        return f"{host}:{self.port}"

    @property
    def authorization(self) -> str | None:
        """A Basic ``Authorization`` header value made of the credentials, if any."""
        if self.user is None:
            return None
        credentials = f"{self.user}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(credentials).decode()

    def __str__(self) -> str:
        scheme = "wss" if self.secure else "ws"
        return f"{scheme}://{self.host_header}{self.path}"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse and check a ``ws://`` or ``wss://`` URI; raise InvalidURI if it is bad."""
    try:
        parsed = urllib.parse.urlsplit(uri)
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from None
    if parsed.scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "scheme isn't ws or wss")
    if parsed.fragment or uri.endswith("#"):
        raise InvalidURI(uri, "fragments aren't allowed in WebSocket URIs")
    if not parsed.hostname:
        raise InvalidURI(uri, "hostname is missing")
    try:
        port = parsed.port
    except ValueError:
        raise InvalidURI(uri, "port isn't a number between 0 and 65535") from None
    secure = parsed.scheme == "wss"
    path = parsed.path or "/"
    if parsed.query:
        path += "?" + parsed.query
    # Percent-encode what may not appear in a request target (spaces, non-ASCII)
    # and leave existing escapes and reserved characters alone.
    path = urllib.parse.quote(path, safe="/%?=&:@!$'()*+,;~-._")
    user = password = None
    if parsed.username is not None:
        user = urllib.parse.unquote(parsed.username)
        password = None if parsed.password is None else urllib.parse.unquote(parsed.password)
    host = parsed.hostname
    if any(ch in host for ch in " \t\r\n"):
        raise InvalidURI(uri, "invalid hostname")
    return WebSocketURI(
        secure,
        host,
        port if port is not None else (443 if secure else 80),
        path,
        user,
        password,
    )
