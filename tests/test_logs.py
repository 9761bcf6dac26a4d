"""Tests for ``ws13.logs``: ``JSONFormatter`` on real records and real connections."""

from __future__ import annotations

import io
import json
import logging
import re
import unittest
from typing import Any

from tests.hub.helpers import wait_until
from ws13.asyncio import connect, serve
from ws13.asyncio.server import ServerConnection
from ws13.logs import JSONFormatter, format_address


class Capture:
    """A logger whose records are formatted by ``JSONFormatter`` into a string."""

    def __init__(self, name: str) -> None:
        self.stream = io.StringIO()
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(JSONFormatter())
        self.logger = logging.getLogger(name)
        self.logger.addHandler(handler)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.handler = handler

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.propagate = True
        self.logger.setLevel(logging.NOTSET)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


class JSONFormatterTests(unittest.TestCase):
    def setUp(self) -> None:
        self.capture = Capture("ws13.test.logs")
        self.addCleanup(self.capture.close)

    def test_fields(self) -> None:
        self.capture.logger.warning("hello %s", "wörld\nnext", extra={"event": "greet", "n": 3})
        (record,) = self.capture.records()
        self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(record["level"], "warning")
        self.assertEqual(record["logger"], "ws13.test.logs")
        self.assertEqual(record["message"], "hello wörld\nnext")
        self.assertEqual((record["event"], record["n"]), ("greet", 3))
        # One record, one line, even with a newline in the message.
        self.assertEqual(self.capture.stream.getvalue().count("\n"), 1)

    def test_exception_and_unserializable_extra(self) -> None:
        try:
            raise ValueError("boom")
        except ValueError:
            self.capture.logger.exception("failed", extra={"thing": object()})
        (record,) = self.capture.records()
        self.assertEqual(record["level"], "error")
        self.assertIn("ValueError: boom", record["exception"])
        self.assertTrue(record["thing"].startswith("<object object at "))

    def test_addresses(self) -> None:
        self.assertEqual(format_address(("127.0.0.1", 80)), "127.0.0.1:80")
        self.assertEqual(format_address(("::1", 80, 0, 0)), "[::1]:80")
        self.assertEqual(format_address("/run/ws.sock"), "/run/ws.sock")
        self.assertIsNone(format_address(None))


class ConnectionFieldsTests(unittest.IsolatedAsyncioTestCase):
    async def test_connection_remote_and_close_code(self) -> None:
        capture = Capture("ws13.test.connection")
        self.addCleanup(capture.close)
        logger = capture.logger

        async def handler(ws: ServerConnection) -> None:
            logger.info("open", extra={"websocket": ws})
            await ws.wait_closed()
            logger.info("closed", extra={"websocket": ws})

        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
                local = ws.local_address
            await wait_until(lambda: len(capture.records()) == 2)
        opened, closed = capture.records()
        self.assertEqual(opened["remote"], f"{local[0]}:{local[1]}")
        self.assertNotIn("close_code", opened)
        self.assertRegex(opened["connection"], r"^[0-9a-f-]{36}$")
        self.assertEqual(closed["connection"], opened["connection"])
        self.assertEqual(closed["close_code"], 1000)
        self.assertNotIn("remote", closed)  # the socket is gone

    async def test_library_logs_carry_the_connection(self) -> None:
        # The server's own error log: a handler that fails.
        capture = Capture("ws13.test.server")
        self.addCleanup(capture.close)

        async def failing(ws: ServerConnection) -> None:
            raise RuntimeError("handler bug")

        async with (
            serve(failing, "127.0.0.1", 0, logger=capture.logger) as server,
            connect(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            await ws.wait_closed()
        (record,) = [r for r in capture.records() if r["message"] == "connection handler failed"]
        self.assertEqual(record["level"], "error")
        self.assertRegex(record["connection"], r"^[0-9a-f-]{36}$")
        self.assertTrue(re.match(r"127\.0\.0\.1:\d+$", record["remote"]), record)
        self.assertIn("RuntimeError: handler bug", record["exception"])
