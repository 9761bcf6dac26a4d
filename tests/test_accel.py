"""The selector between the C speedups and pure Python (ws13/_accel.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ws13._accel
import ws13.utils

# The C module is built by scripts/test.sh (WS13_BUILD_EXTENSION=yes), so these
# tests of the C twins against the pure-Python references always run.
from ws13 import _speedups
from ws13.exceptions import ProtocolError
from ws13.extensions.permessage_deflate import max_compressed_size
from ws13.frames import Frame, Opcode


def _python(code: str, no_extensions: str) -> str:
    """What ``code`` prints in a fresh interpreter, WS13_NO_EXTENSIONS set so."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "WS13_NO_EXTENSIONS": no_extensions},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _using_speedups(env: dict[str, str]) -> str:
    code = "import ws13._accel as a; print(a.USING_SPEEDUPS, a.apply_mask.__module__)"
    return _python(code, env["WS13_NO_EXTENSIONS"])


class TestSelector:
    def test_no_extensions_forces_pure_python(self) -> None:
        assert _using_speedups({"WS13_NO_EXTENSIONS": "1"}) == "False ws13.utils"

    def test_speedups_used_when_built(self) -> None:
        # scripts/test.sh builds the C extension (WS13_BUILD_EXTENSION=yes).
        assert _using_speedups({"WS13_NO_EXTENSIONS": ""}) == "True ws13._speedups"

    @pytest.mark.parametrize("no_extensions", ["", "1"])
    def test_the_core_never_imports_asyncio(self, no_extensions: str) -> None:
        # The sans-I/O core does no I/O (shared/DESIGN.md), with or without C.
        code = (
            "import sys, ws13, ws13.protocol, ws13.client, ws13.server, ws13._accel as a\n"
            "print(a.USING_SPEEDUPS, 'asyncio' in sys.modules)"
        )
        output = _python(code, no_extensions)
        assert output.split() == [str(not no_extensions), "False"]

    def test_any_import_failure_of_the_extension_falls_back(self) -> None:
        # Not only ImportError: whatever the extension's import raises.
        code = (
            "import sys\n"
            "class Refuse:\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'ws13._speedups':\n"
            "            raise RuntimeError('refused')\n"
            "sys.meta_path.insert(0, Refuse())\n"
            "import ws13._accel as a, ws13.protocol as p\n"
            "print(a.USING_SPEEDUPS, len(p.Protocol(p.Side.CLIENT).send_message('hi')))"
        )
        output = _python(code, "")
        assert output.split() == ["False", "1"]

    def test_subinterpreters(self, tmp_path: Path) -> None:
        # A subinterpreter sharing the GIL gets its own copy of the module,
        # with its own state; one with its own GIL (3.12+) is refused the
        # extension, which declares no such support, and runs in pure
        # Python. The main interpreter keeps its speedups either way.
        out = tmp_path / "result"
        sub = (
            "import ws13._accel as a, ws13.protocol as p\n"
            "frame = p.Protocol(p.Side.CLIENT).send_message('hi')[0]\n"
            f"open({str(out)!r}, 'a').write(f'{{a.USING_SPEEDUPS}} {{len(frame)}}\\n')\n"
        )
        code = (
            "import sys, _testcapi\n"
            f"assert _testcapi.run_in_subinterp({sub!r}) == 0\n"
            "if sys.version_info >= (3, 12):\n"
            "    try:\n"
            "        import _interpreters as interpreters\n"
            "    except ImportError:\n"
            "        import _xxsubinterpreters as interpreters\n"
            "    interp = interpreters.create()\n"
            f"    interpreters.run_string(interp, {sub!r})\n"
            "    interpreters.destroy(interp)\n"
            "import ws13._accel as a\n"
            "print(a.USING_SPEEDUPS, len(a.MaskKeys().next()))"
        )
        output = _python(code, "")
        assert output.split() == ["True", "4"]
        lines = out.read_text().splitlines()
        expected = ["True 8"] + (["False 8"] if sys.version_info >= (3, 12) else [])
        assert lines == expected

    def test_this_process_follows_the_environment(self) -> None:
        forced = bool(os.environ.get("WS13_NO_EXTENSIONS"))
        assert ws13._accel.USING_SPEEDUPS is not forced
        if forced:
            assert ws13._accel.apply_mask is ws13.utils.apply_mask


