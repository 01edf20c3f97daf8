"""Repository identity and what a queued run waits for, decided without I/O."""

from __future__ import annotations

import random

from hypothesis import given, strategies as st

from rivers.core.ownership import Served, clash_warning, serves, unserved_reason
from rivers.definitions.repository import definition_fingerprint

ONE = Served(owner="h:11:1", repository="default", fingerprint="f1", assets=("a",))
TWO = Served(owner="h:22:2", repository="default", fingerprint="f2", assets=("b",))

names = st.text(alphabet="abcdefgh", min_size=1, max_size=3)


@given(st.dictionaries(names, st.lists(names, max_size=3), max_size=6), st.randoms())
def test_the_fingerprint_ignores_order_but_not_wiring(
    upstream: dict[str, list[str]], rng: random.Random
) -> None:
    items = list(upstream.items())
    rng.shuffle(items)
    shuffled = {name: list(reversed(deps)) for name, deps in items}
    assert definition_fingerprint(shuffled) == definition_fingerprint(upstream)
    rewired = {**upstream, "zz": ["a"]}
    assert definition_fingerprint(rewired) != definition_fingerprint(upstream)


def test_a_run_is_served_only_by_its_own_definition() -> None:
    assert serves(ONE, "default", "f1")
    assert not serves(ONE, "default", "f2")
    assert not serves(ONE, "other", "f1")
    assert serves(ONE, "default", None)  # stored before runs had a fingerprint


def test_nobody_serving_the_name_says_start_a_daemon() -> None:
    reason = unserved_reason("default", "f1", ["a"], [])
    assert reason == (
        "no daemon is running for repository 'default'; start one with "
        "`rivers daemon -f FILE`"
    )
    assert unserved_reason("default", "f1", ["a"], [ONE]) is None


def test_another_definition_of_the_name_names_the_missing_assets() -> None:
    reason = unserved_reason("default", "f2", ["b"], [ONE])
    assert reason is not None
    assert reason.startswith("no runtime serves repository 'default' with asset b ")
    same_assets = unserved_reason("default", "f9", ["a"], [ONE])
    assert same_assets is not None
    assert "with its definition (f9)" in same_assets


def test_a_clash_is_reported_to_the_other_definition_only() -> None:
    warning = clash_warning("h:11:1", "default", "f1", [ONE, TWO])
    assert warning is not None
    assert "process 22" in warning
    assert clash_warning("h:11:1", "default", "f1", [ONE]) is None
    assert clash_warning("h:33:3", "other", "f1", [ONE, TWO]) is None
