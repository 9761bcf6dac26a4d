"""Tests for ws13.redirects: where a redirect leads and when it isn't followed."""

from __future__ import annotations

import pytest

from ws13.exceptions import InvalidRedirect, InvalidStatus
from ws13.headers import Headers
from ws13.http11 import Response
from ws13.redirects import (
    Redirects,
    is_redirect,
    resolve_location,
    same_origin,
    strip_credentials,
)
from ws13.uri import parse_uri


def redirect(location: str | None, status: int = 302) -> Response:
    headers = Headers() if location is None else Headers([("Location", location)])
    return Response(status, "Found", headers)


class TestIsRedirect:
    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
    def test_followed(self, status: int) -> None:
        assert is_redirect(redirect("/", status))

    @pytest.mark.parametrize("status", [200, 300, 304, 400, 101, 500])
    def test_not_followed(self, status: int) -> None:
        assert not is_redirect(redirect("/", status))


class TestResolveLocation:
    @pytest.mark.parametrize(
        ("uri", "location", "expected"),
        [
            ("ws://a.example/x/y", "/z", "ws://a.example/z"),
            ("ws://a.example/x/y", "z?q=1", "ws://a.example/x/z?q=1"),
            ("ws://a.example:8000/x", "../up", "ws://a.example:8000/up"),
            ("ws://a.example/", "//b.example:81/p", "ws://b.example:81/p"),
            ("wss://a.example/", "//b.example/p", "wss://b.example/p"),
            ("ws://a.example/", "ws://b.example/p", "ws://b.example/p"),
            ("ws://a.example/", "wss://b.example/p", "wss://b.example/p"),
            ("ws://a.example/", "http://b.example/p", "ws://b.example/p"),
            ("ws://a.example/", "https://b.example/p", "wss://b.example/p"),
            ("wss://a.example/", "HTTPS://B.example/p", "wss://b.example/p"),
            ("ws://a.example/", "/p#fragment", "ws://a.example/p"),
            ("ws://[::1]:9000/", "/v6", "ws://[::1]:9000/v6"),
        ],
    )
    def test_targets(self, uri: str, location: str, expected: str) -> None:
        assert str(resolve_location(parse_uri(uri), redirect(location))) == expected

    def test_same_origin_keeps_credentials(self) -> None:
        new = resolve_location(parse_uri("ws://u:p@a.example/x"), redirect("/y"))
        assert (new.user, new.password) == ("u", "p")
        new = resolve_location(parse_uri("ws://u:p@a.example/x"), redirect("ws://a.example/y"))
        assert (new.user, new.password) == ("u", "p")

    def test_another_origin_drops_credentials(self) -> None:
        base = parse_uri("ws://u:p@a.example/x")
        for location in ("ws://b.example/", "ws://a.example:81/", "wss://a.example/"):
            new = resolve_location(base, redirect(location))
            assert (new.user, new.password) == (None, None)
            assert new.authorization is None

    def test_location_credentials(self) -> None:
        new = resolve_location(parse_uri("ws://u:p@a.example/"), redirect("ws://v:q@b.example/"))
        assert (new.user, new.password) == ("v", "q")

    @pytest.mark.parametrize(
        ("location", "message"),
        [
            (None, "no Location header"),
            ("ftp://b.example/", "isn't a ws, wss, http or https URL"),
            ("mailto:x@y", "isn't a ws, wss, http or https URL"),
            ("http://:80/", "hostname is missing"),
            ("http://b.example:99999/", "port isn't a number"),
            ("http://[::1/", "Invalid IPv6 URL"),
        ],
    )
    def test_bad_location(self, location: str | None, message: str) -> None:
        response = redirect(location, 301)
        with pytest.raises(InvalidRedirect, match=message) as info:
            resolve_location(parse_uri("ws://a.example/"), response)
        assert info.value.response is response
        assert isinstance(info.value, InvalidStatus)
        assert info.value.status == 301

    def test_several_locations(self) -> None:
        response = Response(302, "Found", Headers([("Location", "/a"), ("Location", "/b")]))
        with pytest.raises(InvalidRedirect, match="several Location headers"):
            resolve_location(parse_uri("ws://a.example/"), response)

    @pytest.mark.parametrize("location", ["ws://a.example/", "http://a.example/"])
    def test_downgrade_refused(self, location: str) -> None:
        with pytest.raises(InvalidRedirect) as info:
            resolve_location(parse_uri("wss://a.example/"), redirect(location))
        assert str(info.value) == (
            "redirect not followed: refusing to go from wss:// to ws://a.example/ (HTTP 302)"
        )


