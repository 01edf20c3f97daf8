"""Checks shared by every definition: names, tags, integers."""

from __future__ import annotations

import re
from collections.abc import Mapping

from rivers.errors import ConfigError

__all__ = (
    "MAX_TAG_KEY_LENGTH",
    "MAX_TAG_VALUE_LENGTH",
    "check_asset_name",
    "check_int",
    "check_pool_name",
    "check_tags",
)

MAX_NAME_LENGTH = 128
MAX_TAG_KEY_LENGTH = 256
MAX_TAG_VALUE_LENGTH = 1024
MAX_TAGS = 64

_ASSET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_POOL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$")


def _shorten(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def check_asset_name(name: object, field: str = "name") -> str:
    """Return ``name`` if it is a valid asset name (a Python identifier)."""
    if not isinstance(name, str) or not _ASSET_NAME.match(name):
        raise ConfigError(
            f"{field} {_shorten(name)} is not a valid asset name; use letters, digits "
            "and underscores, not starting with a digit"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(
            f"{field} {_shorten(name)} is too long; at most {MAX_NAME_LENGTH} characters"
        )
    return name


def check_pool_name(name: object, field: str = "pool") -> str:
    """Return ``name`` if it is a valid pool name."""
    if (
        not isinstance(name, str)
        or not _POOL_NAME.match(name)
        or len(name) > MAX_NAME_LENGTH
    ):
        raise ConfigError(
            f"{field} {_shorten(name)} is not a valid pool name; use 1 to "
            f"{MAX_NAME_LENGTH} letters, digits and '_.:/-'"
        )
    return name


def _printable(text: str) -> bool:
    return text.isprintable()


def check_tags(tags: object, field: str = "tags") -> dict[str, str]:
    """Return ``tags`` as a new dict if every key and value is a safe string."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise ConfigError(
            f"{field} must be a mapping of str to str, got {_shorten(tags)}"
        )
    if len(tags) > MAX_TAGS:
        raise ConfigError(
            f"{field} has {len(tags)} tags; at most {MAX_TAGS} are allowed"
        )
    checked: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key or len(key) > MAX_TAG_KEY_LENGTH:
            raise ConfigError(
                f"{field} key {_shorten(key)} must be a non-empty string of at most "
                f"{MAX_TAG_KEY_LENGTH} characters"
            )
        if not _printable(key) or "=" in key:
            raise ConfigError(
                f"{field} key {_shorten(key)} must be printable and must not contain '='"
            )
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE_LENGTH:
            raise ConfigError(
                f"{field}[{key!r}] must be a string of at most {MAX_TAG_VALUE_LENGTH} "
                f"characters, got {_shorten(value)}"
            )
        if not _printable(value):
            raise ConfigError(
                f"{field}[{key!r}] must be printable (no control characters), "
                f"got {_shorten(value)}"
            )
        checked[key] = value
    return checked


def check_int(
    value: object, field: str, *, minimum: int, maximum: int | None = None
) -> int:
    """Return ``value`` if it is an int within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field} must be an integer, got {_shorten(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ConfigError(f"{field} must be {bound}, got {value}")
    return value
