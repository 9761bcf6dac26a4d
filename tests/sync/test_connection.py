"""The threaded ``Connection``: messages, threads, closing, keepalive, flow control."""

from __future__ import annotations

import os
import threading
import time

from tests.utils import MS
from ws13.exceptions import ConcurrencyError, ConnectionClosedError, ConnectionClosedOK
from ws13.protocol import CLOSED, OPEN
from ws13.sync.server import ServerConnection

from .helpers import TIMEOUT, RawServer, SyncTestCase, start_thread, wait_until


def uri(server: object) -> str:
    return f"ws://127.0.0.1:{server.port}/"  # type: ignore[attr-defined]


class SendRecvTests(SyncTestCase):
    def test_text_and_binary(self) -> None:
        client = self.connect(uri(self.start_server()))
        client.send("héllo")
        self.assertEqual(client.recv(timeout=TIMEOUT), "héllo")
        for message in (b"\x00\xff", bytearray(b"ba"), memoryview(b"mv")):
            client.send(message)
            self.assertEqual(client.recv(timeout=TIMEOUT), bytes(message))

    def test_empty_and_large_messages(self) -> None:
        client = self.connect(uri(self.start_server()))
        for message in ("", b"", "x" * 500_000, bytes(range(256)) * 3000):
            client.send(message)
            self.assertEqual(client.recv(timeout=TIMEOUT), message)

    def test_text_argument_and_decode(self) -> None:
        client = self.connect(uri(self.start_server()))
        client.send(b"as text", text=True)
        self.assertEqual(client.recv(timeout=TIMEOUT), "as text")
        client.send("as binary", text=False)
        self.assertEqual(client.recv(timeout=TIMEOUT), b"as binary")
        client.send("text")
        self.assertEqual(client.recv(timeout=TIMEOUT, decode=False), b"text")
        client.send(b"bytes")
        self.assertEqual(client.recv(timeout=TIMEOUT, decode=True), "bytes")

    def test_decode_true_on_invalid_utf8_fails_with_1007(self) -> None:
        client = self.connect(uri(self.start_server()))
        client.send(b"\xff\xfe")
        with self.assertRaises(ConnectionClosedError) as caught:
            client.recv(timeout=TIMEOUT, decode=True)
        self.assertEqual(caught.exception.sent.code, 1007)  # type: ignore[union-attr]

    def test_fragmented_send_and_recv(self) -> None:
        client = self.connect(uri(self.start_server()))
        client.send(["fra", "gmé", "nts"])
        self.assertEqual(client.recv(timeout=TIMEOUT), "fragménts")
        client.send(iter([b"a", bytearray(b"b"), memoryview(b"c")]))
        self.assertEqual(client.recv(timeout=TIMEOUT), b"abc")
        client.send([])  # nothing is sent
        client.send("after")
        self.assertEqual(client.recv(timeout=TIMEOUT), "after")

    def test_recv_streaming_yields_fragments_as_they_arrive(self) -> None:
        server = self.start_server(lambda c: c.wait_closed(TIMEOUT) and None)
        client = self.connect(uri(server))
        peer = self.next_handler()
        arrived = threading.Event()

        def pieces() -> object:
            yield "first "
            arrived.wait(TIMEOUT)
            yield "second"

        sender = start_thread(peer.send, pieces())
        stream = client.recv_streaming()
        self.assertEqual(next(stream), "first ")
        arrived.set()
        # A generator's end is an empty last frame.
        self.assertEqual(list(stream), ["second", ""])
        sender.join(TIMEOUT)
        peer.send(b"whole")
        self.assertEqual(list(client.recv_streaming(decode=True)), ["whole"])

    def test_recv_streaming_a_large_frame_read_by_read(self) -> None:
        server = self.start_server(lambda c: c.wait_closed(TIMEOUT) and None)
        client = self.connect(uri(server))
        peer = self.next_handler()
        payload = os.urandom(2**19)  # under max_size, 1 MiB
        stream = client.recv_streaming()
        # The flag is set as iteration starts, before the frame's first byte.
        sender = start_thread(lambda: time.sleep(0.1) or peer.send(payload))
        pieces = list(stream)
        sender.join(TIMEOUT)
        self.assertEqual(b"".join(pieces), payload)  # type: ignore[arg-type]
        self.assertGreater(len(pieces), 1)

    def test_order_is_kept(self) -> None:
        client = self.connect(uri(self.start_server()))
        for i in range(100):
            client.send(str(i))
        self.assertEqual(
            [client.recv(timeout=TIMEOUT) for _ in range(100)], [str(i) for i in range(100)]
        )

    def test_iteration_ends_on_normal_close(self) -> None:
        server = self.start_server(lambda c: [c.send(m) for m in ("a", "b")] and None)
        client = self.connect(uri(server))
        self.assertEqual(list(client), ["a", "b"])
        self.assertEqual(client.close_code, 1000)

    def test_iteration_raises_on_error_close(self) -> None:
        server = self.start_server(lambda c: c.close(4000, "bye"))
        client = self.connect(uri(server))
        with self.assertRaises(ConnectionClosedError) as caught:
            list(client)
        self.assertEqual((caught.exception.code, caught.exception.reason), (4000, "bye"))

    def test_recv_timeout(self) -> None:
        client = self.connect(uri(self.start_server()))
        with self.assertRaises(TimeoutError):
            client.recv(timeout=20 * MS)
        with self.assertRaises(TimeoutError):
            client.recv(timeout=0)
        client.send("still works")
        self.assertEqual(client.recv(timeout=TIMEOUT), "still works")

    def test_recv_timeout_mid_message_keeps_the_pieces(self) -> None:
        server = self.start_server(lambda c: c.wait_closed(TIMEOUT) and None)
        client = self.connect(uri(server))
        peer = self.next_handler()
        go_on = threading.Event()

        def pieces() -> object:
            yield b"head-"
            go_on.wait(TIMEOUT)
            yield b"tail"

        sender = start_thread(peer.send, pieces())
        wait_until(lambda: client._messages._items)
        with self.assertRaises(TimeoutError):
            client.recv(timeout=20 * MS)
        go_on.set()
        self.assertEqual(client.recv(timeout=TIMEOUT), b"head-tail")
        sender.join(TIMEOUT)

    def test_concurrent_recv(self) -> None:
        client = self.connect(uri(self.start_server()))
        blocked = start_thread(lambda: self.assertRaises(ConnectionClosedOK, client.recv))
        wait_until(lambda: client._messages._getting)
        with self.assertRaises(ConcurrencyError):
            client.recv(timeout=0)
        client.close()
        blocked.join(TIMEOUT)
        self.assertFalse(blocked.is_alive())

    def test_send_wrong_type(self) -> None:
        client = self.connect(uri(self.start_server()))
        with self.assertRaises(TypeError):
            client.send(42)  # type: ignore[arg-type]
        with self.assertRaises(TypeError):
            client.send({"a": 1})  # type: ignore[arg-type]
        with self.assertRaises(TypeError):
            client.send(["a", b"b"])  # type: ignore[list-item]
        # The mixed iterable failed after its first frame: the connection failed.
        with self.assertRaises(ConnectionClosedError):
            client.recv(timeout=TIMEOUT)

    def test_send_after_close(self) -> None:
        client = self.connect(uri(self.start_server()))
        client.close()
        with self.assertRaises(ConnectionClosedOK):
            client.send("late")
        with self.assertRaises(ConnectionClosedOK):
            client.ping()


