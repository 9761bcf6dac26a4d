// ws13 lab: the demo page of `ws13 serve`. Plain JavaScript, no build step, no CDN.
//
// Two WebSockets: the inspector (/inspect) opens first and gets an id; the echo
// connection opens on the URL field plus ?inspect=<id>, so the server streams
// that connection's handshake and every frame to the inspector as JSON records.
// On load the page connects to its own echo once the inspector is on, so a
// first look already shows a handshake dissected (?connect=0 in the page's
// URL: don't). window.lab exposes the state for tests and the curious.
"use strict";

const $ = (id) => document.getElementById(id);
const STATES = ["CONNECTING", "OPEN", "CLOSING", "CLOSED"];
const MAX_ITEMS = 500;  // messages and frames kept on the page; older ones are removed
const RETRY_MS = 2000;  // the inspector reconnects after this long
const OPEN_FRAMES = 3;  // frames shown unfolded; older ones fold to one line
const SHORT_HEX = 48;   // payload bytes shown as hex before "show more"

const lab = {
  ws: null,           // the echo connection
  inspector: null,    // the inspector connection
  inspectorId: null,
  records: [],        // every inspector record received (bounded by MAX_ITEMS * 4)
  messages: [],       // the message log: {dir, kind, size, rtt, text}
  dropped: 0,
  pending: [],        // send times of messages not echoed yet, for the round-trip time
  autoConnect: new URLSearchParams(location.search).get("connect") !== "0",
};

// What a close code means (RFC 6455 section 7.4.1, and the IANA registry), as shown in the log.
const CLOSE_CODES = {
  1000: "normal closure",
  1001: "going away: the server is shutting down, or the page is leaving",
  1002: "protocol error: a peer broke RFC 6455",
  1003: "unsupported data: a message type the endpoint can't take",
  1005: "no status code: the Close frame had none (Disconnect sends none); 1005 is never sent, only reported",
  1006: "abnormal closure: the connection ended without a Close frame",
  1007: "invalid data: e.g. a text message that isn't valid UTF-8",
  1008: "policy violation",
  1009: "message too big for the receiver's limit",
  1010: "the client needed an extension the server didn't agree to",
  1011: "internal error: the server failed while handling the connection",
  1012: "service restart",
  1013: "try again later: the server is overloaded",
  1015: "TLS handshake failure",
};
function closeMeaning(code) {
  if (CLOSE_CODES[code]) return CLOSE_CODES[code];
  if (code >= 4000 && code <= 4999) return "private use: the application's own code";
  if (code >= 3000 && code <= 3999) return "registered for libraries and frameworks";
  return "";
}
// Why a connection that never opened failed: browsers report every cause as
// 1006 and, on purpose, don't tell the page which one it was.
const NOT_OPENED = "could not connect. The browser reports every cause the same way (1006) and " +
  "keeps the reason from the page: nothing listening at that host and port, a path that " +
  "answered HTTP (e.g. 404) instead of 101, a refused Origin or subprotocol, or TLS. " +
  "In a shell, `ws13 connect URL` says which.";
window.lab = lab;

const pageBase = (location.protocol === "https:" ? "wss://" : "ws://") + (location.host || "127.0.0.1:8765");
$("url").value = pageBase + "/echo";

// -- helpers ----------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
function clock(time) {
  const date = time === undefined ? new Date() : new Date(time * 1000);
  return date.toTimeString().slice(0, 8) + "." + String(date.getMilliseconds()).padStart(3, "0");
}
function hexSpaced(hex) { return hex.replace(/(..)(?!$)/g, "$1 "); }
function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }
function bytesOf(data) {
  return typeof data === "string" ? new TextEncoder().encode(data).length : data.byteLength;
}
function append(container, node) {
  const stick = container.scrollTop + container.clientHeight >= container.scrollHeight - 30;
  container.append(node);
  while (container.childElementCount > MAX_ITEMS) container.firstElementChild.remove();
  if (stick) container.scrollTop = container.scrollHeight;
}
// Visible escapes for control characters, so a message can't hide what it holds.
function visible(text) {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g,
    (c) => "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0"));
}

// -- the message log --------------------------------------------------------

