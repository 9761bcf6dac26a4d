"""``ws13 sub`` and ``ws13 pub`` (via ``python -m ws13.hub.cli`` until the wiring lands)."""

from __future__ import annotations

import asyncio
import json
import sys
import unittest

from ws13.asyncio import serve
from ws13.asyncio.server import ServerConnection
from ws13.headers import Headers
from ws13.http11 import Request
from ws13.hub.auth import Principal
from ws13.hub.cli import MAX_NICK, demo_authorize

from .helpers import TIMEOUT, HubTestCase, wait_until


class CliTests(HubTestCase):
    async def run_cli(self, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ws13.hub.cli", *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(stdin), TIMEOUT)
        except TimeoutError:
            process.kill()  # never leave it running
            await process.wait()
            raise
        assert process.returncode is not None
        return process.returncode, stdout.decode(), stderr.decode()

    async def test_pub_then_sub_since(self) -> None:
        _, server = await self.start_hub()
        url = self.url(server)
        status, _, stderr = await self.run_cli("pub", url, "news", "first")
        self.assertEqual((status, stderr), (0, ""))
        status, _, _ = await self.run_cli("pub", url, "news", "--json", stdin=b'{"n": 2}\n[3]\n')
        self.assertEqual(status, 0)
        status, stdout, _ = await self.run_cli("sub", url, "news", "--since", "0", "--count", "3")
        self.assertEqual(status, 0)
        lines = [json.loads(line) for line in stdout.splitlines()]
        self.assertEqual([line["data"] for line in lines], ["first", {"n": 2}, [3]])
        self.assertEqual([line["offset"] for line in lines], [1, 2, 3])
        self.assertEqual({line["channel"] for line in lines}, {"news"})
        status, stdout, _ = await self.run_cli("sub", url, "news", "--since", "2", "--count", "1")
        self.assertEqual(json.loads(stdout)["data"], [3])

    async def test_sub_live(self) -> None:
        hub, server = await self.start_hub()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ws13.hub.cli", "sub", self.url(server), "live", "--count", "2",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        # Never leave the subscriber running when the test fails.
        self.addCleanup(lambda: process.returncode is None and process.kill())
        # Wait until the subscription is live (its reply sent), not merely
        # registered: a message published before that is, by the protocol's
        # definition, before the subscriber's starting offset.
        await wait_until(
            lambda: any(
                channel.subs.get(session, []) is None
                for session in hub.sessions
                for channel in session.channels.values()
            )
        )
        await hub.publish("live", "\x1b[31mred")
        await hub.publish("live", "two")
        stdout, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
        self.assertEqual(process.returncode, 0)
        first, second = stdout.decode().splitlines()
        self.assertNotIn("\x1b", first)  # escaped for the terminal, still JSON
        self.assertEqual(json.loads(first)["data"], "\x1b[31mred")
        self.assertEqual(json.loads(second)["offset"], 2)

    async def test_failures(self) -> None:
        _, server = await self.start_hub(max_data_size=10)
        url = self.url(server)
        status, _, stderr = await self.run_cli("pub", url, "c", "x" * 100)
        self.assertEqual(status, 1)
        self.assertIn("413", stderr)
        status, _, stderr = await self.run_cli("pub", "--json", url, "c", "{nope")
        self.assertEqual(status, 2)
        self.assertIn("invalid JSON", stderr)
        status, _, stderr = await self.run_cli("sub", "ws://127.0.0.1:1/hub", "c", "--count", "1")
        self.assertEqual(status, 1)
        self.assertTrue(stderr.startswith("ws13: error:"), stderr)
        status, _, stderr = await self.run_cli("sub", url, "c", "--epoch", "e")
        self.assertEqual(status, 2)
        status, _, stderr = await self.run_cli("sub", url, "bad channel", "--count", "1")
        self.assertEqual(status, 1)
        self.assertIn("400", stderr)
        self.assertNotIn("Traceback", stderr)

    async def test_bad_input_is_one_line_and_status_2(self) -> None:
        # Checked before connecting: nothing needs to listen.
        for args, message in [
            (("sub", "http://127.0.0.1:1/hub", "c"), "scheme isn't ws or wss"),
            (("pub", "ws://", "c", "x"), "hostname is missing"),
            (("sub", "ws://127.0.0.1:99999/hub", "c"), "port isn't a number between 0 and 65535"),
            (("sub", "ws://127.0.0.1:1/hub", "c", "--history", "-1"), "--history must be >= 0"),
        ]:
            with self.subTest(args=args):
                status, stdout, stderr = await self.run_cli(*args)
                self.assertEqual((status, stdout), (2, ""))
                self.assertNotIn("Traceback", stderr)
                self.assertEqual(stderr.count("\n"), 1, stderr)
                self.assertTrue(stderr.startswith("ws13: error: "), stderr)
                self.assertIn(message, stderr)

    async def test_not_a_hub(self) -> None:
        # A WebSocket server that doesn't agree to ws13.hub.v1: said at once.
        async def echo(connection: ServerConnection) -> None:
            async for message in connection:
                await connection.send(message)

        async with serve(echo, "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            for command in (("sub", url, "c"), ("pub", url, "c", "x")):
                with self.subTest(command=command[0]):
                    status, _, stderr = await self.run_cli(*command)
                    self.assertEqual(status, 1)
                    self.assertEqual(
                        stderr,
                        f"ws13: error: cannot connect to {url}: the endpoint did not speak the "
                        "ws13.hub.v1 subprotocol; is it the hub's URL (ws://HOST:PORT/hub)?\n",
                    )


class DemoAuthorizeTests(unittest.TestCase):
    """``ws13 serve``'s hub: ``/hub?nick=NAME`` names the connection in presence."""

    def principal(self, path: str) -> Principal:
        return demo_authorize(Request(path, Headers()))

    def test_nickname_in_presence_info(self) -> None:
        self.assertEqual(self.principal("/hub?nick=ann").info, {"nick": "ann"})
        self.assertEqual(self.principal("/hub?nick=%C3%A9mile%20B").info, {"nick": "émile B"})

    def test_anonymous_without_a_nickname(self) -> None:
        for path in ("/hub", "/hub?nick=", "/hub?nick=%20%20", "/hub?nick=%1b%07"):
            with self.subTest(path=path):
                self.assertIsNone(self.principal(path).info)

    def test_nickname_cleaned_and_cut(self) -> None:
        self.assertEqual(self.principal("/hub?nick=%1b[31mred").info, {"nick": "[31mred"})
        self.assertEqual(self.principal("/hub?nick=" + "x" * 100).info, {"nick": "x" * MAX_NICK})

    def test_allows_everything(self) -> None:
        principal = self.principal("/hub?nick=ann")
        self.assertTrue(principal.may_subscribe("chat:lobby"))
        self.assertTrue(principal.may_publish("chat:lobby"))
