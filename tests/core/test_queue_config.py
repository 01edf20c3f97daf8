"""The published run-queue settings: one record, one codec, every reader."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from rivers.core.queue import LimitRule
from rivers.core.queue_config import (
    QueueConfig,
    decode_queue_config,
    encode_queue_config,
)
from rivers.core.queue_controls import QueueControls, in_force
from rivers.errors import StorageError

KEY = "queue.config:default:abc"
PROD = LimitRule("env", "prod", 1, False)
TEAMS = LimitRule("team", None, 2, True)

rules = st.builds(
    LimitRule,
    st.text(min_size=1),
    st.none() | st.text(),
    st.integers(min_value=0, max_value=10_000),
    st.booleans(),
)
configs = st.builds(
    QueueConfig,
    max_concurrent_runs=st.none() | st.integers(min_value=0, max_value=10_000),
    dequeue_interval_s=st.floats(min_value=0.01, max_value=3600),
    tag_concurrency_limits=st.lists(rules, max_size=4).map(tuple),
    max_concurrent_runs_source=st.sampled_from(
        ["repository", "override", "window 09:00-17:00"]
    ),
    tag_concurrency_limits_source=st.sampled_from(["repository", "override"]),
    paused=st.booleans(),
)


@given(configs)
def test_the_settings_round_trip_through_their_stored_json(config: QueueConfig) -> None:
    stored = json.loads(json.dumps(encode_queue_config(config)))
    assert decode_queue_config(stored, KEY) == config


def test_what_the_leader_publishes_reads_back_as_what_is_in_force() -> None:
    force = in_force(10, (PROD,), QueueControls(paused=True, max_concurrent_runs=3))
    config = decode_queue_config(
        json.loads(json.dumps(encode_queue_config(QueueConfig.of(force, 0.5)))), KEY
    )
    assert config is not None
    assert (config.max_concurrent_runs, config.paused) == (3, True)
    assert config.tag_concurrency_limits == (PROD,)
    assert config.is_overridden("max_concurrent_runs")
    assert not config.is_overridden("tag_concurrency_limits")
    no_queue = decode_queue_config(encode_queue_config(QueueConfig.no_queue(0.5)), KEY)
    assert no_queue is not None
    assert not no_queue.has_queue


def test_nothing_stored_is_none_and_the_older_short_form_still_reads() -> None:
    assert decode_queue_config(None, KEY) is None
    short = {"max_concurrent_runs": None, "dequeue_interval_s": 0.5}
    assert decode_queue_config(short, KEY) == QueueConfig.no_queue(0.5)


@pytest.mark.parametrize(
    ("stored", "says"),
    [
        ("paused", "Expected `object`, got `str`"),
        ({"max_concurrent_runs": "3", "dequeue_interval_s": 1}, "max_concurrent_runs"),
        (
            {
                "max_concurrent_runs": 3,
                "dequeue_interval_s": 1,
                "tag_concurrency_limits": [{"value": "x"}],
            },
            "tag_concurrency_limits[0]",
        ),
    ],
)
def test_a_malformed_stored_value_is_a_one_line_error_naming_the_key(
    stored: object, says: str
) -> None:
    with pytest.raises(StorageError) as caught:
        decode_queue_config(stored, KEY)
    message = str(caught.value)
    assert "\n" not in message
    assert KEY in message
    assert says in message


def test_the_note_names_what_rivers_queue_or_a_window_changed() -> None:
    published = QueueConfig(
        max_concurrent_runs=2,
        dequeue_interval_s=1.0,
        max_concurrent_runs_source="override",
        paused=True,
    )
    assert published.controls_note() == "paused, max_concurrent_runs override"
    windowed = QueueConfig(
        max_concurrent_runs=2,
        dequeue_interval_s=1.0,
        max_concurrent_runs_source="window 09:00-17:00",
        tag_concurrency_limits=(TEAMS,),
        tag_concurrency_limits_source="override",
    )
    assert windowed.controls_note() == (
        "max_concurrent_runs of window 09:00-17:00, tag_concurrency_limits override"
    )
    assert QueueConfig.no_queue(0.5).controls_note() == ""
