"""HTTP headers: a case-insensitive multi-dict and the WebSocket header grammars.

RFC 6455 section 4 and RFC 7230 section 3.2 define the grammars; RFC 7692
section 5 the ``Sec-WebSocket-Extensions`` one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from .exceptions import InvalidHeader

__all__ = [
    "ExtensionHeader",
    "ExtensionParameter",
    "Headers",
    "build_extension_list",
    "parse_extension_list",
    "parse_token_list",
]

ExtensionParameter = tuple[str, "str | None"]
ExtensionHeader = tuple[str, list[ExtensionParameter]]

# RFC 7230 section 3.2.6: token = 1*tchar
_TOKEN_STR = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


class Headers:
    """HTTP headers: ordered, repeatable, looked up case-insensitively.

    ``headers["Name"]`` returns the only value of a header and raises KeyError
    when it is missing or repeated; ``get_all()`` returns every value.
    """

    # One flat list, name, value, name, value...: no tuple per header and no
    # lower-cased index. Lookups scan it (at most 128 headers, read during the
    # handshake); every open connection keeps its request and response, so
    # their size counts.
    __slots__ = ("_flat",)

    def __init__(self, items: Iterable[tuple[str, str]] | None = None) -> None:
        self._flat: list[str] = []
        if items is not None:
            for name, value in items:
                self._flat += (name, value)

    @classmethod
    def from_flat(cls, flat: list[str]) -> Headers:
        """Headers from ``[name, value, name, value...]``, taken as is (no copy)."""
        headers = cls()
        headers._flat = flat
        return headers

    def __setitem__(self, name: str, value: str) -> None:
        """Add a header; an existing header of the same name is kept."""
        self._flat += (name, value)

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if len(values) != 1:
            raise KeyError(f"{name} appears {len(values)} times" if values else name)
        return values[0]

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        flat = self._flat
        kept = [(n, v) for n, v in zip(flat[::2], flat[1::2], strict=True) if n.lower() != key]
        if len(kept) * 2 == len(flat):
            raise KeyError(name)
        self._flat = [part for pair in kept for part in pair]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(n.lower() == key for n in self._flat[::2])

    def __iter__(self) -> Iterator[str]:
        return iter(self._flat[::2])

    def __len__(self) -> int:
        return len(self._flat) // 2

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._flat == other._flat

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"

    def __str__(self) -> str:
        flat = self._flat
        return "".join([f"{flat[i]}: {flat[i + 1]}\r\n" for i in range(0, len(flat), 2)]) + "\r\n"

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of a header, joined with ", " when it appears several times."""
        values = self.get_all(name)
        if not values:
            return default
        return ", ".join(values)

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, in order; an empty list when it is missing."""
        key = name.lower()
        flat = self._flat
        return [flat[i + 1] for i in range(0, len(flat), 2) if flat[i].lower() == key]

    def index(self) -> dict[str, list[str]]:
        """Every header's values by lower-cased name, built in one pass.

        For code that looks up many headers, e.g. the opening handshake's
        checks: one scan instead of one per lookup. Not kept: an open
        connection's headers stay a flat list.
        """
        index: dict[str, list[str]] = {}
        flat = self._flat
        for i in range(0, len(flat), 2):
            key = flat[i].lower()
            values = index.get(key)
            if values is None:
                index[key] = [flat[i + 1]]
            else:
                values.append(flat[i + 1])
        return index

    def items(self) -> list[tuple[str, str]]:
        """Every (name, value) pair, in order."""
        flat = self._flat
        return list(zip(flat[::2], flat[1::2], strict=True))

    def copy(self) -> Headers:
        return Headers(self.items())

    def update(self, items: Iterable[tuple[str, str]]) -> None:
        for name, value in items:
            self[name] = value

    def serialize(self) -> bytes:
        """The header block, ending with the empty line."""
        return str(self).encode()


def is_token(value: str) -> bool:
    return _TOKEN_STR.fullmatch(value) is not None


def parse_token_list(values: list[str], header: str) -> list[str]:
    """Parse ``1#token`` (RFC 7230 section 7): comma lists, empty elements allowed.

    Tokens are returned as written; compare them case-insensitively.
    """
    tokens = []
    for value in values:
        for item in value.split(","):
            item = item.strip(" \t")
            if not item:
                continue
            if not is_token(item):
                raise InvalidHeader(header, value)
            tokens.append(item)
    return tokens


def _parse_param_value(raw: str, header: str, full: str) -> str:
    raw = raw.strip(" \t")
    if raw.startswith('"'):
        match = _QUOTED.fullmatch(raw)
        if match is None:
            raise InvalidHeader(header, full)
        unquoted = re.sub(r"\\(.)", r"\1", match.group(1))
        # RFC 6455 section 9.1: a quoted-string value must be a token after unescaping.
        if not is_token(unquoted):
            raise InvalidHeader(header, full)
        return unquoted
    if not is_token(raw):
        raise InvalidHeader(header, full)
    return raw


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    if '"' not in text:
        # The usual case (quoted values are rare): no character-by-character scan.
        return text.split(sep)
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def parse_extension_list(values: list[str]) -> list[ExtensionHeader]:
    """Parse ``Sec-WebSocket-Extensions`` (RFC 6455 section 9.1).

    ``permessage-deflate; client_max_window_bits, x-foo; a=1`` gives
    ``[("permessage-deflate", [("client_max_window_bits", None)]), ("x-foo", [("a", "1")])]``.
    """
    header = "Sec-WebSocket-Extensions"
    result: list[ExtensionHeader] = []
    for value in values:
        for item in _split_outside_quotes(value, ","):
            if not item.strip(" \t"):
                continue
            name, *raw_params = _split_outside_quotes(item, ";")
            name = name.strip(" \t")
            if not is_token(name):
                raise InvalidHeader(header, value)
            params: list[ExtensionParameter] = []
            for raw in raw_params:
                key, eq, raw_value = raw.partition("=")
                key = key.strip(" \t")
                if not is_token(key):
                    raise InvalidHeader(header, value)
                params.append((key, _parse_param_value(raw_value, header, value) if eq else None))
            result.append((name, params))
    return result


def build_extension_list(extensions: Iterable[ExtensionHeader]) -> str:
    """The inverse of ``parse_extension_list``."""
    return ", ".join(
        "; ".join([name] + [key if value is None else f"{key}={value}" for key, value in params])
        for name, params in extensions
    )
