"""Resuming a task that waits for a message from ``data_received()``, without a loop iteration.

``async for message in ws`` on plain asyncio costs, per message, a future, a
``call_soon`` handle and a pass of the event loop before the reading task
takes the next step: ``bench/instructions.py`` counts 15,864 instructions per
32 B echo for that floor, against 11,847 when ``data_received()`` steps the
task's coroutine itself, with the task kept parked (``floor-task`` and
``floor-step``). This module does the second for any task of asyncio's own
``Task`` classes that waits in ``recv()`` or ``async for``: a server's
handler, a client's reader.

How: when the task waits for a message, it awaits a ``Stepper``, an object
that speaks the future protocol asyncio's ``Task`` uses (the task calls its
``add_done_callback()`` and waits). A message arriving from the event loop
(no task running) doesn't complete it: the stepper enters the task
(``current_task()`` is the reading task, as always), sends the message into
the task's coroutine in the task's context, and leaves it. The coroutine
runs, answers, and waits on the stepper again: the task never noticed, it is
still waiting on the stepper. Whatever else the coroutine awaits (a drain, a
sleep, a lock) comes back to the stepper instead of the task; the stepper
hands it to the task as the task would have taken it (the task's own
wake-up callback on that future), so from there on the task runs the
coroutine as usual, and ``Task.cancel()`` reaches that future through the
stepper. A coroutine that returns or raises inside a step ends its task as
``Task.__step()`` would: result, exception or cancellation, set through the
task's base class (``asyncio.Future``), whose methods the task's step calls
too.

What stays the same for the task: ``asyncio.current_task()``, context
variables, cancellation (while waiting for a message or anything else),
exceptions, timeouts, its result. Limits, and where it falls back to an
ordinary wake-up through the loop:

* only tasks whose class is asyncio's ``Task`` (C or pure Python): a
  subclass from a custom task factory may do more in its step, so it waits
  on a future;
* only from the event loop: a message delivered while a task runs (an
  in-process transport writing from a task) wakes the reader through the
  loop, as a future would;
* one stepper per connection, for the last task that waited: a connection
  read by turns from several tasks makes a stepper whenever the reader
  changes (``asyncio.wait_for(ws.recv(), t)`` makes a task per call on 3.11);
* it needs asyncio's ``_enter_task()`` and ``_leave_task()`` (CPython 3.7
  and later have them); without them, no stepper is made.
"""

from __future__ import annotations

import asyncio
from contextvars import Context
from typing import TYPE_CHECKING, Any

from .. import _accel
from ._stepcore import CANCELLED, DONE, PENDING, enter_task, leave_task
from ._stepcore import StepperCore as _PyStepperCore

if TYPE_CHECKING:
    StepperCore = _PyStepperCore
else:
    StepperCore = _accel.StepperCore or _PyStepperCore

__all__ = ["AVAILABLE", "Stepper", "steppable"]

#: Whether this Python's asyncio lets a task be stepped from outside.
AVAILABLE = enter_task is not None and leave_task is not None

Message = str | bytes
Wakeup = Any

#: The task classes a stepper steps, each with its base class: a coroutine
#: that ends inside a step ends its task through the base class's
#: ``set_result()``, ``set_exception()`` or ``cancel()``, as ``Task.__step()``
#: does (the task's own ``set_result()`` refuses).
_FUTURE_OF_TASK: dict[type, Any] = {asyncio.Task: asyncio.Future}
if hasattr(asyncio.tasks, "_PyTask") and hasattr(asyncio.futures, "_PyFuture"):
    _FUTURE_OF_TASK[asyncio.tasks._PyTask] = asyncio.futures._PyFuture


def steppable(task: asyncio.Task[Any]) -> bool:
    """Whether a ``Stepper`` can step ``task``: one of asyncio's own Task classes."""
    return AVAILABLE and type(task) in _FUTURE_OF_TASK


class Stepper(StepperCore):
    """The future a task waits on for its connection's next message.

    It is a future that can be completed many times: each ``await``
    starts a new wait. The queue (``MessageQueue``) uses it as its waiter:
    ``set_result()`` with the next message, ``set_exception()`` once closed.
    ``StepperCore`` (C, or ``_stepcore.py``) has what runs per message.

    Args:
        loop: the event loop of ``task``.
        coro: the coroutine ``task`` runs.
        task: the task to step (``steppable()``).
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
        elif yielded is None:
            # A bare yield (asyncio.sleep(0)): the task resumes the coroutine
            # with None at the next loop pass.
            error = None
        else:
            error = RuntimeError(f"Task got bad yield: {yielded!r}")
        # result() tells the task what to resume the coroutine with.
        self._state = CANCELLED if self._must_cancel else DONE
        self._must_cancel = False
        self._result = None
        self._exception = error
        self._wake()

    def _finish(self, result: Any, exc: BaseException | None) -> None:
        """The coroutine ended inside a step: end its task as ``Task.__step()`` would."""
        task = self.task
        assert task is not None
        # The task waits here no more, and the stepper lets go of the task
        # and its coroutine: the done task keeps its last waiter (this), and
        # a reference back would be a cycle for the garbage collector.
        self.task = None
        self._coro = None
        self._wakeup = None
        self._context = None
        self._state = DONE
        must_cancel = self._must_cancel
        self._must_cancel = False
        future = _FUTURE_OF_TASK[type(task)]
        if exc is None:
            if must_cancel:
                # Cancelled (by itself) right before the coroutine returned.
                future.cancel(task, self._cancel_message)
            else:
                future.set_result(task, result)
        elif isinstance(exc, asyncio.CancelledError):
            future.cancel(task)
        else:
            future.set_exception(task, exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise exc


def _future_loop(future: Any) -> Any:
    """The loop of a future-like object, found as asyncio's Task finds it."""
    get_loop = getattr(future, "get_loop", None)
    return get_loop() if get_loop is not None else getattr(future, "_loop", None)
