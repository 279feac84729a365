"""history.csv, history.json, metrics.json and pipe evaluate list the loss and metrics in the
spec's order, whichever engine trained (Keras fit sorts its logs by name)."""

from __future__ import annotations

import json

import pytest

from runner.train.log_order import in_order, logged_names


def test_logs_follow_the_names_then_the_others_then_the_validation_values_alike():
    logs = {"accuracy": 1, "learning_rate": 2, "loss": 3, "auc": 4, "val_accuracy": 5, "val_auc": 6, "val_loss": 7}
    assert list(in_order(logs, ["loss", "auc", "accuracy"])) == [
        "loss", "auc", "accuracy", "learning_rate", "val_loss", "val_auc", "val_accuracy"]


def test_names_of_per_output_losses_and_metrics_are_keras_s():
    class Loss:
        resolved = {"kind": "sparse_categorical_crossentropy", "size": "mse"}

    class Metric:
        name = "mean_absolute_error"

    assert logged_names({"size": [Metric()], "kind": ["accuracy"]}, Loss()) == [
        "loss", "kind_loss", "size_loss", "size_mean_absolute_error", "kind_accuracy"]
    assert logged_names(["mae", Metric()]) == ["loss", "mae", "mean_absolute_error"]


SPEC = """\
version: 1
name: order
seed: 1
data:
  train:
    source:
      synthetic:
        x: {linspace: {start: -1.0, stop: 1.0, num: 64}}
        y: {linear: {w: 2.0, b: 0.5}}
    stages:
      - batch: {batch_size: 16}
  validation: {fraction: 0.25}
  test:
    source:
      synthetic:
        x: {linspace: {start: -1.0, stop: 1.0, num: 16}}
        y: {linear: {w: 2.0, b: 0.5}}
    stages:
      - batch: {batch_size: 16}
model:
  sequential:
    input_shape: [1]
    layers:
      - Dense: {units: 1}
train:
  epochs: 2
  loss: mse
  optimizer: sgd
  metrics: [root_mean_squared_error, mae, MeanAbsolutePercentageError]
  callbacks: [{ReduceLROnPlateau: {patience: 5}}]
outputs: {dir: runs, plots: {enabled: false}}
"""


@pytest.mark.slow
def test_every_engine_writes_the_spec_s_order(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from runner.cli import app
    from runner.run.pipeline import run_spec
    from runner.spec import load_spec

    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(SPEC)
    order = ["loss", "root_mean_squared_error", "mae", "MeanAbsolutePercentageError"]
    for engine, loop in (("keras", "fit"), ("keras", "custom"), ("fused", "fit")):
        run_dir = run_spec(load_spec("spec.yaml", [f"train.engine={engine}", f"train.loop={loop}"]), quiet=True).run_dir
        header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
        assert header == ["epoch", *order, "learning_rate", *(f"val_{n}" for n in order)], (engine, loop)
        assert list(json.loads((run_dir / "history.json").read_text())) == header[1:]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert {split: list(values) for split, values in metrics.items()} == {
            "train": [*order, "learning_rate"], "validation": order, "test": order}, (engine, loop)
        assert CliRunner().invoke(app, ["evaluate", str(run_dir)]).exit_code == 0
        (evaluation,) = run_dir.glob("evaluation-*.json")
        assert list(json.loads(evaluation.read_text())["metrics"]["test"]) == order
