"""Proxies, without I/O: which proxy to use, the ``CONNECT`` request, the proxy's answer.

A client reaches a server through a proxy in one of two ways:

* an HTTP proxy (``http://`` or ``https://``, the latter with TLS to the
  proxy): the client sends ``CONNECT host:port HTTP/1.1`` and, once the proxy
  answers 2xx, the connection is a tunnel to the server (RFC 9110 section
  9.3.6);
* a SOCKS proxy (``socks5h://``, ``socks5://``, ``socks4a://``, ``socks4://``):
  the I/O layer hands the handshake to python-socks (the ``ws13[proxy]`` extra).

``socks5h`` and ``socks4a`` let the proxy resolve the server's name;
``socks5`` and ``socks4`` resolve it on the client.

Default ports: 80 for ``http``, 443 for ``https``, 1080 for SOCKS.
"""

from __future__ import annotations

import base64
import dataclasses
import urllib.parse
import urllib.request

from .exceptions import InvalidMessage, InvalidProxy, InvalidProxyMessage, InvalidProxyStatus
from .headers import Headers
from .http11 import Response, _parse_headers, _split_head
from .uri import WebSocketURI
from .version import USER_AGENT

__all__ = [
    "PROXY_SCHEMES",
    "Proxy",
    "get_proxy",
    "parse_connect_response",
    "parse_proxy",
    "prepare_connect_request",
]

#: Every proxy scheme ``parse_proxy()`` accepts.
PROXY_SCHEMES = ("http", "https", "socks5h", "socks5", "socks4a", "socks4")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SOCKS_PORT = 1080


@dataclasses.dataclass(slots=True, frozen=True)
class Proxy:
    """A parsed proxy URL.

    Attributes:
        scheme: one of ``PROXY_SCHEMES``.
        host: host name (lower case, IDNA-encoded) or IP address, without brackets.
        port: explicit, or the scheme's default (80, 443, 1080 for SOCKS).
        username, password: from ``user:password@``, percent-decoded; a user
            without a password has the empty password.
    """

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)

    @property
    def user_info(self) -> tuple[str, str] | None:
        """``(username, password)``, or ``None`` without credentials."""
        if self.username is None:
            return None
        return self.username, self.password or ""

    @property
    def is_socks(self) -> bool:
        """Whether this is a SOCKS proxy (else an HTTP CONNECT proxy)."""
        return self.scheme.startswith("socks")

    def __str__(self) -> str:
        # Without the password: this is what logs and error messages show.
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = "" if self.username is None else f"{urllib.parse.quote(self.username)}@"
        return f"{self.scheme}://{user}{host}:{self.port}"


def parse_proxy(proxy: str) -> Proxy:
    """Parse and check a proxy URL; raise InvalidProxy if it can't be used.

    ``host:port`` without a scheme means ``http://host:port``, as for urllib
    and curl (environment variables are often written that way).
    """
    url = proxy if "://" in proxy else f"http://{proxy}"
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError as exc:
        raise InvalidProxy(proxy, str(exc)) from None
    if parsed.scheme not in PROXY_SCHEMES:
        scheme = parsed.scheme or "(none)"
        raise InvalidProxy(
            proxy, f"scheme {scheme} isn't supported; use one of {', '.join(PROXY_SCHEMES)}"
        )
    if not parsed.hostname:
        raise InvalidProxy(proxy, "hostname is missing")
    if parsed.path not in ("", "/"):
        raise InvalidProxy(proxy, "a path is meaningless for a proxy")
    if parsed.query or proxy.endswith("?"):
        raise InvalidProxy(proxy, "a query is meaningless for a proxy")
    if parsed.fragment or proxy.endswith("#"):
        raise InvalidProxy(proxy, "a fragment is meaningless for a proxy")
    host = parsed.hostname
    if not host.isascii():
        try:
            host = host.encode("idna").decode()
        except UnicodeError:
            raise InvalidProxy(proxy, "hostname isn't a valid IDNA name") from None
    if any(ch in host for ch in " \t\r\n"):
        raise InvalidProxy(proxy, "invalid hostname")
    if port is None:
        port = _DEFAULT_PORTS.get(parsed.scheme, _SOCKS_PORT)
    username = password = None
    if parsed.username is not None:
        try:
            username = urllib.parse.unquote(parsed.username, errors="strict")
            password = urllib.parse.unquote(parsed.password or "", errors="strict")
        except UnicodeDecodeError:
            raise InvalidProxy(proxy, "credentials aren't valid UTF-8") from None
    return Proxy(parsed.scheme, host, port, username, password)


