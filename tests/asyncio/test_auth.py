"""Tests for ws13.asyncio.auth: basic_auth() as a serve() process_request hook.

ws13's client and the websockets package's send the credentials of the URI;
a raw HTTP client sends the odd headers.
"""

from __future__ import annotations

import asyncio
import base64

import pytest
import websockets.asyncio.client

from tests.asyncio.helpers import ServerClientTestCase, wait
from ws13.asyncio.client import connect
from ws13.asyncio.server import Server, ServerConnection, basic_auth
from ws13.exceptions import InvalidStatus
from ws13.protocol import OPEN


class BasicAuthTests(ServerClientTestCase):
    async def start(self, **kwargs: object) -> Server:
        async def greet(connection: ServerConnection) -> None:
            await connection.send(f"hello {connection.username}")

        return await self.start_server(greet, process_request=basic_auth(**kwargs))  # type: ignore[arg-type]

    async def refused(self, server: Server, userinfo: str = "") -> InvalidStatus:
        with pytest.raises(InvalidStatus) as raised:
            await wait(connect(f"ws://{userinfo}127.0.0.1:{server.port}/"))
        return raised.value

    async def test_credentials_in_the_uri(self) -> None:
        server = await self.start(realm="chat", credentials=("alice", "s3cret"))
        client = await wait(connect(f"ws://alice:s3cret@127.0.0.1:{server.port}/"))
        assert await wait(client.recv()) == "hello alice"
        await client.close()

    async def test_refusals(self) -> None:
        server = await self.start(realm='the "lab"', credentials=[("alice", "a"), ("bob", "b")])
        for userinfo, body in [
            ("", b"Missing credentials\n"),
            ("alice:b@", b"Invalid credentials\n"),
            ("carol:a@", b"Invalid credentials\n"),
        ]:
            error = await self.refused(server, userinfo)
            assert error.response is not None
            assert (error.status, error.response.body) == (401, body)
            challenge = error.response.headers["WWW-Authenticate"]
            assert challenge == 'Basic realm="the \\"lab\\"", charset="UTF-8"'

    async def test_unsupported_schemes(self) -> None:
        server = await self.start(credentials=("alice", "a"))
        for authorization in [
            "Bearer token",
            "Basic not-base64!",
            "Basic " + base64.b64encode(b"no colon").decode(),
            "Basic " + base64.b64encode(b"\xff:\xfe").decode(),
        ]:
            with pytest.raises(InvalidStatus) as raised:
                await wait(
                    connect(
                        f"ws://127.0.0.1:{server.port}/",
                        additional_headers=[("Authorization", authorization)],
                    )
                )
            assert raised.value.response is not None
            assert raised.value.response.body == b"Unsupported credentials\n"

    async def test_check_credentials(self) -> None:
        async def check_async(username: str, password: str) -> bool:
            await asyncio.sleep(0)
            return password == username[::-1]

        def check_sync(username: str, password: str) -> bool:
            return password == username[::-1]

        for check in (check_async, check_sync):
            server = await self.start(check_credentials=check)
            client = await wait(connect(f"ws://anna:anna@127.0.0.1:{server.port}/"))
            assert await wait(client.recv()) == "hello anna"
            await client.close()
            assert (await self.refused(server, "abc:abc@")).status == 401

    async def test_websockets_client(self) -> None:
        server = await self.start(credentials=("alice", "pass:word"))
        uri = f"ws://alice:pass%3Aword@127.0.0.1:{server.port}/"
        async with websockets.asyncio.client.connect(uri) as client:
            assert await wait(client.recv()) == "hello alice"

    async def test_username_is_none_without_it(self) -> None:
        await self.connect_to(await self.start_server())
        connection = await self.server_side()
        assert connection.state is OPEN
        assert connection.username is None

    def test_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match="either"):
            basic_auth()
        with pytest.raises(ValueError, match="either"):
            basic_auth(credentials=("a", "b"), check_credentials=lambda u, p: True)
        with pytest.raises(TypeError, match="invalid credentials"):
            basic_auth(credentials=[("a", "b"), ("c",)])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="invalid credentials"):
            basic_auth(credentials=42)  # type: ignore[arg-type]
