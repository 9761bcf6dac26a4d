"""Prometheus metrics for ws13's servers and hub (``pip install 'ws13[metrics]'``).

One ``Metrics`` object holds the instruments; give it to ``serve(...,
metrics=metrics)`` and ``Hub(..., metrics=metrics)``, and expose it with
``metrics.mount()`` (a ``process_request`` answering ``GET /metrics``) or
``metrics.asgi_app()``. ``ws13 serve --metrics`` does all three.

Nothing is counted per message here. The core counts bytes and messages
as it parses and frames them (``Protocol.bytes_received``,
``messages_sent``...: C integers with the speedups, so counting allocates
nothing), each connection adds what it writes around the core and its
write pauses; the I/O layer calls this module once when a connection opens
and once when it is lost. A scrape sums the counters
of the live connections and adds those folded in from the closed ones, so its
cost grows with the number of open connections (about 7,300 instructions
each), not with traffic. The hub's figures are read from ``Hub.statistics()`` at the
same time. Every metric and label is listed in ``docs/metrics.md``.

Another I/O layer (a uvicorn protocol, the hub in an ASGI app) reports the
same metrics by calling the four hooks: ``connection_opened()``,
``connection_closed()``, ``open_timeout()`` and ``keepalive_timeout()``, with
connections that have the counters of ``Metered``.
"""

from __future__ import annotations

import collections
import threading  # noqa: TID251 - a scrape may run in prometheus_client's own thread
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from .frames import CloseCode
from .headers import Headers
from .http11 import Request, Response
from .protocol import CLOSED, CLOSING, CONNECTING, OPEN
from .protocol import Protocol as Core
from .version import __version__

try:
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder, make_asgi_app
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        Metric,
        SummaryMetricFamily,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("ws13 metrics need prometheus_client: pip install 'ws13[metrics]'") from exc

if TYPE_CHECKING:
    from .hub.server import Hub

__all__ = ["DEFAULT_PATH", "Metered", "Metrics", "close_code_label"]

#: Where ``Metrics.mount()`` serves the metrics unless told otherwise.
DEFAULT_PATH = "/metrics"

#: The labels of ``ws13_connections``, by the core's state.
_STATES = {CONNECTING: "connecting", OPEN: "open", CLOSING: "closing", CLOSED: "closed"}
_KNOWN_CODES = frozenset(int(code) for code in CloseCode)
#: ``close_code_label()`` of the usual codes, looked up once per closed connection.
_LABELS: dict[int | None, str] = {None: "1006", **{code: str(code) for code in _KNOWN_CODES}}


class Metered(Protocol):
    """What a connection must have to be counted: ``ws13.asyncio``'s ``Connection`` has it."""

    @property
    def bytes_received(self) -> int: ...

    @property
    def bytes_sent(self) -> int: ...

    @property
    def messages_received(self) -> int: ...

    @property
    def messages_sent(self) -> int: ...

    @property
    def write_pauses(self) -> int: ...

    @property
    def protocol(self) -> Core: ...

    def counters(self) -> tuple[int, int, int, int, int]:
        """``(bytes_received, bytes_sent, messages_received, messages_sent,
        write_pauses)`` in one call: what ``Metrics`` reads."""
        ...


def close_code_label(code: int | None) -> str:
    """The ``code`` label of a close: few values, whatever peers send.

    The codes of RFC 6455 and the IANA registry (1000-1015) are themselves;
    ``3xxx`` and ``4xxx`` stand for the registered and private-use ranges;
    ``1006`` means no Close frame (the TCP connection ended without one);
    anything else (a code a peer may not send) is ``other``.
    """
    if code is None:
        return "1006"
    if code in _KNOWN_CODES:
        return str(code)
    if 3000 <= code < 4000:
        return "3xxx"
    if 4000 <= code < 5000:
        return "4xxx"
    return "other"


def _outcome(status: int) -> str:
    if status == 101:
        return "accepted"
    return "rejected" if status >= 400 else "http"


class _Totals:
    """What the closed connections counted, plus the events counted as they happen."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "closes_received",
        "closes_sent",
        "connections",
        "handshakes",
        "keepalive_timeouts",
        "messages_received",
        "messages_sent",
        "open_timeouts",
        "write_pauses",
    )

    def __init__(self) -> None:
        self.connections = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.messages_received = 0
        self.messages_sent = 0
        self.write_pauses = 0
        self.open_timeouts = 0
        self.keepalive_timeouts = 0
        self.handshakes: collections.Counter[int] = collections.Counter()
        self.closes_sent: collections.Counter[str] = collections.Counter()
        self.closes_received: collections.Counter[str] = collections.Counter()

    def copy(self) -> _Totals:
        other = _Totals()
        for name in self.__slots__:
            value = getattr(self, name)
            setattr(other, name, value.copy() if isinstance(value, collections.Counter) else value)
        return other

    def add(self, connection: Metered, response: Response | None) -> None:
        """Add a connection's counters and handshake (not its close codes)."""
        bytes_received, bytes_sent, messages_received, messages_sent, write_pauses = (
            connection.counters()
        )
        self.bytes_received += bytes_received
        self.bytes_sent += bytes_sent
        self.messages_received += messages_received
        self.messages_sent += messages_sent
        self.write_pauses += write_pauses
        if response is not None:
            self.handshakes[response.status_code] += 1


