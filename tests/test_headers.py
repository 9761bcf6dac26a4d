"""Tests for ws13.headers: the Headers multi-dict and the header grammars."""

from __future__ import annotations

import pytest

from ws13.exceptions import InvalidHeader
from ws13.headers import (
    Headers,
    build_extension_list,
    is_token,
    parse_extension_list,
    parse_token_list,
)


class TestHeaders:
    def make(self) -> Headers:
        return Headers([("Host", "example.com"), ("Set-Cookie", "a=1"), ("set-cookie", "b=2")])

    def test_lookup_is_case_insensitive(self) -> None:
        headers = self.make()
        assert headers["host"] == headers["HOST"] == "example.com"
        assert "hOsT" in headers
        assert headers.get("HOST") == "example.com"

    def test_getitem_missing(self) -> None:
        with pytest.raises(KeyError):
            self.make()["Upgrade"]

    def test_getitem_repeated(self) -> None:
        with pytest.raises(KeyError, match="2 times"):
            self.make()["Set-Cookie"]

    def test_get_all(self) -> None:
        headers = self.make()
        assert headers.get_all("SET-COOKIE") == ["a=1", "b=2"]
        assert headers.get_all("Upgrade") == []

    def test_index(self) -> None:
        assert self.make().index() == {"host": ["example.com"], "set-cookie": ["a=1", "b=2"]}
        assert Headers().index() == {}

    def test_from_flat(self) -> None:
        headers = Headers.from_flat(["Host", "example.com", "X", "1"])
        assert headers.items() == [("Host", "example.com"), ("X", "1")]

    def test_get_joins_repeated_values(self) -> None:
        headers = self.make()
        assert headers.get("Set-Cookie") == "a=1, b=2"
        assert headers.get("Upgrade") is None
        assert headers.get("Upgrade", "x") == "x"

    def test_setitem_appends(self) -> None:
        headers = Headers()
        headers["Connection"] = "Upgrade"
        headers["Connection"] = "keep-alive"
        assert headers.get_all("connection") == ["Upgrade", "keep-alive"]
        assert len(headers) == 2

    def test_delitem_removes_every_value(self) -> None:
        headers = self.make()
        del headers["SET-cookie"]
        assert "Set-Cookie" not in headers
        assert headers.items() == [("Host", "example.com")]
        assert len(headers) == 1

    def test_delitem_missing(self) -> None:
        with pytest.raises(KeyError):
            del Headers()["Host"]

    def test_contains_non_string(self) -> None:
        assert 42 not in self.make()

    def test_iteration_keeps_order_and_case(self) -> None:
        assert list(self.make()) == ["Host", "Set-Cookie", "set-cookie"]

    def test_items_is_a_copy(self) -> None:
        headers = self.make()
        headers.items().clear()
        assert len(headers) == 3

    def test_equality(self) -> None:
        assert self.make() == self.make()
        assert self.make() != Headers()
        assert self.make() != [("Host", "example.com")]

    def test_copy_is_independent(self) -> None:
        headers = self.make()
        copy = headers.copy()
        copy["X"] = "y"
        assert copy != headers
        assert "X" not in headers

    def test_update(self) -> None:
        headers = Headers()
        headers.update([("A", "1"), ("a", "2")])
        assert headers.get_all("A") == ["1", "2"]

    def test_repr(self) -> None:
        assert repr(Headers([("A", "1")])) == "Headers([('A', '1')])"

    def test_serialize(self) -> None:
        assert self.make().serialize() == (
            b"Host: example.com\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\n"
        )
        assert Headers().serialize() == b"\r\n"


class TestTokens:
    @pytest.mark.parametrize("value", ["websocket", "Upgrade", "x-1.2_3!#$%&'*+^`|~"])
    def test_is_token(self, value: str) -> None:
        assert is_token(value)

    @pytest.mark.parametrize("value", ["", "a b", "a,b", '"a"', "a;b", "a=b", "é", "a\tb"])
    def test_is_not_token(self, value: str) -> None:
        assert not is_token(value)