MASK = b"\x37\xfa\x21\x3d"


class TestBuildFrame:
    @pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 4095, 65535, 65536, 70000])
    @pytest.mark.parametrize("mask", [None, MASK])
    def test_c_matches_python(self, length: int, mask: bytes | None) -> None:
        payload = os.urandom(length)
        expected = ws13.utils.build_frame(0x82, payload, mask)
        assert _speedups.build_frame(0x82, payload, mask) == expected
        assert expected == Frame(Opcode.BINARY, payload).serialize(mask=mask)

    def test_rfc_example(self) -> None:
        # RFC 6455 section 5.7: a masked "Hello".
        frame = _speedups.build_frame(0x81, b"Hello", MASK)
        assert frame == bytes.fromhex("818537fa213d7f9f4d5158")

    def test_bad_mask(self) -> None:
        with pytest.raises(ValueError, match="4 bytes"):
            _speedups.build_frame(0x81, b"", b"abc")


def frames(*parts: tuple[int, bytes], masked: bool = True) -> bytes:
    return b"".join(
        ws13.utils.build_frame(first, payload, MASK if masked else None) for first, payload in parts
    )


class TestParseMessages:
    """The C fast path consumes whole single-frame messages and nothing else."""

    def parse(
        self, data: bytes, expect_mask: int = 0x80, max_size: int = -1
    ) -> tuple[int, list[str | bytes]]:
        out: list[str | bytes] = []
        pos = _speedups.parse_messages(data, 0, expect_mask, max_size, out, None)
        return pos, out

    def test_consecutive_messages(self) -> None:
        data = frames((0x81, "héllo".encode()), (0x82, b"\x00\x01"), (0x81, b""))
        assert self.parse(data) == (len(data), ["héllo", b"\x00\x01", ""])

    def test_unmasked_for_clients(self) -> None:
        data = frames((0x81, b"hi"), (0x82, b"x" * 70000), masked=False)
        assert self.parse(data, expect_mask=0) == (len(data), ["hi", b"x" * 70000])

    @pytest.mark.parametrize(
        "stop",
        [
            (0x89, b"ping"),  # control frame
            (0x01, b"frag"),  # not FIN
            (0x00, b"cont"),  # continuation
            (0xC1, b"rsv1"),  # reserved bit
            (0x83, b"op 3"),  # unknown opcode
            (0x81, b"\xff"),  # invalid UTF-8
        ],
    )
    def test_stops_at_what_python_must_decide(self, stop: tuple[int, bytes]) -> None:
        first = frames((0x82, b"ok"))
        data = first + frames(stop, (0x82, b"after"))
        assert self.parse(data) == (len(first), [b"ok"])

    def test_stops_at_incomplete_frames(self) -> None:
        data = frames((0x82, b"ok"), (0x82, b"x" * 300))
        for cut in range(len(data) - 1, 8, -1):
            pos, out = self.parse(data[:cut])
            assert (pos, out) == (8, [b"ok"])

    def test_stops_at_wrong_masking(self) -> None:
        data = frames((0x82, b"ok"), masked=False)
        assert self.parse(data, expect_mask=0x80) == (0, [])

    def test_stops_above_max_size(self) -> None:
        data = frames((0x82, b"12345"))
        assert self.parse(data, max_size=4) == (0, [])
        assert self.parse(data, max_size=5) == (len(data), [b"12345"])


def _upper(payload: bytes, max_size: int) -> bytes:
    return payload.upper()


