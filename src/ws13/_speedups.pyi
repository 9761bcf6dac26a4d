from collections.abc import Callable

# The C twins of ws13.corebase.CoreBase, ws13.utils.MaskKeys and PayloadBuffer,
# typed as those classes.
from .corebase import CoreBase as CoreBase
from .utils import MaskKeys as MaskKeys
from .utils import PayloadBuffer as PayloadBuffer

COPY_MAX: int

def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes: ...
def build_frame(
    first_byte: int, payload: bytes | bytearray | memoryview, mask: bytes | None
) -> bytes: ...
def parse_messages(
    data: bytes | bytearray,
    pos: int,
    expect_mask: int,
    max_size: int,
    out: list[str | bytes],
    inflate: Callable[[bytes, int], bytes] | None,
) -> int: ...
def utf8_check(data: bytes | bytearray | memoryview, state: int = 0, /) -> int: ...
def encode_text(text: str, /) -> bytes: ...
