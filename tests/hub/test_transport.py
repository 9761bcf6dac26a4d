"""``ws13.hub.transport``: ``Outgoing`` and ``ConnectionTransport`` over ws13's connection."""

from __future__ import annotations

import asyncio
import unittest

from ws13.exceptions import ConnectionClosed
from ws13.hub.transport import ConnectionTransport, Outgoing
from ws13.protocol import CLIENT, OPEN, Protocol

from .helpers import TIMEOUT, HubTestCase, recv_json, wait_until


class OutgoingTests(unittest.TestCase):
    def test_the_frame_carries_the_text(self) -> None:
        for text in ("", "héllo", "x" * 126, "€" * 30_000):
            message = Outgoing(text)
            self.assertIs(message.text, text)
            self.assertEqual(message.size, len(message.frame))
            # A client reads the frame back as that text message.
            client = Protocol(CLIENT, state=OPEN, max_size=None)
            events, _ = client.receive(message.frame)
            self.assertEqual(events, [text])


class ConnectionTransportTests(HubTestCase):
    async def test_write_then_close(self) -> None:
        hub, server = await self.start_hub()
        ws = await self.raw(server)
        (session,) = hub.sessions
        transport = session.transport
        self.assertIsInstance(transport, ConnectionTransport)
        self.assertTrue(transport.open)
        self.assertTrue(transport.writable)
        transport.write([Outgoing('{"n": 1}'), Outgoing('{"n": 2}')])  # one write
        transport.write([Outgoing('{"n": 3}')])
        self.assertEqual([(await recv_json(ws))["n"] for _ in range(3)], [1, 2, 3])
        await transport.wait_writable()  # returns at once: the buffer is empty
        closing = asyncio.create_task(transport.close(4000, "bye"))
        with self.assertRaises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        await asyncio.wait_for(closing, TIMEOUT)
        self.assertEqual((ws.close_code, ws.close_reason), (4000, "bye"))
        self.assertFalse(transport.open)
        self.assertFalse(transport.writable)
        with self.assertRaises(ConnectionClosed):
            await transport.wait_writable()
        await wait_until(lambda: not hub.sessions)
