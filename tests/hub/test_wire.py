"""The ws13.hub.v1 wire format: every op's good and bad input, parsed without I/O."""

from __future__ import annotations

import json
import unittest

from ws13.hub.wire import (
    MAX_CHANNEL_LENGTH,
    ErrorCode,
    HistoryRequest,
    HubError,
    PingRequest,
    PresenceRequest,
    PublishRequest,
    SubscribeRequest,
    UnsubscribeRequest,
    check_channel,
    encode_error,
    encode_event,
    encode_message,
    encode_reply,
    parse_request,
)


def parse(request: object, max_data_size: int = 1000) -> object:
    text = request if isinstance(request, str) else json.dumps(request)
    return parse_request(text, max_data_size=max_data_size)


class ParseTests(unittest.TestCase):
    def assertRefused(self, request: object, code: ErrorCode, fragment: str = "") -> HubError:
        with self.assertRaises(HubError) as caught:
            parse(request)
        self.assertEqual(caught.exception.code, code)
        self.assertIn(fragment, caught.exception.message)
        return caught.exception

    def test_every_op(self) -> None:
        self.assertEqual(
            parse({"op": "subscribe", "id": 1, "channel": "c"}), SubscribeRequest(1, "c")
        )
        self.assertEqual(
            parse({"op": "subscribe", "id": "a", "channel": "c", "since": 4, "epoch": "e"}),
            SubscribeRequest("a", "c", since=4, epoch="e"),
        )
        self.assertEqual(
            parse({"op": "subscribe", "channel": "c", "history": 10}),
            SubscribeRequest(None, "c", history=10),
        )
        self.assertEqual(
            parse({"op": "unsubscribe", "channel": "c"}), UnsubscribeRequest(None, "c")
        )
        self.assertEqual(
            parse({"op": "publish", "id": 2, "channel": "c", "data": {"a": [1, "é"]}}),
            PublishRequest(2, "c", '{"a":[1,"é"]}'),
        )
        self.assertEqual(
            parse({"op": "publish", "channel": "c", "data": None}),
            PublishRequest(None, "c", "null"),
        )
        self.assertEqual(
            parse({"op": "history", "channel": "c", "limit": 5, "since": 0}),
            HistoryRequest(None, "c", 5, 0),
        )
        self.assertEqual(parse({"op": "presence", "channel": "c"}), PresenceRequest(None, "c"))
        self.assertEqual(parse({"op": "ping", "id": 9}), PingRequest(9))

    def test_not_json(self) -> None:
        for text in ["", "{", "nope", "{'op': 'ping'}", "[" * 100_000, '{"op":NaN}']:
            with self.subTest(text=text[:10]):
                self.assertRefused(text, ErrorCode.BAD_REQUEST, "invalid JSON")

    def test_not_an_object(self) -> None:
        for request in [[], 1, '"ping"', None, True]:
            self.assertRefused(request, ErrorCode.BAD_REQUEST, "JSON object")

    def test_bad_id(self) -> None:
        for rid in [1.5, True, [], {}, "x" * 65, 2**53]:
            with self.subTest(rid=rid):
                self.assertRefused({"op": "ping", "id": rid}, ErrorCode.BAD_REQUEST, "id")

    def test_missing_or_unknown_op(self) -> None:
        error = self.assertRefused({"id": 3}, ErrorCode.BAD_REQUEST, "missing field: op")
        self.assertEqual(error.request_id, 3)
        self.assertRefused({"op": "fly"}, ErrorCode.UNKNOWN_OP, "'fly'")
        self.assertRefused({"op": 7}, ErrorCode.UNKNOWN_OP)
        self.assertRefused({"op": "x" * 1000}, ErrorCode.UNKNOWN_OP, "'?'")

    def test_channel_is_checked_for_every_op(self) -> None:
        for op in ["subscribe", "unsubscribe", "publish", "history", "presence"]:
            for channel in [None, 1, "", "a b", "x" * (MAX_CHANNEL_LENGTH + 1), "\x00", ["c"]]:
                with self.subTest(op=op, channel=channel):
                    request = {"op": op, "id": 5, "channel": channel, "data": 1}
                    error = self.assertRefused(request, ErrorCode.BAD_REQUEST, "channel")
                    self.assertEqual(error.request_id, 5)
            with self.subTest(op=op, channel="missing"):
                self.assertRefused({"op": op, "data": 1}, ErrorCode.BAD_REQUEST, "missing field")

    def test_subscribe_fields(self) -> None:
        base = {"op": "subscribe", "channel": "c"}
        for field, value in [
            ("since", -1),
            ("since", "1"),
            ("since", 1.0),
            ("since", True),
            ("history", -5),
            ("history", "all"),
            ("epoch", 5),
            ("epoch", "e" * 100),
        ]:
            with self.subTest(field=field, value=value):
                self.assertRefused(
                    {**base, field: value, "since": 1}
                    if field == "epoch"
                    else {**base, field: value},
                    ErrorCode.BAD_REQUEST,
                    field,
                )
        self.assertRefused({**base, "epoch": "e"}, ErrorCode.BAD_REQUEST, "epoch needs since")

    def test_publish_fields(self) -> None:
        self.assertRefused({"op": "publish", "channel": "c"}, ErrorCode.BAD_REQUEST, "data")
        self.assertRefused(
            '{"op":"publish","channel":"c","data":1e999}', ErrorCode.BAD_REQUEST, "finite"
        )
        self.assertRefused(
            {"op": "publish", "channel": "c", "data": "x" * 1000}, ErrorCode.TOO_LARGE, "1000"
        )
        # The bound counts UTF-8 bytes, not characters.
        self.assertRefused(
            {"op": "publish", "channel": "c", "data": "é" * 600}, ErrorCode.TOO_LARGE
        )
        parse({"op": "publish", "channel": "c", "data": "x" * 990})

    def test_history_fields(self) -> None:
        for field, value in [("limit", -1), ("limit", "5"), ("since", -2), ("since", 0.5)]:
            with self.subTest(field=field, value=value):
                self.assertRefused(
                    {"op": "history", "channel": "c", field: value}, ErrorCode.BAD_REQUEST, field
                )

    def test_check_channel(self) -> None:
        self.assertEqual(check_channel("chat:lobby/1"), "chat:lobby/1")
        self.assertEqual(check_channel("комната"), "комната")
        for bad in ["", " ", "a\tb", "a\nb"]:
            with self.assertRaises(ValueError):
                check_channel(bad)


