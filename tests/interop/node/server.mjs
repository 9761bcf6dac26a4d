// Node's ws echo server with permessage-deflate, for tests/interop/test_node_ws.py.
//
// Usage: node server.mjs [OPTIONS]
// OPTIONS: the perMessageDeflate option as JSON (default: true).
// Listens on 127.0.0.1, any free port, and prints one JSON line per event:
//   {"event": "listening", "port": N}
//   {"event": "open", "extensions": "permessage-deflate", "offer": "<request header>"}
//   {"event": "close", "code": N, "reason": "..."}
// Echoes every message; "close 4002" makes it close with 4002 "bye from node".
import { WebSocketServer } from "ws";
import { print } from "./data.mjs";

const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: 0,
  perMessageDeflate: JSON.parse(process.argv[2] ?? "true"),
  maxPayload: 64 * 1024 * 1024,
});

wss.on("listening", () => print({ event: "listening", port: wss.address().port }));
wss.on("connection", (ws, request) => {
  print({
    event: "open",
    extensions: ws.extensions,
    offer: request.headers["sec-websocket-extensions"] ?? null,
  });
  ws.on("message", (data, isBinary) => {
    if (!isBinary && data.toString() === "close 4002") ws.close(4002, "bye from node");
    else ws.send(data, { binary: isBinary });
  });
  ws.on("close", (code, reason) => print({ event: "close", code, reason: reason.toString() }));
});
