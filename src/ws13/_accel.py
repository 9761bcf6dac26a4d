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
    "install_receiver",
    "install_sender",
    "parse_messages",
    "send_whole",
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
#: Makes ``ws13.asyncio.Connection.data_received`` its C twin (see
#: ``_receiver.c``), or ``None`` in pure Python, where the method stays the
#: Python code it is the twin of. Called by ``ws13.asyncio.connection``.
install_receiver: Callable[[type, type, type, object, tuple[type, ...]], None] | None = None
#: ``send_whole(connection, message)``, the C twin of
#: ``ws13.asyncio.connection._send_whole_py`` once ``install_sender()`` showed
#: it the classes (that module does both), or ``None`` in pure Python.
install_sender: Callable[[type, type, Callable[[Any, object], bool], int, bool], None] | None
install_sender = None
send_whole: Callable[[Any, object], bool] | None = None

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
        from ._speedups import install_receiver as _install_receiver
        from ._speedups import install_sender as _install_sender
        from ._speedups import parse_messages as _parse_messages
        from ._speedups import send_whole as _send_whole
    except ImportError:
        pass
    else:
        parse_messages = _parse_messages
        install_receiver = _install_receiver
        install_sender = _install_sender
        send_whole = _send_whole
        USING_SPEEDUPS = True
