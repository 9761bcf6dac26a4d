"""Following redirects on the opening handshake, without I/O.

A server may answer the handshake with 301, 302, 303, 307 or 308 and a
``Location`` header (RFC 9110 section 15.4). A client following it opens a new
connection to the new URI, where:

* ``Location`` may be absolute or relative to the URI that was redirected;
  ``http://`` maps to ``ws://`` and ``https://`` to ``wss://``; a fragment is
  dropped (RFC 6455 forbids them in WebSocket URIs);
* ``wss://`` to ``ws://`` is refused: it would send the rest in clear text;
* credentials (``user:password@`` of the URI, and the ``Authorization``,
  ``Cookie`` and ``Proxy-Authorization`` headers given by the program) are
  kept only while the chain stays on the origin (scheme, host and port) it
  started from; once it left, they are dropped for the rest of the chain;
* a chain is at most ``max_redirects`` long (``MAX_REDIRECTS``, 10) and never
  visits a URI twice.

A redirect that isn't followed raises ``InvalidRedirect``, an ``InvalidStatus``
carrying the redirect response.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Iterable

from .exceptions import InvalidRedirect, InvalidURI
from .http11 import Response
from .uri import WebSocketURI, parse_uri

__all__ = [
    "CREDENTIAL_HEADERS",
    "MAX_REDIRECTS",
    "REDIRECT_STATUSES",
    "Redirects",
    "is_redirect",
    "resolve_location",
    "same_origin",
    "strip_credentials",
]

#: Statuses followed: Moved Permanently, Found, See Other, Temporary and
#: Permanent Redirect.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: The default length limit of a chain of redirects.
MAX_REDIRECTS = 10

#: Request headers that carry credentials, dropped when a chain leaves its origin.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


def is_redirect(response: Response) -> bool:
    """Whether ``response`` is a redirect a client may follow."""
    return response.status_code in REDIRECT_STATUSES


def same_origin(a: WebSocketURI, b: WebSocketURI) -> bool:
    """Whether two URIs have the same scheme, host and port."""
    return (a.secure, a.host.lower(), a.port) == (b.secure, b.host.lower(), b.port)


def strip_credentials(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` without those in ``CREDENTIAL_HEADERS``."""
    return [(name, value) for name, value in headers if name.lower() not in CREDENTIAL_HEADERS]


def resolve_location(uri: WebSocketURI, response: Response) -> WebSocketURI:
    """The URI that ``response``, a redirect of a request to ``uri``, points to.

    Same origin: ``uri``'s credentials are kept unless ``Location`` has its
    own. Another origin: only ``Location``'s credentials, if any. Once
    dropped, credentials don't come back when the chain returns.

    Raises:
        InvalidRedirect: ``Location`` is missing, repeated, not a ws, wss,
            http or https URL, or leads from ``wss://`` to ``ws://``.
    """
    locations = response.headers.get_all("Location")
    if not locations:
        raise InvalidRedirect(response, "no Location header")
    if len(locations) > 1:
        raise InvalidRedirect(response, "several Location headers")
    location = locations[0]
    base = f"{'https' if uri.secure else 'http'}://{uri.host_header}{uri.path}"
    try:
        joined, _ = urllib.parse.urldefrag(urllib.parse.urljoin(base, location))
        scheme, rest = joined.split(":", 1) if ":" in joined else ("", joined)
    except ValueError as exc:
        raise InvalidRedirect(response, f"invalid Location {location!r}: {exc}") from None
    if scheme.lower() not in _SCHEMES:
        raise InvalidRedirect(response, f"Location {location!r} isn't a ws, wss, http or https URL")
    try:
        new = parse_uri(f"{_SCHEMES[scheme.lower()]}:{rest}")
    except InvalidURI as exc:
        raise InvalidRedirect(response, f"invalid Location {location!r}: {exc.msg}") from exc
    if uri.secure and not new.secure:
        raise InvalidRedirect(response, f"refusing to go from wss:// to {new}")
    if new.user is None and same_origin(uri, new):
        new = dataclasses.replace(new, user=uri.user, password=uri.password)
    return new


class Redirects:
    """The redirects of one connection attempt, from ``uri`` on.

    Call ``follow(response)`` for each redirect received; it returns the URI
    to connect to next or raises ``InvalidRedirect``.

    Attributes:
        uri: the URI to connect to now.
        count: how many redirects were followed.
        left_origin: whether the chain ever left the origin it started from;
            from then on, drop ``CREDENTIAL_HEADERS`` (``strip_credentials()``).
    """

    __slots__ = ("_origin", "_seen", "count", "left_origin", "max_redirects", "uri")

    def __init__(self, uri: WebSocketURI, *, max_redirects: int = MAX_REDIRECTS) -> None:
        if max_redirects < 0:
            raise ValueError(f"max_redirects must be 0 or more, not {max_redirects}")
        self.uri = uri
        self.max_redirects = max_redirects
        self.count = 0
        self.left_origin = False
        self._origin = uri
        self._seen = {_visit_key(uri)}

    def follow(self, response: Response) -> WebSocketURI:
        """Take the redirect ``response``; return the next URI.

        Raises:
            InvalidRedirect: see ``resolve_location()``; also when this would
                be redirect number ``max_redirects + 1``, or the next URI was
                visited already (a loop).
        """
        new = resolve_location(self.uri, response)
        if self.count >= self.max_redirects:
            raise InvalidRedirect(response, f"more than {self.max_redirects} redirects")
        key = _visit_key(new)
        if key in self._seen:
            raise InvalidRedirect(response, f"redirect loop back to {new}")
        self._seen.add(key)
        self.count += 1
        if not same_origin(self._origin, new):
            self.left_origin = True
        self.uri = new
        return new


def _visit_key(uri: WebSocketURI) -> tuple[bool, str, int, str]:
    return uri.secure, uri.host.lower(), uri.port, uri.path
