"""Help text as people expect it: ``rivers runs show RUN``, whole first sentences.

Typer's plain help writes a required argument as ``{RUN}``, adds its Python type
(``RUN <str>``), and cuts a command's description with ``...`` to fit the list.
``RiversGroup`` (the ``cls`` of every ``typer.Typer`` here) lists each command's
first sentence whole, wrapped, and makes its commands ``RiversCommand``s, whose
usage line reads ``RUN [STEP]`` (an argument's metavar, else its name in
capitals). Options name their value with a metavar
(``--wait SECONDS``), never a type such as ``<float range>``.

``LazyRiversGroup`` (the ``rivers`` group itself) lists commands it has not loaded:
each ``LazyCommand`` names its module and first sentence, and the module (with rich,
anyio, storage and the runtime behind it) is imported only when that command runs or
shows its own help, so ``rivers --help`` imports none of them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

if TYPE_CHECKING:
    from collections.abc import Mapping

    import typer._click as click

__all__ = ("LazyCommand", "LazyRiversGroup", "RiversCommand", "RiversGroup")

WHOLE_SENTENCE = 10_000
"""A short-help limit no sentence reaches: the list wraps it, never cuts it."""


class RiversCommand(TyperCommand):
    """A command whose help names its arguments plainly (``RUN [STEP]``)."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        """Return ``[OPTIONS] RUN [STEP]``: required bare, optional in brackets."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(
        self, ctx: click.Context, formatter: click.HelpFormatter
    ) -> None:
        """Write the arguments (by name, without a Python type), then the options."""
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, TyperArgument):
                arguments.append((_argument_name(param), record[1]))
            elif param.param_type_name == "option":
                options.append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)


def _argument_name(argument: TyperArgument) -> str:
    """Return its metavar, else its name in capitals (``NAME``), as click does."""
    return argument.metavar or (argument.name or "").upper()


class RiversGroup(TyperGroup):
    """A command group that lists whole first sentences and plain command help."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for command in self.commands.values():
            if type(command) is TyperCommand:
                # Same fields, one more way to print them: adopt it in place, so
                # every command of a rivers group gets plain help without a cls=.
                command.__class__ = RiversCommand

    def format_commands(
        self, ctx: click.Context, formatter: click.HelpFormatter
    ) -> None:
        """Write one row per command with the first sentence of its help, whole."""
        rows = []
        for name in self.list_commands(ctx):
            short_help = self.command_summary(ctx, name)
            if short_help is not None:
                rows.append((name, short_help))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def command_summary(self, ctx: click.Context, name: str) -> str | None:
        """Return the first sentence of a command's help, whole (None: hidden)."""
        command = self.get_command(ctx, name)
        if command is None or command.hidden:
            return None
        return command.get_short_help_str(WHOLE_SENTENCE)


@dataclass(frozen=True)
class LazyCommand:
    """A command of ``rivers`` loaded from its module on first use."""

    target: str
    """``module:attribute``: a ``typer.Typer`` (a group) or a command function."""
    short_help: str
    """Its help's first sentence, for ``rivers --help`` (a test checks they agree)."""

    def load(self, name: str) -> click.Command:
        """Import the module and return the command, named ``name``."""
        module, _, attribute = self.target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
        if isinstance(target, typer.Typer):
            command: click.Command = typer.main.get_group(target)
        else:
            single = typer.Typer(add_completion=False, rich_markup_mode=None)
            single.command(name)(target)
            command = typer.main.get_command(single)
            if type(command) is TyperCommand:
                command.__class__ = RiversCommand
        command.name = name
        return command


class LazyRiversGroup(RiversGroup):
    """A ``RiversGroup`` that also lists ``lazy_commands``, loading each on use."""

    lazy_commands: ClassVar[Mapping[str, LazyCommand]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Return the loaded commands, then the ones not loaded yet."""
        names = super().list_commands(ctx)
        return [*names, *(name for name in self.lazy_commands if name not in names)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """Return the command ``name``, importing its module the first time."""
        command = super().get_command(ctx, name)
        lazy = self.lazy_commands.get(name)
        if command is None and lazy is not None:
            command = lazy.load(name)
            self.add_command(command, name)
        return command

    def command_summary(self, ctx: click.Context, name: str) -> str | None:
        """Return a command's first sentence without loading its module."""
        lazy = self.lazy_commands.get(name)
        if lazy is not None and name not in self.commands:
            return lazy.short_help
        return super().command_summary(ctx, name)
