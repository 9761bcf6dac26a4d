"""Summarise a py-spy ``--format raw`` (collapsed stacks) file: top functions by own time.

Usage: python bench/profile_summary.py FILE [--top 15]

"Own" time is the share of samples in which the function is the innermost
Python frame (time in C code it calls, uvloop's included, counts as its own:
py-spy without ``--native`` can't see below Python). "Total" is the share of
samples in which it is anywhere on the stack.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any


def summarize(text: str, top: int = 15) -> dict[str, Any]:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    rows = [
        {
            "function": frame,
            "own_pct": 100 * n / samples,
            "total_pct": 100 * total[frame] / samples,
            "samples": n,
        }
        for frame, n in own.most_common(top)
    ]
    return {"samples": samples, "top": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    with open(args.file) as f:
        result = summarize(f.read(), args.top)
    print(f"{result['samples']} samples")
    print(f"{'own %':>6} {'total %':>7}  function")
    for row in result["top"]:
        print(f"{row['own_pct']:6.1f} {row['total_pct']:7.1f}  {row['function']}")


if __name__ == "__main__":
    sys.exit(main())
