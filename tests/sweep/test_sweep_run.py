"""`pipe sweep` end to end on synthetic data: tiny trials in worker processes, the report,
best.yaml reproducing the best trial, and SIGINT then --resume. Needs Optuna (pipe's sweep
extra)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, SPECS

pytest.importorskip("optuna", reason="pipe sweep needs Optuna: pip install 'pipe[sweep]'")
pytestmark = pytest.mark.slow

EXAMPLE = SPECS / "sweep_regression.yaml"


def _pipe(args, cwd, **kwargs):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=900, **kwargs)


def _rows(sweep_dir):
    with open(sweep_dir / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Three trials of 3 epochs by two workers, random sampler, no pruner, TensorBoard on."""
    cwd = tmp_path_factory.mktemp("sweep")
    result = _pipe(["sweep", str(EXAMPLE), "--workers", "2", "--set", "sweep.trials=3", "--set", "train.epochs=3",
                    "--set", "sweep.sampler=random", "--set", "sweep.pruner=none", "--set", "outputs.tensorboard=true"],
                   cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("sweep directory: "))
    return cwd, cwd / line.split(": ", 1)[1], result


def test_a_sweep_runs_exactly_its_trials_as_run_directories(swept):
    cwd, sweep_dir, result = swept
    rows = _rows(sweep_dir)
    assert sorted(int(r["number"]) for r in rows) == [0, 1, 2]
    assert {r["state"] for r in rows} == {"completed"}
    values = [tuple(v for k, v in r.items() if k.startswith(("train.", "model."))) for r in rows]
    assert len(set(values)) == 3  # two workers, seeded: still no values drawn twice
    for row in rows:
        manifest = json.loads((cwd / row["run_dir"] / "manifest.json").read_text())
        assert manifest["status"] == "completed" and manifest["epochs_run"] == 3 and row["epochs"] == "3"
        assert float(row["validation.loss"]) > 0
    assert "trials: 3 completed" in result.stdout
    for plot in ("optimization_history.png", "param_importances.png", "parallel_coordinate.png"):
        assert (sweep_dir / plot).stat().st_size > 1000
    listed = _pipe(["runs", "runs"], cwd)
    best = json.loads((sweep_dir / "sweep.json").read_text())["best"]
    assert f"3/3 (3 completed)  trial {best['number']}: validation.loss=" in listed.stdout


def test_each_trial_is_an_hparams_session_of_its_swept_values(swept):
    from test_sweep import _hparams_events

    cwd, sweep_dir, _ = swept
    for row in _rows(sweep_dir):
        hparams, scalars = _hparams_events(cwd / row["run_dir"])
        swept_values = {k: v for k, v in row.items() if k.startswith(("train.", "model."))}
        assert hparams.keys() == swept_values.keys()
        assert hparams["model.sequential.layers[0].Dense.units"] == float(swept_values["model.sequential.layers[0].Dense.units"])
        assert hparams["model.sequential.layers[0].Dense.activation"] == swept_values["model.sequential.layers[0].Dense.activation"]
        assert scalars["validation.loss"] == pytest.approx(float(row["validation.loss"]), rel=1e-6)


def test_best_yaml_validates_and_reproduces_the_best_trial(swept):
    cwd, sweep_dir, _ = swept
    best = json.loads((sweep_dir / "sweep.json").read_text())["best"]
    assert best["value"] == min(float(r["validation.loss"]) for r in _rows(sweep_dir))
    assert _pipe(["validate", str(sweep_dir / "best.yaml")], cwd).returncode == 0
    run = _pipe(["run", str(sweep_dir / "best.yaml"), "--quiet"], cwd)
    assert run.returncode == 0, run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith("validation: "))
    assert float(line.split("loss=")[1].split()[0]) == pytest.approx(best["value"], rel=1e-3)


def test_sigint_then_resume_finishes_with_exactly_the_budget(tmp_path):
    args = ["sweep", str(EXAMPLE), "--set", "sweep.trials=2", "--set", "train.epochs=200",
            "--set", "sweep.pruner=none", "--set", "sweep.sampler=random"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-m", "runner.cli", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not list(tmp_path.glob("runs/*/sweep-*/trial-0000/*/history.csv")):
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 130, out + err
    (sweep_dir,) = tmp_path.glob("runs/*/sweep-*")
    assert f"finish with: pipe sweep --resume {sweep_dir}" in err
    rows = _rows(sweep_dir)
    assert [r["state"] for r in rows] == ["interrupted"]
    manifest = json.loads((tmp_path / rows[0]["run_dir"] / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["epochs_run"] >= 1

    resumed = _pipe(["sweep", "--resume", str(sweep_dir)], tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rows = _rows(sweep_dir)
    assert [r["state"] for r in rows] == ["interrupted", "completed", "completed"]
    first = {k: v for k, v in rows[0].items() if k.startswith(("train.", "model."))}
    again = {k: v for k, v in rows[1].items() if k.startswith(("train.", "model."))}
    assert again == first  # the interrupted trial ran again with its values
    assert "1 interrupted trial to run again" in resumed.stdout


def test_a_worker_killed_fails_its_trial_and_is_replaced(tmp_path):
    args = ["sweep", str(EXAMPLE), "--set", "sweep.trials=2", "--set", "train.epochs=200",
            "--set", "sweep.pruner=none"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-m", "runner.cli", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not list(tmp_path.glob("runs/*/sweep-*/trial-0000/*/history.csv")):
        time.sleep(0.5)
    (manifest,) = tmp_path.glob("runs/*/sweep-*/trial-0000/*/manifest.json")
    os.kill(json.loads(manifest.read_text())["pid"], signal.SIGKILL)  # the worker running trial 0
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, out + err
    assert "trial 0: failed  its worker died (signal SIGKILL)" in out
    rows = _rows(next(tmp_path.glob("runs/*/sweep-*")))
    assert [(r["number"], r["state"]) for r in rows] == [("0", "failed"), ("1", "completed")]
    assert rows[0]["message"] == "its worker died (signal SIGKILL)"


def test_asking_stops_at_the_budget_and_at_the_grid_size(tmp_path, monkeypatch):
    from runner.sweep import study as sweep_study
    from runner.spec import load_spec

    monkeypatch.chdir(tmp_path)
    for sets, expected in ((["sweep.sampler=random", "sweep.trials=3"], 3),
                           (["sweep.sampler=grid", "sweep.trials=5",
                             'sweep.parameters={"train.epochs": {"choice": [1, 2]}}'], 2)):
        spec = load_spec(EXAMPLE, sets)
        directory = sweep_study.create(spec, [EXAMPLE], sets)
        config = sweep_study.read_config(directory)
        _, sweep = sweep_study.load_base(config)
        study = sweep_study.open_study(config, sweep)
        asked = []
        while (trial := sweep_study.ask(directory, study, sweep, config)) is not None and len(asked) < 10:
            asked.append(trial.params)
            study.tell(trial, 1.0)
        assert len(asked) == expected
        if sweep.sampler == "grid":
            assert sorted(p["train.epochs"] for p in asked) == [1, 2]
