"""A FastAPI app with the ws13 hub inside: a chat with history and a ticker.

Run it (``pip install ws13 fastapi uvicorn``; ``ws13[redis]`` for Redis)::

    uvicorn examples.fastapi_hub:app                      # http://127.0.0.1:8000/?nick=ann
    WS13_REDIS=redis://127.0.0.1:6379/0 uvicorn examples.fastapi_hub:app --port 8001
    HUB_TOKEN=secret uvicorn examples.fastapi_hub:app     # then /?nick=ann&token=secret

What it shows:

* the hub on a FastAPI WebSocket route (``HubEndpoint.serve(websocket)``),
  started and stopped with the app's lifespan (``async with hub``);
* the hub's ``authorize`` hook, the same as ``ws13 serve``'s: ``?nick=`` goes
  into the presence list, and with ``HUB_TOKEN`` set, a missing or wrong
  ``?token=`` is refused with HTTP 401;
* publishing from an HTTP route (``POST /publish/{channel}`` with a JSON
  body) and from a background task (the ticker, every second);
* a page using ``ws13.js``, served from the package's static files;
* several processes sharing channels through Redis when ``WS13_REDIS`` is
  set (a ``ws13 serve --redis`` node on the same Redis shares them too).
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import os
import time
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ws13.http11 import Request as Handshake
from ws13.hub import (
    BackplaneUnavailable,
    ChannelOptions,
    Hub,
    Policy,
    Principal,
    Refused,
    open_backplane,
    request_token,
)
from ws13.hub.asgi import HubEndpoint

#: Optional shared secret every WebSocket client must present as ?token=.
HUB_TOKEN = os.environ.get("HUB_TOKEN")


def authorize(handshake: Handshake) -> Principal:
    """Who a connection is: ``?nick=`` for presence; ``?token=`` if ``HUB_TOKEN`` is set."""
    if HUB_TOKEN is not None:
        token = request_token(handshake) or ""
        if not hmac.compare_digest(token.encode(), HUB_TOKEN.encode()):
            raise Refused(401, "bad or missing token")
    query = urllib.parse.urlsplit(handshake.path).query
    nick = "".join(c for c in urllib.parse.parse_qs(query).get("nick", [""])[0] if c.isprintable())
    nick = nick.strip()[:24]
    return Principal(user=nick or None, info={"nick": nick} if nick else None)


hub = Hub(
    open_backplane(os.environ.get("WS13_REDIS")),  # in memory unless WS13_REDIS is set
    channels={
        "chat:*": ChannelOptions(
            history_size=100, history_ttl=3600, presence=True, join_leave=True
        ),
        "ticker": ChannelOptions(history_size=10, policy=Policy.DROP_OLDEST),
    },
    authorize=authorize,
)


async def ticker() -> None:
    """Publish the time every second on ``ticker``, as any background task can."""
    n = 0
    while True:
        n += 1
        try:
            await hub.publish("ticker", {"n": n, "time": round(time.time(), 3)})
        except BackplaneUnavailable:  # Redis down: skip this tick, keep ticking
            pass
        await asyncio.sleep(1)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with hub:  # start the backplane; closed again at shutdown
        task = asyncio.create_task(ticker())
        try:
            yield
        finally:
            task.cancel()


app = FastAPI(lifespan=lifespan)
endpoint = HubEndpoint(hub)


@app.websocket("/hub")
async def hub_route(websocket: WebSocket) -> None:
    """The hub on ``/hub``: the handshake, ``authorize``, then the hub's session."""
    await endpoint.serve(websocket)


@app.post("/publish/{channel}")
async def publish(channel: str, request: Request) -> dict[str, Any]:
    """Publish the JSON body on ``channel`` (open to anyone here: guard it in a real app).

    ``curl -d '{"nick": "curl", "text": "hi"}' localhost:8000/publish/chat:lobby``
    """
    try:
        data = await request.json()
        entry = await hub.publish(channel, data)
    except ValueError as exc:  # not JSON, or a bad channel name
        raise HTTPException(400, str(exc)) from None
    return {"channel": entry.channel, "epoch": entry.epoch, "offset": entry.offset}


@app.get("/health")
async def health() -> JSONResponse:
    status = hub.health()
    return JSONResponse(status, status_code=200 if status["status"] == "ok" else 503)


@app.get("/ws13.js")
async def ws13_js() -> Response:
    script = importlib.resources.files("ws13").joinpath("static/ws13.js").read_text()
    return Response(script, media_type="text/javascript")


@app.get("/", response_class=HTMLResponse)
async def page() -> str:
    return PAGE


PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>ws13 hub in FastAPI</title>
<style>
  body { font: 15px system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
  #log { border: 1px solid #ccc; height: 20em; overflow-y: auto; padding: .5em; }
  #log p { margin: .2em 0; }  .nick { font-weight: bold; }  #tick { color: #666; }
</style>
<h1>Chat</h1>
<p>You are <b id="me"></b> &middot; <span id="status">connecting</span>
   &middot; <span id="tick">no tick yet</span></p>
<div id="log"></div>
<form id="say"><input id="text" autocomplete="off" size="50" autofocus>
<button>Send</button></form>
<script src="/ws13.js"></script>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const nick = params.get("nick") || "guest" + Math.floor(Math.random() * 1000);
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const hub = new WS13Hub(scheme + location.host + "/hub?nick=" + encodeURIComponent(nick),
                        {token: params.get("token") || undefined});
// window.chat: the page's state, for the curious (and the tests).
const chat = window.chat = {hub: hub, nick: nick, messages: [], ticks: 0, joined: false};
document.getElementById("me").textContent = nick;
hub.onstatus = (state) => { document.getElementById("status").textContent = state; };

function show(data) {
  const line = document.createElement("p");
  const who = document.createElement("span");
  who.className = "nick";
  who.textContent = String(data.nick) + ": ";
  line.append(who, String(data.text));
  const log = document.getElementById("log");
  log.append(line);
  log.scrollTop = log.scrollHeight;
}

hub.subscribe("chat:lobby", (message) => {
  chat.messages.push(message.data);
  show(message.data);
}, {
  history: 50,  // the last 50 messages first
  onGap: () => {  // history lost (or recovery impossible): start over
    chat.messages = [];
    document.getElementById("log").textContent = "";
  },
}).then(() => { chat.joined = true; });

hub.subscribe("ticker", (message) => {
  chat.ticks += 1;
  document.getElementById("tick").textContent =
    "tick " + message.data.n + " at " + new Date(message.data.time * 1000).toLocaleTimeString();
});

document.getElementById("say").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  if (input.value) hub.publish("chat:lobby", {nick: nick, text: input.value});
  input.value = "";
});
</script>
</html>
"""
