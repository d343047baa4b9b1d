"""The websocket trigger's interval-mode semantics, without sockets."""

from __future__ import annotations

import pytest

from media.windows import Latest, SlidingWindow


def test_window_emits_only_after_chunk_bytes_of_new_data():
    window = SlidingWindow(chunk_bytes=4, max_bytes=10, trim_bytes=3)
    window.append(b"abc")
    assert window.take() is None  # 3 new bytes < chunk_bytes
    window.append(b"d")
    assert window.take() == b"abcd"
    assert window.take() is None  # nothing new since
    window.append(b"efgh")
    assert window.take() == b"abcdefgh"  # the whole buffer, not just the new bytes
    assert window.total == 8


def test_window_trims_whole_steps_from_the_front():
    window = SlidingWindow(chunk_bytes=1, max_bytes=10, trim_bytes=3)
    window.append(b"0123456789")
    assert window.take() == b"0123456789"  # exactly max_bytes: no trim
    window.append(b"A")  # 11 > 10: drop 3 -> 8
    assert window.take() == b"3456789A"
    window.append(b"BCDEFGHIJKLMN")  # 21 bytes: drop 4 x 3 = 12 -> 9, one slice
    assert window.take() == b"FGHIJKLMN"
    assert window.total == 24 and len(window) == 9


def test_window_rejects_inconsistent_sizes():
    with pytest.raises(ValueError):
        SlidingWindow(chunk_bytes=1, max_bytes=10, trim_bytes=11)
    with pytest.raises(ValueError):
        SlidingWindow(chunk_bytes=11, max_bytes=10, trim_bytes=1)


def test_latest_replaces_and_says_so():
    latest: Latest[str] = Latest()
    assert latest.take() is None
    assert latest.offer("a") is False
    assert latest.offer("b") is True  # "a" was dropped
    assert latest.take() == "b"
    assert latest.take() is None