class ThreadTests(SyncTestCase):
    def test_many_threads_sending_at_once(self) -> None:
        received: list[str | bytes] = []
        done = threading.Event()

        def collect(connection: ServerConnection) -> None:
            for message in connection:
                received.append(message)
                if len(received) == 8 * 50:
                    done.set()

        client = self.connect(uri(self.start_server(collect)))

        def sender(n: int) -> None:
            for i in range(50):
                if i % 3 == 0:
                    client.send([f"{n}:{i}:", "x" * 1000, ":end"])
                else:
                    client.send(f"{n}:{i}:" + "x" * (i * 500) + ":end")

        threads = [start_thread(sender, n) for n in range(8)]
        for thread in threads:
            thread.join(TIMEOUT)
        self.assertTrue(done.wait(TIMEOUT))
        for message in received:
            assert isinstance(message, str)
            n, i, body = message.split(":", 2)
            expected = "x" * 1000 if int(i) % 3 == 0 else "x" * (int(i) * 500)
            self.assertEqual(body, expected + ":end")
        # Each thread's messages arrive in the order it sent them.
        for n in range(8):
            order = [int(m.split(":")[1]) for m in received if m.startswith(f"{n}:")]  # type: ignore[union-attr]
            self.assertEqual(order, list(range(50)))

    def test_close_from_another_thread_wakes_recv(self) -> None:
        client = self.connect(uri(self.start_server()))
        outcome: list[BaseException] = []

        def receiver() -> None:
            try:
                client.recv()
            except BaseException as exc:
                outcome.append(exc)

        thread = start_thread(receiver)
        wait_until(lambda: client._messages._getting)
        client.close()
        thread.join(TIMEOUT)
        self.assertEqual([type(e) for e in outcome], [ConnectionClosedOK])
        self.assertEqual(client.state, CLOSED)

    def test_send_while_a_fragmented_send_is_under_way_waits(self) -> None:
        client = self.connect(uri(self.start_server()))
        release = threading.Event()

        def slow() -> object:
            yield "one-"
            release.wait(TIMEOUT)
            yield "two"

        fragmented = start_thread(client.send, slow())
        wait_until(lambda: client._message_lock.locked())
        whole = start_thread(client.send, "whole")
        whole.join(50 * MS)
        self.assertTrue(whole.is_alive())
        release.set()
        fragmented.join(TIMEOUT)
        whole.join(TIMEOUT)
        self.assertEqual(client.recv(timeout=TIMEOUT), "one-two")
        self.assertEqual(client.recv(timeout=TIMEOUT), "whole")

    def test_both_sides_send_large_messages_before_reading(self) -> None:
        # Each side's sender blocks on a full socket while the peer's reader
        # must keep reading, and answer the Pings flying both ways meanwhile.
        messages = [os.urandom(2**20) for _ in range(8)]

        def send_all_then_read(connection: ServerConnection) -> None:
            for message in messages:
                connection.send(message)
            for message in messages:
                assert connection.recv(timeout=TIMEOUT) == message

        server = self.start_server(send_all_then_read, ping_interval=5 * MS, max_size=None)
        client = self.connect(uri(server), ping_interval=5 * MS, max_size=None, compression=None)
        for message in messages:
            client.send(message)
        assert [client.recv(timeout=TIMEOUT) for _ in messages] == messages
        # The handler got them all too and returned: a normal close, not 1011.
        with self.assertRaises(ConnectionClosedOK):
            client.recv(timeout=TIMEOUT)


