"""Run one fuzz target with atheris (libFuzzer).

``python fuzz/run.py TARGET [libFuzzer options] [corpus directories]``

Targets: frames, deflate, http11, hub_wire (``fuzz/targets.py``). Run it from
the repository's root. Examples::

    python fuzz/run.py frames -max_total_time=60 /tmp/frames fuzz/corpus/frames
    python fuzz/run.py http11 -runs=10000000 /tmp/http11 fuzz/corpus/http11

libFuzzer writes new interesting inputs to the first corpus directory: give
a scratch one first to keep ``fuzz/corpus`` as it is, and copy the inputs
worth keeping (``-merge=1``) into it by hand. A crash is written as
``crash-<sha1>`` in the current directory and the run exits non-zero.
Coverage guides the fuzzer through the Python code (ws13 is instrumented at
import); the C twin is not instrumented, so it is reached through the
differential checks against the Python reference, which fail on any
difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

# The repository's root, for ``fuzz`` and ``tests`` (the twins' loader).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
with atheris.instrument_imports(include=["ws13"]):
    from fuzz.targets import TARGETS, TWIN_TARGETS, load_twins


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python fuzz/run.py {{{','.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[sys.argv[1]]
    if sys.argv[1] in TWIN_TARGETS:
        # Now, so that both copies of ws13 are instrumented.
        with atheris.instrument_imports(include=["ws13"]):
            load_twins()
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
