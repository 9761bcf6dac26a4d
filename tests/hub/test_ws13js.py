"""ws13.js (the browser client) against a real hub, run by Node's built-in WebSocket."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from typing import Any

import ws13
from ws13.asyncio.server import Server

from .helpers import TIMEOUT, HubTestCase, wait_until

WS13_JS = os.path.join(os.path.dirname(ws13.__file__), "static", "ws13.js")

SCRIPT = """
const WS13Hub = require(process.argv[1]);
const hub = new WS13Hub(process.argv[2], {backoffMin: 20, backoffMax: 200});
const out = (x) => console.log(JSON.stringify(x));
hub.onstatus = (state) => out({status: state});
(async () => {
  await hub.subscribe("chat", (m) => out({data: m.data, offset: m.offset}), {
    history: 2, onGap: (g) => out({gap: g.reason}),
  });
  out({published: (await hub.publish("chat", "from js")).offset});
  out({history: (await hub.history("chat")).messages.length});
  try { await hub.publish("bad channel", 1); } catch (e) { out({error: e.code}); }
  out({ready: hub.clientId});
})();
process.stdin.on("data", () => { hub.close(); process.exit(0); });
"""


class Ws13JsTests(HubTestCase):
    async def test_subscribe_publish_reconnect_recover(self) -> None:
        node = shutil.which("node")
        assert node is not None, "node is missing: apt-get install nodejs"
        hub, server = await self.start_hub()
        for i in range(3):
            await hub.publish("chat", i)
        process = await asyncio.create_subprocess_exec(
            node, "--no-warnings", "--experimental-websocket", "-e", SCRIPT, WS13_JS,
            self.url(server),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        assert process.stdin is not None
        lines: list[dict[str, Any]] = []

        async def read_until(key: str) -> None:
            async with asyncio.timeout(TIMEOUT):
                while not lines or key not in lines[-1]:
                    lines.append(json.loads(await process.stdout.readline()))  # type: ignore[union-attr]

        try:
            await read_until("ready")
            data = [line for line in lines if "data" in line]
            self.assertEqual([d["data"] for d in data], [1, 2, "from js"])
            self.assertEqual([d["offset"] for d in data], [2, 3, 4])
            self.assertIn({"published": 4}, lines)
            self.assertIn({"history": 4}, lines)
            self.assertIn({"error": 400}, lines)
            # Drop the connection; what is published meanwhile arrives once, in order.
            lines.clear()
            (session,) = hub.sessions
            assert session.transport.connection.transport is not None
            session.transport.connection.transport.abort()
            await wait_until(lambda: not hub.sessions)
            for i in range(5, 8):
                await hub.publish("chat", i)
            await wait_until(lambda: bool(hub.sessions))
            await hub.publish("chat", 8)
            async with asyncio.timeout(TIMEOUT):
                while [line.get("data") for line in lines if "data" in line] != [5, 6, 7, 8]:
                    lines.append(json.loads(await process.stdout.readline()))
            self.assertNotIn("gap", json.dumps(lines))
        finally:
            process.stdin.write(b"exit\n")
            await asyncio.wait_for(process.wait(), TIMEOUT)


PACED = """
const WS13Hub = require(process.argv[1]);
const hub = new WS13Hub(process.argv[2]);
let refused = 0;  // the 429s publish() met and retried past
const request = hub._request.bind(hub);
hub._request = (r, f) => request(r, f).catch((e) => { refused += e.code === 429; throw e; });
(async () => {
  const offsets = [];
  for (let i = 0; i < 8; i++) offsets.push((await hub.publish("chat", i)).offset);
  console.log(JSON.stringify({offsets, refused}));
  hub.close();
  process.exit(0);  // the requests' reply timers would keep Node up a while
})().catch((e) => { console.log(JSON.stringify({error: e.code})); process.exit(1); });
"""


LOOP = """
const WS13Hub = require(process.argv[1]);
const hub = new WS13Hub(process.argv[2]);
const rates = [];  // the rate of each 429 publish() met and retried past
const request = hub._request.bind(hub);
hub._request = (r, f) => request(r, f).catch((e) => {
  if (e.code === 429) rates.push(e.rate === undefined ? null : e.rate);
  throw e;
});
(async () => {
  const offsets = [];
  for (let i = 0; i < 20; i++) offsets.push((await hub.publish("chat", i)).offset);
  console.log(JSON.stringify({offsets, rates, connections: hub.connections}));
  hub.close();
  process.exit(0);
})().catch((e) => { console.log(JSON.stringify({error: e.code})); process.exit(1); });
"""


GATED = """
const WS13Hub = require(process.argv[1]);
const hub = new WS13Hub(process.argv[2]);
let refused = 0;  // the 429s publish() met and retried past
let closed = 0;
hub.onstatus = (state) => { closed += state === "closed"; };
const request = hub._request.bind(hub);
hub._request = (r, f) => request(r, f).catch((e) => { refused += e.code === 429; throw e; });
(async () => {
  const oneByOne = async () => {
    const offsets = [];
    for (let i = 0; i < 8; i++) offsets.push((await hub.publish("seq", i)).offset);
    return offsets;
  };
  const together = Promise.all([...Array(8).keys()].map((i) => hub.publish("all", i)));
  const [sequential, replies] = await Promise.all([oneByOne(), together]);
  console.log(JSON.stringify({
    sequential, together: replies.map((r) => r.offset), refused, closed,
    connections: hub.connections,
  }));
  hub.close();
  process.exit(0);
})().catch((e) => {
  console.log(JSON.stringify({error: e.code, message: e.message}));
  process.exit(1);
});
"""

CLOSING = """
const WS13Hub = require(process.argv[1]);
const hub = new WS13Hub(process.argv[2], {backoffMin: 20, backoffMax: 200});
const out = (x) => console.log(JSON.stringify(x));
const atGate = async (n) => {
  while (hub._gate.queued !== n) await new Promise((r) => setTimeout(r, 5));
};
const settle = (publishes) => Promise.allSettled(publishes).then((results) =>
  results.map((r) => r.status === "fulfilled" ? r.value.offset : r.reason.code));