function log(kind, dir, body, meta) {
  const line = el("div", "msg " + kind);
  const text = el("span", "body", body);
  if (meta) text.append(el("span", "meta", meta));
  line.append(el("span", "t", clock()), el("span", "dir", dir), text);
  append($("log"), line);
}
function describe(data) {
  if (typeof data === "string") {
    const shown = data.length > 120 ? data.slice(0, 120) + "…" : data;
    return { kind: "text", text: JSON.stringify(visible(shown)) };
  }
  const bytes = new Uint8Array(data);
  const head = Array.from(bytes.slice(0, 24), (b) => b.toString(16).padStart(2, "0")).join(" ");
  return { kind: "binary", text: head + (bytes.length > 24 ? " …" : "") };
}
function logMessage(dir, data, rtt) {
  const size = bytesOf(data);
  const { kind, text } = describe(data);
  lab.messages.push({ dir, kind, size, rtt });
  if (lab.messages.length > MAX_ITEMS) lab.messages.shift();
  const meta = kind + " · " + plural(size, "byte") + (rtt === undefined ? "" : " · rtt " + rtt.toFixed(1) + " ms");
  log(dir === "out" ? "out" : "in", dir === "out" ? "→" : "←", text, meta);
}
function logSystem(text, error) { log(error ? "err" : "sys", "·", text); }

// -- the echo connection ----------------------------------------------------

function refresh() {
  const state = lab.ws ? lab.ws.readyState : 3;
  $("state").textContent = STATES[state];
  $("state").className = "state " + STATES[state].toLowerCase();
  for (const id of ["send-text", "send-binary", "send-file", "close", "disconnect"]) {
    $(id).disabled = state !== 1;
  }
  $("connect").disabled = state === 0 || state === 1;
}

function targetUrl() {
  const url = $("url").value.trim();
  if (!$("inspect").checked || !lab.inspectorId) return url;
  try {
    // Only our own server knows the inspector id.
    if (new URL(url).host !== new URL(pageBase).host) return url;
  } catch (e) { return url; }
  return url + (url.includes("?") ? "&" : "?") + "inspect=" + lab.inspectorId;
}

function connect() {
  let ws;
  try {
    ws = new WebSocket(targetUrl());
  } catch (e) {
    logSystem(String(e.message || e), true);
    return;
  }
  lab.ws = ws;
  lab.pending = [];
  lab.closed = null;
  let opened = false;
  ws.binaryType = "arraybuffer";
  logSystem("connecting to " + ws.url);
  ws.onopen = () => {
    opened = true;
    const parts = [];
    if (ws.protocol) parts.push("subprotocol " + ws.protocol);
    if (ws.extensions) parts.push(ws.extensions);
    $("negotiated").textContent = parts.join(" · ");
    logSystem("open" + (parts.length ? " (" + parts.join(", ") + ")" : ""));
    refresh();
  };
  ws.onmessage = (event) => {
    const sent = lab.pending.shift();
    logMessage("in", event.data, sent === undefined ? undefined : performance.now() - sent);
  };
  ws.onerror = () => logSystem("error (the close event below says more)", true);
  ws.onclose = (event) => {
    const meaning = !opened && event.code === 1006 ? NOT_OPENED : closeMeaning(event.code);
    logSystem("closed: code " + event.code + (event.reason ? " reason " + JSON.stringify(event.reason) : "") +
              (event.wasClean ? "" : " (not clean)") + (meaning ? " — " + meaning : ""), !event.wasClean);
    lab.closed = { code: event.code, reason: event.reason, wasClean: event.wasClean };
    $("negotiated").textContent = "";
    refresh();
  };
  refresh();
}

function send(data) {
  if (!lab.ws || lab.ws.readyState !== 1) return;
  lab.pending.push(performance.now());
  lab.ws.send(data);
  logMessage("out", data);
}

