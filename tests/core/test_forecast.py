"""The forecast replays a gate forward from its holders, its line and recent holds."""

from __future__ import annotations

import pytest

from rivers.core.forecast import Forecast, Gate, approx_seconds, forecast


def gate(
    capacity: int,
    holding: list[tuple[int, float]],
    ahead: list[int],
    need: int = 1,
    holds: tuple[float, ...] = (1.0,),
) -> Gate:
    return Gate("pool p", capacity, holding, ahead, need, holds, noun="step")


@pytest.mark.parametrize(
    ("ahead", "expected"),
    [([], 1.0), ([1], 1.0), ([1, 1], 2.0), ([1, 1, 1], 2.0), ([1] * 4, 3.0)],
)
def test_waiters_ahead_take_the_freed_units_in_line_order(
    ahead: list[int], expected: float
) -> None:
    # Two holders that just started, each holding 1 of 2 for the mean 1 s.
    assert forecast(gate(2, [(1, 0.0), (1, 0.0)], ahead)).seconds == expected


def test_time_already_held_counts_and_an_overdue_holder_frees_now() -> None:
    assert forecast(gate(1, [(1, 0.25)], [])).seconds == 0.75
    assert forecast(gate(1, [(1, 5.0)], [])).seconds == 0.0
    assert forecast(gate(3, [(1, 0.0)], [])).seconds == 0.0  # room now


def test_a_waiter_needing_several_units_waits_until_enough_are_free() -> None:
    # 2 of 4 held for another 1.5 s; a 3-slot waiter ahead takes them at 1.5 s
    # and holds 3 until 3.5 s; this 2-slot waiter fits only then.
    result = forecast(gate(4, [(2, 0.5)], [3], need=2, holds=(2.0,)))
    assert result.seconds == 3.5


def test_the_mean_of_the_recent_holds_is_the_hold_time() -> None:
    result = forecast(gate(1, [(1, 0.0)], [1], holds=(1.0, 2.0, 3.0)))
    assert result.seconds == 4.0
    assert result.basis == (
        "1 ahead, 1/1 held; a step holds it ~2 s, mean of the last 3"
    )
    assert result.describe() == f"expected in ~4 s ({result.basis})"


@pytest.mark.parametrize(
    ("case", "basis"),
    [
        (gate(0, [], []), "pool p is paused at limit 0"),
        (gate(2, [], [], need=3), "needs 3 of pool p's 2: raise it"),
        (
            gate(1, [(1, 0.0)], [1], holds=()),
            "1 ahead, 1/1 held; no finished step to learn from yet",
        ),
    ],
)
def test_unknown_when_the_gate_cannot_open_or_nothing_was_learned(
    case: Gate, basis: str
) -> None:
    assert forecast(case) == Forecast(None, basis)
    assert forecast(case).describe() == f"expected start unknown ({basis})"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.42, "~0.4 s"), (12.4, "~12 s"), (180, "~3 min"), (9000, "~2.5 h")],
)
def test_forecasts_are_rounded_for_people(seconds: float, text: str) -> None:
    assert approx_seconds(seconds) == text