class CloseTests(SyncTestCase):
    def test_close_codes_are_none_while_open(self) -> None:
        client = self.connect(uri(self.start_server()))
        self.assertEqual((client.state, client.close_code, client.close_reason), (OPEN, None, None))

    def test_client_closes_with_code_and_reason(self) -> None:
        client = self.connect(uri(self.start_server()))
        peer = self.next_handler()
        client.close(4001, "done")
        self.assertEqual(client.close_code, 4001)  # the server's echo
        self.assertTrue(peer.wait_closed(TIMEOUT))
        self.assertEqual((peer.close_code, peer.close_reason), (4001, "done"))

    def test_context_manager_closes_with_1011_on_error(self) -> None:
        client = self.connect(uri(self.start_server()))
        peer = self.next_handler()
        with self.assertRaises(ValueError), client:
            raise ValueError
        self.assertTrue(peer.wait_closed(TIMEOUT))
        self.assertEqual(peer.close_code, 1011)

    def test_close_is_idempotent_and_checks_its_code(self) -> None:
        client = self.connect(uri(self.start_server()))
        with self.assertRaises(ValueError):
            client.close(999)
        self.assertEqual(client.state, OPEN)
        client.close()
        client.close()
        self.assertEqual(client.close_code, 1000)

    def test_messages_received_before_close_are_read_first(self) -> None:
        server = self.start_server(lambda c: c.send("last words"))
        client = self.connect(uri(server))
        self.assertTrue(client.wait_closed(TIMEOUT))
        self.assertEqual(client.recv(timeout=0), "last words")
        with self.assertRaises(ConnectionClosedOK):
            client.recv(timeout=0)

    def test_close_timeout_aborts_when_the_peer_never_answers(self) -> None:
        raw = RawServer()
        self.addCleanup(raw.close)
        client = self.connect(raw.uri, close_timeout=100 * MS, ping_interval=None)
        started = time.monotonic()
        client.close()
        self.assertLess(time.monotonic() - started, TIMEOUT)
        self.assertEqual(client.state, CLOSED)
        self.assertEqual(client.close_code, 1006)
        self.assertTrue(raw.disconnected.wait(TIMEOUT))

    def test_close_while_a_write_is_blocked(self) -> None:
        raw = RawServer(rcvbuf=4096)
        self.addCleanup(raw.close)
        raw.reading.clear()
        client = self.connect(raw.uri, close_timeout=200 * MS, ping_interval=None)
        failures: list[BaseException] = []

        def flood() -> None:
            try:
                while True:
                    client.send(b"x" * 2**20)
            except BaseException as exc:
                failures.append(exc)

        sender = start_thread(flood)
        wait_until(lambda: client._send_lock.locked())
        client.close()
        sender.join(TIMEOUT)
        self.assertEqual(client.state, CLOSED)
        self.assertEqual([type(e) for e in failures], [ConnectionClosedError])

    def test_close_timeout_must_be_positive(self) -> None:
        server = self.start_server()
        with self.assertRaises(ValueError):
            self.connect(uri(server), close_timeout=0)


