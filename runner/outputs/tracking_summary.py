"""An MLflow run that summarises other runs (a sweep's parent run), written idempotently.

A summary run has no run directory of its own: whoever owns the truth (the sweep directory)
hands over its params, metrics, tags and files. It is found again by its key (the tag
`pipe.run_key`), params are written once (a changed value becomes the tag
`pipe.param.<name>`), a metric is written when its latest value differs, tags when they
differ, and a digest of everything (the tag `pipe.uploaded_sha256`) lets an upload that
finds it unchanged write nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
import time
from pathlib import Path

from runner.outputs.tracking import (KEY_TAG, MAX_PARAM_LENGTH, UPLOADED_TAG, TrackingError, Upload, _experiment_id,
                                     _file_sha256, _first_line, _mlflow, _set_tags)
from runner.outputs.tracking_uri import mask, masked_copy

_TERMINAL = {"FINISHED", "FAILED", "KILLED"}


def upload_summary(tracking_uri: str, *, experiment: str, key: str, run_name: str, params: dict, metrics: dict,
                   tags: dict, files, status: str) -> Upload:
    """Create or bring up to date the MLflow run with this key; idempotent.

    Args:
        params: name -> text; written once (MLflow's params cannot change).
        metrics: name -> a value (logged at step 0 when it differs from the latest) or a list of
            (step, value) (each step logged once).
        tags: name -> text.
        files: the artefacts, uploaded under their names (a password in a URI as `***`).
        status: RUNNING, FINISHED, FAILED or KILLED.

    Raises:
        TrackingError: mlflow missing, the server unreachable or refusing.
    """
    mlflow = _mlflow(tracking_uri)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return _upload(mlflow, tracking_uri, experiment, key, run_name, params, metrics, tags,
                           [Path(f) for f in files], status)
    except TrackingError:
        raise
    except Exception as e:  # MlflowException, requests' errors, a refused write: one line
        raise TrackingError(_first_line(e)) from e


def _upload(mlflow, tracking_uri, experiment, key, run_name, params, metrics, tags, files, status) -> Upload:
    from mlflow.entities import Metric, Param

    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    experiment_id = _experiment_id(client, experiment)
    found = client.search_runs([experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'", max_results=1)
    run = found[0] if found else client.create_run(experiment_id, run_name=run_name, tags={KEY_TAG: key})
    run_id = run.info.run_id
    upload = Upload(run_id, experiment, mask(tracking_uri), experiment_id=experiment_id)
    params = {k: mask(str(v)) for k, v in params.items() if len(str(v)) <= MAX_PARAM_LENGTH}
    digest = _digest(params, metrics, tags, files, status)
    if run.data.tags.get(UPLOADED_TAG) == digest:
        upload.skipped = True
        return upload
    new = [Param(k, v) for k, v in params.items() if k not in run.data.params]
    for i in range(0, len(new), 100):  # MLflow takes at most 100 params a call
        client.log_batch(run_id, params=new[i:i + 100])
    changed = {f"pipe.param.{k}": v for k, v in params.items() if k in run.data.params and run.data.params[k] != v}
    _set_tags(client, run, {**{k: mask(str(v)) for k, v in tags.items()}, **changed})
    now, batch = int(time.time() * 1000), []
    for name, value in metrics.items():
        if isinstance(value, list):
            logged = {m.step for m in client.get_metric_history(run_id, name)}
            batch += [Metric(name, float(v), now, step) for step, v in value if step not in logged]
        elif run.data.metrics.get(name) != value:
            batch.append(Metric(name, float(value), now, 0))
    for i in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[i:i + 1000])
    with tempfile.TemporaryDirectory(prefix="pipe-mlflow-") as masked:
        for path in files:
            client.log_artifact(run_id, masked_copy(path, Path(masked)))
    if status in _TERMINAL:
        client.set_terminated(run_id, status)
    elif run.info.status != status:
        client.update_run(run_id, status=status)
    client.set_tag(run_id, UPLOADED_TAG, digest)
    return upload


def _digest(params, metrics, tags, files, status) -> str:
    described = json.dumps([params, metrics, tags, status], sort_keys=True, default=str)
    digest = hashlib.sha256(described.encode("utf-8"))
    for path in files:
        digest.update(b"\0" + path.name.encode("utf-8") + b"\0" + _file_sha256(path).encode("ascii"))
    return digest.hexdigest()
