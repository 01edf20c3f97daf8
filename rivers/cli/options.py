"""Typer option types shared by the commands that load a repository."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = (
    "AttributeOption",
    "FileOption",
    "ModuleOption",
    "SelectOption",
    "TagsOption",
)

FileOption = Annotated[
    str | None,
    typer.Option("-f", "--file", metavar="FILE.py", help="Python file to load."),
]
ModuleOption = Annotated[
    str | None, typer.Option("-m", "--module", metavar="MODULE", help="Module to load.")
]
AttributeOption = Annotated[
    str | None,
    typer.Option(
        "-a", "--attribute", metavar="NAME", help="Repository variable in it."
    ),
]
SelectOption = Annotated[
    str | None,
    typer.Option("--select", metavar="A,B", help="Comma-separated asset names."),
]
TagsOption = Annotated[
    list[str] | None,
    typer.Option("--tag", metavar="KEY=VALUE", help="Run tag (repeatable)."),
]
