"""``MessageQueue``: what the reader thread queues and ``recv()`` takes."""

from __future__ import annotations

import threading

import pytest

from tests.utils import MS
from ws13.exceptions import ConcurrencyError, ConnectionClosedError, ConnectionClosedOK
from ws13.frames import Close, Fragment
from ws13.sync.messages import MessageQueue

from .helpers import TIMEOUT, start_thread, wait_until

OK = ConnectionClosedOK(Close(1000, ""), Close(1000, ""), False)


def test_whole_messages_in_order() -> None:
    queue = MessageQueue()
    for message in ("a", b"b", "c"):
        queue.put(message)
    assert [queue.get(0) for _ in range(3)] == ["a", b"b", "c"]


def test_decode() -> None:
    queue = MessageQueue()
    queue.put("é")
    queue.put(b"\xc3\xa9")
    assert queue.get(0, decode=False) == b"\xc3\xa9"
    assert queue.get(0, decode=True) == "é"
    queue.put(b"\xff")
    with pytest.raises(UnicodeDecodeError):
        queue.get(0, decode=True)


def test_fragments_are_joined() -> None:
    queue = MessageQueue()
    queue.put(Fragment("fra", False))
    queue.put(Fragment("gments", True))
    queue.put(Fragment(b"by", False))
    queue.put(Fragment(b"tes", True))
    assert queue.get(0) == "fragments"
    assert queue.get(0) == b"bytes"


def test_timeout_keeps_a_partial_message() -> None:
    queue = MessageQueue()
    queue.put(Fragment(b"head-", False))
    with pytest.raises(TimeoutError):
        queue.get(10 * MS)
    queue.put(Fragment(b"tail", True))
    assert queue.get(0) == b"head-tail"


def test_get_waits_for_a_message_from_another_thread() -> None:
    queue = MessageQueue()
    threading.Timer(10 * MS, queue.put, ("late",)).start()
    assert queue.get(TIMEOUT) == "late"


def test_get_iter_yields_pieces() -> None:
    queue = MessageQueue()
    queue.put(Fragment("a", False))
    queue.put(Fragment("b", True))
    queue.put("whole")
    assert list(queue.get_iter()) == ["a", "b"]
    assert list(queue.get_iter(decode=False)) == [b"whole"]


def test_one_reader_at_a_time() -> None:
    queue = MessageQueue()
    queue.put(Fragment("a", False))
    stream = queue.get_iter()
    assert next(stream) == "a"
    with pytest.raises(ConcurrencyError):
        queue.get(0)
    queue.put(Fragment("b", True))
    assert list(stream) == ["b"]
    queue.put("free again")
    assert queue.get(0) == "free again"


def test_close_raises_after_the_queued_messages() -> None:
    queue = MessageQueue()
    queue.put("last")
    queue.close(OK)
    assert queue.get(0) == "last"
    for _ in range(2):
        with pytest.raises(ConnectionClosedOK) as caught:
            queue.get(None)
        assert caught.value is not OK  # a fresh exception per raise


def test_close_wakes_a_waiting_reader() -> None:
    queue = MessageQueue()
    error = ConnectionClosedError(None, None)
    threading.Timer(10 * MS, queue.close, (error,)).start()
    with pytest.raises(ConnectionClosedError):
        queue.get(TIMEOUT)


def test_reader_thread_waits_while_full_until_drained_to_low() -> None:
    queue = MessageQueue(4, 1)
    for n in range(4):
        queue.put(str(n))
    waiter = start_thread(queue.wait_below_high_water)
    wait_until(lambda: queue.paused)
    queue.get(0)
    queue.get(0)
    waiter.join(20 * MS)
    assert waiter.is_alive()  # 2 left: above the low-water mark
    queue.get(0)
    waiter.join(TIMEOUT)
    assert not waiter.is_alive()
    assert not queue.paused


def test_stop_pausing_releases_the_reader_thread_for_good() -> None:
    queue = MessageQueue(1)
    queue.put("x")
    waiter = start_thread(queue.wait_below_high_water)
    wait_until(lambda: queue.paused)
    queue.stop_pausing()
    waiter.join(TIMEOUT)
    assert not waiter.is_alive()
    queue.put("y")
    queue.wait_below_high_water()  # returns at once


def test_no_limit() -> None:
    queue = MessageQueue(None)
    for n in range(1000):
        queue.put(str(n))
    queue.wait_below_high_water()
    assert not queue.paused


@pytest.mark.parametrize(("high", "low"), [(0, None), (4, 5), (4, -1)])
def test_invalid_water_marks(high: int, low: int | None) -> None:
    with pytest.raises(ValueError, match="max_queue"):
        MessageQueue(high, low)
