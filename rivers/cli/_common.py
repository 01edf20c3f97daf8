"""What every command shares: the storage option, errors, tag parsing, output."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import NoReturn

import typer

from rivers.definitions._validate import check_tags
from rivers.errors import ConfigError

__all__ = ("CliState", "fail", "parse_tags", "printable")


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
    """Parse ``KEY=VALUE`` strings into tags.

    Raises:
        ConfigError: a value has no '=' or an invalid key or value.
    """
    tags: dict[str, str] = {}
    for value in values:
        key, sep, tag_value = value.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tag {value!r} must look like KEY=VALUE")
        tags[key] = tag_value
    return check_tags(tags, "--tag")
