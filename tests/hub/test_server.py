"""The hub over real loopback connections, on the in-memory backplane."""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar

from ws13.asyncio import connect, serve
from ws13.exceptions import ConnectionClosed, InvalidStatus
from ws13.http11 import Request
from ws13.hub import (
    SUBPROTOCOL,
    ChannelOptions,
    Hub,
    Policy,
    Principal,
    Refused,
    request_token,
)
from ws13.hub.backplanes.redis import RedisBackplane
from ws13.metrics import Metrics

from .helpers import TIMEOUT, HubTestCase, WithRedis, recv_json, wait_until


class PubSubTests(HubTestCase):
    async def test_publish_reaches_subscribers_after_the_reply(self) -> None:
        hub, server = await self.start_hub()
        alice, bob = await self.raw(server), await self.raw(server)
        reply = await self.request(bob, op="subscribe", id=1, channel="room")
        self.assertEqual(reply["id"], 1)
        self.assertEqual(reply["result"]["offset"], 0)
        epoch = reply["result"]["epoch"]
        reply = await self.request(alice, op="publish", id="p", channel="room", data={"t": "hi"})
        self.assertEqual(reply["result"], {"channel": "room", "epoch": epoch, "offset": 1})
        push = await recv_json(bob)
        self.assertEqual(
            {k: v for k, v in push.items() if k != "time"},
            {"op": "message", "channel": "room", "epoch": epoch, "offset": 1, "data": {"t": "hi"}},
        )
        self.assertIsInstance(push["time"], int)
        # From Python code too.
        entry = await hub.publish("room", [1, 2])
        self.assertEqual(entry.offset, 2)
        self.assertEqual((await recv_json(bob))["data"], [1, 2])

    async def test_welcome(self) -> None:
        _, server = await self.start_hub()
        async with connect(self.url(server), subprotocols=[SUBPROTOCOL]) as ws:
            self.assertEqual(ws.subprotocol, SUBPROTOCOL)
            welcome = await recv_json(ws)
        self.assertEqual(welcome["op"], "welcome")
        self.assertEqual(welcome["protocol"], SUBPROTOCOL)
        self.assertIsInstance(welcome["client"], str)

    async def test_unsubscribe(self) -> None:
        hub, server = await self.start_hub()
        ws = await self.raw(server)
        await self.request(ws, op="subscribe", channel="a")
        await self.request(ws, op="subscribe", channel="b")
        reply = await self.request(ws, op="unsubscribe", id=3, channel="a")
        self.assertEqual(reply, {"op": "reply", "id": 3, "result": {"channel": "a"}})
        await hub.publish("a", 1)
        await hub.publish("b", 2)
        push = await recv_json(ws)
        self.assertEqual((push["channel"], push["data"]), ("b", 2))
        self.assertEqual(hub.statistics()["channels"], 1)

    async def test_subscription_errors(self) -> None:
        _, server = await self.start_hub(max_subscriptions=2)
        ws = await self.raw(server)
        await self.request(ws, op="subscribe", channel="a")
        reply = await self.request(ws, op="subscribe", id=1, channel="a")
        self.assertEqual((reply["op"], reply["code"], reply["id"]), ("error", 409, 1))
        await self.request(ws, op="subscribe", channel="b")
        reply = await self.request(ws, op="subscribe", channel="c")
        self.assertEqual(reply["code"], 429)
        self.assertNotIn("retry_after", reply)  # only a rate-limited publish has these
        self.assertNotIn("rate", reply)
        reply = await self.request(ws, op="unsubscribe", channel="zzz")
        self.assertEqual(reply["code"], 404)
        reply = await self.request(ws, op="ping", id=7)
        self.assertEqual(reply, {"op": "reply", "id": 7, "result": {}})

    async def test_python_api_refuses_bad_input(self) -> None:
        hub, _ = await self.start_hub()
        with self.assertRaises(ValueError):
            await hub.publish("bad channel", 1)
        with self.assertRaises(ValueError):
            await hub.publish("c", object())
        with self.assertRaises(ValueError):
            await hub.publish("c", float("nan"))


