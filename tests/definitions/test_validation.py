"""Every invalid definition is a ConfigError at construction, naming the field."""

from __future__ import annotations

import functools
import itertools
import os
import re
from datetime import timedelta
from typing import Any

import pytest

import rivers as rs
from rivers.definitions.executor_configs import InProcessExecutor
from rivers.executors.kubernetes_config import KubernetesExecutor


def _asset(function_name: str, /, **options: Any) -> rs.Asset[[], int]:
    """A sync asset (named after ``function_name``) with no data dependencies."""

    def body() -> int:
        return 1

    body.__name__ = function_name
    return rs.Asset(body, **options)


# ------------------------------------------------------------------ repositories


def test_duplicate_asset_names_are_rejected_naming_the_asset() -> None:
    first = _asset("orders")
    second = _asset("other", name="orders")
    with pytest.raises(rs.ConfigError, match="two assets are named 'orders'"):
        rs.CodeRepository([first, second])


def test_unknown_parameter_dependency_names_the_asset_and_the_dependency() -> None:
    @rs.Asset
    def report(missing_upstream: int) -> int:
        return missing_upstream

    with pytest.raises(rs.ConfigError) as raised:
        rs.CodeRepository([report])
    message = str(raised.value)
    assert "'report'" in message
    assert "'missing_upstream'" in message
    assert "(parameter)" in message


def test_unknown_deps_entry_names_the_asset_and_the_dependency() -> None:
    report = _asset("report", deps=["nowhere"])
    with pytest.raises(rs.ConfigError) as raised:
        rs.CodeRepository([report])
    message = str(raised.value)
    assert "'report'" in message
    assert "'nowhere'" in message
    assert "(deps entry)" in message


def test_a_two_asset_cycle_is_shown_in_the_message() -> None:
    @rs.Asset
    def a(b: int) -> int:
        return b

    @rs.Asset
    def b(a: int) -> int:
        return a

    with pytest.raises(rs.ConfigError, match=re.escape("a -> b -> a")):
        rs.CodeRepository([a, b])


def test_a_longer_cycle_is_shown_as_a_chain_of_real_dependencies() -> None:
    source = _asset("source")

    @rs.Asset
    def x(z: int, source: int) -> int:
        return z + source

    @rs.Asset
    def y(x: int) -> int:
        return x

    z = _asset("z", deps=[y])
    with pytest.raises(rs.ConfigError, match="cycle") as raised:
        rs.CodeRepository([source, x, y, z])
    shown = re.search(r"cycle: ([\w >-]+);", str(raised.value))
    assert shown is not None
    cycle = shown.group(1).split(" -> ")
    assert cycle[0] == cycle[-1]
    assert sorted(cycle[:-1]) == ["x", "y", "z"]
    upstream = {"x": {"z", "source"}, "y": {"x"}, "z": {"y"}}
    # Each entry feeds the next one.
    for feeder, fed in itertools.pairwise(cycle):
        assert feeder in upstream[fed]


def test_an_asset_depending_on_itself_is_rejected() -> None:
    loop = _asset("loop", deps=["loop"])
    with pytest.raises(rs.ConfigError, match="asset 'loop' depends on itself"):
        rs.CodeRepository([loop])


def test_pool_slots_below_one_names_the_asset() -> None:
    with pytest.raises(rs.ConfigError, match="asset 'heavy': pool_slots"):
        _asset("heavy", pool="db", pool_slots=0)


def test_pool_slots_above_the_declared_limit_names_asset_pool_and_limit() -> None:
    heavy = _asset("heavy", pool="db", pool_slots=3)
    with pytest.raises(
        rs.ConfigError,
        match=r"asset 'heavy' claims pool_slots=3 of pool 'db', whose limit is 2",
    ):
        rs.CodeRepository([heavy], pool_limits={"db": 2})


def test_pool_slots_are_checked_against_every_pool_of_the_asset() -> None:
    heavy = _asset("heavy", pool=["big", "small"], pool_slots=3)
    with pytest.raises(rs.ConfigError, match="pool 'small', whose limit is 1"):
        rs.CodeRepository([heavy], pool_limits={"big": 10, "small": 1})


