"""Hand a message straight to the server handler that waits for it.

A handler blocked in ``recv()`` or ``async for`` waits on a future. Completing
that future from ``data_received()`` only schedules the handler's task: the
loop runs another iteration (with another poll of the sockets), then the task
steps the handler's coroutine. For a small message that hop costs more than
ws13's parsing and framing together.

``Handoff`` runs a server connection's handler task so that the hop can be
skipped. While the handler is parked (its coroutine suspended in ``recv()``
or ``__anext__`` on the park future, the task waiting on that same future),
``data_received()`` resumes the coroutine itself, with the message, as the
task would: inside the task's context, with the task entered as the current
task (``asyncio.current_task()``, ``asyncio.timeout()`` and contextvars see
what they would see). The handler runs until it waits again:

* parked again for the next message: the task never noticed; it still waits
  on the same park future, and no future, callback or loop iteration was
  spent on the message;
* awaiting anything else (a sleep, a lock, a drain, another task): the task
  must take over. It waits on the park future, so the park future is
  completed when that other future is (one extra callback hop), and a
  cancellation of the task is passed on to the other future, as a task
  cancels what it awaits;
* a bare ``yield`` (``asyncio.sleep(0)``): the park future is completed at
  once, so the task resumes the coroutine on the next iteration;
* finishing: ``release()`` at the end of the handler's wrapper gives the
  task back its coroutine first, so the task, not ``data_received()``,
  returns or raises.

The hand-off is skipped, and the future completed as before, when another
task is running (``data_received()`` called from inside a task), when the
task does not wait on the park future (a cancellation is on its way), and
when the loop has a task factory (which may not accept ``context=``).
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import types

# Private, but in every CPython asyncio since 3.7: what a task's own step calls.
from asyncio.tasks import _enter_task, _leave_task
from collections.abc import Coroutine, Generator
from typing import Any

from .messages import Message, MessageQueue

__all__ = ["Handoff"]

if sys.version_info >= (3, 12):
    current_task = asyncio.current_task  # C
else:
    # 3.11's asyncio.current_task() is a Python function around this dict.
    current_task = asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]

# What release() yields while data_received() runs the coroutine.
_RELEASE = object()


class Handoff:
    """Runs a handler coroutine in a task that ``data_received()`` may step.

    ``task`` is the ``asyncio.Task``: await it, cancel it, as any task.
    """

    __slots__ = ("_context", "_coro", "_loop", "_other", "_park", "_stepping", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> None:
        self._loop = loop
        self._coro = coro
        # The task's own context: steps run in it, as the task's do.
        self._context = contextvars.copy_context()
        # The future the task waits on while the handler is parked; kept
        # across hand-offs, replaced once completed.
        self._park: asyncio.Future[Message] | None = None
        # What the handler awaits after a hand-off, while the task waits on
        # the park future in its place.
        self._other: asyncio.Future[Any] | None = None
        self._stepping = False
        self.task: asyncio.Task[None] = loop.create_task(coro, context=self._context)

    @staticmethod
    def usable(loop: asyncio.AbstractEventLoop) -> bool:
        """Whether this loop can run a ``Handoff``: not with a task factory."""
        return loop.get_task_factory() is None

    def parks(self) -> bool:
        """Whether the running coroutine is the handler's: call before ``wait()``."""
        return current_task(self._loop) is self.task

    @types.coroutine
    def wait(self, messages: MessageQueue) -> Generator[Any, Any, Message]:
        """Wait for the next message on the park future (``recv()``'s wait).

        Resumed by ``step()`` with the message, or by the task once the park
        future is done: then its result is the message (or its exception the
        close). A cancelled wait gives back a message already delivered.
        """
        park = self._park
        if park is None or park.done():
            park = self._park = self._loop.create_future()
        messages._waiter = park
        park._asyncio_future_blocking = True  # what the task expects of a future
        try:
            message: Message | None = yield park
        except asyncio.CancelledError:
            messages.cancelled(park)
            raise
        if message is None:
            return park.result()
        return message

    @types.coroutine
    def release(self) -> Generator[Any, Any, None]:
        """Let the task finish the coroutine: await at the end of the handler's wrapper."""
        if self._stepping:
            yield _RELEASE

    def step(self, waiter: asyncio.Future[Message], message: Message) -> bool:
        """Resume the handler parked on ``waiter`` with ``message``.

        Returns False, having done nothing, if that can't be done safely now:
        the caller then completes ``waiter`` as usual.
        """
        task = self.task
        if waiter is not self._park or task._fut_waiter is not waiter:  # type: ignore[attr-defined]
            return False
        loop = self._loop
        if current_task(loop) is not None:
            return False
        _enter_task(loop, task)
        self._stepping = True
        try:
            yielded = self._context.run(self._coro.send, message)
        finally:
            self._stepping = False
            _leave_task(loop, task)
        if yielded is waiter:
            # Parked again on the same future: the task still waits on it.
            waiter._asyncio_future_blocking = False
        else:
            self._hand_back(waiter, yielded)
        return True

    def _hand_back(self, park: asyncio.Future[Message], yielded: Any) -> None:
        """The coroutine awaits something else: the task, waiting on ``park``, takes over."""
        if yielded is None or yielded is _RELEASE:
            park.set_result(None)  # type: ignore[arg-type]
        elif (
            getattr(yielded, "_asyncio_future_blocking", None) and yielded.get_loop() is self._loop
        ):
            yielded._asyncio_future_blocking = False
            self._other = yielded
            yielded.add_done_callback(self._other_done)
            park.add_done_callback(self._park_done)
        else:
            # What asyncio.Task does with a yield it can't wait on.
            park.set_exception(RuntimeError(f"Task got bad yield: {yielded!r}"))

    def _other_done(self, other: asyncio.Future[Any]) -> None:
        park = self._park
        if self._other is other:
            self._other = None
        if park is not None and not park.done():
            park.set_result(None)  # type: ignore[arg-type]

    def _park_done(self, park: asyncio.Future[Message]) -> None:
        other = self._other
        if park.cancelled() and other is not None:
            # The task was cancelled while the handler awaited `other`.
            self._other = None
            other.cancel()
