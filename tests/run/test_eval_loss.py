"""Class weights weigh the training loss only: every engine reports held-out losses unweighted.

Keras's `fit` applies `class_weight` to the training batches; its validation and `evaluate`
losses are plain means. The custom loop and the fused engine must report the same
quantities, or `val_loss` (which EarlyStopping, ReduceLROnPlateau and ModelCheckpoint watch)
and `metrics.json` mean something else than under `fit` and than `pipe evaluate` reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runner.spec import load_spec

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from runner.commands.evaluation import evaluate_run  # noqa: E402
from runner.outputs.saving import load_model  # noqa: E402
from runner.run.pipeline import run_spec  # noqa: E402

# Imbalanced two-class data (about 1 in 5 positive), class 1 weighted 6 to 1: a weighted
# held-out loss differs from the plain one by far more than the engines' rounding.
SPEC = """\
version: 1
name: weighted
seed: 5
data:
  train:
    source: {npz: {path: data.npz, features: x_train, label: y_train}}
    stages:
      - batch: {batch_size: 32}
  validation:
    source: {npz: {path: data.npz, features: x_val, label: y_val}}
    stages:
      - batch: {batch_size: 32}
  test:
    source: {npz: {path: data.npz, features: x_test, label: y_test}}
    stages:
      - batch: {batch_size: 50}
model:
  sequential:
    input_shape: [4]
    layers:
      - Dense: {units: 8, activation: relu}
      - Dense: {units: 2}
train:
  loop: LOOP
  engine: ENGINE
  epochs: 3
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: {Adam: {learning_rate: 0.01}}
  metrics: [accuracy]
  class_weight: {0: 1.0, 1: 6.0}
  validate_on: validation
  verbose: 0
outputs:
  dir: runs
  plots: {enabled: false}
"""

ENGINES = {"fit": ("fit", "keras"), "custom": ("custom", "keras"), "fused": ("fit", "fused")}


def _data(folder: Path) -> None:
    rng = np.random.default_rng(0)

    def split(n):
        x = rng.normal(size=(n, 4)).astype(np.float32)
        y = (x[:, 0] + 0.5 * rng.normal(size=n) > 0.9).astype(np.int64)
        return x, y

    (xt, yt), (xv, yv), (xs, ys) = split(200), split(90), split(100)
    np.savez(folder / "data.npz", x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs, y_test=ys)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run per engine on the same data, weights and seed: {engine: run directory}."""
    folder = tmp_path_factory.mktemp("weighted")
    _data(folder)
    done = {}
    for name, (loop, engine) in ENGINES.items():
        path = folder / f"{name}.yaml"
        path.write_text(SPEC.replace("LOOP", loop).replace("ENGINE", engine).replace("dir: runs", f"dir: {folder / 'runs'}"))
        result = run_spec(load_spec(path), quiet=True)
        manifest = json.loads((result.run_dir / "manifest.json").read_text())
        assert (manifest["status"], manifest["engine"]) == ("completed", engine)
        done[name] = result.run_dir
    return done


def _data_file(run_dir: Path) -> Path:
    return next(p / "data.npz" for p in run_dir.parents if (p / "data.npz").exists())


def _plain_loss(run_dir: Path, x_key: str, y_key: str) -> float:
    """The unweighted mean cross-entropy of the saved model on a split, computed here."""
    data = np.load(_data_file(run_dir))
    logits = load_model(run_dir)(data[x_key], training=False)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return float(loss(data[y_key], logits))


def _weighted_loss(run_dir: Path, x_key: str, y_key: str) -> float:
    data = np.load(_data_file(run_dir))
    logits = load_model(run_dir)(data[x_key], training=False)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return float(loss(data[y_key], logits, sample_weight=np.where(data[y_key] == 1, 6.0, 1.0)))


@pytest.mark.parametrize("engine", list(ENGINES))
def test_held_out_losses_are_unweighted(runs, engine):
    """The last val_loss and the test loss are the plain mean of the saved model's losses."""
    run_dir = runs[engine]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    plain_val, plain_test = _plain_loss(run_dir, "x_val", "y_val"), _plain_loss(run_dir, "x_test", "y_test")
    assert abs(_weighted_loss(run_dir, "x_test", "y_test") - plain_test) > 0.05  # the check can tell them apart
    assert history["val_loss"][-1] == pytest.approx(plain_val, rel=1e-5)
    assert metrics["validation"]["loss"] == pytest.approx(plain_val, rel=1e-5)
    assert metrics["test"]["loss"] == pytest.approx(plain_test, rel=1e-5)


@pytest.mark.parametrize("engine", list(ENGINES))
def test_metrics_json_agrees_with_pipe_evaluate(runs, engine):
    run_dir = runs[engine]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    evaluated = evaluate_run(run_dir).metrics
    for split in ("validation", "test"):
        assert sorted(evaluated[split]) == sorted(metrics[split])
        for key, value in metrics[split].items():
            assert evaluated[split][key] == pytest.approx(value, rel=1e-5), (split, key)


def test_the_engines_train_alike_and_report_the_same_held_out_losses(runs):
    """Same seed, data and weights: fit, the custom loop and the fused engine take the same
    steps (float32 rounding apart), so their histories and held-out figures agree."""
    histories = {e: json.loads((d / "history.json").read_text()) for e, d in runs.items()}
    metrics = {e: json.loads((d / "metrics.json").read_text()) for e, d in runs.items()}
    for engine in ("custom", "fused"):
        assert sorted(histories[engine]) == sorted(histories["fit"])
        for key, values in histories["fit"].items():
            np.testing.assert_allclose(histories[engine][key], values, rtol=1e-4, err_msg=f"{engine} {key}")
        for split in ("validation", "test"):
            assert metrics[engine][split]["loss"] == pytest.approx(metrics["fit"][split]["loss"], rel=1e-4)
