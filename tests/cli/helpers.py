"""Run the ``ws13`` command in real subprocesses for the CLI tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from typing import IO, Any

from tests.utils import MS, free_port

__all__ = ["TIMEOUT", "WS13", "CLITestCase", "wait_for_port"]

#: Generous: each subprocess starts a Python interpreter.
TIMEOUT = 20000 * MS
WS13 = [sys.executable, "-m", "ws13"]
#: The subprocesses' environment: asyncio debug mode (if the tests run with
#: it) would add slow-callback warnings to the stderr whose lines we check.
ENV = {
    **{name: value for name, value in os.environ.items() if name != "PYTHONASYNCIODEBUG"},
    "PYTHONUNBUFFERED": "1",
}


def wait_for_port(port: int, process: subprocess.Popen[Any], host: str = "127.0.0.1") -> None:
    """Return once ``host:port`` accepts TCP connections; fail if ``process`` exits first."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with status {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=TIMEOUT):
                return
        except OSError:
            time.sleep(20 * MS)
    raise AssertionError(f"nothing listens on {host}:{port} after {TIMEOUT} s")


class CLITestCase(unittest.TestCase):
    """Start ``ws13`` subprocesses; kill whatever still runs at the end of the test."""

    def start(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``ws13 ARGS``, its stderr going to a file read by ``stderr_of()``."""
        return self.spawn([*WS13, *args], **kwargs)

    def spawn(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``argv``, its stderr going to a file read by ``stderr_of()``."""
        # Closed by the cleanup rather than a with block: it outlives this call.
        stderr = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self.addCleanup(stderr.close)
        process = subprocess.Popen(
            argv, stderr=stderr, text=True, encoding="utf-8", env=ENV, **kwargs
        )
        self.addCleanup(self._stop, process)
        self._stderr[process.pid] = stderr
        return process

    def setUp(self) -> None:
        self._stderr: dict[int, IO[str]] = {}

    def stderr_of(self, process: subprocess.Popen[str]) -> str:
        stderr = self._stderr[process.pid]
        stderr.seek(0)
        return stderr.read()

    def _stop(self, process: subprocess.Popen[str]) -> None:
        if process.poll() is None:
            process.kill()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except BrokenPipeError:
                    pass
        process.wait(timeout=TIMEOUT)

    def start_server(
        self, *args: str, host: str = "127.0.0.1"
    ) -> tuple[subprocess.Popen[str], int]:
        """Start ``ws13 serve`` on a free port; return once it accepts connections."""
        port = free_port(socket.AF_INET6 if ":" in host else socket.AF_INET)
        process = self.start(
            "serve", "--host", host, "--port", str(port), *args, stdout=subprocess.DEVNULL
        )
        wait_for_port(port, process, host)
        return process, port

    def stop_server(self, process: subprocess.Popen[str], signum: int = signal.SIGTERM) -> int:
        process.send_signal(signum)
        return process.wait(timeout=TIMEOUT)

    def run_ws13(self, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
        """Run ``ws13 ARGS`` to completion with ``input`` on stdin."""
        return subprocess.run(
            [*WS13, *args],
            input=input,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TIMEOUT,
            env=ENV,
        )

    def assert_one_line_error(self, stderr: str, message: str | None = None) -> None:
        """stderr is exactly one ``ws13: error: ...`` line, with no traceback."""
        assert "Traceback" not in stderr, stderr
        lines = stderr.splitlines()
        assert len(lines) == 1, stderr
        assert lines[0].startswith("ws13: error: "), stderr
        if message is not None:
            assert lines[0] == f"ws13: error: {message}"