class TestRedirects:
    def test_chain(self) -> None:
        chain = Redirects(parse_uri("ws://a.example/1"))
        assert str(chain.follow(redirect("/2"))) == "ws://a.example/2"
        assert not chain.left_origin
        assert str(chain.follow(redirect("ws://b.example/3"))) == "ws://b.example/3"
        assert chain.left_origin
        assert str(chain.follow(redirect("ws://a.example/4"))) == "ws://a.example/4"
        # Leaving the origin is for good: it might come back through anyone.
        assert chain.left_origin
        assert chain.count == 3
        assert str(chain.uri) == "ws://a.example/4"

    def test_credentials_dont_come_back(self) -> None:
        chain = Redirects(parse_uri("ws://u:p@a.example/1"))
        assert chain.follow(redirect("/2")).user == "u"
        assert chain.follow(redirect("ws://b.example/")).user is None
        assert chain.follow(redirect("ws://a.example/3")).user is None

    def test_loop(self) -> None:
        chain = Redirects(parse_uri("ws://a.example/1"))
        chain.follow(redirect("/2"))
        with pytest.raises(InvalidRedirect, match=r"redirect loop back to ws://a.example/1"):
            chain.follow(redirect("/1"))

    def test_self_redirect_is_a_loop(self) -> None:
        with pytest.raises(InvalidRedirect, match="redirect loop"):
            Redirects(parse_uri("ws://a.example/1")).follow(redirect("/1"))

    def test_too_many(self) -> None:
        chain = Redirects(parse_uri("ws://a.example/0"), max_redirects=3)
        for n in range(1, 4):
            chain.follow(redirect(f"/{n}"))
        response = redirect("/4", 307)
        with pytest.raises(InvalidRedirect) as info:
            chain.follow(response)
        assert str(info.value) == "redirect not followed: more than 3 redirects (HTTP 307)"
        assert info.value.response is response

    def test_default_limit_is_ten(self) -> None:
        chain = Redirects(parse_uri("ws://a.example/0"))
        for n in range(1, 11):
            chain.follow(redirect(f"/{n}"))
        with pytest.raises(InvalidRedirect, match="more than 10 redirects"):
            chain.follow(redirect("/11"))

    def test_zero_follows_none(self) -> None:
        with pytest.raises(InvalidRedirect, match="more than 0 redirects"):
            Redirects(parse_uri("ws://a.example/"), max_redirects=0).follow(redirect("/x"))

    def test_negative_limit(self) -> None:
        with pytest.raises(ValueError, match="max_redirects must be 0 or more"):
            Redirects(parse_uri("ws://a.example/"), max_redirects=-1)


def test_same_origin() -> None:
    assert same_origin(parse_uri("ws://A.example/x"), parse_uri("ws://a.example:80/y"))
    assert not same_origin(parse_uri("ws://a.example/"), parse_uri("wss://a.example/"))
    assert not same_origin(parse_uri("ws://a.example/"), parse_uri("ws://a.example:81/"))


def test_strip_credentials() -> None:
    headers = [
        ("Authorization", "x"),
        ("X-Keep", "1"),
        ("cookie", "c"),
        ("Proxy-Authorization", "p"),
    ]
    assert strip_credentials(headers) == [("X-Keep", "1")]
