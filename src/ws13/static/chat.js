// ws13 hub demo: a chat room and a live ticker over /hub, with the browser client /ws13.js.
// Plain JavaScript, no build step, no CDN.
//
// Chat: one WS13Hub connection per nickname (/hub?nick=NAME: the server puts the nickname
// in this connection's presence entry); a room is the channel "chat:<room>", subscribed
// with history (the last messages on join), join/leave pushes and the presence list.
// ws13.js reconnects and recovers missed messages by itself; when it can't (history
// lost), onGap fires and the page reloads the room's history.
// Ticker: a second connection subscribes to "ticker", where `ws13 serve` publishes
// {SYMBOL: price} (every second by default, --hub-ticker).
// window.demo exposes the state for tests and the curious.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const HISTORY = 100;      // messages shown on join
  const MAX_LINES = 500;    // lines kept in the chat log
  const SPARK = 60;         // prices kept per symbol for the sparkline
  const base = (location.protocol === "https:" ? "wss://" : "ws://") +
    (location.host || "127.0.0.1:8765") + "/hub";

  const demo = {
    hub: null,          // the chat connection
    nick: null,         // its nickname
    channel: null,      // "chat:<room>" while joined
    sub: null,          // the room's Subscription
    messages: [],       // [{epoch, offset, time, nick, text}] shown, in order
    members: {},        // client id -> {client, user, info}
    notices: [],        // system lines: joins, leaves, reconnects, gaps
    gaps: 0,
    reconnects: 0,
    tickerHub: null,
    quotes: {},         // symbol -> {price, previous, history: [prices]}
    tickerUpdates: 0,
  };
  window.demo = demo;

  // -- helpers --------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function clock(ms) {
    const date = ms === undefined ? new Date() : new Date(ms);
    return date.toTimeString().slice(0, 8);
  }
  // Control characters shown escaped: a message can't hide what it holds.
  function visible(text) {
    return String(text).replace(/[\u0000-\u001f\u007f-\u009f]/g,
      (c) => "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0"));
  }
  function hue(name) {
    let h = 0;
    for (const c of name) h = (h * 31 + c.codePointAt(0)) % 360;
    return h;
  }
  function nickOf(member) {
    const info = member && member.info;
    return info && typeof info.nick === "string" ? info.nick : (member && member.user) || "anonymous";
  }
  function setState(id, state) {
    const node = $(id);
    node.textContent = state.toUpperCase();
    node.className = "state " + state;
  }
  function scrollAppend(container, node) {
    const stick = container.scrollTop + container.clientHeight >= container.scrollHeight - 30;
    container.append(node);
    while (container.childElementCount > MAX_LINES) container.firstElementChild.remove();
    if (stick) container.scrollTop = container.scrollHeight;
  }

  // -- chat log ---------------------------------------------------------------

  function notice(text, kind) {
    demo.notices.push({kind: kind || "info", text: text});
    const line = el("div", "cline notice " + (kind || "info"));
    line.append(el("span", "t", clock()), el("span", "body", text));
    scrollAppend($("chat-log"), line);
  }

  // A published value: {nick, text} from this page; anything else (ws13 pub) as JSON.
  function parse(data) {
    if (data && typeof data === "object" && typeof data.text === "string") {
      return {nick: typeof data.nick === "string" && data.nick ? data.nick : "anonymous",
              text: data.text};
    }
    return {nick: "?", text: typeof data === "string" ? data : JSON.stringify(data)};
  }

  function showMessage(message) {
    const last = demo.messages[demo.messages.length - 1];
    if (last && last.epoch === message.epoch && message.offset <= last.offset) return;
    const {nick, text} = parse(message.data);
    const entry = {epoch: message.epoch, offset: message.offset, time: message.time,
                   nick: nick, text: text};
    demo.messages.push(entry);
    if (demo.messages.length > MAX_LINES) demo.messages.shift();
    const line = el("div", "cline said" + (nick === demo.nick ? " mine" : ""));
    const who = el("span", "nick", visible(nick));
    who.style.color = "hsl(" + hue(nick) + " 55% 38%)";
    line.append(el("span", "t", clock(message.time)), who, el("span", "body", visible(text)));
    line.title = "offset " + message.offset + " · epoch " + message.epoch;
    scrollAppend($("chat-log"), line);
  }

  // -- presence ---------------------------------------------------------------

  function renderMembers() {
    const list = $("members");
    list.replaceChildren();
    const members = Object.values(demo.members).sort((a, b) =>
      nickOf(a).localeCompare(nickOf(b)) || a.client.localeCompare(b.client));
    for (const member of members) {
      const nick = nickOf(member);
      const item = el("li");
      const dot = el("span", "dot");
      dot.style.background = "hsl(" + hue(nick) + " 55% 45%)";
      item.append(dot, el("span", "who", visible(nick)));
      if (demo.hub && member.client === demo.hub.clientId) item.append(el("span", "muted", " (you)"));
      item.title = "client " + member.client;
      list.append(item);
    }
    $("people-count").textContent = String(members.length);
  }

  // Presence pushes seen while a presence request is in flight are applied on
  // top of its answer, so a join can't be lost between the two.
  let presencePending = null;

  function onPresence(kind, member) {
    if (!member || typeof member.client !== "string") return;
    if (presencePending) presencePending.push([kind, member]);
    const known = demo.members[member.client];
    if (kind === "join") {
      demo.members[member.client] = member;
      if (!known && member.client !== demo.hub.clientId) notice(visible(nickOf(member)) + " joined", "join");
    } else {
      delete demo.members[member.client];
      if (known) notice(visible(nickOf(member)) + " left", "leave");
    }
    renderMembers();
  }

  async function refreshPresence(hub, channel) {
    const events = presencePending = [];
    try {
      const members = await hub.presence(channel);
      if (hub !== demo.hub || channel !== demo.channel) return;
      demo.members = {};
      for (const member of members) demo.members[member.client] = member;
      for (const [kind, member] of events) {
        if (kind === "join") demo.members[member.client] = member;
        else delete demo.members[member.client];
      }
      renderMembers();
    } catch (error) {
      notice("presence: " + error.message, "error");
    } finally {
      if (presencePending === events) presencePending = null;
    }
  }

  // -- joining a room ---------------------------------------------------------

  function updateComposer() {
    const ready = !!(demo.hub && demo.hub._open && demo.sub);
    $("chat-text").disabled = !ready;
    $("chat-send").disabled = !ready;
  }

  function chatStatus(hub, state) {
    if (hub !== demo.hub) return;
    setState("chat-state", state);
    updateComposer();
    const open = state === "open";
    if (state === "closed" && demo.channel) {
      notice("disconnected — reconnecting…", "warn");
    } else if (open && hub.connections > 1 && demo.channel) {
      demo.reconnects += 1;
      notice("reconnected: missed messages recovered", "info");
      // After ws13.js's resubscribe (sent in the same tick): requests are
      // answered in order, so this list includes us.
      const channel = demo.channel;
      setTimeout(() => refreshPresence(hub, channel), 0);
    }
  }

  async function onGap(gap) {
    demo.gaps += 1;
    notice("some messages may be missing (" + (gap.reason || "history lost") +
           "): reloading the room's history", "warn");
    const hub = demo.hub, channel = demo.channel;
    if (!hub || gap.channel !== channel) return;
    try {
      const page = await hub.history(channel, {limit: HISTORY});
      if (hub !== demo.hub || channel !== demo.channel) return;
      demo.messages = [];
      $("chat-log").replaceChildren();
      for (const message of page.messages) showMessage({epoch: page.epoch, ...message});
      if (!hub._subs[channel]) {  // the resubscription itself failed: join again
        await subscribeRoom(hub, channel);
      }
    } catch (error) {
      notice("history: " + error.message, "error");
    }
  }

  async function subscribeRoom(hub, channel) {
    demo.sub = await hub.subscribe(channel, showMessage, {history: HISTORY, onGap, onPresence});
    await refreshPresence(hub, channel);
  }

  async function join(nick, room) {
    const channel = "chat:" + room;
    if (demo.hub && demo.nick === nick && demo.channel === channel && demo.sub) return;
    sessionStorage.setItem("ws13.nick", nick);  // this tab's, across reloads
    localStorage.setItem("ws13.nick", nick);    // the default for new tabs
    localStorage.setItem("ws13.room", room);
    history.replaceState(null, "", "?room=" + encodeURIComponent(room));
    let hub = demo.hub;
    if (demo.sub) {
      const old = demo.sub;
      demo.sub = null;
      await old.unsubscribe();
    }
    if (!hub || demo.nick !== nick) {
      if (hub) hub.close();
      hub = new WS13Hub(base + "?nick=" + encodeURIComponent(nick));
      hub.onstatus = (state) => chatStatus(hub, state);
      demo.hub = hub;
      demo.nick = nick;
    }
    demo.channel = channel;
    demo.messages = [];
    demo.members = {};
    renderMembers();
    $("chat-log").replaceChildren();
    $("chat-room-title").textContent = "#" + room + " as " + nick;
    notice("joining #" + room + " as " + nick + "…");
    try {
      await subscribeRoom(hub, channel);
    } catch (error) {
      notice("cannot join #" + room + ": " + error.message, "error");
      return;
    }
    if (hub !== demo.hub || channel !== demo.channel) return;
    notice("joined #" + room + (demo.messages.length ?
      " — the last " + demo.messages.length + " messages above" : " — no messages yet"));
    updateComposer();
    $("chat-text").focus();
  }

  async function send() {
    const input = $("chat-text");
    const text = input.value.trim();
    if (!text || !demo.hub || !demo.channel) return;
    input.value = "";
    try {
      await demo.hub.publish(demo.channel, {nick: demo.nick, text: text});
    } catch (error) {
      input.value = text;
      notice("not sent: " + error.message, "error");
    }
  }

  function cleanName(text, fallback) {
    const name = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "").trim();
    return name || fallback;
  }

  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const nick = cleanName($("nick").value, "guest").slice(0, 32);
    const room = cleanName($("room").value, "lobby").replace(/\s+/g, "-").slice(0, 40);
    $("nick").value = nick;
    $("room").value = room;
    join(nick, room);
  });
  $("send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });

  // -- ticker -----------------------------------------------------------------

  function sparkline(prices) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 100 24");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "spark");
    if (prices.length > 1) {
      const low = Math.min(...prices), high = Math.max(...prices);
      const span = high - low || 1;
      const points = prices.map((p, i) =>
        (i * 100 / (prices.length - 1)).toFixed(1) + "," + (22 - (p - low) * 20 / span).toFixed(1));
      const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
      line.setAttribute("points", points.join(" "));
      svg.append(line);
    }
    return svg;
  }

  function renderQuote(symbol, flash) {
    const quote = demo.quotes[symbol];
    let row = document.querySelector('tr[data-symbol="' + CSS.escape(symbol) + '"]');
    if (!row) {
      row = el("tr");
      row.dataset.symbol = symbol;
      row.append(el("td", "sym", visible(symbol)), el("td", "num price"),
                 el("td", "num change"), el("td", "spark-col"));
      const rows = Array.from($("quotes-body").children);
      const after = rows.find((r) => r.dataset.symbol > symbol);
      $("quotes-body").insertBefore(row, after || null);
    }
    const delta = quote.previous === null ? 0 : quote.price - quote.previous;
    const direction = delta > 0 ? "up" : delta < 0 ? "down" : "flat";
    row.className = direction;
    row.children[1].textContent = quote.price.toFixed(2);
    const pct = quote.previous ? (delta / quote.previous) * 100 : 0;
    row.children[2].textContent = (delta > 0 ? "▲ +" : delta < 0 ? "▼ " : "· ") +
      delta.toFixed(2) + " (" + (pct >= 0 ? "+" : "") + pct.toFixed(2) + "%)";
    row.children[3].replaceChildren(sparkline(quote.history));
    if (flash && direction !== "flat") {
      row.classList.add("flash-" + direction);
      setTimeout(() => row.classList.remove("flash-" + direction), 400);
    }
  }

  function onPrices(message) {
    const prices = message.data;
    if (!prices || typeof prices !== "object") return;
    const live = Date.now() - message.time < 5000;
    for (const [symbol, value] of Object.entries(prices)) {
      if (typeof value !== "number" || !isFinite(value)) continue;
      const quote = demo.quotes[symbol] || (demo.quotes[symbol] = {price: value, previous: null, history: []});
      quote.previous = quote.history.length ? quote.price : null;
      quote.price = value;
      quote.history.push(value);
      if (quote.history.length > SPARK) quote.history.shift();
      renderQuote(symbol, live);
    }
    demo.tickerUpdates += 1;
    $("ticker-empty").hidden = true;
    $("ticker-updated").textContent = "updated " + clock(message.time) + " · offset " + message.offset;
  }

  function startTicker() {
    const hub = new WS13Hub(base);
    demo.tickerHub = hub;
    hub.onstatus = (state) => setState("ticker-state", state);
    hub.subscribe("ticker", onPrices, {
      history: SPARK,
      onGap: () => {},  // prices: the next one replaces what was missed
    }).catch((error) => {
      $("ticker-empty").textContent = "ticker: " + error.message;
    });
  }

  // -- start ------------------------------------------------------------------

  const params = new URLSearchParams(location.search);
  const nick = cleanName(params.get("nick") || sessionStorage.getItem("ws13.nick") ||
    localStorage.getItem("ws13.nick") || "",
    "guest-" + Math.floor(1000 + Math.random() * 9000)).slice(0, 32);
  const room = cleanName(params.get("room") || localStorage.getItem("ws13.room") || "", "lobby")
    .replace(/\s+/g, "-").slice(0, 40);
  $("nick").value = nick;
  $("room").value = room;
  startTicker();
  join(nick, room);
})();
