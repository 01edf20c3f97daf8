"""The pure pool decision core: limits hold, order is kept, nobody who can go waits."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rivers.core.pools import PoolState

POOLS = ("a", "b", "c")


def test_a_waiter_that_fits_is_granted_in_priority_then_arrival_order() -> None:
    state = PoolState(limits={"a": 1})
    state.add(("r", "low"), ("a",), 1, priority=0)
    state.add(("r", "high"), ("a",), 1, priority=5)
    granted = state.grants()
    assert [w.key for w in granted] == [("r", "high")]
    assert state.claimed["a"] == 1


def test_a_large_claim_at_the_head_is_not_overtaken_by_small_ones() -> None:
    state = PoolState(limits={"a": 4}, claimed={"a": 2})
    state.add(("r", "big"), ("a",), 4, priority=0)
    state.add(("r", "small"), ("a",), 1, priority=0)
    assert state.grants() == []
    assert not state.may_claim_now(("a",), 1, priority=0)
    state.release(("a",), 2)
    assert [w.key for w in state.grants()] == [("r", "big")]


def test_a_lowered_limit_drops_only_the_waiters_that_can_never_fit() -> None:
    state = PoolState(limits={"a": 2}, claimed={"a": 1})
    state.add(("r", "big"), ("a",), 2, priority=0)
    state.add(("r", "small"), ("a",), 1, priority=0)
    assert state.drop_impossible() == []
    state.observe("a", 1, 1)
    assert [w.key for w in state.drop_impossible()] == [("r", "big")]
    assert list(state.waiters) == [("r", "small")]
    assert state.drop_impossible() == []  # only pools whose limit changed


def test_a_limit_of_zero_pauses_rather_than_fails() -> None:
    state = PoolState(limits={"a": 2})
    state.add(("r", "big"), ("a",), 2, priority=0)
    state.observe("a", 0, 0)
    assert state.drop_impossible() == []
    assert state.grants() == []
    state.observe("a", 0, 2)
    assert [w.key for w in state.grants()] == [("r", "big")]


def test_a_line_led_elsewhere_holds_back_everyone_not_above_its_head() -> None:
    state = PoolState(limits={"a": 1})
    state.add(("r", "low"), ("a",), 1, priority=3)
    state.observe_behind("a", 5)
    assert state.grants() == []
    assert not state.may_claim_now(("a",), 1, priority=5)
    assert state.may_claim_now(("a",), 1, priority=6)
    state.observe("a", 0, 1)  # a fresh view of the pool forgets it
    assert [w.key for w in state.grants()] == [("r", "low")]


def test_multiple_pools_are_claimed_all_or_nothing() -> None:
    state = PoolState(limits={"a": 1, "b": 1}, claimed={"b": 1})
    state.add(("r", "both"), ("a", "b"), 1, priority=0)
    assert state.grants() == []
    assert state.claimed.get("a", 0) == 0  # nothing held while waiting for b
    state.release(("b",), 1)
    assert [w.key for w in state.grants()] == [("r", "both")]
    assert state.claimed == {"a": 1, "b": 1}


def test_claims_being_written_count_as_taken_until_they_end() -> None:
    state = PoolState(limits={"a": 2})
    state.begin_claim(("a",), 1)
    state.begin_claim(("a",), 1)
    assert not state.may_claim_now(("a",), 1, priority=0)
    state.add(("r", "next"), ("a",), 1, priority=0)
    assert state.grants() == []  # no slot is handed out twice
    state.end_claim(("a",), 1)  # that claim failed: its slot is free again
    assert [w.key for w in state.grants()] == [("r", "next")]
    state.end_claim(("a",), 1)
    assert state.writing == {}


def test_limit_zero_pauses_and_unlimited_always_fits() -> None:
    state = PoolState(limits={"a": 0, "u": None})
    assert not state.fits(("a",), 1)
    assert state.fits(("u",), 10_000)
    assert state.impossible(("a",), 1) is None  # paused, not impossible
    state.observe("a", 0, 2)
    assert state.impossible(("a",), 3) == "a"


class PoolMachine(RuleBasedStateMachine):
    """Random requests, releases, expiries and limit changes against PoolState."""

    def __init__(self) -> None:
        super().__init__()
        self.state = PoolState(limits={"a": 2, "b": 3, "c": None})
        self.holding: dict[tuple[str, str], tuple[tuple[str, ...], int]] = {}
        self.counter = 0

    def _grant(self) -> None:
        for waiter in self.state.grants():
            self.holding[waiter.key] = (waiter.pools, waiter.slots)

    @rule(
        pools=st.lists(st.sampled_from(POOLS), min_size=1, max_size=3, unique=True),
        slots=st.integers(1, 2),
        priority=st.integers(0, 2),
    )
    def request(self, pools: list[str], slots: int, priority: int) -> None:
        self.counter += 1
        key = ("run", f"s{self.counter}")
        needed = tuple(pools)
        if self.state.impossible(needed, slots) is not None:
            return
        if self.state.may_claim_now(needed, slots, priority):
            self.state.claim(needed, slots)
            self.holding[key] = (needed, slots)
        else:
            self.state.add(key, needed, slots, priority)
        self._grant()

    @precondition(lambda self: bool(self.holding))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.holding)))
        pools, slots = self.holding.pop(key)
        self.state.release(pools, slots)
        self._grant()

    @precondition(lambda self: bool(self.state.waiters))
    @rule(data=st.data())
    def cancel_waiter(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.state.waiters)))
        self.state.remove(key)
        self._grant()

    @rule(pool=st.sampled_from(("a", "b")), limit=st.integers(2, 4))
    def raise_limit(self, pool: str, limit: int) -> None:
        current = self.state.limits[pool]
        assert current is not None
        self.state.limits[pool] = max(current, limit)
        self._grant()

    @invariant()
    def claimed_matches_holders_and_limits_hold(self) -> None:
        for pool in POOLS:
            used = sum(s for pools, s in self.holding.values() if pool in pools)
            assert self.state.claimed.get(pool, 0) == used
            limit = self.state.limits.get(pool)
            if limit is not None:
                assert used <= limit

    @invariant()
    def no_waiter_that_could_go_is_left_waiting(self) -> None:
        # Every waiter either does not fit, or an earlier waiter holds its line.
        for waiter in self.state.waiters.values():
            if self.state.is_first_everywhere(waiter):
                assert not self.state.fits(waiter.pools, waiter.slots)


PoolMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40)
test_pool_state_machine = PoolMachine.TestCase


@given(
    st.lists(st.tuples(st.integers(1, 3), st.integers(0, 3)), min_size=1, max_size=12)
)
def test_grants_never_exceed_the_limit(requests: list[tuple[int, int]]) -> None:
    state = PoolState(limits={"a": 3})
    for index, (slots, priority) in enumerate(requests):
        state.add(("r", str(index)), ("a",), slots, priority)
    granted = state.grants()
    assert sum(w.slots for w in granted) <= 3
    assert state.claimed.get("a", 0) == sum(w.slots for w in granted)


def _reference_grants(
    waiters: list[tuple[tuple[int, int], tuple[str, ...], int]],
    limits: dict[str, int | None],
    claimed: dict[str, int],
) -> list[tuple[int, int]]:
    """The rule by brute force: every waiter in order, blocking pools transitively."""
    granted = []
    taken = dict(claimed)
    blocked: set[str] = set()
    for order, pools, slots in sorted(waiters):
        if blocked.intersection(pools):
            blocked.update(pools)
            continue
        if all(
            limits.get(p) is None or taken.get(p, 0) + slots <= limits[p]  # type: ignore[operator]
            for p in pools
        ):
            granted.append(order)
            for pool in pools:
                taken[pool] = taken.get(pool, 0) + slots
        else:
            blocked.update(pools)
    return granted


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("add"),
                st.lists(st.sampled_from(POOLS), min_size=1, max_size=3, unique=True),
                st.integers(1, 3),
                st.integers(0, 2),
            ),
            st.tuples(st.just("remove"), st.integers(0, 50)),
            st.tuples(st.just("release"), st.sampled_from(POOLS), st.integers(1, 3)),
            st.tuples(st.just("grant")),
        ),
        max_size=60,
    )
)
def test_ordered_lines_decide_exactly_like_a_scan_of_every_waiter(
    script: list[tuple[object, ...]],
) -> None:
    # Lines kept in order answer grants, places in line and a newcomer's check
    # exactly as scanning every waiter in order would.
    state = PoolState(limits={"a": 2, "b": 3, "c": None})
    for index, step in enumerate(script):
        if step[0] == "add":
            pools, slots, priority = step[1], step[2], step[3]
            assert isinstance(pools, list)
            assert isinstance(slots, int)
            assert isinstance(priority, int)
            state.add(("r", f"s{index}"), tuple(pools), slots, priority)
        elif step[0] == "remove" and state.waiters:
            assert isinstance(step[1], int)
            keys = sorted(state.waiters)
            state.remove(keys[step[1] % len(keys)])
        elif step[0] == "release":
            pool, slots = step[1], step[2]
            assert isinstance(pool, str)
            assert isinstance(slots, int)
            state.release((pool,), slots)
        elif step[0] == "grant":
            everyone = [(w.order, w.pools, w.slots) for w in state.waiters.values()]
            expected = _reference_grants(everyone, state.limits, state.claimed)
            assert [w.order for w in state.grants()] == expected
        for waiter in state.waiters.values():
            for pool in waiter.pools:
                ahead = sum(
                    1
                    for other in state.waiters.values()
                    if pool in other.pools and other.order < waiter.order
                )
                assert state.position(waiter.key, pool) == ahead + 1
        for pools in (("a",), ("a", "b"), ("c",)):
            newcomer = (0, state._seq + 1)
            nobody_ahead = not any(
                w.order < newcomer and set(w.pools) & set(pools)
                for w in state.waiters.values()
            )
            assert state.may_claim_now(pools, 1, 0) == (
                state.fits(pools, 1) and nobody_ahead
            )
