"""Tests for ws13.routing: patterns, matching and the 404 / redirect answers, no I/O."""

from __future__ import annotations

import gc
import uuid
import weakref
from typing import Any

import pytest
from werkzeug.routing import Map, Rule

from ws13.http11 import Request, Response
from ws13.routing import BaseRouter, Pattern, build_router


class Peer:
    """What a router needs of a connection: ``respond()``."""

    def respond(self, status: int, text: str) -> Response:
        return Response.text(status, text)


def request(path: str, host: str | None = "chat.test") -> Request:
    head = f"GET {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host else "") + "\r\n"
    parsed = Request.parse(head.encode())
    assert parsed is not None
    return parsed[0]


ROUTES = {"/": "lobby", "/rooms/new": "new", "/rooms/{room}": "room", "/u/{id:int}": "user"}


class TestPattern:
    def test_converters(self) -> None:
        key = uuid.uuid4()
        assert Pattern("/{x}").match("/a%20b") == {"x": "a b"}
        assert Pattern("/{x:str}").match("/a%2Fb") == {"x": "a/b"}  # decoded after matching
        assert Pattern("/{n:int}").match("/007") == {"n": 7}
        assert Pattern("/{n:int}").match("/-1") is None
        assert Pattern("/{k:uuid}").match(f"/{key}") == {"k": key}
        assert Pattern("/{k:uuid}").match("/42") is None
        assert Pattern("/f/{p:path}").match("/f/a/b/") == {"p": "a/b/"}
        assert Pattern("/f/{p:path}").match("/f/") is None

    def test_whole_path_and_literals(self) -> None:
        assert Pattern("/rooms").match("/rooms") == {}
        assert Pattern("/rooms").match("/rooms/") is None
        assert Pattern("/a+b").match("/a+b") == {}
        assert Pattern("/a+b").match("/aab") is None

    @pytest.mark.parametrize(
        ("pattern", "message"),
        [
            ("rooms", "starts with '/'"),
            ("/{x:float}", "unknown converter"),
            ("/{x}/{x:int}", "used twice"),
            ("/{x", "malformed"),
            ("/x}", "malformed"),
        ],
    )
    def test_errors(self, pattern: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            Pattern(pattern)


class TestBaseRouter:
    def test_first_match_wins_and_is_remembered(self) -> None:
        router: BaseRouter[str] = BaseRouter(ROUTES)
        peer = Peer()
        assert router.route_request(peer, request("/rooms/new?x=1")) is None
        assert router.matched(peer) == ("new", {})
        assert router.route_request(peer, request("/u/41")) is None
        assert router.matched(peer) == ("user", {"id": 41})

    def test_pairs(self) -> None:
        router: BaseRouter[str] = BaseRouter([("/{a}", "one"), ("/x", "never")])
        assert router.match("/x") == ("one", {"a": "x"})
        assert router.match("/x/y") is None

    def test_not_found(self) -> None:
        router: BaseRouter[str] = BaseRouter(ROUTES)
        peer = Peer()
        response = router.route_request(peer, request("/rooms/"))
        assert response is not None
        assert (response.status_code, response.body) == (404, b"Not Found\n")
        with pytest.raises(KeyError):
            router.matched(peer)

    def test_a_connection_that_goes_away_leaves_nothing(self) -> None:
        router: BaseRouter[str] = BaseRouter(ROUTES)
        peer = Peer()
        router.route_request(peer, request("/"))  # matched, never handled
        gone = weakref.ref(peer)
        del peer
        gc.collect()
        assert gone() is None  # the router doesn't keep it alive

    def test_werkzeug_map(self) -> None:
        url_map = Map([Rule("/u/<int:id>", endpoint="user"), Rule("/dir/", endpoint="dir")])
        router: BaseRouter[Any] = BaseRouter(url_map)
        peer = Peer()
        assert router.route_request(peer, request("/u/3?q=1")) is None
        assert router.matched(peer) == ("user", {"id": 3})
        missing = router.route_request(peer, request("/nope"))
        assert missing is not None
        assert missing.status_code == 404
        moved = router.route_request(peer, request("/dir"))
        assert moved is not None
        assert (moved.status_code, moved.headers["Location"]) == (308, "ws://chat.test/dir/")
        assert moved.body == b"Moved to ws://chat.test/dir/\n"

    def test_werkzeug_server_name_and_scheme(self) -> None:
        url_map = Map([Rule("/dir/", endpoint="dir")])
        for router, host, location in [
            (BaseRouter(url_map, "example.org", "wss"), "chat.test", "wss://example.org/dir/"),
            (BaseRouter(url_map), None, "ws://localhost/dir/"),
        ]:
            moved = router.route_request(Peer(), request("/dir", host))
            assert moved is not None
            assert moved.headers["Location"] == location


def test_build_router() -> None:
    context = object()
    hook = object()
    for ssl, scheme, kwargs_after in [
        (None, "ws", {"port": 1}),
        (False, "ws", {"port": 1}),
        (True, "wss", {"port": 1}),  # TLS ended in front: no SSLContext for serve()
        (context, "wss", {"port": 1, "ssl": context}),
    ]:
        kwargs = {"port": 1, "process_request": hook}
        router, before = build_router(BaseRouter, ROUTES, "example.org", ssl, kwargs)
        assert isinstance(router, BaseRouter)
        assert (router.url_scheme, router.server_name) == (scheme, "example.org")
        assert (before, kwargs) == (hook, kwargs_after)
