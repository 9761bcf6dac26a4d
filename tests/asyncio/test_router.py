"""Tests for ws13.asyncio.router: route(), Router and the path patterns."""

from __future__ import annotations

import asyncio
import os
import tempfile
import unittest
import uuid
from typing import Any

import pytest
from werkzeug.routing import Map, Rule

from tests.asyncio.helpers import TIMEOUT, wait
from tests.asyncio.test_server import http_get
from ws13.asyncio.client import connect, unix_connect
from ws13.asyncio.router import Pattern, Router, route, unix_route
from ws13.asyncio.server import Server, ServerConnection
from ws13.exceptions import InvalidStatus
from ws13.http11 import Request, Response


async def lobby(connection: ServerConnection) -> None:
    await connection.send("lobby")


async def new_room(connection: ServerConnection) -> None:
    await connection.send("new room")


async def room(connection: ServerConnection, **params: Any) -> None:
    await connection.send(f"room {params!r}")


async def user(connection: ServerConnection, id: int) -> None:
    await connection.send(f"user {id + 1}")


ROUTES = {
    "/": lobby,
    "/rooms/new": new_room,
    "/rooms/{room}": room,
    "/rooms/{room}/{since:int}": room,
    "/users/{id:int}": user,
    "/files/{rest:path}": room,
    "/items/{key:uuid}": room,
}


class RouteTests(unittest.IsolatedAsyncioTestCase):
    async def start(self, routes: Any = ROUTES, **kwargs: Any) -> Server:
        server = await route(routes, "127.0.0.1", 0, **kwargs)
        self.addAsyncCleanup(self._stop, server)
        return server

    async def _stop(self, server: Server) -> None:
        server.close()
        await asyncio.wait_for(server.wait_closed(), TIMEOUT)

    async def first_message(self, server: Server, path: str) -> str | bytes:
        client = await wait(connect(f"ws://127.0.0.1:{server.port}{path}"))
        try:
            return await wait(client.recv())
        finally:
            await client.close()

    async def test_paths_and_parameters(self) -> None:
        server = await self.start()
        key = uuid.uuid4()
        for path, expected in [
            ("/", "lobby"),
            ("/rooms/new", "new room"),  # the first match wins
            ("/rooms/kitchen", "room {'room': 'kitchen'}"),
            ("/rooms/kitchen?x=1", "room {'room': 'kitchen'}"),
            ("/rooms/a%2Fb%20c", "room {'room': 'a/b c'}"),
            ("/rooms/kitchen/12", "room {'room': 'kitchen', 'since': 12}"),
            ("/users/41", "user 42"),
            ("/files/a/b/c.txt", "room {'rest': 'a/b/c.txt'}"),
            (f"/items/{key}", f"room {{'key': {key!r}}}"),
        ]:
            assert await self.first_message(server, path) == expected, path

    async def test_unknown_paths_get_404(self) -> None:
        server = await self.start()
        for path in ["/nowhere", "/rooms", "/rooms/", "/users/abc", "/users/-1", "/items/42"]:
            with pytest.raises(InvalidStatus) as raised:
                await wait(connect(f"ws://127.0.0.1:{server.port}{path}"))
            assert raised.value.status == 404, path
            assert raised.value.response.body == b"Not Found\n"
        status, _, body = await wait(asyncio.to_thread(http_get, server.port, "/nowhere"))  # type: ignore[misc]
        assert (status, body) == (404, b"Not Found\n")

    async def test_process_request_runs_first(self) -> None:
        def guard(connection: ServerConnection, request: Request) -> Response | None:
            if "token=ok" not in request.path:
                return connection.respond(403, "Forbidden\n")
            return None

        async def guard_async(connection: ServerConnection, request: Request) -> Response | None:
            await asyncio.sleep(0)
            return guard(connection, request)

        for hook in (guard, guard_async):
            server = await self.start(process_request=hook)
            with pytest.raises(InvalidStatus) as raised:
                await wait(connect(f"ws://127.0.0.1:{server.port}/nowhere"))
            assert raised.value.status == 403
            with pytest.raises(InvalidStatus) as raised:
                await wait(connect(f"ws://127.0.0.1:{server.port}/nowhere?token=ok"))
            assert raised.value.status == 404
            assert await self.first_message(server, "/users/1?token=ok") == "user 2"

    async def test_pairs_and_unix_socket(self) -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "ws.sock")
            server = await unix_route([("/", lobby), ("/users/{id:int}", user)], path)
            try:
                client = await wait(unix_connect(path, "ws://localhost/users/9"))
                assert await wait(client.recv()) == "user 10"
                await client.close()
            finally:
                server.close()
                await server.wait_closed()

    async def test_werkzeug_map(self) -> None:
        url_map = Map(
            [
                Rule("/", endpoint=lobby),
                Rule("/users/<int:id>", endpoint=user),
                Rule("/dir/", endpoint=lobby),
            ]
        )
        server = await self.start(url_map, server_name="chat.example")
        assert await self.first_message(server, "/users/6") == "user 7"
        with pytest.raises(InvalidStatus) as raised:
            await wait(connect(f"ws://127.0.0.1:{server.port}/nowhere"))
        assert raised.value.status == 404
        # werkzeug's strict slashes: a redirect to the canonical URL (not
        # followed here: chat.example doesn't resolve).
        with pytest.raises(InvalidStatus) as raised:
            await wait(connect(f"ws://127.0.0.1:{server.port}/dir", max_redirects=0))
        assert raised.value.status == 308
        assert raised.value.response.headers["Location"] == "ws://chat.example/dir/"


class PatternTests(unittest.TestCase):
    def test_rules(self) -> None:
        assert Pattern("/a/{x}").match("/a/b") == {"x": "b"}
        assert Pattern("/a/{x}").match("/a/b/") is None
        assert Pattern("/a/{x}").match("/a/") is None
        assert Pattern("/a.{ext}").match("/a.json") == {"ext": "json"}
        assert Pattern("/a.{ext}").match("/aXjson") is None  # literals are literal
        assert Pattern("/{n:int}-{m:int}").match("/1-20") == {"n": 1, "m": 20}

    def test_errors(self) -> None:
        for pattern, message in [
            ("rooms", "starts with '/'"),
            ("/{x:float}", "unknown converter"),
            ("/{x}/{x}", "used twice"),
            ("/{x", "malformed"),
            ("/{1x}", "malformed"),
            ("/x}", "malformed"),
        ]:
            with pytest.raises(ValueError, match=message):
                Pattern(pattern)

    def test_router_match(self) -> None:
        router = Router(ROUTES)
        assert router.match("/users/3?q") == (user, {"id": 3})
        assert router.match("/nope") is None
