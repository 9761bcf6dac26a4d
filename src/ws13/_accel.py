"""The one place that chooses between the C speedups and pure Python.

The C leaves (``ws13._speedups``: masking, UTF-8 validation, frame parsing
and building, the large-frame payload buffer, masking keys) each have a
pure-Python twin in ``ws13.utils``, and the C base type of the core's state
and hot entry points, ``CoreBase``, has its twin in ``ws13.corebase``; the
pure-Python code is the reference.
``WS13_NO_EXTENSIONS=1`` in the environment forces pure Python; an extension
that is missing or fails to import for any reason (not built, built for
another Python, refused by a subinterpreter or a free-threaded build) falls
back silently. Type checkers always see the pure-Python signatures.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .corebase import CoreBase
from .utils import MaskKeys, PayloadBuffer, apply_mask, build_frame, encode_text, utf8_check

__all__ = [
    "USING_SPEEDUPS",
    "CoreBase",
    "MaskKeys",
    "PayloadBuffer",
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

if not os.environ.get("WS13_NO_EXTENSIONS"):
    try:
        from ._speedups import (
            CoreBase,
            MaskKeys,
            PayloadBuffer,
            apply_mask,
            build_frame,
            encode_text,
            utf8_check,
        )
        from ._speedups import parse_messages as _parse_messages
    except Exception:
        # ImportError mostly; anything else an extension's import can raise
        # (a bad build, an interpreter it refuses) must not break ws13.
        pass
    else:
        parse_messages = _parse_messages
        USING_SPEEDUPS = True
