"""The engine interface (runner.run.engines): the three engines implement it, a new one plugs
into `train_with`, and one function checks a loss for divergence."""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import REPO
from runner.spec import load_spec

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")

from runner.run.choice import choose_training  # noqa: E402
from runner.run.engines import Engine, TrainingContext, TrainingResult, align_validation, train_with  # noqa: E402
from runner.run.fused import FusedEngine  # noqa: E402
from runner.run.loops import CustomEngine, FitEngine  # noqa: E402
from runner.train.divergence import TrainingDiverged, check_finite  # noqa: E402
from runner.train.engine import EngineChoice  # noqa: E402
from runner.train.result import TrainResult  # noqa: E402

SPEC = """\
version: 1
name: engines
data:
  train:
    source: {synthetic: {x: {uniform: {low: -1.0, high: 1.0, num: 8}}, y: {linear: {w: 3.0, b: 2.0}}}}
    stages: [{batch: {batch_size: 4}}]
  test:
    source: {synthetic: {x: {uniform: {low: -1.0, high: 1.0, num: 4}}, y: {linear: {w: 3.0, b: 2.0}}}}
model:
  sequential: {input_shape: [1], layers: [{Dense: {units: 1}}]}
train:
  epochs: 3
  validation_freq: 2
  loss: mse
  optimizer: sgd
outputs: {tensorboard: true}
"""


@pytest.mark.parametrize("engine", [FitEngine("keras", "fit"), CustomEngine("keras", "custom"),
                                    FusedEngine("fused", "in memory")])
def test_each_engine_implements_the_protocol(engine):
    assert isinstance(engine, Engine) and isinstance(engine, EngineChoice)
    assert engine.line == f"engine: {engine.name} ({engine.reason})"


@dataclass
class _Recording(EngineChoice):
    """A new engine: three epochs of a made-up history, told through the run's epoch-end hook."""

    seen: list = None

    def train(self, context):
        self.seen = [context]
        hook = context.progress.epoch_end()
        for epoch in range(3):
            hook(epoch, {"loss": 1.0 / (epoch + 1)})
        trained = TrainResult(history={"loss": [1.0, 0.5, 1 / 3], "val_loss": [0.7]}, epochs_run=3)

        def evaluate(dataset, split, result):
            result.predictions = ("labels", "predicted")
            return {"loss": 0.25}

        return TrainingResult(trained, evaluate)


class _Progress:
    previous = None
    pruning = False

    def __init__(self):
        self.ended = []

    def epoch_end(self, checkpoint=None, epochs=None, model=None, within_call=False):
        return lambda epoch, logs, scalars=None: self.ended.append((epoch, logs))

    def result(self, trained):
        return trained


def _context(spec, tmp_path, **changes):
    datasets = SimpleNamespace(validation=None, test="the test split")
    fields = dict(spec=spec, setup=SimpleNamespace(jit_compile=False), datasets=datasets, validation=None,
                  model=None, loss=None, optimizer=None, metrics=None, callbacks=[], run_dir=tmp_path, quiet=True,
                  progress=_Progress())
    return TrainingContext(**{**fields, **changes})


