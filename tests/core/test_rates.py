"""The rate spelling, the token bucket's arithmetic and the pool state's rate gate."""

from __future__ import annotations

import pytest

import rivers as rs
from rivers.core.pools import PoolState
from rivers.core.rates import (
    available,
    check_rate_override,
    parse_rate,
    start_in_s,
    wait_s,
)


@pytest.mark.parametrize(
    ("text", "count", "period_s", "canonical"),
    [
        ("100/min", 100, 60.0, "100/min"),
        ("5/s", 5, 1.0, "5/s"),
        ("1/30s", 1, 30.0, "1/30s"),
        ("1000/hour", 1000, 3600.0, "1000/h"),
        ("10/day", 10, 86_400.0, "10/day"),
        (" 2 / 0.5 S ", 2, 0.5, "2/0.5s"),
        ("3/1500ms", 3, 1.5, "3/1500ms"),
        ("7/minutes", 7, 60.0, "7/min"),
    ],
)
def test_a_rate_reads_as_count_per_period(
    text: str, count: int, period_s: float, canonical: str
) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.period_s, rate.text) == (count, period_s, canonical)
    assert rate.per_second == pytest.approx(count / period_s)
    assert parse_rate(rate.text) == rate  # the canonical spelling reads back


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is not a rate"),
        ("100", "is not a rate"),
        ("100/fortnight", "is not a rate"),
        ("ten/min", "is not a rate"),
        ("-1/s", "is not a rate"),
        ("0/s", "has a count of 0"),
        ("1000001/s", "has a count of 1000001"),
        ("1/0s", "period outside 1 ms..366 days"),
        ("1/400day", "period outside 1 ms..366 days"),
        ("1/s\n", "is not a rate"),
    ],
)
def test_a_bad_rate_is_one_line_naming_the_field_and_the_spelling(
    text: str, says: str
) -> None:
    with pytest.raises(rs.ConfigError, match="pool 'api'") as raised:
        parse_rate(text, "rate of pool 'api'")
    message = str(raised.value)
    assert says in message
    assert "'100/min'" in message
    assert "\n" not in message


def test_the_bucket_fills_at_the_rate_up_to_its_burst() -> None:
    rate = parse_rate("10/s")
    assert available(None, None, 50.0, rate, 3) == 3.0  # never counted: full
    assert available(0.0, 100.0, 100.25, rate, 3) == pytest.approx(2.5)
    assert available(0.0, 100.0, 200.0, rate, 3) == 3.0  # capped at the burst
    # Another host's clock behind this one's adds nothing (and takes nothing).
    assert available(0.4, 100.0, 99.0, rate, 3) == pytest.approx(0.4)


def test_the_wait_for_a_token_and_for_a_later_start() -> None:
    rate = parse_rate("4/s")
    assert wait_s(1.0, rate) == 0.0
    assert wait_s(0.5, rate) == pytest.approx(0.125)
    assert start_in_s(0.5, rate, 1) == pytest.approx(0.125)
    assert start_in_s(0.5, rate, 3) == pytest.approx(0.625)  # two more tokens later
    assert start_in_s(2.0, rate, 2) == 0.0


def test_an_override_rate_is_stored_canonical_with_its_burst() -> None:
    assert check_rate_override(None, None, "--rate") == (None, None)
    assert check_rate_override("100/MIN", None, "--rate") == ("100/min", 1)
    assert check_rate_override("5/s", 20, "--rate") == ("5/s", 20)
    assert check_rate_override("None", None, "--rate") == ("none", None)
    with pytest.raises(rs.ConfigError, match="a burst needs a rate; pass --rate"):
        check_rate_override(None, 3, "--rate")
    with pytest.raises(
        rs.ConfigError, match=r"burst 0 is out of range; use 1\.\.10000"
    ):
        check_rate_override("5/s", 0, "--rate")
    with pytest.raises(rs.ConfigError, match="'none' takes no burst"):
        check_rate_override("none", 2, "--rate")


def test_pool_limit_checks_and_spells_its_rate() -> None:
    limit = rs.PoolLimit(4, rate="100/minute")
    assert (limit.rate, limit.burst, limit.declared_rate) == (
        "100/min",
        1,
        ("100/min", 1),
    )
    assert rs.PoolLimit(4, rate="5/s", burst=5).declared_rate == ("5/s", 5)
    assert rs.PoolLimit(4).declared_rate is None
    with pytest.raises(rs.ConfigError, match=r"PoolLimit.rate '5 per s' is not a rate"):
        rs.PoolLimit(4, rate="5 per s")
    with pytest.raises(rs.ConfigError, match="must be a string such as '100/min'"):
        rs.PoolLimit(4, rate=5)  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError, match="needs a rate"):
        rs.PoolLimit(4, burst=2)
    with pytest.raises(rs.ConfigError, match=r"PoolLimit\.burst"):
        rs.PoolLimit(4, rate="5/s", burst=0)


def test_a_pool_out_of_tokens_is_full_until_its_token_is_due() -> None:
    state = PoolState()
    state.observe("api", 0, 4)
    state.add(("r", "a"), ("api",), 1, 0)
    state.add(("r", "b"), ("other",), 1, 0)
    state.observe_rate("api", due_at=10.0)
    assert not state.may_claim_now(("api",), 1, 0)
    assert [w.key for w in state.grants()] == [("r", "b")]  # the other pool goes
    state.rates_due(9.999)
    assert "api" in state.rate_until
    state.rates_due(10.0)
    assert state.rate_until == {}
    assert [w.key for w in state.grants()] == [("r", "a")]


@pytest.mark.parametrize("text", ["7/1234567s", "1/1000000ms", "5/1.50min", "1/0.001s"])
def test_the_canonical_spelling_never_uses_an_exponent(text: str) -> None:
    rate = parse_rate(text)
    assert "e" not in rate.text.split("/")[1].rstrip("abcdfghijklmnopqrstuvwxyz")
    assert parse_rate(rate.text) == rate


def test_a_count_of_thousands_of_digits_is_a_config_error() -> None:
    with pytest.raises(rs.ConfigError, match="is not a rate"):
        parse_rate("9" * 5000 + "/s")
