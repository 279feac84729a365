"""MLflow tracking (outputs.mlflow, pipe log) against a real tracking server and a SQLite/file store.

The server is started by these tests on 127.0.0.1 (a free port, a SQLite backend store and
an artefact root in a temporary folder) and stopped by them. The tests that need mlflow
skip when it is not installed (pip install 'pipe[mlflow]').
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from runner.cli import app
from runner.outputs import tracking
from runner.outputs.tracking import flatten
from runner.spec import SpecError, load_spec
from tests.conftest import REPO, Server, _free_port

SPEC = """\
version: 1
name: tracked
seed: 3
data:
  train:
    source:
      synthetic:
        x: {linspace: {start: -2.0, stop: 2.0, num: 64}}
        y: {linear: {w: 3.0, b: 2.0}}
        noise: {stddev: 0.5}
    stages:
      - batch: {batch_size: 16}
model:
  sequential:
    input_shape: [1]
    layers:
      - Dense: {units: 1}
train:
  epochs: 3
  loss: mse
  optimizer: {SGD: {learning_rate: 0.05}}
outputs:
  plots: {enabled: false}
"""

needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason="mlflow is not installed (pip install 'pipe[mlflow]')")


# ---------------------------------------------------------------------------- without TensorFlow or mlflow


def test_flatten_names_params_by_their_spec_path():
    doc = yaml.safe_load(SPEC)
    params = flatten(doc)
    assert params["train.optimizer.SGD.learning_rate"] == "0.05"
    assert params["model.sequential.layers.0.Dense.units"] == "1"
    assert params["model.sequential.input_shape"] == "[1]"
    assert params["data.train.source.synthetic.y.linear.w"] == "3.0"
    assert params["name"] == "tracked" and params["train.epochs"] == "3"


def test_validate_checks_outputs_mlflow(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC + "  save_model: false\n  mlflow: {tracking_uri: 'http://127.0.0.1:5000', register_as: m}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert [str(e) for e in info.value.errors] == [
        f"{path}:25:64: outputs.mlflow.register_as: registers the model.keras MLflow's Keras flavour logs, but "
        "outputs.save_model is false: save the model, or drop register_as"]
    path.write_text(SPEC + "  save_model: saved_model\n  mlflow: {register_as: m}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert [str(e) for e in info.value.errors] == [
        f"{path}:25:25: outputs.mlflow.register_as: registers the model.keras MLflow's Keras flavour logs, but "
        "outputs.save_model is saved_model: save it as keras (or true), or drop register_as"]
    path.write_text(SPEC + "  mlflow: {tracking_url: 'http://127.0.0.1:5000'}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "tracking_url" in str(info.value.errors[0]) and "outputs.mlflow" in str(info.value.errors[0])
    path.write_text(SPEC + "  mlflow: {tracking_uri: 'sqlite:///m.db', experiment: e, run_name: r, register_as: m}\n")
    assert load_spec(path).doc["outputs"]["mlflow"]["experiment"] == "e"


@pytest.mark.parametrize("uri, store", [
    ("sqlite:///m.db", "m.db"), ("sqlite:////abs/m.db", "/abs/m.db"), ("sqlite:///sub/m.db?timeout=5", "sub/m.db"),
    ("sqlite+pysqlite:///m.db", "m.db"), ("file:///abs/mlruns", "/abs/mlruns"), ("./mlruns", "mlruns"),
    ("/abs/mlruns", "/abs/mlruns"), ("sqlite://", None), ("sqlite:///:memory:", None), ("http://h:5000", None),
    ("postgresql://u@h/db", None), ("databricks", "databricks"),
])
def test_the_local_store_of_a_uri(uri, store):
    from runner.spec.store_paths import local_store

    assert local_store(uri) == (None if store is None else Path(store))


def test_a_local_store_in_a_folder_that_does_not_exist_is_refused(tmp_path, monkeypatch):
    from runner.outputs.tracking_run import check_tracking_folder

    monkeypatch.setattr(tracking, "mlflow_available", lambda: True)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({"name": "tracked", "status": "completed"}))
    missing = tmp_path / "nonexist" / "dir"
    for uri in (f"sqlite:///{missing}/x.db", f"file://{missing}/mlruns", f"{missing}/mlruns", "sqlite:///nodir/x.db"):
        result = CliRunner().invoke(app, ["log", str(tmp_path / "run"), "--mlflow", uri])
        folder = "nodir" if "nodir" in uri else missing
        assert (result.exit_code, result.stderr) == (2, f"pipe log: --mlflow {uri}: the folder {folder} does not exist\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing made

    # in a spec: an absolute path at validate (wherever it runs), a relative one as the run starts
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC + f"  mlflow: {{tracking_uri: 'sqlite:///{missing}/x.db'}}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert [str(e) for e in info.value.errors] == [
        f"{path}:24:26: outputs.mlflow.tracking_uri: the folder {missing} does not exist"]
    path.write_text(SPEC + "  mlflow: {tracking_uri: 'sqlite:///nodir/x.db'}\n")
    spec = load_spec(path)
    with pytest.raises(SpecError) as info:
        check_tracking_folder(spec)
    assert str(info.value) == f"{path}:24:26: outputs.mlflow.tracking_uri: the folder nodir does not exist"
    (tmp_path / "nodir").mkdir()
    check_tracking_folder(spec)
    path.write_text(SPEC + "  mlflow: {experiment: e}\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"{missing}/mlruns")
    with pytest.raises(tracking.TrackingError) as info:
        check_tracking_folder(load_spec(path))
    assert (str(info.value), info.value.exit_code) == (
        f"MLFLOW_TRACKING_URI {missing}/mlruns: the folder {missing} does not exist", 2)


def test_a_resumed_run_has_the_key_of_the_run_it_resumes(tmp_path):
    first, second, other = (tmp_path / "runs" / "tracked" / stamp for stamp in ("1", "2", "3"))
    for run_dir, fields in ((first, {"pid": 1}), (second, {"pid": 2, "resumed_from": "somewhere/else/1"}),
                            (other, {"pid": 3})):
        run_dir.mkdir(parents=True)
        (run_dir / "manifest.json").write_text(json.dumps({"name": "tracked", "host": "h", "start_time": "t", **fields}))
    assert tracking.run_key(second) == tracking.run_key(first) != tracking.run_key(other)
    assert len(tracking.run_key(first)) == 32


def test_pipe_log_without_mlflow_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "mlflow_available", lambda: False)
    result = CliRunner().invoke(app, ["log", str(tmp_path), "--mlflow", "sqlite:///x.db"])
    assert result.exit_code == 5
    assert result.stderr == "pipe log: mlflow is not installed (pip install 'pipe[mlflow]')\n"


def test_pipe_log_refuses_what_it_cannot_upload(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "mlflow_available", lambda: True)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    empty, running, done = tmp_path / "empty", tmp_path / "running", tmp_path / "done"
    for run_dir, status in ((empty, None), (running, "running"), (done, "completed")):
        run_dir.mkdir()
        if status:
            (run_dir / "manifest.json").write_text(json.dumps(
                {"name": "tracked", "status": status, "pid": os.getpid(), "host": socket.gethostname()}))
    result = CliRunner().invoke(app, ["log", str(running), "--mlflow", "sqlite:///x.db"])
    assert result.exit_code == 3  # not uploaded now: a failure, not a usage mistake
    assert result.stderr == f"pipe log: {running}: the run is still running; upload it once it has ended\n"
    result = CliRunner().invoke(app, ["log", str(empty), str(running), "--mlflow", "sqlite:///x.db"])
    assert result.exit_code == 2  # not a run directory: a usage mistake, as for every command
    assert result.stderr == (f"pipe log: {empty}: not a run directory (no readable manifest.json)\n"
                             f"pipe log: {running}: the run is still running; upload it once it has ended\n")
    result = CliRunner().invoke(app, ["log", str(done)])
    assert result.exit_code == 2
    assert result.stderr == (f"pipe log: {done}: give --mlflow URI (the run's spec names no "
                             "outputs.mlflow.tracking_uri, and MLFLOW_TRACKING_URI is not set)\n")


@needs_mlflow
def test_pipe_log_refuses_a_uri_mlflow_has_no_store_for(tmp_path):
    """A scheme MLflow keeps no runs at is a usage mistake (exit 2), in MLflow's words, before any upload."""
    run_dir = tmp_path / "done"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps({"name": "tracked", "status": "completed"}))
    result = CliRunner().invoke(app, ["log", str(run_dir), "--mlflow", "notaurl://somewhere"])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"pipe log: {run_dir}: notaurl://somewhere: ") and "unsupported URI" in result.stderr
    assert result.stderr.count("\n") == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["done"]


