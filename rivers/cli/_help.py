"""Help text as people expect it: ``rivers runs show RUN``, whole first sentences.

Typer's plain help writes a required argument as ``{RUN}``, adds its Python type
(``RUN <str>``), and cuts a command's description with ``...`` to fit the list.
``RiversGroup`` (the ``cls`` of every ``typer.Typer`` here) lists each command's
first sentence whole, wrapped, and makes its commands ``RiversCommand``s, whose
usage line reads ``RUN [STEP]`` (an argument's metavar, else its name in
capitals). Options name their value with a metavar
(``--wait SECONDS``), never a type such as ``<float range>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from typer.core import TyperArgument, TyperCommand, TyperGroup

if TYPE_CHECKING:
    import typer._click as click

__all__ = ("RiversCommand", "RiversGroup")

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
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            rows.append((name, command.get_short_help_str(WHOLE_SENTENCE)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
