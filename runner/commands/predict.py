"""`pipe predict`: a run's saved model on a raw file, after the test split's preprocessing."""

from __future__ import annotations

import typer

from runner.commands.reporting import EXIT_USAGE, fail, reporting_errors, require_run_dir
from runner.spec.errors import printable


def main(run_dir, input, output, batch_size, key, debug: bool) -> None:
    from runner.outputs.prediction_files import OUTPUT_FORMATS  # numpy: not on pipe validate's path

    if output.suffix.lower() not in OUTPUT_FORMATS:  # usage mistakes: exit 2, before TensorFlow
        fail(f"pipe predict: --output {output}: unknown output format '{output.suffix}' "
             f"(use {', '.join(OUTPUT_FORMATS)})", EXIT_USAGE)
    if not output.parent.is_dir():
        fail(f"pipe predict: --output {output}: the folder {output.parent} does not exist", EXIT_USAGE)
    require_run_dir("predict", run_dir)

    def predict_it():
        from runner.commands.prediction import predict_file  # imports TensorFlow

        return predict_file(run_dir, input, output, batch_size=batch_size, key=key)

    predictions = reporting_errors("predict", predict_it, debug)
    for note in predictions.notes:
        typer.echo(printable(f"pipe predict: {note}"), err=True)
    typer.echo(f"predictions: {printable(predictions.path)} ({predictions.count} rows)")
