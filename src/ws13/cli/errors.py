"""One wording for every ``ws13`` command that connects (``connect``, ``sub``, ``pub``).

``connect_failed(url, exc)`` turns whatever opening a connection raised into a
``ConnectFailed``: the one line printed after ``ws13: error:``, the exit status
(2 for a bad URL or option, else 1), and whether ``--reconnect`` may try again.

* a bad URL: ``'http://x/' isn't a valid WebSocket URI: scheme isn't ws or wss`` (2);
* a name that doesn't resolve: ``cannot connect to URL: could not resolve host HOST``;
* a refused connection: ``cannot connect to URL: Connection refused``;
* through a proxy: ``cannot connect to proxy PROXY: Connection refused``, or the
  proxy's refusal ``proxy rejected connection: HTTP 407 Proxy Authentication Required``;
* a redirect not followed: ``redirect not followed: more than 10 redirects (HTTP 302)``;
* an HTTP answer other than 101: ``server rejected the connection: HTTP 404 Not Found``;
* TLS: ``TLS error: CERTIFICATE_VERIFY_FAILED``; a ``wss://`` URL whose server
  answers in plain HTTP: ``... the server answered with plain HTTP, not TLS: ...``;
* no answer in time: ``timed out connecting to URL``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import socket
import ssl
from collections.abc import Awaitable
from typing import TypeVar

from ..exceptions import (
    InvalidHandshake,
    InvalidProxy,
    InvalidProxyStatus,
    InvalidRedirect,
    InvalidStatus,
    InvalidURI,
)
from ..proxy import parse_proxy
from ..uri import parse_uri

__all__ = [
    "NOT_TLS_REASONS",
    "PLAIN_HTTP_PROBE_DELAY",
    "ConnectFailed",
    "answers_plain_http",
    "connect_failed",
    "not_tls_message",
    "os_error_reason",
    "unless_plain_http",
]

#: Seconds a ``wss://`` opening handshake may go unanswered before the CLI
#: asks the port, in plain HTTP, whether it is a ``ws://`` server.
PLAIN_HTTP_PROBE_DELAY = 1.0
#: Seconds the plain HTTP question may take.
PLAIN_HTTP_PROBE_TIMEOUT = 2.0
#: OpenSSL's reasons when the bytes that came back aren't TLS records.
NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)

T = TypeVar("T")

_ERRNO = re.compile(r"\[Errno (-?\d+)\]")


class ConnectFailed(Exception):
    """Connecting failed; ``str()`` is the one-line message, ``status`` the exit status.

    ``retry`` tells ``--reconnect`` whether trying again may help.
    """

    def __init__(self, message: str, status: int = 1, retry: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retry = retry


def _host(url: str) -> str:
    try:
        return parse_uri(url).host
    except InvalidURI:
        return url


def os_error_reason(exc: OSError, host: str) -> str:
    """A short reason for a failed connect: one wording whatever raised it.

    A resolver error says ``could not resolve host HOST`` (``os.strerror`` knows
    nothing of ``getaddrinfo``'s negative codes: it said "Unknown error -2");
    other errors are ``os.strerror``'s sentence (``Connection refused``);
    asyncio's "Multiple exceptions: [Errno 111] ..., [Errno 111] ..." (every
    address of the host tried) gives that sentence when they all agree.
    """
    if isinstance(exc, socket.gaierror):
        return f"could not resolve host {host}"
    code = exc.errno
    if code is None:
        codes = {int(found) for found in _ERRNO.findall(str(exc))}
        if len(codes) == 1:
            code = codes.pop()
    if code is None:
        return str(exc) or type(exc).__name__
    if code < 0:  # a getaddrinfo code that came without its gaierror type
        return f"could not resolve host {host}"
    if code == errno.ECONNREFUSED:
        return "Connection refused"
    return os.strerror(code)


def not_tls_message(url: str) -> str:
    """The message for a ``wss://`` URL whose server speaks plain HTTP."""
    plain = "ws://" + url.partition("://")[2]
    return f"cannot connect to {url}: the server answered with plain HTTP, not TLS (is it {plain}?)"


