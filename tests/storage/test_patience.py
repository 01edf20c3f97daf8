"""The retry rule both storage connections share: growing pauses, the last one
repeating, and no pause that would pass the patience."""

from __future__ import annotations

import time

from rivers.storage._patience import Patience


def test_the_pauses_grow_then_repeat_the_last() -> None:
    patience = Patience((0.1, 0.2, 0.5), patience_s=60)
    assert [patience.next_delay() for _ in range(5)] == [0.1, 0.2, 0.5, 0.5, 0.5]


def test_no_pause_may_pass_the_patience() -> None:
    patience = Patience((0.1, 0.2, 0.5), patience_s=0.35)
    assert [patience.next_delay() for _ in range(3)] == [0.1, 0.2, None]


def test_the_time_already_waited_counts() -> None:
    patience = Patience((0.05,), patience_s=0.08)
    assert patience.next_delay() == 0.05
    time.sleep(0.05)
    assert patience.waited_s >= 0.05
    assert patience.next_delay() is None
