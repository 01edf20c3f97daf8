"""The pure queue controls: the stored form and what is in force."""

from __future__ import annotations

from rivers.core.queue import LimitRule
from rivers.core.queue_controls import QueueControls, in_force

PROD = LimitRule("env", "prod", 1, False)
TEAMS = LimitRule("team", None, 2, True)


def test_controls_round_trip_through_their_stored_form() -> None:
    controls = QueueControls(
        paused=True, max_concurrent_runs=4, tag_concurrency_limits=(PROD, TEAMS)
    )
    assert QueueControls.from_stored(controls.to_stored()) == controls
    assert QueueControls.from_stored(QueueControls().to_stored()) == QueueControls()


def test_malformed_stored_controls_read_as_none() -> None:
    for stored in (None, "paused", [1], {"paused": "yes", "max_concurrent_runs": -3}):
        assert QueueControls.from_stored(stored) == QueueControls()
    assert QueueControls.from_stored({"max_concurrent_runs": True}) == QueueControls()


def test_each_override_wins_over_the_repository_and_says_so() -> None:
    untouched = in_force(10, (PROD,), QueueControls())
    assert (untouched.max_concurrent_runs, untouched.max_concurrent_runs_source) == (
        10,
        "repository",
    )
    assert (untouched.rules, untouched.rules_source) == ((PROD,), "repository")
    limited = in_force(10, (PROD,), QueueControls(max_concurrent_runs=0))
    assert (limited.max_concurrent_runs, limited.max_concurrent_runs_source) == (
        0,
        "override",
    )
    assert limited.rules == (PROD,)
    no_tags = in_force(10, (PROD,), QueueControls(tag_concurrency_limits=()))
    assert (no_tags.rules, no_tags.rules_source) == ((), "override")
    assert in_force(10, (), QueueControls(paused=True)).paused
