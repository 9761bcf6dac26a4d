"""permessage-deflate (RFC 7692): negotiation, compression, limits. Bytes in, bytes out."""

from __future__ import annotations

import os
import zlib

import pytest

from ws13.client import ClientProtocol
from ws13.exceptions import NegotiationError, PayloadTooBig, ProtocolError
from ws13.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
    max_compressed_size,
)
from ws13.frames import Close, CloseCode, Frame, Opcode
from ws13.headers import parse_extension_list
from ws13.protocol import CLIENT, OPEN, SERVER, Protocol
from ws13.server import ServerProtocol
from ws13.uri import parse_uri

MASK = b"\x01\x02\x03\x04"


def pair(**kwargs: object) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    """A sender and a receiver extension with matching parameters."""
    settings = {
        "remote_no_context_takeover": False,
        "local_no_context_takeover": False,
        "remote_max_window_bits": 15,
        "local_max_window_bits": 15,
        **kwargs,
    }
    return PerMessageDeflate(**settings), PerMessageDeflate(**settings)  # type: ignore[arg-type]


def roundtrip(sender: PerMessageDeflate, receiver: PerMessageDeflate, frame: Frame) -> Frame:
    return receiver.decode(sender.encode(frame), max_size=None)


class TestSection7_2_1Compression:
    def test_rfc_example_hello(self) -> None:
        # Section 7.2.3.1: "Hello" compressed is c2 f2 48 cd c9 c9 07 00.
        ext = PerMessageDeflate(False, False, 15, 15, threshold=0)
        frame = ext.encode(Frame(Opcode.TEXT, b"Hello"))
        assert frame.rsv1
        assert frame.data == bytes.fromhex("f248cdc9c90700")

    def test_rfc_example_decodes(self) -> None:
        # Section 7.2.3.1: the frame 0xc1 0x07 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00.
        ext = PerMessageDeflate(False, False, 15, 15)
        frame = Frame(Opcode.TEXT, bytes.fromhex("f248cdc9c90700"), rsv1=True)
        assert ext.decode(frame).data == b"Hello"

    def test_rfc_example_fragments(self) -> None:
        # Section 7.2.3.1: the same message in two fragments.
        ext = PerMessageDeflate(False, False, 15, 15)
        first = ext.decode(Frame(Opcode.TEXT, bytes.fromhex("f248cd"), fin=False, rsv1=True))
        second = ext.decode(Frame(Opcode.CONT, bytes.fromhex("c9c90700")))
        assert first.data + second.data == b"Hello"
        assert not second.rsv1

    def test_rfc_example_no_compression_block(self) -> None:
        # Section 7.2.3.3: a DEFLATE block with no compression.
        ext = PerMessageDeflate(False, False, 15, 15)
        frame = Frame(Opcode.TEXT, bytes.fromhex("000500faff48656c6c6f00"), rsv1=True)
        assert ext.decode(frame).data == b"Hello"

    def test_context_takeover_shrinks_repeats(self) -> None:
        sender, receiver = pair(threshold=0)
        message = b"the quick brown fox jumps over the lazy dog " * 4
        first = sender.encode(Frame(Opcode.TEXT, message))
        second = sender.encode(Frame(Opcode.TEXT, message))
        assert len(second.data) < len(first.data)
        assert receiver.decode(first).data == message
        assert receiver.decode(second).data == message

    def test_no_context_takeover_restarts_each_message(self) -> None:
        sender, receiver = pair(
            local_no_context_takeover=True, remote_no_context_takeover=True, threshold=0
        )
        message = b"abcabcabc" * 50
        first = sender.encode(Frame(Opcode.BINARY, message))
        second = sender.encode(Frame(Opcode.BINARY, message))
        assert first.data == second.data
        assert receiver.decode(first).data == receiver.decode(second).data == message

    def test_below_threshold_sent_uncompressed(self) -> None:
        sender, _ = pair(threshold=128)
        frame = sender.encode(Frame(Opcode.TEXT, b"short"))
        assert not frame.rsv1
        assert frame.data == b"short"

    def test_per_message_opt_out(self) -> None:
        sender, receiver = pair(threshold=0)
        data = b"x" * 1000
        frame = sender.encode(Frame(Opcode.BINARY, data), compress=False)
        assert not frame.rsv1
        assert frame.data == data
        assert receiver.decode(frame).data == data

    def test_fragmented_message(self) -> None:
        sender, receiver = pair(threshold=0)
        parts = [b"a" * 300, b"b" * 300, b"c" * 300]
        frames = [
            sender.encode(Frame(Opcode.BINARY if i == 0 else Opcode.CONT, part, fin=i == 2))
            for i, part in enumerate(parts)
        ]
        assert [f.rsv1 for f in frames] == [True, False, False]
        assert b"".join(receiver.decode(f).data for f in frames) == b"".join(parts)

    def test_fragmented_uncompressed_message_stays_uncompressed(self) -> None:
        sender, _ = pair(threshold=0)
        first = sender.encode(Frame(Opcode.TEXT, b"ab", fin=False), compress=False)
        second = sender.encode(Frame(Opcode.CONT, b"cd"))
        assert (first.rsv1, first.data, second.rsv1, second.data) == (False, b"ab", False, b"cd")

    @pytest.mark.parametrize("bits", range(8, 16))
    def test_every_window_size(self, bits: int) -> None:
        # zlib refuses a raw 8-bit compression window; ws13 falls back to a
        # 9-bit window with Z_RLE, whose output an 8-bit decompressor reads.
        sender, receiver = pair(
            local_max_window_bits=bits, remote_max_window_bits=bits, threshold=0
        )
        data = os.urandom(64) * 40 + b"z" * 3000
        for _ in range(3):
            assert roundtrip(sender, receiver, Frame(Opcode.BINARY, data)).data == data

    def test_control_frames_untouched(self) -> None:
        sender, receiver = pair(threshold=0)
        ping = Frame(Opcode.PING, b"x" * 100)
        assert sender.encode(ping) is ping
        assert receiver.decode(ping) is ping


