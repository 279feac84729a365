"""`pipe log`: upload finished runs and sweeps to MLflow; uploading one again changes nothing."""

from __future__ import annotations

import typer

from runner.commands.reporting import EXIT_BROKEN_INSTALL, EXIT_RUN_FAILED, EXIT_USAGE, fail
from runner.spec.errors import printable


def main(run_dirs, mlflow, experiment) -> None:
    from runner.outputs.tracking import INSTALL_HINT, TrackingError, mlflow_available
    from runner.outputs.tracking_run import describe, log_run
    from runner.sweep.tracking import is_sweep_dir, log_sweep

    if not mlflow_available():
        fail(f"pipe log: mlflow is not installed ({INSTALL_HINT})", EXIT_BROKEN_INSTALL)
    if mlflow is not None:  # a --mlflow that cannot be used is the command line's mistake: said once, exit 2
        from runner.outputs.tracking_uri import check_uri

        try:
            check_uri(mlflow)
        except TrackingError as e:
            fail(f"pipe log: --mlflow {e}", EXIT_USAGE)
    failed = set()  # the exit codes of the runs not uploaded: the others are uploaded all the same
    for run_dir in run_dirs:
        try:
            if is_sweep_dir(run_dir):  # a parent run, and each trial's run under it
                line = log_sweep(run_dir, mlflow, experiment).describe()
            else:
                line = describe(log_run(run_dir, mlflow, experiment))
            typer.echo(printable(f"{run_dir}: {line}"))
        except TrackingError as e:
            typer.echo(printable(f"pipe log: {run_dir}: {e}"), err=True)
            failed.add(e.exit_code)
    if failed:  # a usage mistake (not a run, no URI) says so, as the other commands do
        raise typer.Exit(code=EXIT_USAGE if EXIT_USAGE in failed else EXIT_RUN_FAILED)