class TestSection4_1TokenLists:
    @pytest.mark.parametrize(
        ("values", "tokens"),
        [
            (["Upgrade"], ["Upgrade"]),
            (["keep-alive, Upgrade"], ["keep-alive", "Upgrade"]),
            (["keep-alive", "Upgrade"], ["keep-alive", "Upgrade"]),
            # RFC 7230 section 7: empty list elements are allowed and ignored.
            ([", ,keep-alive ,\tUpgrade,"], ["keep-alive", "Upgrade"]),
            ([""], []),
            ([], []),
        ],
    )
    def test_parse(self, values: list[str], tokens: list[str]) -> None:
        assert parse_token_list(values, "Connection") == tokens

    @pytest.mark.parametrize("value", ["a b", 'x, "y"', "web/socket"])
    def test_invalid(self, value: str) -> None:
        with pytest.raises(InvalidHeader) as exc_info:
            parse_token_list(["ok", value], "Upgrade")
        assert exc_info.value.name == "Upgrade"
        assert exc_info.value.value == value


class TestSection9_1Extensions:
    @pytest.mark.parametrize(
        ("values", "parsed"),
        [
            (["foo"], [("foo", [])]),
            (
                ["permessage-deflate; client_max_window_bits, x-foo; a=1"],
                [
                    ("permessage-deflate", [("client_max_window_bits", None)]),
                    ("x-foo", [("a", "1")]),
                ],
            ),
            (
                ["permessage-deflate ;server_no_context_takeover ; client_max_window_bits=10"],
                [
                    (
                        "permessage-deflate",
                        [("server_no_context_takeover", None), ("client_max_window_bits", "10")],
                    )
                ],
            ),
            (["a", "b; c"], [("a", []), ("b", [("c", None)])]),
            (["a,, b ,"], [("a", []), ("b", [])]),
            ([], []),
        ],
    )
    def test_parse(self, values: list[str], parsed: list[object]) -> None:
        assert parse_extension_list(values) == parsed

    def test_quoted_value(self) -> None:
        # Section 9.1: a quoted-string value must be a token once unquoted.
        assert parse_extension_list(['foo; bar="10"']) == [("foo", [("bar", "10")])]

    def test_quoted_value_with_escape(self) -> None:
        assert parse_extension_list(['foo; bar="a\\b"']) == [("foo", [("bar", "ab")])]

    def test_separators_inside_quotes(self) -> None:
        # Quotes protect separators from splitting even though the value is then refused.
        with pytest.raises(InvalidHeader):
            parse_extension_list(['foo; bar="a,b;c"'])

    @pytest.mark.parametrize(
        "value",
        [
            "; a",
            "foo; =1",
            "foo; a=",
            "foo; a=b c",
            'foo; a="b c"',
            'foo; a="unterminated',
            'foo; a="x"y',
            "fo o",
            "foo; a b",
        ],
    )
    def test_invalid(self, value: str) -> None:
        with pytest.raises(InvalidHeader) as exc_info:
            parse_extension_list([value])
        assert exc_info.value.name == "Sec-WebSocket-Extensions"

    def test_build(self) -> None:
        assert (
            build_extension_list(
                [
                    ("permessage-deflate", [("client_max_window_bits", None)]),
                    ("x-foo", [("a", "1"), ("b", None)]),
                    ("bare", []),
                ]
            )
            == "permessage-deflate; client_max_window_bits, x-foo; a=1; b, bare"
        )

    def test_build_empty(self) -> None:
        assert build_extension_list([]) == ""

    @pytest.mark.parametrize(
        "value",
        [
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits=15; server_no_context_takeover",
            "a; b=1, c, d; e",
        ],
    )
    def test_round_trip(self, value: str) -> None:
        assert build_extension_list(parse_extension_list([value])) == value
