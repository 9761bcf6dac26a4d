"""Helpers shared by the test modules."""

from __future__ import annotations

import os
import socket

__all__ = ["MS", "free_port", "memory_kib"]

#: One millisecond, scaled by WS13_TESTS_TIMEOUT_FACTOR for slow machines.
MS = 0.001 * float(os.environ.get("WS13_TESTS_TIMEOUT_FACTOR", "1"))


def free_port(family: int = socket.AF_INET) -> int:
    """A TCP port that was free a moment ago on the loopback interface."""
    with socket.socket(family) as sock:
        sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of process ``pid`` from /proc, in KiB: ``VmRSS`` (resident
    now) or ``VmHWM`` (the peak of resident so far)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")
