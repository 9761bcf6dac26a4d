"""Byte strings from RFC 6455 section 5.7 ("Examples"), shared by the core's tests."""

from __future__ import annotations

__all__ = [
    "BINARY_64K_HEADER",
    "BINARY_256_HEADER",
    "FRAGMENT_HEL",
    "FRAGMENT_LO",
    "MASK",
    "MASKED_HELLO",
    "MASKED_PONG",
    "UNMASKED_HELLO",
    "UNMASKED_PING",
]

#: The masking key of the section's masked examples.
MASK = bytes.fromhex("37fa213d")

#: A single-frame unmasked text message, "Hello".
UNMASKED_HELLO = bytes.fromhex("810548656c6c6f")
#: A single-frame masked text message, "Hello".
MASKED_HELLO = bytes.fromhex("818537fa213d7f9f4d5158")
#: A fragmented unmasked text message: "Hel", then "lo".
FRAGMENT_HEL = bytes.fromhex("010348656c")
FRAGMENT_LO = bytes.fromhex("80026c6f")
#: An unmasked Ping with "Hello" and a masked Pong answering it.
UNMASKED_PING = bytes.fromhex("890548656c6c6f")
MASKED_PONG = bytes.fromhex("8a8537fa213d7f9f4d5158")
#: The headers of 256-byte and 64 KiB unmasked binary messages (16- and 64-bit lengths).
BINARY_256_HEADER = bytes.fromhex("827e0100")
BINARY_64K_HEADER = bytes.fromhex("827f0000000000010000")