def test_pool_slots_equal_to_the_limit_or_in_an_undeclared_pool_are_fine() -> None:
    exact = _asset("exact", pool="db", pool_slots=2)
    free = _asset("free", pool="elsewhere", pool_slots=500)
    repo = rs.CodeRepository([exact, free], pool_limits={"db": 2})
    assert repo.pool_limits == {"db": 2}
    assert repo.pools == ("db", "elsewhere")


def test_negative_pool_limit_names_the_pool() -> None:
    with pytest.raises(rs.ConfigError, match=r"pool_limits\['db'\] must be in 0\.\."):
        rs.CodeRepository([], pool_limits={"db": -1})


def test_non_integer_pool_limit_names_the_pool() -> None:
    with pytest.raises(rs.ConfigError, match=r"pool_limits\['db'\] must be an integer"):
        rs.CodeRepository([], pool_limits={"db": True})


def test_pool_limits_must_be_a_mapping() -> None:
    with pytest.raises(rs.ConfigError, match="pool_limits must be a dict"):
        rs.CodeRepository([], pool_limits=[("db", 1)])  # type: ignore[arg-type]


def test_repository_assets_must_be_a_list_of_assets() -> None:
    single = _asset("single")
    with pytest.raises(rs.ConfigError, match=r"CodeRepository\(assets=\.\.\.\)"):
        rs.CodeRepository(single)  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError, match=r"decorate the function with @rs\.Asset"):
        rs.CodeRepository([print])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("option", "field"),
    [("run_queue", "run_queue"), ("executor", "executor"), ("backend", "backend")],
)
def test_repository_settings_of_the_wrong_type_name_the_field(
    option: str, field: str
) -> None:
    options: dict[str, Any] = {option: "nope"}
    with pytest.raises(rs.ConfigError, match=f"^{field} must"):
        rs.CodeRepository([], **options)


def test_repository_executor_defaults_to_parallel() -> None:
    repo = rs.CodeRepository([_asset("only")])
    assert repo.executor == rs.Executor.parallel()


def test_repository_order_puts_upstream_first() -> None:
    @rs.Asset
    def last(middle: int) -> int:
        return middle

    @rs.Asset
    def middle(first: int) -> int:
        return first

    first = _asset("first")
    repo = rs.CodeRepository([last, middle, first])
    assert repo.order == ["first", "middle", "last"]


# ------------------------------------------------------------------------ assets


def test_bare_decorator_makes_an_asset_named_after_the_function() -> None:
    @rs.Asset
    def orders() -> list[int]:
        """The orders."""
        return [1]

    assert isinstance(orders, rs.Asset)
    assert orders.name == "orders"
    assert orders.description == "The orders."
    assert orders.pools == ()
    assert orders.pool_slots == 1
    assert orders() == [1]


def test_decorator_with_arguments_applies_them() -> None:
    @rs.Asset(name="renamed", pool="db", pool_slots=2, tags={"team": "core"})
    def orders() -> int:
        return 7

    assert isinstance(orders, rs.Asset)
    assert orders.name == "renamed"
    assert orders.pools == ("db",)
    assert orders.pool_slots == 2
    assert orders.tags == {"team": "core"}
    assert orders() == 7


def test_decorator_with_empty_parentheses_works() -> None:
    @rs.Asset()
    def plain() -> int:
        return 1

    assert isinstance(plain, rs.Asset)
    assert plain.name == "plain"


def test_sync_and_async_functions_are_told_apart() -> None:
    @rs.Asset
    def sync_step() -> int:
        return 1

    @rs.Asset
    async def async_step() -> int:
        return 1

    assert sync_step.is_async is False
    assert async_step.is_async is True


def test_async_detection_sees_through_functools_partial() -> None:
    async def fetch(url: str) -> str:
        return url

    asset = rs.Asset(functools.partial(fetch, "x"), name="fetched")
    assert asset.is_async is True
    assert asset.params == ()


def test_parameters_are_data_dependencies_and_context_is_not() -> None:
    @rs.Asset
    def report(context: rs.StepContext, orders: int, users: int) -> int:
        return orders + users

    assert report.params == ("orders", "users")
    assert report.takes_context is True


def test_var_positional_parameters_are_rejected_naming_the_asset() -> None:
    def gather(*inputs: int) -> int:
        return sum(inputs)

    with pytest.raises(
        rs.ConfigError, match=r"asset 'gather': parameter 'inputs' is \*args"
    ):
        rs.Asset(gather)