class Metrics:
    """The instruments of ws13's servers and hub, registered in a Prometheus registry.

    Args:
        registry: where to register them: by default a new
            ``CollectorRegistry`` of their own (``self.registry``); pass
            ``prometheus_client.REGISTRY`` to add them to the global one,
            beside the process and Python metrics prometheus_client puts
            there. A registry takes one ``Metrics``: a second raises
            ValueError (duplicated timeseries).

    Share one ``Metrics`` between every server and hub of a process: they
    add up. Its hooks may be called from the event loop while a scrape runs
    in another thread (``prometheus_client.start_http_server``): a lock
    keeps each scrape consistent, and counters never go down.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        self._lock = threading.Lock()
        self._live: set[Metered] = set()
        self._totals = _Totals()
        self._hubs: weakref.WeakSet[Hub] = weakref.WeakSet()
        self.registry.register(self)

    # -- the hooks of the I/O layers ------------------------------------------

    def connection_opened(self, connection: Metered) -> None:
        """A connection was accepted (TCP); its counters count from now on."""
        with self._lock:
            self._live.add(connection)
            self._totals.connections += 1

    def connection_closed(self, connection: Metered) -> None:
        """A connection was lost: keep its counts, its handshake and its close codes.

        Call it once the connection can't count anything more (after the
        transport's ``connection_lost``); a second call does nothing.
        """
        # Once per connection: lean, no call that can be avoided.
        protocol = connection.protocol
        response = getattr(protocol, "response", None)
        sent = received = None
        if response is not None and response.status_code == 101:
            close = protocol.close_sent
            code = None if close is None else close.code
            sent = _LABELS.get(code) or close_code_label(code)
            close = protocol.close_rcvd
            code = None if close is None else close.code
            received = _LABELS.get(code) or close_code_label(code)
        with self._lock:
            live = self._live
            if connection not in live:
                return
            live.remove(connection)
            totals = self._totals
            totals.add(connection, response)
            if sent is not None and received is not None:
                totals.closes_sent[sent] += 1
                totals.closes_received[received] += 1

    def open_timeout(self) -> None:
        """A connection was aborted: no handshake within ``open_timeout``."""
        with self._lock:
            self._totals.open_timeouts += 1

    def keepalive_timeout(self) -> None:
        """A keepalive ping got no pong within ``ping_timeout``: the connection closes (1011)."""
        with self._lock:
            self._totals.keepalive_timeouts += 1

    def add_hub(self, hub: Hub) -> None:
        """Report ``hub``'s channels, subscribers and fan-out (``Hub(metrics=...)`` calls it).

        Only a weak reference is kept: a hub that goes away stops being reported.
        """
        with self._lock:
            self._hubs.add(hub)

    # -- exposing them -------------------------------------------------------

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics and their content type, for an ``Accept`` header.

        Prometheus' text format 0.0.4 (``text/plain; version=0.0.4``) unless
        ``accept`` asks for OpenMetrics, as Prometheus itself does.
        """
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def response(self, request: Request) -> Response:
        """An HTTP 200 response with the metrics (``Cache-Control: no-store``)."""
        body, content_type = self.exposition(request.headers.get("Accept"))
        headers = Headers()
        headers["Content-Type"] = content_type
        headers["Content-Length"] = str(len(body))
        headers["Cache-Control"] = "no-store"
        return Response(200, "OK", headers, body)

    def mount(
        self,
        process_request: Callable[[Any, Request], Any] | None = None,
        *,
        path: str = DEFAULT_PATH,
    ) -> Callable[[Any, Request], Awaitable[Response | None]]:
        """A ``process_request`` for ``serve()`` answering ``GET path`` with the metrics.

        Other requests go to ``process_request`` (sync or async) when given,
        else on to the WebSocket handshake. ``path`` is compared without the
        query string. A WebSocket upgrade to ``path`` gets the metrics too
        (as plain HTTP): the path is theirs.
        """
        if not path.startswith("/"):
            raise ValueError(f"the metrics path must start with /, not {path!r}")

        async def mounted(connection: Any, request: Request) -> Response | None:
            if request.path.partition("?")[0] == path:
                return self.response(request)
            if process_request is None:
                return None
            result = process_request(connection, request)
            if isinstance(result, Awaitable):
                result = await result
            assert result is None or isinstance(result, Response)
            return result

        return mounted

    def asgi_app(self) -> Callable[..., Awaitable[None]]:
        """An ASGI app serving the metrics (mount it at ``/metrics`` in Starlette or FastAPI)."""
        app: Callable[..., Awaitable[None]] = make_asgi_app(registry=self.registry)
        return app

    # -- prometheus_client's Collector interface -----------------------------

    def describe(self) -> Iterable[Metric]:
        # What collect() yields, without reading anything: the registry calls
        # this once at registration to check for duplicated names.
        return list(self._families(_Totals(), {}, []))

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            totals = self._totals.copy()
            live = list(self._live)
            hubs = list(self._hubs)
        states = dict.fromkeys(_STATES.values(), 0)
        for connection in live:
            protocol = connection.protocol
            totals.add(connection, getattr(protocol, "response", None))
            states[_STATES[protocol.state]] += 1
        return list(self._families(totals, states, hubs))

    def _families(
        self, totals: _Totals, states: dict[str, int], hubs: list[Hub]
    ) -> Iterator[Metric]:
        from ._accel import USING_SPEEDUPS

        info = GaugeMetricFamily(
            "ws13_info",
            "ws13's version and whether its C speedups run",
            labels=["version", "speedups"],
        )
        info.add_metric([__version__, "c" if USING_SPEEDUPS else "python"], 1)
        yield info
        gauge = GaugeMetricFamily(
            "ws13_connections",
            "Connections open now, by the WebSocket state of each",
            labels=["state"],
        )
        for state, count in states.items():
            gauge.add_metric([state], count)
        yield gauge
        yield _counter("ws13_connections_accepted", "TCP connections accepted", totals.connections)
        handshakes = CounterMetricFamily(
            "ws13_handshakes",
            "Opening handshakes answered, by outcome (accepted, rejected, http) and HTTP status",
            labels=["outcome", "status"],
        )
        for status, count in sorted(totals.handshakes.items()):
            handshakes.add_metric([_outcome(status), str(status)], count)
        yield handshakes
        yield _counter(
            "ws13_open_timeouts",
            "Connections aborted for not completing the opening handshake within open_timeout",
            totals.open_timeouts,
        )
        yield _counter(
            "ws13_received_messages", "Whole messages received", totals.messages_received
        )
        yield _counter("ws13_sent_messages", "Whole messages sent", totals.messages_sent)
        yield _counter(
            "ws13_received_bytes",
            "Bytes read from connections: handshakes and frame headers included",
            totals.bytes_received,
        )
        yield _counter(
            "ws13_sent_bytes",
            "Bytes written to connections: handshakes and frame headers included",
            totals.bytes_sent,
        )
        for direction, codes in (
            ("sent", totals.closes_sent),
            ("received", totals.closes_received),
        ):
            closes = CounterMetricFamily(
                f"ws13_closes_{direction}",
                f"WebSocket connections ended, by the close code {direction} "
                "(1006: no Close frame; 3xxx, 4xxx: ranges)",
                labels=["code"],
            )
            for code, count in sorted(codes.items()):
                closes.add_metric([code], count)
            yield closes
        yield _counter(
            "ws13_keepalive_timeouts",
            "Keepalive pings without a pong within ping_timeout (closed with 1011)",
            totals.keepalive_timeouts,
        )
        yield _counter(
            "ws13_write_pauses",
            "Times a connection's write buffer went above write_limit",
            totals.write_pauses,
        )
        yield from _hub_families(hubs)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _hub_families(hubs: list[Hub]) -> Iterator[Metric]:
    """The hub's metrics: sums over ``hubs`` (usually one); none without a hub."""
    if not hubs:
        return
    figures: collections.Counter[str] = collections.Counter()
    up = 1
    reconnections = 0
    for hub in hubs:
        figures.update(hub.statistics())
        up &= bool(hub.backplane.healthy)
        reconnections += int(hub.backplane.status().get("reconnections", 0))
    gauges = (
        ("ws13_hub_connections", "Hub connections (sessions) open now", "connections"),
        ("ws13_hub_channels", "Channels with a subscriber on this node", "channels"),
        ("ws13_hub_subscribers", "Subscriptions on this node, over every channel", "subscribers"),
        ("ws13_hub_queued_frames", "Frames waiting in the sessions' outbound queues", "queued"),
    )
    for name, documentation, key in gauges:
        yield GaugeMetricFamily(name, documentation, value=figures[key])
    counters = (
        ("ws13_hub_publishes", "Messages published (by clients and by Hub.publish)", "published"),
        ("ws13_hub_deliveries", "Messages pushed to live subscribers on this node", "delivered"),
        (
            "ws13_hub_slow_consumer_drops",
            "Queued pushes dropped for slow subscribers (policy drop-oldest)",
            "dropped",
        ),
        (
            "ws13_hub_slow_consumer_closes",
            "Connections closed with 1013 for slow reading (policy disconnect)",
            "slow_disconnects",
        ),
        ("ws13_hub_errors", "Hub requests that failed with an internal error", "errors"),
    )
    for name, documentation, key in counters:
        yield _counter(name, documentation, figures[key])
    yield GaugeMetricFamily(
        "ws13_hub_backplane_up",
        "1 while the backplane is reachable, 0 while degraded",
        value=up,
    )
    yield _counter(
        "ws13_hub_backplane_reconnections", "Times the backplane reconnected", reconnections
    )
    yield SummaryMetricFamily(
        "ws13_hub_backplane_lag_seconds",
        "Time from a message's publication (on any node) to its arrival on this node",
        count_value=figures["backplane_messages"],
        sum_value=figures["backplane_lag_ms"] / 1000,
    )
