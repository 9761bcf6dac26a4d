"""Resuming a server's handler from ``data_received()``, without a loop iteration.

``async for message in ws`` on plain asyncio costs, per message, a future, a
``call_soon`` handle and a pass of the event loop before the handler's task
takes the next step: ``bench/instructions.py`` counts 15,864 instructions per
32 B echo for that floor, against 11,847 when ``data_received()`` steps the
task's coroutine itself, with the task kept parked (``floor-task`` and
``floor-step``). This module does the second for the handler task that
``serve()`` runs.

How: when the handler waits for a message, it awaits a ``Stepper``, an object
that speaks the future protocol asyncio's ``Task`` uses (the task calls its
``add_done_callback()`` and waits). A message arriving from the event loop
(no task running) doesn't complete it: the stepper enters the task
(``current_task()`` is the handler's task, as always), sends the message into
the task's coroutine in the task's context, and leaves it. The handler runs,
answers, and waits on the stepper again: the task never noticed, it is still
waiting on the stepper. Whatever else the handler awaits (a drain, a sleep,
a lock) comes back to the stepper instead of the task; the stepper hands it
to the task as the task would have taken it (the task's own wake-up callback
on that future), so from there on the task runs the coroutine as usual, and
``Task.cancel()`` reaches that future through the stepper.

What stays the same for the handler: ``asyncio.current_task()``, context
variables, cancellation (while waiting for a message or anything else),
exceptions, timeouts. Limits, and where it falls back to an ordinary
wake-up through the loop:

* only the task ``serve()`` made for the handler, and only for a ``recv()``
  or ``async for`` in that task: a coroutine that ends inside a step would
  leave its task pending for ever, so the coroutine stepped must be one
  that hands back to its task before it ends (``ServerConnection``'s
  ``_run_handler()`` does, ``hand_back()``); a client's connection is read
  from the user's own task, which ws13 can't vouch for;
* only from the event loop: a message delivered while a task runs (an
  in-process transport writing from a task) wakes the handler through the
  loop, as a future would;
* it needs asyncio's ``_enter_task()`` and ``_leave_task()`` (CPython 3.7
  and later have them); without them, no stepper is made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from contextvars import Context
from typing import TYPE_CHECKING, Any

from .. import _accel
from ._stepcore import CANCELLED, DONE, PENDING, enter_task, leave_task
from ._stepcore import StepperCore as _PyStepperCore

if TYPE_CHECKING:
    StepperCore = _PyStepperCore
else:
    StepperCore = _accel.StepperCore or _PyStepperCore

__all__ = ["AVAILABLE", "Stepper", "hand_back"]

#: Whether this Python's asyncio lets a task be stepped from outside.
AVAILABLE = enter_task is not None and leave_task is not None

Message = str | bytes
Wakeup = Any


class _HandBack:
    """What a stepped coroutine yields to have its task run it again."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        yield self


_HAND_BACK = _HandBack()


class Stepper(StepperCore):
    """The future a handler's task waits on for its next message.

    It is a future that can be completed many times: each ``await``
    starts a new wait. The queue (``MessageQueue``) uses it as its waiter:
    ``set_result()`` with the next message, ``set_exception()`` once closed.
    ``StepperCore`` (C, or ``_stepcore.py``) has what runs per message.

    Args:
        loop: the event loop of ``task``.
        coro: the coroutine ``task`` runs; it must await ``hand_back()``
            before it ends.
        task: the task to step.
    """

    __slots__ = ()

    # -- what asyncio's Task calls -------------------------------------------

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def add_done_callback(self, fn: Wakeup, *, context: Context | None = None) -> None:
        if self._state != PENDING:
            self._loop.call_soon(fn, self, context=context)
            return
        self._wakeup = fn
        self._context = context
        self._external = None

    def remove_done_callback(self, fn: Wakeup) -> int:
        if self._wakeup is not fn:
            return 0
        self._wakeup = None
        return 1

    def cancel(self, msg: Any = None) -> bool:
        external = self._external
        if external is not None:
            # The task waits on that future now (see _hand_over()).
            return bool(external.cancel(msg))
        if self._state != PENDING:
            return False
        self._cancel_message = msg
        if self._stepping:
            # Task.cancel() from the handler itself, inside a step: done
            # when the step yields, to whatever it yields.
            self._must_cancel = True
        else:
            self._state = CANCELLED
            self._wake()
        return True

    def result(self) -> Message | None:
        if self._state == CANCELLED:
            raise self._cancelled_error()
        if self._exception is not None:
            raise self._exception
        # None after a hand-over: the task sends None on, as for a bare yield.
        return self._result

    # -- what MessageQueue calls besides done() and set_result() --------------

    def cancelled(self) -> bool:
        return self._state == CANCELLED

    def exception(self) -> BaseException | None:
        if self._state == CANCELLED:
            raise self._cancelled_error()
        return self._exception

    def set_exception(self, exc: BaseException) -> None:
        self._state = DONE
        self._exception = exc
        self._wake()

    # -- the rest of a step --------------------------------------------------

    def _cancelled_error(self) -> asyncio.CancelledError:
        message = self._cancel_message
        return asyncio.CancelledError() if message is None else asyncio.CancelledError(message)

    def _wake(self) -> None:
        """Wake the task through the loop, as a completed future does."""
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            self._loop.call_soon(wakeup, self, context=self._context)

    def _hand_over(self, yielded: Any) -> None:
        """The step ended on something else than a message: the task takes over.

        What it does is what ``Task.__step()`` does with what a coroutine
        yields, with the task's own wake-up callback.
        """
        wakeup = self._wakeup
        assert wakeup is not None
        blocking = getattr(yielded, "_asyncio_future_blocking", None)
        if blocking is not None:
            if not blocking:
                error: BaseException | None = RuntimeError(
                    f"yield was used instead of yield from in task {self.task!r} with {yielded!r}"
                )
            elif _future_loop(yielded) is not self._loop:
                error = RuntimeError(
                    f"Task {self.task!r} got Future {yielded!r} attached to a different loop"
                )
            else:
                self._wakeup = None
                yielded._asyncio_future_blocking = False
                yielded.add_done_callback(wakeup, context=self._context)
                self._external = yielded
                if self._must_cancel:
                    self._must_cancel = False
                    yielded.cancel(self._cancel_message)
                return
        elif yielded is None or yielded is _HAND_BACK:
            # A bare yield (asyncio.sleep(0)) or the coroutine about to end:
            # the task resumes it with None at the next loop pass.
            error = None
        else:
            error = RuntimeError(f"Task got bad yield: {yielded!r}")
        # result() tells the task what to resume the coroutine with.
        self._state = CANCELLED if self._must_cancel else DONE
        self._must_cancel = False
        self._result = None
        self._exception = error
        self._wake()


def _future_loop(future: Any) -> Any:
    """The loop of a future-like object, found as asyncio's Task finds it."""
    get_loop = getattr(future, "get_loop", None)
    return get_loop() if get_loop is not None else getattr(future, "_loop", None)


async def hand_back(stepper: Stepper) -> None:
    """Let ``stepper``'s task finish its coroutine itself; await before it ends.

    Inside a step, this yields to the stepper, which wakes the task: the rest
    of the coroutine runs in the task, which gets its result or exception.
    """
    if stepper._stepping:
        await _HAND_BACK