class PingTests(SyncTestCase):
    def test_ping_event_and_latency(self) -> None:
        client = self.connect(uri(self.start_server()))
        self.assertEqual(client.latency, 0)
        self.assertTrue(client.ping().wait(TIMEOUT))
        self.assertTrue(client.ping("text").wait(TIMEOUT))
        self.assertTrue(client.ping(b"bytes").wait(TIMEOUT))
        self.assertGreater(client.latency, 0)

    def test_ping_with_the_same_data_twice(self) -> None:
        raw = RawServer()
        self.addCleanup(raw.close)
        client = self.connect(raw.uri, close_timeout=100 * MS, ping_interval=None)
        client.ping(b"same")
        with self.assertRaises(ConcurrencyError):
            client.ping(b"same")

    def test_ack_on_close(self) -> None:
        raw = RawServer()
        self.addCleanup(raw.close)
        client = self.connect(raw.uri, close_timeout=100 * MS, ping_interval=None)
        acked = client.ping(ack_on_close=True)
        plain = client.ping()
        client.close()
        self.assertTrue(acked.is_set())
        self.assertFalse(plain.is_set())

    def test_unsolicited_pong(self) -> None:
        client = self.connect(uri(self.start_server()))
        client.pong(b"heartbeat")
        client.pong("text")
        client.send("still open")
        self.assertEqual(client.recv(timeout=TIMEOUT), "still open")

    def test_keepalive_keeps_a_live_connection_open(self) -> None:
        client = self.connect(uri(self.start_server()), ping_interval=20 * MS, ping_timeout=TIMEOUT)
        wait_until(lambda: client.latency > 0)
        self.assertEqual(client.state, OPEN)

    def test_keepalive_timeout_fails_with_1011(self) -> None:
        raw = RawServer()
        self.addCleanup(raw.close)
        client = self.connect(
            raw.uri, ping_interval=30 * MS, ping_timeout=30 * MS, close_timeout=TIMEOUT
        )
        with self.assertRaises(ConnectionClosedError) as caught:
            client.recv(timeout=TIMEOUT)
        self.assertEqual(caught.exception.sent.code, 1011)  # type: ignore[union-attr]
        self.assertIsInstance(caught.exception.__cause__, TimeoutError)


class FlowControlTests(SyncTestCase):
    def test_reading_pauses_when_the_queue_is_full(self) -> None:
        count = 200

        def flood(connection: ServerConnection) -> None:
            for i in range(count):
                connection.send(str(i))
            connection.wait_closed(TIMEOUT)

        client = self.connect(uri(self.start_server(flood)), max_queue=4)
        wait_until(lambda: client._messages.paused)
        self.assertLessEqual(len(client._messages._items), 4 + 200)
        self.assertEqual(
            [client.recv(timeout=TIMEOUT) for _ in range(count)], [str(i) for i in range(count)]
        )

    def test_close_while_reading_is_paused(self) -> None:
        def flood(connection: ServerConnection) -> None:
            for i in range(100):
                connection.send(str(i))
            connection.wait_closed(TIMEOUT)

        client = self.connect(uri(self.start_server(flood)), max_queue=(2, 1))
        wait_until(lambda: client._messages.paused)
        client.close()
        self.assertEqual(client.close_code, 1000)

    def test_max_queue_must_be_positive(self) -> None:
        server = self.start_server()
        with self.assertRaises(ValueError):
            self.connect(uri(server), max_queue=0)


class AttributeTests(SyncTestCase):
    def test_attributes_on_both_sides(self) -> None:
        client = self.connect(uri(self.start_server(subprotocols=["chat"])), subprotocols=["chat"])
        peer = self.next_handler()
        self.assertEqual(client.subprotocol, "chat")
        self.assertEqual(peer.subprotocol, "chat")
        self.assertEqual(client.local_address, peer.remote_address)
        self.assertEqual(client.remote_address, peer.local_address)
        assert client.request is not None
        assert client.response is not None
        self.assertEqual(client.response.status_code, 101)
        assert peer.request is not None
        self.assertEqual(peer.request.path, "/")