def test_a_new_engine_plugs_into_train_with_and_gets_the_context(write_spec, tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr("runner.run.engines.history.write_tensorboard", lambda run_dir, h: written.append(h))
    spec = load_spec(write_spec(SPEC))
    context = _context(spec, tmp_path)
    engine = _Recording("recording", "a test")
    result, metrics = train_with(engine, context)
    assert engine.seen == [context]
    assert context.train.epochs == 3 and context.outputs.tensorboard and context.seed is None
    assert [epoch for epoch, _ in context.progress.ended] == [0, 1, 2]
    # the wrap-up: validation every second epoch aligned, the history to TensorBoard, held-out splits evaluated
    assert result.history["val_loss"] == [None, 0.7, None]
    assert written == [result.history]
    assert metrics == {"train": {"loss": 1 / 3}, "test": {"loss": 0.25}}
    assert result.predictions == ("labels", "predicted")


def test_train_with_locates_a_step_that_failed_inside_the_loss(write_spec, tmp_path):
    spec = load_spec(write_spec(SPEC))

    class Failing(EngineChoice):
        def train(self, context):
            raise tf.errors.InvalidArgumentError(None, None, "Detected at node compile_loss/mse/sub\n"
                                                             "Incompatible shapes: [4,1] vs. [4,3]")

    with pytest.raises(Exception) as caught:
        train_with(Failing("failing", "a test"), _context(spec, tmp_path))
    assert str(caught.value).endswith("train.loss: loss 'loss' does not fit the labels of data.train: Incompatible "
                                      "shapes: [4,1] vs. [4,3]")


def _failing_loss(where: str = ""):
    return tf.errors.InvalidArgumentError(None, None, "Detected at node compile_loss/sparse/Sparse defined at "
                                                      f"(most recent call last):\n{where}"
                                                      "Received a label value of 7 which is outside the valid range "
                                                      "of [0, 3).  Label values: 0 7")


def test_labels_that_fail_in_validation_during_training_are_blamed_on_the_validation_split(write_spec, tmp_path):
    spec = load_spec(write_spec(SPEC))

    class Failing(EngineChoice):
        def train(self, context):
            raise _failing_loss('  File "trainer.py", line 96, in test_step\n\n')

    with pytest.raises(Exception) as caught:
        train_with(Failing("failing", "a test"), _context(spec, tmp_path))
    assert str(caught.value) == (f"{spec.file}:3:1: data.validation: loss 'loss' does not fit the labels of "
                                 "data.validation: A label value is outside the valid range of [0, 3).")


def test_labels_that_fail_in_a_held_out_evaluation_are_blamed_on_that_split(write_spec, tmp_path):
    spec = load_spec(write_spec(SPEC))

    class FailingTest(EngineChoice):
        def train(self, context):
            trained = TrainResult(history={"loss": [1.0]}, epochs_run=1)

            def evaluate(dataset, split, result):
                raise _failing_loss('  File "trainer.py", line 96, in test_step\n\n')

            return TrainingResult(trained, evaluate)

    with pytest.raises(Exception) as caught:
        train_with(FailingTest("failing", "a test"), _context(spec, tmp_path))
    assert str(caught.value) == (f"{spec.file}:7:3: data.test: loss 'loss' does not fit the labels of data.test: "
                                 "A label value is outside the valid range of [0, 3).")


def test_validation_columns_are_aligned_to_epochs():
    assert align_validation({"loss": [3, 2, 1, 0], "val_loss": [5, 4]}, 2, 0) == \
        {"loss": [3, 2, 1, 0], "val_loss": [None, 5, None, 4]}
    assert align_validation({"loss": [3, 2], "val_loss": [5]}, 2, 1) == {"loss": [3, 2], "val_loss": [5, None]}


def test_the_choice_returns_an_engine_ready_to_train(write_spec):
    spec = load_spec(write_spec(SPEC))
    setup = SimpleNamespace(strategy_name="default", jit_compile=False, num_replicas=1)
    for loop, kind in (("fit", FitEngine), ("custom", CustomEngine)):
        engine = choose_training(spec, setup, None, loop, [])
        assert type(engine) is kind and engine.name == "keras" and engine.reason == f"{loop}; train.engine: keras"


def test_a_non_finite_loss_is_divergence_wherever_it_is_seen():
    check_finite(1.5, epoch=0)
    check_finite(None, epoch=0)  # nothing known: nothing to check
    with pytest.raises(TrainingDiverged) as caught:
        check_finite(float("nan"), epoch=2, step=4)
    assert (caught.value.epoch, caught.value.step) == (2, 4) and math.isnan(caught.value.value)
    with pytest.raises(TrainingDiverged) as caught:
        check_finite(float("inf"), epoch=1)
    assert str(caught.value) == "the training loss became inf at epoch 2"
    with pytest.raises(TrainingDiverged):  # the graph saw a bad step the epoch's mean hides
        check_finite(2.0, epoch=0, step=3, diverged=True)


@pytest.mark.parametrize("module", ["runner/train/divergence.py", "runner/train/custom.py",
                                    "runner/run/epoch_end.py", "runner/run/fused.py", "runner/train/fused.py"])
def test_no_engine_checks_finiteness_but_through_check_finite(module):
    source = (REPO / module).read_text()
    tree = ast.parse(source)
    raised = [n for n in ast.walk(tree) if isinstance(n, ast.Raise) and "TrainingDiverged" in ast.unparse(n)]
    assert [ast.unparse(n) for n in raised] == (["raise TrainingDiverged(epoch, step, float(loss))"]
                                                if module.endswith("divergence.py") else [])
    assert "isfinite" not in source.replace("math.isfinite(float(loss))", "")


@pytest.mark.parametrize("loop, engine", [("custom", "keras"), ("fit", "fused")])
def test_every_engine_ends_with_the_ema_weights_as_fit_does(write_spec, tmp_path, loop, engine):
    """An optimizer with `use_ema`: Keras `fit` puts the moving averages in the weights after
    the last epoch; the custom loop and the fused engine do the same, so the saved model and
    the final test metrics agree whichever engine trained."""
    import json

    import keras

    from runner.run.pipeline import run_spec

    def trained(loop, engine):
        spec = load_spec(write_spec(SPEC.replace("optimizer: sgd", "optimizer: {Adam: {learning_rate: 0.1, "
                                                 "use_ema: true, ema_momentum: 0.5}}")),
                         ["seed=1", "train.validation_freq=1", f"train.loop={loop}", f"train.engine={engine}", f"outputs.dir={tmp_path / loop / engine}",
                          "outputs.tensorboard=false"])
        run_dir = run_spec(spec, quiet=True).run_dir
        assert json.loads((run_dir / "manifest.json").read_text())["engine"] == engine
        return (keras.saving.load_model(run_dir / "model.keras").get_weights(),
                json.loads((run_dir / "metrics.json").read_text())["test"])

    fit_weights, fit_test = trained("fit", "keras")
    weights, test = trained(loop, engine)
    for a, b in zip(weights, fit_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    assert test == pytest.approx(fit_test, rel=1e-5)
