"""Tests for ws13.sync.router: route(), unix_route() and Router, on real threads."""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from typing import Any

import pytest
from werkzeug.routing import Map, Rule

from tests.asyncio import test_router as asyncio_router_tests
from tests.asyncio.test_server import http_get
from ws13.exceptions import InvalidStatus
from ws13.http11 import Request, Response
from ws13.sync.client import connect, unix_connect
from ws13.sync.router import Router, route, unix_route
from ws13.sync.server import Server, ServerConnection, basic_auth

from .helpers import TIMEOUT, SyncTestCase, start_thread, websockets_first_message


def reply(connection: ServerConnection, **params: Any) -> None:
    """Say which thread runs the handler, and the parameters it got."""
    connection.send(f"{threading.current_thread().name[:9]} {params!r}")


#: The asyncio tests' patterns, each to ``reply``.
ROUTES = dict.fromkeys(asyncio_router_tests.ROUTES, reply)


#: ``Authorization`` for user ``al``, password ``pw``.
AL_PW = [("Authorization", "Basic YWw6cHc=")]


class RouteTests(SyncTestCase):
    def start(self, routes: Any = ROUTES, **kwargs: Any) -> Server:
        server = route(routes, "127.0.0.1", 0, **kwargs)
        thread = start_thread(server.serve_forever)
        self.addCleanup(self._stop_server, server, thread)
        return server

    def first_message(self, server: Server, path: str, **kwargs: Any) -> str | bytes:
        uri = f"ws://127.0.0.1:{server.port}{path}"
        with connect(uri, open_timeout=TIMEOUT, **kwargs) as client:
            return client.recv(timeout=TIMEOUT)

    def refused(self, server: Server, path: str, **kwargs: Any) -> InvalidStatus:
        with pytest.raises(InvalidStatus) as raised:
            connect(f"ws://127.0.0.1:{server.port}{path}", open_timeout=TIMEOUT, **kwargs)
        return raised.value

    def test_paths_and_parameters(self) -> None:
        server = self.start()
        key = uuid.uuid4()
        for path, expected in [
            ("/", {}),
            ("/rooms/new", {}),  # the first match wins
            ("/rooms/kitchen", {"room": "kitchen"}),
            ("/rooms/kitchen?x=1", {"room": "kitchen"}),
            ("/rooms/a%2Fb%20c", {"room": "a/b c"}),
            ("/rooms/kitchen/12", {"room": "kitchen", "since": 12}),
            ("/users/41", {"id": 41}),
            ("/files/a/b/c.txt", {"rest": "a/b/c.txt"}),
            (f"/items/{key}", {"key": key}),
        ]:
            # The handler runs in the connection's thread.
            assert self.first_message(server, path) == f"ws13-conn {expected!r}", path

    def test_unknown_paths_get_404_before_the_handshake(self) -> None:
        server = self.start()
        for path in ["/nowhere", "/rooms", "/rooms/", "/users/abc", "/users/-1", "/items/42"]:
            error = self.refused(server, path)
            assert error.status == 404, path
            assert error.response.body == b"Not Found\n"
        status, _, body = http_get(server.port, "/nowhere")
        assert (status, body) == (404, b"Not Found\n")
        assert server.connections == set()

    def test_websockets_sync_client(self) -> None:
        server = self.start()
        uri = f"ws://127.0.0.1:{server.port}"
        assert websockets_first_message(uri + "/users/1") == "ws13-conn {'id': 1}"
        assert websockets_first_message(uri + "/users/x") == 404

    def test_process_request_runs_first(self) -> None:
        def guard(connection: ServerConnection, request: Request) -> Response | None:
            if "token=ok" not in request.path:
                return connection.respond(403, "Forbidden\n")
            return None

        server = self.start(process_request=guard)
        assert self.refused(server, "/nowhere").status == 403
        assert self.refused(server, "/nowhere?token=ok").status == 404
        assert self.first_message(server, "/users/1?token=ok") == "ws13-conn {'id': 1}"

    def test_basic_auth_guards_every_route(self) -> None:
        def whoami(connection: ServerConnection, name: str) -> None:
            connection.send(f"{connection.username} in {name}")

        guard = basic_auth(credentials=("al", "pw"))
        server = self.start({"/rooms/{name}": whoami}, process_request=guard)
        assert self.refused(server, "/rooms/a").status == 401
        assert self.refused(server, "/nowhere").status == 401  # auth first, then routing
        assert self.first_message(server, "/rooms/b", additional_headers=AL_PW) == "al in b"

    def test_pairs_and_unix_socket(self) -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "ws.sock")
            with unix_route([("/users/{id:int}", reply)], path) as server:
                thread = start_thread(server.serve_forever)
                with unix_connect(path, "ws://localhost/users/9", open_timeout=TIMEOUT) as client:
                    assert client.recv(timeout=TIMEOUT) == "ws13-conn {'id': 9}"
                with pytest.raises(InvalidStatus) as raised:
                    unix_connect(path, "ws://localhost/users", open_timeout=TIMEOUT)
                assert raised.value.status == 404
            thread.join(TIMEOUT)
            assert not thread.is_alive()

    def test_werkzeug_map(self) -> None:
        url_map = Map([Rule("/users/<int:id>", endpoint=reply), Rule("/dir/", endpoint=reply)])
        server = self.start(url_map, server_name="chat.example", ssl=True)
        assert self.first_message(server, "/users/6") == "ws13-conn {'id': 6}"
        assert self.refused(server, "/nowhere").status == 404
        # werkzeug's strict slashes: a redirect to the canonical URL, wss://
        # as ssl=True says TLS is ended in front of this server.
        error = self.refused(server, "/dir", max_redirects=0)
        assert error.status == 308
        assert error.response.headers["Location"] == "wss://chat.example/dir/"

    def test_create_router(self) -> None:
        class Teapot(Router):
            def not_found(self, connection: Any) -> Response:
                return connection.respond(418, "No route\n")  # type: ignore[no-any-return]

        server = self.start(create_router=Teapot)
        error = self.refused(server, "/nowhere")
        assert (error.status, error.response.body) == (418, b"No route\n")
        assert self.first_message(server, "/") == "ws13-conn {}"
