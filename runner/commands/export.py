"""`pipe export`: a completed run's model with its preprocessing, as SavedModel, TFLite or ONNX."""

from __future__ import annotations

import typer

from runner.commands.reporting import EXIT_INVALID, EXIT_RUN_FAILED, EXIT_USAGE, fail, reporting_errors, \
    require_run_dir
from runner.export.write import FORMATS, QUANTIZE


def main(run_dir, format: str, output, quantize, jit_compile: bool) -> None:
    if format not in FORMATS:  # usage mistakes: exit 2, before TensorFlow starts
        fail(f"pipe export: unknown format {format!r} (use {', '.join(FORMATS)})", EXIT_USAGE)
    if quantize is not None and quantize not in QUANTIZE:
        fail(f"pipe export: unknown quantization {quantize!r} (use {', '.join(QUANTIZE)})", EXIT_USAGE)
    require_run_dir("export", run_dir)

    def export_it():
        from runner.export.write import ExportFailed, ExportRefused, export_run  # imports TensorFlow

        try:
            return export_run(run_dir, format, output, quantize, jit_compile=jit_compile)
        except ExportRefused as e:  # the run or the path, not a failure: said in one line
            return e
        except ExportFailed as e:  # the step that failed and why, one paragraph
            e.failed = True
            return e

    exported = reporting_errors("export", export_it)
    if not hasattr(exported, "sha256"):
        fail(f"pipe export: {exported}", EXIT_RUN_FAILED if getattr(exported, "failed", False) else EXIT_INVALID)
    typer.echo(f"exported: {exported.path} ({exported.format}, sha256 {exported.sha256})")
