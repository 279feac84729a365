"""`pipe run` as a user types it: a subprocess, its output, its exit codes and --resume."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, SPECS

pytestmark = pytest.mark.slow


def pipe(*args, cwd):
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def test_run_prints_the_run_directory_and_metrics_then_resumes(tmp_path):
    spec = SPECS / "linear_regression.yaml"
    first = pipe("run", str(spec), "--quiet", "--set", "train.epochs=3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("run directory: runs/linear_regression/")
    assert lines[1].startswith("train: loss=") and len(lines) == 2  # --quiet: nothing else
    run_dir = tmp_path / lines[0].split(": ", 1)[1]
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"

    second = pipe("run", str(spec), "--quiet", "--set", "train.epochs=5", "--resume", str(run_dir), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    resumed = tmp_path / second.stdout.splitlines()[0].split(": ", 1)[1]
    assert resumed != run_dir
    manifest = json.loads((resumed / "manifest.json").read_text())
    assert manifest["resumed_from"] == str(run_dir)
    history = json.loads((resumed / "history.json").read_text())
    assert len(history["loss"]) == 5
    assert history["loss"][:3] == json.loads((run_dir / "history.json").read_text())["loss"]


def test_build_error_is_one_located_line_and_exit_1(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text((SPECS / "keras_regression.yaml").read_text().replace("- Dense: {units: 1}", "- Dens: {units: 1}"))
    result = pipe("run", str(spec), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"{spec}:22:9: model.sequential.layers[0]: unknown layer 'Dens' (did you mean 'Dense'?)")
    assert "Traceback" not in result.stderr


def test_resume_without_checkpoints_is_an_error(tmp_path):
    empty = tmp_path / "old-run"
    empty.mkdir()
    result = pipe("run", str(SPECS / "linear_regression.yaml"), "--resume", str(empty), cwd=tmp_path)
    assert result.returncode == 2  # a folder that is no run: a usage mistake, as for evaluate, predict, export
    assert result.stderr.strip() == f"pipe run --resume: {empty}: not a run directory (no manifest.json)"
    (empty / "manifest.json").write_text("{}")  # a run's folder, but nothing saved to resume from
    result = pipe("run", str(SPECS / "linear_regression.yaml"), "--resume", str(empty), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"{empty}: no checkpoint to resume from in {empty}/checkpoints"