def get_proxy(uri: WebSocketURI) -> str | None:
    """The proxy URL the environment configures for ``uri``, or ``None``.

    The environment is read as urllib reads it (``urllib.request.getproxies()``:
    ``*_proxy`` variables, lower case winning over upper case; on macOS and
    Windows also the system settings). In order, the first one set wins:

    * ``wss://``: ``WSS_PROXY``, ``HTTPS_PROXY``, ``SOCKS_PROXY``, ``ALL_PROXY``;
    * ``ws://``: ``WS_PROXY``, ``HTTP_PROXY``, ``SOCKS_PROXY``, ``ALL_PROXY``.

    ``NO_PROXY`` (``urllib.request.proxy_bypass()``) lists hosts reached
    directly: names match themselves and their subdomains, ``*`` matches all.
    """
    if urllib.request.proxy_bypass(f"{uri.host}:{uri.port}"):
        return None
    proxies = urllib.request.getproxies()
    schemes = ("wss", "https") if uri.secure else ("ws", "http")
    for scheme in (*schemes, "socks", "all"):
        proxy = proxies.get(scheme)
        if proxy:
            # The system settings of macOS and Windows give a SOCKS proxy as
            # socks=http://host:port; it speaks SOCKS all the same.
            if scheme == "socks" and proxy.startswith("http://"):
                proxy = "socks5h://" + proxy.removeprefix("http://")
            return proxy
    return None


def _authority(uri: WebSocketURI) -> str:
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    return f"{host}:{uri.port}"


def prepare_connect_request(
    proxy: Proxy,
    uri: WebSocketURI,
    user_agent_header: str | None = USER_AGENT,
) -> bytes:
    """The ``CONNECT`` request asking ``proxy`` for a tunnel to ``uri``'s host and port.

    Credentials in the proxy URL become a ``Proxy-Authorization: Basic`` header
    (RFC 7617); the WebSocket URI's own credentials never go to the proxy.
    """
    authority = _authority(uri)
    headers = Headers()
    # RFC 9110 section 7.2: a CONNECT request's Host is its target.
    headers["Host"] = authority
    if user_agent_header is not None:
        headers["User-Agent"] = user_agent_header
    if proxy.user_info is not None:
        credentials = ":".join(proxy.user_info).encode()
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    return f"CONNECT {authority} HTTP/1.1\r\n".encode() + headers.serialize()


def parse_connect_response(
    data: bytes | bytearray, *, eof: bool = False
) -> tuple[Response, int] | None:
    """Parse the proxy's answer to ``CONNECT`` from the start of ``data``.

    Returns ``None`` until the status line and headers are complete, then the
    response and the size of its head: any bytes after it already come from
    the server through the tunnel. The head is bounded like a handshake
    (``WS13_MAX_LINE_LENGTH``, ``WS13_MAX_NUM_HEADERS``, see ``ws13.http11``).

    Raises:
        InvalidProxyStatus: the proxy answered with a status other than 2xx
            (the response carries status, reason and headers; the body isn't read).
        InvalidProxyMessage: the answer isn't HTTP/1.x, is too large, or
            ``eof`` is true before it is complete.
    """
    try:
        split = _split_head(data)
    except InvalidMessage as exc:
        raise InvalidProxyMessage(f"invalid answer from proxy: {exc}") from None
    if split is None:
        if eof:
            raise InvalidProxyMessage("proxy closed the connection before answering CONNECT")
        return None
    head, size = split
    line, _, block = head.partition("\n")
    line = line.removesuffix("\r")
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    # Proxies answer CONNECT in HTTP/1.0 too (tinyproxy does).
    if version not in ("HTTP/1.1", "HTTP/1.0") or not (
        len(code) == 3 and code.isascii() and code.isdigit()
    ):
        raise InvalidProxyMessage(f"invalid status line from proxy: {line.encode('latin-1')!r}")
    try:
        headers = _parse_headers(block)
    except InvalidMessage as exc:
        raise InvalidProxyMessage(f"invalid answer from proxy: {exc}") from None
    response = Response(int(code), reason, headers)
    if not 200 <= response.status_code < 300:
        raise InvalidProxyStatus(response)
    return response, size
