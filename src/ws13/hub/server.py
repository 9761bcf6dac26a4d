"""``Hub``: channels with history, recovery and presence over WebSocket connections.

Mount a hub on a ``serve()`` server with ``process_request=hub.process_request``
and ``handler=hub.handler`` (or ``ws13.hub.mount()`` to share a server
with other paths), and publish from Python with ``await hub.publish(channel, data)``.
Inside an ASGI app (Starlette, FastAPI), ``ws13.hub.asgi.HubEndpoint(hub)``
serves the same hub: both front-ends run ``Hub.run_session``.

Each connection is a ``Session`` (``ws13.hub.session``) with a bounded
outbound queue. A published message is encoded into one frame per node and
appended to its channel's ``Batch`` (``ws13.hub.batch``); at the end of the
loop iteration the batch's frames are joined once and go to every idle
subscriber of the channel in one write of the same bytes. Subscribers that
can't take them so (a socket that is full, a reply waiting, several channels)
get the frames through their own queue, up to ``max_queue`` frames or
``max_queue_bytes``, after which the channel's ``Policy`` drops the oldest
queued pushes or closes with 1013.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - the hub is an I/O layer, like ws13.asyncio
import collections
import inspect
import logging
import time  # noqa: TID251 - the backplane lag needs the wall clock
import weakref
from collections.abc import Awaitable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..asyncio.server import ServerConnection
from ..exceptions import ConnectionClosed
from ..frames import CloseCode
from ..http11 import Request, Response
from . import wire
from .auth import Authorize, Principal, Refused, allow_all
from .backplanes import Backplane, BackplaneUnavailable, Entry, Member
from .backplanes.memory import InMemoryBackplane
from .batch import Batch
from .channels import ChannelConfig, ChannelOptions, Policy
from .session import Flusher, Session
from .transport import ConnectionTransport, Outgoing, Transport
from .wire import ErrorCode, HubError

if TYPE_CHECKING:
    from ..metrics import Metrics

__all__ = ["Hub", "Session"]

logger = logging.getLogger("ws13.hub")

#: Seconds a presence entry lives in the backplane unless refreshed; the hub
#: refreshes its members every third of it, so a crashed node's vanish.
PRESENCE_TTL = 60.0
#: Entries a channel holds while it fills a gap from history; beyond this the
#: oldest held entries are dropped (subscribers then see an offset jump).
MAX_HELD = 10_000
#: Publishes of one connection on their way to the backplane at once; the
#: next one waits for the oldest (see ``Hub._op_publish``).
MAX_PIPELINED = 64


class _Channel:
    """A channel with subscribers on this node."""

    __slots__ = (
        "batch", "epoch", "exact", "held", "holding", "last", "name", "options", "ready", "subs",
    )  # fmt: skip

    def __init__(self, name: str, options: ChannelOptions, max_frames: int, max_bytes: int) -> None:
        self.name = name
        self.options = options
        #: Session -> entries held for it while it recovers (None once live).
        self.subs: dict[Session, list[Entry] | None] = {}
        #: The recovering sessions of ``subs`` and their held entries.
        self.holding: dict[Session, list[Entry]] = {}
        #: Live sessions that share the channel's batch (one buffer per flush),
        #: and those pushed to message by message (subscribed to several channels).
        self.batch = Batch(options.policy is Policy.DROP_OLDEST, max_frames, max_bytes)
        self.exact: dict[Session, None] = {}
        self.epoch = ""
        #: The offset of the last message delivered to local subscribers.
        self.last = 0
        #: Entries from the backplane held until the channel is ready or a
        #: gap is filled; None while delivering directly.
        self.held: list[Entry] | None = []
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class Hub:
    """Channels with history, recovery after reconnect, and presence.

    Args:
        backplane: where history lives and how other nodes are reached
            (default: a new ``InMemoryBackplane``).
        channels: per-channel options, as a ``ChannelConfig``, or a mapping of
            ``fnmatch`` patterns to ``ChannelOptions`` (first match wins).
        authorize: the handshake hook, see ``ws13.hub.auth``; default: anyone
            may subscribe and publish anywhere.
        max_queue: frames queued per connection before the slow-consumer
            policy applies (256).
        max_queue_bytes: bytes queued per connection, likewise (1 MiB; frames
            shared between connections count in full for each).
        max_data_size: largest ``data`` a client may publish, in bytes of
            compact JSON (64 KiB); larger gets error 413.
        max_subscriptions: channels per connection (128); more gets error 429.
        max_errors: invalid requests (codes 400, 405, 413) a connection may
            make before it is closed with 1008 (20); also how far into debt
            a connection's publish rate limit may go (see ``publish_rate``).
        publish_rate: publishes per second a connection may make, on average
            (100; 0 or None: no limit). Beyond it a publish gets error 429
            with ``retry_after`` and ``rate`` (this limit, which the clients
            pace by), and still costs a token: a connection more
            than ``max_errors`` tokens in debt is closed with 1008.
            ``Hub.publish()`` from Python is never limited.
        publish_burst: publishes a connection may make at once after being
            idle (200): the size of its token bucket.
        metrics: a ``ws13.metrics.Metrics`` that reports this hub's
            ``statistics()`` when scraped (``docs/metrics.md``); give the
            same one to ``serve()`` for the connections' own metrics.
    """

    def __init__(
        self,
        backplane: Backplane | None = None,
        *,
        channels: ChannelConfig | Mapping[str, ChannelOptions] | None = None,
        authorize: Authorize = allow_all,
        max_queue: int = 256,
        max_queue_bytes: int = 2**20,
        max_data_size: int = 2**16,
        max_subscriptions: int = 128,
        max_errors: int = 20,
        publish_rate: float | None = 100.0,
        publish_burst: int = 200,
        metrics: Metrics | None = None,
    ) -> None:
        if publish_rate is not None and publish_rate < 0:
            raise ValueError("publish_rate must be >= 0")
        if publish_burst < 1:
            raise ValueError("publish_burst must be >= 1")
        self.backplane: Backplane = backplane if backplane is not None else InMemoryBackplane()
        if not isinstance(channels, ChannelConfig):
            channels = ChannelConfig(channels)
        self.channel_options = channels
        self.authorize = authorize
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.max_data_size = max_data_size
        self.max_subscriptions = max_subscriptions
        self.max_errors = max_errors
        self.publish_rate = publish_rate
        self.publish_burst = publish_burst
        #: Writes what sessions queued, once per loop iteration.
        self.flusher = Flusher()
        self.sessions: set[Session] = set()
        self.stats: dict[str, int] = collections.Counter()
        self._channels: dict[str, _Channel] = {}
        self._principals: weakref.WeakKeyDictionary[ServerConnection, Principal] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._presence_task: asyncio.Task[None] | None = None
        self._started = False
        if metrics is not None:
            metrics.add_hub(self)

    # -- lifecycle -----------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether ``start()`` was called (``HubEndpoint`` refuses connections until then)."""
        return self._started

    async def start(self) -> None:
        """Connect the backplane and start background work; ``async with`` calls it."""
        if self._started:
            return
        self._started = True
        self.backplane.attach(self)
        await self.backplane.start()
        self._presence_task = asyncio.get_running_loop().create_task(self._refresh_presence())

    async def aclose(self) -> None:
        """Stop background work and close the backplane (close the server first)."""
        for task in [self._presence_task, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._presence_task is not None:
            await asyncio.gather(self._presence_task, return_exceptions=True)
        await self.backplane.aclose()

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, (ConnectionClosed, BackplaneUnavailable)):
                logger.error("hub task failed", exc_info=exc)

    # -- the Python API ------------------------------------------------------

    async def publish(self, channel: str, data: Any) -> Entry:
        """Publish ``data`` (any JSON-serializable value) on ``channel``; return its entry.

        Raises ValueError for a bad channel name or data that isn't JSON,
        BackplaneUnavailable when the backplane is down.
        """
        wire.check_channel(channel)
        try:
            text = wire.dumps(data)
        except TypeError as exc:
            raise ValueError(f"data isn't JSON-serializable: {exc}") from None
        return await self._publish(channel, text)

    async def _publish(self, channel: str, text: str) -> Entry:
        options = self.channel_options(channel)
        entry = await self.backplane.publish(
            channel, text, history_size=options.history_size, ttl=options.history_ttl
        )
        self.stats["published"] += 1
        return entry

    async def history(
        self, channel: str, *, limit: int | None = None, since: int | None = None
    ) -> list[Entry]:
        """Retained messages, oldest first: after ``since``, or the last ``limit``."""
        wire.check_channel(channel)
        options = self.channel_options(channel)
        limit = options.history_size if limit is None else min(limit, options.history_size)
        page = await self.backplane.history(
            channel, since=since, limit=limit, ttl=options.history_ttl
        )
        return page.entries

    async def presence(self, channel: str) -> list[Member]:
        """The subscribers of ``channel`` on every node (if presence is on for it)."""
        return await self.backplane.presence(wire.check_channel(channel))

    def health(self) -> dict[str, Any]:
        """A JSON-ready status: ``"status"`` is ``"ok"`` or ``"degraded"``.

        ``"channels"`` counts the channels with a subscriber on this node, once:
        the backplane's own count (channels with history in memory, channels
        subscribed in Redis) is left out, so ``/health`` has one figure.
        """
        backplane = dict(self.backplane.status())
        backplane.pop("channels", None)
        return {
            "status": "ok" if self.backplane.healthy else "degraded",
            "backplane": backplane,
            "connections": len(self.sessions),
            "channels": len(self._channels),
        }

    def statistics(self) -> dict[str, int]:
        """Figures now (connections, channels, subscribers, queued) and counters:
        published, delivered, dropped, slow_disconnects, errors, and for the
        backplane lag, backplane_messages and backplane_lag_ms (their sum)."""
        return {
            "connections": len(self.sessions),
            "channels": len(self._channels),
            "subscribers": sum(len(channel.subs) for channel in self._channels.values()),
            "queued": sum(session.queued for session in self.sessions),
            **self.stats,
        }

    # -- serving -------------------------------------------------------------

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """``serve(process_request=...)`` hook: authorize the handshake (401/403)."""
        try:
            principal = await self.authorize_request(request)
        except Refused as exc:
            return connection.respond(exc.status, exc.message + "\n")
        self._principals[connection] = principal
        return None

    async def authorize_request(self, request: Request) -> Principal:
        """Run the ``authorize`` hook on a handshake: a Principal, or Refused raised.

        Raises TypeError when the hook returns something else.
        """
        principal = self.authorize(request)
        if inspect.isawaitable(principal):
            principal = await principal
        if not isinstance(principal, Principal):
            raise TypeError("authorize must return a Principal or raise Refused")
        return principal

    async def handler(self, connection: ServerConnection) -> None:
        """``serve()`` handler: speak ``ws13.hub.v1`` until the connection closes."""
        principal = self._principals.pop(connection, None)
        if principal is None:  # not authorized in process_request: do it now
            assert connection.request is not None
            try:
                principal = await self.authorize_request(connection.request)
            except Refused as exc:
                await connection.close(CloseCode.POLICY_VIOLATION, exc.message[:120])
                return
        await self.run_session(ConnectionTransport(connection), principal)

    async def run_session(self, transport: Transport, principal: Principal) -> None:
        """Speak ``ws13.hub.v1`` on an open connection until it closes.

        The part every front-end shares (``handler`` here, ``HubEndpoint``
        under ASGI): the welcome, requests, pushes, and leaving every channel
        at the end. ``principal`` is what the handshake was authorized as.
        """
        session = Session(self, transport, principal)
        self.sessions.add(session)
        session.send(
            wire.dumps(
                {
                    "op": "welcome",
                    "protocol": wire.SUBPROTOCOL,
                    "client": session.id,
                    "user": principal.user,
                }
            )
        )
        try:
            async for message in transport:
                if session.closing:
                    # Kicked: ignore what follows until the close (with the
                    # kick's code, not the 1000 returning would send) is done.
                    continue
                if isinstance(message, str):
                    await self._handle(session, message)
                else:
                    session.error(None, ErrorCode.BAD_REQUEST, "binary frames aren't ws13.hub.v1")
        except ConnectionClosed:
            pass
        finally:
            self.sessions.discard(session)
            session.closing = True
            await self._leave_all(session)

    async def _handle(self, session: Session, text: str) -> None:
        if len(text) > self.max_data_size + 1024:
            await _publishes_done(session)
            session.error(None, ErrorCode.TOO_LARGE, "request too large")
            return
        try:
            request = wire.parse_request(text, max_data_size=self.max_data_size)
        except HubError as exc:
            await _publishes_done(session)
            session.error(exc.request_id, exc.code, exc.message)
            return
        if not isinstance(request, wire.PublishRequest):
            # Answered after the publishes before it, which it may depend on
            # (a history request after a publish sees it).
            await _publishes_done(session)
        try:
            if isinstance(request, wire.PublishRequest):
                await self._op_publish(session, request)
            elif isinstance(request, wire.SubscribeRequest):
                await self._op_subscribe(session, request)
            elif isinstance(request, wire.UnsubscribeRequest):
                await self._op_unsubscribe(session, request)
            elif isinstance(request, wire.HistoryRequest):
                await self._op_history(session, request)
            elif isinstance(request, wire.PresenceRequest):
                await self._op_presence(session, request)
            else:
                session.reply(request.id, {})
        except HubError as exc:
            session.error(request.id, exc.code, exc.message, exc.retry_after, exc.rate)
        except BackplaneUnavailable:
            session.error(request.id, ErrorCode.UNAVAILABLE, "backplane unavailable; retry")
        except ConnectionClosed:
            raise
        except Exception:
            logger.error("hub request failed: %s", type(request).__name__, exc_info=True)
            self.stats["errors"] += 1
            session.error(request.id, ErrorCode.INTERNAL, "internal error")

    async def _op_publish(self, session: Session, request: wire.PublishRequest) -> None:
        """Start the publish and return: publishes are pipelined.

        A backplane in another process (``--workers``' local one, Redis)
        answers after a round trip, and a connection's publishes awaited one
        by one would go no faster than one per round trip, each waiting for
        the event loop, which a flush to thousands of subscribers keeps busy.
        So each publish is a task that sends its request now, in order (the
        backplane keeps the order of one connection's requests), and replies
        once the publishes before it have replied; at most
        ``MAX_PIPELINED`` are in flight per connection. Other requests wait
        for them first.
        """
        if not session.principal.may_publish(request.channel):
            await _publishes_done(session)
            raise HubError(ErrorCode.FORBIDDEN, f"may not publish on {request.channel}")
        retry_after = session.allow_publish()
        if retry_after is not None:
            await _publishes_done(session)
            # The rate too: a client that knows it paces its next publishes
            # one token apart instead of finding the bucket empty each time.
            raise HubError(
                ErrorCode.TOO_MANY,
                f"publish rate limit: {self.publish_rate:g} per second",
                retry_after=retry_after,
                rate=self.publish_rate,
            )
        if session.publishing >= MAX_PIPELINED:
            await _publishes_done(session)
        task = asyncio.get_running_loop().create_task(
            self._pipelined_publish(session, request, session.last_publish)
        )
        session.last_publish = task
        session.publishing += 1
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pipelined_publish(
        self,
        session: Session,
        request: wire.PublishRequest,
        previous: asyncio.Task[None] | None,
    ) -> None:
        entry: Entry | None = None
        error: tuple[ErrorCode, str] | None = None
        try:
            entry = await self._publish(request.channel, request.data)
        except BackplaneUnavailable:
            error = (ErrorCode.UNAVAILABLE, "backplane unavailable; retry")
        except Exception:
            logger.error("hub request failed: PublishRequest", exc_info=True)
            self.stats["errors"] += 1
            error = (ErrorCode.INTERNAL, "internal error")
        finally:
            session.publishing -= 1
        if previous is not None and not previous.done():
            await asyncio.wait([previous])  # replies in request order
        if entry is not None:
            session.reply(
                request.id,
                {"channel": entry.channel, "epoch": entry.epoch, "offset": entry.offset},
            )
        elif error is not None:
            session.error(request.id, *error)

    def _check_read(self, session: Session, channel: str) -> ChannelOptions:
        if not session.principal.may_subscribe(channel):
            raise HubError(ErrorCode.FORBIDDEN, f"may not subscribe to {channel}")
        return self.channel_options(channel)

    async def _op_history(self, session: Session, request: wire.HistoryRequest) -> None:
        options = self._check_read(session, request.channel)
        limit = options.history_size
        if request.limit is not None:
            limit = min(limit, request.limit)
        page = await self.backplane.history(
            request.channel, since=request.since, limit=limit, ttl=options.history_ttl
        )
        messages = ",".join(
            f'{{"offset":{e.offset},"time":{e.time},"data":{e.data}}}' for e in page.entries
        )
        session.send(
            f'{{"op":"reply","id":{wire.dumps(request.id)},"result":{{'
            f'"channel":{wire.dumps(request.channel)},"epoch":{wire.dumps(page.epoch)},'
            f'"offset":{page.top},"messages":[{messages}]}}}}'
        )

    async def _op_presence(self, session: Session, request: wire.PresenceRequest) -> None:
        options = self._check_read(session, request.channel)
        if not options.presence:
            raise HubError(ErrorCode.FORBIDDEN, f"presence is off for {request.channel}")
        members = await self.backplane.presence(request.channel)
        session.reply(
            request.id,
            {"channel": request.channel, "members": [m.to_json() for m in members]},
        )

    # -- subscriptions -------------------------------------------------------

    async def _op_subscribe(self, session: Session, request: wire.SubscribeRequest) -> None:
        name = request.channel
        options = self._check_read(session, name)
        if name in session.channels:
            raise HubError(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {name}")
        if len(session.channels) >= self.max_subscriptions:
            raise HubError(ErrorCode.TOO_MANY, f"at most {self.max_subscriptions} subscriptions")
        channel = self._channels.get(name)
        if channel is None:
            channel = _Channel(name, options, self.max_queue, self.max_queue_bytes)
            self._channels[name] = channel
            self._spawn(self._open_channel(channel))
        # Registered at once, holding what arrives until the reply is sent.
        held: list[Entry] = []
        channel.subs[session] = held
        channel.holding[session] = held
        session.channels[name] = channel
        if len(session.channels) == 2:
            # Several channels: each pushes message by message, so the order
            # across channels stays the order of arrival.
            for other in session.channels.values():
                if session in other.batch.sessions:
                    other.batch.remove(session)
                    other.exact[session] = None
        try:
            await asyncio.shield(channel.ready)
            result, replay = await self._position(channel, request, held)
        except BaseException:
            self._unregister(session, channel)
            raise
        if session.channels.get(name) is not channel:
            return  # gone meanwhile (connection closed)
        session.reply(request.id, result)
        policy_drop = options.policy is Policy.DROP_OLDEST
        start = result["offset"]
        for entry in replay:
            session.push(Outgoing(_encode_entry(entry)), droppable=policy_drop)
            start = entry.offset
        for entry in held:
            if entry.epoch != result["epoch"] or entry.offset > start:
                session.push(Outgoing(_encode_entry(entry)), droppable=policy_drop)
        channel.subs[session] = None
        del channel.holding[session]
        if len(session.channels) == 1:
            channel.batch.add(session)
        else:
            channel.exact[session] = None
        if options.presence:
            try:
                await self.backplane.presence_add(name, session.member, PRESENCE_TTL)
                if options.join_leave:
                    await self.backplane.publish_event(name, "join", session.member)
            except BackplaneUnavailable:
                pass  # best effort: the presence refresh adds it when the backplane returns

    async def _position(
        self, channel: _Channel, request: wire.SubscribeRequest, held: list[Entry]
    ) -> tuple[dict[str, Any], list[Entry]]:
        """The subscribe reply and the messages to replay before live ones.

        ``held`` has every message delivered since the session registered.
        """
        options = channel.options
        name = channel.name
        if request.since is None and not request.history:
            if held:  # live from the first message that arrived after registering
                return {"channel": name, "epoch": held[0].epoch, "offset": held[0].offset - 1}, []
            return {"channel": name, "epoch": channel.epoch, "offset": channel.last}, []
        if request.since is None:
            assert request.history is not None
            page = await self.backplane.history(
                name, limit=min(request.history, options.history_size), ttl=options.history_ttl
            )
            start = page.entries[0].offset - 1 if page.entries else page.top
            return {"channel": name, "epoch": page.epoch, "offset": start}, page.entries
        since = request.since
        page = await self.backplane.history(
            name, since=since, limit=options.history_size, ttl=options.history_ttl
        )
        reason = None
        if request.epoch is not None and request.epoch != page.epoch:
            reason = "epoch changed: history was lost"
        elif since > page.top:
            reason = "offset is ahead of the channel"
        elif [e.offset for e in page.entries] != list(range(since + 1, page.top + 1)):
            reason = "messages after this offset are no longer in history"
        result: dict[str, Any] = {"channel": name, "epoch": page.epoch}
        if reason is None:
            result.update(offset=since, recovered=True)
            return result, page.entries
        result.update(offset=page.top, recovered=False, reason=reason)
        return result, []

    async def _op_unsubscribe(self, session: Session, request: wire.UnsubscribeRequest) -> None:
        channel = session.channels.get(request.channel)
        if channel is None:
            raise HubError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {request.channel}")
        self._unregister(session, channel)
        session.reply(request.id, {"channel": request.channel})
        await self._forget_member(session, channel)

    def _unregister(self, session: Session, channel: _Channel) -> None:
        if session.channels.get(channel.name) is channel:
            del session.channels[channel.name]
        channel.subs.pop(session, None)
        channel.holding.pop(session, None)
        channel.exact.pop(session, None)
        channel.batch.remove(session)
        if len(session.channels) == 1 and not session.closing:
            (other,) = session.channels.values()
            if other.exact.pop(session, 0) is None:  # live there: share its batch again
                other.batch.add(session)
        if not channel.subs and channel.ready.done():
            self._close_channel(channel)

    def _close_channel(self, channel: _Channel) -> None:
        if self._channels.get(channel.name) is channel:
            del self._channels[channel.name]
            self.backplane.unsubscribe(channel.name)

    async def _forget_member(self, session: Session, channel: _Channel) -> None:
        if channel.options.presence:
            await self.backplane.presence_remove(channel.name, session.id)
            if channel.options.join_leave:
                await self.backplane.publish_event(channel.name, "leave", session.member)

    async def _leave_all(self, session: Session) -> None:
        channels = list(session.channels.values())
        for channel in channels:
            self._unregister(session, channel)
        for channel in channels:
            try:
                await self._forget_member(session, channel)
            except BackplaneUnavailable:
                pass  # presence entries expire by themselves (PRESENCE_TTL)

    async def _open_channel(self, channel: _Channel) -> None:
        """Subscribe on the backplane, learn the epoch and offset, then go live."""
        options = channel.options
        try:
            await self.backplane.subscribe(channel.name)
            page = await self.backplane.history(channel.name, limit=0, ttl=options.history_ttl)
        except BaseException as exc:
            if self._channels.get(channel.name) is channel:
                del self._channels[channel.name]
            self.backplane.unsubscribe(channel.name)
            channel.ready.set_exception(
                exc if isinstance(exc, Exception) else BackplaneUnavailable("cancelled")
            )
            channel.ready.exception()  # retrieved: subscribers may all be gone
            for session in list(channel.subs):
                session.channels.pop(channel.name, None)
            raise
        channel.epoch = page.epoch
        channel.last = page.top
        channel.ready.set_result(None)
        self._release_held(channel)
        if not channel.subs:
            self._close_channel(channel)

    def _release_held(self, channel: _Channel) -> None:
        held = channel.held or []
        channel.held = None
        held.sort(key=lambda e: (e.epoch != channel.epoch, e.offset))
        for entry in held:
            self._deliver(channel, entry, fill=False)

    # -- fan-out (BackplaneListener) -------------------------------------------

    def on_message(self, entry: Entry) -> None:
        channel = self._channels.get(entry.channel)
        if channel is None:
            return
        # Once per message and node, not per subscriber: the lag's sum and count.
        stats = self.stats
        stats["backplane_messages"] += 1
        stats["backplane_lag_ms"] += max(0, round(time.time() * 1000) - entry.time)
        if channel.held is not None:
            channel.held.append(entry)
            if len(channel.held) > MAX_HELD:
                del channel.held[0]
            return
        self._deliver(channel, entry, fill=True)

    def _deliver(self, channel: _Channel, entry: Entry, *, fill: bool) -> None:
        if entry.epoch != channel.epoch:
            logger.info("channel %s: new epoch %s", channel.name, entry.epoch)
            channel.epoch = entry.epoch
            channel.last = 0
        elif entry.offset <= channel.last:
            return  # a duplicate (gap fill and live overlap)
        if fill and entry.offset > channel.last + 1:
            channel.held = [entry]
            self._spawn(self._fill(channel, channel.last))
            return
        channel.last = entry.offset
        frame = Outgoing(_encode_entry(entry))
        batch = channel.batch
        # Once per message, not per subscriber: the batch's sessions get it
        # at the flush, in one shared buffer.
        if batch.sessions and batch.append(frame):
            self.flusher.add_batch(batch)
        droppable = batch.droppable
        push = Session.push  # one lookup, not one per subscriber
        for session in channel.exact:
            push(session, frame, droppable)
        for held in channel.holding.values():
            held.append(entry)
            if len(held) > MAX_HELD:
                del held[0]
        self.stats["delivered"] += len(channel.exact) + len(batch.sessions)

    async def _fill(self, channel: _Channel, since: int) -> None:
        """Fetch what the backplane skipped after ``since``, then deliver in order."""
        options = channel.options
        entries: list[Entry] = []
        try:
            page = await self.backplane.history(
                channel.name, since=since, limit=options.history_size, ttl=options.history_ttl
            )
            if page.epoch != channel.epoch and since:
                # A new epoch began while this node didn't hear the channel (a
                # resync after the backplane's outage: messages stored by a
                # promoted replica before this node subscribed there). ``since``
                # counts in the old epoch: take the new one from its start, and
                # _deliver() moves the channel to it, as a live message of a
                # new epoch would. Dropping the page instead left the channel
                # on the old epoch with those messages never delivered.
                page = await self.backplane.history(
                    channel.name, since=0, limit=options.history_size, ttl=options.history_ttl
                )
            if page.epoch == channel.epoch or page.entries:
                entries = page.entries
        except BackplaneUnavailable:
            logger.warning("channel %s: can't fill a gap after %d", channel.name, since)
        finally:
            held = channel.held or []
            channel.held = None
            for entry in entries:
                self._deliver(channel, entry, fill=False)
            held.sort(key=lambda e: (e.epoch != channel.epoch, e.offset))
            for entry in held:
                self._deliver(channel, entry, fill=False)

    def on_event(self, channel_name: str, kind: str, member: str) -> None:
        channel = self._channels.get(channel_name)
        if channel is None:
            return
        frame = Outgoing(wire.encode_event(kind, channel_name, member))
        for session in [*channel.exact, *channel.batch.sessions]:
            session.push(frame, droppable=True)

    def on_resync(self) -> None:
        for channel in list(self._channels.values()):
            if channel.ready.done() and channel.held is None:
                channel.held = []
                self._spawn(self._fill(channel, channel.last))
        self._spawn(self._add_presence())

    async def _add_presence(self) -> None:
        for session in list(self.sessions):
            for name, channel in list(session.channels.items()):
                if channel.options.presence:
                    await self.backplane.presence_add(name, session.member, PRESENCE_TTL)

    async def _refresh_presence(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_TTL / 3)
            try:
                await self._add_presence()
            except BackplaneUnavailable:
                pass


async def _publishes_done(session: Session) -> None:
    """Wait until the session's pipelined publishes have replied."""
    last = session.last_publish
    if last is not None and not last.done():
        await asyncio.wait([last])


def _encode_entry(entry: Entry) -> str:
    return wire.encode_message(entry.channel, entry.epoch, entry.offset, entry.time, entry.data)
