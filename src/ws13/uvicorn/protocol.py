"""``WebSocketProtocol``: ws13's core behind uvicorn, speaking ASGI WebSocket 2.4.

uvicorn's HTTP protocol (h11 or httptools) sees the upgrade request, builds
``WebSocketProtocol(config=..., server_state=..., app_state=...)``, calls
``connection_made(transport)``, hands it the transport and replays the
request through ``data_received()``. From there the bytes go into ws13's
sans-I/O ``ServerProtocol`` (``receive()`` / ``send_message()``, with the C
speedups), messages go to the app's ``receive()`` as ASGI events and the
app's ``send()`` events go out as frames.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)

from ..asyncio.sending import write_buffers
from ..exceptions import InvalidState
from ..frames import CloseCode, Frame, Opcode
from ..http11 import Request, Response
from ..protocol import CLOSED, OPEN, SEND_EOF
from ..server import ServerProtocol

if TYPE_CHECKING:
    from ..metrics import Metrics
from .handshake import (
    CLOSE_TIMEOUT,
    Settings,
    accept_response,
    denial_response,
    make_scope,
    plain_response,
)

__all__ = ["WebSocketProtocol", "with_metrics"]

# Where the ASGI conversation stands (the app's side; the core has its own state).
_HANDSHAKE = 0  # waiting for websocket.accept, .close or .http.response.start
_OPEN = 1  # accepted: websocket.send and websocket.close
_DENYING = 2  # websocket.http.response.start sent: body parts follow
_DONE = 3  # the app closed, denied or was refused: nothing more to send
_GONE = 4  # the server shut the connection down: sends raise ClientDisconnected

_RECEIVE = "websocket.receive"


class WebSocketProtocol(asyncio.Protocol):
    """ws13 as uvicorn's WebSocket protocol.

    Run ``uvicorn app:app --ws ws13.uvicorn:WebSocketProtocol``.

    Works behind both of uvicorn's HTTP protocols (``--http h11`` and
    ``--http httptools``), on asyncio and uvloop. Tested with uvicorn 0.55;
    the import path for ``--ws`` needs a uvicorn whose ``--ws`` takes one
    (0.55 does); with older ones pass the class: ``uvicorn.run(app,
    ws=WebSocketProtocol)``. The constructor takes what uvicorn passes
    (``config``, ``server_state``, ``app_state``, the last one optional for
    uvicorn versions that don't pass it).

    uvicorn's settings: ``ws_max_size`` (16 MiB: a larger message closes
    with 1009), ``ws_max_queue`` (32 messages wait for ``receive()``, then
    reading pauses until the app has taken the queue down to a quarter),
    ``ws_ping_interval`` / ``ws_ping_timeout`` (20 s each: an unanswered
    ping closes with 1011), ``ws_per_message_deflate`` (on, with uvicorn's
    parameters). A ``send()`` waits while the transport's write buffer is
    above its high-water mark (asyncio's and uvloop's 64 KiB).

    See docs/uvicorn.md for how it differs from uvicorn's own protocols.
    """

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any] | None = None,
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        settings = Settings.of(config)
        self.settings = settings
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_running_loop()
        self.logger = settings.logger
        self.app_state: dict[str, Any] = {} if app_state is None else app_state
        self.server_state = server_state
        self.protocol = ServerProtocol(
            extensions=settings.extensions,
            server_header=None,  # uvicorn's default headers carry its Server header
            max_size=settings.max_size,
            logger=settings.logger,
        )
        self.transport: asyncio.Transport | None = None
        self.scope: dict[str, Any] = {}
        self.phase = _HANDSHAKE
        # The core's 101 for the request, held until the app accepts.
        self._response: Response | None = None
        # websocket.http.response.start, while its body arrives.
        self._denial: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self._denial_body: list[bytes] = []
        # Events for the app's receive(), and the future of a receive()
        # waiting for one; the disconnect event once queued (receive()
        # returns it again after that rather than hang).
        self._queue: deque[dict[str, Any]] = deque()
        self._waiter: asyncio.Future[dict[str, Any]] | None = None
        self._disconnect: dict[str, Any] | None = None
        max_queue = settings.max_queue
        # A float so that "no limit" is infinity: one comparison per message.
        self._max_queue: float = math.inf if max_queue is None else max_queue
        self._resume_at = 0 if max_queue is None else max_queue // 4
        self._read_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._lost = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None
        #: ``ws13.metrics.Metrics`` this connection reports to, if any (see
        #: ``with_metrics()``); and how many times the write buffer filled.
        self.metrics: Metrics | None = self.metrics_class_default or settings.metrics
        self.write_pauses = 0

    #: The ``Metrics`` of the classes ``with_metrics()`` makes.
    metrics_class_default: Metrics | None = None

    # -- what ws13.metrics reads (its Metered protocol) ------------------------

    @property
    def bytes_received(self) -> int:
        return self.protocol.bytes_received

    @property
    def bytes_sent(self) -> int:
        return self.protocol.bytes_sent

    @property
    def messages_received(self) -> int:
        return self.protocol.messages_received

    @property
    def messages_sent(self) -> int:
        return self.protocol.messages_sent

    def counters(self) -> tuple[int, int, int, int, int]:
        """The traffic counters in one call, as ``ws13.metrics`` reads them."""
        protocol = self.protocol
        return (
            protocol.bytes_received,
            protocol.bytes_sent,
            protocol.messages_received,
            protocol.messages_sent,
            self.write_pauses,
        )

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports don't subclass asyncio's.
        self.transport = cast(asyncio.Transport, transport)
        self.server_state.connections.add(self)
        if self.metrics is not None:
            self.metrics.connection_opened(self)

    def data_received(self, data: bytes) -> None:
        events, writes = self.protocol.receive(data)
        if writes:
            self._write(writes)
        for event in events:
            kind = type(event)
            if kind is bytes:
                message: dict[str, Any] = {"type": _RECEIVE, "bytes": event}
            elif kind is str:
                message = {"type": _RECEIVE, "text": event}
            else:
                self._handle_event(event)
                continue
            if self.phase is not _OPEN:
                # The app sent websocket.close: what arrives until the
                # client's Close is dropped, as uvicorn's protocols do.
                continue
            # _put() inlined: this runs once per message.
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                self._waiter = None
                waiter.set_result(message)
            else:
                queue = self._queue
                queue.append(message)
                if len(queue) >= self._max_queue and not self._read_paused:
                    self._pause_reading()
        if writes:
            self._check_closing()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._flush()
        self._check_closing()
        return None

    def pause_writing(self) -> None:
        self._write_paused = True
        self.write_pauses += 1

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        protocol = self.protocol
        if protocol.state is not CLOSED:
            protocol.receive_eof()
            protocol.data_to_send()
        # ASGI: "1005 if no code was received"; 1006 when the handshake
        # never completed. The same codes as uvicorn's own protocols.
        self._put_disconnect(CloseCode.NO_STATUS_RCVD if self.phase is _OPEN else 1006, "")
        self.server_state.connections.discard(self)
        self._stop_keepalive()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        # asyncio never calls resume_writing() on a transport lost while paused.
        self.resume_writing()
        if self.metrics is not None:
            self.metrics.connection_closed(self)

    # -- uvicorn -------------------------------------------------------------

    def shutdown(self) -> None:
        """uvicorn is stopping: close with 1012 (an open connection) or 500 (in the handshake).

        An open connection waits for the client's Close, up to 10 s, like
        any closing handshake; uvicorn waits for its connections to go
        (``--timeout-graceful-shutdown`` bounds that).
        """
        self._stop_keepalive()
        transport = self.transport
        if transport is None:
            return
        if self.phase is _OPEN and self.protocol.state is OPEN:
            self.phase = _GONE
            self._put_disconnect(CloseCode.SERVICE_RESTART, "")
            self.protocol.send_close(CloseCode.SERVICE_RESTART)
            self._flush()
            self._resume_reading()  # the client's Close must be read
            self._start_close_timer()
        elif self.phase is _HANDSHAKE and self._response is not None:
            self._refuse(500)
            self.phase = _GONE
        elif not self.protocol.close_expected():
            transport.close()

    # -- the ASGI app --------------------------------------------------------

    async def run_asgi(self) -> None:
        failed = False
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            return
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            failed = True
        else:
            if result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self._lost:
            return
        if self.phase is _HANDSHAKE:
            if not failed:
                self.logger.error("ASGI callable returned without completing handshake.")
            self._refuse(500)
        elif self.phase is _OPEN and self.protocol.state is OPEN:
            # Closed properly (uvicorn's protocols drop TCP without a Close).
            self.phase = _DONE
            self.protocol.send_close(
                CloseCode.INTERNAL_ERROR if failed else CloseCode.NORMAL_CLOSURE
            )
            self._flush()
            self._resume_reading()
            self._start_close_timer()
        elif self.phase is _DENYING:
            # The app stopped in the middle of its denial response.
            self.phase = _DONE
            assert self.transport is not None
            self.transport.close()

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: websocket.connect, .receive, then .disconnect (repeated)."""
        queue = self._queue
        if queue:
            message = queue.popleft()
            if self._read_paused and len(queue) <= self._resume_at:
                self._resume_reading()
            return message
        if self._disconnect is not None:
            return self._disconnect
        # No try/finally to reset _waiter if cancelled: a cancelled waiter
        # is done, and _put() skips done waiters.
        waiter: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self._waiter = waiter
        return await waiter

    async def send(self, message: dict[str, Any]) -> None:
        """ASGI ``send``; raises ClientDisconnected (an OSError) once the client is gone."""
        kind = message["type"]
        if kind == "websocket.send" and self.phase is _OPEN:
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
                if data is None:
                    raise TypeError("websocket.send needs 'bytes' or 'text'")
            try:
                buffers = self.protocol.send_message(data)
            except InvalidState:
                raise ClientDisconnected() from None
            transport = self.transport
            if len(buffers) == 1 and transport is not None:
                transport.write(buffers[0])
            else:
                self._write_buffers(buffers)
            if self._write_paused:
                await self._drain()
            return
        if self._lost:
            raise ClientDisconnected()
        if self.phase is _HANDSHAKE:
            self._send_handshake(kind, message)
        elif self.phase is _OPEN:
            if kind != "websocket.close":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.send' or 'websocket.close', "
                    f"but got '{kind}'."
                )
            self._close(message.get("code", CloseCode.NORMAL_CLOSURE), message.get("reason") or "")
        elif self.phase is _DENYING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'."
                )
            self._denial_body.append(message.get("body", b""))
            if not message.get("more_body", False):
                self._finish_denial()
        elif self.phase is _GONE:
            raise ClientDisconnected()
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}', after sending 'websocket.close'."
            )
        if self._write_paused:
            await self._drain()

    def _send_handshake(self, kind: str, message: dict[str, Any]) -> None:
        """The app's answer to websocket.connect."""
        if kind == "websocket.accept":
            assert self._response is not None
            self.logger.info(
                '%s - "WebSocket %s" [accepted]',
                get_client_addr(self.scope),  # type: ignore[arg-type]
                get_path_with_query_string(self.scope),  # type: ignore[arg-type]
            )
            response = accept_response(self._response, self.server_state.default_headers, message)
            self._response = None
            self.phase = _OPEN
            self.protocol.send_response(response)
            # Frames the client sent right after its request come out now.
            self._write(self.protocol.data_to_send())
            for event in self.protocol.events_received():
                self._handle_received(event)
            self._start_keepalive()
        elif kind == "websocket.close":
            self._put_disconnect(1006, "")
            self._refuse(403)
        elif kind == "websocket.http.response.start":
            status = message["status"]
            if not 100 <= status < 600:
                raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
            self._log_status(status)
            self.phase = _DENYING
            self._denial = (status, list(message.get("headers") or ()))
        else:
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' "
                f"or 'websocket.http.response.start' but got '{kind}'."
            )

    def _finish_denial(self) -> None:
        assert self._denial is not None
        status, headers = self._denial
        body = b"".join(self._denial_body)
        self._denial_body = []
        self.phase = _DONE
        self._put_disconnect(1006, "")
        self.protocol.send_response(denial_response(status, headers, body))
        self._flush()

    def _close(self, code: int, reason: str) -> None:
        """The app's websocket.close on an open connection."""
        self.phase = _DONE
        if self.protocol.state is not OPEN:
            return  # the client's Close crossed ours: its disconnect is queued
        self._put_disconnect(code, reason)
        self.protocol.send_close(code, reason)
        self._flush()
        # A full queue may have paused reading: the client's Close must be read.
        self._resume_reading()
        self._start_close_timer()

    # -- the handshake -------------------------------------------------------

    def _handle_event(self, event: object) -> None:
        """An event other than a message: the request or a control frame."""
        if isinstance(event, Request):
            self._handle_request(event)
        elif isinstance(event, Frame):
            if event.opcode is Opcode.PONG:
                if event.data == self._ping_payload:
                    self._pong_received()
            elif event.opcode is Opcode.CLOSE:
                close = self.protocol.close_rcvd
                if close is not None:
                    self._put_disconnect(close.code, close.reason)

    def _handle_received(self, event: object) -> None:
        """One event from the core, outside ``data_received()``'s hot loop."""
        kind = type(event)
        if kind is bytes:
            self._put({"type": _RECEIVE, "bytes": event})
        elif kind is str:
            self._put({"type": _RECEIVE, "text": event})
        else:
            self._handle_event(event)

    def _handle_request(self, request: Request) -> None:
        transport = self.transport
        assert transport is not None
        response = self.protocol.accept(request)
        if self.protocol.handshake_exc is not None:
            # Not a valid upgrade (the core says why, with a 4xx): the app
            # never sees it. uvicorn's protocols log this at INFO too.
            self.logger.info("opening handshake failed: %s", self.protocol.handshake_exc)
            self.phase = _DONE
            self.protocol.send_response(response)
            self._flush()
            return
        self._response = response
        self.scope = make_scope(
            request,
            self.settings,
            "wss" if is_ssl(transport) else "ws",
            get_local_addr(transport),
            get_remote_addr(transport),
            self.app_state,
        )
        self._put({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        tasks = self.server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _refuse(self, status: int) -> None:
        """Answer the upgrade with an empty ``status`` response (403 or 500) and close."""
        self._log_status(status)
        self._response = None
        self.phase = _DONE
        self.protocol.send_response(plain_response(status, self.server_state.default_headers))
        self._flush()

    def _log_status(self, status: int) -> None:
        self.logger.info(
            '%s - "WebSocket %s" %d',
            get_client_addr(self.scope),  # type: ignore[arg-type]
            get_path_with_query_string(self.scope),  # type: ignore[arg-type]
            status,
        )

    # -- the queue of events for receive() -----------------------------------

    def _put(self, message: dict[str, Any]) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._waiter = None
            waiter.set_result(message)
        else:
            self._queue.append(message)
            if len(self._queue) >= self._max_queue and not self._read_paused:
                self._pause_reading()

    def _put_disconnect(self, code: int, reason: str) -> None:
        """Queue websocket.disconnect once: the first cause of the close wins."""
        if self._disconnect is None:
            self._disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self._put(self._disconnect)

    def _check_closing(self) -> None:
        """After the core wrote something: a Close received or a failure (1002, 1007, 1009...).

        The phase stays OPEN: the app's next send raises ClientDisconnected.
        """
        protocol = self.protocol
        if self._disconnect is None and protocol.state is not OPEN and self.phase is _OPEN:
            close = protocol.close_rcvd or protocol.close_sent
            if close is not None:
                self._put_disconnect(close.code, close.reason)
        elif self.phase is _HANDSHAKE and self._response is None:
            # A request the core couldn't parse: it answered 4xx and closes.
            if protocol.handshake_exc is not None:
                self.logger.info("opening handshake failed: %s", protocol.handshake_exc)
            self.phase = _DONE

    def _pause_reading(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._read_paused = True
            transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    # -- writing -------------------------------------------------------------

    def _flush(self) -> None:
        self._write(self.protocol.data_to_send())

    def _write(self, writes: list[bytes]) -> None:
        """Write what the core gave, in order; close the transport at SEND_EOF."""
        transport = self.transport
        if transport is None or not writes:
            return
        end = writes.index(SEND_EOF) if SEND_EOF in writes else len(writes)
        if end:
            self._write_buffers(writes[:end])
        if end < len(writes):
            # The server closes TCP first (RFC 6455 section 7.1.1);
            # close() writes what is buffered before closing the socket.
            transport.close()

    def _write_buffers(self, buffers: list[bytes]) -> None:
        transport = self.transport
        if transport is not None:
            write_buffers(transport, buffers)

    async def _drain(self) -> None:
        """Wait until the write buffer is below its low-water mark (or the client is gone)."""
        if self._lost:
            return
        if self._drain_waiter is None or self._drain_waiter.done():
            self._drain_waiter = self.loop.create_future()
        await asyncio.shield(self._drain_waiter)

    def _start_close_timer(self) -> None:
        if self._close_timer is None and not self._lost:
            self._close_timer = self.loop.call_later(CLOSE_TIMEOUT, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if self.transport is not None:
            self.transport.abort()

    # -- keepalive -----------------------------------------------------------

    def _start_keepalive(self) -> None:
        interval = self.settings.ping_interval
        if interval is not None:
            self._ping_timer = self.loop.call_later(interval, self._send_ping)

    def _stop_keepalive(self) -> None:
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._pong_timer = None
        self._ping_payload = None

    def _send_ping(self) -> None:
        self._ping_timer = None
        if self.protocol.state is not OPEN:
            return
        # A random payload tells this ping's pong from stale or unsolicited ones.
        self._ping_payload = os.urandom(4)
        self.protocol.send_ping(self._ping_payload)
        self._flush()
        timeout = self.settings.ping_timeout
        if timeout is None:
            self._start_keepalive()
        else:
            self._pong_timer = self.loop.call_later(timeout, self._ping_timed_out)

    def _pong_received(self) -> None:
        self._ping_payload = None
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
            self._start_keepalive()

    def _ping_timed_out(self) -> None:
        self._pong_timer = None
        self._ping_payload = None
        if self.protocol.state is not OPEN:
            return
        if self._read_paused:
            # The pong may wait unread behind messages the app hasn't taken:
            # the app is the slow side, not the client. Ping again later.
            self._start_keepalive()
            return
        if self.metrics is not None:
            self.metrics.keepalive_timeout()
        self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        self._flush()
        self._check_closing()


def with_metrics(metrics: Metrics) -> type[WebSocketProtocol]:
    """A ``WebSocketProtocol`` whose connections report to ``metrics`` (``ws13[metrics]``).

    ``uvicorn.run(app, ws=with_metrics(metrics))``, or for the command line
    a module-level ``Protocol = with_metrics(metrics)`` and ``--ws
    module:Protocol``; serve ``metrics.asgi_app()`` on a route of the app
    for Prometheus. The metrics are those of ``ws13 serve --metrics``
    (docs/metrics.md); counting costs nothing per message (the core counts).
    Setting ``config.ws13_metrics`` on uvicorn's ``Config`` does the same.
    """
    return type("WebSocketProtocol", (WebSocketProtocol,), {"metrics_class_default": metrics})