def connect_failed(url: str, exc: BaseException, proxy: str | None = None) -> ConnectFailed:
    """The ``ConnectFailed`` for ``exc``, raised while connecting to ``url``
    (through ``proxy``, a proxy URL, if given)."""
    if isinstance(exc, ConnectFailed):
        return exc
    if isinstance(exc, ssl.SSLError):
        # Before ValueError and OSError: SSLCertVerificationError is both.
        reason = exc.reason or str(exc)
        if reason in NOT_TLS_REASONS:
            return ConnectFailed(
                f"TLS error: {reason}: the server didn't answer in TLS (is it a ws:// server?)",
                retry=False,
            )
        return ConnectFailed(f"TLS error: {reason}", retry=False)
    if isinstance(exc, (InvalidURI, ValueError)):
        return ConnectFailed(str(exc), 2, retry=False)
    if isinstance(exc, InvalidProxyStatus):
        return ConnectFailed(str(exc), retry=exc.status >= 500)
    if isinstance(exc, InvalidRedirect):
        return ConnectFailed(str(exc), retry=False)
    if isinstance(exc, InvalidStatus):
        phrase = exc.response.reason_phrase if exc.response is not None else ""
        return ConnectFailed(
            f"server rejected the connection: HTTP {exc.status} {phrase}".rstrip(),
            retry=exc.status >= 500,
        )
    if isinstance(exc, InvalidHandshake):
        return ConnectFailed(f"opening handshake failed: {exc}")
    if isinstance(exc, TimeoutError):
        return ConnectFailed(f"timed out connecting to {url}")
    if isinstance(exc, OSError) and proxy is not None:
        try:
            where = parse_proxy(proxy)
        except InvalidProxy:
            return ConnectFailed(f"cannot connect to proxy: {exc}")
        reason = os_error_reason(exc, where.host)
        return ConnectFailed(f"cannot connect to proxy {where}: {reason}")
    if isinstance(exc, OSError):
        return ConnectFailed(f"cannot connect to {url}: {os_error_reason(exc, _host(url))}")
    return ConnectFailed(f"cannot connect to {url}: {exc}")


async def answers_plain_http(url: str) -> bool:
    """Whether the server of ``url`` answers a plain HTTP request with HTTP.

    For a ``wss://`` URL whose TLS handshake goes unanswered: a ``ws://``
    server reads the TLS ClientHello as the start of an HTTP request and
    waits for the rest of it until its own timeout.
    """
    try:
        uri = parse_uri(url)
    except InvalidURI:
        return False
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    try:
        async with asyncio.timeout(PLAIN_HTTP_PROBE_TIMEOUT):
            reader, writer = await asyncio.open_connection(uri.host, uri.port)
            try:
                writer.write(
                    f"GET / HTTP/1.1\r\nHost: {host}:{uri.port}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                answer = await reader.read(5)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False
    return answer == b"HTTP/"


async def unless_plain_http(opening: Awaitable[T], url: str) -> T:
    """Await ``opening``; for ``wss://``, fail fast when the server speaks plain HTTP.

    A ``ws://`` server reads a TLS ClientHello as the start of an HTTP request
    and waits for the rest: the TLS handshake would only end with the open
    timeout. If it is still unanswered after ``PLAIN_HTTP_PROBE_DELAY``
    seconds, ask the port in plain HTTP; an HTTP answer raises ConnectFailed.
    """
    if not url.lower().startswith("wss:"):
        return await opening
    task = asyncio.ensure_future(opening)
    done, _ = await asyncio.wait({task}, timeout=PLAIN_HTTP_PROBE_DELAY)
    if not done and await answers_plain_http(url) and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ConnectFailed(not_tls_message(url), retry=False)
    return await task
