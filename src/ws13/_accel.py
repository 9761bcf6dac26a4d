"""The one place that chooses between the C speedups and pure Python.

``WS13_NO_EXTENSIONS=1`` in the environment forces pure Python. A missing or
unbuildable C extension falls back silently. Type checkers always see the
pure-Python signatures.
"""

from __future__ import annotations

import os

from .utils import apply_mask

__all__ = ["USING_SPEEDUPS", "apply_mask"]

USING_SPEEDUPS = False

if not os.environ.get("WS13_NO_EXTENSIONS"):
    try:
        from ._speedups import apply_mask
    except ImportError:
        pass
    else:
        USING_SPEEDUPS = True