function parseHex(text) {
  const clean = text.replace(/0x/gi, "").replace(/[\s:,-]/g, "");
  if (/[^0-9a-f]/i.test(clean)) throw new Error("not hex: use the digits 0-9 and a-f");
  if (clean.length % 2) throw new Error("hex needs an even number of digits");
  const bytes = new Uint8Array(clean.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(clean.substr(i * 2, 2), 16);
  return bytes;
}

$("connect").onclick = connect;
$("url").onkeydown = (event) => { if (event.key === "Enter" && !$("connect").disabled) connect(); };
$("disconnect").onclick = () => { lab.ws.close(); refresh(); };
$("send-text").onclick = () => send($("text").value);
$("text").onkeydown = (event) => { if (event.key === "Enter") send($("text").value); };
$("send-binary").onclick = () => {
  try { send(parseHex($("hex").value).buffer); } catch (e) { logSystem(e.message, true); }
};
$("send-file").onclick = () => {
  const file = $("file").files[0];
  if (!file) { logSystem("choose a file first", true); return; }
  file.arrayBuffer().then(send, (e) => logSystem("cannot read the file: " + e, true));
};
$("close").onclick = () => {
  try { lab.ws.close(Number($("code").value), $("reason").value); } catch (e) { logSystem(e.message, true); }
  refresh();
};
$("clear-log").onclick = () => { $("log").textContent = ""; };
$("clear-frames").onclick = () => { $("frames").textContent = ""; };

// -- the inspector ----------------------------------------------------------

function openInspector() {
  const ws = new WebSocket(pageBase + "/inspect");
  lab.inspector = ws;
  ws.onmessage = (event) => {
    const record = JSON.parse(event.data);
    lab.records.push(record);
    if (lab.records.length > MAX_ITEMS * 4) lab.records.shift();
    if (record.dropped) {
      lab.dropped = record.dropped;
      $("dropped").textContent = plural(record.dropped, "record") + " dropped (inspector too slow)";
    }
    render(record);
  };
  ws.onclose = () => {
    lab.inspectorId = null;
    $("download-capture").hidden = true;
    $("inspector-state").textContent = "inspector: disconnected, retrying…";
    setTimeout(openInspector, RETRY_MS);
  };
}

function render(record) {
  if (record.type === "hello") {
    lab.inspectorId = record.id;
    $("inspector-state").textContent = "inspector: on (id " + record.id + ")";
    // The server captures the connections this inspector watches: the same
    // frames as shown here, as a pcapng file for Wireshark (docs/lab.md).
    const download = $("download-capture");
    download.href = "/capture?inspect=" + record.id;
    download.download = "ws13-lab-" + record.id + ".pcapng";
    download.hidden = false;
    if (lab.autoConnect && !lab.ws) {
      logSystem("on load: connecting to this server's echo service, so its handshake shows on the right");
      connect();
    }
    lab.autoConnect = false;
  } else if (record.type === "open") {
    append($("frames"), el("div", "conn-event",
      "── connection " + record.conn + " opened from " + record.peer + " on " + record.path +
      (record.extensions ? " · " + record.extensions : "") + " ──"));
  } else if (record.type === "close") {
    append($("frames"), el("div", "conn-event",
      "── connection " + record.conn + " closed: code " + record.code +
      (closeMeaning(record.code) ? " (" + closeMeaning(record.code) + ")" : "") +
      (record.reason ? " " + JSON.stringify(record.reason) : "") + " after " + record.duration + " s ──"));
  } else if (record.type === "handshake") {
    append($("frames"), renderHandshake(record));
  } else if (record.type === "frame") {
    append($("frames"), renderFrame(record));
    // The newest frames stay open; older ones fold to their summary line
    // unless the reader opened them.
    const open = $("frames").querySelectorAll("details.frame[data-auto]");
    for (let i = 0; i < open.length - OPEN_FRAMES; i++) {
      open[i].open = false;
      delete open[i].dataset.auto;
    }
  }
}

function renderHandshake(record) {
  const box = el("details", "hs");
  box.open = true;
  box.append(el("summary", "", "Opening handshake (HTTP Upgrade)"));
  for (const [part, title] of [["request", "browser → server"], ["response", "server → browser"]]) {
    const message = record[part];
    if (!message) continue;
    box.append(el("h3", "", title));
    const lines = [message.line].concat(message.headers.map(([name, value]) => name + ": " + value));
    box.append(el("pre", "", lines.join("\n")));
  }
  if (record.accept_expected) {
    const line = el("div", "");
    line.append("Sec-WebSocket-Accept = base64(SHA-1(key + \"258EAFA5-E914-47DA-95CA-C5AB0DC85B11\")) = ",
                el("code", "", record.accept_expected), " ");
    line.append(el("span", record.accept_ok ? "ok" : "bad", record.accept_ok ? "✓ matches" : "✗ mismatch"));
    box.append(line);
  }
  return box;
}

function field(fields, key, value) {
  fields.append(el("span", "k", key));
  const cell = el("span", "v");
  if (value instanceof Node) cell.append(value); else cell.textContent = value;
  fields.append(cell);
  return cell;
}

// Hex of a payload preview: the first SHORT_HEX bytes, all of it on a click.
function hexField(fields, key, hex, more) {
  const all = hexSpaced(hex) + more;
  if (hex.length <= SHORT_HEX * 2) return field(fields, key, all);
  const cell = field(fields, key, hexSpaced(hex.slice(0, SHORT_HEX * 2)) + " …");
  const toggle = el("button", "link", "show " + hex.length / 2 + " bytes");
  toggle.onclick = () => { cell.textContent = all; };
  cell.append(" ", toggle);
  return cell;
}

// The first two header bytes as bits, grouped the way RFC 6455 section 5.2 draws them.
function bitsOf(record) {
  const header = record.header_hex;
  const b0 = parseInt(header.slice(0, 2), 16).toString(2).padStart(8, "0");
  const b1 = parseInt(header.slice(2, 4), 16).toString(2).padStart(8, "0");
  const span = el("span", "bits");
  const groups = [[b0[0], "FIN"], [b0[1], "RSV1"], [b0[2], "RSV2"], [b0[3], "RSV3"],
                  [b0.slice(4), "opcode"], [b1[0], "MASK"], [b1.slice(1), "length"]];
  groups.forEach(([bits, name], i) => {
    if (i) span.append(el("span", "sep", " | "));
    span.append(el("b", "", bits), " " + name);
  });
  return span;
}

function renderFrame(r) {
  const box = el("details", "frame " + r.from);
  box.open = true;
  box.dataset.auto = "";
  box.ontoggle = () => { if (!box.open) delete box.dataset.auto; };
  const summary = el("summary");
  summary.append(el("span", "t", clock(r.time)),
                 el("span", "who", r.from === "client" ? "browser → server" : "server → browser"),
                 el("span", "op", r.opcode_name), el("span", "", plural(r.length, "byte")));
  if (r.rsv1) summary.append(el("span", "tag rsv1", "RSV1 compressed"));
  if (r.mask) summary.append(el("span", "tag", "masked"));
  if (!r.fin) summary.append(el("span", "tag", "FIN=0 (more fragments)"));
  box.append(summary);
  const fields = el("div", "fields");
  field(fields, "bits", bitsOf(r));
  field(fields, "FIN", r.fin ? "1 (final fragment)" : "0 (more fragments follow)");
  field(fields, "RSV1 RSV2 RSV3", [r.rsv1, r.rsv2, r.rsv3].map(Number).join(" ") +
        (r.rsv1 ? "  (RSV1: permessage-deflate compressed)" : ""));
  field(fields, "opcode", "0x" + r.opcode.toString(16) + " " + r.opcode_name);
  field(fields, "MASK", r.mask ? "1 (client frames are masked)" : "0 (server frames are not)");
  if (r.mask) field(fields, "masking key", hexSpaced(r.masking_key));
  const encoding = { "7": "7-bit length", "7+16": "7+16-bit length: 126, then 2 bytes",
                     "7+64": "7+64-bit length: 127, then 8 bytes" }[r.length_encoding];
  field(fields, "payload length", r.length + " (" + encoding + ")");
  field(fields, "header", hexSpaced(r.header_hex));
  if (r.close_code !== undefined) field(fields, "close", r.close_code + (r.close_reason ? " " + JSON.stringify(r.close_reason) : ""));
  if (r.payload_hex) {
    const cut = r.truncated ? " …(first " + r.payload_hex.length / 2 + " bytes)" : "";
    hexField(fields, r.rsv1 ? "payload (deflated)" : "payload hex", r.payload_hex, cut);
    if (r.payload_text !== null && r.payload_text !== undefined && !r.rsv1 && r.opcode !== 2) {
      field(fields, "payload text", JSON.stringify(visible(r.payload_text)) + (r.truncated ? " …" : ""));
    }
  }
  if (r.inflated_length !== undefined) {
    const more = r.inflated_hex.length / 2 < r.inflated_length ? " …" : "";
    if (r.inflated_text !== null && r.opcode !== 2) {
      field(fields, "inflated text", JSON.stringify(visible(r.inflated_text)) + more);
    } else {
      hexField(fields, "inflated hex", r.inflated_hex, more);
    }
    field(fields, "inflated length", plural(r.inflated_length, "byte"));
  } else if (r.inflated_error) {
    field(fields, "inflated", r.inflated_error);
  }
  box.append(fields);
  return box;
}

openInspector();
refresh();