class HistoryTests(HubTestCase):
    async def test_history_op(self) -> None:
        hub, server = await self.start_hub(channels={"small": ChannelOptions(history_size=3)})
        for i in range(5):
            await hub.publish("big", i)
            await hub.publish("small", i)
        ws = await self.raw(server)
        reply = await self.request(ws, op="history", id=1, channel="big", limit=2)
        result = reply["result"]
        self.assertEqual(result["offset"], 5)
        self.assertEqual([m["data"] for m in result["messages"]], [3, 4])
        self.assertEqual([m["offset"] for m in result["messages"]], [4, 5])
        reply = await self.request(ws, op="history", channel="big", since=1, limit=2)
        self.assertEqual([m["offset"] for m in reply["result"]["messages"]], [2, 3])
        reply = await self.request(ws, op="history", channel="small")
        self.assertEqual([m["data"] for m in reply["result"]["messages"]], [2, 3, 4])
        self.assertEqual([e.data for e in await hub.history("small", limit=1)], ["4"])

    async def test_subscribe_with_history(self) -> None:
        hub, server = await self.start_hub()
        for i in range(10):
            await hub.publish("chat", f"m{i}")
        ws = await self.raw(server)
        reply = await self.request(ws, op="subscribe", channel="chat", history=3)
        self.assertEqual(reply["result"]["offset"], 7)
        pushes = [await recv_json(ws) for _ in range(3)]
        self.assertEqual([p["data"] for p in pushes], ["m7", "m8", "m9"])
        await hub.publish("chat", "m10")
        self.assertEqual((await recv_json(ws))["offset"], 11)


class RecoveryTests(HubTestCase):
    async def test_recover_exactly_what_was_missed(self) -> None:
        hub, server = await self.start_hub()
        ws = await self.raw(server)
        reply = await self.request(ws, op="subscribe", channel="c")
        epoch = reply["result"]["epoch"]
        for i in range(3):
            await hub.publish("c", i)
        last = [await recv_json(ws) for _ in range(3)][-1]["offset"]
        await ws.close()
        for i in range(3, 7):
            await hub.publish("c", i)
        ws = await self.raw(server)
        await ws.send(
            json.dumps({"op": "subscribe", "channel": "c", "since": last, "epoch": epoch})
        )
        # Published while recovering: must come after the missed ones, once.
        publishing = asyncio.ensure_future(hub.publish("c", 7))
        reply = await recv_json(ws)
        self.assertEqual(
            reply["result"], {"channel": "c", "epoch": epoch, "offset": 3, "recovered": True}
        )
        await publishing
        pushes = [await recv_json(ws) for _ in range(5)]
        self.assertEqual([p["offset"] for p in pushes], [4, 5, 6, 7, 8])
        self.assertEqual([p["data"] for p in pushes], [3, 4, 5, 6, 7])
        reply = await self.request(ws, op="ping")
        self.assertEqual(reply["op"], "reply")  # nothing else was pushed before

    async def test_recovery_impossible_is_explicit(self) -> None:
        hub, server = await self.start_hub(channels={"c": ChannelOptions(history_size=2)})
        for i in range(5):
            await hub.publish("c", i)
        ws = await self.raw(server)
        page = (await self.request(ws, op="history", channel="c"))["result"]
        cases = [
            ({"since": 1, "epoch": page["epoch"]}, "no longer in history"),
            ({"since": 5, "epoch": "other"}, "epoch changed"),
            ({"since": 99}, "ahead"),
        ]
        for fields, reason in cases:
            with self.subTest(fields=fields):
                reply = await self.request(ws, op="subscribe", channel="c", **fields)
                result = reply["result"]
                self.assertIs(result["recovered"], False)
                self.assertIn(reason, result["reason"])
                self.assertEqual((result["offset"], result["epoch"]), (5, page["epoch"]))
                await self.request(ws, op="unsubscribe", channel="c")
        # Within the retained window it works.
        reply = await self.request(ws, op="subscribe", channel="c", since=3)
        self.assertIs(reply["result"]["recovered"], True)
        self.assertEqual((await recv_json(ws))["offset"], 4)


