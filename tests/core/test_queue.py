"""The pure admission core: no limit exceeded, no admissible run left waiting."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from rivers.core.queue import Bucket, LimitRule, QueuedRun, QueueState


def _run(run_id: str, priority: int = 0, at: float = 0.0, **tags: str) -> QueuedRun:
    return QueuedRun(-priority, at, run_id, tuple(sorted(tags.items())))


def test_admits_by_priority_then_submission_up_to_the_limit() -> None:
    state = QueueState(max_concurrent_runs=2)
    state.add(_run("old", at=1))
    state.add(_run("new", at=2))
    state.add(_run("urgent", priority=5, at=3))
    result = state.tick(in_flight=0, bucket_counts={})
    assert [a.run_id for a in result.admitted] == ["urgent", "old"]
    assert result.global_reason == "max_concurrent_runs 2/2 in flight"


def test_zero_pauses_admission() -> None:
    state = QueueState(max_concurrent_runs=0)
    state.add(_run("a"))
    result = state.tick(in_flight=0, bucket_counts={})
    assert result.admitted == []
    assert result.global_reason == "max_concurrent_runs 0/0 in flight"


def test_seed_ordering_tag_blocked_run_does_not_hold_back_others() -> None:
    # A and B tagged team=docs with limit 1, C untagged: A, C, then B.
    rule = LimitRule("team", "docs", 1, per_unique_value=False)
    state = QueueState(max_concurrent_runs=10, rules=(rule,))
    state.add(_run("A", at=1, team="docs"))
    state.add(_run("B", at=2, team="docs"))
    state.add(_run("C", at=3))
    first = state.tick(in_flight=0, bucket_counts={})
    assert [a.run_id for a in first.admitted] == ["A", "C"]
    assert first.blocked == {"B": "tag limit team=docs 1/1"}
    second = state.tick(in_flight=0, bucket_counts={})
    assert [a.run_id for a in second.admitted] == ["B"]


def test_per_unique_value_limits_each_value_separately() -> None:
    rule = LimitRule("team", None, 1, per_unique_value=True)
    state = QueueState(max_concurrent_runs=10, rules=(rule,))
    for run_id, team in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        state.add(_run(run_id, team=team))
    result = state.tick(in_flight=0, bucket_counts={})
    assert sorted(a.run_id for a in result.admitted) == ["a1", "b1"]
    assert result.blocked == {"a2": "tag limit team=a 1/1"}


def test_key_only_limit_counts_every_value() -> None:
    rule = LimitRule("customer", None, 2, per_unique_value=False)
    state = QueueState(max_concurrent_runs=10, rules=(rule,))
    for index, customer in enumerate(("x", "y", "z")):
        state.add(_run(f"r{index}", at=index, customer=customer))
    result = state.tick(in_flight=0, bucket_counts={})
    assert [a.run_id for a in result.admitted] == ["r0", "r1"]
    assert result.blocked == {"r2": "tag limit customer 2/2"}


RULES = (
    LimitRule("env", "prod", 2, per_unique_value=False),
    LimitRule("team", None, 1, per_unique_value=True),
    LimitRule("customer", None, 3, per_unique_value=False),
)

run_tags = st.fixed_dictionaries(
    {},
    optional={
        "env": st.sampled_from(["prod", "dev"]),
        "team": st.sampled_from(["a", "b", "c"]),
        "customer": st.sampled_from(["x", "y"]),
    },
)


@settings(max_examples=200)
@given(
    max_runs=st.integers(0, 6),
    runs=st.lists(st.tuples(st.integers(0, 3), run_tags), max_size=25),
    finish_pattern=st.lists(st.booleans(), max_size=60),
)
def test_no_limit_exceeded_and_no_admissible_run_left_waiting(
    max_runs: int,
    runs: list[tuple[int, dict[str, str]]],
    finish_pattern: list[bool],
) -> None:
    state = QueueState(max_concurrent_runs=max_runs, rules=RULES)
    tags_of: dict[str, dict[str, str]] = {}
    for index, (priority, tags) in enumerate(runs):
        run_id = f"r{index}"
        tags_of[run_id] = tags
        state.add(
            QueuedRun(-priority, float(index), run_id, tuple(sorted(tags.items())))
        )
    in_flight: list[str] = []
    for finish_one in [*finish_pattern, False]:
        if finish_one and in_flight:
            in_flight.pop(0)
        counts: dict[Bucket, int] = {}
        for run_id in in_flight:
            for bucket in state.signature(tags_of[run_id]):
                counts[bucket] = counts.get(bucket, 0) + 1
        result = state.tick(len(in_flight), counts)
        in_flight.extend(a.run_id for a in result.admitted)
        # Limits hold.
        assert len(in_flight) <= max_runs
        totals: dict[Bucket, int] = {}
        for run_id in in_flight:
            for bucket in state.signature(tags_of[run_id]):
                totals[bucket] = totals.get(bucket, 0) + 1
        limits = {rule.ident: rule.limit for rule in RULES}
        assert all(count <= limits[bucket[0]] for bucket, count in totals.items())
        # Nobody admissible is left waiting while capacity remains.
        if len(in_flight) < max_runs:
            for run_id in state.queued_ids():
                assert any(
                    totals.get(bucket, 0) >= limits[bucket[0]]
                    for bucket in state.signature(tags_of[run_id])
                ), run_id
