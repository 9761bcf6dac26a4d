"""The extension mechanism (RFC 6455 section 9) with a toy extension of our own."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ws13.client import ClientProtocol
from ws13.exceptions import InvalidHandshake, NegotiationError
from ws13.extensions.base import ClientExtensionFactory, Extension, ServerExtensionFactory
from ws13.frames import CloseCode, Frame
from ws13.headers import ExtensionParameter
from ws13.http11 import Response
from ws13.protocol import OPEN
from ws13.server import ServerProtocol
from ws13.uri import parse_uri


class Reverse(Extension):
    """Reverses data payloads and marks them with RSV2."""

    name = "x-reverse"
    rsv_bits = 0x20

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        if frame.opcode >= 8 or not frame.rsv2:
            return frame
        return Frame(frame.opcode, frame.data[::-1], frame.fin)

    def encode(self, frame: Frame, *, compress: bool = True) -> Frame:
        if frame.opcode >= 8:
            return frame
        return Frame(frame.opcode, frame.data[::-1], frame.fin, rsv2=True)


class ClientReverse(ClientExtensionFactory):
    name = "x-reverse"

    def get_request_params(self) -> list[ExtensionParameter]:
        return [("mode", "full")]

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> Extension:
        if list(params) != [("mode", "full")]:
            raise NegotiationError("Sec-WebSocket-Extensions", f"x-reverse {params}")
        return Reverse()


class ServerReverse(ServerExtensionFactory):
    name = "x-reverse"

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], Extension]:
        if ("mode", "full") not in params:
            raise NegotiationError("Sec-WebSocket-Extensions", "mode=full required")
        return [("mode", "full")], Reverse()


def connect(
    client_factories: list[ClientExtensionFactory],
    server_factories: list[ServerExtensionFactory],
    response_header: str | None = None,
) -> tuple[ClientProtocol, ServerProtocol]:
    client = ClientProtocol(parse_uri("ws://example.com/"), extensions=client_factories)
    server = ServerProtocol(extensions=server_factories)
    client.send_request(client.connect())
    for data in client.data_to_send():
        server.receive_data(data)
    (request,) = server.events_received()
    response = server.accept(request)
    if response_header is not None:
        response.headers["Sec-WebSocket-Extensions"] = response_header
    server.send_response(response)
    for data in server.data_to_send():
        client.receive_data(data)
    assert isinstance(client.events_received()[0], Response)
    return client, server


class TestSection9_1Negotiation:
    def test_offer_and_answer(self) -> None:
        client, server = connect([ClientReverse()], [ServerReverse()])
        assert client.request is not None
        assert client.request.headers["Sec-WebSocket-Extensions"] == "x-reverse; mode=full"
        assert server.response is not None
        assert server.response.headers["Sec-WebSocket-Extensions"] == "x-reverse; mode=full"
        assert client.state is OPEN
        assert [type(e) for e in client.extensions] == [Reverse]
        assert [type(e) for e in server.extensions] == [Reverse]

    def test_frames_go_through_the_extension(self) -> None:
        client, server = connect([ClientReverse()], [ServerReverse()])
        client.send_text("abc")
        wire = b"".join(client.data_to_send())
        assert wire[0] == 0x80 | 0x20 | 0x1  # FIN, RSV2, TEXT
        server.receive_data(wire)
        assert server.events_received() == ["abc"]

    def test_server_ignores_unknown_extension(self) -> None:
        client, server = connect([ClientReverse()], [])
        assert server.response is not None
        assert "Sec-WebSocket-Extensions" not in server.response.headers
        assert client.extensions == []

    def test_rsv2_without_the_extension_fails(self) -> None:
        _, server = connect([], [])
        server.receive_data(bytes.fromhex("a1 80 00000000"))
        assert server.close_sent is not None
        assert server.close_sent.code == CloseCode.PROTOCOL_ERROR

    def test_client_refuses_an_extension_it_did_not_offer(self) -> None:
        client, _ = connect([], [], response_header="x-reverse; mode=full")
        assert isinstance(client.handshake_exc, NegotiationError)
        assert "not offered" in str(client.handshake_exc)

    def test_client_refuses_bad_parameters(self) -> None:
        client, _ = connect([ClientReverse()], [], response_header="x-reverse; mode=half")
        assert isinstance(client.handshake_exc, NegotiationError)

    @pytest.mark.parametrize("header", ['x-reverse; mode="a b"', "x-reverse;", "bad name"])
    def test_client_refuses_malformed_header(self, header: str) -> None:
        client, _ = connect([ClientReverse()], [], response_header=header)
        assert isinstance(client.handshake_exc, InvalidHandshake)

    def test_server_answers_400_to_malformed_offer(self) -> None:
        server = ServerProtocol(extensions=[ServerReverse()])
        server.receive_data(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Extensions: x-reverse; =\r\n\r\n"
        )
        (request,) = server.events_received()
        response = server.accept(request)
        assert response.status_code == 400
        assert b"Sec-WebSocket-Extensions" in response.body