class ResyncTests(WithRedis, HubTestCase):
    """The backplane comes back after an outage: what the node missed is delivered."""

    async def test_a_new_epoch_stored_while_the_node_was_away_is_delivered(self) -> None:
        # Redis restarts without its keys and another node publishes before
        # this one is subscribed again: the channel's new epoch begins with
        # messages this node never heard live. (On a cluster: a promoted
        # replica taking writes before the node subscribed on it.)
        backplane = RedisBackplane(self.redis.url, prefix="resync:", retry_min=4, retry_max=4)
        hub, server = await self.start_hub(backplane=backplane)
        ws = await self.raw(server)
        old = (await self.request(ws, op="subscribe", channel="c"))["result"]["epoch"]
        for i in range(3):
            await hub.publish("c", i)
        self.assertEqual([(await recv_json(ws))["offset"] for _ in range(3)], [1, 2, 3])
        other = RedisBackplane(self.redis.url, prefix="resync:")
        self.addAsyncCleanup(other.aclose)
        self.redis.stop()
        try:
            await wait_until(lambda: not backplane.healthy)
        finally:
            self.redis.start()
        stored = [await other.publish("c", json.dumps(i), history_size=100, ttl=60) for i in (3, 4)]
        self.assertFalse(backplane.healthy)  # still waiting to reconnect (retry_min)
        new = stored[0].epoch
        self.assertNotEqual(new, old)
        pushes = [await recv_json(ws) for _ in range(2)]
        self.assertEqual(
            [(p["epoch"], p["offset"], p["data"]) for p in pushes], [(new, 1, 3), (new, 2, 4)]
        )
        # And the channel goes on live in the new epoch.
        await hub.publish("c", 5)
        self.assertEqual(((push := await recv_json(ws))["epoch"], push["offset"]), (new, 3))


class PresenceTests(HubTestCase):
    async def test_presence_and_join_leave(self) -> None:
        def authorize(request: Request) -> Principal:
            name = request_token(request) or "anon"
            return Principal(user=name, info={"nick": name.title()})

        _, server = await self.start_hub(
            channels={
                "chat:*": ChannelOptions(presence=True, join_leave=True),
                "quiet:*": ChannelOptions(presence=True),
            },
            authorize=authorize,
        )
        ann = await self.raw(server, "/hub?token=ann")
        bob = await self.raw(server, "/hub?token=bob")
        await self.request(ann, op="subscribe", channel="chat:1")
        join = await recv_json(ann)
        self.assertEqual((join["op"], join["member"]["user"]), ("join", "ann"))
        await self.request(bob, op="subscribe", channel="chat:1")
        join = await recv_json(ann)
        self.assertEqual((join["op"], join["member"]["info"]), ("join", {"nick": "Bob"}))
        reply = await self.request(ann, op="presence", channel="chat:1")
        users = sorted(m["user"] for m in reply["result"]["members"])
        self.assertEqual(users, ["ann", "bob"])
        await bob.close()
        leave = await recv_json(ann)
        self.assertEqual((leave["op"], leave["member"]["user"]), ("leave", "bob"))
        reply = await self.request(ann, op="presence", channel="chat:1")
        self.assertEqual([m["user"] for m in reply["result"]["members"]], ["ann"])
        # Presence without join/leave pushes.
        await self.request(ann, op="subscribe", channel="quiet:1")
        reply = await self.request(ann, op="presence", channel="quiet:1")
        self.assertEqual(len(reply["result"]["members"]), 1)
        # Presence off.
        reply = await self.request(ann, op="presence", channel="other")
        self.assertEqual(reply["code"], 403)