class TestFreeIdleMemory:
    """``free_idle_memory()`` drops the zlib state between messages; context
    takeover goes on: the decoder comes back primed with its window."""

    @pytest.mark.parametrize("bits", [9, 10, 15])
    def test_context_takeover_survives(self, bits: int) -> None:
        sender, receiver = pair(
            local_max_window_bits=bits, remote_max_window_bits=bits, threshold=0
        )
        # Each message repeats most of the one before: the sender refers back
        # across a free_idle_memory() on either side.
        messages = [(b"ticker %d " % (i // 3)) * 40 for i in range(12)]
        for i, message in enumerate(messages):
            frame = sender.encode(Frame(Opcode.BINARY, message))
            assert receiver.decode(frame).data == message
            if i % 2:
                receiver.free_idle_memory()
            if i % 3 == 2:
                sender.free_idle_memory()

    def test_repeats_still_shrink_after_the_receiver_frees(self) -> None:
        sender, receiver = pair(threshold=0)
        message = b"the quick brown fox jumps over the lazy dog " * 4
        first = sender.encode(Frame(Opcode.TEXT, message))
        assert receiver.decode(first).data == message
        receiver.free_idle_memory()
        # The sender still has its history: a few bytes, which the new
        # decoder understands only with the window it kept.
        second = sender.encode(Frame(Opcode.TEXT, message))
        assert len(second.data) < 10
        assert receiver.decode(second).data == message

    def test_sender_restarts_without_history(self) -> None:
        sender, receiver = pair(threshold=0)
        message = b"abcabcabc" * 50
        first = sender.encode(Frame(Opcode.BINARY, message))
        sender.free_idle_memory()
        second = sender.encode(Frame(Opcode.BINARY, message))
        # A fresh compressor: the same bytes as the first time.
        assert second.data == first.data
        assert receiver.decode(first).data == receiver.decode(second).data == message

    def test_waits_for_the_end_of_a_fragmented_message(self) -> None:
        sender, receiver = pair(threshold=0)
        parts = [b"a" * 300, b"b" * 300, b"c" * 300]
        frames = []
        for i, part in enumerate(parts):
            opcode = Opcode.BINARY if i == 0 else Opcode.CONT
            frames.append(sender.encode(Frame(opcode, part, fin=i == 2)))
            sender.free_idle_memory()  # mid-message: keeps its compressor
        received = []
        for frame in frames:
            received.append(receiver.decode(frame).data)
            receiver.free_idle_memory()
        assert b"".join(received) == b"".join(parts)

    def test_protocol_frees_through_its_extensions(self) -> None:
        client = Protocol(CLIENT, max_size=2**20)
        client.set_extensions([PerMessageDeflate(False, False, 10, 10)])
        server = Protocol(SERVER, max_size=2**20)
        server.set_extensions([PerMessageDeflate(False, False, 10, 10)])
        for _ in range(3):
            client.send_text("héllo wörld " * 20)
            server.receive_data(b"".join(client.data_to_send()))
            assert server.events_received() == ["héllo wörld " * 20]
            client.free_idle_memory()
            server.free_idle_memory()
        assert server.parser_exc is None


class TestSection6_1Errors:
    def test_rsv1_on_control_frame(self) -> None:
        ext = PerMessageDeflate(False, False, 15, 15)
        with pytest.raises(ProtocolError, match="control frame"):
            ext.decode(Frame(Opcode.PING, b"", rsv1=True))

    def test_rsv1_on_continuation_frame(self) -> None:
        ext = PerMessageDeflate(False, False, 15, 15)
        ext.decode(Frame(Opcode.TEXT, b"", fin=False, rsv1=True))
        with pytest.raises(ProtocolError, match="continuation"):
            ext.decode(Frame(Opcode.CONT, b"", rsv1=True))

    def test_corrupt_data(self) -> None:
        ext = PerMessageDeflate(False, False, 15, 15)
        with pytest.raises(ProtocolError, match="invalid DEFLATE"):
            ext.decode(Frame(Opcode.BINARY, b"\xff\xff\xff\xff", rsv1=True))

    def test_decompression_is_bounded(self) -> None:
        ext = PerMessageDeflate(False, False, 15, 15)
        bomb = zlib.compressobj(wbits=-15)
        data = bomb.compress(bytes(10_000_000)) + bomb.flush(zlib.Z_SYNC_FLUSH)
        with pytest.raises(PayloadTooBig, match="max_size"):
            ext.decode(Frame(Opcode.BINARY, data[:-4], rsv1=True), max_size=1000)

    def test_decompression_at_the_limit(self) -> None:
        sender, receiver = pair(threshold=0)
        frame = sender.encode(Frame(Opcode.BINARY, bytes(1000)))
        assert len(receiver.decode(frame, max_size=1000).data) == 1000


def params(header: str) -> list[tuple[str, str | None]]:
    ((_, found),) = parse_extension_list([header])
    return found


class TestSection7Negotiation:
    def test_client_default_offer(self) -> None:
        assert ClientPerMessageDeflateFactory().get_request_params() == [
            ("client_max_window_bits", None)
        ]

    def test_client_full_offer(self) -> None:
        factory = ClientPerMessageDeflateFactory(True, True, 10, 11)
        assert factory.get_request_params() == [
            ("server_no_context_takeover", None),
            ("client_no_context_takeover", None),
            ("server_max_window_bits", "10"),
            ("client_max_window_bits", "11"),
        ]

    def test_server_answers_browser_offer(self) -> None:
        answer, ext = ServerPerMessageDeflateFactory().process_request_params(
            params("permessage-deflate; client_max_window_bits"), []
        )
        assert answer == [("server_max_window_bits", "11"), ("client_max_window_bits", "10")]
        assert isinstance(ext, PerMessageDeflate)
        assert (ext.local_max_window_bits, ext.remote_max_window_bits) == (11, 10)

    def test_server_without_client_max_window_bits(self) -> None:
        answer, ext = ServerPerMessageDeflateFactory().process_request_params([], [])
        # Section 7.1.2.2: not offered, so not in the answer; the client may use 15.
        assert answer == [("server_max_window_bits", "11")]
        assert isinstance(ext, PerMessageDeflate)
        assert ext.remote_max_window_bits == 15

    def test_server_honours_smaller_server_window(self) -> None:
        answer, _ = ServerPerMessageDeflateFactory().process_request_params(
            params("permessage-deflate; server_max_window_bits=9"), []
        )
        assert ("server_max_window_bits", "9") in answer

    def test_server_must_echo_server_no_context_takeover(self) -> None:
        answer, ext = ServerPerMessageDeflateFactory().process_request_params(
            params("permessage-deflate; server_no_context_takeover"), []
        )
        assert ("server_no_context_takeover", None) in answer
        assert isinstance(ext, PerMessageDeflate)
        assert ext.local_no_context_takeover

    @pytest.mark.parametrize(
        "offer",
        [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=08x",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown_param",
        ],
    )
    def test_server_declines_bad_offers(self, offer: str) -> None:
        with pytest.raises(NegotiationError):
            ServerPerMessageDeflateFactory().process_request_params(params(offer), [])

    def test_client_accepts_answer(self) -> None:
        ext = ClientPerMessageDeflateFactory().process_response_params(
            params("permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"), []
        )
        assert isinstance(ext, PerMessageDeflate)
        assert (ext.remote_max_window_bits, ext.local_max_window_bits) == (10, 9)

    @pytest.mark.parametrize(
        ("factory", "answer"),
        [
            (
                ClientPerMessageDeflateFactory(client_max_window_bits=False),
                "client_max_window_bits=10",
            ),
            (
                ClientPerMessageDeflateFactory(client_max_window_bits=10),
                "client_max_window_bits=11",
            ),
            (
                ClientPerMessageDeflateFactory(server_max_window_bits=10),
                "server_max_window_bits=11",
            ),
            (ClientPerMessageDeflateFactory(server_max_window_bits=10), "client_max_window_bits=9"),
            (ClientPerMessageDeflateFactory(server_no_context_takeover=True), "x=1"),
            (ClientPerMessageDeflateFactory(), "client_max_window_bits"),
            (ClientPerMessageDeflateFactory(), "server_max_window_bits=42"),
        ],
    )
    def test_client_refuses_bad_answers(
        self, factory: ClientPerMessageDeflateFactory, answer: str
    ) -> None:
        with pytest.raises(NegotiationError):
            factory.process_response_params(params("permessage-deflate; " + answer), [])

    def test_no_second_instance(self) -> None:
        ext = PerMessageDeflate(False, False, 15, 15)
        with pytest.raises(NegotiationError):
            ServerPerMessageDeflateFactory().process_request_params([], [ext])
        with pytest.raises(NegotiationError):
            ClientPerMessageDeflateFactory().process_response_params([], [ext])

    def test_bad_settings(self) -> None:
        with pytest.raises(ValueError, match="between 8 and 15"):
            ServerPerMessageDeflateFactory(server_max_window_bits=16)
        with pytest.raises(ValueError, match="unknown compress_settings"):
            PerMessageDeflate(False, False, 15, 15, compress_settings={"wbits": 9})


def handshake(
    offer_factories: list[ClientPerMessageDeflateFactory],
    server_factories: list[ServerPerMessageDeflateFactory],
    offer_header: str | None = None,
) -> tuple[ClientProtocol, ServerProtocol]:
    client = ClientProtocol(parse_uri("ws://example.com/"), extensions=offer_factories)
    server = ServerProtocol(extensions=server_factories)
    request = client.connect()
    if offer_header is not None:
        if "Sec-WebSocket-Extensions" in request.headers:
            del request.headers["Sec-WebSocket-Extensions"]
        request.headers["Sec-WebSocket-Extensions"] = offer_header
    client.send_request(request)
    for data in client.data_to_send():
        server.receive_data(data)
    (req,) = server.events_received()
    server.send_response(server.accept(req))
    for data in server.data_to_send():
        client.receive_data(data)
    client.events_received()
    return client, server


class TestSection5Handshake:
    def test_end_to_end_compressed_messages(self) -> None:
        client, server = handshake(
            [ClientPerMessageDeflateFactory()], [ServerPerMessageDeflateFactory(threshold=0)]
        )
        assert client.state is OPEN
        assert server.state is OPEN
        assert [e.name for e in client.extensions] == ["permessage-deflate"]
        message = "héllo, wörld " * 100
        client.send_text(message)
        wire = b"".join(client.data_to_send())
        assert wire[0] == 0xC1  # FIN + RSV1 + TEXT
        server.receive_data(wire)
        assert server.events_received() == [message]
        server.send_binary(b"\x00" * 5000)
        wire = b"".join(server.data_to_send())
        assert wire[0] == 0xC2
        assert len(wire) < 100
        client.receive_data(wire)
        assert client.events_received() == [b"\x00" * 5000]

    def test_compressed_frames_in_segments(self) -> None:
        # Compressed frames split into small reads, back to back: each message
        # arrives when its frame's last byte does.
        client, server = handshake(
            [ClientPerMessageDeflateFactory()], [ServerPerMessageDeflateFactory()]
        )
        messages = [os.urandom(5000), bytes(range(256)) * 64, "caf\u00e9 " * 3000, b"x"]
        for message in messages:
            if isinstance(message, str):
                client.send_text(message)
            else:
                client.send_binary(message)
        wire = b"".join(client.data_to_send())
        received = []
        for start in range(0, len(wire), 100):
            server.receive_data(wire[start : start + 100])
            received += server.events_received()
        assert received == messages
        assert server.parser_exc is None

    def test_server_takes_fallback_offer(self) -> None:
        # The first offer is invalid (declined); the fallback one is accepted.
        _, server = handshake(
            [ClientPerMessageDeflateFactory()],
            [ServerPerMessageDeflateFactory()],
            "permessage-deflate; server_max_window_bits=99, permessage-deflate",
        )
        assert server.response is not None
        assert server.response.headers["Sec-WebSocket-Extensions"] == (
            "permessage-deflate; server_max_window_bits=11"
        )

    def test_server_declines_all_offers(self) -> None:
        _, server = handshake([ClientPerMessageDeflateFactory()], [], "permessage-deflate; foo=1")
        assert server.state is OPEN
        assert server.response is not None
        assert "Sec-WebSocket-Extensions" not in server.response.headers
        assert server.extensions == []

    def test_unclaimed_rsv1_still_fails(self) -> None:
        _, server = handshake([], [], "")
        server.receive_data(bytes.fromhex("c1 80 00000000"))
        assert server.close_sent == Close(CloseCode.PROTOCOL_ERROR, "reserved bits must be 0")

    def test_rsv2_fails_even_with_deflate(self) -> None:
        _, server = handshake(
            [ClientPerMessageDeflateFactory()], [ServerPerMessageDeflateFactory()]
        )
        server.receive_data(bytes.fromhex("a1 80 00000000"))
        assert server.close_sent is not None
        assert server.close_sent.code == CloseCode.PROTOCOL_ERROR


class TestBombs:
    def deflated_protocol(self, max_size: int | None) -> Protocol:
        protocol = Protocol(CLIENT, max_size=max_size)
        protocol.set_extensions([PerMessageDeflate(False, False, 15, 15)])
        return protocol

    def test_bomb_fails_with_1009(self) -> None:
        compressor = zlib.compressobj(wbits=-15)
        payload = compressor.compress(bytes(50_000_000)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        payload = payload[:-4]
        assert len(payload) < 60_000
        protocol = self.deflated_protocol(max_size=2**20)
        frame = Frame(Opcode.BINARY, payload, rsv1=True).serialize()
        protocol.receive_data(frame)
        assert protocol.close_sent is not None
        assert protocol.close_sent.code == CloseCode.MESSAGE_TOO_BIG
        assert isinstance(protocol.parser_exc, PayloadTooBig)
        assert protocol.events_received() == []

    def test_fragmented_bomb_counts_every_fragment(self) -> None:
        compressor = zlib.compressobj(wbits=-15)
        protocol = self.deflated_protocol(max_size=100_000)
        first = compressor.compress(bytes(60_000)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        protocol.receive_data(Frame(Opcode.BINARY, first, fin=False, rsv1=True).serialize())
        assert protocol.close_sent is None
        second = compressor.compress(bytes(60_000)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        protocol.receive_data(Frame(Opcode.CONT, second[:-4]).serialize())
        assert protocol.close_sent is not None
        assert protocol.close_sent.code == CloseCode.MESSAGE_TOO_BIG

    def test_fragmented_incompressible_message_at_max_size_arrives(self) -> None:
        # Each compressed fragment is bounded by what is left of max_size.
        compressor = zlib.compressobj(wbits=-15)
        protocol = self.deflated_protocol(max_size=100_000)
        data = os.urandom(100_000)
        first = compressor.compress(data[:60_000]) + compressor.flush(zlib.Z_SYNC_FLUSH)
        second = compressor.compress(data[60_000:]) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert len(first) + len(second) > 100_000
        protocol.receive_data(Frame(Opcode.BINARY, first, fin=False, rsv1=True).serialize())
        protocol.receive_data(Frame(Opcode.CONT, second[:-4]).serialize())
        assert protocol.events_received() == [data]
        assert protocol.close_sent is None

    def test_fragment_over_the_wire_bound_of_what_is_left_fails_with_1009(self) -> None:
        compressor = zlib.compressobj(wbits=-15)
        protocol = self.deflated_protocol(max_size=100_000)
        first = compressor.compress(os.urandom(90_000)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        protocol.receive_data(Frame(Opcode.BINARY, first, fin=False, rsv1=True).serialize())
        assert protocol.close_sent is None
        second = bytes(max_compressed_size(10_000) + 1)
        protocol.receive_data(Frame(Opcode.CONT, second).serialize())
        assert protocol.close_sent is not None
        assert protocol.close_sent.code == CloseCode.MESSAGE_TOO_BIG
        assert "the 10000 bytes left" in str(protocol.parser_exc)

    @pytest.mark.parametrize("size", [0, 1, 100, 16_383, 100_000])
    def test_wire_bound_covers_zlibs_worst_case(self, size: int) -> None:
        # max_compressed_size() must hold whatever the peer's zlib settings:
        # the smallest memLevel and fixed Huffman codes expand random bytes most.
        data = os.urandom(size)
        for level in (1, 9):
            for mem_level in (1, 2, 8, 9):
                for strategy in (zlib.Z_DEFAULT_STRATEGY, zlib.Z_FIXED, zlib.Z_HUFFMAN_ONLY):
                    compressor = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy)
                    body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
                    assert len(body) <= max_compressed_size(size)

    def test_server_side_masked_compressed_frames(self) -> None:
        protocol = Protocol(SERVER)
        protocol.set_extensions([PerMessageDeflate(False, False, 15, 15)])
        sender = PerMessageDeflate(False, False, 15, 15, threshold=0)
        frame = sender.encode(Frame(Opcode.TEXT, "ünïcode ".encode() * 50))
        protocol.receive_data(frame.serialize(mask=b"\x01\x02\x03\x04"))
        assert protocol.events_received() == ["ünïcode " * 50]


class TestProtocolWholeMessages:
    """permessage-deflate alone: whole messages skip the general extension loop.

    The same wire bytes, checks and errors as the general path.
    """

    def pair(self) -> tuple[Protocol, Protocol]:
        client = Protocol(CLIENT, max_size=2**20)
        client.set_extensions([PerMessageDeflate(False, False, 15, 15)])
        server = Protocol(SERVER, max_size=2**20)
        server.set_extensions([PerMessageDeflate(False, False, 15, 15)])
        return client, server

    def test_whole_and_fragmented_messages_share_the_context(self) -> None:
        client, server = self.pair()
        client.send_text("héllo " * 100)
        client.send_text(b"fragmented " * 20, fin=False)
        client.send_continuation(b"message " * 20, fin=True)
        client.send_binary(b"tiny")  # under the threshold: not compressed
        client.send_binary(bytes(1000), compress=False)
        client.send_binary(bytes(1000))
        wire = client.data_to_send()
        assert [frame[0] for frame in wire] == [0xC1, 0x41, 0x80, 0x82, 0x82, 0xC2]
        server.receive_data(b"".join(wire))
        assert server.events_received() == [
            "héllo " * 100,
            "fragmented " * 20 + "message " * 20,
            b"tiny",
            bytes(1000),
            bytes(1000),
        ]
        assert server.parser_exc is None

    def test_invalid_deflate_data_fails_with_1002(self) -> None:
        _, server = self.pair()
        server.receive_data(Frame(Opcode.BINARY, b"\xff\xff\xff", rsv1=True).serialize(mask=MASK))
        assert server.close_sent is not None
        assert server.close_sent.code == CloseCode.PROTOCOL_ERROR
        assert isinstance(server.parser_exc, ProtocolError)
        assert "invalid DEFLATE data" in str(server.parser_exc)

    def test_rsv1_on_a_final_continuation_fails_with_1002(self) -> None:
        # Section 6.1: the bit is set on a message's first frame only. A final
        # continuation with RSV1 isn't a whole compressed message: no bypass
        # of this check, nor of max_size for the message so far.
        _, server = self.pair()
        compressor = zlib.compressobj(wbits=-15)
        tail = compressor.compress(b"B" * 100) + compressor.flush(zlib.Z_SYNC_FLUSH)
        server.receive_data(
            Frame(Opcode.BINARY, b"A" * 90, fin=False).serialize(mask=MASK)
            + Frame(Opcode.CONT, tail[:-4], rsv1=True).serialize(mask=MASK)
        )
        assert server.events_received() == []
        assert server.close_sent == Close(
            CloseCode.PROTOCOL_ERROR, "RSV1 set on a continuation frame"
        )

    def test_invalid_utf8_in_compressed_text_fails_with_1007(self) -> None:
        _, server = self.pair()
        sender = PerMessageDeflate(False, False, 15, 15, threshold=0)
        frame = sender.encode(Frame(Opcode.TEXT, b"caf\xe9 " * 10))
        server.receive_data(frame.serialize(mask=MASK))
        assert server.close_sent is not None
        assert server.close_sent.code == CloseCode.INVALID_DATA
        assert server.events_received() == []

    def test_messages_before_a_bad_compressed_message_are_delivered(self) -> None:
        client, server = self.pair()
        client.send_text("first " * 50)
        client.send_binary(b"second")
        wire = b"".join(client.data_to_send())
        bad = Frame(Opcode.BINARY, b"\xff\xff\xff", rsv1=True).serialize(mask=MASK)
        after = Frame(Opcode.BINARY, b"never").serialize(mask=MASK)
        server.receive_data(wire + bad + after)
        assert server.events_received() == ["first " * 50, b"second"]
        assert server.close_sent is not None
        assert server.close_sent.code == CloseCode.PROTOCOL_ERROR

    def test_compressed_messages_around_a_ping_in_one_read(self) -> None:
        client, server = self.pair()
        client.send_text("before " * 30)
        client.send_ping(b"are you there")
        client.send_binary(bytes(3000))
        server.receive_data(b"".join(client.data_to_send()))
        events = server.events_received()
        assert events[0] == "before " * 30
        assert events[1] == Frame(Opcode.PING, b"are you there")
        assert events[2] == bytes(3000)
        # Section 5.5.2: the Pong goes out with the Ping's application data.
        assert server.data_to_send() == [Frame(Opcode.PONG, b"are you there").serialize()]

    def test_compressed_message_over_max_size_fails_with_1009(self) -> None:
        client, server = self.pair()
        client.send_binary(bytes(2**20 + 1))  # compresses to under 5 KiB
        wire = b"".join(client.data_to_send())
        assert len(wire) < 5000
        server.receive_data(wire)
        assert server.events_received() == []
        assert server.close_sent is not None
        assert server.close_sent.code == CloseCode.MESSAGE_TOO_BIG
        assert isinstance(server.parser_exc, PayloadTooBig)

    def test_compressed_message_at_max_size_arrives(self) -> None:
        client, server = self.pair()
        client.send_binary(bytes(2**20))
        server.receive_data(b"".join(client.data_to_send()))
        assert server.events_received() == [bytes(2**20)]
        assert server.close_sent is None

    def test_incompressible_message_at_max_size_arrives(self) -> None:
        # Random bytes grow when deflated: max_size bounds the message, not
        # its compressed frame (which here is over 2**20 bytes on the wire).
        client, server = self.pair()
        data = os.urandom(2**20)
        client.send_binary(data)
        wire = b"".join(client.data_to_send())
        assert len(wire) > 2**20 + 14
        for start in range(0, len(wire), 65536):  # the large-frame path, read by read
            server.receive_data(wire[start : start + 65536])
        assert server.events_received() == [data]
        assert server.close_sent is None

    def test_incompressible_message_over_max_size_fails_with_1009(self) -> None:
        client, server = self.pair()
        client.send_binary(os.urandom(2**20 + 1))
        server.receive_data(b"".join(client.data_to_send()))
        assert server.events_received() == []
        assert server.close_sent == Close(
            CloseCode.MESSAGE_TOO_BIG, f"message too big; limit is {2**20} bytes"
        )
        assert "decompressed message exceeds max_size" in str(server.parser_exc)

    def test_compressed_frame_over_the_wire_bound_fails_with_1009_unread(self) -> None:
        # The wire size of a compressed frame is bounded by DEFLATE's worst
        # case for max_size: no more than that is buffered before inflating.
        _, server = self.pair()
        limit = max_compressed_size(2**20)
        assert limit == 2**20 + 2**17 + 2**14 + 64
        header = Frame(Opcode.BINARY, bytes(limit + 1), rsv1=True).serialize(mask=MASK)[:14]
        server.receive_data(header)  # the header alone: nothing else is read
        assert server.close_sent is not None
        assert server.close_sent.code == CloseCode.MESSAGE_TOO_BIG
        assert str(server.parser_exc) == (
            f"compressed frame of {limit + 1} bytes exceeds max_size={2**20}: "
            f"at most {limit} bytes may carry the {2**20} bytes left "
            "(pass a larger max_size, or None, to accept it)"
        )

    def test_invalid_utf8_after_a_good_message_fails_with_1007(self) -> None:
        client, server = self.pair()
        client.send_text("good " * 20)
        sender_wire = b"".join(client.data_to_send())
        sender = PerMessageDeflate(False, False, 15, 15, threshold=0)
        # A fresh compressor: its output doesn't refer back, valid in any context.
        bad = sender.encode(Frame(Opcode.TEXT, b"caf\xe9 " * 10)).serialize(mask=MASK)
        server.receive_data(sender_wire + bad)
        assert server.events_received() == ["good " * 20]
        assert server.close_sent == Close(CloseCode.INVALID_DATA, "invalid UTF-8")
        assert "invalid UTF-8 in text message" in str(server.parser_exc)

    def test_subclass_keeps_the_general_path(self) -> None:
        seen: list[str] = []

        class Counting(PerMessageDeflate):
            def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
                seen.append("decode")
                return super().decode(frame, max_size=max_size)

            def encode(self, frame: Frame, *, compress: bool = True) -> Frame:
                seen.append("encode")
                return super().encode(frame, compress=compress)

        client, _ = self.pair()
        server = Protocol(SERVER)
        server.set_extensions([Counting(False, False, 15, 15)])
        client.send_text("x" * 100)
        server.receive_data(b"".join(client.data_to_send()))
        assert server.events_received() == ["x" * 100]
        server.send_text("y" * 100)
        client.receive_data(b"".join(server.data_to_send()))
        assert client.events_received() == ["y" * 100]
        assert seen == ["decode", "encode"]
