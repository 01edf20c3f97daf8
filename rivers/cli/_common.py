"""What every command shares: the storage option, errors, tag parsing, output."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import NoReturn

import typer

from rivers._validate import check_tags
from rivers.errors import ConfigError

__all__ = ("CliState", "fail", "parse_tag_filter", "parse_tags", "printable")


@dataclass(slots=True)
class CliState:
    """Options of the ``rivers`` command itself."""

    storage: str | None


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``rivers: error: message`` on one line to stderr and exit."""
    line = printable(" ".join(message.split()))
    typer.echo(f"rivers: error: {line}", err=True)
    sys.exit(code)


def printable(text: str) -> str:
    """Return ``text`` with control characters shown escaped, never sent.

    Quoted input (a path, a name) may hold them.
    """
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def parse_tags(values: list[str]) -> dict[str, str]:
    """Parse ``KEY=VALUE`` strings into a run's tags (one value per key).

    Raises:
        ConfigError: a value has no '=', an invalid key or value, or a key is given
            twice (a run has one value per tag).
    """
    tags: dict[str, str] = {}
    for key, values_of_key in parse_tag_filter(values).items():
        if len(values_of_key) > 1:
            given = ", ".join(f"{key}={value}" for value in values_of_key)
            raise ConfigError(
                f"--tag {key!r} is given {len(values_of_key)} times ({given}); a run "
                "has one value per tag"
            )
        tags[key] = values_of_key[0]
    return check_tags(tags, "--tag")


def parse_tag_filter(values: list[str]) -> dict[str, list[str]]:
    """Parse ``KEY=VALUE`` filters: the values given for each key, in order.

    ``runs list`` keeps a run when every key matches one of its values.

    Raises:
        ConfigError: a value has no '=' or an invalid key or value.
    """
    grouped: dict[str, list[str]] = {}
    for value in values:
        key, sep, tag_value = value.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tag {value!r} must look like KEY=VALUE")
        check_tags({key: tag_value}, "--tag")
        if tag_value not in grouped.setdefault(key, []):
            grouped[key].append(tag_value)
    return grouped