class AuthorizationTests(HubTestCase):
    @staticmethod
    async def authorize(request: Request) -> Principal:
        token = request_token(request)
        if token is None:
            raise Refused(401, "token required")
        if token == "banned":
            raise Refused(403, "banned")
        if token == "reader":
            return Principal(user="r", subscribe=("public:*",), publish=())
        return Principal(user=token)

    async def test_handshake_refusals(self) -> None:
        _, server = await self.start_hub(authorize=self.authorize)
        for path, status in [("/hub", 401), ("/hub?token=banned", 403)]:
            with self.subTest(path=path), self.assertRaises(InvalidStatus) as caught:
                await connect(self.url(server, path))
            self.assertEqual(caught.exception.response.status_code, status)
        # Header and cookie work as well as the query.
        ws = await self.raw(server, additional_headers=[("Authorization", "Bearer x")])
        await ws.close()
        ws = await self.raw(server, additional_headers=[("Cookie", "ws13_token=x")])
        await ws.close()

    async def test_channel_permissions(self) -> None:
        _, server = await self.start_hub(authorize=self.authorize)
        ws = await self.raw(server, "/hub?token=reader")
        reply = await self.request(ws, op="subscribe", channel="public:news")
        self.assertEqual(reply["op"], "reply")
        for request in [
            {"op": "subscribe", "channel": "private"},
            {"op": "history", "channel": "private"},
            {"op": "presence", "channel": "private"},
            {"op": "publish", "channel": "public:news", "data": 1},
        ]:
            with self.subTest(request=request):
                reply = await self.request(ws, **request)
                self.assertEqual(reply["code"], 403)

    async def test_handler_without_process_request_authorizes_too(self) -> None:
        hub = Hub(authorize=self.authorize)
        await hub.start()
        self.addAsyncCleanup(hub.aclose)
        async with serve(hub.handler, "127.0.0.1", 0) as server:
            async with connect(self.url(server)) as ws:
                with self.assertRaises(ConnectionClosed):
                    await ws.recv()
            self.assertEqual(ws.close_code, 1008)


class BadInputTests(HubTestCase):
    """Every op with bad input gets an error reply; the connection and others go on."""

    BAD: ClassVar[list[tuple[str, int]]] = [
        ("not json", 400),
        ("[1]", 400),
        ('{"op": "warp"}', 405),
        ('{"id": 1}', 400),
        ('{"op": "subscribe"}', 400),
        ('{"op": "subscribe", "channel": ""}', 400),
        ('{"op": "subscribe", "channel": "c", "since": -1}', 400),
        ('{"op": "subscribe", "channel": "c", "history": "x"}', 400),
        ('{"op": "unsubscribe", "channel": 5}', 400),
        ('{"op": "publish", "channel": "c"}', 400),
        ('{"op": "publish", "data": 1}', 400),
        ('{"op": "publish", "channel": "c", "data": 1e400}', 400),
        ('{"op": "history", "channel": "c", "limit": -3}', 400),
        ('{"op": "history", "channel": "c", "since": "x"}', 400),
        ('{"op": "presence"}', 400),
        ('{"op": "ping", "id": [1]}', 400),
    ]

    async def test_each_bad_request_gets_an_error_reply(self) -> None:
        hub, server = await self.start_hub(max_errors=100)
        bystander = await self.raw(server)
        await self.request(bystander, op="subscribe", channel="c")
        ws = await self.raw(server)
        for text, code in self.BAD:
            with self.subTest(text=text):
                await ws.send(text)
                reply = await recv_json(ws)
                self.assertEqual((reply["op"], reply["code"]), ("error", code), reply)
                self.assertIsInstance(reply["message"], str)
        await ws.send(b"\x00binary")
        reply = await recv_json(ws)
        self.assertEqual((reply["op"], reply["code"]), ("error", 400))
        # The connection still works, and so does everyone else's.
        reply = await self.request(ws, op="publish", channel="c", data="still here")
        self.assertEqual(reply["op"], "reply")
        self.assertEqual((await recv_json(bystander))["data"], "still here")
        self.assertEqual(hub.statistics().get("errors", 0), 0)

    async def test_too_large(self) -> None:
        _, server = await self.start_hub(max_data_size=100)
        ws = await self.raw(server)
        reply = await self.request(ws, op="publish", channel="c", data="x" * 200)
        self.assertEqual(reply["code"], 413)
        await ws.send(json.dumps({"op": "publish", "channel": "c", "data": "x" * 5000}))
        reply = await recv_json(ws)
        self.assertEqual((reply["code"], reply["id"]), (413, None))

    async def test_abuse_closes_with_1008(self) -> None:
        _, server = await self.start_hub(max_errors=3)
        ws = await self.raw(server)
        with self.assertRaises(ConnectionClosed):
            for _ in range(10):
                await ws.send("garbage")
                await recv_json(ws)
        await ws.wait_closed()
        self.assertEqual(ws.close_code, 1008)

    async def test_oversized_frame_closes_with_1009(self) -> None:
        hub = Hub()
        await hub.start()
        self.addAsyncCleanup(hub.aclose)
        async with serve(hub.handler, "127.0.0.1", 0, max_size=1000) as server:
            ws = await connect(self.url(server))
            await recv_json(ws)
            await ws.send(json.dumps({"op": "publish", "channel": "c", "data": "x" * 2000}))
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            self.assertEqual(ws.close_code, 1009)


