"""Tests for ws13.asyncio.limits: max_connections, per address, and the handshake rate."""

from __future__ import annotations

import asyncio
import unittest

import pytest

from tests.asyncio.helpers import ServerClientTestCase, wait, wait_for_condition
from tests.asyncio.test_server import http_get
from ws13.asyncio.client import ClientConnection, connect
from ws13.asyncio.limits import RETRY_AFTER, Limits
from ws13.asyncio.server import Server, ServerConnection
from ws13.exceptions import InvalidStatus
from ws13.http11 import Request, Response


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class LimitsTests(unittest.TestCase):
    def test_no_limit_by_default(self) -> None:
        limits = Limits()
        for _ in range(1000):
            assert limits.admit("127.0.0.1")
            assert limits.wait_before_request("127.0.0.1") is None

    def test_max_connections(self) -> None:
        limits = Limits(max_connections=2)
        assert limits.admit("10.0.0.1")
        assert limits.admit("10.0.0.2")
        assert not limits.admit("10.0.0.3")
        limits.release("10.0.0.1")
        assert limits.admit("10.0.0.3")

    def test_max_connections_per_ip(self) -> None:
        limits = Limits(max_connections_per_ip=2)
        assert limits.admit("10.0.0.1")
        assert limits.admit("10.0.0.1")
        assert not limits.admit("10.0.0.1")
        assert limits.admit("10.0.0.2")
        limits.release("10.0.0.1")
        assert limits.admit("10.0.0.1")
        for _ in range(2):
            limits.release("10.0.0.1")
        limits.release("10.0.0.2")
        assert limits.per_ip == {}
        assert limits.open == 0

    def test_handshake_rate_bursts_one_second_then_refills(self) -> None:
        clock = Clock()
        limits = Limits(max_handshake_rate=4, clock=clock)
        for _ in range(4):
            assert limits.wait_before_request("10.0.0.1") is None
        assert limits.wait_before_request("10.0.0.1") == 1
        # Another address has its own bucket.
        assert limits.wait_before_request("10.0.0.2") is None
        clock.now += 0.25
        assert limits.wait_before_request("10.0.0.1") is None
        assert limits.wait_before_request("10.0.0.1") == 1

    def test_slow_rate_says_how_long_to_wait(self) -> None:
        clock = Clock()
        limits = Limits(max_handshake_rate=0.1, clock=clock)
        assert limits.wait_before_request("10.0.0.1") is None
        assert limits.wait_before_request("10.0.0.1") == 10
        clock.now += 5
        assert limits.wait_before_request("10.0.0.1") == 5

    def test_idle_addresses_are_forgotten(self) -> None:
        clock = Clock()
        limits = Limits(max_handshake_rate=1, clock=clock)
        for number in range(1023):
            limits.wait_before_request(f"10.0.{number // 256}.{number % 256}")
        clock.now += 2
        limits.wait_before_request("10.9.9.9")
        assert list(limits.buckets) == ["10.9.9.9"]

    def test_bad_values(self) -> None:
        for kwargs in (
            {"max_connections": 0},
            {"max_connections_per_ip": -1},
            {"max_handshake_rate": 0.0},
        ):
            with pytest.raises(ValueError, match="must be more than 0"):
                Limits(**kwargs)  # type: ignore[arg-type]


class ServerLimitsTests(ServerClientTestCase):
    async def refused(self, server: Server) -> InvalidStatus:
        with pytest.raises(InvalidStatus) as raised:
            await wait(connect(f"ws://127.0.0.1:{server.port}/"))
        return raised.value

    async def echoes(self, client: ClientConnection) -> None:
        await client.send("hi")
        assert await wait(client.recv()) == "hi"

    async def test_max_connections(self) -> None:
        server = await self.start_server(max_connections=2)
        first = await self.connect_to(server)
        second = await self.connect_to(server)
        refusal = await self.refused(server)
        assert refusal.response.status_code == 503
        assert refusal.response.headers["Retry-After"] == str(RETRY_AFTER)
        await self.echoes(first)
        await self.echoes(second)
        # Closing one frees its slot.
        await first.close()
        await wait_for_condition(lambda: len(server.connections) == 1)
        third = await self.connect_to(server)
        await self.echoes(third)

    async def test_max_connections_per_ip(self) -> None:
        server = await self.start_server(max_connections_per_ip=1)
        client = await self.connect_to(server)
        assert (await self.refused(server)).response.status_code == 503
        # Another source address still gets in.
        other = await wait(connect(f"ws://127.0.0.1:{server.port}/", local_addr=("127.0.0.2", 0)))
        self.addAsyncCleanup(other.close)
        await self.echoes(other)
        await client.close()
        await wait_for_condition(lambda: len(server.connections) == 1)
        await self.echoes(await self.connect_to(server))

    async def test_plain_http_takes_no_slot(self) -> None:
        def health(connection: ServerConnection, request: Request) -> Response | None:
            if request.path == "/health":
                return connection.respond(200, "OK\n")
            return None

        server = await self.start_server(process_request=health, max_connections=1)
        client = await self.connect_to(server)
        status, _, _ = await wait(asyncio.to_thread(http_get, server.port, "/health"))
        assert status == 200
        await self.echoes(client)

    async def test_max_handshake_rate(self) -> None:
        server = await self.start_server(max_handshake_rate=2)
        for _ in range(2):
            await self.echoes(await self.connect_to(server))
        refusal = await self.refused(server)
        assert refusal.response.status_code == 429
        assert refusal.response.headers["Retry-After"] == "1"
        # A token is back after half a second at 2 per second.
        await wait_for_condition(lambda: _has_token(server))
        await self.echoes(await self.connect_to(server))

    async def test_no_limits_by_default(self) -> None:
        server = await self.start_server()
        assert server.limits is None
        for _ in range(5):
            await self.echoes(await self.connect_to(server))


def _has_token(server: Server) -> bool:
    """Whether 127.0.0.1 may open a connection now (peeking, taking nothing)."""
    limits = server.limits
    assert limits is not None
    assert limits.rate is not None
    tokens, then = limits.buckets["127.0.0.1"]
    return tokens + (limits.clock() - then) * limits.rate >= 1