(async () => {
  let publishes = [0, 1, 2].map((i) => hub.publish("c", i));
  await atGate(2);
  out({waiting: 2});  // the test drops the connection now
  out({dropped: await settle(publishes)});
  // Reconnected: a full bucket on the hub, a new gate here.
  out({again: (await hub.publish("c", "again")).offset});
  publishes = [3, 4].map((i) => hub.publish("c", i));
  await atGate(2);
  hub.close();
  out({closed: await settle(publishes)});
  process.exit(0);
})().catch((e) => { out({error: e.code, message: e.message}); process.exit(1); });
"""


class PublishRateTests(HubTestCase):
    async def node(self, script: str, server: Server) -> asyncio.subprocess.Process:
        node = shutil.which("node")
        assert node is not None, "node is missing: apt-get install nodejs"
        return await asyncio.create_subprocess_exec(
            node, "--no-warnings", "--experimental-websocket", "-e", script, WS13_JS,
            self.url(server), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async def run_node(self, script: str, server: Server) -> dict[str, Any]:
        """Run ``script`` to its end; what it printed, one JSON object."""
        process = await self.node(script, server)
        stdout, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
        self.assertEqual(process.returncode, 0, stdout)
        result: dict[str, Any] = json.loads(stdout)
        return result

    async def test_a_publish_over_the_rate_limit_waits_and_retries(self) -> None:
        # 2 at once, then one every 0.1 s: publishing in a loop, most of the 8
        # are refused with 429 first, waited for and retried.
        hub, server = await self.start_hub(publish_rate=10.0, publish_burst=2)
        result = await self.run_node(PACED, server)
        self.assertEqual(result["offsets"], list(range(1, 9)))
        self.assertGreater(result["refused"], 0)
        # Stored once each: nothing refused was stored, nothing retried twice.
        page = await hub.backplane.history("chat", ttl=60)
        self.assertEqual(sorted(int(e.data) for e in page.entries), list(range(8)))

    async def test_a_loop_over_the_limit_is_paced_at_the_full_rate(self) -> None:
        # One token at once, then one every 50 ms. Not knowing the rate,
        # publish() sent each publish after a retry at once, into an empty
        # bucket: all but the first were refused once, half the rate. Told
        # the rate by the first 429, it sends the next publish a token later.
        hub, server = await self.start_hub(publish_rate=20.0, publish_burst=1)
        result = await self.run_node(LOOP, server)
        self.assertEqual(result["offsets"], list(range(1, 21)))
        self.assertGreater(len(result["rates"]), 0)
        self.assertLessEqual(len(result["rates"]), 2)
        # Each 429 said the hub's rate.
        self.assertEqual(set(result["rates"]), {hub.publish_rate})
        self.assertEqual(result["connections"], 1)
        page = await hub.backplane.history("chat", ttl=60)
        self.assertEqual([int(e.data) for e in page.entries], list(range(20)))

    async def test_concurrent_publishes_over_the_limit_all_succeed(self) -> None:
        # One token at once, then one every 50 ms: of 8 publishes made together
        # (and one caller's sequential ones beside them), all but the first are
        # refused first, 8 tokens of debt; each retried after its own
        # retry_after, they were refused again and again.
        hub, server = await self.start_hub(publish_rate=20.0, publish_burst=1)
        result = await self.run_node(GATED, server)
        self.assertEqual(result["sequential"], list(range(1, 9)))
        self.assertEqual(sorted(result["together"]), list(range(1, 9)))
        self.assertGreater(result["refused"], 0)
        # Never closed: one connection throughout.
        self.assertEqual((result["closed"], result["connections"]), (0, 1))
        page = await hub.backplane.history("seq", ttl=60)
        self.assertEqual([int(e.data) for e in page.entries], list(range(8)))
        page = await hub.backplane.history("all", ttl=60)
        self.assertEqual(sorted(int(e.data) for e in page.entries), list(range(8)))

    async def test_publishes_waiting_at_the_gate_reject_when_the_connection_closes(
        self,
    ) -> None:
        # A token every 20 s: the refused publishes would wait 40 s and more.
        hub, server = await self.start_hub(publish_rate=0.05, publish_burst=1)
        process = await self.node(CLOSING, server)
        assert process.stdout is not None
        lines: list[dict[str, Any]] = []

        async def read_until(key: str) -> dict[str, Any]:
            async with asyncio.timeout(TIMEOUT):
                while not lines or key not in lines[-1]:
                    lines.append(json.loads(await process.stdout.readline()))  # type: ignore[union-attr]
            return lines[-1]

        try:
            await read_until("waiting")
            (session,) = hub.sessions
            assert session.transport.connection.transport is not None
            session.transport.connection.transport.abort()
            self.assertEqual(await read_until("dropped"), {"dropped": [1, 503, 503]})
            self.assertEqual(await read_until("again"), {"again": 2})
            self.assertEqual(await read_until("closed"), {"closed": [503, 503]})
            self.assertEqual(await asyncio.wait_for(process.wait(), TIMEOUT), 0)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        page = await hub.backplane.history("c", ttl=60)
        self.assertEqual([e.data for e in page.entries], ["0", '"again"'])
