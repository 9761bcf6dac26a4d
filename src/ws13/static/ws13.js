// ws13.js — browser client for the ws13 hub (protocol ws13.hub.v1, docs/hub-protocol.md).
// No build step: <script src="/static/ws13.js"></script> defines window.WS13Hub; also an
// ES/CommonJS-friendly global in Node >= 22 (which has a WebSocket global).
//
//   const hub = new WS13Hub("ws://" + location.host + "/hub", {token: "..."});
//   hub.onstatus = (state) => ...;            // "connecting" | "open" | "closed"
//   const room = await hub.subscribe("chat:lobby", (msg) => show(msg.data), {
//     history: 50,                            // last 50 messages first (history on join)
//     onGap: (gap) => reload(),               // recovery impossible: reload your state
//     onPresence: (kind, member) => ...,      // "join" | "leave" pushes
//   });
//   await hub.publish("chat:lobby", {nick: "ann", text: "hi"});   // resolves once stored
//                                             // (over the rate limit: waits, tries again;
//                                             // see PublishGate)
//   await hub.history("chat:lobby", {limit: 20});   // {epoch, offset, messages: [...]}
//   await hub.presence("chat:lobby");               // [{client, user, info}]
//   await room.unsubscribe();  hub.close();
//
// Reconnects by itself (delay doubling from 0.5 s to 30 s, minus up to half at random)
// and resubscribes each channel from the last (epoch, offset) it saw: missed messages
// arrive exactly once, in order, before new ones, or onGap is called.
(function (root) {
  "use strict";

  var SUBPROTOCOL = "ws13.hub.v1";

  function HubError(code, message, retryAfter, rate) {
    var error = new Error(code + " " + message);
    error.name = "HubError";
    error.code = code;
    // Seconds the hub asks to wait before trying again (429), if it said.
    if (retryAfter !== undefined) error.retryAfter = retryAfter;
    // The connection's publish rate limit, per second (429 of a publish), if it said.
    if (rate !== undefined) error.rate = rate;
    return error;
  }

  // A finite number above 0, else undefined (a hub that sends no such field).
  function positive(value) {
    return typeof value === "number" && value > 0 && isFinite(value) ? value : undefined;
  }

  // Publishes refused over the hub's rate limit (429 with retry_after) retry one at a
  // time, behind each other. The hub takes a token for a refusal too: publishes refused
  // together and each retried after its own retryAfter were refused again, as fast as
  // tokens came, for ever or until the hub closed the connection (1008, in debt beyond
  // its max_errors). Through the gate, a refused publish and every publish after it on
  // the connection wait their turn, in order; each retries alone once the latest
  // refusal's retryAfter has passed.
  //
  // A hub that says its rate in the 429 lets the gate pace: a publish that goes through
  // at the gate has just emptied the bucket, so the next one waits one token's time
  // (1 / rate) at the gate, even with none queued, and finds a token instead of a
  // refusal. Without that, a loop over the limit had each publish after a retry refused
  // once more and got half the rate. Once that time has passed, or before any such 429
  // (an older hub says no rate), a publish with none queued (idle(), the common case)
  // goes straight to the hub. One gate per connection: the hub's token bucket is per
  // connection (a new one starts full; the next node may have another rate), and the
  // publishes at the gate of a connection that closes reject with 503, as requests in
  // flight do (none of them was stored).
  function PublishGate() {
    this.queued = 0;                 // publishes retrying or waiting for their turn
    // performance.now() before which none is sent from the gate: the latest refusal's
    // retryAfter, or one token after the latest publish stored through the gate.
    this._notBefore = 0;
    this._interval = null;           // ms per token, once a 429 said the rate
    this._closed = false;
    this._tail = Promise.resolve();  // settles once the last publish at the gate is done
    this._sleep = null;              // {timer, wake} of the one pausing, if any
  }

  // Whether a publish may go straight to the hub: none at the gate and, with the rate
  // known, the next token due.
  PublishGate.prototype.idle = function () {
    return !this.queued && (this._interval === null || performance.now() >= this._notBefore);
  };

  // Whether error is a rate-limit refusal; if so, no retry before its retryAfter, and
  // pace by its rate from now on, if it says one.
  PublishGate.prototype.refused = function (error) {
    if (error.code !== 429 || error.retryAfter === undefined) return false;
    this._notBefore = Math.max(this._notBefore, performance.now() + error.retryAfter * 1000);
    if (error.rate !== undefined) this._interval = 1000 / error.rate;
    return true;
  };

  // A publish sent from the gate was stored: with the rate known, the next one waits
  // for the token after the one it took. Counted from the reply, which left the hub
  // after the token was taken: the next request reaches the hub a round trip after the
  // next token, never before it.
  PublishGate.prototype.passed = function () {
    if (this._interval === null) return;
    this._notBefore = Math.max(this._notBefore, performance.now() + this._interval);
  };

  // The connection closed: the publishes at the gate reject with 503.
  PublishGate.prototype.close = function () {
    this._closed = true;
    var sleep = this._sleep;
    this._sleep = null;
    if (sleep) { clearTimeout(sleep.timer); sleep.wake(); }
  };

  // attempt() (one publish request) once the publishes ahead are done, and again
  // after each refusal.
  PublishGate.prototype.run = function (attempt) {
    var self = this;
    self.queued += 1;
    var done = self._tail.then(function () { return self._retry(attempt); });
    var leave = function () { self.queued -= 1; };
    self._tail = done.then(leave, leave);
    return done;
  };

  PublishGate.prototype._retry = function (attempt) {
    var self = this;
    return self._pause().then(function () {
      return attempt().then(function (result) {
        self.passed();
        return result;
      }, function (error) {
        if (!self.refused(error)) throw error;
        return self._retry(attempt);
      });
    });
  };

  // Until the gate's deadline has passed (refusals of publishes still in flight may
  // push it later meanwhile).
  PublishGate.prototype._pause = function () {
    var self = this;
    if (self._closed) {
      return Promise.reject(
        HubError(503, "connection lost while waiting for the publish rate limit"));
    }
    var delay = self._notBefore - performance.now();
    if (delay <= 0) return Promise.resolve();
    return new Promise(function (resolve) {
      self._sleep = {timer: setTimeout(resolve, delay), wake: resolve};
    }).then(function () {
      self._sleep = null;
      return self._pause();
    });
  };

  function WS13Hub(url, options) {
    options = options || {};
    this.url = options.token ? url + (url.indexOf("?") < 0 ? "?" : "&") +
      "token=" + encodeURIComponent(options.token) : url;
    this.backoffMin = options.backoffMin || 500;
    this.backoffMax = options.backoffMax || 30000;
    this.requestTimeout = options.requestTimeout || 10000;
    this.clientId = null;
    this.connections = 0;
    this.onstatus = null;
    this._ws = null;
    this._open = false;
    this._closed = false;
    this._attempt = 0;
    this._nextId = 1;
    this._pending = {};   // id -> {resolve, reject, onReply, timer}
    this._subs = {};      // channel -> Subscription
    this._waiting = [];   // resolvers waiting for the connection
    this._gate = null;    // the connection's PublishGate
    this._connect();
  }

  WS13Hub.SUBPROTOCOL = SUBPROTOCOL;

  WS13Hub.prototype._status = function (state) {
    if (typeof this.onstatus === "function") this.onstatus(state);
  };

  WS13Hub.prototype._connect = function () {
    var self = this;
    self._status("connecting");
    var ws = new WebSocket(self.url, [SUBPROTOCOL]);
    var gate = new PublishGate();
    self._ws = ws;
    self._gate = gate;
    ws.onmessage = function (event) { self._receive(event.data); };
    ws.onclose = function () {
      if (self._ws !== ws) return;
      self._open = false;
      self._ws = null;
      gate.close();
      Object.keys(self._pending).forEach(function (id) {
        var pending = self._pending[id];
        delete self._pending[id];
        clearTimeout(pending.timer);
        pending.reject(HubError(503, "connection lost before the reply"));
      });
      self._status("closed");
      if (self._closed) return;
      var delay = Math.min(self.backoffMax, self.backoffMin * Math.pow(2, self._attempt));
      self._attempt = Math.min(self._attempt + 1, 30);
      setTimeout(function () { if (!self._closed) self._connect(); },
                 delay / 2 + Math.random() * delay / 2);
    };
  };

  WS13Hub.prototype._receive = function (text) {
    var push;
    try { push = JSON.parse(text); } catch (e) { return; }
    var op = push && push.op;
    if (op === "message") {
      var sub = this._subs[push.channel];
      if (sub) sub._push(push);
    } else if (op === "reply" || op === "error") {
      var pending = this._pending[push.id];
      if (!pending) return;
      delete this._pending[push.id];
      clearTimeout(pending.timer);
      if (op === "error") {
        pending.reject(HubError(push.code, push.message,
          typeof push.retry_after === "number" ? push.retry_after / 1000 : undefined,
          positive(push.rate)));
      } else {
        // Synchronously, before any push that follows the reply.
        if (pending.onReply) pending.onReply(push.result || {});
        pending.resolve(push.result || {});
      }
    } else if (op === "join" || op === "leave") {
      var s = this._subs[push.channel];
      if (s && s.onPresence) s.onPresence(op, push.member || {});
    } else if (op === "welcome") {
      this.clientId = push.client;
      this.connections += 1;
      this._open = true;
      this._attempt = 0;
      this._status("open");
      var waiting = this._waiting;
      this._waiting = [];
      waiting.forEach(function (resolve) { resolve(); });
      if (this.connections > 1) this._resubscribe();
    }
  };

  WS13Hub.prototype._whenOpen = function () {
    var self = this;
    if (self._open) return Promise.resolve();
    return new Promise(function (resolve, reject) {
      self._waiting.push(resolve);
      setTimeout(function () { reject(HubError(503, "not connected")); }, self.requestTimeout);
    });
  };

  WS13Hub.prototype._request = function (request, onReply) {
    var self = this;
    if (self._closed) return Promise.reject(HubError(503, "the client is closed"));
    return self._whenOpen().then(function () {
      return new Promise(function (resolve, reject) {
        var id = self._nextId++;
        request.id = id;
        self._pending[id] = {
          resolve: resolve, reject: reject, onReply: onReply,
          timer: setTimeout(function () {
            delete self._pending[id];
            reject(HubError(504, "no reply in time"));
          }, self.requestTimeout),
        };
        self._ws.send(JSON.stringify(request));
      });
    });
  };

  WS13Hub.prototype._resubscribe = function () {
    var self = this;
    Object.keys(self._subs).forEach(function (channel) {
      var sub = self._subs[channel];
      sub._subscribe(sub.offset, sub.epoch, null).catch(function (error) {
        if (error.code === 503) return;  // connection lost again: next welcome retries
        delete self._subs[channel];
        if (sub.onGap) sub.onGap({channel: channel, reason: String(error.message)});
      });
    });
  };

  WS13Hub.prototype.subscribe = function (channel, onMessage, options) {
    options = options || {};
    if (this._subs[channel]) return Promise.reject(HubError(409, "already subscribed"));
    var sub = new Subscription(this, channel, onMessage, options);
    this._subs[channel] = sub;
    var self = this;
    var since = options.since === undefined ? null : options.since;
    return sub._subscribe(since, options.epoch || null, options.history || null).then(
      function () { return sub; },
      function (error) { delete self._subs[channel]; throw error; });
  };

  // Over the hub's publish rate limit (429 with retry_after) it waits as long
  // as the hub says and tries again: a refused publish wasn't stored, so this
  // never duplicates, and publishing in a loop is simply paced. While a refused
  // publish waits, later ones (and the other refused ones) wait behind it and are
  // retried one at a time (PublishGate), so concurrent publishes over the limit
  // don't get the connection closed; those made then may be stored in another
  // order than they were made (await each one to keep yours in order). When the
  // 429 says the hub's rate, each publish after one that went through that way
  // waits for the next token before it is sent, so a loop kept over the limit
  // gets the full rate with about one refusal. If the connection closes
  // meanwhile, those waiting reject with 503 (not published).
  WS13Hub.prototype.publish = function (channel, data) {
    var self = this;
    var attempt = function () {
      return self._request({op: "publish", channel: channel, data: data});
    };
    if (self._closed) return attempt();  // rejects: the client is closed
    return self._whenOpen().then(function () {
      // The gate of the connection attempt() sends on: a new one comes only
      // with a new connection, after a close event, not between these calls.
      var gate = self._gate;
      if (!gate.idle()) return gate.run(attempt);
      return attempt().catch(function (error) {
        if (!gate.refused(error)) throw error;
        return gate.run(attempt);
      });
    });
  };

  WS13Hub.prototype.history = function (channel, options) {
    options = options || {};
    var request = {op: "history", channel: channel};
    if (options.limit !== undefined) request.limit = options.limit;
    if (options.since !== undefined) request.since = options.since;
    return this._request(request);
  };

  WS13Hub.prototype.presence = function (channel) {
    return this._request({op: "presence", channel: channel}).then(function (r) {
      return r.members;
    });
  };

  WS13Hub.prototype.close = function () {
    this._closed = true;
    if (this._ws) this._ws.close(1000);
  };

  function Subscription(hub, channel, onMessage, options) {
    this.hub = hub;
    this.channel = channel;
    this.onMessage = onMessage;
    this.onGap = options.onGap || null;
    this.onPresence = options.onPresence || null;
    this.epoch = null;
    this.offset = null;
  }

  Subscription.prototype._subscribe = function (since, epoch, history) {
    var self = this;
    var request = {op: "subscribe", channel: self.channel};
    if (since !== null && since !== undefined) {
      request.since = since;
      if (epoch) request.epoch = epoch;
    } else if (history) {
      request.history = history;
    }
    return self.hub._request(request, function (result) {
      self.epoch = result.epoch;
      self.offset = result.offset;
      if (request.since !== undefined && result.recovered === false && self.onGap) {
        self.onGap({channel: self.channel, epoch: result.epoch, offset: result.offset,
                    reason: result.reason});
      }
    });
  };

  Subscription.prototype._push = function (push) {
    if (this.epoch !== null && push.epoch !== this.epoch) {
      if (this.onGap) {
        this.onGap({channel: this.channel, epoch: push.epoch, offset: push.offset - 1,
                    reason: "epoch changed"});
      }
    } else if (this.offset !== null && push.offset <= this.offset) {
      return;  // already seen
    }
    this.epoch = push.epoch;
    this.offset = push.offset;
    if (this.onMessage) {
      this.onMessage({channel: push.channel, epoch: push.epoch, offset: push.offset,
                      time: push.time, data: push.data});
    }
  };

  Subscription.prototype.unsubscribe = function () {
    if (this.hub._subs[this.channel] !== this) return Promise.resolve();
    delete this.hub._subs[this.channel];
    if (!this.hub._open) return Promise.resolve();
    return this.hub._request({op: "unsubscribe", channel: this.channel}).catch(function () {});
  };

  root.WS13Hub = WS13Hub;
  if (typeof module === "object" && module.exports) module.exports = WS13Hub;
})(typeof window !== "undefined" ? window : globalThis);
