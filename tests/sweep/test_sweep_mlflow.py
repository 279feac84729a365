"""A sweep in MLflow: one parent run named after the sweep directory, a child run per trial
(`mlflow.parentRunId`, the trial's number and state as tags), as the sweep runs and later
with `pipe log SWEEP_DIR`, idempotently; an unreachable server costs the sweep nothing.

The real server is the one of tests/conftest.py (`server`); the sweeps are tiny (two trials
of two epochs on synthetic data). Needs mlflow; the sweeps also need Optuna.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from runner.cli import app

from tests.conftest import REPO, SPECS, _free_port
from tests.outputs.test_mlflow import needs_mlflow

pytestmark = needs_mlflow
EXAMPLE = SPECS / "sweep_regression.yaml"
TINY = ["--set", "sweep.trials=2", "--set", "train.epochs=2", "--set", "sweep.sampler=random",
        "--set", "sweep.pruner=none", "--set", "outputs.plots.enabled=false"]


def _pipe(args, cwd):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=900)


def _log(*args):
    """`pipe log` in this process (mlflow imported once for the fast tests)."""
    return CliRunner().invoke(app, ["log", *map(str, args)])


def _sweep_dir(result, cwd):
    line = next(x for x in result.stdout.splitlines() if x.startswith("sweep directory: "))
    return cwd / line.split(": ", 1)[1]


def _runs(uri: str, experiment: str):
    """The experiment's runs: (the parent, its children by trial number)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = {int(r.data.tags["pipe.trial"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(children) + 1 == len(runs)
    return client, parents[0], children


def _content(client, run) -> dict:
    """What a run holds that a second upload must not change."""
    run_id = run.info.run_id
    return {"params": run.data.params, "tags": run.data.tags, "status": run.info.status,
            "metrics": {k: [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, k)]
                        for k in run.data.metrics},
            "artefacts": sorted(a.path for a in client.list_artifacts(run_id))}


def _check_sweep(uri: str, experiment: str, sweep_dir):
    """One parent named after the sweep directory, a child per trial of trials.csv holding
    its run directory's params and epochs."""
    client, parent, children = _runs(uri, experiment)
    with open(sweep_dir / "trials.csv", newline="") as handle:
        rows = {int(r["number"]): r for r in csv.DictReader(handle)}
    best = json.loads((sweep_dir / "sweep.json").read_text())["best"]
    assert parent.info.run_name == sweep_dir.name and parent.info.status == "FINISHED"
    assert {k: v for k, v in parent.data.params.items() if not k.startswith("parameters.")} == {
        "objective": "validation.loss", "direction": "minimize", "trials": "2", "sampler": "random",
        "pruner": "none", "seed": "0", "study": "sweep"}
    assert parent.data.params["parameters.train.optimizer.SGD.learning_rate.float"] == "[0.001, 0.1]"
    assert parent.data.params["parameters.model.sequential.layers.0.Dense.activation.choice"] == '["relu", "tanh"]'
    assert parent.data.metrics["best_validation_loss"] == pytest.approx(best["value"])
    assert [(m.step, m.value) for m in client.get_metric_history(parent.info.run_id, "validation_loss")] == \
        [(n, pytest.approx(float(rows[n]["validation.loss"]))) for n in sorted(rows)]
    assert parent.data.tags["pipe.best_trial"] == str(best["number"])
    assert parent.data.tags["pipe.best.model.sequential.layers.0.Dense.units"] == \
        str(best["params"]["model.sequential.layers[0].Dense.units"])
    assert json.loads(parent.data.tags["pipe.trials"]) == {"completed": 2}
    assert sorted(a.path for a in client.list_artifacts(parent.info.run_id)) == [
        "best.yaml", "optimization_history.png", "parallel_coordinate.png", "param_importances.png", "sweep.json",
        "trials.csv"]
    assert sorted(children) == sorted(rows) == [0, 1]
    for number, child in children.items():
        run_dir = sweep_dir / rows[number]["run_dir"]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert (child.info.run_name, child.data.tags["pipe.trial_state"]) == (f"trial-{number:04d}", "completed")
        assert child.data.tags["pipe.run_dir"] == str(run_dir.resolve()) and child.info.status == "FINISHED"
        assert child.data.params["train.epochs"] == "2"
        assert child.data.params["model.sequential.layers.0.Dense.units"] == rows[number][
            "model.sequential.layers[0].Dense.units"]
        history = json.loads((run_dir / "history.json").read_text())
        assert [(m.step, m.value) for m in client.get_metric_history(child.info.run_id, "val_loss")] == \
            [(epoch, pytest.approx(v)) for epoch, v in enumerate(history["val_loss"], start=1)]
        assert "model.keras" in {a.path for a in client.list_artifacts(child.info.run_id)}
    return client, parent, children


# ---------------------------------------------------------------------------- a sweep directory made here


