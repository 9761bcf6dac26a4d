"""A real uvicorn process for the tests: started, waited for, stopped.

``Uvicorn(app, ws=..., http=...)`` runs ``python -m uvicorn`` (or, with
``run_with_class``, ``uvicorn.run(app, ws=WebSocketProtocol)``) in a
subprocess on a free port of 127.0.0.1 (uvicorn has no ``--port 0``), with
its log in a temporary file, and waits until it accepts connections.
``stop()`` sends SIGTERM (or another signal) and waits for it to exit;
``close()``, in teardown, kills it if still there. Start one per test class.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ws13.asyncio import connect

from ..utils import MS, free_port

__all__ = ["CONTROL", "WS13", "Uvicorn", "recorded"]

#: ``--ws`` values: ws13's protocol and uvicorn's own sans-I/O one, the control.
WS13 = "ws13.uvicorn:WebSocketProtocol"
CONTROL = "websockets-sansio"

#: Seconds for uvicorn to start and to stop.
START_TIMEOUT = 30_000 * MS
STOP_TIMEOUT = 20_000 * MS

ROOT = Path(__file__).resolve().parents[2]


class Uvicorn:
    """One uvicorn process serving ``app`` (an import path)."""

    def __init__(
        self,
        app: str,
        *,
        ws: str = WS13,
        http: str = "httptools",
        args: tuple[str, ...] = (),
        run_with_class: bool = False,
    ) -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="uvicorn-", suffix=".log", delete=False)  # noqa: SIM115
        command = [
            sys.executable, "-m", "uvicorn", app,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--ws", ws, "--http", http, "--loop", "uvloop",
            *args,
        ]  # fmt: skip
        if run_with_class:
            # uvicorn.run(app, ws=WebSocketProtocol): the class, not a path.
            assert ws == WS13
            assert not args
            code = (
                "import uvicorn; from ws13.uvicorn import WebSocketProtocol; "
                f"uvicorn.run({app!r}, host='127.0.0.1', port={self.port}, "
                f"ws=WebSocketProtocol, http={http!r})"
            )
            command = [sys.executable, "-c", code]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited at start:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"uvicorn didn't start:\n{self.output()}") from None
                time.sleep(0.05)

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def output(self) -> str:
        """What uvicorn logged so far."""
        return Path(self.log.name).read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum``; return uvicorn's exit status."""
        self.process.send_signal(signum)
        return self.process.wait(STOP_TIMEOUT)

    def close(self) -> None:
        """Kill the process group if still there; remove the log."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


async def recorded(server: Uvicorn, key: str) -> Any:
    """What the app's handler for ``key`` recorded (``apps.REPORTS``), once it did."""
    for _ in range(100):
        async with connect(server.url(f"/report?key={key}")) as ws:
            found = json.loads(await ws.recv())
        if found is not None:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing recorded for {key}")
