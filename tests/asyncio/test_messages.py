"""Tests for ws13.asyncio.messages: the bounded queue behind recv()."""

from __future__ import annotations

import asyncio
import traceback
import unittest

import pytest

from tests.asyncio.helpers import TIMEOUT
from ws13.asyncio.messages import MessageQueue
from ws13.exceptions import (
    ConcurrencyError,
    ConnectionClosedError,
    ConnectionClosedOK,
    ProtocolError,
)
from ws13.frames import Close, CloseCode


class RecordingFlow:
    """A FlowControl double that records the queue's calls."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def pause_receiving(self) -> None:
        self.calls.append("pause")

    def resume_receiving(self) -> None:
        self.calls.append("resume")


class MessageQueueTests(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.calls: list[str] = []
        self.loop = asyncio.get_running_loop()
        self.queue = MessageQueue(RecordingFlow(self.calls), self.loop, high=4)

    async def test_fifo(self) -> None:
        self.queue.put("a")
        self.queue.put(b"b")
        assert len(self.queue) == 2
        assert await self.queue.get() == "a"
        assert self.queue.get_nowait() == b"b"
        assert self.queue.get_nowait() is None

    async def test_put_wakes_waiting_reader(self) -> None:
        getter = asyncio.ensure_future(self.queue.get())
        await asyncio.sleep(0)
        assert not getter.done()
        self.queue.put("hello")
        assert await asyncio.wait_for(getter, TIMEOUT) == "hello"
        # Handed over directly, never queued.
        assert len(self.queue) == 0

    async def test_pause_at_high_and_resume_at_low(self) -> None:
        for i in range(3):
            self.queue.put(str(i))
        assert self.calls == []
        self.queue.put("3")
        assert self.calls == ["pause"]
        self.queue.put("4")  # Already paused: no second call.
        assert self.calls == ["pause"]
        # low defaults to high // 4 == 1.
        for expected in "012":
            assert await self.queue.get() == expected
        assert self.calls == ["pause"]
        assert self.queue.get_nowait() == "3"
        assert self.calls == ["pause", "resume"]
        assert self.queue.get_nowait() == "4"
        assert self.calls == ["pause", "resume"]

    async def test_explicit_low(self) -> None:
        queue = MessageQueue(RecordingFlow(self.calls), self.loop, 2, 0)
        queue.put("a")
        queue.put("b")
        assert self.calls == ["pause"]
        await queue.get()
        assert self.calls == ["pause"]
        await queue.get()
        assert self.calls == ["pause", "resume"]

    async def test_no_limit(self) -> None:
        queue = MessageQueue(RecordingFlow(self.calls), self.loop, None)
        for i in range(1000):
            queue.put(str(i))
        assert self.calls == []
        assert len(queue) == 1000

    async def test_close_after_messages(self) -> None:
        exc = ConnectionClosedOK(Close(CloseCode.NORMAL_CLOSURE, ""), None)
        self.queue.put("last")
        self.queue.close(exc)
        # Messages received before the close are read first.
        assert await self.queue.get() == "last"
        with pytest.raises(ConnectionClosedOK) as raised:
            await self.queue.get()
        # A copy of it, so that the queue's own never gets a traceback.
        assert (raised.value.rcvd, raised.value.sent) == (exc.rcvd, exc.sent)
        assert str(raised.value) == str(exc)
        assert exc.__traceback__ is None
        # And again: a closed queue stays closed.
        with pytest.raises(ConnectionClosedOK):
            await self.queue.get()

    async def test_closed_queue_raises_copies_with_the_cause(self) -> None:
        exc = ConnectionClosedError(None, None)
        exc.__cause__ = ProtocolError("invalid opcode")
        waiting = asyncio.ensure_future(self.queue.get())
        await asyncio.sleep(0)
        self.queue.close(exc)
        for getter in (waiting, self.queue.get()):
            with pytest.raises(ConnectionClosedError) as raised:
                await asyncio.wait_for(getter, TIMEOUT)
            assert raised.value is not exc
            assert raised.value.__cause__ is exc.__cause__
        assert exc.__traceback__ is None

    async def test_closed_queue_raises_without_growing_the_traceback(self) -> None:
        exc = ConnectionClosedOK(None, None)
        self.queue.close(exc)
        depths = []
        for _ in range(3):
            with pytest.raises(ConnectionClosedOK) as raised:
                await self.queue.get()
            depths.append(len(traceback.extract_tb(raised.value.__traceback__)))
        # Each raise starts a new traceback instead of adding to the last one.
        assert depths[0] == depths[1] == depths[2]

    async def test_close_lets_go_of_the_flow(self) -> None:
        # The flow is the connection: holding it made a reference cycle.
        for _ in range(4):
            self.queue.put("x")
        assert self.queue.paused
        self.queue.close(ConnectionClosedOK(None, None))
        assert not self.queue.paused
        assert not isinstance(self.queue._flow, RecordingFlow)
        for _ in range(4):
            assert self.queue.get_nowait() == "x"
        assert self.calls == ["pause"]

    async def test_close_wakes_waiting_reader(self) -> None:
        getter = asyncio.ensure_future(self.queue.get())
        await asyncio.sleep(0)
        self.queue.close(ConnectionClosedOK(None, None))
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(getter, TIMEOUT)

    async def test_concurrent_get(self) -> None:
        getter = asyncio.ensure_future(self.queue.get())
        await asyncio.sleep(0)
        with pytest.raises(ConcurrencyError):
            await self.queue.get()
        self.queue.put("x")
        assert await asyncio.wait_for(getter, TIMEOUT) == "x"

    async def test_cancelled_get_frees_the_slot(self) -> None:
        getter = asyncio.ensure_future(self.queue.get())
        await asyncio.sleep(0)
        getter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await getter
        self.queue.put("y")
        assert await self.queue.get() == "y"

    async def test_message_delivered_with_cancellation_is_not_lost(self) -> None:
        getter = asyncio.ensure_future(self.queue.get())
        await asyncio.sleep(0)
        # The message arrives and the reader is cancelled in the same
        # iteration of the loop, before the reader runs again.
        self.queue.put("kept")
        getter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await getter
        assert self.queue.get_nowait() == "kept"
