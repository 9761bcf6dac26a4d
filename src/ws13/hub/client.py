"""``Client``: the Python client of the hub, with reconnect and recovery.

::

    async with Client("ws://127.0.0.1:8765/hub") as client:
        subscription = await client.subscribe("chat:lobby", history=20)
        await client.publish("chat:lobby", {"nick": "ann", "text": "hi"})
        async for item in subscription:
            if isinstance(item, Gap):
                ...  # messages were lost: reload state (e.g. client.history)
            else:
                print(item.offset, item.data)

When the connection drops the client reconnects (the reconnecting loop of
``ws13.asyncio.connect``, with this client's backoff and jitter, trying the next
URL after each failure), resubscribes every channel from the last offset it saw, and receives
exactly the messages it missed before new ones. If the hub can't provide
them (history trimmed, epoch changed) the subscription yields a ``Gap``.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - the client is an I/O layer
import contextlib
import dataclasses
import inspect
import itertools
import json
import logging
import math
import random
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

from ..asyncio import client as ws_client
from ..asyncio.client import ClientConnection
from ..exceptions import ConnectionClosed, InvalidHandshake
from ..uri import parse_uri
from .wire import SUBPROTOCOL, ErrorCode, HubError

__all__ = ["Client", "ConnectionLost", "Gap", "Message", "NotAHub", "Subscription"]

logger = logging.getLogger("ws13.hub.client")


class ConnectionLost(HubError):
    """The connection dropped before the reply: the request may or may not have run."""

    def __init__(self, message: str = "connection lost before the reply") -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)


class NotAHub(InvalidHandshake):
    """The server accepted the WebSocket but not the ``ws13.hub.v1`` subprotocol."""

    def __init__(self, url: str) -> None:
        super().__init__(f"{url} did not speak the {SUBPROTOCOL} subprotocol: is it a ws13 hub?")


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """A message received on a channel; ``time`` is ms since the Unix epoch."""

    channel: str
    epoch: str
    offset: int
    time: int
    data: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Gap:
    """Messages before ``offset`` in ``epoch`` may be missing: reload your state.

    Yielded when recovery after a reconnect was impossible (``reason`` says
    why) or a push showed that the channel's history was lost (new epoch).
    """

    channel: str
    epoch: str
    offset: int
    reason: str


class _PublishGate:
    """Publishes refused over the hub's rate limit retry one at a time, behind each other.

    The hub refuses a publish without a token (429, ``retry_after``: when the
    next token comes) and takes a token for the refusal too. Publishes
    refused together and each retried after its own ``retry_after`` were
    refused again, debt kept pace with the refill, and they cycled so for
    ever or sank until the 1008 close at ``Hub.max_errors``. Through the
    gate, a refused publish and every publish after it on the connection
    wait their turn (in arrival order): each retries alone, once the latest
    refusal's ``retry_after`` has passed, so the gate's retries never put
    the connection more than one token in debt.

    A hub that says its ``rate`` in the 429 lets the gate pace: a publish
    that goes through at the gate has just emptied the bucket, so the next
    one waits one token's time (``1 / rate``) at the gate, even with none
    queued, and finds a token instead of a refusal. Without that, a loop
    over the limit had each publish after a retry refused once more and got
    half the rate. Once that time has passed, or before any such 429 (an
    older hub says no rate), a publish with none queued (``idle``, the
    common case) goes straight to the hub and pays nothing.

    One per connection: the hub's token bucket is per connection, so a new
    connection starts with a full bucket and a deadline or rate from the old
    one would only delay (the next node may have another rate). Publishes at
    the gate of a connection that ends fail with ``ConnectionLost``, as
    requests in flight do (none of them was stored).
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        #: Publishes at the gate: retrying, or waiting for their turn.
        self.queued = 0
        #: Loop time before which no publish is sent from the gate: the latest
        #: refusal's ``retry_after``, counted from when it arrived, or one
        #: token after the latest publish stored through the gate.
        self._not_before = 0.0
        #: Seconds per token (``1 / rate``) once a 429 said the rate.
        self._interval: float | None = None
        self._closed = asyncio.Event()

    @property
    def idle(self) -> bool:
        """Whether a publish may go straight to the hub: none at the gate and,
        with the rate known, the next token due."""
        return not self.queued and (
            self._interval is None or asyncio.get_running_loop().time() >= self._not_before
        )

    def refused(self, exc: HubError) -> bool:
        """Whether ``exc`` is a rate-limit refusal; if so, wait its ``retry_after``
        and pace by its ``rate`` from now on, if it says one."""
        if exc.code != ErrorCode.TOO_MANY or exc.retry_after is None:
            return False
        now = asyncio.get_running_loop().time()
        self._not_before = max(self._not_before, now + exc.retry_after)
        if exc.rate:
            self._interval = 1 / exc.rate
        return True

    def passed(self) -> None:
        """A publish sent from the gate was stored: with the rate known, the
        next one waits for the token after the one it took."""
        if self._interval is not None:
            # Counted from the reply, which left the hub after the token was
            # taken: the next request reaches the hub a round trip after the
            # next token, never before it.
            now = asyncio.get_running_loop().time()
            self._not_before = max(self._not_before, now + self._interval)

    def close(self) -> None:
        """The connection ended: publishes at the gate raise ConnectionLost."""
        self._closed.set()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for the publishes ahead; the gate is this one's until the block ends."""
        self.queued += 1
        try:
            async with self._lock:
                yield
        finally:
            self.queued -= 1

    async def pause(self) -> None:
        """Wait until the gate's deadline has passed (refusals of publishes
        still in flight may push it later meanwhile)."""
        loop = asyncio.get_running_loop()
        while not self._closed.is_set() and (delay := self._not_before - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closed.wait()
        if self._closed.is_set():
            raise ConnectionLost("connection lost while waiting for the publish rate limit")


def _positive_number(value: object) -> float | None:
    """``value`` if it is a finite number above 0, else None (a hub that sends
    no such field, or a broken one)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf:
        return float(value)
    return None


Callback = Callable[[Message | Gap], Any]
PresenceCallback = Callable[[str, dict[str, Any]], Any]
_END = object()


class Subscription:
    """A channel subscription: iterate with ``async for`` or pass a callback.

    Attributes:
        epoch, offset: the position of the last message received (recovery
            resumes after it).
    """

    def __init__(
        self,
        client: Client,
        channel: str,
        callback: Callback | None,
        on_presence: PresenceCallback | None,
        max_queue: int,
    ) -> None:
        self.client = client
        self.channel = channel
        self.callback = callback
        self.on_presence = on_presence
        self.epoch: str | None = None
        self.offset: int | None = None
        self.active = True
        self._queue: asyncio.Queue[Message | Gap | object] = asyncio.Queue(max_queue)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message | Gap:
        if not self.active and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # later calls end too
            raise StopAsyncIteration
        assert isinstance(item, (Message, Gap))
        return item

    async def get(self) -> Message | Gap:
        """The next message or gap; ``StopAsyncIteration`` once ended."""
        return await self.__anext__()

    async def unsubscribe(self) -> None:
        """Stop receiving; ``async for`` ends after what was already received."""
        if not self.active:
            return
        self._end()
        self.client._subscriptions.pop(self.channel, None)
        if self.client.connected:
            try:
                await self.client._request({"op": "unsubscribe", "channel": self.channel})
            except HubError:
                pass  # gone with the connection, or never subscribed there

    def _end(self) -> None:
        if self.active:
            self.active = False
            try:
                self._queue.put_nowait(_END)
            except asyncio.QueueFull:
                pass  # __anext__ sees active=False once the queue drains

    def _apply_reply(self, result: dict[str, Any], since: int | None) -> Gap | None:
        """Take the position from a subscribe reply; a Gap if recovery failed."""
        self.epoch = str(result.get("epoch"))
        self.offset = int(result.get("offset", 0))
        if since is not None and result.get("recovered") is False:
            return Gap(self.channel, self.epoch, self.offset, str(result.get("reason")))
        return None

    async def _deliver(self, item: Message | Gap) -> None:
        if not self.active:
            return
        if self.callback is not None:
            result = self.callback(item)
            if inspect.isawaitable(result):
                await result
        else:
            # Waits while the queue is full: the connection stops reading and
            # the hub's slow-consumer policy applies.
            await self._queue.put(item)

    async def _push(self, push: dict[str, Any]) -> None:
        message = Message(
            self.channel, push["epoch"], push["offset"], push.get("time", 0), push.get("data")
        )
        if self.epoch is not None and message.epoch != self.epoch:
            await self._deliver(
                Gap(self.channel, message.epoch, message.offset - 1, "epoch changed")
            )
        elif self.offset is not None and message.offset <= self.offset:
            return  # already seen
        self.epoch, self.offset = message.epoch, message.offset
        await self._deliver(message)


class Client:
    """A hub client that reconnects and recovers by itself.

    Args:
        url: the hub's URL, e.g. ``ws://127.0.0.1:8765/hub``, or a list of
            URLs of several nodes: each (re)connection tries the next one.
        token: sent as ``Authorization: Bearer TOKEN``.
        reconnect: reconnect after the connection drops (True).
        backoff_min, backoff_max: the first and the largest delay between
            reconnection attempts, in seconds (0.5, 30); each failed attempt
            doubles the delay, and a random half of it is jittered away.
        request_timeout: seconds to wait for a reply, or for a reconnection
            before a request (10).
        max_queue: messages buffered per iterated subscription (1024).
        **connect_kwargs: passed to ``ws13.asyncio.connect()``.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        token: str | None = None,
        reconnect: bool = True,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        request_timeout: float = 10.0,
        max_queue: int = 1024,
        **connect_kwargs: Any,
    ) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("no URL")
        self._next_url = 0
        self.reconnect = reconnect
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.request_timeout = request_timeout
        self.max_queue = max_queue
        headers: list[tuple[str, str]] = list(connect_kwargs.pop("additional_headers", None) or [])
        if token is not None:
            headers.append(("Authorization", f"Bearer {token}"))
        self._connect_kwargs = dict(connect_kwargs, additional_headers=headers)
        self._connect_kwargs.setdefault("subprotocols", [SUBPROTOCOL])
        #: The hub's id for the current connection (``client`` in presence).
        self.client_id: str | None = None
        #: Successful connections so far (1 + reconnections).
        self.connections = 0
        self._connection: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[dict[str, Any]], Any]] = {}
        self._subscriptions: dict[str, Subscription] = {}
        #: The current connection's (``_PublishGate``); replaced on each connection.
        self._gate = _PublishGate()
        self._runner: asyncio.Task[None] | None = None
        self._opener: ws_client.connect | None = None
        self._first_failures = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def connect(self) -> None:
        """Open the first connection; raise if it fails (later ones are retried).

        The first connection tries each URL once, in order; then the reconnecting
        loop of ``ws13.asyncio.connect`` keeps the client connected.
        """
        loop = asyncio.get_running_loop()
        self._opener = ws_client.connect(
            self.url,
            process_exception=self._process_exception,
            reconnect_delays=self._delays,
            **self._connect_kwargs,
        )
        first: asyncio.Future[None] = loop.create_future()
        self._runner = loop.create_task(self._run(self._opener, first))
        try:
            await first
        except BaseException:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            raise
        await self._wait_connected()

    async def close(self) -> None:
        """Close the connection and end every subscription."""
        self._closing = True
        if self._connection is not None:
            await self._connection.close()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        for subscription in list(self._subscriptions.values()):
            subscription._end()
        self._subscriptions.clear()

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- operations ------------------------------------------------------------

    async def subscribe(
        self,
        channel: str,
        callback: Callback | None = None,
        *,
        since: int | None = None,
        epoch: str | None = None,
        history: int | None = None,
        on_presence: PresenceCallback | None = None,
    ) -> Subscription:
        """Subscribe to ``channel``; messages go to ``callback`` or ``async for``.

        ``since`` (with ``epoch`` if known) resumes after that offset;
        ``history`` first delivers the last ``history`` retained messages.
        ``on_presence(kind, member)`` gets ``join``/``leave`` pushes.
        Raises HubError (e.g. 403, 409) and ConnectionLost.
        """
        if channel in self._subscriptions:
            raise HubError(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {channel}")
        subscription = Subscription(self, channel, callback, on_presence, self.max_queue)
        self._subscriptions[channel] = subscription
        try:
            await self._subscribe(subscription, since, epoch, history)
        except BaseException:
            self._subscriptions.pop(channel, None)
            raise
        return subscription

    async def _subscribe(
        self, subscription: Subscription, since: int | None, epoch: str | None, history: int | None
    ) -> None:
        request: dict[str, Any] = {"op": "subscribe", "channel": subscription.channel}
        if since is not None:
            request["since"] = since
            if epoch is not None:
                request["epoch"] = epoch
        elif history:
            request["history"] = history
        gaps: list[Gap] = []

        def on_reply(result: dict[str, Any]) -> None:
            # Runs in the reader before any push that follows the reply.
            gap = subscription._apply_reply(result, since)
            if gap is not None:
                gaps.append(gap)

        await self._request(request, on_reply)
        for gap in gaps:
            await subscription._deliver(gap)

    async def publish(self, channel: str, data: Any) -> dict[str, Any]:
        """Publish ``data`` (JSON-serializable); return ``{"channel", "epoch", "offset"}``
        once the hub accepted it.

        Over the hub's publish rate limit (error 429 with ``retry_after``), wait
        as long as the hub says and try again: a refused publish wasn't stored,
        so this never duplicates, and publishing in a loop is simply paced.
        While a refused publish waits, later publishes on the connection (and
        the other refused ones) wait behind it and are retried one at a time,
        so concurrent publishes over the limit all go through rather than
        being refused over and over (or closed with 1008); they may be stored
        in another order than they were made (await each one to keep yours
        in order). When the 429 says the hub's ``rate``, each publish after
        one that went through that way waits for the next token before it is
        sent, so a loop kept over the limit gets the full rate with about one
        refusal (without it, one refusal per publish and half the rate). If
        the connection drops meanwhile, those waiting raise ``ConnectionLost``
        (not published).
        """
        request = {"op": "publish", "channel": channel, "data": data}
        if not self._connected.is_set() and not self._closing:
            await self._wait_connected()
        # The gate of the connection _request() sends on: both change only
        # while _connected is clear.
        gate = self._gate
        if gate.idle:
            try:
                return await self._request(request)
            except HubError as exc:
                if not gate.refused(exc):
                    raise
        async with gate.turn():
            while True:
                await gate.pause()
                try:
                    reply = await self._request(request)
                except HubError as exc:
                    if not gate.refused(exc):
                        raise
                else:
                    gate.passed()
                    return reply

    async def history(
        self, channel: str, *, limit: int | None = None, since: int | None = None
    ) -> dict[str, Any]:
        """``{"channel", "epoch", "offset", "messages": [{"offset", "time", "data"}]}``."""
        request: dict[str, Any] = {"op": "history", "channel": channel}
        if limit is not None:
            request["limit"] = limit
        if since is not None:
            request["since"] = since
        return await self._request(request)

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        """The channel's members: ``[{"client", "user", "info"}, ...]``."""
        result = await self._request({"op": "presence", "channel": channel})
        members: list[dict[str, Any]] = result["members"]
        return members

    # -- requests ----------------------------------------------------------------

    async def _wait_connected(self) -> None:
        try:
            async with asyncio.timeout(self.request_timeout):
                await self._connected.wait()
        except TimeoutError:
            raise ConnectionLost("not connected") from None

    async def _request(self, request: dict[str, Any], on_reply: Any = None) -> dict[str, Any]:
        if self._closing:
            raise ConnectionLost("the client is closed")
        if not self._connected.is_set():
            await self._wait_connected()
        connection = self._connection
        assert connection is not None
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (future, on_reply)
        try:
            try:
                await connection.send(json.dumps({**request, "id": request_id}))
            except ConnectionClosed:
                raise ConnectionLost() from None
            async with asyncio.timeout(self.request_timeout):
                return await future
        finally:
            self._pending.pop(request_id, None)

    # -- the connection loop -----------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Seconds before reconnection attempt ``attempt`` (0, 1, ...): the delay
        doubles from ``backoff_min`` up to ``backoff_max``, minus up to half of
        it at random, so that clients dropped together don't return together."""
        delay = min(self.backoff_max, self.backoff_min * 2.0 ** min(attempt, 64))
        return delay / 2 + random.uniform(0, delay / 2)

    @property
    def url(self) -> str:
        """The URL of the current (or next) connection."""
        return self.urls[self._next_url % len(self.urls)]

    def _fail_over(self, opener: ws_client.connect) -> None:
        """The next attempt goes to the next URL."""
        self._next_url += 1
        opener.uri = parse_uri(self.url)

    def _process_exception(self, exc: Exception) -> Exception | None:
        """What ``connect()``'s loop retries: network errors, refused handshakes
        and timeouts, on the next URL; the first connection tries each URL once."""
        if self._closing or not isinstance(exc, (OSError, InvalidHandshake, TimeoutError)):
            return exc
        if self.connections == 0:
            self._first_failures += 1
            if self._first_failures >= len(self.urls):
                return exc
        assert self._opener is not None
        self._fail_over(self._opener)
        return None

    def _delays(self) -> Iterator[float]:
        """The waits of ``connect()``'s loop: none while the first connection
        tries each URL, then ``backoff(0)``, ``backoff(1)``..."""
        attempt = 0
        while True:
            if self.connections == 0:
                yield 0.0
            else:
                yield self.backoff(attempt)
                attempt = min(attempt + 1, 64)

    async def _run(self, opener: ws_client.connect, first: asyncio.Future[None]) -> None:
        try:
            async with contextlib.aclosing(aiter(opener)) as connections:
                async for connection in connections:
                    if (
                        SUBPROTOCOL in (self._connect_kwargs["subprotocols"] or ())
                        and connection.subprotocol != SUBPROTOCOL
                    ):
                        # Not a hub: no welcome would ever come.
                        await connection.close()
                        error = NotAHub(self.url)
                        if self._process_exception(error) is not None:
                            raise error
                        continue
                    self._connection = connection
                    self._gate = _PublishGate()
                    self.connections += 1
                    if not first.done():
                        first.set_result(None)
                    try:
                        await self._serve(connection)
                    except (ConnectionClosed, OSError):
                        pass
                    finally:
                        self._connected.clear()
                        self._gate.close()
                        for future, _ in self._pending.values():
                            if not future.done():
                                future.set_exception(ConnectionLost())
                    if self._closing or not self.reconnect:
                        break
        except Exception as exc:
            if not first.done():
                first.set_exception(exc)
            else:
                logger.warning("stopped reconnecting to %s: %s", self.url, exc)
        finally:
            if not first.done():
                first.set_exception(ConnectionLost("the client is closed"))
            for subscription in list(self._subscriptions.values()):
                subscription._end()

    async def _serve(self, connection: ClientConnection) -> None:
        resubscribing: asyncio.Task[None] | None = None
        try:
            async for text in connection:
                if not isinstance(text, str):
                    continue
                try:
                    push = json.loads(text)
                    op = push["op"]
                except (ValueError, KeyError, TypeError):
                    logger.warning("ignored an invalid message from the hub")
                    continue
                if op == "message":
                    subscription = self._subscriptions.get(push.get("channel"))
                    if subscription is not None:
                        await subscription._push(push)
                elif op in ("reply", "error"):
                    self._resolve(push)
                elif op in ("join", "leave"):
                    subscription = self._subscriptions.get(push.get("channel"))
                    if subscription is not None and subscription.on_presence is not None:
                        result = subscription.on_presence(op, push.get("member") or {})
                        if inspect.isawaitable(result):
                            await result
                elif op == "welcome":
                    self.client_id = push.get("client")
                    resubscribing = asyncio.get_running_loop().create_task(self._resubscribe())
        finally:
            if resubscribing is not None:
                resubscribing.cancel()

    def _resolve(self, push: dict[str, Any]) -> None:
        pending = self._pending.get(push.get("id"))  # type: ignore[arg-type]
        if pending is None:
            return
        future, on_reply = pending
        if future.done():
            return
        if push["op"] == "error":
            retry_after = push.get("retry_after")
            future.set_exception(
                HubError(
                    ErrorCode(push.get("code", 500)),
                    str(push.get("message")),
                    retry_after=retry_after / 1000 if isinstance(retry_after, int) else None,
                    rate=_positive_number(push.get("rate")),
                )
            )
            return
        result = push.get("result") or {}
        if on_reply is not None:
            on_reply(result)
        future.set_result(result)

    async def _resubscribe(self) -> None:
        """After (re)connecting: subscribe again from each channel's last offset."""
        self._connected.set()
        if self.connections == 1:
            return
        for subscription in list(self._subscriptions.values()):
            for _ in range(100):  # bounded: a 503 is retried for ~100 s at most
                if not subscription.active:
                    break
                try:
                    await self._subscribe(
                        subscription, subscription.offset, subscription.epoch, None
                    )
                    break
                except HubError as exc:
                    if isinstance(exc, ConnectionLost):
                        return
                    if exc.code != ErrorCode.UNAVAILABLE:
                        logger.warning("resubscribe to %s: %s", subscription.channel, exc)
                        subscription._end()
                        self._subscriptions.pop(subscription.channel, None)
                        break
                    await asyncio.sleep(1)