def test_var_keyword_parameters_are_rejected_naming_the_asset() -> None:
    def gather(**inputs: int) -> int:
        return sum(inputs.values())

    with pytest.raises(rs.ConfigError, match=r"asset 'gather': parameter 'inputs'"):
        rs.Asset(gather)


def test_positional_only_parameters_are_rejected_naming_the_asset() -> None:
    def gather(upstream: int, /) -> int:
        return upstream

    with pytest.raises(
        rs.ConfigError, match="asset 'gather': parameter 'upstream' is positional-only"
    ):
        rs.Asset(gather)


def test_deps_accept_asset_objects_and_names() -> None:
    orders = _asset("orders")
    users = _asset("users")

    @rs.Asset(deps=[orders, "users", orders])
    def report(payments: int) -> int:
        return payments

    assert report.deps == ("orders", "users")
    assert report.upstream == ("payments", "orders", "users")
    assert _asset("one", deps=users).deps == ("users",)
    assert _asset("two", deps="orders").deps == ("orders",)
    repo = rs.CodeRepository([orders, users, _asset("payments"), report])
    assert repo.upstream["report"] == ("payments", "orders", "users")


def test_a_deps_entry_that_is_not_an_asset_name_is_rejected() -> None:
    with pytest.raises(rs.ConfigError, match="asset 'report': deps entry 'no-dash'"):
        _asset("report", deps=["no-dash"])


def test_deps_of_the_wrong_type_are_rejected() -> None:
    with pytest.raises(rs.ConfigError, match="asset 'report': deps must be a list"):
        _asset("report", deps=5)


def test_pool_may_be_one_name_or_a_list() -> None:
    one = _asset("one", pool="warehouse")
    many = _asset("many", pool=["warehouse", "api"])
    assert one.pools == ("warehouse",)
    assert one.pool == "warehouse"
    assert many.pools == ("warehouse", "api")
    assert many.pool == ("warehouse", "api")
    assert _asset("none").pool is None


def test_a_pool_listed_twice_is_rejected() -> None:
    with pytest.raises(rs.ConfigError, match="asset 'dup': pool 'db' is listed twice"):
        _asset("dup", pool=["db", "db"])


def test_an_invalid_pool_name_is_rejected() -> None:
    with pytest.raises(rs.ConfigError, match="asset 'bad': pool '' is not a valid"):
        _asset("bad", pool="")


def test_invalid_asset_names_are_rejected() -> None:
    with pytest.raises(rs.ConfigError, match="Asset name= '1st'"):
        _asset("ok", name="1st")
    with pytest.raises(rs.ConfigError, match="asset name '<lambda>'"):
        rs.Asset(lambda: 1)


def test_decorating_something_that_is_not_callable_is_rejected() -> None:
    with pytest.raises(rs.ConfigError, match="@Asset must decorate a function"):
        rs.Asset(3)  # type: ignore[call-overload]


def test_retry_policy_of_the_wrong_type_names_the_asset() -> None:
    with pytest.raises(rs.ConfigError, match="asset 'flaky': retry_policy"):
        _asset("flaky", retry_policy=3)


def test_priority_must_be_an_integer() -> None:
    with pytest.raises(rs.ConfigError, match="asset 'urgent': priority"):
        _asset("urgent", priority=1.5)


def test_asset_timeout_zero_is_rejected_naming_the_asset() -> None:
    with pytest.raises(rs.ConfigError, match="asset 'slow': timeout must be"):
        _asset("slow", timeout=0)


def test_asset_timeout_is_parsed_to_seconds() -> None:
    assert _asset("slow", timeout="250ms").timeout_s == 0.25
    assert _asset("slower", timeout=timedelta(minutes=2)).timeout == 120.0
    assert _asset("untimed").timeout is None


# -------------------------------------------------------------------------- tags


def test_tag_values_must_be_strings() -> None:
    with pytest.raises(rs.ConfigError, match=r"asset 'tagged': tags\['team'\]"):
        _asset("tagged", tags={"team": 1})


def test_tag_keys_must_be_strings() -> None:
    with pytest.raises(rs.ConfigError, match="asset 'tagged': tags key 5"):
        _asset("tagged", tags={5: "x"})


