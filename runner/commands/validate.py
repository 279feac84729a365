"""`pipe validate`: the schema and the cross-field rules, file by file or layered, without TensorFlow."""

from __future__ import annotations

import json

import typer

from runner.commands.options import Format
from runner.commands.reporting import EXIT_INVALID
from runner.spec import SpecError, load_spec
from runner.spec.adaptation import adaptation_notes
from runner.spec.report import render


def main(files, set_, format: Format, layered: bool, resolved: bool) -> None:
    errors, texts, notes, resolved_docs = [], [], [], []
    for layers in ([files] if layered else [[file] for file in files]):
        try:
            spec = load_spec(layers, set_ or ())
            notes += adaptation_notes(spec)
            from runner.outputs.run_dir import outputs_dir_errors

            errors += outputs_dir_errors(spec)  # runs would be written inside another run
            if spec.get("sweep") is not None:  # every value of the search space keeps the spec valid
                from runner.spec.sweep_space import sweep_errors

                errors += sweep_errors(spec, layers, set_ or ())
        except SpecError as e:
            errors += e.as_list()
            spec = getattr(e, "spec", None)  # merged, then found wrong: --resolved still shows it
            if spec is None:
                continue
        if resolved:
            from runner.spec.resolved import resolved_text

            texts.append(f"# {' + '.join(map(str, layers))}\n" + resolved_text(spec))
            resolved_docs.append({"files": [str(f) for f in layers], "spec": spec.doc})
    if resolved and format is Format.json:  # one JSON document: the specs and the errors
        from runner.spec.resolved import strict_json

        typer.echo(json.dumps(strict_json({"resolved": resolved_docs, "errors": [e.as_dict() for e in errors]}),
                              indent=2, allow_nan=False))
    else:
        if texts:
            typer.echo("---\n".join(texts), nl=False)
        if errors or format is Format.json:
            typer.echo(render(errors, format.value))
    if errors:
        raise typer.Exit(code=EXIT_INVALID)
    if format is Format.text:
        for note in notes:  # which layers a run adapts on the train split
            typer.echo(note, err=True)
        count = 1 if layered else len(files)
        # validate's result, on stdout as its findings are (and as run, export, predict say theirs);
        # with --resolved, stdout is the resolved YAML and the line goes beside it
        typer.echo(f"{count} spec{'s' if count != 1 else ''} valid", err=resolved)


def schema(keras: bool, partial: bool) -> None:
    """`pipe schema`: the spec's JSON Schema, or its partial form, or with the Keras catalog folded in."""
    from runner.spec import load_schema
    from runner.spec.schema import partial_schema

    if keras:
        from runner.spec.keras_schema import keras_schema

        schema = keras_schema()
    else:
        schema = load_schema()
    typer.echo(json.dumps(partial_schema(schema) if partial else schema, indent=2))