class TestParseMessagesInflate:
    """With an ``inflate`` callable, whole compressed frames (FIN + RSV1) go through it."""

    def parse(
        self, data: bytes, inflate: object, expect_mask: int = 0x80, max_size: int = 100
    ) -> tuple[int, list[str | bytes]]:
        out: list[str | bytes] = []
        pos = _speedups.parse_messages(data, 0, expect_mask, max_size, out, inflate)
        return pos, out

    def test_compressed_frames_are_inflated_plain_ones_not(self) -> None:
        calls: list[tuple[bytes, int]] = []

        def inflate(payload: bytes, max_size: int) -> bytes:
            calls.append((payload, max_size))
            return payload.upper()

        data = frames((0xC1, "héllo".encode()), (0x82, b"plain"), (0xC2, b"bin"))
        assert self.parse(data, inflate) == (len(data), ["HéLLO", b"plain", b"BIN"])
        # Unmasked before inflating; max_size passed as given.
        assert calls == [("héllo".encode(), 100), (b"bin", 100)]

    def test_unmasked_for_clients(self) -> None:
        data = frames((0xC2, b"abc"), masked=False)
        assert self.parse(data, _upper, expect_mask=0) == (len(data), [b"ABC"])

    @pytest.mark.parametrize(
        "stop",
        [
            (0xC9, b"ping"),  # RSV1 on a control frame
            (0x41, b"frag"),  # RSV1 without FIN
            (0xC0, b"cont"),  # RSV1 on a continuation
            (0xE1, b"rsv2"),  # RSV1 and RSV2
        ],
    )
    def test_stops_at_what_python_must_decide(self, stop: tuple[int, bytes]) -> None:
        first = frames((0xC2, b"ok"))
        data = first + frames(stop)
        assert self.parse(data, _upper) == (len(first), [b"OK"])

    def test_compressed_frames_may_pass_max_size_up_to_the_wire_bound(self) -> None:
        # max_size bounds the inflated message (inflate() checks it); the
        # wire allows DEFLATE's worst case, max_compressed_size(max_size).
        limit = max_compressed_size(100)
        at_limit = frames((0xC2, b"z" * limit))
        assert self.parse(at_limit, _upper) == (len(at_limit), [b"Z" * limit])
        assert self.parse(frames((0xC2, b"z" * (limit + 1))), _upper) == (0, [])
        assert self.parse(frames((0x82, b"z" * 101)), _upper) == (0, [])

    def test_without_inflate_compressed_frames_stop(self) -> None:
        data = frames((0xC2, b"ok"))
        assert self.parse(data, None) == (0, [])

    def test_inflate_errors_propagate_after_earlier_messages(self) -> None:
        def inflate(payload: bytes, max_size: int) -> bytes:
            raise ProtocolError("bad data")

        out: list[str | bytes] = []
        data = frames((0x82, b"ok"), (0xC2, b"x"))
        with pytest.raises(ProtocolError, match="bad data"):
            _speedups.parse_messages(data, 0, 0x80, -1, out, inflate)
        assert out == [b"ok"]

    def test_inflated_text_must_be_utf8(self) -> None:
        # The decompressor has consumed the frame: the caller fails with 1007.
        with pytest.raises(UnicodeDecodeError):
            self.parse(frames((0xC1, b"x")), lambda payload, max_size: b"caf\xe9")

    def test_inflate_must_return_bytes(self) -> None:
        with pytest.raises(TypeError, match="inflate\\(\\) must return bytes, not str"):
            self.parse(frames((0xC2, b"x")), lambda payload, max_size: "text")

    def test_inflate_must_be_callable(self) -> None:
        with pytest.raises(TypeError, match="argument 6 must be callable or None, not int"):
            self.parse(b"", 1)