def test_tag_values_with_control_characters_are_rejected() -> None:
    with pytest.raises(rs.ConfigError, match=r"tags\['color'\] must be printable"):
        _asset("tagged", tags={"color": "\x1b[31m"})


def test_tag_keys_with_control_characters_or_equals_are_rejected() -> None:
    with pytest.raises(rs.ConfigError, match=r"asset 'tagged': tags key '\\x1b\[31m'"):
        _asset("tagged", tags={"\x1b[31m": "x"})
    with pytest.raises(rs.ConfigError, match="asset 'tagged': tags key 'a=b' must be"):
        _asset("tagged", tags={"a=b": "x"})


def test_empty_tag_key_is_rejected() -> None:
    with pytest.raises(rs.ConfigError, match="asset 'tagged': tags key '' must be"):
        _asset("tagged", tags={"": "x"})


def test_tags_must_be_a_mapping() -> None:
    with pytest.raises(rs.ConfigError, match="asset 'tagged': tags must be a mapping"):
        _asset("tagged", tags=["team"])


def test_too_many_tags_are_rejected() -> None:
    many = {f"k{i}": "v" for i in range(65)}
    with pytest.raises(rs.ConfigError, match="asset 'tagged': tags has 65 tags"):
        _asset("tagged", tags=many)


def test_valid_tags_are_copied() -> None:
    given = {"team": "core", "env": "prod"}
    asset = _asset("tagged", tags=given)
    given["team"] = "changed"
    assert asset.tags == {"team": "core", "env": "prod"}


# --------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        ("250ms", 0.25),
        ("2s", 2.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("3", 3.0),
        (timedelta(seconds=90), 90.0),
        (4, 4.0),
        (0.5, 0.5),
    ],
)
def test_good_durations_are_seconds(given: object, seconds: float) -> None:
    queue = rs.RunQueueConfig(dequeue_interval=given)  # type: ignore[arg-type]
    assert queue.dequeue_interval_s == seconds
    assert rs.RetryPolicy(delay=given).delay == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["2x", "fast", "", "-1s", "1e3", True, [1], object()])
def test_malformed_durations_name_the_field(bad: object) -> None:
    with pytest.raises(rs.ConfigError, match=r"^RetryPolicy\.delay must be a duration"):
        rs.RetryPolicy(delay=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, -0.5, timedelta(seconds=-1), float("inf")])
def test_negative_or_infinite_durations_name_the_field(bad: object) -> None:
    with pytest.raises(
        rs.ConfigError, match=r"^RetryPolicy\.delay must be a duration from 0s to 7d"
    ):
        rs.RetryPolicy(delay=bad)  # type: ignore[arg-type]


def test_nan_duration_is_rejected() -> None:
    with pytest.raises(rs.ConfigError, match=r"RunQueueConfig\.dequeue_interval"):
        rs.RunQueueConfig(dequeue_interval=float("nan"))


def test_a_huge_integer_duration_is_a_config_error() -> None:
    with pytest.raises(rs.ConfigError, match=r"RetryPolicy\.delay"):
        rs.RetryPolicy(delay=10**400)


def test_none_where_a_duration_is_required_names_the_field() -> None:
    with pytest.raises(rs.ConfigError, match=r"^RunQueueConfig\.dequeue_interval"):
        rs.RunQueueConfig(dequeue_interval=None)  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError, match=r"^RunBackendConfig\.lease_duration"):
        rs.RunBackendConfig(lease_duration=None)  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError, match=r"^RetryPolicy\.delay"):
        rs.RetryPolicy(delay=None)  # type: ignore[arg-type]


def test_zero_is_rejected_where_a_positive_duration_is_required() -> None:
    with pytest.raises(
        rs.ConfigError, match="dequeue_interval must be a duration from 10ms to 1h"
    ):
        rs.RunQueueConfig(dequeue_interval=0)
    with pytest.raises(
        rs.ConfigError, match="lease_duration must be a duration from 100ms to 1d"
    ):
        rs.RunBackendConfig(lease_duration="0s")
    assert rs.RetryPolicy(delay=0).delay == 0.0


# ------------------------------------------------------------------ RetryPolicy


def test_retry_policy_defaults() -> None:
    policy = rs.RetryPolicy()
    assert (policy.max_retries, policy.delay, policy.backoff) == (0, 0.0, 1.0)


