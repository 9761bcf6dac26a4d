"""``ws13.hub.mounting``: the hub on one path of a server, another handler on the rest."""

from __future__ import annotations

import json
from typing import Any

from ws13.asyncio import connect, serve
from ws13.exceptions import InvalidStatus
from ws13.http11 import Request
from ws13.hub import Hub, mount

from .helpers import HubTestCase, recv_json


class MountTests(HubTestCase):
    async def test_mount_next_to_another_handler(self) -> None:
        hub = Hub()
        await hub.start()
        self.addAsyncCleanup(hub.aclose)

        async def echo(ws: Any) -> None:
            async for message in ws:
                await ws.send(message)

        def demo_request(connection: Any, request: Request) -> Any:
            if request.path == "/health":
                return connection.respond(200, '{"status": "ok", "uptime": 1}')
            if request.path not in ("/echo", "/hub"):
                return connection.respond(404, "Not Found\n")
            return None

        handler, process_request = mount(hub, echo, demo_request)
        async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
            async with connect(self.url(server, "/echo")) as ws:
                await ws.send("hi")
                self.assertEqual(await ws.recv(), "hi")
            async with connect(self.url(server, "/hub?token=1")) as ws:
                self.assertEqual((await recv_json(ws))["op"], "welcome")
            with self.assertRaises(InvalidStatus) as caught:
                await connect(self.url(server, "/health"))
            response = caught.exception.response
            self.assertEqual(response.status_code, 200)
            health = json.loads(response.body)
            self.assertEqual((health["status"], health["uptime"]), ("ok", 1))
            self.assertEqual(health["hub"]["backplane"]["backplane"], "memory")

    async def test_mount_alone(self) -> None:
        hub = Hub()
        await hub.start()
        self.addAsyncCleanup(hub.aclose)
        handler, process_request = mount(hub)
        async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
            with self.assertRaises(InvalidStatus) as caught:
                await connect(self.url(server, "/elsewhere"))
            self.assertEqual(caught.exception.response.status_code, 404)
            with self.assertRaises(InvalidStatus) as caught:
                await connect(self.url(server, "/health"))
            self.assertEqual(json.loads(caught.exception.response.body)["status"], "ok")