class TestApplyMask:
    """The C loop's block sizes, unaligned input, and the GIL-releasing size."""

    @pytest.mark.parametrize(
        "length", [*range(70), 1023, 1024, 1025, 256 * 1024 - 1, 256 * 1024, 256 * 1024 + 5]
    )
    def test_c_matches_python(self, length: int) -> None:
        data = os.urandom(length)
        assert _speedups.apply_mask(data, MASK) == ws13.utils.apply_mask(data, MASK)

    @pytest.mark.parametrize("offset", range(1, 8))
    def test_unaligned_views(self, offset: int) -> None:
        data = os.urandom(1000)
        view = memoryview(bytearray(data))[offset:]
        assert _speedups.apply_mask(view, MASK) == ws13.utils.apply_mask(data[offset:], MASK)


class _Falsy:
    def __bool__(self) -> bool:
        raise RuntimeError("no truth value")


# The messages PyArg_ParseTuple gave before the functions took METH_FASTCALL, and
# (last) the check of pos, which then went unchecked to an out-of-bounds read.
ARGUMENT_ERRORS = [
    ("apply_mask", (b"a",), TypeError, "apply_mask() takes exactly 2 arguments (1 given)"),
    ("apply_mask", ("str", MASK), TypeError, "a bytes-like object is required, not 'str'"),
    ("apply_mask", (b"ab", None), TypeError, "a bytes-like object is required, not 'NoneType'"),
    ("apply_mask", (b"ab", bytearray(b"abcde")), ValueError, "mask must contain 4 bytes"),
    ("build_frame", (1, b""), TypeError, "build_frame() takes exactly 3 arguments (2 given)"),
    ("build_frame", ("x", b"", None), TypeError, "'str' object cannot be interpreted as an"),
    ("build_frame", (2**31, b"", None), OverflowError, "signed integer is greater than maximum"),
    ("build_frame", (-(2**31) - 1, b"", None), OverflowError, "integer is less than minimum"),
    ("build_frame", (1, "s", None), TypeError, "a bytes-like object is required, not 'str'"),
    ("build_frame", (1, b"", bytearray(MASK)), ValueError, "mask must contain 4 bytes"),
    ("parse_messages", (b"", 0, 1, -1, []), TypeError, "takes exactly 6 arguments (5 given)"),
    (
        "parse_messages",
        (b"", 0.0, 1, -1, [], None),
        TypeError,
        "'float' object cannot be interpreted",
    ),
    (
        "parse_messages",
        (b"", 2**70, 1, -1, [], None),
        OverflowError,
        "too large to convert to C ssize_t",
    ),
    ("parse_messages", (b"", 0, _Falsy(), -1, [], None), RuntimeError, "no truth value"),
    ("parse_messages", (b"", 0, 1, -1, (), None), TypeError, "argument 5 must be list, not tuple"),
    ("parse_messages", (b"", 0, 1, -1, None, None), TypeError, "argument 5 must be list, not None"),
    ("parse_messages", (b"\x82\x00", -1, 0, -1, [], None), ValueError, "pos must not be negative"),
]


class TestArguments:
    @pytest.mark.parametrize(("name", "args", "exc", "message"), ARGUMENT_ERRORS)
    def test_errors(self, name: str, args: tuple[object, ...], exc: type, message: str) -> None:
        with pytest.raises(exc) as info:
            getattr(_speedups, name)(*args)
        assert message in str(info.value)

    @pytest.mark.parametrize("name", ["apply_mask", "build_frame", "parse_messages"])
    def test_no_keywords(self, name: str) -> None:
        with pytest.raises(TypeError, match=rf"^{name}\(\) takes no keyword arguments$"):
            getattr(_speedups, name)(data=b"")

    @pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
    def test_bytes_like(self, kind: type) -> None:
        payload = bytes(range(200))
        frame = ws13.utils.build_frame(0x82, payload, MASK)
        assert _speedups.build_frame(0x82, kind(payload), MASK) == frame
        assert _speedups.apply_mask(kind(payload), kind(MASK)) == frame[8:]
        out: list[str | bytes] = []
        assert _speedups.parse_messages(kind(frame * 2), 0, 0x80, -1, out, None) == 2 * len(frame)
        assert out == [payload, payload]
