"""Tests for ws13.auth: the Authorization header, the credential check and the 401, no I/O."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ws13.auth import INVALID, MISSING, UNSUPPORTED, BasicAuth, parse_credentials, www_authenticate
from ws13.http11 import Request, Response


def basic(userpass: bytes) -> str:
    return "Basic " + base64.b64encode(userpass).decode()


def request(authorization: str | None) -> Request:
    head = "GET / HTTP/1.1\r\nHost: x\r\n"
    if authorization is not None:
        head += f"Authorization: {authorization}\r\n"
    parsed = Request.parse((head + "\r\n").encode())
    assert parsed is not None
    return parsed[0]


class TestParseCredentials:
    @pytest.mark.parametrize(
        ("authorization", "expected"),
        [
            (basic(b"alice:s3cret"), ("alice", "s3cret")),
            (basic(b"alice:pass:word"), ("alice", "pass:word")),  # the first colon splits
            (basic(b":"), ("", "")),
            ("bAsIc  " + base64.b64encode(b"a:b").decode() + " ", ("a", "b")),
            (basic("é:ü".encode()), ("é", "ü")),
        ],
    )
    def test_valid(self, authorization: str, expected: tuple[str, str]) -> None:
        assert parse_credentials(authorization) == expected

    @pytest.mark.parametrize(
        "authorization",
        ["Bearer token", "Basic", "Basic not-base64!", basic(b"no colon"), basic(b"\xff:\xfe")],
    )
    def test_unsupported(self, authorization: str) -> None:
        assert parse_credentials(authorization) is None


def test_www_authenticate_quotes_the_realm() -> None:
    assert www_authenticate("") == 'Basic realm="", charset="UTF-8"'
    assert www_authenticate('a "b" \\c') == 'Basic realm="a \\"b\\" \\\\c", charset="UTF-8"'


class TestBasicAuth:
    def test_credentials_and_refusals(self) -> None:
        auth: BasicAuth[bool] = BasicAuth("lab", credentials=("alice", "a"))
        assert auth.credentials(Response.text, request(basic(b"alice:a"))) == ("alice", "a")
        for authorization, text in [(None, MISSING), ("Digest x", UNSUPPORTED)]:
            refusal = auth.credentials(Response.text, request(authorization))
            assert isinstance(refusal, Response)
            assert (refusal.status_code, refusal.body) == (401, text.encode())
            assert refusal.headers["WWW-Authenticate"] == 'Basic realm="lab", charset="UTF-8"'
        assert auth.refuse(Response.text, INVALID).body == b"Invalid credentials\n"

    def test_constant_time_check(self) -> None:
        auth: BasicAuth[bool] = BasicAuth(credentials=[("alice", "a"), ("bob", "b\udcff")])
        check = auth.check_credentials
        assert check("alice", "a")
        assert check("bob", "b\udcff")  # any str, surrogates included
        assert not check("alice", "b")
        assert not check("alice", "")
        assert not check("carol", "a")

    def test_check_credentials_is_kept(self) -> None:
        def check(username: str, password: str) -> bool:
            return username == password

        assert BasicAuth(check_credentials=check).check_credentials is check

    @pytest.mark.parametrize(
        ("arguments", "error", "message"),
        [
            ({}, ValueError, "either"),
            ({"credentials": ("a", "b"), "check_credentials": print}, ValueError, "either"),
            ({"credentials": [("a", "b"), ("c",)]}, TypeError, "invalid credentials"),
            ({"credentials": [("a", 1)]}, TypeError, "invalid credentials"),
            ({"credentials": 42}, TypeError, "invalid credentials"),
        ],
    )
    def test_bad_arguments(
        self, arguments: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        with pytest.raises(error, match=message):
            BasicAuth(**arguments)
