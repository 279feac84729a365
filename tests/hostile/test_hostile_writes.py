"""Hostile input, by class: writes that escape after the check, run directories swapped
mid-run, and outputs over a run's own files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from runner.outputs.files import WriteError
from runner.outputs.run_dir import RunDir, run_file_problem
from runner.spec.paths import escape_problem, template_problem
from tests.conftest import REPO


@pytest.fixture
def run_dir(tmp_path):
    path = tmp_path / "runs" / "a" / "20261206-020000"
    path.mkdir(parents=True)
    (path / "manifest.json").write_text("{}\n")
    (path / "spec.yaml").write_text("version: 1\n")
    return RunDir(path)


@pytest.mark.parametrize("template", ["{epoch:c}{epoch:c}/model.keras", "m{epoch:s}.keras", "{epoch:.>3}/m.keras",
                                      "m{epoch:099999999d}.keras", "m{epoch:{epoch}}.keras", "m{epoch:x<2}.keras",
                                      "m{val_loss:c}.keras", "m{}.keras"])
def test_a_path_template_formats_only_plain_fields_with_a_number_format(template):
    assert "not a plain name with a number format" in escape_problem(template)


@pytest.mark.parametrize("template", ["ck/e{epoch:02d}.keras", "m-{epoch}-{val_loss:.4f}.keras", "{epoch:03}.weights.h5",
                                      "m{val_accuracy:+.2%}.keras", "e{epoch:d}_{loss:e}.keras"])
def test_ordinary_path_templates_still_pass(template):
    assert escape_problem(template) is None


def test_a_formatted_path_is_confined_at_its_write(run_dir):
    base = str(run_dir.path)
    assert run_dir.formatted_path(f"{base}/ck/e01.keras") == run_dir.path / "ck" / "e01.keras"
    for escaped in (f"{base}/../model.keras", f"{base}/x/../../../b/model.keras", "/tmp/model.keras",
                    f"{base}/history.csv", f"{base}/."):
        with pytest.raises(WriteError):
            run_dir.formatted_path(escaped)


def test_a_formatted_path_through_a_planted_symlink_is_refused(run_dir, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (run_dir.path / "ck").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(WriteError, match="through a symlink"):
        run_dir.formatted_path(f"{run_dir.path}/ck/e01.keras")


@pytest.mark.slow
def test_keras_model_checkpoint_formats_then_pipe_confines(run_dir):
    """{epoch:c} at epoch 46 is '.': the path Keras formats is checked, not only the template."""
    import keras

    from runner.models.identifiers import _confine_formatted_paths

    callback = _confine_formatted_paths(
        keras.callbacks.ModelCheckpoint(f"{run_dir.path}/{{epoch:c}}{{epoch:c}}/model.keras"), run_dir)
    assert callback._get_file_path(0, None, {}) == f"{run_dir.path}/\x01\x01/model.keras"
    with pytest.raises(WriteError, match="climbs out with"):
        callback._get_file_path(45, None, {})  # '..' / model.keras


def _swap_for_symlink(run_dir: RunDir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_dir.path.rename(tmp_path / "moved")
    run_dir.path.symlink_to(elsewhere)
    return elsewhere


def test_a_run_dir_swapped_for_a_symlink_takes_no_more_writes(run_dir, tmp_path):
    assert run_dir / "metrics.json" == run_dir.path / "metrics.json"
    elsewhere = _swap_for_symlink(run_dir, tmp_path)
    assert run_dir.replaced()
    with pytest.raises(WriteError, match="the run directory was replaced"):
        run_dir / "metrics.json"
    with pytest.raises(WriteError):
        run_dir.spec_path("logs/train.csv")
    assert run_dir.write_error_log(RuntimeError("x")) is None
    assert list(elsewhere.iterdir()) == []


def test_a_run_dir_swapped_for_another_directory_is_refused(run_dir, tmp_path):
    run_dir.path.rename(tmp_path / "moved")
    run_dir.path.mkdir()
    with pytest.raises(WriteError, match="replaced"):
        run_dir / "history.csv"


@pytest.mark.parametrize("name", ["history.csv", "manifest.json", "model.keras", "checkpoints/ckpt-1.index",
                                  "tensorflow.log", "preprocessing.json", "evaluation-20261206-020000.json",
                                  "error.log", "spec.yaml"])
def test_an_output_over_a_run_s_own_file_is_refused(run_dir, name):
    assert "of the run directory" in run_file_problem(run_dir.path / name)


def test_an_output_over_a_run_s_file_through_dot_dot_is_refused(run_dir):
    sneaky = run_dir.path / "sub" / ".." / "history.csv"
    (run_dir.path / "sub").mkdir()
    assert "'history.csv'" in run_file_problem(sneaky)


def test_an_output_of_its_own_name_is_fine(run_dir, tmp_path):
    assert run_file_problem(run_dir.path / "my_predictions.csv") is None
    assert run_file_problem(tmp_path / "history.csv") is None  # not a run directory


@pytest.mark.parametrize("template", ["{loss.real}", "{x[0]}", "{0}", "{}", "{loss:>1000000000}", "{loss:.1000f}",
                                      "{epoch:c}", "{loss:{loss}}", "{loss", "{loss!r:>2000}"])
def test_report_templates_take_only_plain_fields_and_bounded_formats(template):
    assert template_problem(template) is not None


@pytest.mark.parametrize("template", ["Epoch {epoch}: W = {w:.2f}, b = {b:.2f}, loss={loss:.5f}", "{epoch:>3} {loss:10.4e}",
                                      "{loss:*^20.3f}", "{{literal}} {accuracy:.1%}"])
def test_ordinary_report_templates_pass(template):
    assert template_problem(template) is None


SWAP_SPEC = """version: 1
name: swap
data:
  train:
    source:
      synthetic:
        x: {linspace: {start: -1.0, stop: 1.0, num: 8}}
        y: {linear: {w: 2.0, b: 0.5}}
    stages:
      - batch: {batch_size: 4}
model:
  sequential:
    input_shape: [1]
    layers:
      - Dense: {units: 1}
train:
  epochs: 100000
  engine: keras
  loss: mse
  optimizer: sgd
outputs: {dir: RUNS, plots: {enabled: false}, save_model: false}
"""


@pytest.mark.slow
def test_pipe_run_stops_when_its_run_directory_is_swapped_for_a_symlink(tmp_path):
    (tmp_path / "spec.yaml").write_text(SWAP_SPEC)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, "-m", "runner.cli", "run", "--quiet", "spec.yaml"], cwd=tmp_path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        manifest = None
        while time.monotonic() < deadline:
            found = list((tmp_path / "RUNS" / "swap").glob("*/history.csv"))
            if found:
                manifest = found[0].parent / "manifest.json"
                break
            time.sleep(0.1)
        assert manifest is not None, "the run wrote no history"
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        run = manifest.parent
        os.rename(run, tmp_path / "moved")
        os.symlink(elsewhere, run)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 3, out + err
    assert "Traceback" not in err
    assert "the run directory was replaced" in err
    assert [p.name for p in elsewhere.iterdir()] == []  # nothing written through the symlink
    moved = json.loads((tmp_path / "moved" / "manifest.json").read_text())
    assert moved["status"] == "running"  # its end could not be recorded there either, and was said
