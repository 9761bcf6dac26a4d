"""Micro-benchmarks of ws13's hot paths, pure Python vs C.

Usage: python bench/micro.py [--quick] [--json]

* masking: ``ws13.utils.apply_mask`` (pure Python) vs ``ws13._speedups.apply_mask``
  (C), in GB/s on 1 KiB, 64 KiB and 1 MiB (websockets' C ``apply_mask`` for
  reference when installed);
* per-call cost of the C helpers on small inputs, in ns per call (including
  the benchmark's own lambda call, ~30-40 ns): ``build_frame`` of a 125-byte
  payload, ``parse_messages`` of one small masked frame into a new list;
* UTF-8 validation of mostly-ASCII text with ``ws13._accel.utf8_check`` (the
  C validator when built: what ws13 runs on fragmented and partly received
  text), and decoding it with ``bytes.decode("utf-8")`` (what a complete text
  frame costs: validation and building the ``str``), in GB/s;
* frame parsing: N small masked frames fed to
  ``ws13.protocol.Protocol(Side.SERVER).receive_data`` in 64 KiB chunks, events
  read with ``events_received()``, in frames/s, with the C speedups and with
  pure Python (``WS13_NO_EXTENSIONS=1``, measured in a subprocess); and large
  masked frames (64 KiB, 1 MiB) fed in 1448-byte reads, the TCP segments of
  a real network (loopback's are far larger), where the cost per read counts.

GB here is 10**9 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

KiB, MiB = 1024, 1024 * 1024
SIZES = [("1 KiB", KiB), ("64 KiB", 64 * KiB), ("1 MiB", MiB)]


def best_rate(fn: Callable[[], object], unit: float, budget: float) -> float:
    """Best of several timed batches: units per second (unit = bytes or items per call)."""
    # Calibrate a batch of calls that takes ~budget/5.
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > budget / 20 or n > 1 << 24:
            break
        n *= 2
    best = dt / n
    deadline = time.perf_counter() + budget
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return unit / best


def bench_mask(budget: float) -> dict[str, Any]:
    from ws13 import utils

    impls: dict[str, Callable[[bytes, bytes], bytes]] = {"pure Python": utils.apply_mask}
    try:
        from ws13 import _speedups

        impls["C (_speedups)"] = _speedups.apply_mask
    except ImportError:
        pass
    try:
        from websockets.speedups import apply_mask as ws_mask  # type: ignore[import-not-found]

        impls["websockets C (reference)"] = ws_mask
    except ImportError:
        pass
    mask = b"\x12\x34\x56\x78"
    out: dict[str, Any] = {}
    for name, fn in impls.items():
        row = {}
        for label, size in SIZES:
            data = os.urandom(size)
            row[label] = best_rate(lambda fn=fn, data=data: fn(data, mask), size, budget) / 1e9
        out[name] = row
    return out


def bench_calls(budget: float) -> dict[str, Any]:
    try:
        from ws13 import _speedups
    except ImportError:
        return {}
    from ws13.utils import build_frame

    mask = b"\xa1\xb2\xc3\xd4"
    payload = bytes(range(125))
    binary = build_frame(0x82, payload, mask)
    text = build_frame(0x81, b"hello, ws13! " * 2 + b"abcdef", mask)
    cases: dict[str, Callable[[], object]] = {
        "build_frame, 125 B, masked": lambda: _speedups.build_frame(0x82, payload, mask),
        "build_frame, 125 B, unmasked": lambda: _speedups.build_frame(0x82, payload, None),
        "parse_messages, 125 B binary": lambda: _speedups.parse_messages(
            binary, 0, 1, -1, [], None
        ),
        "parse_messages, 32 B text": lambda: _speedups.parse_messages(text, 0, 1, -1, [], None),
    }
    return {name: 1e9 / best_rate(fn, 1, budget) for name, fn in cases.items()}


UTF8_TEXTS = {
    # 100-character units: English-like ASCII with one non-ASCII character.
    "pure ASCII": "x",
    "mostly ASCII, 1% é (Latin-1)": "é",
    "mostly ASCII, 1% € (BMP)": "€",
}


def mostly_ascii(size: int, special: str) -> bytes:
    base = (
        "The quick brown fox jumps over the lazy dog; "
        "pack my box with five dozen liquor jugs! 0123456789"
    )
    unit = (base + "abc")[:99] + special
    text = (unit * (size // len(unit.encode()) + 1)).encode()[:size]
    return text.decode("utf-8", "ignore").encode()


def bench_utf8(budget: float, decode: bool) -> dict[str, Any]:
    from ws13._accel import utf8_check

    fn: Callable[[bytes], object] = (lambda data: data.decode("utf-8")) if decode else utf8_check
    out: dict[str, Any] = {}
    for name, special in UTF8_TEXTS.items():
        row = {}
        for label, size in SIZES:
            data = mostly_ascii(size, special)
            assert utf8_check(data) == 0
            row[label] = best_rate(lambda data=data: fn(data), len(data), budget) / 1e9
        out[name] = row
    return out


def masked_frame(payload: bytes, opcode: int, mask: bytes) -> bytes:
    from ws13.utils import apply_mask

    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + mask + apply_mask(payload, mask)


def bench_frames(budget: float, frames: int = 10_000) -> dict[str, Any]:
    """Frames/s through Protocol(Side.SERVER).receive_data + events_received."""
    from ws13 import _accel
    from ws13.protocol import Protocol, Side

    def rate(stream: bytes, read: int, count: int) -> float:
        """Frames/s for ``count`` frames in ``stream``, fed ``read`` bytes at a time."""
        chunks = [stream[i : i + read] for i in range(0, len(stream), read)]

        def run() -> None:
            protocol = Protocol(Side.SERVER, max_size=None)
            n = 0
            for chunk in chunks:
                protocol.receive_data(chunk)
                n += len(protocol.events_received())
            assert n == count, n

        return best_rate(run, count, budget)

    mask = b"\xa1\xb2\xc3\xd4"
    out: dict[str, Any] = {"speedups": _accel.USING_SPEEDUPS}
    for label, opcode, payload in (
        ("32 B binary", 0x2, bytes(range(32))),
        ("32 B text", 0x1, b"hello, ws13! " * 2 + b"abcdef"),
        ("125 B binary", 0x2, bytes(125)),
    ):
        out[label] = rate(masked_frame(payload, opcode, mask) * frames, 64 * KiB, frames)
    for label, size, count in (
        ("64 KiB in 1448 B reads", 64 * KiB, 20),
        ("1 MiB in 1448 B reads", MiB, 2),
    ):
        out[label] = rate(masked_frame(bytes(size), 0x2, mask) * count, 1448, count)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny time budget (smoke run)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--frames-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    budget = 0.05 if args.quick else 1.0

    if args.frames_only:
        print(json.dumps(bench_frames(budget)))
        return

    results: dict[str, Any] = {
        "masking_GBps": bench_mask(budget),
        "calls_ns": bench_calls(budget),
        "utf8_GBps": bench_utf8(budget, decode=False),
        "utf8_decode_GBps": bench_utf8(budget, decode=True),
        "frames_per_s": {"C speedups": bench_frames(budget)},
    }
    cmd = [sys.executable, __file__, "--frames-only"] + (["--quick"] if args.quick else [])
    proc = subprocess.run(
        cmd, capture_output=True, env=dict(os.environ, WS13_NO_EXTENSIONS="1"), timeout=600
    )
    try:
        results["frames_per_s"]["pure Python"] = json.loads(proc.stdout)
    except ValueError:
        results["frames_per_s"]["pure Python"] = {"error": proc.stderr.decode()[-1000:]}

    if args.json:
        print(json.dumps(results))
        return
    print("Masking (GB/s)")
    for name, row in results["masking_GBps"].items():
        print(f"  {name:26} " + "  ".join(f"{k}: {v:8.3f}" for k, v in row.items()))
    print("C helpers on small inputs (ns per call)")
    for name, ns in results["calls_ns"].items():
        print(f"  {name:32} {ns:8.1f}")
    for key, title in (
        ("utf8_GBps", "UTF-8 validation, ws13._accel.utf8_check (GB/s)"),
        ("utf8_decode_GBps", "UTF-8 decoding to str, bytes.decode('utf-8') (GB/s)"),
    ):
        print(title)
        for name, row in results[key].items():
            print(f"  {name:36} " + "  ".join(f"{k}: {v:6.2f}" for k, v in row.items()))
    print("Frame parsing, Protocol(Side.SERVER).receive_data (frames/s)")
    for name, row in results["frames_per_s"].items():
        cells = "  ".join(f"{k}: {v:>11,.0f}" for k, v in row.items() if isinstance(v, float))
        print(f"  {name:14} {cells}")


if __name__ == "__main__":
    main()
