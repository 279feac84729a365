"""A sweep in MLflow: one parent run named after the sweep directory, a child run per trial.

Everything is read from the sweep directory after pipe wrote it: sweep.json (the `sweep:`
section and `outputs.mlflow` as the sweep started, the study's name), trials.csv (each
trial's number, state, values, objective and run directory), best.yaml and the plots. Each
trial's run directory is uploaded as an ordinary run (`upload_run`) under the parent
(`mlflow.parentRunId`) with its number and state as tags; the parent gets the search space
as params, the objective of each trial (step: its number) and the best as metrics, the best
trial's values as tags, and trials.csv, best.yaml, sweep.json and the plots as artefacts.
Every part is idempotent, so the same function serves a sweep as it ends, a worker after a
trial, and `pipe log SWEEP_DIR` later (also for a sweep made before tracking was configured).

Tracking never costs the sweep: `SweepTracking` says a failure in one warning line and the
sweep goes on. Imports neither Optuna nor TensorFlow (`pipe log` needs neither).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import runner
from runner.outputs.tracking import TrackingError, Upload, _records, _remember, upload_run
from runner.outputs.tracking_summary import upload_summary
from runner.outputs.tracking_uri import TrackingRequestError, mask
from runner.spec.errors import printable
from runner.spec.sweep_space import read_sweep, set_key

CONFIG = "sweep.json"  # runner.sweep.study.CONFIG (that module imports Optuna)
_UNFINISHED = {"running", "waiting"}


@dataclass
class SweepUpload:
    """Where a sweep went: its parent run, and each trial's run (by trial number)."""

    parent: Upload
    trials: dict = field(default_factory=dict)  # a trial that left no run directory has none

    def describe(self) -> str:
        parent = self.parent
        uploaded = sum(not u.skipped for u in self.trials.values())
        line = (f"mlflow: sweep run {parent.run_id} in experiment '{parent.experiment}' at {parent.tracking_uri}, "
                f"{len(self.trials)} trial run{'s' if len(self.trials) != 1 else ''}")
        if parent.skipped and not uploaded:
            return line + " (already uploaded: unchanged)"
        return line + f" ({uploaded} uploaded, {len(self.trials) - uploaded} unchanged)"


def is_sweep_dir(directory) -> bool:
    return (Path(directory) / CONFIG).is_file()