class SlowConsumerTests(HubTestCase):
    async def test_drop_oldest_keeps_the_connection_and_bounds_memory(self) -> None:
        hub, server = await self.start_hub(
            channels={"ticker": ChannelOptions(policy=Policy.DROP_OLDEST, history_size=0)},
            max_queue=8,
        )
        ws = await self.slow_client(server)
        await self.request(ws, op="subscribe", channel="ticker")
        payload = "x" * 8000
        for i in range(400):
            await hub.publish("ticker", {"i": i, "p": payload})
            (session,) = hub.sessions
            self.assertLessEqual(session.queued, 8)
        await wait_until(lambda: session.dropped > 0)
        self.assertFalse(session.closing)
        self.assertEqual(hub.statistics()["dropped"], session.dropped)
        # The client reads what is left: the latest messages, in order, up to the last one.
        offsets = []
        while not offsets or offsets[-1] < 400:
            push = await recv_json(ws)
            offsets.append(push["offset"])
        self.assertEqual(offsets, sorted(offsets))
        self.assertLess(len(offsets), 400)

    async def test_disconnect_policy_closes_with_1013(self) -> None:
        hub, server = await self.start_hub(
            channels={"chat": ChannelOptions(policy=Policy.DISCONNECT)}, max_queue=8
        )
        ws = await self.slow_client(server)
        await self.request(ws, op="subscribe", channel="chat")
        payload = "x" * 8000
        for i in range(400):
            await hub.publish("chat", {"i": i, "p": payload})
            if hub.statistics().get("slow_disconnects"):
                break
        self.assertEqual(hub.statistics()["slow_disconnects"], 1)
        # Once the client reads again, what was written before the close comes
        # first, then the Close frame.
        with self.assertRaises(ConnectionClosed):
            for _ in range(400):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        self.assertEqual(ws.close_code, 1013)


class HubStatisticsTests(HubTestCase):
    async def test_subscribers_and_backplane_lag(self) -> None:
        hub, server = await self.start_hub()
        one, two = await self.raw(server), await self.raw(server)
        for ws in (one, two):
            await self.request(ws, op="subscribe", channel="a")
        await self.request(one, op="subscribe", channel="b")
        await hub.publish("a", 1)
        for ws in (one, two):
            self.assertEqual((await recv_json(ws))["data"], 1)
        statistics = hub.statistics()
        self.assertEqual((statistics["channels"], statistics["subscribers"]), (2, 3))
        self.assertEqual(statistics["delivered"], 2)
        # One message came through the backplane, at most a moment after it was published.
        self.assertEqual(statistics["backplane_messages"], 1)
        self.assertLess(statistics["backplane_lag_ms"], 10_000)

    async def test_metrics_argument(self) -> None:
        metrics = Metrics()
        hub, _ = await self.start_hub(metrics=metrics)
        await hub.publish("nobody-listens", 1)
        text = metrics.exposition()[0].decode()
        self.assertIn("ws13_hub_publishes_total 1.0", text)
