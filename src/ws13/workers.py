"""Pre-forked worker processes under a supervising parent (``ws13 serve --workers N``).

``supervise(count, target)`` forks ``count`` workers, each calling
``target(worker)`` with a ``Worker`` that says which one it is, and runs in
the parent until they are all gone:

* **Fork after imports**: the parent imports everything first and freezes
  its objects out of the garbage collector (``gc.freeze()``), so the code
  and data pages it forks stay shared: each worker's own memory (its PSS
  share) is only what it adds.
* **Start**: services (``services=``, e.g. the hub's local backplane) and
  then the workers start one after another; each calls ``worker.ready()``
  once it serves. One that exits before that fails the start: the others
  are stopped and ``supervise`` returns its exit status (its own error line
  is the one the operator reads, printed once).
* **Restart**: a process that dies later is started again after a backoff
  of ``RESTART_DELAY`` seconds doubling per recent death (at most
  ``MAX_RESTART_DELAY``), with a log line each time. ``MAX_DEATHS`` deaths
  of one process within ``DEATH_WINDOW`` seconds is a tight loop: the parent
  gives up, stops the others and returns 1.
* **Signals**: SIGTERM or SIGINT to the parent is forwarded (as SIGTERM) to
  every worker, which stops gracefully; a second one is forwarded again, to
  hurry them. Services stop after the workers. Workers still running
  ``STOP_TIMEOUT`` seconds after the first signal are killed. ``supervise``
  returns 0 when every worker exited with 0, else 1.
* Each child runs in its own process group, so that a Ctrl-C at a terminal
  reaches the parent only (which forwards it once) rather than every
  process at the same time; a process manager should signal the parent
  (systemd: ``KillMode=mixed``).
* **Orphans**: a child whose parent dies (even by SIGKILL) sees end-of-file
  on ``Worker.lifeline`` and should stop; ``ws13 serve`` does.

POSIX only (``os.fork``). Logs go to the ``ws13.workers`` logger.
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import logging
import os
import select
import signal
import sys
import time  # noqa: TID251 - the supervisor's backoff and deadlines need a clock
import traceback
from collections.abc import Callable, Sequence

__all__ = [
    "DEATH_WINDOW",
    "MAX_DEATHS",
    "MAX_RESTART_DELAY",
    "RESTART_DELAY",
    "STOP_TIMEOUT",
    "Worker",
    "supervise",
]

logger = logging.getLogger("ws13.workers")

#: Seconds before restarting a process that died once; doubles per recent death.
RESTART_DELAY = 0.5
#: The longest backoff before a restart, in seconds.
MAX_RESTART_DELAY = 5.0
#: Deaths of one process within ``DEATH_WINDOW`` seconds that make the parent give up.
MAX_DEATHS = 5
DEATH_WINDOW = 60.0
#: Seconds the workers get to stop after the first signal before they are killed.
STOP_TIMEOUT = 30.0

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclasses.dataclass(frozen=True)
class Worker:
    """What a forked process learns about itself.

    Attributes:
        index: 0 to N-1 for workers; services are numbered after the workers.
        name: ``"worker 0"``, or the service's name (``"backplane"``).
        lifeline: a file descriptor that becomes readable (end of file) when
            the parent dies: watch it and stop.
    """

    index: int
    name: str
    lifeline: int
    _ready: int

    def ready(self) -> None:
        """Tell the parent this process serves now (call it once)."""
        os.write(self._ready, f"{os.getpid()}\n".encode())


Target = Callable[[Worker], int]


@dataclasses.dataclass
class _Slot:
    index: int
    name: str
    target: Target
    service: bool
    pid: int | None = None
    ready: bool = False
    status: int | None = None
    restart_at: float | None = None
    deaths: collections.deque[float] = dataclasses.field(default_factory=collections.deque)


class _Supervisor:
    def __init__(self, slots: list[_Slot], started: Callable[[], None] | None) -> None:
        self.slots = slots
        self.started = started
        self.by_pid: dict[int, _Slot] = {}
        self.signals: list[int] = []
        self.stopping_since: float | None = None
        self.killed = False
        self.ready_buffer = b""
        self.wakeup_r, self.wakeup_w = os.pipe()
        self.ready_r, self.ready_w = os.pipe()
        self.lifeline_r, self.lifeline_w = os.pipe()
        for fd in (self.wakeup_r, self.wakeup_w, self.ready_r):
            os.set_blocking(fd, False)

    # -- children ----------------------------------------------------------

    def spawn(self, slot: _Slot) -> None:
        slot.ready = False
        slot.status = None
        slot.restart_at = None
        # Flushed now, or the child would write the parent's buffered text again.
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, measured by its tests
            self._child(slot)
        slot.pid = pid
        self.by_pid[pid] = slot

    def _child(self, slot: _Slot) -> None:
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (*_STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            os.setpgid(0, 0)
            for fd in (self.wakeup_r, self.wakeup_w, self.ready_r, self.lifeline_w):
                os.close(fd)
            worker = Worker(slot.index, slot.name, self.lifeline_r, self.ready_w)
            status = slot.target(worker)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)

    def reap(self) -> list[_Slot]:
        """The slots whose process exited since the last call."""
        gone = []
        while self.by_pid:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            slot = self.by_pid.pop(pid, None)
            if slot is not None:
                slot.pid = None
                slot.status = os.waitstatus_to_exitcode(wait_status)
                gone.append(slot)
        return gone

    def read_ready(self) -> None:
        try:
            self.ready_buffer += os.read(self.ready_r, 4096)
        except BlockingIOError:
            return
        *lines, self.ready_buffer = self.ready_buffer.split(b"\n")
        for line in lines:
            slot = self.by_pid.get(int(line))
            if slot is not None:
                slot.ready = True

    def kill(self, slots: Sequence[_Slot], signum: int) -> None:
        for slot in slots:
            if slot.pid is not None:
                try:
                    os.kill(slot.pid, signum)
                except ProcessLookupError:
                    pass  # exited; reaped at the next SIGCHLD

    # -- waiting -----------------------------------------------------------

    def wait(self, timeout: float | None) -> None:
        """Sleep until a signal, a ready line, or ``timeout`` seconds."""
        try:
            readable, _, _ = select.select([self.wakeup_r, self.ready_r], [], [], timeout)
        except InterruptedError:
            readable = []
        if self.wakeup_r in readable:
            try:
                os.read(self.wakeup_r, 4096)
            except BlockingIOError:
                pass
        if self.ready_r in readable:
            self.read_ready()

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum != signal.SIGCHLD:
            self.signals.append(signum)

    # -- the phases ----------------------------------------------------------

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in (*_STOP_SIGNALS, signal.SIGCHLD)}
        previous_fd = signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)
        gc.collect()
        gc.freeze()
        try:
            status = self.start()
            if status is None:
                if self.started is not None:
                    self.started()
                status = self.serve()
            return status
        finally:
            signal.set_wakeup_fd(previous_fd)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            gc.unfreeze()
            for fd in (
                self.wakeup_r,
                self.wakeup_w,
                self.ready_r,
                self.ready_w,
                self.lifeline_r,
                self.lifeline_w,
            ):
                os.close(fd)

    def start(self) -> int | None:
        """Start every slot in order; None, or the status of a failed start."""
        for slot in self.slots:
            self.spawn(slot)
            while not slot.ready:
                self.wait(None)
                for gone in self.reap():
                    status = gone.status or 1
                    # Its own error line says why: the operator reads that one.
                    logger.debug(
                        "%s exited with status %s before serving; stopping",
                        gone.name,
                        gone.status,
                    )
                    self.stop_all()
                    return status
                if self.signals:
                    return self.stop_all()
        return None

    def serve(self) -> int:
        """Restart what dies until a signal; then stop everything."""
        while True:
            now = time.monotonic()
            pending = [s.restart_at for s in self.slots if s.restart_at is not None]
            self.wait(None if not pending else max(0.0, min(pending) - now))
            if self.signals:
                return self.stop_all()
            now = time.monotonic()
            for slot in self.reap():
                given_up = self.died(slot, now)
                if given_up:
                    self.stop_all()
                    return 1
            for slot in self.slots:
                if slot.restart_at is not None and slot.restart_at <= now:
                    logger.warning("restarting %s", slot.name)
                    self.spawn(slot)

    def died(self, slot: _Slot, now: float) -> bool:
        """Schedule ``slot``'s restart; True if it dies in a tight loop."""
        slot.deaths.append(now)
        while slot.deaths and slot.deaths[0] < now - DEATH_WINDOW:
            slot.deaths.popleft()
        how = _describe(slot.status)
        if len(slot.deaths) >= MAX_DEATHS:
            logger.error(
                "%s %s, %d times in %g s: giving up",
                slot.name,
                how,
                len(slot.deaths),
                DEATH_WINDOW,
            )
            return True
        delay = min(MAX_RESTART_DELAY, RESTART_DELAY * 2 ** (len(slot.deaths) - 1))
        logger.warning("%s %s; restarting it in %g s", slot.name, how, delay)
        slot.restart_at = now + delay
        return False

    def stop_all(self) -> int:
        """Stop the workers, then the services; 0 if every worker exited with 0."""
        if self.signals:
            logger.info("%s: stopping", signal.Signals(self.signals[0]).name)
        workers = [s for s in self.slots if not s.service]
        services = [s for s in self.slots if s.service]
        clean = self.stop(workers)
        self.stop(services)
        return 0 if clean else 1

    def stop(self, slots: list[_Slot]) -> bool:
        for slot in slots:
            slot.restart_at = None
        running = [s for s in slots if s.pid is not None]
        self.kill(running, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        forwarded = len(self.signals)
        clean = True
        while any(s.pid is not None for s in slots):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.error("killing what still runs %g s after the stop signal", STOP_TIMEOUT)
                self.kill(slots, signal.SIGKILL)
                self.killed = True
                deadline = float("inf")
            self.wait(None if remaining <= 0 else remaining)
            for gone in self.reap():
                clean = clean and gone.status == 0
            if len(self.signals) > max(forwarded, 1):
                # Another signal: hurry them.
                forwarded = len(self.signals)
                self.kill(slots, signal.SIGTERM)
        return clean and not self.killed


def _describe(status: int | None) -> str:
    if status is not None and status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by {name}"
    return f"exited with status {status}"


def supervise(
    count: int,
    target: Target,
    *,
    services: Sequence[tuple[str, Target]] = (),
    started: Callable[[], None] | None = None,
) -> int:
    """Fork ``count`` workers running ``target``; supervise them until a signal.

    ``services`` are ``(name, target)`` pairs started before the workers
    and stopped after them, restarted alike. ``started()`` is called once
    every process serves. Each target returns the
    process's exit status; it gets a ``Worker``. Returns the parent's exit
    status (see the module docstring). Call it from the main thread, with no
    event loop running: the children start from a copy of this process.
    """
    if count < 1:
        raise ValueError(f"count must be 1 or more, not {count}")
    slots = [
        _Slot(count + i, name, service_target, service=True)
        for i, (name, service_target) in enumerate(services)
    ]
    slots += [_Slot(i, f"worker {i}", target, service=False) for i in range(count)]
    return _Supervisor(slots, started).run()
