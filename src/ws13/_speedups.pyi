from collections.abc import Callable
from typing import Any

# The C twins of ws13.utils.MaskKeys and PayloadBuffer, typed as those classes.
from .utils import MaskKeys as MaskKeys
from .utils import PayloadBuffer as PayloadBuffer

#: The C twin of ws13.asyncio._stepcore.StepperCore.
StepperCore: Any

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
def install_receiver(
    connection: type,
    protocol: type,
    queue: type,
    open_state: object,
    inflate_errors: tuple[type, ...],
    /,
) -> None: ...
def install_sender(
    connection: type,
    protocol: type,
    twin: Callable[[Any, object], bool],
    copy_max: int,
    writelines_ok: bool,
    /,
) -> None: ...
def send_whole(connection: Any, message: object, /) -> bool: ...