def test_negative_max_retries_names_the_field() -> None:
    with pytest.raises(rs.ConfigError, match=r"^RetryPolicy\.max_retries must be in"):
        rs.RetryPolicy(max_retries=-1)


def test_boolean_max_retries_is_rejected() -> None:
    with pytest.raises(
        rs.ConfigError, match=r"^RetryPolicy\.max_retries must be an int"
    ):
        rs.RetryPolicy(max_retries=True)


@pytest.mark.parametrize("bad", [0.5, 0, float("nan"), float("inf"), 101])
def test_backoff_out_of_range_names_the_field(bad: float) -> None:
    with pytest.raises(rs.ConfigError, match=r"^RetryPolicy\.backoff must be in 1\.\."):
        rs.RetryPolicy(backoff=bad)


def test_backoff_must_be_a_number() -> None:
    with pytest.raises(rs.ConfigError, match=r"^RetryPolicy\.backoff must be a number"):
        rs.RetryPolicy(backoff="2")  # type: ignore[arg-type]


def test_retry_delay_grows_by_backoff() -> None:
    policy = rs.RetryPolicy(max_retries=3, delay="1s", backoff=2)
    assert [policy.delay_before(n) for n in (2, 3, 4)] == [1.0, 2.0, 4.0]


# ------------------------------------------------------- TagConcurrencyLimit


def test_tag_limit_with_value_and_per_unique_value_is_rejected() -> None:
    with pytest.raises(
        rs.ConfigError,
        match=r"TagConcurrencyLimit\(key='team'\) sets both value= and per_unique",
    ):
        rs.TagConcurrencyLimit("team", "a", limit=1, per_unique_value=True)


def test_tag_limit_without_limit_is_rejected_naming_the_key() -> None:
    with pytest.raises(
        rs.ConfigError, match=r"TagConcurrencyLimit\(key='team'\) needs limit=N"
    ):
        rs.TagConcurrencyLimit("team")


def test_negative_tag_limit_names_the_field() -> None:
    with pytest.raises(rs.ConfigError, match=r"^TagConcurrencyLimit\.limit must be in"):
        rs.TagConcurrencyLimit("team", limit=-1)


def test_boolean_tag_limit_is_rejected() -> None:
    with pytest.raises(rs.ConfigError, match=r"^TagConcurrencyLimit\.limit must be an"):
        rs.TagConcurrencyLimit("team", limit=True)


def test_empty_tag_limit_key_is_rejected() -> None:
    with pytest.raises(rs.ConfigError, match=r"^TagConcurrencyLimit key '' must be"):
        rs.TagConcurrencyLimit("", limit=1)


@pytest.mark.parametrize("bad", [0, False, 5])
def test_non_string_tag_limit_value_is_rejected(bad: object) -> None:
    with pytest.raises(rs.ConfigError, match=r"^TagConcurrencyLimit") as raised:
        rs.TagConcurrencyLimit("team", bad, limit=1)  # type: ignore[arg-type]
    assert f"{bad!r}" in str(raised.value)


def test_tag_limit_value_with_control_characters_is_rejected() -> None:
    with pytest.raises(
        rs.ConfigError, match=r"^TagConcurrencyLimit\['team'\] must be printable"
    ):
        rs.TagConcurrencyLimit("team", "\x1b[31m", limit=1)


def test_per_unique_value_must_be_a_bool() -> None:
    with pytest.raises(rs.ConfigError, match="per_unique_value must be True or False"):
        rs.TagConcurrencyLimit("team", limit=1, per_unique_value=1)  # type: ignore[arg-type]


def test_valid_tag_limits_describe_themselves() -> None:
    assert rs.TagConcurrencyLimit("team", limit=0).describe() == "team"
    assert rs.TagConcurrencyLimit("env", "prod", limit=2).describe() == "env=prod"
    unique = rs.TagConcurrencyLimit("team", limit=1, per_unique_value=True)
    assert unique.describe() == "team=*"


# ----------------------------------------------------------------- RunQueueConfig


def test_run_queue_defaults() -> None:
    queue = rs.RunQueueConfig()
    assert queue.max_concurrent_runs == 10
    assert queue.dequeue_interval_s == 1.0
    assert queue.tag_concurrency_limits == ()


