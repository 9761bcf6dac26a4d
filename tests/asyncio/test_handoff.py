"""Tests for ws13.asyncio.handoff: messages handed straight to a waiting server handler."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from typing import Any

import pytest

from tests.asyncio.helpers import TIMEOUT, ServerClientTestCase, encode_frame, wait_for_condition
from tests.utils import MS
from ws13.asyncio.handoff import Handoff
from ws13.asyncio.server import ServerConnection
from ws13.exceptions import ConcurrencyError, ConnectionClosedError, ConnectionClosedOK


async def wait(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, TIMEOUT)


def in_handoff() -> bool:
    """Whether the caller runs inside ``Handoff.step()``, i.e. from ``data_received()``."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is Handoff.step.__code__:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def parked(ws: ServerConnection) -> bool:
    waiter = ws._messages._waiter
    return waiter is not None and not waiter.done()


class HandoffTests(ServerClientTestCase):
    async def test_async_for_runs_from_data_received_in_the_handler_task(self) -> None:
        seen: list[tuple[str, bool, bool]] = []

        async def handler(ws: ServerConnection) -> None:
            async for message in ws:
                assert isinstance(message, str)
                seen.append((message, in_handoff(), asyncio.current_task() is ws.handler_task))
                await ws.send(message)

        client = await self.connect_to(await self.start_server(handler))
        for i in range(3):
            await client.send(f"m{i}")
            assert await wait(client.recv()) == f"m{i}"
        assert seen == [(f"m{i}", True, True) for i in range(3)]

    async def test_recv_runs_from_data_received(self) -> None:
        seen: list[bool] = []

        async def handler(ws: ServerConnection) -> None:
            while True:
                message = await ws.recv()
                seen.append(in_handoff())
                await ws.send(message)

        client = await self.connect_to(await self.start_server(handler))
        for message in (b"one", "two"):
            await client.send(message)
            assert await wait(client.recv()) == message
        assert seen == [True, True]

    async def test_context_variables_are_the_handler_tasks(self) -> None:
        count: contextvars.ContextVar[int] = contextvars.ContextVar("count")

        async def handler(ws: ServerConnection) -> None:
            count.set(0)
            async for _ in ws:
                count.set(count.get() + 1)
                await ws.send(str(count.get()))

        client = await self.connect_to(await self.start_server(handler))
        for expected in ("1", "2", "3"):
            await client.send("x")
            assert await wait(client.recv()) == expected
        assert count.get(None) is None

    async def test_handler_that_awaits_between_messages_gets_all_in_order(self) -> None:
        for pause in (0.0, 10 * MS):

            async def handler(ws: ServerConnection, pause: float = pause) -> None:
                async for message in ws:
                    await asyncio.sleep(pause)
                    await ws.send(message)

            client = await self.connect_to(await self.start_server(handler))
            for i in range(10):
                await client.send(str(i))
            assert [await wait(client.recv()) for _ in range(10)] == [str(i) for i in range(10)]

    async def test_cancelling_the_handler_cancels_what_it_awaits(self) -> None:
        inner_cancelled = asyncio.Event()
        inner_started = asyncio.Event()

        async def inner() -> None:
            inner_started.set()
            try:
                await asyncio.sleep(TIMEOUT)
            except asyncio.CancelledError:
                inner_cancelled.set()
                raise

        async def handler(ws: ServerConnection) -> None:
            await ws.recv()
            # Awaited during the hand-off: the task waits on the park future
            # in its place, and must still cancel it.
            await asyncio.get_running_loop().create_task(inner())

        client = await self.connect_to(await self.start_server(handler))
        ws = await self.server_side()
        await client.send("go")
        await wait(inner_started.wait())
        assert ws.handler_task is not None
        ws.handler_task.cancel()
        await wait(inner_cancelled.wait())
        with pytest.raises(asyncio.CancelledError):
            await wait(ws.handler_task)

    async def test_handler_returning_after_a_handoff_closes_normally(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            await ws.recv()

        client = await self.connect_to(await self.start_server(handler))
        ws = await self.server_side()
        await client.send("bye")
        with pytest.raises(ConnectionClosedOK):
            await wait(client.recv())
        assert client.close_code == 1000
        assert ws.handler_task is not None
        await wait(ws.handler_task)

    async def test_handler_failing_after_a_handoff_closes_with_1011(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            await ws.recv()
            raise RuntimeError("boom")

        client = await self.connect_to(await self.start_server(handler))
        with self.assertLogs("ws13", "ERROR") as logs:
            await client.send("x")
            with pytest.raises(ConnectionClosedError):
                await wait(client.recv())
        assert client.close_code == 1011
        assert "connection handler failed" in logs.output[0]

    async def test_timeout_around_recv_loses_no_message(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            try:
                async with asyncio.timeout(20 * MS):
                    await ws.recv()
            except TimeoutError:
                await ws.send("timed out")
            await ws.send(await ws.recv())

        client = await self.connect_to(await self.start_server(handler))
        assert await wait(client.recv()) == "timed out"
        await client.send("after")
        assert await wait(client.recv()) == "after"

    async def test_message_delivered_as_the_handler_is_cancelled_is_kept(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            try:
                await ws.recv()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                assert task is not None
                task.uncancel()
            await ws.send(await ws.recv())

        client = await self.connect_to(await self.start_server(handler))
        ws = await self.server_side()
        await wait_for_condition(lambda: parked(ws))
        # From inside a task (this test's), data_received() can't step the
        # handler: it completes the park future, then the cancellation
        # arrives before the handler runs. The message goes back in the queue.
        ws.data_received(encode_frame(0x1, b"kept", mask=True))
        assert ws.handler_task is not None
        ws.handler_task.cancel()
        assert await wait(client.recv()) == "kept"

    async def test_data_received_from_inside_a_task_completes_the_future(self) -> None:
        seen: list[bool] = []

        async def handler(ws: ServerConnection) -> None:
            async for message in ws:
                seen.append(in_handoff())
                await ws.send(message)

        client = await self.connect_to(await self.start_server(handler))
        ws = await self.server_side()
        await wait_for_condition(lambda: parked(ws))
        ws.data_received(encode_frame(0x1, b"direct", mask=True))
        assert await wait(client.recv()) == "direct"
        assert seen == [False]

    async def test_second_reader_while_the_handler_is_parked(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            await ws.send(await ws.recv())

        client = await self.connect_to(await self.start_server(handler))
        ws = await self.server_side()
        await wait_for_condition(lambda: parked(ws))
        with pytest.raises(ConcurrencyError):
            await ws.recv()
        await client.send("still the handler's")
        assert await wait(client.recv()) == "still the handler's"

    async def test_no_handoff_with_a_task_factory(self) -> None:
        loop = asyncio.get_running_loop()

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(factory)
        self.addCleanup(loop.set_task_factory, None)
        seen: list[bool] = []

        async def handler(ws: ServerConnection) -> None:
            async for message in ws:
                seen.append(in_handoff())
                await ws.send(message)

        client = await self.connect_to(await self.start_server(handler))
        await client.send("x")
        assert await wait(client.recv()) == "x"
        assert seen == [False]