def test_a_run_without_mlflow_installed_is_one_warning(tmp_path, monkeypatch, capsys):
    from runner.outputs.tracking_run import track_finished_run

    monkeypatch.setattr("runner.outputs.tracking_run.mlflow_available", lambda: False)
    doc = {"outputs": {"mlflow": {"tracking_uri": "sqlite:///x.db"}}}
    assert track_finished_run(doc, tmp_path / "run") is None
    assert capsys.readouterr().err == (
        "pipe run: warning: not tracked in MLflow: mlflow is not installed (pip install 'pipe[mlflow]'); "
        f"upload it later with: pipe log {tmp_path / 'run'} --mlflow sqlite:///x.db\n")


def test_pipe_runs_lists_tracked_runs_without_importing_mlflow(tmp_path):
    run_dir = tmp_path / "runs" / "tracked" / "20261206-010203"
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps({
        "name": "tracked", "status": "completed", "start_time": "2026-12-06T01:02:03+00:00", "epochs_done": 3,
        "wall_time_s": 4.0}))
    (run_dir / "metrics.json").write_text(json.dumps({"train": {"loss": 0.5}}))
    (run_dir / "spec.yaml").write_text(SPEC + "  mlflow: {tracking_uri: 'http://127.0.0.1:9'}\n")
    (run_dir / "mlflow.json").write_text(json.dumps({"tracking_uri": "http://127.0.0.1:9", "experiment_id": "1",
                                                     "run_id": "0" * 32}))
    code = ("import sys, json\nfrom typer.testing import CliRunner\nfrom runner.cli import app\n"
            f"result = CliRunner().invoke(app, ['runs', {str(tmp_path / 'runs')!r}, '--format', 'json'])\n"
            "print(json.dumps([result.exit_code, json.loads(result.stdout), sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'mlflow')]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    code, rows, imported = json.loads(result.stdout)
    assert (code, imported) == (0, [])
    assert [(r["run"], r["status"], r["metrics"]) for r in rows] == [(str(run_dir), "completed", {"loss": 0.5})]


# ---------------------------------------------------------------------------- a real server


def pipe(*args, cwd, wait=True, **environ):
    command = [sys.executable, "-m", "runner.cli", *map(str, args)]
    env = {"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), **environ}
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def _run_dir(result, cwd: Path) -> Path:
    line = next(x for x in result.stdout.splitlines() if x.startswith("run directory: "))
    return cwd / line.split(": ", 1)[1]


def _spec(tmp: Path, mlflow: dict | None, name: str = "spec.yaml") -> Path:
    doc = yaml.safe_load(SPEC)
    if mlflow is not None:
        doc["outputs"]["mlflow"] = mlflow
    path = tmp / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _content(uri: str, run_id: str) -> dict:
    """What MLflow holds of a run, without what differs between uploads (ids, times, paths)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    run = client.get_run(run_id)

    def artefacts(path=None):
        found = []
        for item in client.list_artifacts(run_id, path):
            found += artefacts(item.path) if item.is_dir else [item.path]
        return found

    varying = {"pipe.run_dir", "pipe.run_key", "pipe.uploaded_sha256", "mlflow.runName", "mlflow.user"}
    return {
        "params": run.data.params,
        "metrics": {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in run.data.metrics},
        "tags": {k: v for k, v in run.data.tags.items() if k not in varying and not k.startswith("mlflow.log")},
        "artefacts": sorted(artefacts()),
        "status": run.info.status,
        "models": len(client.search_logged_models(experiment_ids=[run.info.experiment_id],
                                                  filter_string=f"source_run_id = '{run_id}'")),
    }


@pytest.fixture(scope="module")
def online(server, tmp_path_factory):
    """A run tracked by a live server as it ends, registering its model."""
    cwd = tmp_path_factory.mktemp("online")
    spec = _spec(cwd, {"tracking_uri": server.uri, "experiment": "pipe-tests", "register_as": "tracked-model"})
    result = pipe("run", spec, cwd=cwd)
    assert result.returncode == 0, result.stderr
    run_dir = _run_dir(result, cwd)
    run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    return result, run_dir, run_id


@pytest.mark.slow
@needs_mlflow
def test_a_run_lands_in_mlflow_with_params_epochs_tags_files_and_model(server, online):
    from mlflow.tracking import MlflowClient

    result, run_dir, run_id = online
    assert f"mlflow: run {run_id} in experiment 'pipe-tests' at {server.uri}, model version 1" in result.stdout
    assert result.stderr.count("warning") == 0
    client = MlflowClient(server.uri, registry_uri=server.uri)
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "pipe-tests"
    assert run.data.params["train.epochs"] == "3"
    assert run.data.params["train.optimizer.SGD.learning_rate"] == "0.05"
    assert run.data.params["outputs.mlflow.register_as"] == "tracked-model"
    history = json.loads((run_dir / "history.json").read_text())
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == \
        [(epoch, pytest.approx(value)) for epoch, value in enumerate(history["loss"], start=1)]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert run.data.metrics["train_loss"] == pytest.approx(metrics["train"]["loss"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert run.data.tags["pipe.status"] == "completed" and run.info.status == "FINISHED"
    assert run.data.tags["pipe.engine"] == manifest["engine"]
    assert run.data.tags["pipe.version"] == manifest["versions"]["pipe"]
    assert json.loads(run.data.tags["pipe.devices"]) == manifest["devices"]
    assert run.data.tags["pipe.run_dir"] == str(run_dir.resolve())
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"spec.yaml", "manifest.json", "history.csv", "history.json", "metrics.json", "model.keras",
            "checkpoints"} <= names
    assert "mlflow.json" not in names
    versions = client.search_model_versions("name='tracked-model'")
    assert [(v.version, v.run_id) for v in versions] == [("1", run_id)]


@pytest.mark.slow
@needs_mlflow
def test_the_logged_model_predicts_what_pipe_predict_predicts(server, online):
    import mlflow

    _, run_dir, run_id = online
    features = np.linspace(-1.5, 1.5, 7, dtype="float32").reshape(-1, 1)
    np.save(run_dir.parent / "x.npy", features)
    result = pipe("predict", run_dir, run_dir.parent / "x.npy", "--output", run_dir.parent / "p.csv", cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr
    expected = np.loadtxt(run_dir.parent / "p.csv", delimiter=",", skiprows=1, ndmin=2)[:, -1]
    mlflow.set_tracking_uri(server.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    predicted = np.asarray(model.predict(features)).reshape(-1)
    np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@needs_mlflow
def test_uploading_again_changes_nothing(server, online):
    _, run_dir, run_id = online
    before = _content(server.uri, run_id)
    result = pipe("log", run_dir, "--mlflow", server.uri, cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"{run_dir}: mlflow: run {run_id} in experiment 'pipe-tests' at {server.uri} "
                             "(already uploaded: unchanged)\n")
    assert _content(server.uri, run_id) == before
    assert before["models"] == 1 and len(before["metrics"]["loss"]) == 3


@pytest.mark.slow
@needs_mlflow
def test_server_stopped_mid_run_then_pipe_log_completes_the_upload(tmp_path, online, server):
    _, online_dir, online_id = online
    (tmp_path / "store").mkdir()
    down = Server(tmp_path / "store").start()
    spec = _spec(tmp_path, {"tracking_uri": down.uri, "experiment": "pipe-tests", "register_as": "tracked-model"})
    process = pipe("run", spec, cwd=tmp_path, wait=False)
    down.stop()  # while the run imports TensorFlow and trains
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    run_dir = _run_dir(subprocess.CompletedProcess(process.args, 0, stdout, stderr), tmp_path)
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"
    warnings = [line for line in stderr.splitlines() if "MLflow" in line]
    assert warnings == [f"pipe run: warning: not tracked in MLflow: {down.uri} cannot be reached: "
                        f"[Errno 111] Connection refused; upload it later with: pipe log {run_dir.relative_to(tmp_path)} "
                        f"--mlflow {down.uri}"]
    assert not (run_dir / "mlflow.json").exists()

    up = Server(tmp_path / "store").start()  # the same store, back (on another port)
    try:
        result = pipe("log", run_dir, "--mlflow", up.uri, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
        assert result.stdout.startswith(f"{run_dir}: mlflow: run {run_id} in experiment 'pipe-tests'")
        late, live = _content(up.uri, run_id), _content(server.uri, online_id)
    finally:
        up.stop()
    # the same content as the run tracked live, but for the run's own values (times, its spec's server)
    uri = "outputs.mlflow.tracking_uri"  # each run's spec names its own server
    assert (late["params"].pop(uri), live["params"].pop(uri)) == (down.uri, server.uri)
    assert late["params"] == live["params"]
    assert late["artefacts"] == live["artefacts"]
    assert late["tags"].keys() == live["tags"].keys()
    own = {"pipe.spec_sha256", "pipe.model_sha256"}  # the spec names another server; the model file its save time
    assert {k: v for k, v in late["tags"].items() if k not in own} == \
        {k: v for k, v in live["tags"].items() if k not in own}
    assert {k: [s for s, _ in v] for k, v in late["metrics"].items()} == \
        {k: [s for s, _ in v] for k, v in live["metrics"].items()}
    assert late["metrics"] == {k: [(s, pytest.approx(x, rel=1e-3)) for s, x in v]  # the same seed: the same run
                               for k, v in live["metrics"].items()}
    assert (late["status"], late["models"]) == (live["status"], live["models"]) == ("FINISHED", 1)


# ---------------------------------------------------------------------------- SQLite and file stores


@pytest.mark.slow
@needs_mlflow
def test_a_resumed_run_continues_the_same_mlflow_run(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = _spec(tmp_path, {"tracking_uri": uri})
    first = pipe("run", spec, "--set", "train.epochs=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    first_dir = _run_dir(first, tmp_path)
    second = pipe("run", spec, "--set", "train.epochs=4", "--resume", first_dir, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    second_dir = _run_dir(second, tmp_path)
    run_id = json.loads((first_dir / "mlflow.json").read_text())["run_id"]
    assert json.loads((second_dir / "mlflow.json").read_text())["run_id"] == run_id
    client = MlflowClient(uri)
    assert len(client.search_runs([client.get_experiment_by_name("tracked").experiment_id])) == 1
    history = json.loads((second_dir / "history.json").read_text())
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == \
        [(epoch, pytest.approx(value)) for epoch, value in enumerate(history["loss"], start=1)]
    run = client.get_run(run_id)
    assert run.data.params["train.epochs"] == "2" and run.data.tags["pipe.param.train.epochs"] == "4"
    assert run.data.tags["pipe.resumed_from"] == str(first_dir)
    # the final metrics are the resumed run's: logged at its epoch count, they are MLflow's latest
    first_metrics, metrics = (json.loads((d / "metrics.json").read_text()) for d in (first_dir, second_dir))
    assert run.data.metrics["train_loss"] == pytest.approx(metrics["train"]["loss"]) != first_metrics["train"]["loss"]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train_loss")] == \
        [(2, pytest.approx(first_metrics["train"]["loss"])), (4, pytest.approx(metrics["train"]["loss"]))]


@pytest.mark.slow
@needs_mlflow
def test_unreachable_server_costs_nothing_and_pipe_log_uploads_to_a_file_store(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    nobody = f"http://127.0.0.1:{_free_port()}"
    result = pipe("run", _spec(tmp_path, {"tracking_uri": nobody}), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = _run_dir(result, tmp_path)
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"
    assert [line for line in result.stderr.splitlines() if "MLflow" in line] == [
        f"pipe run: warning: not tracked in MLflow: {nobody} cannot be reached: [Errno 111] Connection refused; "
        f"upload it later with: pipe log {run_dir.relative_to(tmp_path)} --mlflow {nobody}"]

    store = (tmp_path / "mlruns").as_uri()  # MLflow refuses its file store unless asked
    refused = pipe("log", run_dir, "--mlflow", store, cwd=tmp_path)
    assert refused.returncode == 3 and "set `MLFLOW_ALLOW_FILE_STORE=true`" in refused.stderr
    logged = pipe("log", run_dir, "--mlflow", store, "--experiment", "later", cwd=tmp_path,
                  MLFLOW_ALLOW_FILE_STORE="true")
    assert logged.returncode == 0, logged.stderr
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    client = MlflowClient(store)
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "later"
    assert run.data.params["outputs.mlflow.tracking_uri"] == nobody
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2, 3]
    assert "model.keras" in {a.path for a in client.list_artifacts(run_id)}


@needs_mlflow
def test_an_interrupted_trial_goes_under_its_parent_run_as_killed(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from runner.outputs.tracking_summary import upload_summary

    monkeypatch.chdir(tmp_path)  # a SQLite store keeps its artefacts in ./mlruns

    run_dir = tmp_path / "runs" / "tracked" / "20261206-010203"
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps({
        "name": "tracked", "status": "interrupted", "reason": "stopped by SIGINT after 2 epochs", "host": "h",
        "pid": 1, "start_time": "2026-12-06T01:02:03+00:00", "end_time": "2026-12-06T01:02:09+00:00",
        "epochs_done": 2, "data_files": {"/data/train.csv": "ab" * 32}, "engine": "keras"}))
    (run_dir / "history.json").write_text(json.dumps({"loss": [2.0, 1.0], "val_loss": [None, 1.5]}))
    (run_dir / "metrics.json").write_text(json.dumps({"train": {"loss": 1.0}}))
    doc = yaml.safe_load(SPEC)
    doc["description"] = "x" * 600  # too long for a param: in the spec.yaml artefact only
    (run_dir / "spec.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = upload_summary(uri, experiment="sweeps", key="sweep-1", run_name="sweep-1", params={}, metrics={},
                            tags={}, files=[], status="RUNNING").run_id
    upload = tracking.upload_run(run_dir, uri, experiment="sweeps", parent_run_id=parent)
    client = MlflowClient(uri)
    run = client.get_run(upload.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.info.status == "KILLED" and run.data.tags["pipe.status"] == "interrupted"
    assert run.data.tags["pipe.reason"] == "stopped by SIGINT after 2 epochs"
    assert run.data.tags["pipe.data_sha256.train.csv"] == "ab" * 32
    assert "description" not in run.data.params and run.data.params["train.epochs"] == "3"
    assert [(m.step, m.value) for m in client.get_metric_history(upload.run_id, "val_loss")] == [(2, 1.5)]
    assert [(m.step, m.value) for m in client.get_metric_history(upload.run_id, "loss")] == [(1, 2.0), (2, 1.0)]
    assert {a.path for a in client.list_artifacts(upload.run_id)} == {"manifest.json", "history.json",
                                                                      "metrics.json", "spec.yaml"}
    again = tracking.upload_run(run_dir, uri, experiment="sweeps", parent_run_id=parent)
    assert (again.run_id, again.skipped) == (upload.run_id, True)

    resumed = run_dir.with_name("20261206-020000")  # resumes it, then is uploaded: the same MLflow run
    resumed.mkdir()
    for name in ("metrics.json", "spec.yaml"):
        (resumed / name).write_text((run_dir / name).read_text())
    (resumed / "manifest.json").write_text(json.dumps({
        "name": "tracked", "status": "completed", "host": "h", "pid": 2, "resumed_from": str(run_dir),
        "start_time": "2026-12-06T02:00:00+00:00", "end_time": "2026-12-06T02:00:05+00:00", "epochs_done": 3}))
    (resumed / "history.json").write_text(json.dumps({"loss": [2.0, 1.0, 0.5], "val_loss": [None, 1.5, 1.2]}))
    later = tracking.upload_run(resumed, uri, experiment="sweeps")
    assert (later.run_id, later.skipped) == (upload.run_id, False)
    assert client.get_run(upload.run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(upload.run_id, "loss")] == [1, 2, 3]
    older = tracking.upload_run(run_dir, uri, experiment="sweeps")  # the older run cannot undo that
    assert (older.run_id, older.skipped, older.superseded_by) == (upload.run_id, True, str(resumed.resolve()))
    assert client.get_run(upload.run_id).data.tags["pipe.status"] == "completed"


@needs_mlflow
def test_a_killed_run_is_uploaded_as_killed_never_left_running(tmp_path, monkeypatch):
    """A `running` manifest whose process is gone reads as killed, in MLflow as in `pipe runs`."""
    import socket

    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_dir = tmp_path / "runs" / "killed" / "20261206-010203"
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps({
        "name": "killed", "status": "running", "host": socket.gethostname(), "pid": gone.pid,
        "start_time": "2026-12-06T01:02:03+00:00", "heartbeat": "2026-12-06T01:02:05+00:00", "epochs_done": 1}))
    (run_dir / "spec.yaml").write_text(SPEC)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = MlflowClient(uri).get_run(tracking.upload_run(run_dir, uri, experiment="e").run_id)
    assert run.info.status == "KILLED" and run.data.tags["pipe.status"] == "killed"
    assert run.data.tags["pipe.reason"].startswith(f"process {gone.pid} on {socket.gethostname()} is gone")
