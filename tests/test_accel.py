"""The selector between the C speedups and pure Python (ws13/_accel.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import ws13._accel
import ws13.utils


def _using_speedups(env: dict[str, str]) -> str:
    code = "import ws13._accel as a; print(a.USING_SPEEDUPS, a.apply_mask.__module__)"
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


class TestSelector:
    def test_no_extensions_forces_pure_python(self) -> None:
        assert _using_speedups({"WS13_NO_EXTENSIONS": "1"}) == "False ws13.utils"

    def test_speedups_used_when_built(self) -> None:
        # scripts/test.sh builds the C extension (WS13_BUILD_EXTENSION=yes).
        assert _using_speedups({"WS13_NO_EXTENSIONS": ""}) == "True ws13._speedups"

    def test_this_process_follows_the_environment(self) -> None:
        forced = bool(os.environ.get("WS13_NO_EXTENSIONS"))
        assert ws13._accel.USING_SPEEDUPS is not forced
        if forced:
            assert ws13._accel.apply_mask is ws13.utils.apply_mask
