"""Tests for ws13.asyncio.timers: shared deadlines and keepalive.

These run on a real event loop with short delays; they check what expires
and in which order, never how fast: each waits for what it expects
(``wait_for_condition``), so a slow machine only makes them slower.
"""

from __future__ import annotations

import asyncio
import unittest

import pytest

from tests.asyncio.helpers import wait_for_condition
from tests.utils import MS
from ws13.asyncio.timers import Deadlines, Keepalive

DELAY = 20 * MS


class DeadlinesTests(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.expired: list[str] = []
        self.deadlines: Deadlines[str] = Deadlines(DELAY, self.expired.append)

    async def test_expire_in_order_added(self) -> None:
        for key in "abc":
            self.deadlines.add(key)
        assert len(self.deadlines) == 3
        await wait_for_condition(lambda: len(self.expired) == 3)
        assert self.expired == ["a", "b", "c"]
        assert len(self.deadlines) == 0

    async def test_discard(self) -> None:
        self.deadlines.add("a")
        self.deadlines.add("b")
        self.deadlines.discard("a")
        self.deadlines.discard("missing")
        assert "a" not in self.deadlines
        # "a" would have expired before "b".
        await wait_for_condition(lambda: bool(self.expired))
        assert self.expired == ["b"]

    async def test_add_again_restarts_the_wait(self) -> None:
        self.deadlines.add("a")
        self.deadlines.add("b")
        self.deadlines.add("a")  # now due after "b"
        await wait_for_condition(lambda: len(self.expired) == 2)
        assert self.expired == ["b", "a"]

    async def test_callback_may_add_again(self) -> None:
        def again(key: str) -> None:
            self.expired.append(key)
            if len(self.expired) < 3:
                deadlines.add(key)

        deadlines: Deadlines[str] = Deadlines(DELAY, again)
        deadlines.add("a")
        await wait_for_condition(lambda: len(self.expired) == 3)
        assert self.expired == ["a", "a", "a"]
        assert len(deadlines) == 0

    async def test_failing_callback_does_not_stop_the_others(self) -> None:
        def fail_on_a(key: str) -> None:
            if key == "a":
                raise RuntimeError("boom")
            self.expired.append(key)

        errors: list[dict[str, object]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        deadlines: Deadlines[str] = Deadlines(DELAY, fail_on_a)
        deadlines.add("a")
        deadlines.add("b")
        await wait_for_condition(lambda: bool(self.expired))
        assert self.expired == ["b"]
        assert [str(error["exception"]) for error in errors] == ["boom"]

    def test_delay_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            Deadlines(0, print)


class FakeConnection:
    def __init__(self, *, answers: bool) -> None:
        self.answers = answers
        self.pings = 0
        self.timed_out = False
        self.skipping = False
        self.skipped = 0
        self.keepalive: Keepalive[FakeConnection] | None = None

    def _send_keepalive_ping(self) -> bool | None:
        if self.timed_out:
            return None
        if self.skipping:
            self.skipped += 1
            return False
        self.pings += 1
        if self.answers:
            assert self.keepalive is not None
            asyncio.get_running_loop().call_soon(self.keepalive.answered, self)
        return True

    def _keepalive_timed_out(self) -> None:
        self.timed_out = True


class KeepaliveTests(unittest.IsolatedAsyncioTestCase):
    def make(self, timeout: float | None, *, answers: bool) -> FakeConnection:
        connection = FakeConnection(answers=answers)
        connection.keepalive = Keepalive(DELAY, timeout)
        connection.keepalive.start(connection)
        return connection

    async def test_pings_every_interval_while_answered(self) -> None:
        connection = self.make(DELAY, answers=True)
        await wait_for_condition(lambda: connection.pings >= 3)
        assert not connection.timed_out

    async def test_times_out_without_pong(self) -> None:
        connection = self.make(DELAY / 2, answers=False)
        await wait_for_condition(lambda: connection.timed_out)
        assert connection.pings == 1

    async def test_no_second_ping_while_the_first_waits(self) -> None:
        # A timeout longer than the interval: the next ping waits for the pong.
        connection = self.make(100 * DELAY, answers=False)
        await wait_for_condition(lambda: connection.pings == 1)
        await asyncio.sleep(4 * DELAY)
        assert connection.pings == 1
        assert not connection.timed_out

    async def test_no_timeout(self) -> None:
        connection = self.make(None, answers=False)
        await wait_for_condition(lambda: connection.pings >= 2)
        assert not connection.timed_out

    async def test_skipped_pings_have_no_deadline(self) -> None:
        connection = self.make(DELAY / 2, answers=False)
        connection.skipping = True
        await wait_for_condition(lambda: connection.skipped >= 2)
        assert connection.pings == 0
        assert not connection.timed_out

    async def test_stop(self) -> None:
        connection = self.make(DELAY, answers=False)
        assert connection.keepalive is not None
        connection.keepalive.stop(connection)
        await asyncio.sleep(3 * DELAY)
        assert connection.pings == 0

    def test_values_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            Keepalive(0, 1)
        with pytest.raises(ValueError, match="positive"):
            Keepalive(1, 0)
