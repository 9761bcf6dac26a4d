"""Tests for ws13.asyncio.stepping: a reading task stepped from data_received().

Whatever the task does between two messages (await something else, get
cancelled, time out, end, fail, read from another task), it must behave as
an ordinary asyncio task: a server's handler and a client's reader alike.
Run on both twins of StepperCore (CI runs the suite with
WS13_NO_EXTENSIONS=1 too).
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import Generator
from typing import Any

import pytest

from tests.asyncio.helpers import TIMEOUT, ServerClientTestCase, echo, wait
from tests.utils import MS
from ws13 import _accel
from ws13.asyncio.server import ServerConnection
from ws13.asyncio.stepping import AVAILABLE, Stepper, steppable
from ws13.exceptions import ConnectionClosedError, ConnectionClosedOK

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


class SteppedHandlerTests(ServerClientTestCase):
    async def test_twin_in_use(self) -> None:
        from ws13.asyncio._stepcore import StepperCore

        expected = StepperCore if _accel.StepperCore is None else _accel.StepperCore
        assert Stepper.__mro__[1] is expected
        assert AVAILABLE

    async def test_messages_are_handled_inside_the_step(self) -> None:
        stepping: list[bool] = []

        async def handler(ws: ServerConnection) -> None:
            async for message in ws:
                assert ws._stepper is not None
                stepping.append(ws._stepper._stepping)
                await ws.send(message)

        server = await self.start_server(handler)
        client = await self.connect_to(server)
        for i in range(5):
            await client.send(f"m{i}")
            assert await wait(client.recv()) == f"m{i}"
        # The first message may wake the task the ordinary way (it parks on
        # the stepper then); every later one is stepped.
        assert stepping[1:] == [True] * 4

    async def test_current_task_and_context_variables_are_the_handlers(self) -> None:
        seen: list[tuple[bool, str]] = []

        async def handler(ws: ServerConnection) -> None:
            REQUEST_ID.set("abc")
            async for message in ws:
                seen.append((asyncio.current_task() is ws.handler_task, REQUEST_ID.get()))
                await ws.send(message)

        server = await self.start_server(handler)
        client = await self.connect_to(server)
        for _ in range(3):
            await client.send("x")
            await wait(client.recv())
        assert seen == [(True, "abc")] * 3

    async def test_awaiting_other_things_between_messages(self) -> None:
        lock = asyncio.Lock()
        event = asyncio.Event()

        async def handler(ws: ServerConnection) -> None:
            async for message in ws:
                assert isinstance(message, str)
                await asyncio.sleep(0)  # a bare yield
                await asyncio.sleep(MS)  # a future
                async with lock:
                    await ws.send(message.upper())
                if message == "wait":
                    await event.wait()
                    await ws.send("woken")

        server = await self.start_server(handler)
        client = await self.connect_to(server)
        for message in ["a", "b", "wait"]:
            await client.send(message)
            assert await wait(client.recv()) == message.upper()
        asyncio.get_running_loop().call_later(10 * MS, event.set)
        assert await wait(client.recv()) == "woken"
        await client.send("c")
        assert await wait(client.recv()) == "C"

    async def test_cancelled_while_waiting_for_a_message(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            async for message in ws:
                await ws.send(message)
                if message == "then cancel":
                    break
            try:
                await ws.recv()
            except asyncio.CancelledError:
                await ws.send("cancelled")

        server = await self.start_server(handler)
        client = await self.connect_to(server)
        ws = await wait(self.handlers.get())
        await client.send("then cancel")
        assert await wait(client.recv()) == "then cancel"
        await asyncio.sleep(10 * MS)  # the handler waits in recv()
        ws.handler_task.cancel()
        assert await wait(client.recv()) == "cancelled"
        # The handler returned: the server closed normally.
        with pytest.raises(ConnectionClosedOK):
            await wait(client.recv())

    async def test_cancelled_while_awaiting_something_else(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            await ws.recv()
            try:
                await asyncio.sleep(TIMEOUT)
            except asyncio.CancelledError:
                await ws.send("cancelled in sleep")

        server = await self.start_server(handler)
        client = await self.connect_to(server)
        ws = await wait(self.handlers.get())
        await asyncio.sleep(10 * MS)
        await client.send("go")
        await asyncio.sleep(10 * MS)
        ws.handler_task.cancel()
        assert await wait(client.recv()) == "cancelled in sleep"

    async def test_cancelling_itself_inside_a_step(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            async for message in ws:
                if message == "cancel me":
                    task = asyncio.current_task()
                    assert task is not None
                    task.cancel()
                    try:
                        await ws.recv()
                    except asyncio.CancelledError:
                        await ws.send("cancelled at recv")
                        continue
                await ws.send(message)

        server = await self.start_server(handler)
        client = await self.connect_to(server)
        for message in ["a", "cancel me", "b"]:
            await client.send(message)
        assert [await wait(client.recv()) for _ in range(3)] == ["a", "cancelled at recv", "b"]

    async def test_timeout_around_recv(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            await ws.send(await ws.recv())
            try:
                async with asyncio.timeout(20 * MS):
                    await ws.recv()
            except TimeoutError:
                await ws.send("timed out")
            await ws.send(await ws.recv())

        server = await self.start_server(handler)
        client = await self.connect_to(server)
        await client.send("a")
        assert await wait(client.recv()) == "a"
        assert await wait(client.recv()) == "timed out"
        await client.send("b")
        assert await wait(client.recv()) == "b"

    async def test_handler_returns_inside_a_step(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            await ws.recv()
            await ws.send(await ws.recv())

        server = await self.start_server(handler)
        client = await self.connect_to(server)
        ws = await wait(self.handlers.get())
        await client.send("one")
        await asyncio.sleep(10 * MS)
        await client.send("two")
        assert await wait(client.recv()) == "two"
        with pytest.raises(ConnectionClosedOK):
            await wait(client.recv())
        await wait(ws.handler_task)
        assert ws._stepper is None  # dropped: no reference cycle left

    async def test_handler_fails_inside_a_step(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            await ws.recv()
            await ws.recv()
            raise RuntimeError("boom")

        server = await self.start_server(handler)
        client = await self.connect_to(server)
        with self.assertLogs("ws13.server", "ERROR") as logs:
            await client.send("one")
            await asyncio.sleep(10 * MS)
            await client.send("two")
            with pytest.raises(ConnectionClosedError) as exc_info:
                await wait(client.recv())
        assert exc_info.value.rcvd is not None
        assert exc_info.value.rcvd.code == 1011
        assert "connection handler failed" in logs.output[0]

    async def test_handler_cancelled_by_its_own_error_inside_a_step(self) -> None:
        # A CancelledError the handler raises itself ends its task cancelled.
        async def handler(ws: ServerConnection) -> None:
            await ws.recv()
            await ws.recv()
            raise asyncio.CancelledError

        server = await self.start_server(handler)
        client = await self.connect_to(server)
        ws = await wait(self.handlers.get())
        await client.send("one")
        await asyncio.sleep(10 * MS)
        await client.send("two")
        with pytest.raises(asyncio.CancelledError):
            await wait(ws.handler_task)
        assert ws.handler_task.cancelled()

    async def test_reading_from_another_task(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            async def reader() -> list[str | bytes]:
                return [await ws.recv(), await ws.recv()]

            messages = await asyncio.create_task(reader())
            await ws.send(" ".join(map(str, messages)))

        server = await self.start_server(handler)
        client = await self.connect_to(server)
        await client.send("a")
        await asyncio.sleep(10 * MS)
        await client.send("b")
        assert await wait(client.recv()) == "a b"

    async def test_bad_yield_is_an_error_in_the_handler(self) -> None:
        @types.coroutine
        def bad() -> Generator[int, None, None]:
            yield 42

        async def handler(ws: ServerConnection) -> None:
            async for message in ws:
                try:
                    await bad()
                except RuntimeError as exc:
                    await ws.send(str(exc))
                else:
                    await ws.send(message)

        server = await self.start_server(handler)
        client = await self.connect_to(server)
        for _ in range(2):
            await client.send("x")
            assert await wait(client.recv()) == "Task got bad yield: 42"


class SteppedClientTests(ServerClientTestCase):
    """A client's reader is a task of the user's: stepped too, whatever it does."""

    async def test_a_clients_reader_is_stepped(self) -> None:
        server = await self.start_server(echo)
        client = await self.connect_to(server)
        stepping: list[bool] = []

        async def reader() -> list[str | bytes]:
            got = []
            async for message in client:
                assert client._stepper is not None
                stepping.append(client._stepper._stepping)
                got.append(message)
                if len(got) == 5:
                    return got  # the task ends inside a step
            return got

        task = asyncio.create_task(reader())
        await asyncio.sleep(10 * MS)  # the reader parks on the stepper
        for i in range(5):
            await client.send(f"m{i}")
            await asyncio.sleep(MS)
        assert await wait(task) == [f"m{i}" for i in range(5)]
        assert stepping == [True] * 5

    async def test_send_then_recv_in_the_same_task(self) -> None:
        server = await self.start_server(echo)
        client = await self.connect_to(server)

        async def round_trips() -> list[str | bytes]:
            got = []
            for i in range(5):
                await client.send(f"m{i}")
                got.append(await client.recv())
            return got

        assert await wait(asyncio.create_task(round_trips())) == [f"m{i}" for i in range(5)]

    async def test_one_task_reading_two_connections_by_turns(self) -> None:
        # Each connection's stepper steps the task in turn: the stepper that
        # steps it gets the other one yielded and hands it over.
        server = await self.start_server(echo)
        a = await self.connect_to(server)
        b = await self.connect_to(server)

        async def reader() -> list[str | bytes]:
            got = []
            for _ in range(3):
                got.append(await a.recv())
                got.append(await b.recv())
            return got

        task = asyncio.create_task(reader())
        for i in range(3):
            for name, client in ("a", a), ("b", b):
                await asyncio.sleep(5 * MS)  # the reader waits on this connection
                await client.send(f"{name}{i}")
        assert await wait(task) == ["a0", "b0", "a1", "b1", "a2", "b2"]
        # Cancelled while waiting on one connection's stepper after another's
        # stepped it: the message that comes later isn't lost.
        task = asyncio.create_task(reader())
        await a.send("a3")
        await asyncio.sleep(20 * MS)  # a3 stepped the reader, which waits on b
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await wait(task)
        await b.send("b3")
        assert await wait(b.recv()) == "b3"

    async def test_a_recv_task_per_message(self) -> None:
        # asyncio.wait_for() makes a task per call on 3.11: each gets its own
        # stepper, and the task's coroutine is recv() itself, which returns
        # inside the step.
        server = await self.start_server(echo)
        client = await self.connect_to(server)
        for i in range(3):
            task = asyncio.create_task(client.recv())
            await asyncio.sleep(MS)
            await client.send(f"m{i}")
            assert await wait(task) == f"m{i}"
            assert task.done()

    async def test_a_task_subclass_waits_on_a_future(self) -> None:
        class MyTask(asyncio.Task[Any]):
            pass

        server = await self.start_server(echo)
        client = await self.connect_to(server)
        loop = asyncio.get_running_loop()
        task = MyTask(client.recv(), loop=loop)
        await asyncio.sleep(MS)
        assert not steppable(task)
        assert client._stepper is None
        await client.send("m")
        assert await wait(task) == "m"

    async def test_the_stepper_is_dropped_when_the_connection_closes(self) -> None:
        server = await self.start_server(echo)
        client = await self.connect_to(server)
        await client.send("m")
        assert await wait(client.recv()) == "m"
        assert client._stepper is not None
        await client.close()
        assert client._stepper is None


class StepperTests(ServerClientTestCase):
    """The stepper without a network: set_result() from the loop or from a task."""

    async def make(self, coro_fn: Any) -> tuple[Stepper, asyncio.Task[Any]]:
        loop = asyncio.get_running_loop()
        holder: list[Stepper] = []
        coro = coro_fn(holder)
        task = loop.create_task(coro)
        stepper = Stepper(loop, coro, task)
        holder.append(stepper)
        await asyncio.sleep(0)  # the task parks on the stepper
        return stepper, task

    async def test_set_result_from_the_loop_steps_and_from_a_task_wakes(self) -> None:
        got: list[tuple[Any, bool]] = []

        async def body(holder: list[Stepper]) -> None:
            while True:
                message = await holder[0]
                got.append((message, holder[0]._stepping))
                if message == "end":
                    await asyncio.sleep(0)  # a bare yield hands over to the task
                    return

        stepper, task = await self.make(body)
        loop = asyncio.get_running_loop()
        loop.call_soon(stepper.set_result, "from the loop")
        await asyncio.sleep(0)
        stepper.set_result("from a task")  # this test's task is running
        await asyncio.sleep(0)
        loop.call_soon(stepper.set_result, "end")
        await wait(task)
        assert got == [("from the loop", True), ("from a task", False), ("end", True)]

    async def test_a_coroutine_that_returns_inside_a_step_ends_its_task(self) -> None:
        async def body(holder: list[Stepper]) -> str:
            return f"got {await holder[0]}"

        stepper, task = await self.make(body)
        asyncio.get_running_loop().call_soon(stepper.set_result, "x")
        assert await wait(task) == "got x"
        # The stepper let go of the task and its coroutine (no cycle with
        # the done task, which keeps its last waiter).
        assert stepper.task is None
        assert not stepper.cancel()

    async def test_a_coroutine_that_raises_inside_a_step_ends_its_task(self) -> None:
        async def body(holder: list[Stepper]) -> None:
            raise ValueError(await holder[0])

        stepper, task = await self.make(body)
        asyncio.get_running_loop().call_soon(stepper.set_result, "bad")
        with pytest.raises(ValueError, match="bad") as exc_info:
            await wait(task)
        # The traceback goes through the coroutine's frame, as in a task.
        assert exc_info.traceback[-1].name == "body"

    async def test_a_coroutine_cancelled_inside_a_step_cancels_its_task(self) -> None:
        async def raises(holder: list[Stepper]) -> None:
            await holder[0]
            raise asyncio.CancelledError

        async def cancels_itself(holder: list[Stepper]) -> str:
            await holder[0]
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            return "too late"

        for body in raises, cancels_itself:
            stepper, task = await self.make(body)
            asyncio.get_running_loop().call_soon(stepper.set_result, "x")
            with pytest.raises(asyncio.CancelledError):
                await wait(task)
            assert task.cancelled()

    async def test_set_exception_wakes_the_task_with_it(self) -> None:
        async def body(holder: list[Stepper]) -> Any:
            return await holder[0]

        stepper, task = await self.make(body)
        stepper.set_exception(ConnectionResetError("gone"))
        with pytest.raises(ConnectionResetError):
            await wait(task)
        assert stepper.done()
        assert not stepper.cancelled()
