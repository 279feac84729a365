"""`pipe plan` (data, model, loss and a real batch, no training) and the Keras catalog's drift check."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import REPO, SPECS
from runner.cli import app
from runner.spec import SpecError, load_spec
from tests.spec.test_mistakes import MISTAKES, declared

pytestmark = pytest.mark.slow

PLAN_MISTAKES = [p for p in MISTAKES if declared(p)[0] == "plan"]


@pytest.mark.parametrize("path", PLAN_MISTAKES, ids=[p.stem for p in PLAN_MISTAKES])
def test_plan_catches_what_needs_tensors(path):
    from runner.commands.planning import plan_spec

    _, expect = declared(path)
    try:
        errors = [str(e) for e in plan_spec(load_spec(path)).errors]
    except SpecError as e:
        errors = [str(x) for x in getattr(e, "errors", [e])]
    assert any(expect in e for e in errors), errors
    assert all(e.startswith(f"{path}:") for e in errors), errors


def test_plan_json_describes_data_model_and_training():
    result = CliRunner().invoke(app, ["plan", "--format", "json", str(SPECS / "keras_regression.yaml")])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output[result.output.index("{"):])
    assert plan["errors"] == []
    train = plan["data"]["train"]
    assert train["num_examples"] == 201 and train["steps_per_epoch"] == 7
    assert train["batch"] == ["(32, 1) float32", "(32, 1) float32"]
    assert "class_counts" not in train  # regression targets have no classes
    model = plan["model"]
    assert [(layer["class"], layer["output_shape"], layer["params"]) for layer in model["layers"]] == [
        ("Dense", "(batch, 1)", 2)
    ]
    assert model["params"] == {"total": 2, "trainable": 2, "non_trainable": 0}
    assert plan["train"]["optimizer"]["class_name"] == "SGD"
    assert plan["train"]["optimizer"]["config"]["learning_rate"] == pytest.approx(0.05)
    assert plan["train"]["loss"]["config"]["name"] == "mean_squared_error"
    assert plan["train"]["loss_on_first_batch"]["train"] > 0
    assert plan["devices"]["replicas"] == 1


def test_plan_of_a_module_model_lists_its_variables():
    from runner.commands.planning import plan_spec

    plan = plan_spec(load_spec(SPECS / "linear_regression.yaml"))
    assert plan.errors == []
    assert plan.model["kind"] == "tf.Module"
    assert sorted(v["shape"] == [] for v in plan.model["variables"]) == [True, True]
    assert plan.model["params"] == 2


def test_plan_counts_classes_and_exits_1_on_a_mismatch():
    path = next(p for p in PLAN_MISTAKES if "class_weight_unknown_class" in p.name)
    result = CliRunner().invoke(app, ["plan", str(path)])
    assert result.exit_code == 1
    assert "classes in the first 200 examples: 0: 17, 1: 28, 2: 16, 3: 16, 4: 28, 5: 20, 6: 20, 7: 24, 8: 10, 9: 21" in result.output
    assert f"{path}:26:26: train.class_weight[12]: class 12 does not exist: the data has 10 classes (0..9)" in result.output


def test_catalog_check_passes_on_the_installed_keras_and_fails_on_drift(tmp_path):
    script = REPO / "scripts" / "make_keras_catalog.py"
    ok = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    drifted = tmp_path / "catalog.json"
    shutil.copy(REPO / "runner" / "spec" / "keras_catalog.json", drifted)
    catalog = json.loads(drifted.read_text())
    del catalog["kinds"]["layers"]["names"]["Dense"]
    drifted.write_text(json.dumps(catalog, indent=1) + "\n")
    bad = subprocess.run([sys.executable, str(script), "--check", "--output", str(drifted)],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert "differs from the installed Keras" in bad.stderr


def test_run_notes_once_when_keras_differs_from_the_catalog(monkeypatch, capsys):
    from runner.models import catalog_check

    catalog_check.warn_on_catalog_drift.cache_clear()
    monkeypatch.setattr(catalog_check, "keras_version", lambda: "0.0.1")
    first = catalog_check.warn_on_catalog_drift()
    catalog_check.warn_on_catalog_drift()
    catalog_check.warn_on_catalog_drift.cache_clear()
    assert first.startswith("note: pipe validate checks Keras names against a catalog made from Keras 0.0.1")
    assert capsys.readouterr().err.count("note: pipe validate") == 1


def test_plan_builds_callbacks_that_write_files_without_writing_them(tmp_path):
    callbacks = "train.callbacks=[{CSVLogger: {filename: logs/train.csv}}, {TensorBoard: {log_dir: tb}}]"
    result = CliRunner().invoke(app, ["plan", "--format", "json", str(SPECS / "keras_regression.yaml"),
                                      "--set", callbacks])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert [c["class"] for c in plan["train"]["callbacks"]] == ["CSVLogger", "TensorBoard"]
    assert not (tmp_path / "logs").exists() and not (SPECS / "logs").exists()
