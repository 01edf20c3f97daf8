"""Checks shared by every definition: names, tags, integers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rivers._repr import short_repr
from rivers.errors import ConfigError

__all__ = (
    "ASSET_NAME",
    "MAX_LIMIT",
    "MAX_RUN_KEY_LENGTH",
    "MAX_TAG_KEY_LENGTH",
    "MAX_TAG_VALUE_LENGTH",
    "POOL_NAME",
    "REPOSITORY_NAME",
    "NameRule",
    "check_asset_name",
    "check_int",
    "check_name",
    "check_pool_name",
    "check_run_key",
    "check_tags",
)

MAX_LIMIT = 10_000
"""The largest pool, queue or tag limit (and the largest pool override)."""
MAX_NAME_LENGTH = 128
MAX_TAG_KEY_LENGTH = 256
MAX_TAG_VALUE_LENGTH = 1024
MAX_TAGS = 64
MAX_RUN_KEY_LENGTH = 512


@dataclass(frozen=True, slots=True)
class NameRule:
    """What one kind of name may be: a pattern the whole name matches, a length.

    The pattern is matched with ``fullmatch``: a ``$``-anchored ``match`` would let a
    trailing newline through (``"orders\n"``).
    """

    kind: str
    pattern: re.Pattern[str]
    max_length: int
    hint: str


ASSET_NAME = NameRule(
    "valid asset name",
    re.compile(r"[A-Za-z_][A-Za-z0-9_]*"),
    MAX_NAME_LENGTH,
    f"use 1 to {MAX_NAME_LENGTH} letters, digits and underscores, not starting "
    "with a digit",
)
"""Assets, schedules and sensors: a Python identifier in ASCII."""
POOL_NAME = NameRule(
    "valid pool name",
    re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*"),
    MAX_NAME_LENGTH,
    f"use 1 to {MAX_NAME_LENGTH} letters, digits and '_.:/-'",
)
REPOSITORY_NAME = NameRule(
    "valid repository name",
    POOL_NAME.pattern,
    MAX_NAME_LENGTH,
    f"use 1 to {MAX_NAME_LENGTH} letters, digits and '_.:/-'",
)


def check_name(value: object, rule: NameRule, field: str) -> str:
    """Return ``value`` if the whole of it is a name of ``rule``'s kind.

    Raises:
        ConfigError: not a string, too long, or not matching the rule's pattern.
    """
    if (
        isinstance(value, str)
        and len(value) <= rule.max_length
        and rule.pattern.fullmatch(value) is not None
    ):
        return value
    raise ConfigError(f"{field} {short_repr(value)} is not a {rule.kind}; {rule.hint}")


def check_asset_name(name: object, field: str = "name") -> str:
    """Return ``name`` if it is a valid asset name (an ASCII Python identifier)."""
    return check_name(name, ASSET_NAME, field)


def check_pool_name(name: object, field: str = "pool") -> str:
    """Return ``name`` if it is a valid pool name."""
    return check_name(name, POOL_NAME, field)


def check_run_key(run_key: object, field: str) -> str:
    """Return ``run_key`` if it is a printable string of 1..512 characters.

    Raises:
        ConfigError: not a string, empty, too long, or holding a control character.
    """
    if (
        not isinstance(run_key, str)
        or not run_key
        or len(run_key) > MAX_RUN_KEY_LENGTH
        or not run_key.isprintable()
    ):
        raise ConfigError(
            f"{field} must be a printable string (no control characters) of 1 to "
            f"{MAX_RUN_KEY_LENGTH} characters, got {short_repr(run_key)}"
        )
    return run_key


def _printable(text: str) -> bool:
    return text.isprintable()


def check_tags(tags: object, field: str = "tags") -> dict[str, str]:
    """Return ``tags`` as a new dict if every key and value is a safe string."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise ConfigError(
            f"{field} must be a mapping of str to str, got {short_repr(tags)}"
        )
    if len(tags) > MAX_TAGS:
        raise ConfigError(
            f"{field} has {len(tags)} tags; at most {MAX_TAGS} are allowed"
        )
    checked: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key or len(key) > MAX_TAG_KEY_LENGTH:
            raise ConfigError(
                f"{field} key {short_repr(key)} must be a non-empty string of at most "
                f"{MAX_TAG_KEY_LENGTH} characters"
            )
        if not _printable(key) or "=" in key:
            raise ConfigError(
                f"{field} key {short_repr(key)} must be printable and must not contain '='"
            )
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE_LENGTH:
            raise ConfigError(
                f"{field}[{key!r}] must be a string of at most {MAX_TAG_VALUE_LENGTH} "
                f"characters, got {short_repr(value)}"
            )
        if not _printable(value):
            raise ConfigError(
                f"{field}[{key!r}] must be printable (no control characters), "
                f"got {short_repr(value)}"
            )
        checked[key] = value
    return checked


def check_int(
    value: object, field: str, *, minimum: int, maximum: int | None = None
) -> int:
    """Return ``value`` if it is an int within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field} must be an integer, got {short_repr(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ConfigError(f"{field} must be {bound}, got {short_repr(value)}")
    return value
