"""Tracking a run in MLflow: as `pipe run` ends (`outputs.mlflow`), and later (`pipe log`).

A run's tracking never costs the run: it starts after every file of the run directory is
written, and whatever goes wrong (mlflow not installed, a server down, a refused write)
is one warning line naming the `pipe log` command that uploads the run later.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

from runner.outputs.tracking import INSTALL_HINT, TrackingError, Upload, mlflow_available, upload_run
from runner.outputs.tracking_uri import TrackingRequestError, has_password, mask
from runner.spec.errors import printable
from runner.spec.store_paths import missing_folder_problem


def mlflow_config(doc: dict) -> dict | None:
    """The spec's `outputs.mlflow`, or None when the run is not tracked."""
    config = (doc.get("outputs") or {}).get("mlflow")
    return dict(config) if isinstance(config, dict) else None


def check_tracking_folder(spec) -> None:
    """Before a run or sweep starts: its MLflow store is a local file (sqlite:///, file:, a path)
    whose folder does not exist. Relative paths are checked here, against the working
    directory where MLflow resolves them (`pipe validate` checks absolute ones).

    Raises:
        SpecError: outputs.mlflow.tracking_uri names it (located).
        TrackingRequestError: MLFLOW_TRACKING_URI names it (a usage mistake, exit 2).
    """
    mlflow = spec.sections.outputs.mlflow
    if mlflow is None:
        return
    uri = mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    problem = missing_folder_problem(uri)
    if problem and mlflow.tracking_uri:
        raise mlflow.error("tracking_uri", problem, at_value=True)
    if problem:
        raise TrackingRequestError(f"MLFLOW_TRACKING_URI {mask(uri)}: {problem}")


def track_finished_run(doc: dict, run_dir, quiet: bool = False, parent_run_id: str | None = None) -> Upload | None:
    """Upload a run that just ended to the MLflow of its spec's `outputs.mlflow`; never raises.

    Returns the upload, or None when the spec tracks nothing or the upload failed (said in
    one line on stderr).
    """
    config = mlflow_config(doc)
    if config is None:
        return None
    if has_password(config.get("tracking_uri")):
        print("pipe run: warning: outputs.mlflow.tracking_uri holds a password, which the run's spec.yaml keeps "
              "(pipe shows it as ***): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead",
              file=sys.stderr, flush=True)
    uri = config.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    later = f"upload it later with: pipe log {run_dir} --mlflow {mask(uri) or 'URI'}"
    try:
        if not uri:
            raise TrackingError("no outputs.mlflow.tracking_uri and no MLFLOW_TRACKING_URI")
        if not mlflow_available():
            raise TrackingError(f"mlflow is not installed ({INSTALL_HINT})")
        upload = upload_run(run_dir, uri, experiment=config.get("experiment"), run_name=config.get("run_name"),
                            register_as=config.get("register_as"), parent_run_id=parent_run_id)
    except (Exception, KeyboardInterrupt) as e:  # the run is complete: tracking must not change that
        reason = str(e) if isinstance(e, TrackingError) else f"{type(e).__name__}: {e}".strip()
        reason = mask(reason.splitlines()[0]) if reason else "interrupted"
        print(printable(f"pipe run: warning: not tracked in MLflow: {reason}; {later}"), file=sys.stderr, flush=True)
        return None
    if not quiet:
        print(printable(describe(upload)), flush=True)
    return upload


def describe(upload: Upload) -> str:
    """`mlflow: run 1a2b... in experiment 'mnist' at http://...` (+ the registered version)."""
    line = f"mlflow: run {upload.run_id} in experiment '{upload.experiment}' at {upload.tracking_uri}"
    if upload.superseded_by:
        line += f" (unchanged: it holds {upload.superseded_by}, which resumes this run)"
    elif upload.skipped:
        line += " (already uploaded: unchanged)"
    if upload.model_version:
        line += f", model version {upload.model_version}"
    return line


def log_run(run_dir, tracking_uri: str | None, experiment: str | None = None) -> Upload:
    """`pipe log`: upload a finished run directory; the spec's outputs.mlflow fills in
    what the command does not say (experiment, run name, registered model).

    Raises:
        TrackingError: not a finished run directory, no URI, or the upload failed.
    """
    run_dir = Path(run_dir)
    if experiment is not None and printable(experiment) != experiment:
        raise TrackingError(f"--experiment '{printable(experiment)}' holds control characters: use a plain name")
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        raise TrackingRequestError("not a run directory (no readable manifest.json)") from None
    from runner.outputs.status import effective_status

    if effective_status(manifest).status == "running":
        raise TrackingError("the run is still running; upload it once it has ended")
    try:
        doc = yaml.safe_load((run_dir / "spec.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        doc = {}
    config = mlflow_config(doc) or {}
    uri = tracking_uri or config.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise TrackingRequestError("give --mlflow URI (the run's spec names no outputs.mlflow.tracking_uri, "
                            "and MLFLOW_TRACKING_URI is not set)")
    return upload_run(run_dir, uri, experiment=experiment or config.get("experiment"),
                      run_name=config.get("run_name"), register_as=config.get("register_as"))
