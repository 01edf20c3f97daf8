"""What the trigger definitions check alike: names, selections, function signatures.

Shared by ``Schedule`` (``definitions/schedules.py``) and ``Sensor``
(``definitions/sensors.py``); each raises ``ConfigError`` naming the trigger.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from rivers._validate import check_asset_name
from rivers.definitions.asset import Asset
from rivers.errors import ConfigError

__all__ = ("Selection", "check_selection", "takes_context", "trigger_name")

Selection = Iterable[Asset[Any, Any] | str] | Asset[Any, Any] | str | None


def check_selection(selection: object, where: str) -> tuple[str, ...] | None:
    """Return the asset names ``selection`` names, deduplicated (None: all).

    Raises:
        ConfigError: not assets or names, or a bad name.
    """
    if selection is None:
        return None
    if isinstance(selection, str | Asset):
        selection = [selection]
    if not isinstance(selection, Iterable):
        raise ConfigError(f"{where}: selection must be a list of assets or names")
    names: list[str] = []
    for item in selection:
        name = item.name if isinstance(item, Asset) else item
        names.append(check_asset_name(name, f"{where}: selection entry"))
    return tuple(dict.fromkeys(names))


def takes_context(fn: Callable[..., Any], where: str) -> bool:
    """Return whether ``fn`` takes the context (it may take nothing or one argument).

    Raises:
        ConfigError: ``fn`` needs more than one argument.
    """
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable: pass the context
        return True
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.default is p.empty
    ]
    if len(positional) > 1:
        raise ConfigError(
            f"{where}: the function takes {len(positional)} arguments; it must take "
            "one (the context) or none"
        )
    return bool(positional) or any(p.kind is p.VAR_POSITIONAL for p in parameters)


def trigger_name(name: object, fn: object, where: str) -> str:
    """Return ``name``, or the function's name when it is None, checked.

    Raises:
        ConfigError: no name, or a bad one.
    """
    value = name if name is not None else getattr(fn, "__name__", None)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} needs a name; pass name=...")
    return check_asset_name(value, f"{where} name")
