"""Where an idle connection's memory goes: tracemalloc snapshots of a server.

Used by ``connections.py --tracemalloc OUT``, which runs the server as

    python bench/memprofile.py serve SNAPSHOT_DIR [ws13 serve options...]

(``ws13 serve`` under tracemalloc, 25 frames; each SIGUSR1 writes the next
snapshot, ``0.snap``, ``1.snap``... after a garbage collection) and, once the
run is over,

    python bench/memprofile.py report SNAPSHOT_DIR CONNECTIONS [--top 25]

which compares the first snapshot (no connection) with the second (every
connection open and idle), grouped by traceback, and prints the largest
differences in bytes per connection with the innermost ws13 frames of each.
tracemalloc sees only Python's allocations (objects, and buffers allocated
through Python's allocator such as zlib's state): not the kernel's socket
memory, not uvloop's own C structures. It makes the server several times
slower and its objects larger (a trace per block): use its split, not its
totals.
"""

from __future__ import annotations

import gc
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType


def serve(directory: Path, argv: list[str]) -> int:
    from ws13.cli import main

    count = [0]

    def dump(signum: int, frame: FrameType | None) -> None:
        gc.collect()
        tracemalloc.take_snapshot().dump(str(directory / f"{count[0]}.snap"))
        count[0] += 1

    signal.signal(signal.SIGUSR1, dump)
    tracemalloc.start(25)
    return main(["serve", *argv])


def frames(trace: tracemalloc.Traceback, keep: int = 4) -> str:
    """The innermost frames worth reading: ws13's, asyncio's, the stdlib's."""
    shown = []
    for frame in reversed(list(trace)):  # a Traceback runs oldest first
        name = frame.filename
        short = name.split("/src/", 1)[-1].split("/lib/python3")[-1]
        shown.append(f"{short}:{frame.lineno}")
        if len(shown) == keep:
            break
    return " < ".join(shown)


def report(directory: Path, connections: int, top: int = 25) -> str:
    before = tracemalloc.Snapshot.load(str(directory / "0.snap"))
    after = tracemalloc.Snapshot.load(str(directory / "1.snap"))
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before, after = before.filter_traces(filters), after.filter_traces(filters)
    total = sum(s.size_diff for s in after.compare_to(before, "filename"))
    lines = [
        f"tracemalloc: {total / connections:.0f} bytes per connection in Python's "
        f"allocators ({connections} connections), largest differences by traceback:",
        "",
        "| bytes/conn | blocks/conn | where (innermost first) |",
        "| ---: | ---: | --- |",
    ]
    for stat in after.compare_to(before, "traceback")[:top]:
        lines.append(
            f"| {stat.size_diff / connections:.0f} | {stat.count_diff / connections:.2f} | "
            f"{frames(stat.traceback)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        return serve(Path(sys.argv[2]), sys.argv[3:])
    if len(sys.argv) >= 4 and sys.argv[1] == "report":
        top = int(sys.argv[5]) if len(sys.argv) >= 6 and sys.argv[4] == "--top" else 25
        print(report(Path(sys.argv[2]), int(sys.argv[3]), top), end="")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
