"""Headless Chromium, driven over the DevTools protocol with ws13's own client.

``async with Chromium() as browser`` starts a headless Chromium with a fresh
profile, reads the ``DevTools listening on ws://...`` line it prints, and
connects ``ws13.asyncio.connect`` to that URL: every command below is a JSON
message over a ws13 client connection, so using this helper also tests our
client against Chromium's WebSocket server. ``await browser.new_page(url)``
opens a tab on ``url``; ``await page.evaluate(expression)`` runs JavaScript in
it, awaits a returned promise and returns the value as JSON-decoded Python.

Chromium runs in its own process group, which teardown always kills, even when
startup fails half way. Its stderr goes to a log file whose tail is in the
errors raised here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from ws13.asyncio import connect
from ws13.asyncio.client import ClientConnection
from ws13.exceptions import ConnectionClosed

from ..utils import MS

__all__ = ["Chromium", "DevToolsError", "JavaScriptError", "Page"]

#: Headless, no sandbox (CI runs as root), nothing that reaches the network on
#: its own (no QUIC, no background requests, no component updates, no sync).
#: --disable-dev-shm-usage: containers often have a tiny /dev/shm, and Debian's
#: wrapper script only adds the flag when its own check of /dev/shm works.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
]

#: Seconds for Chromium to start, and for one DevTools command.
TIMEOUT = 60_000 * MS

DEVTOOLS_URL = re.compile(rb"DevTools listening on (ws://\S+)")


class DevToolsError(Exception):
    """A DevTools command failed, or Chromium could not be started or reached."""


class JavaScriptError(DevToolsError):
    """The evaluated expression threw, or the promise it returned rejected."""


def executable() -> str:
    """Chromium's path: $WS13_CHROMIUM, else chromium (Debian) or google-chrome on PATH."""
    path = os.environ.get("WS13_CHROMIUM")
    if path:
        return path
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise DevToolsError("Chromium is not installed (scripts/test.sh installs it as root)")