def test_zero_max_concurrent_runs_is_allowed() -> None:
    assert rs.RunQueueConfig(max_concurrent_runs=0).max_concurrent_runs == 0


def test_negative_max_concurrent_runs_names_the_field() -> None:
    with pytest.raises(rs.ConfigError, match=r"^RunQueueConfig\.max_concurrent_runs"):
        rs.RunQueueConfig(max_concurrent_runs=-1)


def test_a_single_tag_limit_instead_of_a_list_is_rejected() -> None:
    limit = rs.TagConcurrencyLimit("team", limit=1)
    with pytest.raises(rs.ConfigError, match="tag_concurrency_limits must be a list"):
        rs.RunQueueConfig(tag_concurrency_limits=limit)  # type: ignore[arg-type]


def test_tag_limits_must_be_tag_concurrency_limit_objects() -> None:
    with pytest.raises(rs.ConfigError, match="tag_concurrency_limits must hold"):
        rs.RunQueueConfig(tag_concurrency_limits=("team",))  # type: ignore[arg-type]


def test_a_list_of_tag_limits_is_stored_as_a_tuple() -> None:
    limits = [rs.TagConcurrencyLimit("team", limit=1)]
    queue = rs.RunQueueConfig(tag_concurrency_limits=limits)
    assert queue.tag_concurrency_limits == (limits[0],)


# --------------------------------------------------------------- RunBackendConfig


def test_backend_defaults_and_derived_gc_interval() -> None:
    backend = rs.RunBackendConfig()
    assert backend.storage is None
    assert backend.lease_s == 60.0
    assert backend.lease_gc_interval_s == 5.0
    assert rs.RunBackendConfig(lease_duration="2s").lease_gc_interval_s == 0.5


def test_backend_storage_accepts_a_path_like() -> None:
    from pathlib import Path

    backend = rs.RunBackendConfig(storage=Path("/tmp/x.db"))  # type: ignore[arg-type]
    assert backend.storage == "/tmp/x.db"


@pytest.mark.parametrize("bad", ["", 5])
def test_backend_storage_of_the_wrong_kind_names_the_field(bad: object) -> None:
    with pytest.raises(rs.ConfigError, match=r"^RunBackendConfig\.storage must be"):
        rs.RunBackendConfig(storage=bad)  # type: ignore[arg-type]


def test_bad_lease_gc_interval_names_the_field() -> None:
    with pytest.raises(rs.ConfigError, match=r"^RunBackendConfig\.lease_gc_interval"):
        rs.RunBackendConfig(lease_gc_interval=True)
    with pytest.raises(rs.ConfigError, match=r"^RunBackendConfig\.lease_gc_interval"):
        rs.RunBackendConfig(lease_gc_interval="2x")


# ---------------------------------------------------------------------- Executor


def test_parallel_default_max_workers_is_the_usable_cpus() -> None:
    assert rs.Executor.parallel().max_workers == len(os.sched_getaffinity(0))


def test_parallel_keeps_explicit_limits() -> None:
    executor = rs.Executor.parallel(max_workers=3, max_async_concurrent=7)
    assert (executor.workers, executor.max_async_concurrent) == (3, 7)


def test_parallel_max_workers_below_one_names_the_field() -> None:
    with pytest.raises(rs.ConfigError, match=r"^Executor\.parallel max_workers"):
        rs.Executor.parallel(max_workers=0)


def test_parallel_max_async_concurrent_below_one_names_the_field() -> None:
    with pytest.raises(
        rs.ConfigError, match=r"^Executor\.parallel max_async_concurrent"
    ):
        rs.Executor.parallel(max_async_concurrent=0)


def test_executor_is_a_namespace_not_a_class_to_instantiate() -> None:
    with pytest.raises(TypeError, match="Executor is a namespace"):
        rs.Executor()


def test_in_process_executor_is_its_own_config() -> None:
    assert isinstance(rs.Executor.in_process(), InProcessExecutor)


# -------------------------------------------------------------------- kubernetes


def test_kubernetes_config_keeps_its_settings() -> None:
    config = rs.Executor.kubernetes(
        4, image="repo/img:1", namespace="data", env={"A": "1"}, labels={"team": "x"}
    )
    assert isinstance(config, KubernetesExecutor)
    assert config.max_concurrent_steps == 4
    assert (config.image, config.namespace) == ("repo/img:1", "data")
    assert config.ttl_seconds_after_finished == 300


