"""The capture options (``--pcap``, ``--pcap-tls``...) of ``ws13 connect`` and ``ws13 serve``."""

from __future__ import annotations

import argparse

from ..pcap import DEFAULT_FILES, DEFAULT_MAX_SIZE, PcapWriter

__all__ = ["add_pcap_arguments", "pcap_writer", "size"]

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def size(text: str) -> int:
    """A byte count such as ``1048576``, ``512k``, ``100M`` or ``2G`` (powers of 1024)."""
    value = text.strip().lower().removesuffix("b")
    unit = value[-1:] if value[-1:] in _UNITS else ""
    try:
        number = int(value[: len(value) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} isn't a size such as 100M") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1 byte")
    return number * _UNITS[unit]


def add_pcap_arguments(parser: argparse.ArgumentParser, *, many: bool) -> None:
    """Add the capture options; ``many``: the rotation options too (``serve``)."""
    what = "every connection" if many else "the connection"
    parser.add_argument(
        "--pcap",
        metavar="FILE",
        help=f"write {what} to FILE as a pcapng capture for Wireshark/tshark "
        "(synthetic TCP/IP on the real addresses; wss:// shown decrypted)",
    )
    parser.add_argument(
        "--pcap-tls",
        action="store_true",
        help="with --pcap and TLS, capture the TLS records as sent and the session keys "
        "(a Decryption Secrets Block) instead of the plaintext: Wireshark decrypts them",
    )
    if many:
        parser.add_argument(
            "--pcap-max-size",
            type=size,
            default=DEFAULT_MAX_SIZE,
            metavar="SIZE",
            help="rotate the capture past this size: FILE becomes FILE.1... (100M)",
        )
        parser.add_argument(
            "--pcap-files",
            type=int,
            default=DEFAULT_FILES,
            metavar="N",
            help=f"capture files kept by rotation, FILE included ({DEFAULT_FILES})",
        )


def pcap_writer(args: argparse.Namespace) -> PcapWriter | None:
    """The writer for ``--pcap``, or None; ValueError with a one-line reason."""
    max_size = getattr(args, "pcap_max_size", DEFAULT_MAX_SIZE)
    files = getattr(args, "pcap_files", DEFAULT_FILES)
    if files < 1:
        raise ValueError(f"--pcap-files {files}: must be 1 or more")
    if args.pcap is None:
        if args.pcap_tls:
            raise ValueError("--pcap-tls needs --pcap FILE")
        return None
    try:
        return PcapWriter(args.pcap, max_size=max_size, files=files)
    except OSError as exc:
        raise ValueError(f"cannot write --pcap {args.pcap}: {exc.strerror}") from None
