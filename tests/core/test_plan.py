"""The pure plan of a run: which steps may start, and what a step's end means."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from rivers.core.plan import PlanState, StepOutcome

SUCCEEDED = StepOutcome.SUCCEEDED
FAILED = StepOutcome.FAILED
SKIPPED = StepOutcome.SKIPPED
CANCELED = StepOutcome.CANCELED

# raw -> clean -> report, raw -> stats, and an unrelated "other".
UPSTREAM: dict[str, tuple[str, ...]] = {
    "raw": (),
    "other": (),
    "clean": ("raw",),
    "stats": ("raw",),
    "report": ("clean", "stats"),
}
ORDER = ["raw", "other", "clean", "stats", "report"]


def _plan(selection: list[str] | None = None) -> PlanState:
    return PlanState.build(selection or ORDER, UPSTREAM)


def test_initial_ready_steps_are_those_without_upstream_in_plan_order() -> None:
    plan = _plan()
    assert plan.initial() == ["raw", "other"]
    assert plan.started == {"raw", "other"}
    assert not plan.done


def test_upstream_outside_the_selection_does_not_hold_a_step_back() -> None:
    plan = _plan(["clean", "report"])
    assert plan.upstream == {"clean": (), "report": ("clean",)}
    assert plan.initial() == ["clean"]


def test_a_step_is_ready_only_when_every_upstream_step_succeeded() -> None:
    plan = _plan()
    plan.initial()
    assert plan.finish("raw", SUCCEEDED) == (["clean", "stats"], [])
    assert plan.finish("clean", SUCCEEDED) == ([], [])
    assert "report" not in plan.started
    assert plan.finish("stats", SUCCEEDED) == (["report"], [])
    assert "report" in plan.started


def test_a_failure_skips_every_transitive_downstream_step_only() -> None:
    plan = _plan()
    plan.initial()
    ready, skipped = plan.finish("raw", FAILED)
    assert ready == []
    assert skipped == ["clean", "stats", "report"]
    assert all(plan.outcome[s] is SKIPPED for s in skipped)
    assert "other" not in plan.outcome  # unrelated step still runs
    assert set(plan.outcome) == {"raw", "clean", "stats", "report"}
    assert plan.finish("other", SUCCEEDED) == ([], [])
    assert plan.done
    assert not plan.succeeded


def test_a_failure_after_a_sibling_succeeded_skips_their_common_child() -> None:
    plan = _plan()
    plan.initial()
    plan.finish("raw", SUCCEEDED)
    assert plan.finish("clean", SUCCEEDED) == ([], [])
    assert plan.finish("stats", FAILED) == ([], ["report"])
    assert plan.outcome["report"] is SKIPPED


def test_a_sibling_succeeding_after_a_failure_does_not_start_the_skipped_child() -> (
    None
):
    plan = _plan()
    plan.initial()
    plan.finish("raw", SUCCEEDED)
    assert plan.finish("stats", FAILED) == ([], ["report"])
    assert plan.finish("clean", SUCCEEDED) == ([], [])
    assert "report" not in plan.started
    assert plan.outcome["report"] is SKIPPED


def test_a_canceled_step_skips_its_downstream() -> None:
    plan = _plan(["raw", "clean"])
    plan.initial()
    assert plan.finish("raw", CANCELED) == ([], ["clean"])


def test_cancel_unstarted_marks_only_steps_that_never_started() -> None:
    plan = _plan()
    plan.initial()
    plan.finish("raw", SUCCEEDED)  # clean and stats start
    assert plan.cancel_unstarted() == ["report"]
    assert plan.outcome["report"] is CANCELED
    assert "other" not in plan.outcome  # running: its runner reports its end
    for running in ("other", "clean", "stats"):
        assert plan.finish(running, CANCELED) == ([], [])
    assert plan.done
    assert plan.outcome == {
        "raw": SUCCEEDED,
        "other": CANCELED,
        "clean": CANCELED,
        "stats": CANCELED,
        "report": CANCELED,
    }


def test_a_running_step_that_succeeds_after_cancel_starts_nothing() -> None:
    plan = _plan(["raw", "clean"])
    plan.initial()
    assert plan.cancel_unstarted() == ["clean"]
    assert plan.finish("raw", SUCCEEDED) == ([], [])
    assert plan.done


def test_all_succeeded_means_done_and_succeeded() -> None:
    plan = _plan()
    pending = plan.initial()
    while pending:
        ready, skipped = plan.finish(pending.pop(0), SUCCEEDED)
        assert skipped == []
        pending.extend(ready)
    assert plan.done
    assert plan.succeeded
    assert set(plan.outcome) == set(ORDER)


def test_an_empty_plan_is_done_at_once() -> None:
    plan = PlanState.build([], {})
    assert plan.initial() == []
    assert plan.done
    assert plan.succeeded


# ---------------------------------------------------------------- property test


@st.composite
def runs(draw: st.DrawFn) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """A random DAG over n0..nk and a random selection, in dependency order."""
    size = draw(st.integers(min_value=1, max_value=12))
    names = [f"n{i}" for i in range(size)]
    upstream = {
        name: tuple(sorted(draw(st.sets(st.sampled_from(names[:i]))))) if i else ()
        for i, name in enumerate(names)
    }
    chosen = draw(st.sets(st.sampled_from(names), min_size=1))
    return upstream, [n for n in names if n in chosen]


def _ancestors(plan: PlanState, step: str) -> set[str]:
    seen: set[str] = set()
    stack = list(plan.upstream[step])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(plan.upstream[node])
    return seen


@settings(max_examples=200, deadline=None)
@given(runs(), st.data())
def test_random_runs_end_with_one_outcome_per_step_in_dependency_order(
    run: tuple[dict[str, tuple[str, ...]], list[str]], data: st.DataObject
) -> None:
    upstream, selection = run
    plan = PlanState.build(selection, upstream)
    cancel_after = data.draw(st.none() | st.integers(min_value=0, max_value=12))
    reported: dict[str, list[str]] = {step: [] for step in selection}
    running: list[str] = []
    finished = 0
    canceled = False

    def start(steps: list[str]) -> None:
        for step in steps:
            assert not canceled, f"{step} started after cancel_unstarted"
            # Every in-run upstream step succeeded before this one starts.
            for up in plan.upstream[step]:
                assert plan.outcome.get(up) is SUCCEEDED, (step, up)
            reported[step].append("started")
            running.append(step)

    start(plan.initial())
    while running:
        if cancel_after is not None and finished == cancel_after and not canceled:
            for step in plan.cancel_unstarted():
                reported[step].append("canceled")
            canceled = True
        step = data.draw(st.sampled_from(running))
        running.remove(step)
        choices = [SUCCEEDED, CANCELED] if canceled else [SUCCEEDED, FAILED]
        outcome = data.draw(st.sampled_from(choices))
        ready, skipped = plan.finish(step, outcome)
        finished += 1
        reported[step].append(outcome.value)
        for skipped_step in skipped:
            reported[skipped_step].append("skipped")
        start(ready)

    assert plan.done
    assert set(plan.outcome) == set(selection)
    for step, history in reported.items():
        # Each step is started-then-ended, or ended without starting: exactly once.
        ends = [h for h in history if h != "started"]
        assert len(ends) == 1, (step, history)
        assert history.count("started") <= 1
        outcome = plan.outcome[step]
        if history[0] == "started":
            assert outcome in (SUCCEEDED, FAILED, CANCELED)
        elif history == ["skipped"]:
            assert outcome is SKIPPED
            assert any(
                plan.outcome[a] in (FAILED, CANCELED) for a in _ancestors(plan, step)
            )
        else:
            assert history == ["canceled"]
            assert outcome is CANCELED
    if not canceled:
        # Without a cancel: skipped exactly when an ancestor failed.
        for step in selection:
            failed_ancestor = any(
                plan.outcome[a] is FAILED for a in _ancestors(plan, step)
            )
            assert (plan.outcome[step] is SKIPPED) == failed_ancestor
        assert plan.succeeded == all(o is SUCCEEDED for o in plan.outcome.values())


def test_levels_group_steps_by_their_longest_upstream_chain() -> None:
    plan = PlanState.build(
        ["a", "b", "c", "d", "e"],
        {"a": (), "b": ("a",), "c": (), "d": ("b", "c"), "e": ("a",)},
    )
    assert plan.levels() == [["a", "c"], ["b", "e"], ["d"]]
    assert PlanState.build([], {}).levels() == []


def test_ready_steps_come_highest_priority_first_then_in_plan_order() -> None:
    plan = PlanState.build(ORDER, UPSTREAM, {"other": 3, "stats": 7})
    assert plan.initial() == ["other", "raw"]
    ready, skipped = plan.finish("raw", SUCCEEDED)
    assert (ready, skipped) == (["stats", "clean"], [])
    negative = PlanState.build(ORDER, UPSTREAM, {"raw": -1})
    assert negative.initial() == ["other", "raw"]  # below the default 0
