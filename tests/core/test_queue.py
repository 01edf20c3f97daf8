"""The pure admission core: no limit exceeded, no admissible run left waiting."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from rivers.core.queue import (
    READY_SLACK,
    Bucket,
    LimitRule,
    QueuedRun,
    QueueState,
    binding_tag_limit,
    bucket_counts,
)


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


def _reference_tick(
    queued: dict[str, QueuedRun],
    state: QueueState,
    in_flight: int,
    bucket_counts: dict[Bucket, int],
) -> list[str]:
    """Admit by scanning every queued run each time: slow, obviously right."""
    limits = {rule.ident: rule.limit for rule in state.rules}
    counts = dict(bucket_counts)
    admitted: list[str] = []
    capacity = state.max_concurrent_runs - in_flight
    waiting = sorted(queued.values())
    while capacity > 0:
        for run in waiting:
            signature = state.signature(dict(run.tags))
            if all(counts.get(b, 0) < limits[b[0]] for b in signature):
                for bucket in signature:
                    counts[bucket] = counts.get(bucket, 0) + 1
                admitted.append(run.run_id)
                waiting.remove(run)
                capacity -= 1
                break
        else:
            break
    return admitted


steps = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 3), run_tags),
        st.tuples(st.just("discard"), st.integers(0, 40)),
        st.tuples(st.just("finish"), st.integers(0, 40)),
        st.tuples(st.just("elsewhere"), run_tags),
        st.tuples(st.just("tick"), st.integers(0, 6)),
    ),
    max_size=80,
)


@settings(max_examples=300)
@given(max_runs=st.integers(0, 6), script=steps)
def test_parking_blocked_groups_admits_exactly_what_a_full_scan_would(
    max_runs: int, script: list[tuple[object, ...]]
) -> None:
    # Runs come and go between ticks, in-flight runs finish, and another process
    # admits runs of its own (counts change under the state): every tick must
    # admit exactly the runs a rescan of the whole queue would, in the same order.
    state = QueueState(max_concurrent_runs=max_runs, rules=RULES)
    queued: dict[str, QueuedRun] = {}
    in_flight: list[dict[str, str]] = []
    tags_of: dict[str, dict[str, str]] = {}
    for index, step in enumerate(script):
        if step[0] == "add":
            priority, tags = step[1], step[2]
            assert isinstance(priority, int)
            assert isinstance(tags, dict)
            run = QueuedRun(-priority, float(index), f"r{index}", tuple(tags.items()))
            queued[run.run_id] = run
            tags_of[run.run_id] = tags
            state.add(run)
        elif step[0] == "discard" and queued:
            assert isinstance(step[1], int)
            run_id = sorted(queued)[step[1] % len(queued)]
            del queued[run_id]
            state.discard(run_id)
        elif step[0] == "finish" and in_flight:
            assert isinstance(step[1], int)
            in_flight.pop(step[1] % len(in_flight))
        elif step[0] == "elsewhere":
            assert isinstance(step[1], dict)
            in_flight.append(step[1])
        elif step[0] == "tick":
            counts: dict[Bucket, int] = {}
            for tags in in_flight:
                for bucket in state.signature(tags):
                    counts[bucket] = counts.get(bucket, 0) + 1
            expected = _reference_tick(queued, state, len(in_flight), counts)
            result = state.tick(len(in_flight), counts)
            assert [a.run_id for a in result.admitted] == expected
            for run_id in expected:
                del queued[run_id]
                in_flight.append(tags_of[run_id])
            assert sorted(state.queued_ids()) == sorted(queued)


def test_a_blocked_group_is_not_checked_again_until_its_bucket_changes() -> None:
    rule = LimitRule("tenant", None, 1, per_unique_value=True)
    state = QueueState(max_concurrent_runs=100, rules=(rule,))
    for index in range(1000):
        state.add(_run(f"r{index}", at=index, tenant="t"))
    state.add(_run("other", at=2000, tenant="u"))
    first = state.tick(in_flight=0, bucket_counts={})
    assert [a.run_id for a in first.admitted] == ["r0", "other"]
    assert first.blocked == {"r1": "tag limit tenant=t 1/1"}
    # Nothing changed: the parked group is not looked at, nothing is reported.
    full: dict[Bucket, int] = {
        ("tenant=*", "tenant", "t"): 1,
        ("tenant=*", "tenant", "u"): 1,
    }
    again = state.tick(in_flight=2, bucket_counts=full)
    assert again.admitted == []
    assert again.blocked == {}
    assert state.ready == []
    assert state.released == {}
    # r0 finished: its bucket changed, so the group's head is checked and admitted.
    del full[("tenant=*", "tenant", "t")]
    freed = state.tick(in_flight=1, bucket_counts=full)
    assert [a.run_id for a in freed.admitted] == ["r1"]


def test_discarding_the_head_of_a_group_lets_the_next_run_in() -> None:
    state = QueueState(max_concurrent_runs=5)
    state.add(_run("canceled", at=1))
    state.add(_run("next", at=2))
    state.discard("canceled")
    assert [a.run_id for a in state.tick(0, {}).admitted] == ["next"]


def test_groups_parked_again_behind_a_released_bucket_are_not_lost() -> None:
    # team=a is released while its token is still waiting in line, and more
    # groups are parked under it meanwhile: releasing it again must merge both.
    team = LimitRule("team", None, 1, per_unique_value=True)
    env = LimitRule("env", None, 10, per_unique_value=True)
    state = QueueState(max_concurrent_runs=3, rules=(team, env))
    busy_a = state.signature({"team": "a", "env": "elsewhere"})
    state.add(_run("P1", at=1.0, team="a", env="x"))
    state.add(_run("P2", at=2.0, team="a", env="y"))
    assert state.tick(1, dict.fromkeys(busy_a, 1)).admitted == []
    state.add(_run("G", at=0.1, team="a", env="z"))
    state.add(_run("H", at=0.2, team="a", env="w"))
    state.add(_run("I", at=0.3, team="c"))
    first = state.tick(1, {})  # G, then H blocked by G, then I; team=a's token waits
    assert [a.run_id for a in first.admitted] == ["G", "I"]
    assert first.blocked == {"H": "tag limit team=a 1/1"}
    order: list[str] = []
    for _ in range(3):  # each admitted run of team a finishes before the next tick
        result = state.tick(2, {})
        order.extend(a.run_id for a in result.admitted)
    assert order == ["H", "P1", "P2"]


def test_a_paused_queue_taking_submissions_and_cancellations_stays_bounded() -> None:
    # Nothing is admitted, so stale heap entries are never popped: they are
    # dropped by a rebuild instead, and admission is unchanged once it resumes.
    state = QueueState(max_concurrent_runs=0)
    for index in range(20_000):
        state.add(_run(f"r{index}", at=-index))  # each new run heads the line
        if index % 2:
            state.discard(f"r{index}")
    assert len(state) == 10_000
    assert len(state.ready) <= READY_SLACK + 4 * len(state.groups)
    state.max_concurrent_runs = 3
    admitted = [a.run_id for a in state.tick(0, {}).admitted]
    assert admitted == ["r19998", "r19996", "r19994"]


def test_a_run_put_back_after_a_lost_admission_keeps_its_place() -> None:
    state = QueueState(max_concurrent_runs=1)
    for index, run_id in enumerate(["a", "b", "c"]):
        state.add(QueuedRun(0, float(index), run_id))
    (first,) = state.tick(0, {}).admitted
    assert (first.run_id, first.created_at) == ("a", 0.0)
    state.readd(first)  # another process took the capacity: back in line
    assert [a.run_id for a in state.tick(0, {}).admitted] == ["a"]
    assert [a.run_id for a in state.tick(0, {}).admitted] == ["b"]


def test_many_runs_with_few_tag_sets_share_their_signatures() -> None:
    rules = (LimitRule("tenant", None, 1, True),)
    state = QueueState(max_concurrent_runs=10, rules=rules)
    for index in range(1000):
        state.add(
            QueuedRun(0, float(index), f"r{index}", (("tenant", f"t{index % 3}"),))
        )
    assert len({id(signature) for signature in state.members.values()}) == 3


def test_the_bucket_counter_counts_each_in_flight_run_in_each_of_its_buckets() -> None:
    prod = LimitRule("env", "prod", 3, False)
    per_team = LimitRule("team", None, 2, True)
    any_tenant = LimitRule("tenant", None, 1, False)
    in_flight = [
        {"env": "prod", "team": "a"},
        {"env": "dev", "team": "a", "tenant": "x"},
        {"team": "b", "tenant": "y"},
        {},
    ]
    assert bucket_counts((prod, per_team, any_tenant), in_flight) == {
        ("env=prod", "env", "prod"): 1,
        ("team=*", "team", "a"): 2,
        ("team=*", "team", "b"): 1,
        ("tenant", "tenant", None): 2,
    }
    assert bucket_counts((), in_flight) == {}


@given(
    st.lists(
        st.dictionaries(st.sampled_from(["env", "team"]), st.sampled_from("ab")),
        max_size=12,
    ),
    st.dictionaries(st.sampled_from(["env", "team"]), st.sampled_from("ab")),
)
def test_the_binding_tag_limit_is_the_first_full_bucket_the_counter_sees(
    in_flight: list[dict[str, str]], tags: dict[str, str]
) -> None:
    rules = (LimitRule("env", "a", 2, False), LimitRule("team", None, 3, True))
    counts = bucket_counts(rules, in_flight)
    full = [
        (rule, bucket, counts.get(bucket, 0))
        for rule in rules
        if (bucket := rule.bucket(tags)) is not None
        and counts.get(bucket, 0) >= rule.limit
    ]
    assert binding_tag_limit(rules, tags, in_flight) == (full[0] if full else None)
