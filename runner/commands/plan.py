"""`pipe plan`: build everything a run would and push one batch through, without training."""

from __future__ import annotations

import json
import traceback

import typer

from runner.commands.options import Format
from runner.commands.reporting import EXIT_INVALID, EXIT_RUN_FAILED, fail
from runner.spec import SpecError, load_spec
from runner.spec.errors import printable
from runner.spec.report import render


def main(files, set_, format: Format, debug: bool) -> None:
    try:
        spec = load_spec(files, set_ or ())
        from runner.outputs.run_dir import outputs_dir_errors

        nested = outputs_dir_errors(spec)  # runs would be written inside another run
        if nested:
            raise nested[0]
        from runner.commands.planning import plan_spec  # imports TensorFlow
        from runner.commands.plan_text import render_text

        result = plan_spec(spec)
    except SpecError as e:
        if debug:
            traceback.print_exc()
        errors = getattr(e, "errors", [e])
        typer.echo(render(errors, format.value) if format is not Format.json
                   else json.dumps({"errors": [x.as_dict() for x in errors]}, indent=2), err=format is Format.text)
        raise typer.Exit(code=EXIT_INVALID) from None
    except Exception as e:  # not the spec's mistake: one paragraph, as pipe run says it
        from runner.outputs.failure import summarise_error

        fail(f"pipe plan: failed: {summarise_error(e)}", EXIT_RUN_FAILED)
    if format is Format.json:
        from runner.outputs.files import strict

        typer.echo(json.dumps(strict(result.as_dict()), indent=2, default=str, allow_nan=False))
    elif format is Format.text:  # class names, columns and paths come from files: escaped line by line
        typer.echo("\n".join(printable(line) for line in render_text(result, " + ".join(map(str, files))).splitlines()))
    if result.errors and format is not Format.json:
        typer.echo(render(result.errors, format.value), err=format is Format.text)
    if result.errors:
        raise typer.Exit(code=EXIT_INVALID)
