"""Plain `--help` pages: arguments by their metavar, no `{file}` or `<list[Path]>` type tags.

Typer's own help marks a required argument `{file}` and shows each argument's Python type
(`<list[Path]>`); users read neither. Commands declared with `cls=PlainCommand` print
click's plain layout instead: `Usage: pipe run [OPTIONS] FILE`.
"""

from __future__ import annotations

from typer.core import TyperCommand  # Typer ships its own click: no `import click`


class PlainCommand(TyperCommand):
    """A Typer command whose usage line and help list arguments by metavar."""

    def collect_usage_pieces(self, ctx):
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(_argument_name(param))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx, formatter):
        params = self.get_params(ctx)
        arguments = [(_argument_name(p), p.help or "") for p in params
                     if p.param_type_name == "argument" and not p.hidden]
        options = [record for p in params if p.param_type_name == "option"
                   for record in [p.get_help_record(ctx)] if record]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_name(param) -> str:
    name = param.metavar or param.name.upper()
    if not param.required:
        name = f"[{name}]"
    return name + ("..." if param.nargs != 1 and not name.endswith("...") else "")
