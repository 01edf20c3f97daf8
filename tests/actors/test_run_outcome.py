"""How a failed run's reason names its failed steps and why each failed."""

from __future__ import annotations

from rivers.actors.run_outcome import (
    GIST_CHARS,
    NAMED_STEPS,
    StepTrack,
    failure_reason,
)
from rivers.storage.records import StepStatus


def _failed(error: str | None) -> StepTrack:
    track = StepTrack()
    track.end(StepStatus.FAILURE, error)
    return track


def test_one_failed_step_gives_its_whole_error() -> None:
    tracks = {"a": _failed("ValueError: bad row\n  at line 3"), "b": StepTrack()}
    assert failure_reason(tracks, None) == "ValueError: bad row\n  at line 3"


def test_several_failed_steps_each_say_why_in_one_line() -> None:
    tracks = {
        "heavy": _failed("run r1: lease of step heavy on pool p2 expired\nmore"),
        "both": _failed("KeyError: 'x'"),
        "fine": StepTrack(),
    }
    assert failure_reason(tracks, None) == (
        "2 steps failed: heavy: run r1: lease of step heavy on pool p2 expired; "
        "both: KeyError: 'x'"
    )


def test_a_long_or_missing_error_is_shortened_or_named_failed() -> None:
    tracks = {"a": _failed("x" * (GIST_CHARS * 2)), "b": _failed(None)}
    reason = failure_reason(tracks, None)
    gist_a = reason.split("a: ", 1)[1].split(";", 1)[0]
    assert len(gist_a) == GIST_CHARS
    assert gist_a.endswith("…")
    assert reason.endswith("b: failed")


def test_past_the_named_steps_the_rest_are_counted() -> None:
    tracks = {f"s{i}": _failed(f"E{i}") for i in range(NAMED_STEPS + 3)}
    reason = failure_reason(tracks, None)
    assert reason.startswith(f"{NAMED_STEPS + 3} steps failed: s0: E0; s1: E1")
    assert f"s{NAMED_STEPS - 1}: E{NAMED_STEPS - 1}; and 3 more" in reason
    assert f"s{NAMED_STEPS}:" not in reason


def test_no_failed_step_gives_the_first_error() -> None:
    assert failure_reason({"a": StepTrack()}, RuntimeError("claim lost")) == (
        "claim lost"
    )
