"""`pipe evaluate`: a run's saved model on its own splits, or on other data given with --set."""

from __future__ import annotations

import typer

from runner.commands.reporting import echo_metrics, reporting_errors, require_run_dir
from runner.errors import EXIT_INVALID
from runner.spec.errors import printable


def main(run_dir, set_, splits, debug: bool) -> None:
    require_run_dir("evaluate", run_dir)

    def evaluate_it():
        from runner.commands.evaluation import evaluate_run  # imports TensorFlow

        return evaluate_run(run_dir, set_ or (), splits)

    evaluation = reporting_errors("evaluate", evaluate_it, debug)
    echo_metrics(evaluation.metrics)
    if evaluation.path is None:
        typer.echo(f"pipe evaluate: not kept: {printable(evaluation.not_kept)}", err=True)
        raise typer.Exit(code=EXIT_INVALID)
    typer.echo(f"evaluation: {printable(evaluation.path)}")
