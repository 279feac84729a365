"""`pipe plan`: build everything a run would and push one batch through, without training."""

from __future__ import annotations

import json
import traceback

import typer

from runner.commands.options import Format
from runner.commands.reporting import EXIT_INVALID, reporting_errors
from runner.spec import SpecError, load_spec
from runner.spec.errors import printable
from runner.spec.report import render


def main(files, set_, format: Format, debug: bool) -> None:
    def plan_it():
        try:
            spec = load_spec(files, set_ or ())
            from runner.outputs.run_dir import outputs_dir_errors

            nested = outputs_dir_errors(spec)  # runs would be written inside another run
            if nested:
                raise nested[0]
            from runner.commands.planning import plan_spec  # imports TensorFlow

            return plan_spec(spec)
        except SpecError as e:  # listed as the mistakes plan finds itself, in the chosen format
            if debug:
                traceback.print_exc()
            errors = e.as_list()
            typer.echo(render(errors, format.value) if format is not Format.json
                       else json.dumps({"errors": [x.as_dict() for x in errors]}, indent=2), err=format is Format.text)
            raise typer.Exit(code=e.exit_code) from None

    result = reporting_errors("plan", plan_it, debug)
    if format is Format.json:
        from runner.outputs.files import strict

        typer.echo(json.dumps(strict(result.as_dict()), indent=2, default=str, allow_nan=False))
    elif format is Format.text:  # class names, columns and paths come from files: escaped line by line
        from runner.commands.plan_text import render_text

        typer.echo("\n".join(printable(line) for line in render_text(result, " + ".join(map(str, files))).splitlines()))
    if result.errors and format is not Format.json:
        typer.echo(render(result.errors, format.value), err=format is Format.text)
    if result.errors:
        raise typer.Exit(code=EXIT_INVALID)
