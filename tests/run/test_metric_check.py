"""A metric that does not fit the labels ends `pipe run` as the located error `pipe plan`
gives (exit 1, before any run directory), not as a failure at the first training step."""

from __future__ import annotations

import pytest

from runner.spec import load_spec
from runner.spec.errors import SpecError
from tests.conftest import REPO

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")

from runner.run.pipeline import run_spec  # noqa: E402

MNIST_200 = REPO / "tests" / "mistakes" / "data" / "mnist_200.npz"

SPEC = f"""\
version: 1
name: onehot
seed: 1
data:
  train:
    source: {{npz: {{path: {MNIST_200}, features: images, label: labels}}}}
    stages:
      - map: {{ops: [{{cast: {{dtype: float32}}}}, {{one_hot: {{depth: 10, on: label}}}}]}}
      - batch: {{batch_size: 32}}
model:
  sequential:
    input_shape: [28, 28]
    layers:
      - Flatten: {{}}
      - Dense: {{units: 10}}
train:
  loop: LOOP
  epochs: 1
  loss: {{CategoricalCrossentropy: {{from_logits: true}}}}
  metrics: [accuracy, sparse_categorical_accuracy]
  optimizer: adam
outputs: {{dir: runs, plots: {{enabled: false}}}}
"""


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_a_sparse_metric_on_one_hot_labels_is_located_before_training(tmp_path, monkeypatch, loop):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("LOOP", loop))
    with pytest.raises(SpecError) as error:
        run_spec(load_spec(path), quiet=True)
    assert str(error.value) == (f"{path}:20:23: train.metrics[1]: metric does not fit labels (batch, 10) float32 "
                                "and predictions (batch, 10) float32: Incompatible shapes: [2,10] vs. [2]")
    assert not (tmp_path / "runs").exists()
