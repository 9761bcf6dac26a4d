"""Tests for ws13.sync.auth: basic_auth() on the threaded server, real clients."""

from __future__ import annotations

import base64
import threading

import pytest

from ws13.exceptions import InvalidStatus
from ws13.sync.client import connect
from ws13.sync.server import Server, ServerConnection, basic_auth

from .helpers import TIMEOUT, SyncTestCase, websockets_first_message


def greet(connection: ServerConnection) -> None:
    connection.send(f"hello {connection.username}")


class BasicAuthTests(SyncTestCase):
    def start(self, **kwargs: object) -> Server:
        return self.start_server(greet, process_request=basic_auth(**kwargs))  # type: ignore[arg-type]

    def greeting(self, uri: str) -> str | bytes:
        with connect(uri, open_timeout=TIMEOUT) as client:
            return client.recv(timeout=TIMEOUT)

    def refused(self, server: Server, userinfo: str = "", **kwargs: object) -> InvalidStatus:
        with pytest.raises(InvalidStatus) as raised:
            connect(f"ws://{userinfo}127.0.0.1:{server.port}/", open_timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]
        return raised.value

    def test_credentials_in_the_uri(self) -> None:
        server = self.start(realm="chat", credentials=("alice", "s3cret"))
        assert self.greeting(f"ws://alice:s3cret@127.0.0.1:{server.port}/") == "hello alice"

    def test_refusals(self) -> None:
        server = self.start(realm='the "lab"', credentials=[("alice", "a"), ("bob", "b")])
        assert self.greeting(f"ws://bob:b@127.0.0.1:{server.port}/") == "hello bob"
        for userinfo, body in [
            ("", b"Missing credentials\n"),
            ("alice:b@", b"Invalid credentials\n"),
            ("carol:a@", b"Invalid credentials\n"),
        ]:
            error = self.refused(server, userinfo)
            assert (error.status, error.response.body) == (401, body)
            challenge = error.response.headers["WWW-Authenticate"]
            assert challenge == 'Basic realm="the \\"lab\\"", charset="UTF-8"'
        assert server.connections == set()  # refused before the handshake

    def test_unsupported_schemes(self) -> None:
        server = self.start(credentials=("alice", "a"))
        for authorization in [
            "Bearer token",
            "Basic not-base64!",
            "Basic " + base64.b64encode(b"no colon").decode(),
            "Basic " + base64.b64encode(b"\xff:\xfe").decode(),
        ]:
            error = self.refused(server, additional_headers=[("Authorization", authorization)])
            assert (error.status, error.response.body) == (401, b"Unsupported credentials\n")

    def test_check_credentials_in_the_connection_thread(self) -> None:
        threads = []

        def check(username: str, password: str) -> bool:
            threads.append(threading.current_thread().name)
            return password == username[::-1]

        server = self.start(check_credentials=check)
        assert self.greeting(f"ws://anna:anna@127.0.0.1:{server.port}/") == "hello anna"
        assert self.refused(server, "abc:abc@").status == 401
        assert len(threads) == 2
        assert all(name.startswith("ws13-conn-") for name in threads)

    def test_check_credentials_raises(self) -> None:
        def check(username: str, password: str) -> bool:
            raise RuntimeError("database down")

        server = self.start(check_credentials=check)
        with self.assertLogs("ws13.server", "ERROR"):
            error = self.refused(server, "a:b@")
        assert (error.status, error.response.body) == (500, b"Internal Server Error\n")

    def test_websockets_sync_client(self) -> None:
        server = self.start(credentials=("alice", "pass:word"))
        uri = f"ws://127.0.0.1:{server.port}/"
        assert websockets_first_message(uri.replace("//", "//alice:pass%3Aword@")) == "hello alice"
        assert websockets_first_message(uri) == 401

    def test_username_is_none_without_it(self) -> None:
        server = self.start_server()
        self.connect(f"ws://127.0.0.1:{server.port}/")
        assert self.next_handler().username is None

    def test_bad_arguments(self) -> None:
        # All of them are ws13.auth.BasicAuth's (tests/test_auth.py).
        with pytest.raises(ValueError, match="either"):
            basic_auth()