class EncodeTests(unittest.TestCase):
    def test_pushes_and_replies_are_json(self) -> None:
        message = json.loads(encode_message('c"h', "e1", 7, 1234, '{"a":1}'))
        self.assertEqual(
            message,
            {
                "op": "message",
                "channel": 'c"h',
                "epoch": "e1",
                "offset": 7,
                "time": 1234,
                "data": {"a": 1},
            },
        )
        self.assertEqual(
            json.loads(encode_event("join", "c", '{"client":"x"}')),
            {"op": "join", "channel": "c", "member": {"client": "x"}},
        )
        self.assertEqual(
            json.loads(encode_reply(3, {"ok": True})),
            {"op": "reply", "id": 3, "result": {"ok": True}},
        )
        self.assertEqual(
            json.loads(encode_error(None, ErrorCode.FORBIDDEN, "no")),
            {"op": "error", "id": None, "code": 403, "message": "no"},
        )
        # A rate-limited publish: retry_after in ms (rounded up) and the rate.
        self.assertEqual(
            json.loads(encode_error(5, ErrorCode.TOO_MANY, "slow down", 0.0501, 20.0)),
            {
                "op": "error",
                "id": 5,
                "code": 429,
                "message": "slow down",
                "retry_after": 51,
                "rate": 20.0,
            },
        )