def _fake_sweep(tmp_path, mlflow=None, keep_section=True):
    """A finished sweep directory as pipe writes it: sweep.json, trials.csv, best.yaml and a run
    directory per trial (without a model: no TensorFlow needed), one completed, one pruned, and
    one failed before its run started. Without `keep_section`, sweep.json is as older sweeps
    wrote it: their section is read from the spec they were started with (the example's)."""
    section = {"objective": "validation.loss", "trials": 3, "sampler": "random", "seed": 0,
               "parameters": {"model.sequential.layers[0].Dense.units": {"int": [4, 32], "step": 4}}}
    sweep_dir = tmp_path / "runs" / "fake" / "sweep-20261206-010203"
    sweep_dir.mkdir(parents=True)
    config = {"files": [str(EXAMPLE)], "overrides": [], "storage": f"sqlite:///{sweep_dir / 'study.db'}",
              "study": "sweep", "trials": 3, "objective": "validation.loss", "direction": "minimize", "name": "fake",
              "best": {"number": 0, "objective": "validation.loss", "value": 1.5,
                       "params": {"model.sequential.layers[0].Dense.units": 8}}}
    if keep_section:
        config.update(sweep=section, mlflow=mlflow)
    (sweep_dir / "sweep.json").write_text(json.dumps(config))
    (sweep_dir / "best.yaml").write_text("extends: spec.yaml\n")
    rows = []
    for number, status, loss in ((0, "completed", [2.0, 1.5]), (1, "pruned", [3.0])):
        run_dir = sweep_dir / f"trial-{number:04d}" / f"20261206-01020{number}"
        run_dir.mkdir(parents=True)
        (run_dir / "manifest.json").write_text(json.dumps({
            "name": f"trial-{number:04d}", "status": status, "host": "h", "pid": number,
            "start_time": "2026-12-06T01:02:03+00:00", "end_time": "2026-12-06T01:02:09+00:00",
            "epochs_done": len(loss)}))
        (run_dir / "history.json").write_text(json.dumps({"val_loss": loss}))
        (run_dir / "spec.yaml").write_text(yaml.safe_dump({"name": f"trial-{number:04d}", "train": {"epochs": 2}}))
        rows.append({"number": number, "state": status, "model.sequential.layers[0].Dense.units": 8 * (number + 1),
                     "validation.loss": loss[-1] if status == "completed" else "", "run_dir": str(run_dir)})
    rows.append({"number": 2, "state": "failed", "model.sequential.layers[0].Dense.units": 24,
                 "validation.loss": "", "run_dir": ""})
    with open(sweep_dir / "trials.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return sweep_dir


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite store shared by the tests of this module (each uses its own experiment)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def test_pipe_log_uploads_a_sweep_once_as_a_parent_and_its_trials(tmp_path, monkeypatch, store):
    monkeypatch.chdir(tmp_path)  # a SQLite store keeps an experiment's artefacts in ./mlruns
    sweep_dir = _fake_sweep(tmp_path)
    uri = store
    first = _log(sweep_dir, "--mlflow", uri, "--experiment", "logged")
    assert first.exit_code == 0, first.stderr
    client, parent, children = _runs(uri, "logged")
    assert first.stdout == (f"{sweep_dir}: mlflow: sweep run {parent.info.run_id} in experiment 'logged' at {uri}, "
                            "2 trial runs (2 uploaded, 0 unchanged)\n")
    assert json.loads((sweep_dir / "mlflow.json").read_text())["run_id"] == parent.info.run_id
    assert parent.info.status == "FINISHED" and parent.data.params["trials"] == "3"
    assert parent.data.params["parameters.model.sequential.layers.0.Dense.units.int"] == "[4, 32]"
    assert parent.data.tags["pipe.best.model.sequential.layers.0.Dense.units"] == "8"
    assert json.loads(parent.data.tags["pipe.trials"]) == {"completed": 1, "failed": 1, "pruned": 1}
    assert [(m.step, m.value) for m in client.get_metric_history(parent.info.run_id, "validation_loss")] == [(0, 1.5)]
    assert {n: (c.data.tags["pipe.trial_state"], c.info.status) for n, c in children.items()} == {
        0: ("completed", "FINISHED"), 1: ("pruned", "FINISHED")}
    assert {c.data.tags["mlflow.parentRunId"] for c in children.values()} == {parent.info.run_id}
    before = {n: _content(client, c) for n, c in [("parent", parent), *children.items()]}

    second = _log(sweep_dir, "--mlflow", uri, "--experiment", "logged")
    assert second.exit_code == 0, second.stderr
    assert second.stdout.endswith("2 trial runs (already uploaded: unchanged)\n")
    client, parent, children = _runs(uri, "logged")
    assert {n: _content(client, c) for n, c in [("parent", parent), *children.items()]} == before


def test_a_sweep_made_before_its_section_was_kept_uploads_from_its_spec(tmp_path, monkeypatch, store):
    monkeypatch.chdir(tmp_path)
    sweep_dir = _fake_sweep(tmp_path, keep_section=False)
    uri = store
    result = _log(sweep_dir, "--mlflow", uri, "--experiment", "later")
    assert result.exit_code == 0, result.stderr
    _, parent, children = _runs(uri, "later")
    assert (parent.data.params["sampler"], parent.data.params["trials"], sorted(children)) == ("tpe", "6", [0, 1])


def test_a_stopped_sweep_is_killed_and_its_resumption_finishes_the_same_run(tmp_path, monkeypatch, store):
    from runner.sweep.tracking import upload_sweep

    monkeypatch.chdir(tmp_path)
    sweep_dir = _fake_sweep(tmp_path)
    uri = store
    assert upload_sweep(sweep_dir, uri, "stopped", state="running").parent.skipped is False
    _, parent, _ = _runs(uri, "stopped")
    assert parent.info.status == "RUNNING"
    stopped = upload_sweep(sweep_dir, uri, "stopped", state="stopped")
    _, parent, _ = _runs(uri, "stopped")
    assert (parent.info.run_id, parent.info.status) == (stopped.parent.run_id, "KILLED")
    resumed = upload_sweep(sweep_dir, uri, "stopped")  # --resume ran the rest: trials.csv says all ended
    _, parent, children = _runs(uri, "stopped")
    assert (parent.info.run_id, parent.info.status) == (resumed.parent.run_id, "FINISHED") == \
        (stopped.parent.run_id, "FINISHED")
    assert all(upload.skipped for upload in resumed.trials.values()) and len(children) == 2


def test_a_sweep_with_an_unreachable_server_is_one_warning(tmp_path, capsys):
    from runner.sweep.tracking import SweepTracking

    nobody = f"http://127.0.0.1:{_free_port()}"
    sweep_dir = _fake_sweep(tmp_path, mlflow={"tracking_uri": nobody})
    tracking = SweepTracking(sweep_dir)
    assert tracking.start() is None and tracking.finish(stopped=False) is None
    assert capsys.readouterr().err == (
        f"pipe sweep: warning: not tracked in MLflow: {nobody} cannot be reached: [Errno 111] Connection refused; "
        f"upload it later with: pipe log {sweep_dir} --mlflow {nobody}\n")
    assert not (sweep_dir / "mlflow.json").exists()


def test_pipe_log_says_what_a_sweep_lacks(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    sweep_dir = _fake_sweep(tmp_path)
    result = _log(sweep_dir)
    assert result.exit_code == 2  # a usage mistake
    assert result.stderr == (f"pipe log: {sweep_dir}: give --mlflow URI (the sweep's spec names no "
                             "outputs.mlflow.tracking_uri, and MLFLOW_TRACKING_URI is not set)\n")


# ---------------------------------------------------------------------------- real sweeps


@pytest.mark.slow
def test_a_sweep_lands_in_a_live_server_as_a_parent_and_a_child_per_trial(server, tmp_path):
    pytest.importorskip("optuna", reason="pipe sweep needs Optuna: pip install 'pipe[sweep]'")
    result = _pipe(["sweep", EXAMPLE, *TINY, "--set", f"outputs.mlflow.tracking_uri={server.uri}",
                    "--set", "outputs.mlflow.experiment=sweeps"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stderr
    sweep_dir = _sweep_dir(result, tmp_path)
    client, parent, children = _check_sweep(server.uri, "sweeps", sweep_dir)
    assert (f"mlflow: sweep run {parent.info.run_id} in experiment 'sweeps' at {server.uri}, 2 trial runs "
            "(0 uploaded, 2 unchanged)") in result.stdout  # the workers uploaded each trial as it ended
    before = {n: _content(client, c) for n, c in [("parent", parent), *children.items()]}
    for _ in range(2):
        again = _pipe(["log", sweep_dir, "--mlflow", server.uri], tmp_path)
        assert again.returncode == 0, again.stderr
        assert again.stdout == (f"{sweep_dir}: mlflow: sweep run {parent.info.run_id} in experiment 'sweeps' at "
                                f"{server.uri}, 2 trial runs (already uploaded: unchanged)\n")
        client, parent, children = _runs(server.uri, "sweeps")
        assert {n: _content(client, c) for n, c in [("parent", parent), *children.items()]} == before


@pytest.mark.slow
def test_an_unreachable_server_costs_the_sweep_nothing_and_pipe_log_uploads_it_later(tmp_path, monkeypatch):
    pytest.importorskip("optuna", reason="pipe sweep needs Optuna: pip install 'pipe[sweep]'")
    nobody = f"http://127.0.0.1:{_free_port()}"
    result = _pipe(["sweep", EXAMPLE, *TINY, "--set", f"outputs.mlflow.tracking_uri={nobody}"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    sweep_dir = _sweep_dir(result, tmp_path)
    assert [line for line in result.stderr.splitlines() if "MLflow" in line] == [
        f"pipe sweep: warning: not tracked in MLflow: {nobody} cannot be reached: [Errno 111] Connection refused; "
        f"upload it later with: pipe log {sweep_dir} --mlflow {nobody}"]
    assert "trials: 2 completed" in result.stdout

    monkeypatch.chdir(tmp_path)  # a SQLite store keeps its artefacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged = _pipe(["log", sweep_dir, "--mlflow", uri], tmp_path)
    assert logged.returncode == 0, logged.stderr
    assert logged.stdout.endswith("2 trial runs (2 uploaded, 0 unchanged)\n")
    _check_sweep(uri, "sweep_regression", sweep_dir)
