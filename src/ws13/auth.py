"""HTTP Basic Authentication (RFC 7617), without I/O: what ``basic_auth()`` in
``ws13.asyncio.server`` and ``ws13.sync.server`` share.

``BasicAuth`` reads the credentials of a handshake request, checks given
``(username, password)`` pairs in constant time, and builds the
``401 Unauthorized`` answer with its ``WWW-Authenticate`` challenge; each I/O
layer's ``basic_auth()`` calls ``check_credentials`` its own way (awaited or
not) and sets ``connection.username``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar, cast

from .http11 import Request, Response

__all__ = [
    "BasicAuth",
    "INVALID",
    "MISSING",
    "UNSUPPORTED",
    "parse_credentials",
    "www_authenticate",
]

#: The one-line bodies of the 401 answers.
MISSING = "Missing credentials\n"
UNSUPPORTED = "Unsupported credentials\n"
INVALID = "Invalid credentials\n"

#: What ``check_credentials`` returns: ``bool`` (sync), or an awaitable too (asyncio).
R = TypeVar("R")


def www_authenticate(realm: str) -> str:
    """The challenge: ``Basic realm="...", charset="UTF-8"``, quoted (RFC 7235 section 2.2)."""
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{quoted}", charset="UTF-8"'


def parse_credentials(authorization: str) -> tuple[str, str] | None:
    """``(username, password)`` from an Authorization header value.

    ``None`` unless it is ``Basic`` (any case) with the base64 of UTF-8
    ``username:password`` (the password may hold colons; either may be empty).
    """
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    if not colon:
        return None
    return username, password


def _is_pair(value: object) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], str)
    )


def _constant_time_check(
    credentials: tuple[str, str] | Iterable[tuple[str, str]],
) -> Callable[[str, str], bool]:
    """A ``check_credentials`` for fixed pairs; TypeError for what isn't pairs of str."""
    if _is_pair(credentials):
        pairs = [cast(tuple[str, str], credentials)]
    elif isinstance(credentials, Iterable):
        pairs = list(cast(Iterable[tuple[str, str]], credentials))
        if not all(_is_pair(pair) for pair in pairs):
            raise TypeError(f"invalid credentials argument: {credentials}")
    else:
        raise TypeError(f"invalid credentials argument: {credentials}")
    passwords = {
        username.encode(errors="surrogateescape"): password.encode(errors="surrogateescape")
        for username, password in pairs
    }

    def check(username: str, password: str) -> bool:
        expected = passwords.get(username.encode(errors="surrogateescape"))
        if expected is None:
            return False
        # compare_digest: the time taken doesn't tell how much of a password was right.
        return hmac.compare_digest(expected, password.encode(errors="surrogateescape"))

    return check


class BasicAuth(Generic[R]):
    """The I/O-free half of ``basic_auth()``.

    Give either ``credentials``, a ``(username, password)`` pair or pairs,
    compared in constant time (``hmac.compare_digest``, so the time taken
    doesn't tell how much of a password was right), or
    ``check_credentials(username, password)`` returning whether they are
    valid (the I/O layer says whether it may be a coroutine function).

    A request that passes gives its ``(username, password)``; the layer
    sets ``connection.username``. Otherwise the answer is
    ``401 Unauthorized`` with ``WWW-Authenticate: Basic realm="<realm>",
    charset="UTF-8"`` and a one-line body: "Missing credentials" (no
    Authorization header), "Unsupported credentials" (not Basic, or not
    base64 of UTF-8 ``user:password``) or "Invalid credentials". ``realm``
    should be ASCII (RFC 7235 leaves other characters undefined).

    Raises ValueError unless exactly one of ``credentials`` and
    ``check_credentials`` is given; TypeError for credentials that aren't
    pairs of str.
    """

    def __init__(
        self,
        realm: str = "",
        credentials: tuple[str, str] | Iterable[tuple[str, str]] | None = None,
        check_credentials: Callable[[str, str], R] | None = None,
    ) -> None:
        if (credentials is None) == (check_credentials is None):
            raise ValueError("provide either credentials or check_credentials")
        if check_credentials is None:
            assert credentials is not None  # help mypy
            check_credentials = cast(Callable[[str, str], R], _constant_time_check(credentials))
        #: ``check_credentials(username, password)``, given or made from ``credentials``.
        self.check_credentials = check_credentials
        self.challenge = www_authenticate(realm)

    def credentials(
        self, respond: Callable[[int, str], Response], request: Request
    ) -> tuple[str, str] | Response:
        """The request's ``(username, password)`` to check, or the 401 to answer.

        ``respond`` is the connection's ``respond(status, text)``.
        """
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return self.refuse(respond, MISSING)
        pair = parse_credentials(authorization)
        if pair is None:
            return self.refuse(respond, UNSUPPORTED)
        return pair

    def refuse(self, respond: Callable[[int, str], Response], text: str) -> Response:
        """``401 Unauthorized`` with the challenge and the one-line ``text``."""
        response = respond(401, text)
        response.headers["WWW-Authenticate"] = self.challenge
        return response
