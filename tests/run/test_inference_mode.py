"""Saved models serve in inference mode: random augmentation is for training only.

A model holding Keras augmentation layers (RandomFlip, RandomRotation) and a train split
with pipe's `augment` op: the model.keras and the SavedModel a run saves must predict the
same thing twice (as `pipe predict` and `pipe evaluate` load them), and `pipe evaluate`
must reproduce the run's held-out figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runner.spec import load_spec

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")

from runner.commands.evaluation import evaluate_run  # noqa: E402
from runner.outputs.saving import load_model  # noqa: E402
from runner.commands.prediction import predict_file  # noqa: E402
from runner.run.pipeline import run_spec  # noqa: E402

# No test split: `pipe predict` preprocesses with train's map stages, `augment` among them.
SPEC = """\
version: 1
name: augmented
seed: 1
data:
  train:
    source: {npz: {path: data.npz, features: x, label: y}}
    stages:
      - map: {ops: [{augment: {layers: [{RandomFlip: {mode: vertical}}]}}]}
      - batch: {batch_size: 16}
  validation:
    source: {npz: {path: data.npz, features: xv, label: yv}}
    stages:
      - batch: {batch_size: 16}
model:
  sequential:
    input_shape: [8, 8, 1]
    layers:
      - RandomFlip: {mode: horizontal}
      - RandomRotation: {factor: 0.2}
      - Flatten: {}
      - Dense: {units: 2}
train:
  epochs: 2
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: {Adam: {learning_rate: 0.01}}
  metrics: [accuracy]
  validate_on: validation
  verbose: 0
outputs:
  dir: runs
  save_model: FORMAT
  plots: {enabled: false}
"""

FORMATS = {"keras": "model.keras", "saved_model": "saved_model"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{format: run directory}, one run saving each format; and the folder of their data."""
    folder = tmp_path_factory.mktemp("augmented")
    rng = np.random.default_rng(0)
    x = rng.random((120, 8, 8, 1)).astype(np.float32)
    y = (x[:, :, :4].mean((1, 2, 3)) > x[:, :, 4:].mean((1, 2, 3))).astype(np.int64)
    np.savez(folder / "data.npz", x=x[:80], y=y[:80], xv=x[80:], yv=y[80:])
    np.save(folder / "new.npy", x[80:100])
    done = {}
    for name in FORMATS:
        path = folder / f"{name}.yaml"
        path.write_text(SPEC.replace("FORMAT", "true" if name == "keras" else name)
                        .replace("dir: runs", f"dir: {folder / 'runs'}"))
        result = run_spec(load_spec(path), quiet=True)
        assert (result.run_dir / FORMATS[name]).exists()
        done[name] = result.run_dir
    return folder, done


@pytest.mark.parametrize("saved", list(FORMATS))
def test_the_saved_model_predicts_the_same_twice(runs, saved):
    folder, run_dirs = runs
    model = load_model(run_dirs[saved])
    x = np.load(folder / "new.npy")
    first = np.asarray(model(x, training=False) if saved == "keras" else model(x))
    second = np.asarray(model(x, training=False) if saved == "keras" else model(x))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("saved", list(FORMATS))
def test_pipe_predict_gives_the_same_rows_twice(runs, saved, tmp_path):
    """Neither the model's augmentation layers nor train's `augment` op act when predicting."""
    folder, run_dirs = runs
    first = predict_file(run_dirs[saved], folder / "new.npy", tmp_path / "first.csv")
    second = predict_file(run_dirs[saved], folder / "new.npy", tmp_path / "second.csv")
    assert first.count == second.count == 20
    assert (tmp_path / "first.csv").read_text() == (tmp_path / "second.csv").read_text()


@pytest.mark.parametrize("saved", list(FORMATS))
def test_pipe_evaluate_reproduces_the_runs_figures(runs, saved):
    _, run_dirs = runs
    metrics = json.loads((run_dirs[saved] / "metrics.json").read_text())
    evaluated = evaluate_run(run_dirs[saved]).metrics
    assert sorted(evaluated["validation"]) == sorted(metrics["validation"])
    for key, value in metrics["validation"].items():
        assert evaluated["validation"][key] == pytest.approx(value, rel=1e-5), key
    again = evaluate_run(run_dirs[saved]).metrics
    assert again == evaluated


def test_an_exported_keras_model_serves_without_augmentation(runs):
    """The SavedModel's own `serve` endpoint, loaded with TensorFlow alone, is deterministic."""
    folder, run_dirs = runs
    loaded = tf.saved_model.load(str(Path(run_dirs["saved_model"]) / "saved_model"))
    x = tf.constant(np.load(folder / "new.npy"))
    np.testing.assert_array_equal(loaded.serve(x).numpy(), loaded.serve(x).numpy())
    signature = loaded.signatures["serving_default"]
    (output,) = signature(**{next(iter(signature.structured_input_signature[1])): x}).values()
    np.testing.assert_allclose(output.numpy(), loaded.serve(x).numpy(), rtol=1e-6)


def test_a_savedmodel_exported_with_augmentation_active_is_warned_about(runs, tmp_path, capsys):
    """Keras's own `Model.export` serves augmentation layers in training mode (as pipe's
    exports did before): loading such a run says so; pipe's own export loads silently."""
    import keras

    _, run_dirs = runs
    load_model(run_dirs["saved_model"])
    assert capsys.readouterr().err == ""
    old = tmp_path / "old-run"
    old.mkdir()
    keras.saving.load_model(run_dirs["keras"] / "model.keras").export(str(old / "saved_model"), verbose=False)
    load_model(old)
    assert capsys.readouterr().err == (
        f"warning: {old / 'saved_model'} draws random numbers when it serves (a Keras model exported with its "
        "augmentation layers active, as pipe exported them before serving in inference mode): its predictions "
        "vary from call to call; train it again to export it for inference\n")
