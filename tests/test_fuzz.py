"""A short pass of each atheris fuzz target over its corpus (``fuzz/``), as CI runs it.

Each target runs for 1 s in its own process, all four at once, starting from
``fuzz/corpus/TARGET`` (new inputs go to a scratch directory, so the corpus
in the repository stays as it is). A crash, a difference between the C and
Python twins, or an unexpected exception fails the target; its stderr says
which input (``crash-*``, in the scratch directory).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 1


def test_each_target_runs_clean_over_its_corpus() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        runs = {}
        for name in TARGETS:
            found = Path(scratch, name)
            found.mkdir()
            runs[name] = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "fuzz" / "run.py"),
                    name,
                    f"-max_total_time={SECONDS}",
                    f"-artifact_prefix={found}/",
                    str(found),
                    str(ROOT / "fuzz" / "corpus" / name),
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        for name, process in runs.items():
            _, stderr = process.communicate(timeout=120)
            assert process.returncode == 0, f"{name}:\n{stderr[-3000:]}"
            assert "Done " in stderr, f"{name}:\n{stderr[-3000:]}"
            assert not list(Path(scratch, name).glob("crash-*")), name
