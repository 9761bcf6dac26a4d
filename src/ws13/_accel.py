"""The one place that chooses between the C speedups and pure Python.

``WS13_NO_EXTENSIONS=1`` in the environment forces pure Python. A missing or
unbuildable C extension falls back silently. Type checkers always see the
pure-Python signatures.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .utils import MaskKeys, PayloadBuffer, apply_mask, build_frame, encode_text, utf8_check

__all__ = [
    "USING_SPEEDUPS",
    "MaskKeys",
    "PayloadBuffer",
    "StepperCore",
    "apply_mask",
    "build_frame",
    "encode_text",
    "parse_messages",
    "utf8_check",
]

USING_SPEEDUPS = False

#: The C fast path of ``Protocol._parse_frames`` (whose general loop is its
#: pure-Python twin), or ``None`` in pure Python.
_Inflate = Callable[[bytes, int], bytes]
parse_messages: Callable[[bytes | bytearray, int, int, int, list[Any], _Inflate | None], int] | None
parse_messages = None
#: The C twin of ``ws13.asyncio._stepcore.StepperCore``, or ``None`` in pure
#: Python (``stepping.py`` then uses that one; importing it here would
#: import ws13.asyncio, which imports this module).
StepperCore: Any = None

if not os.environ.get("WS13_NO_EXTENSIONS"):
    try:
        from ._speedups import (
            MaskKeys,
            PayloadBuffer,
            StepperCore,
            apply_mask,
            build_frame,
            encode_text,
            utf8_check,
        )
        from ._speedups import parse_messages as _parse_messages
    except ImportError:
        pass
    else:
        parse_messages = _parse_messages
        USING_SPEEDUPS = True