def test_kubernetes_needs_an_image() -> None:
    with pytest.raises(rs.ConfigError, match=r"Executor\.kubernetes needs image="):
        rs.Executor.kubernetes(image="")


def test_kubernetes_max_concurrent_steps_below_one_names_the_field() -> None:
    with pytest.raises(rs.ConfigError, match="kubernetes max_concurrent_steps"):
        rs.Executor.kubernetes(0, image="img")


def test_kubernetes_empty_namespace_is_rejected() -> None:
    with pytest.raises(
        rs.ConfigError, match="kubernetes namespace '' is not a Kubernetes namespace"
    ):
        rs.Executor.kubernetes(image="img", namespace="")


def test_kubernetes_bad_image_pull_policy_is_rejected() -> None:
    with pytest.raises(rs.ConfigError, match="image_pull_policy must be 'Always'"):
        rs.Executor.kubernetes(
            image="img",
            image_pull_policy="Sometimes",  # type: ignore[arg-type]
        )


def test_kubernetes_env_values_must_be_strings() -> None:
    with pytest.raises(rs.ConfigError, match=r"^Executor\.kubernetes env\['PORT'\]"):
        rs.Executor.kubernetes(image="img", env={"PORT": 80})  # type: ignore[dict-item]


def test_kubernetes_labels_with_control_characters_are_rejected() -> None:
    with pytest.raises(rs.ConfigError, match=r"^Executor\.kubernetes labels"):
        rs.Executor.kubernetes(image="img", labels={"team": "\x1b[2J"})


def test_kubernetes_negative_ttl_names_the_field() -> None:
    with pytest.raises(rs.ConfigError, match="ttl_seconds_after_finished must be >= 0"):
        rs.Executor.kubernetes(image="img", ttl_seconds_after_finished=-1)


def test_a_pool_limit_with_windows_keeps_its_base_as_the_declared_limit() -> None:
    api = rs.PoolLimit(4, windows={"0 8-18 * * 1-5": 1}, timezone="Europe/Paris")
    repo = rs.CodeRepository([_asset("call", pool="api")], pool_limits={"api": api})
    assert repo.pool_limits == {"api": 4}
    assert repo.pool_limit_configs["api"] is api
    assert api.windows == {"0 8-18 * * 1-5": 1}


def test_pool_slots_above_a_window_limit_name_the_window() -> None:
    heavy = _asset("heavy", pool="db", pool_slots=3)
    with pytest.raises(
        rs.ConfigError,
        match=r"pool 'db', whose limit is 2 during window '0 8 \* \* \*'",
    ):
        rs.CodeRepository(
            [heavy], pool_limits={"db": rs.PoolLimit(5, windows={"0 8 * * *": 2})}
        )
    paused = rs.PoolLimit(5, windows={"0 2 * * *": 0})  # 0 pauses: not too small
    assert rs.CodeRepository([heavy], pool_limits={"db": paused}).pool_limits == {
        "db": 5
    }
    night_only = rs.PoolLimit(0, windows={"0 22-23 * * *": 4})  # closed by day
    assert rs.CodeRepository([heavy], pool_limits={"db": night_only}).pool_limits == {
        "db": 0
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"windows": {"30 8 * * *": 1}},
            r"windows key '30 8 \* \* \*' is not a window",
        ),
        ({"windows": {"0 8 * * *": -1}}, r"windows\['0 8 \* \* \*'\] must be in 0"),
        ({"windows": [("0 8 * * *", 1)]}, "windows must be a dict"),
        ({"timezone": "Mars/Base"}, "PoolLimit.timezone 'Mars/Base' is not a known"),
        ({"rate": "100 a minute"}, r"PoolLimit\.rate '100 a minute' is not a rate"),
        ({"rate": "0/min"}, r"PoolLimit\.rate '0/min' has a count of 0"),
        ({"rate": "1/s", "burst": 0}, r"PoolLimit\.burst must be in 1"),
        ({"burst": 2}, r"PoolLimit\(burst=2\) needs a rate"),
    ],
)
def test_a_bad_pool_limit_is_named_in_one_line(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(rs.ConfigError, match=message):
        rs.PoolLimit(2, **options)  # type: ignore[arg-type]