def read_config(directory) -> dict:
    try:
        return json.loads((Path(directory) / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TrackingError(f"not a sweep directory ({CONFIG}: {e})") from None


def tracking_target(config: dict, tracking_uri: str | None = None, experiment: str | None = None):
    """(the URI, the experiment) the sweep goes to: the arguments, else the spec's
    outputs.mlflow, else MLFLOW_TRACKING_URI and the sweep's name; the URI may be None."""
    mlflow = config.get("mlflow") or {}
    uri = tracking_uri or mlflow.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    return uri, experiment or mlflow.get("experiment") or config.get("name") or "pipe"


def upload_sweep(directory, tracking_uri: str, experiment: str, *, state: str | None = None) -> SweepUpload:
    """Upload the sweep directory: the parent run, then each ended trial's run under it.

    Args:
        state: `running` (the sweep is starting: the parent run is RUNNING), `stopped` (by a
            signal: KILLED), or None (told by trials.csv: `pipe log`, a sweep's end).

    Raises:
        TrackingError: not a sweep directory, or the upload failed.
    """
    directory = Path(directory).resolve()
    config = read_config(directory)
    rows = _rows(directory)
    parent = upload_summary(tracking_uri, experiment=experiment, key=sweep_key(directory, config),
                            run_name=directory.name, params=_params(config), metrics=_metrics(config, rows),
                            tags=_tags(directory, config, rows), files=_files(directory),
                            status=_status(config, rows, state))
    _remember(directory, tracking_uri, parent.experiment_id, parent.run_id)
    result = SweepUpload(parent)
    for row in rows:
        number = int(row["number"])
        run_dir = _run_dir(directory, row)
        if row["state"] in _UNFINISHED or run_dir is None:
            continue
        result.trials[number] = _upload_trial(run_dir, tracking_uri, experiment, parent.run_id, number, row["state"])
    return result


def log_sweep(directory, tracking_uri: str | None, experiment: str | None = None) -> SweepUpload:
    """`pipe log SWEEP_DIR`: upload a sweep (also one made before tracking was configured);
    the spec's outputs.mlflow fills in what the command does not say.

    Raises:
        TrackingError: not a sweep directory, no URI, or the upload failed.
    """
    if experiment is not None and printable(experiment) != experiment:
        raise TrackingError(f"--experiment '{printable(experiment)}' holds control characters: use a plain name")
    uri, experiment = tracking_target(read_config(directory), tracking_uri, experiment)
    if not uri:
        raise TrackingRequestError("give --mlflow URI (the sweep's spec names no outputs.mlflow.tracking_uri, "
                            "and MLFLOW_TRACKING_URI is not set)")
    return upload_sweep(directory, uri, experiment)


def upload_trial(directory, number: int, run_dir, state: str) -> Upload | None:
    """A worker's upload of a trial that just ended, under the parent run the sweep made as it
    started (none: nothing to do, the sweep's end uploads it). Raises TrackingError."""
    directory = Path(directory).resolve()
    config = read_config(directory)
    uri, experiment = tracking_target(config)
    if not isinstance(config.get("mlflow"), dict) or not uri:
        return None
    known = [r for r in _records(directory) if r.get("tracking_uri") == mask(uri)]
    if not known:
        return None
    return _upload_trial(Path(run_dir), uri, experiment, known[0]["run_id"], number, state)


def _upload_trial(run_dir: Path, uri: str, experiment: str, parent_run_id: str, number: int, state: str) -> Upload:
    # register_as is the spec's, for one model: a trial's model is not registered (best.yaml's run is)
    return upload_run(run_dir, uri, experiment=experiment, run_name=f"trial-{number:04d}",
                      parent_run_id=parent_run_id, tags={"pipe.trial": str(number), "pipe.trial_state": state})


def sweep_key(directory: Path, config: dict) -> str:
    """The parent run's key (its tag `pipe.run_key`): the sweep's name and directory name,
    so that it survives the directory being moved."""
    identity = f"sweep|{config.get('name')}|{directory.name}|{config.get('study')}"
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]


def _rows(directory: Path) -> list[dict]:
    try:
        with open(directory / "trials.csv", newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except FileNotFoundError:
        return []  # the sweep ended before its first trial did


def _run_dir(directory: Path, row: dict) -> Path | None:
    """The trial's run directory as recorded, else where it would be in a moved sweep directory."""
    recorded = row.get("run_dir")
    if not recorded:
        return None
    for candidate in (Path(recorded), directory / f"trial-{int(row['number']):04d}" / Path(recorded).name):
        if (candidate / "manifest.json").is_file():
            return candidate
    return None


def _sweep(config: dict):
    section = config.get("sweep")
    if section is None:  # a sweep made before sweep.json kept its section: its spec files, as they are now
        from runner.spec import load_spec

        section = load_spec([Path(f) for f in config["files"]], config["overrides"]).doc["sweep"]
    return read_sweep(SimpleNamespace(doc={"sweep": section}))  # read_sweep reads only spec.doc


def _params(config: dict) -> dict:
    sweep = _sweep(config)
    params = {"objective": f"{sweep.split}.{sweep.metric}", "direction": sweep.direction, "trials": sweep.trials,
              "sampler": sweep.sampler, "pruner": sweep.pruner, "seed": sweep.seed, "timeout": sweep.timeout,
              "study": config.get("study")}
    for p in sweep.parameters:
        if p.kind == "choice":
            params[f"parameters.{p.key}.choice"] = json.dumps(p.choices)
        else:
            params[f"parameters.{p.key}.{p.kind}"] = json.dumps([p.low, p.high])
            for name, value in (("step", p.step), ("log", p.log or None)):
                if value is not None:
                    params[f"parameters.{p.key}.{name}"] = json.dumps(value)
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items() if v is not None}


def _objective_name(config: dict) -> str:
    return config["objective"].replace(".", "_", 1)  # validation_loss: as a trial's own final metric


def _metrics(config: dict, rows: list[dict]) -> dict:
    name = _objective_name(config)
    series = [(int(r["number"]), float(r[config["objective"]])) for r in rows
              if r["state"] == "completed" and r.get(config["objective"])]
    metrics = {name: series} if series else {}
    best = config.get("best")
    if best:
        metrics[f"best_{name}"] = best["value"]
    return metrics


def _tags(directory: Path, config: dict, rows: list[dict]) -> dict:
    counts: dict = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    tags = {"pipe.version": runner.__version__, "pipe.study": config.get("study"), "pipe.sweep_dir": str(directory),
            "pipe.storage": mask(config.get("storage")), "pipe.trials": json.dumps(counts, sort_keys=True)}
    best = config.get("best")
    if best:
        tags["pipe.best_trial"] = best["number"]
        tags.update({f"pipe.best.{set_key(k)}": v if isinstance(v, str) else json.dumps(v)
                     for k, v in best["params"].items()})  # layers.0.Dense.units: MLflow refuses [ ]
    return {k: str(v) for k, v in tags.items() if v is not None}


def _files(directory: Path) -> list[Path]:
    names = ["trials.csv", "best.yaml", CONFIG, *sorted(p.name for p in directory.glob("*.png"))]
    return [directory / name for name in names if (directory / name).is_file()]


def _status(config: dict, rows: list[dict], state: str | None) -> str:
    """RUNNING while trials run; KILLED when a signal stopped it short of its budget; else FINISHED."""
    if state == "running" or any(r["state"] in _UNFINISHED for r in rows):
        return "RUNNING"
    if state == "stopped":
        return "KILLED"
    counted = sum(r["state"] not in {"interrupted"} for r in rows)
    interrupted = any(r["state"] == "interrupted" for r in rows)
    return "KILLED" if interrupted and counted < int(config.get("trials") or 0) else "FINISHED"


class SweepTracking:
    """A sweep's MLflow tracking as it runs: the parent run at the start (RUNNING), everything
    at the end; a failure is one warning line (once), never the sweep's."""

    def __init__(self, directory):
        self.directory = Path(directory)
        config = read_config(self.directory)
        self.enabled = isinstance(config.get("mlflow"), dict)  # `mlflow: {}`: MLFLOW_TRACKING_URI
        self.uri, self.experiment = tracking_target(config)
        self.warned = False

    def start(self) -> SweepUpload | None:
        return self._try("running")

    def finish(self, stopped: bool) -> SweepUpload | None:
        return self._try("stopped" if stopped else None)

    def _try(self, state: str | None) -> SweepUpload | None:
        if not self.enabled:
            return None
        try:
            if not self.uri:
                raise TrackingError("no outputs.mlflow.tracking_uri and no MLFLOW_TRACKING_URI")
            return upload_sweep(self.directory, self.uri, self.experiment, state=state)
        except (Exception, KeyboardInterrupt) as e:  # the sweep is what matters: tracking must not change it
            if not self.warned:
                reason = str(e) if isinstance(e, TrackingError) else f"{type(e).__name__}: {e}".strip()
                later = f"upload it later with: pipe log {self.directory} --mlflow {mask(self.uri) or 'URI'}"
                print(printable(f"pipe sweep: warning: not tracked in MLflow: {mask(reason.splitlines()[0])}; "
                                f"{later}"), file=sys.stderr, flush=True)
                self.warned = True
            return None
