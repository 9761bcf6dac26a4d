// Echo server with Node's `ws` package, for bench/run.py.
// Usage: node server.js PORT [deflate]
// Prints "READY <port>" once listening; echoes every message as it came.
"use strict";
const { WebSocketServer } = require("ws");

const port = parseInt(process.argv[2] || "0", 10);
const deflate = process.argv[3] === "deflate";

const wss = new WebSocketServer({
  host: "127.0.0.1",
  port,
  maxPayload: 64 * 1024 * 1024,
  // ws compresses only messages of at least `threshold` bytes (1024 by default).
  perMessageDeflate: deflate ? { threshold: 128 } : false,
});

wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on("error", () => {});
});

wss.on("listening", () => {
  process.stdout.write(`READY ${wss.address().port}\n`);
});

const stop = () => {
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
