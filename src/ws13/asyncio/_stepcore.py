"""The hot half of ``stepping.Stepper``: pure Python, twin of ``ws13/_stepper.c``.

What runs per message when ``data_received()`` steps a reading task:
``done()`` and ``set_result()`` (the queue calls them), the step itself, and
the await the reader waits on. ``stepping.py`` subclasses this or the C
twin (``ws13._accel.StepperCore``, None in pure Python) into ``Stepper``,
which has the rest of the future protocol and documents the whole.
"""

from __future__ import annotations

import asyncio
from asyncio import tasks as _tasks
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context
from typing import Any

__all__ = [
    "CANCELLED",
    "DONE",
    "PENDING",
    "StepperCore",
    "enter_task",
    "leave_task",
]

_TaskHook = Callable[[asyncio.AbstractEventLoop, "asyncio.Task[Any]"], None]
#: asyncio's own (C when it can): what Task.__step() calls around a step.
enter_task: _TaskHook | None = getattr(_tasks, "_enter_task", None)
leave_task: _TaskHook | None = getattr(_tasks, "_leave_task", None)

#: ``_state``: waiting; completed (``_result`` or ``_exception``); cancelled.
PENDING = 0
DONE = 1
CANCELLED = 2

Message = str | bytes


class StepperCore:
    """State, ``__await__``, ``done()``, ``set_result()`` and the step."""

    __slots__ = (
        "_asyncio_future_blocking",
        "_cancel_message",
        "_context",
        "_coro",
        "_exception",
        "_external",
        "_loop",
        "_must_cancel",
        "_result",
        "_state",
        "_stepping",
        "_wakeup",
        "task",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any] | Generator[Any, Any, Any],
        task: asyncio.Task[Any],
    ) -> None:
        # The attribute asyncio's Task looks for on what a coroutine yields:
        # True from __await__ means "wait for me".
        self._asyncio_future_blocking = False
        self._loop = loop
        #: The task stepped and its coroutine; None once the coroutine ended
        #: inside a step (Stepper._finish()).
        self._coro: Coroutine[Any, Any, Any] | Generator[Any, Any, Any] | None = coro
        self.task: asyncio.Task[Any] | None = task
        self._state = PENDING
        self._result: Message | None = None
        self._exception: BaseException | None = None
        self._cancel_message: Any = None
        self._must_cancel = False
        #: The task's wake-up callback and context while the task waits here.
        self._wakeup: Callable[[Any], object] | None = None
        self._context: Context | None = None
        #: A future handed to the task: ``cancel()`` goes to it.
        self._external: Any = None
        self._stepping = False

    def __await__(self) -> Generator[Any, Message | None, Message]:
        # A new wait. (_must_cancel stays: a cancel asked for inside the
        # step that led here is done when the step yields this wait.)
        self._state = PENDING
        self._result = None
        self._exception = None
        self._asyncio_future_blocking = True
        message = yield self
        if message is not None:
            return message  # sent by _step()
        # Woken by the task after set_result() (result() raised for the rest).
        message = self._result
        self._result = None
        assert message is not None
        return message

    def done(self) -> bool:
        return self._state != PENDING

    def set_result(self, message: Message) -> None:
        """Give the waiting reader ``message``: step it now if possible."""
        task = self.task
        if self._wakeup is not None and not self._stepping and task is not None:
            try:
                enter_task(self._loop, task)  # type: ignore[misc]
            except RuntimeError:
                pass  # Another task is running: not called from the event loop.
            else:
                self._step(message)
                return
        self._state = DONE
        self._result = message
        self._wake()

    def _step(self, message: Message) -> None:
        """Run the task's coroutine up to its next wait (the task is entered)."""
        task, coro, context = self.task, self._coro, self._context
        assert task is not None
        assert coro is not None
        assert context is not None
        self._stepping = True
        ended: BaseException | None = None
        try:
            yielded = context.run(coro.send, message)
        except BaseException as exc:
            ended = exc  # the coroutine is over: returned or raised
        finally:
            self._stepping = False
            leave_task(self._loop, task)  # type: ignore[misc]
        if ended is not None:
            # No local may keep the exception once this returns: its
            # traceback refers to this frame (a cycle for the collector).
            error, ended = ended, None
            try:
                if isinstance(error, StopIteration):
                    self._finish(error.value, None)
                else:
                    self._finish(None, error)
            finally:
                del error
            return
        if yielded is self:
            # Waiting for the next message again, the task none the wiser.
            if self._must_cancel:
                self._must_cancel = False
                self._state = CANCELLED
                self._wake()
            return
        self._hand_over(yielded)

    def _wake(self) -> None:
        raise NotImplementedError  # Stepper's

    def _hand_over(self, yielded: Any) -> None:
        raise NotImplementedError  # Stepper's

    def _finish(self, result: Any, exc: BaseException | None) -> None:
        raise NotImplementedError  # Stepper's
