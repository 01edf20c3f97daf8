"""``rs.Asset``: a Python function whose return value is a named data asset."""

from __future__ import annotations

import importlib
import inspect
import pickle
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, final, overload

from rivers._durations import Duration, parse_duration
from rivers._repr import short_repr
from rivers._validate import (
    check_asset_name,
    check_int,
    check_pool_name,
    check_tags,
)
from rivers.definitions.configs import RetryPolicy
from rivers.errors import ConfigError

__all__ = ("CONTEXT_PARAMETER", "Asset")

CONTEXT_PARAMETER = "context"

P = ParamSpec("P")
R = TypeVar("R")


@final
class Asset(Generic[P, R]):
    """A data asset: the value its function returns, and how to compute it.

    Use it bare (``@rs.Asset``) or with arguments (``@rs.Asset(pool="db")``). Each
    parameter of the function other than ``context`` names an upstream asset and
    receives its value; ``deps`` names upstream assets whose values are not passed.

    Args:
        fn: the function (sync or ``async def``).
        name: the asset name (default: the function name).
        deps: upstream assets (objects or names) whose values are not passed.
        pool: the pool(s) whose slots the step claims, all at once or none.
            Accepts: None, a pool name (1..128 of letters, digits, '_.:/-'), or a
            list of distinct names.
        pool_slots: slots claimed in each pool. Accepts: an int in 1..10,000, at
            most the pool's declared limit; a value other than 1 needs ``pool``.
        tags: string tags describing the asset. Accepts: a mapping of printable
            strings (keys 1..256 characters without '=', values up to 1024).
        priority: higher goes first among steps waiting for the same pool or for
            an executor slot; the run's priority is added to it; equal priorities
            go in arrival order. Accepts: a 32-bit int.
        retry_policy: how often a failing step is tried again. Accepts: None or a
            RetryPolicy.
        timeout: the step fails when an attempt runs longer than this (an async
            step that blocks the event loop past it fails as timed out when it
            returns: it cannot be stopped sooner). Accepts: None or a duration
            above 0 and at most 365d.
        automation_condition: when the daemon materializes it on its own.
        description: free text (default: the function's docstring).

    Raises:
        ConfigError: any argument is invalid; the message names it.
    """

    __slots__ = (
        "__weakref__",
        "automation_condition",
        "deps",
        "description",
        "fn",
        "is_async",
        "name",
        "params",
        "pool_slots",
        "pools",
        "priority",
        "retry_policy",
        "tags",
        "takes_context",
        "timeout_s",
    )

    @overload
    def __new__(
        cls,
        fn: Callable[P, R],
        /,
        *,
        name: str | None = None,
        deps: Iterable[Asset[Any, Any] | str] = (),
        pool: str | Iterable[str] | None = None,
        pool_slots: int = 1,
        tags: Mapping[str, str] | None = None,
        priority: int = 0,
        retry_policy: RetryPolicy | None = None,
        timeout: Duration | None = None,
        automation_condition: object | None = None,
        description: str | None = None,
    ) -> Asset[P, R]: ...

    @overload
    def __new__(  # type: ignore[misc]  # @Asset(...) returns a decorator
        cls,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        deps: Iterable[Asset[Any, Any] | str] = (),
        pool: str | Iterable[str] | None = None,
        pool_slots: int = 1,
        tags: Mapping[str, str] | None = None,
        priority: int = 0,
        retry_policy: RetryPolicy | None = None,
        timeout: Duration | None = None,
        automation_condition: object | None = None,
        description: str | None = None,
    ) -> _AssetDecorator: ...

    def __new__(  # type: ignore[misc]  # bare @Asset returns Asset, @Asset(...) a decorator
        cls,
        fn: Callable[P, R] | None = None,
        /,
        **options: Any,
    ) -> Asset[P, R] | _AssetDecorator:
        if fn is None:
            return _AssetDecorator(options)
        asset = object.__new__(cls)
        asset._define(fn, **options)
        return asset

    def _define(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        deps: Iterable[Asset[Any, Any] | str] = (),
        pool: str | Iterable[str] | None = None,
        pool_slots: int = 1,
        tags: Mapping[str, str] | None = None,
        priority: int = 0,
        retry_policy: RetryPolicy | None = None,
        timeout: Duration | None = None,
        automation_condition: object | None = None,
        description: str | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"@Asset must decorate a function, got {short_repr(fn)}")
        self.fn: Callable[P, R] = fn
        self.name: str = check_asset_name(
            name if name is not None else getattr(fn, "__name__", None),
            "asset name" if name is None else "Asset name=",
        )
        where = f"asset {self.name!r}"
        self.is_async: bool = inspect.iscoroutinefunction(fn)
        self.params, self.takes_context = _data_parameters(fn, where)
        self.deps: tuple[str, ...] = _dep_names(deps, where)
        self.pools: tuple[str, ...] = _pool_names(pool, where)
        self.pool_slots: int = check_int(
            pool_slots, f"{where}: pool_slots", minimum=1, maximum=10_000
        )
        if self.pool_slots != 1 and not self.pools:
            raise ConfigError(
                f"{where}: pool_slots={self.pool_slots} has no pool to claim slots of; "
                "add pool=... or drop pool_slots"
            )
        self.tags: dict[str, str] = check_tags(tags, f"{where}: tags")
        self.priority: int = check_int(
            priority, f"{where}: priority", minimum=-(2**31), maximum=2**31 - 1
        )
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise ConfigError(
                f"{where}: retry_policy must be a rs.RetryPolicy, got {short_repr(retry_policy)}"
            )
        self.retry_policy: RetryPolicy = retry_policy or RetryPolicy()
        self.timeout_s: float | None = (
            None
            if timeout is None
            else parse_duration(timeout, f"{where}: timeout", allow_zero=False)
        )
        self.automation_condition = automation_condition
        if description is not None and not isinstance(description, str):
            raise ConfigError(f"{where}: description must be a string")
        self.description: str | None = (
            description if description is not None else inspect.getdoc(fn)
        )

    @property
    def upstream(self) -> tuple[str, ...]:
        """Every upstream asset name: data dependencies first, then ``deps``."""
        return self.params + tuple(d for d in self.deps if d not in self.params)

    @property
    def pool(self) -> str | tuple[str, ...] | None:
        """The pool(s) as given: None, one name, or a tuple of names."""
        if not self.pools:
            return None
        return self.pools[0] if len(self.pools) == 1 else self.pools

    @property
    def timeout(self) -> float | None:
        """The step timeout in seconds, or None."""
        return self.timeout_s

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly (for unit tests)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Asset({self.name!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # By reference to its module attribute when a worker can import it, so the
        # worker runs the module's own code (its tracebacks, debuggers and coverage
        # see the real file). The function cannot go by reference itself: its name
        # in the module is this asset. Otherwise cloudpickle sends it by value
        # (assets of __main__, notebooks, files loaded with -f).
        where = _module_attribute(self)
        if where is not None:
            return (_from_module, where)
        return (_rebuild, (self.fn, self._options()))

    def _options(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "deps": self.deps,
            "pool": list(self.pools) or None,
            "pool_slots": self.pool_slots,
            "tags": self.tags,
            "priority": self.priority,
            "retry_policy": self.retry_policy,
            "timeout": self.timeout_s,
            "automation_condition": self.automation_condition,
            "description": self.description,
        }


def _module_attribute(asset: Asset[Any, Any]) -> tuple[str, str] | None:
    """``(module, qualified name)`` where ``asset`` is importable, else None."""
    module_name = getattr(asset.fn, "__module__", None)
    qualname = getattr(asset.fn, "__qualname__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str):
        return None
    module = sys.modules.get(module_name)
    if module_name == "__main__" or module is None or "<locals>" in qualname:
        return None
    target: object = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if target is not asset:
        return None
    from rivers._importable import importable_by_reference

    return (module_name, qualname) if importable_by_reference(module) else None


def _from_module(module_name: str, qualname: str) -> Asset[Any, Any]:
    target: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not isinstance(target, Asset):
        raise pickle.UnpicklingError(
            f"{module_name}.{qualname} is no longer an rs.Asset"
        )
    return target


def _rebuild(fn: Callable[..., Any], options: dict[str, Any]) -> Asset[Any, Any]:
    asset = object.__new__(Asset)
    asset._define(fn, **options)
    return asset


@final
class _AssetDecorator:
    """What ``@rs.Asset(...)`` returns: applies the options to a function."""

    __slots__ = ("_options",)

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options

    def __call__(self, fn: Callable[P, R]) -> Asset[P, R]:
        asset: Asset[P, R] = object.__new__(Asset)
        asset._define(fn, **self._options)
        return asset


def _data_parameters(
    fn: Callable[..., Any], where: str
) -> tuple[tuple[str, ...], bool]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot read the function's signature") from exc
    params: list[str] = []
    takes_context = False
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigError(
                f"{where}: parameter {param.name!r} is *args/**kwargs; name each "
                "upstream asset as its own parameter"
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise ConfigError(
                f"{where}: parameter {param.name!r} is positional-only; upstream "
                "values are passed by name"
            )
        if param.name == CONTEXT_PARAMETER:
            takes_context = True
        else:
            params.append(param.name)
    return tuple(params), takes_context


def _dep_names(deps: object, where: str) -> tuple[str, ...]:
    if isinstance(deps, str | Asset):
        deps = [deps]
    if not isinstance(deps, Iterable):
        raise ConfigError(
            f"{where}: deps must be a list of assets or names, got {short_repr(deps)}"
        )
    names: list[str] = []
    for dep in deps:
        name = dep.name if isinstance(dep, Asset) else dep
        check_asset_name(name, f"{where}: deps entry")
        assert isinstance(name, str)
        if name not in names:
            names.append(name)
    return tuple(names)


def _pool_names(pool: object, where: str) -> tuple[str, ...]:
    if pool is None:
        return ()
    pools = [pool] if isinstance(pool, str) else pool
    if not isinstance(pools, Iterable):
        raise ConfigError(
            f"{where}: pool must be a name or a list of names, got {short_repr(pool)}"
        )
    names: list[str] = []
    for name in pools:
        check_pool_name(name, f"{where}: pool")
        assert isinstance(name, str)
        if name in names:
            raise ConfigError(f"{where}: pool {name!r} is listed twice")
        names.append(name)
    return tuple(names)
