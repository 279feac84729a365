"""`pipe sweep`: start, resume or join a hyperparameter search, then say what it found."""

from __future__ import annotations

import importlib.util
import shlex

import typer

from runner.commands.reporting import EXIT_BROKEN_INSTALL, EXIT_RUN_FAILED, EXIT_USAGE, fail, reporting_errors


def main(files, set_, workers: int, storage, resume, join) -> None:
    if sum(x is not None for x in (resume, join)) + bool(files) != 1:
        fail("pipe sweep: give a SPEC, --resume SWEEP_DIR or --join SWEEP_DIR (one of them)", EXIT_USAGE)
    if set_ and not files:
        fail("pipe sweep: --set applies to a new sweep; a resumed or joined sweep keeps its own values", EXIT_USAGE)
    if importlib.util.find_spec("optuna") is None:
        fail("pipe sweep: Optuna is not installed; install pipe's sweep extra: pip install 'pipe[sweep]'",
             EXIT_BROKEN_INSTALL)
    from runner.sweep import search

    def sweep_it():
        if resume is not None:
            return search.resume(resume, workers, echo=typer.echo)
        if join is not None:
            return search.join(join, workers, echo=typer.echo)
        return search.start(files, set_ or (), workers, storage, echo=typer.echo)

    result = reporting_errors("sweep", sweep_it)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()))
    typer.echo(f"trials: {counts or 'none'}")
    if result.best:
        best = result.best
        params = "  ".join(f"{k}={v}" for k, v in best["params"].items())
        typer.echo(f"best: trial {best['number']}  {best['objective']}={best['value']:.5g}  {params}")
        typer.echo(f"best spec: {result.directory / 'best.yaml'}")
    if result.interrupted:
        typer.echo(f"pipe sweep: interrupted by {result.interrupted}; finish with: "
                   f"{shlex.join(['pipe', 'sweep', '--resume', str(result.directory)])}", err=True)
        raise typer.Exit(code=result.exit_code)
    if not result.best and result.counts.get("failed"):  # nothing to show for it: as a failed run, exit 3
        fail(f"pipe sweep: no trial completed; each one's message is in {result.directory / 'trials.csv'}",
             EXIT_RUN_FAILED)
