"""Labels that do not fit the loss are blamed on the split that holds them, by run, plan and
evaluate alike, as a spec mistake (exit 1), never as a failed run (exit 3)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from runner.cli import app

pytestmark = pytest.mark.slow

SPEC = """\
version: 1
name: labels
seed: 3
data:
  train:
    source: {npz: {path: data.npz, features: x, label: y}}
    stages: [{batch: {batch_size: 16}}]
  test:
    source: {npz: {path: data.npz, features: x, label: TEST_LABELS}}
    stages: [{batch: {batch_size: 16}}]
model:
  sequential: {input_shape: [4], layers: [{Dense: {units: 3}}]}
train:
  epochs: 1
  loop: LOOP
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: adam
outputs: {dir: runs, plots: {enabled: false}}
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 48)
    bad = y.copy()
    bad[37] = 7  # past the first batch: found where the split is read, not by a peek at its start
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(48, 4)).astype(np.float32), y=y, bad=bad)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write(folder, labels="y", loop="fit"):
    (folder / "spec.yaml").write_text(SPEC.replace("TEST_LABELS", labels).replace("LOOP", loop))
    return "spec.yaml"


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_run_blames_bad_test_labels_on_the_test_split(folder, loop):
    result = CliRunner().invoke(app, ["run", "--quiet", _write(folder, "bad", loop)])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1] == (
        "spec.yaml:8:3: data.test: loss 'sparse_categorical_crossentropy' does not fit the labels of data.test: "
        "A label value is outside the valid range of [0, 3).")


def test_evaluate_with_bad_test_labels_names_the_set_and_exits_1(folder):
    assert CliRunner().invoke(app, ["run", "--quiet", _write(folder)]).exit_code == 0
    (run_dir,) = (folder / "runs" / "labels").iterdir()
    result = CliRunner().invoke(app, ["evaluate", str(run_dir), "--set", "data.test.source.npz.label=bad"])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1] == (
        "--set data.test.source.npz.label=bad: data.test.source.npz.label: loss 'sparse_categorical_crossentropy' "
        "does not fit the labels of data.test: A label value is outside the valid range of [0, 3).")
