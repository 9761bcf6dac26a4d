// Node's ws client, for tests/interop/test_node_ws.py.
//
// Usage: node client.mjs URL MODE [OPTIONS]
//   echo               send text and binary messages of several sizes, check the echoes
//   close-from-client  exchange one message, then close with 4001 "see you ☃"
//   close-from-server  send "close 4000" and wait for the server to close
//   fragments          send one text message in three frames, each after the
//                      server echoed the previous one (it must stream them)
// OPTIONS: the perMessageDeflate option as JSON (default: true).
// Prints one JSON object on stdout: {extensions, results, closed: {code, reason}}.
import { WebSocket } from "ws";
import { messages, print } from "./data.mjs";

const [url, mode, options = "true"] = process.argv.slice(2);
const SIZES = [0, 10, 1000, 100 * 1024, 1024 * 1024];

const ws = new WebSocket(url, {
  perMessageDeflate: JSON.parse(options),
  maxPayload: 64 * 1024 * 1024,
});
const queue = [];
const waiters = [];
let closed = null;

const done = new Promise((resolve, reject) => {
  ws.on("error", reject);
  ws.on("close", (code, reason) => {
    closed = { code, reason: reason.toString() };
    for (const waiter of waiters.splice(0)) waiter.reject(new Error("closed: " + JSON.stringify(closed)));
    resolve(closed);
  });
});
ws.on("message", (data, isBinary) => {
  const message = { data, isBinary };
  const waiter = waiters.shift();
  if (waiter) waiter.resolve(message);
  else queue.push(message);
});

function next() {
  if (queue.length) return Promise.resolve(queue.shift());
  if (closed) return Promise.reject(new Error("closed: " + JSON.stringify(closed)));
  return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
}

async function main() {
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  const results = [];
  if (mode === "echo") {
    for (const [kind, size, message] of messages(SIZES)) {
      const binary = typeof message !== "string";
      ws.send(message, { binary });
      const echo = await next();
      const equal = binary ? echo.isBinary && message.equals(echo.data) : !echo.isBinary && echo.data.toString() === message;
      results.push({ kind, size, bytes: Buffer.byteLength(message), binary: echo.isBinary, equal });
    }
    ws.close(1000, "done");
  } else if (mode === "close-from-client") {
    ws.send("hello");
    const echo = await next();
    results.push(echo.data.toString());
    ws.close(4001, "see you ☃");
  } else if (mode === "close-from-server") {
    ws.send("close 4000");
  } else if (mode === "fragments") {
    for (const [piece, fin] of [["frag", false], ["ment", false], ["ed ☃", true]]) {
      ws.send(piece, { fin });
      results.push((await next()).data.toString());
    }
    ws.close(1000, "done");
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  print({ extensions: ws.extensions, results, closed: await done });
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
