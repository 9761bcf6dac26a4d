"""``ws13 sub`` and ``ws13 pub`` (via ``python -m ws13.hub.cli`` until the wiring lands)."""

from __future__ import annotations

import asyncio
import json
import sys

from .helpers import TIMEOUT, HubTestCase, wait_until


class CliTests(HubTestCase):
    async def run_cli(self, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ws13.hub.cli", *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(stdin), TIMEOUT)
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
        await wait_until(lambda: any(session.channels for session in hub.sessions))
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
