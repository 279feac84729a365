"""MLflow tracking: a run directory, as an MLflow run (`outputs.mlflow`, `pipe log`).

Everything is read from the run directory's own files (manifest.json, spec.yaml,
history.json, metrics.json, the saved model), after pipe wrote them: what MLflow shows is
what the run directory holds, whether it is uploaded as the run ends or later. An upload
is idempotent: the MLflow run is found again by a tag holding the run directory's key (a
resumed run has the key of the run it continues, so it continues the same MLflow run),
each param, metric step, tag and the model is written only when missing, and a tag with
the digest of the uploaded files marks a finished upload, which a second one skips.
mlflow is imported only here (and by tracking_summary.py, which writes a sweep's parent run),
and only when a run is tracked.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

import yaml

from runner.outputs.files import json_text, write_text
from runner.outputs.lineage import chain, run_key
from runner.outputs.hparams import dotted_values
from runner.outputs.status import checked_status
from runner.outputs.tracking_uri import TrackingError, TrackingRequestError, check_uri, check_reachable, mask, masked_copy

MLFLOW_FILE = "mlflow.json"  # in the run directory: where it was tracked (tracking_uri, experiment_id, run_id)
KEY_TAG = "pipe.run_key"  # the run directory's key (of the first run of a resumed chain)
UPLOADED_TAG = "pipe.uploaded_sha256"  # digest of the uploaded files: set last, when all is there
MODEL_TAG = "pipe.model_sha256"  # the model.keras logged as the run's model
MAX_PARAM_LENGTH = 500  # longer values are in the spec.yaml artefact only
INSTALL_HINT = "pip install 'pipe[mlflow]'"

# A server that is down answers nothing: fail fast instead of MLflow's minutes of retries;
# the model's artefact holds the model, not the project files of the working directory.
_ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_LOG_UV_FILES": "false"}
_SKIPPED = {".manifest.reserve", MLFLOW_FILE}
_STATUSES = {"completed": "FINISHED", "pruned": "FINISHED", "failed": "FAILED", "diverged": "FAILED",
             "interrupted": "KILLED", "killed": "KILLED"}  # pruned: ended as its sweep decided


@dataclass
class Upload:
    """Where a run directory went: the MLflow run, and whether this upload wrote anything."""

    run_id: str
    experiment: str
    tracking_uri: str
    skipped: bool = False  # already uploaded with these files: nothing was written
    superseded_by: str | None = None  # a run resuming this one went there already: nothing was written
    model_version: str | None = None
    experiment_id: str | None = None


def mlflow_available() -> bool:
    """Whether mlflow is installed (without importing it: that takes seconds)."""
    return importlib.util.find_spec("mlflow") is not None


def upload_run(run_dir, tracking_uri: str, *, experiment: str | None = None, run_name: str | None = None,
               register_as: str | None = None, parent_run_id: str | None = None, tags: dict | None = None) -> Upload:
    """Upload the run directory `run_dir` to MLflow at `tracking_uri`; idempotent.

    Args:
        experiment: the experiment's name (default: the spec's name); made when absent.
        run_name: the MLflow run's name (default: <name>-<run directory's name>).
        register_as: register the saved model as a new version of this model.
        parent_run_id: make the run a child of this MLflow run (a sweep's trial).
        tags: more tags for the run (a trial's number and state).

    Raises:
        TrackingError: mlflow missing, the server unreachable or refusing, unreadable files.
    """
    run_dir = Path(run_dir)
    truth = _read_truth(run_dir)
    mlflow = _mlflow(tracking_uri)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # MLflow's prints (the run's URL, ...) are not pipe's
            extra = {**(tags or {}), **({"mlflow.parentRunId": parent_run_id} if parent_run_id else {})}
            return _upload(mlflow, run_dir, truth, tracking_uri, experiment, run_name, register_as, extra)
    except TrackingError:
        raise
    except mlflow.tracking.registry.UnsupportedModelRegistryStoreURIException as e:  # a URI MLflow has no store for
        raise TrackingRequestError(f"{mask(tracking_uri)}: {_first_line(e)}") from None
    except Exception as e:  # MlflowException, requests' errors, a refused write: one line
        raise TrackingError(_first_line(e)) from e


def _mlflow(tracking_uri: str):
    """mlflow, once the URI is sound and its server answers, with its requests bounded and its notes quiet."""
    check_uri(tracking_uri)
    check_reachable(tracking_uri)
    for name, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        import mlflow
        import mlflow.tracking
    except ImportError:
        raise TrackingError(f"mlflow is not installed ({INSTALL_HINT})") from None
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    return mlflow


def _experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def _upload(mlflow, run_dir, truth, tracking_uri, experiment, run_name, register_as, extra: dict) -> Upload:
    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = experiment or truth.manifest.get("name") or "pipe"
    experiment_id = _experiment_id(client, experiment)
    run = _find_run(client, run_dir, tracking_uri, experiment_id, truth.key)
    if run is None:
        run = client.create_run(experiment_id, run_name=run_name or _default_run_name(run_dir, truth),
                                tags={KEY_TAG: truth.key, **extra},
                                start_time=_millis(truth.manifest.get("start_time")))
    run_id = run.info.run_id
    latest = run.data.tags.get("pipe.run_dir")
    _refuse_a_copy(run_dir, run_id, latest)
    _remember(run_dir, tracking_uri, experiment_id, run_id)
    upload = Upload(run_id, experiment, mask(tracking_uri), experiment_id=experiment_id)
    if latest and Path(latest) != run_dir.resolve() and run_dir.resolve() in {p.resolve() for p in chain(Path(latest))}:
        upload.skipped, upload.superseded_by = True, latest  # its resumption holds its epochs and more
        return upload
    digest = _digest(run_dir, truth.files, register_as, extra)
    if run.data.tags.get(UPLOADED_TAG) == digest:
        upload.skipped = True
        return upload
    _log_params(client, run, truth.spec)
    _log_metrics(client, run_id, truth.history, truth.metrics, truth.manifest.get("epochs_done"))
    _set_tags(client, run, {**_tags(truth, run_dir), **extra})
    with tempfile.TemporaryDirectory(prefix="pipe-mlflow-") as masked:
        for path in truth.files:
            parent = path.relative_to(run_dir).parent
            client.log_artifact(run_id, masked_copy(path, Path(masked)),
                                None if parent == Path(".") else parent.as_posix())
    upload.model_version = _log_model(mlflow, client, tracking_uri, run, run_dir, register_as)
    status = _STATUSES.get(truth.manifest.get("status"))
    if status is not None:
        client.set_terminated(run_id, status, end_time=_millis(truth.manifest.get("end_time")))
    client.set_tag(run_id, UPLOADED_TAG, digest)
    return upload


def _refuse_a_copy(run_dir: Path, run_id: str, latest: str | None) -> None:
    """The MLflow run holds another run directory that is still there, which this one
    neither resumes nor is resumed by: `run_dir` is a copy of it (same key), so TrackingError."""
    if not latest or Path(latest) == run_dir.resolve() or not (Path(latest) / "manifest.json").is_file():
        return  # the same directory, or the one uploaded is gone (moved here)
    ours, theirs = {p.resolve() for p in chain(run_dir)}, {p.resolve() for p in chain(Path(latest))}
    if Path(latest).resolve() in ours or run_dir.resolve() in theirs:
        return
    raise TrackingError(f"MLflow run {run_id} holds {latest}, of which this run directory is a copy "
                        "(the same run key): upload that one, or copy the spec and run it again")


@dataclass
class _Truth:
    manifest: dict
    spec: dict
    history: dict
    metrics: dict
    files: list
    key: str


def _read_truth(run_dir: Path) -> _Truth:
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise TrackingError(f"not a run directory: manifest.json: {_first_line(e)}") from None
    manifest = _as_it_ended(manifest)
    spec = _load(run_dir / "spec.yaml", yaml.safe_load) or {}
    history = _load(run_dir / "history.json", json.loads) or {}
    metrics = _load(run_dir / "metrics.json", json.loads) or {}
    files = sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name not in _SKIPPED
                   and not p.name.startswith(".tmp"))
    return _Truth(manifest, spec, history, metrics, files, run_key(run_dir))


def _as_it_ended(manifest: dict) -> dict:
    """A `running` run whose process is gone is uploaded as `killed` (as `pipe runs` lists it),
    never left RUNNING in MLflow."""
    ended = checked_status(manifest)
    if ended.status == manifest.get("status"):
        return manifest
    return {**manifest, "status": ended.status, "reason": ended.reason or manifest.get("reason")}


def _load(path: Path, parse):
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise TrackingError(f"cannot read {path}: {_first_line(e)}") from None


def _find_run(client, run_dir: Path, tracking_uri: str, experiment_id: str, key: str):
    """The MLflow run this run directory (or the run it resumes) went to, or None."""
    for place in chain(run_dir):
        for known in _records(place):
            if known.get("tracking_uri") != mask(tracking_uri) or known.get("experiment_id") != experiment_id:
                continue
            try:
                run = client.get_run(known["run_id"])
            except Exception:  # deleted, or another server behind the same URI
                continue
            if run.info.lifecycle_stage == "active":
                return run
    found = client.search_runs([experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'", max_results=1)
    return found[0] if found else None


def _records(run_dir: Path) -> list:
    """Where `run_dir` was uploaded: mlflow.json's first target, then the others (`also`)."""
    try:
        known = json.loads((run_dir / MLFLOW_FILE).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(known, dict):
        return []
    also = known.get("also") if isinstance(known.get("also"), list) else []
    return [r for r in [known, *also] if isinstance(r, dict)]


def _remember(run_dir: Path, tracking_uri: str, experiment_id: str, run_id: str) -> None:
    """mlflow.json: the first target the run went to; each other one is added under `also`
    (a password in the URI is kept as `***`)."""
    record = {"tracking_uri": mask(tracking_uri), "experiment_id": experiment_id, "run_id": run_id}
    records = [{k: v for k, v in r.items() if k != "also"} for r in _records(run_dir)]
    same = [i for i, r in enumerate(records)
            if (r.get("tracking_uri"), r.get("experiment_id")) == (record["tracking_uri"], experiment_id)]
    if same:
        records[same[0]] = record
    else:
        records.append(record)
    text = json_text({**records[0], **({"also": records[1:]} if records[1:] else {})})
    path = run_dir / MLFLOW_FILE
    if not path.exists() or path.read_text() != text:
        write_text(path, text)


def flatten(value, prefix: str = "") -> dict:
    """A spec as MLflow params: `{"train.optimizer.SGD.learning_rate": "0.1", ...}`."""
    return {key: item if isinstance(item, str) else json.dumps(item)
            for key, item in dotted_values(value, prefix).items()}


def _log_params(client, run, spec: dict) -> None:
    from mlflow.entities import Param

    params = {k: mask(v) for k, v in flatten(spec).items() if len(v) <= MAX_PARAM_LENGTH and len(k) <= 250}
    existing = run.data.params
    new = [Param(k, v) for k, v in params.items() if k not in existing]
    for i in range(0, len(new), 100):  # MLflow takes at most 100 params a call
        client.log_batch(run.info.run_id, params=new[i:i + 100])
    # A resumed run may change train.epochs or outputs; params cannot change: the new values as tags.
    changed = {f"pipe.param.{k}": v for k, v in params.items() if k in existing and existing[k] != v}
    _set_tags(client, run, changed)


def _log_metrics(client, run_id: str, history: dict, metrics: dict, epochs_done=None) -> None:
    """Each history column with its epoch (from 1) as step; the final metrics by split at the
    step of the epochs done, so that those of a resumed run (more epochs) are MLflow's latest."""
    from mlflow.entities import Metric

    now, batch = int(time.time() * 1000), []
    final = epochs_done if isinstance(epochs_done, int) and not isinstance(epochs_done, bool) else 0
    series = {name: list(enumerate(values, start=1)) for name, values in history.items()}
    for split, values in metrics.items():
        if isinstance(values, dict):
            for name, value in values.items():
                series[f"{split}_{name}"] = [(final, value)]
        else:
            series[split] = [(final, values)]
    for name, points in series.items():
        logged = {m.step for m in client.get_metric_history(run_id, name)}
        batch += [Metric(name, float(value), now, step) for step, value in points
                  if step not in logged and isinstance(value, (int, float)) and not isinstance(value, bool)]
    for i in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics a call
        client.log_batch(run_id, metrics=batch[i:i + 1000])


def _tags(truth: _Truth, run_dir: Path) -> dict:
    manifest = truth.manifest
    versions = manifest.get("versions") or {}
    tags = {
        "pipe.version": versions.get("pipe"), "pipe.tensorflow": versions.get("tensorflow"),
        "pipe.keras": versions.get("keras"), "pipe.engine": manifest.get("engine"), "pipe.loop": manifest.get("loop"),
        "pipe.devices": json.dumps(manifest.get("devices"), sort_keys=True)[:5000] if manifest.get("devices") else None,
        "pipe.status": manifest.get("status"), "pipe.reason": mask(manifest.get("reason") or "")[:5000] or None,
        "pipe.run_dir": str(run_dir.resolve()), "pipe.spec_sha256": manifest.get("spec_sha256"),
        "pipe.epochs_done": manifest.get("epochs_done"),
    }
    if manifest.get("resumed_from"):
        tags["pipe.resumed_from"] = manifest["resumed_from"]
    for path, digest in (manifest.get("data_files") or {}).items():
        tags[f"pipe.data_sha256.{_tag_safe(path)}"] = digest
    return {k: str(v) for k, v in tags.items() if v is not None}


def _tag_safe(path: str) -> str:
    name = "".join(c if c.isalnum() or c in "._-/" else "_" for c in Path(path).name)
    return name[-200:]


def _set_tags(client, run, tags: dict) -> None:
    from mlflow.entities import RunTag

    new = [RunTag(k, v) for k, v in tags.items() if run.data.tags.get(k) != v]
    for i in range(0, len(new), 100):
        client.log_batch(run.info.run_id, tags=new[i:i + 100])


def _log_model(mlflow, client, tracking_uri: str, run, run_dir: Path, register_as: str | None) -> str | None:
    """model.keras through MLflow's Keras flavour (once per model file), and its registered version."""
    path = run_dir / "model.keras"
    if not path.is_file():
        return None
    digest = _file_sha256(path)
    run_id = run.info.run_id
    if run.data.tags.get(MODEL_TAG) == digest:  # logged already (and registered, when asked)
        return None
    import keras

    model = keras.saving.load_model(path, compile=False)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    # Declared, not inferred: MLflow infers them by loading the model again in a subprocess.
    requirements = [f"{name}=={metadata.version(name)}" for name in ("tensorflow", "keras")]
    try:
        # MLflow's notes (registration, the run's URL) are not pipe's output
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                mlflow.start_run(run_id=run_id):
            info = mlflow.keras.log_model(model, name="model", registered_model_name=register_as,
                                          pip_requirements=requirements)
    finally:
        mlflow.set_tracking_uri(previous)
    client.set_tag(run_id, MODEL_TAG, digest)
    version = getattr(info, "registered_model_version", None)
    return None if version is None else str(version)


def _digest(run_dir: Path, files, register_as, extra: dict) -> str:
    head = f"register_as={register_as}\0" + (json.dumps(extra, sort_keys=True) + "\0" if extra else "")
    digest = hashlib.sha256(head.encode("utf-8"))
    for path in files:
        digest.update(path.relative_to(run_dir).as_posix().encode("utf-8") + b"\0" + _file_sha256(path).encode("ascii"))
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _default_run_name(run_dir: Path, truth: _Truth) -> str:
    return f"{truth.manifest.get('name') or run_dir.parent.name}-{run_dir.name}"


def _millis(stamp) -> int | None:
    try:
        return int(datetime.fromisoformat(stamp).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def _first_line(error) -> str:
    text = mask(str(error).strip())
    return text.splitlines()[0][:1000] if text else type(error).__name__
