"""Tests for ``ws13.workers``: a real supervisor forking real workers, in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import unittest

from tests.cli.helpers import ENV, TIMEOUT
from tests.utils import MS

#: The supervisor runs in its own interpreter (forking the test runner would
#: copy it); the test's code defines ``target`` and may set the constants.
PRELUDE = """
import logging, os, select, signal, sys, time
import ws13.workers as workers
from ws13.workers import supervise
logging.basicConfig(format="%(message)s", level=logging.INFO)
workers.RESTART_DELAY = 0.01
def say(text):  # one write per line: the workers share stdout
    os.write(1, (text + "\\n").encode())
"""


def wait_for_signal_then(status: int, signals: int = 1) -> str:
    """A target that serves, then exits with ``status`` after ``signals`` SIGTERMs."""
    return f"""
def target(worker):
    got = []
    signal.signal(signal.SIGTERM, lambda *_: got.append(1))
    worker.ready()
    say(f"pid {{os.getpid()}}")
    while len(got) < {signals}:
        if select.select([worker.lifeline], [], [], 0.01)[0]:
            return 9  # the parent died: don't outlive the test
    say(f"stopping {{worker.name}}")
    return {status}
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited orphan may stay a zombie a moment)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


class SuperviseTests(unittest.TestCase):
    def setUp(self) -> None:
        #: The lines pids() read.
        self.lines: list[str] = []

    def start(self, code: str, call: str) -> subprocess.Popen[str]:
        script = PRELUDE + textwrap.dedent(code) + f"\nsys.exit({call})\n"
        process = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        self.addCleanup(self.cleanup, process)
        return process

    def cleanup(self, process: subprocess.Popen[str]) -> None:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=TIMEOUT)

    def pids(self, process: subprocess.Popen[str], count: int) -> list[int]:
        """Read the ``pid N`` lines the workers print once they serve."""
        assert process.stdout is not None
        pids = []
        while len(pids) < count:
            line = process.stdout.readline()
            assert line, "the supervisor ended early"
            self.lines.append(line.rstrip("\n"))
            if line.startswith("pid "):
                pids.append(int(line.split()[1]))
        return pids

    def test_sigterm_stops_every_worker_and_exits_0(self) -> None:
        process = self.start(wait_for_signal_then(0), "supervise(3, target)")
        pids = self.pids(process, 3)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, stderr
        assert sorted(stdout.split("\n")[-4:-1]) == [f"stopping worker {i}" for i in range(3)]
        assert "SIGTERM: stopping" in stderr
        for pid in pids:
            with self.assertRaises(ProcessLookupError):
                os.kill(pid, 0)  # reaped by the supervisor

    def test_a_second_signal_is_forwarded(self) -> None:
        process = self.start(wait_for_signal_then(0, signals=2), "supervise(1, target)")
        self.pids(process, 1)
        process.send_signal(signal.SIGINT)
        time.sleep(50 * MS)
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, stderr
        assert "SIGINT: stopping" in stderr

    def test_a_worker_failing_at_the_start_fails_the_start(self) -> None:
        code = """
        def target(worker):
            say(f"started {worker.index}")
            return 3
        """
        process = self.start(code, "supervise(2, target)")
        stdout, _ = process.communicate(timeout=TIMEOUT)
        # The first failed: the second never started.
        assert (process.returncode, stdout) == (3, "started 0\n")

    def test_services_start_first_and_stop_last(self) -> None:
        service = """
            def service(worker):
                say(f"service {worker.index} {worker.name}")
                return target(worker)
        """
        code = wait_for_signal_then(0) + textwrap.dedent(service)
        process = self.start(code, 'supervise(1, target, services=[("backplane", service)])')
        self.pids(process, 2)
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0
        lines = [line for line in self.lines + stdout.splitlines() if not line.startswith("pid ")]
        assert lines == ["service 1 backplane", "stopping worker 0", "stopping backplane"]

    def test_a_dead_worker_is_restarted_then_given_up_in_a_tight_loop(self) -> None:
        code = """
        def target(worker):
            worker.ready()
            say(f"pid {os.getpid()}")
            time.sleep(0.05)
            return 4
        """
        process = self.start(code, "supervise(1, target)")
        stdout, stderr = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 1
        assert stdout.count("pid ") == 5
        assert "worker 0 exited with status 4; restarting it in 0.01 s" in stderr
        assert "worker 0 exited with status 4, 5 times in 60 s: giving up" in stderr

    def test_workers_that_ignore_the_signal_are_killed(self) -> None:
        code = """
        workers.STOP_TIMEOUT = 0.2
        def target(worker):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            worker.ready()
            say(f"pid {os.getpid()}")
            select.select([worker.lifeline], [], [])
            return 9
        """
        process = self.start(code, "supervise(1, target)")
        self.pids(process, 1)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 1
        assert "killing what still runs 0.2 s after the stop signal" in stderr

    def test_workers_stop_when_the_parent_dies(self) -> None:
        code = """
        def target(worker):
            worker.ready()
            say(f"pid {os.getpid()}")
            select.select([worker.lifeline], [], [])
            return 0
        """
        process = self.start(code, "supervise(2, target)")
        pids = self.pids(process, 2)
        process.kill()
        process.wait(timeout=TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        for pid in pids:
            while alive(pid):
                assert time.monotonic() < deadline, f"worker {pid} outlived its parent"
                time.sleep(10 * MS)

    def test_count_must_be_positive(self) -> None:
        from ws13.workers import supervise

        with self.assertRaises(ValueError):
            supervise(0, lambda worker: 0)
