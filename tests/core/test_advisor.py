"""The limit advisor's replay: known cases and properties of a FIFO pool."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from rivers.core.advisor import Hold, advise, peak_demand, replay, saturation


def _holds(*specs: tuple[float, float, int]) -> list[Hold]:
    return [
        Hold(f"s{i}", arrived, held, slots)
        for i, (arrived, held, slots) in enumerate(specs)
    ]


def test_four_one_second_steps_through_two_slots_wait_zero_zero_one_one() -> None:
    outcome = replay(_holds(*[(0.0, 1.0, 1)] * 4), 2)
    assert outcome.waits == (0.0, 0.0, 1.0, 1.0)
    assert outcome.p95_wait_s == 1.0
    assert outcome.utilisation == 1.0


def test_a_large_claim_at_the_head_is_not_overtaken() -> None:
    # s1 needs both slots and arrives while s0 holds one; s2 (1 slot) arrives later
    # and would fit beside s0, but must wait behind s1 (the pool core's rule).
    outcome = replay(_holds((0.0, 1.0, 1), (0.1, 1.0, 2), (0.2, 0.5, 1)), 2)
    assert outcome.waits == pytest.approx((0.0, 0.9, 1.8))


def test_a_release_frees_slots_before_an_arrival_at_the_same_instant() -> None:
    outcome = replay(_holds((0.0, 1.0, 1), (1.0, 1.0, 1)), 1)
    assert outcome.waits == (0.0, 0.0)


def test_advise_runs_from_the_largest_claim_to_the_peak_demand() -> None:
    holds = _holds((0.0, 1.0, 2), *[(0.0, 1.0, 1)] * 4)
    assert peak_demand(holds) == 6
    outcomes = advise(holds, current=3)
    assert [o.limit for o in outcomes] == [2, 3, 4, 5, 6]
    assert outcomes[-1].max_wait_s == 0.0
    enough = saturation(outcomes)
    assert enough is not None
    assert enough.limit == 6


def test_a_limit_below_a_recorded_claim_is_refused() -> None:
    with pytest.raises(ValueError, match="needs 3 slots"):
        replay(_holds((0.0, 1.0, 3)), 2)


single_slot_holds = st.lists(
    st.tuples(
        st.floats(0, 100, allow_nan=False),
        st.floats(0.001, 10, allow_nan=False),
        st.just(1),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200)
@given(specs=single_slot_holds, limit=st.integers(1, 8))
def test_more_slots_never_make_any_single_slot_step_wait_longer(
    specs: list[tuple[float, float, int]], limit: int
) -> None:
    holds = _holds(*specs)
    fewer = replay(holds, limit)
    more = replay(holds, limit + 1)
    for a, b in zip(fewer.waits, more.waits, strict=True):
        assert b <= a + 1e-9
    assert 0.0 <= fewer.utilisation <= 1.0


@settings(max_examples=200)
@given(specs=single_slot_holds)
def test_at_the_peak_demand_nobody_waits(specs: list[tuple[float, float, int]]) -> None:
    holds = _holds(*specs)
    assert replay(holds, peak_demand(holds)).max_wait_s == 0.0
