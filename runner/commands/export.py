"""`pipe export`: a completed run's model with its preprocessing, as SavedModel, TFLite or ONNX."""

from __future__ import annotations

import typer

from runner import console
from runner.commands.reporting import EXIT_USAGE, fail, reporting_errors, require_run_dir

from runner.export.paths import request_problem


def main(run_dir, format: str, output, quantize, jit_compile: bool) -> None:
    problem = request_problem(format, quantize, jit_compile, output)
    if problem:  # usage mistakes: exit 2, before TensorFlow starts
        fail(f"pipe export: {problem}", EXIT_USAGE)
    require_run_dir("export", run_dir)

    def export_it():
        from runner.export.write import export_run  # imports TensorFlow

        return export_run(run_dir, format, output, quantize, jit_compile=jit_compile)

    exported = reporting_errors("export", export_it)  # refused: exit 1; failed: exit 3, the step that failed
    # TensorFlow's and the converters' log joins the run's tensorflow.log, once the export is
    # done: a refused or failed one leaves the run as it was
    console.append_log_to(run_dir)
    typer.echo(f"exported: {exported.path} ({exported.format}, sha256 {exported.sha256})")