class Chromium:
    """Start Chromium and connect to its DevTools endpoint; see the module docstring.

    Args:
        compression: passed to ``ws13.asyncio.connect`` for the DevTools
            connection (Chromium's DevTools server accepts permessage-deflate).
        flags: command-line flags added to ``FLAGS``.
    """

    def __init__(self, *, compression: str | None = None, flags: Sequence[str] = ()) -> None:
        self.compression = compression
        self.flags = list(flags)
        self.process: subprocess.Popen[bytes] | None = None
        self.connection: ClientConnection | None = None
        #: The ``ws://`` URL Chromium printed.
        self.url = ""
        self._tmpdir: str | None = None
        self._log_path = ""
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[tuple[str, str | None, asyncio.Future[dict[str, Any]]]] = []
        self._reader: asyncio.Task[None] | None = None
        self._closed_exc: BaseException | None = None

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Chromium:
        try:
            await self._start()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _start(self) -> None:
        self._tmpdir = tempfile.mkdtemp(prefix="ws13-chromium-")
        self._log_path = os.path.join(self._tmpdir, "stderr.log")
        profile = os.path.join(self._tmpdir, "profile")
        with open(self._log_path, "wb") as log:
            # Its own session, so teardown can kill the whole process group
            # (zygotes, renderers, the network service) by the browser's pid.
            self.process = subprocess.Popen(
                [executable(), *FLAGS, *self.flags, f"--user-data-dir={profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        self.url = await self._devtools_url()
        self.connection = await connect(
            self.url, compression=self.compression, max_size=None, open_timeout=TIMEOUT
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _devtools_url(self) -> str:
        assert self.process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while True:
            with open(self._log_path, "rb") as log:
                match = DEVTOOLS_URL.search(log.read())
            if match is not None:
                return match.group(1).decode()
            if self.process.poll() is not None:
                raise DevToolsError(
                    f"Chromium exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if loop.time() > deadline:
                raise DevToolsError(f"Chromium printed no DevTools URL:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    async def _stop(self) -> None:
        try:
            if self.connection is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await self.connection.close()
                if self.connection.transport is not None:
                    self.connection.transport.abort()
            if self._reader is not None:
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader
        finally:
            if self.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                await asyncio.to_thread(self.process.wait)
            if self._tmpdir is not None:
                await asyncio.to_thread(shutil.rmtree, self._tmpdir, ignore_errors=True)

    def log_tail(self, size: int = 4000) -> str:
        """The end of Chromium's stderr."""
        try:
            with open(self._log_path, "rb") as log:
                log.seek(max(0, os.path.getsize(self._log_path) - size))
                return log.read().decode(errors="replace")
        except OSError:
            return "(no log)"

    # -- the DevTools protocol -----------------------------------------------

    async def _read(self) -> None:
        assert self.connection is not None
        try:
            async for message in self.connection:
                payload = json.loads(message)
                if "id" in payload:
                    future = self._pending.pop(payload["id"], None)
                    if future is not None and not future.done():
                        future.set_result(payload)
                    continue
                method, session = payload.get("method"), payload.get("sessionId")
                for waiter in list(self._waiters):
                    if waiter[0] == method and waiter[1] == session:
                        self._waiters.remove(waiter)
                        if not waiter[2].done():
                            waiter[2].set_result(payload.get("params", {}))
            exc: BaseException = DevToolsError("the DevTools connection closed")
        except ConnectionClosed as closed:
            exc = DevToolsError(f"the DevTools connection closed: {closed}")
        except Exception as error:
            exc = error
        self._closed_exc = exc
        for future in [*self._pending.values(), *(w[2] for w in self._waiters)]:
            if not future.done():
                future.set_exception(exc)
        self._pending.clear()
        self._waiters.clear()

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Send a command (to a page's session if given) and return its result."""
        assert self.connection is not None
        if self._closed_exc is not None:
            raise self._closed_exc
        command: dict[str, Any] = {"id": next(self._ids), "method": method}
        if params:
            command["params"] = params
        if session is not None:
            command["sessionId"] = session
        future = asyncio.get_running_loop().create_future()
        self._pending[command["id"]] = future
        try:
            await self.connection.send(json.dumps(command))
            async with asyncio.timeout(TIMEOUT):
                response = await future
        finally:
            self._pending.pop(command["id"], None)
        if "error" in response:
            raise DevToolsError(f"{method}: {response['error']}")
        result: dict[str, Any] = response.get("result", {})
        return result

    def event(self, method: str, session: str | None = None) -> asyncio.Future[dict[str, Any]]:
        """A future for the params of the next ``method`` event (register it first)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((method, session, future))
        return future

    def forget(self, future: asyncio.Future[dict[str, Any]]) -> None:
        """Cancel a future from ``event()`` that is no longer awaited."""
        future.cancel()
        self._waiters = [waiter for waiter in self._waiters if waiter[2] is not future]

    async def new_page(self, url: str = "about:blank") -> Page:
        """Open a new tab, attach to it and load ``url`` (until its load event)."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, target["targetId"], attached["sessionId"])
        if url != "about:blank":
            await page.navigate(url)
        return page


class Page:
    """A tab of a ``Chromium``, attached with a flat DevTools session."""

    def __init__(self, browser: Chromium, target: str, session: str) -> None:
        self.browser = browser
        self.target = target
        self.session = session

    async def navigate(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        await self.browser.send("Page.enable", session=self.session)
        loaded = self.browser.event("Page.loadEventFired", self.session)
        try:
            result = await self.browser.send("Page.navigate", {"url": url}, self.session)
            if result.get("errorText"):
                raise DevToolsError(f"navigating to {url}: {result['errorText']}")
            async with asyncio.timeout(TIMEOUT):
                await loaded
        finally:
            self.browser.forget(loaded)

    async def evaluate(self, expression: str) -> Any:
        """Evaluate ``expression``, await it if it's a promise, return its value.

        Raises JavaScriptError if it throws or rejects.
        """
        result = await self.browser.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            self.session,
        )
        details = result.get("exceptionDetails")
        if details is not None:
            exception = details.get("exception", {})
            raise JavaScriptError(exception.get("description") or details.get("text"))
        return result["result"].get("value")

    async def close(self) -> None:
        """Close the tab."""
        await self.browser.send("Target.closeTarget", {"targetId": self.target})
