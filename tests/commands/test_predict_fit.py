"""A CSV given to `pipe predict` is compared with what the run's model takes per row before
it is read (runner.commands.predict_fit): said in the run's terms, without TensorFlow."""

from __future__ import annotations

import pytest

from runner.commands.predict_fit import columns_problem, model_row_shape
from runner.spec import load_spec

IMAGES = """\
version: 1
name: images
data:
  train:
    source: {npz: {path: x.npz, features: x, label: y}}
    stages:
      - map: {ops: [cast: {dtype: float32}, scale: {divisor: 255.0}, reshape: {shape: [4, 4, 1]}]}
      - batch: {batch_size: 8}
model:
  sequential:
    input_shape: [4, 4, 1]
    layers:
      - Flatten: {}
      - Dense: {units: 2}
train:
  epochs: 1
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: adam
"""


@pytest.fixture
def spec_of(tmp_path):
    def spec(text):
        (tmp_path / "spec.yaml").write_text(text)
        return load_spec(tmp_path / "spec.yaml")
    return spec


def test_a_table_given_to_an_image_run_is_told_the_values_per_row(spec_of, tmp_path):
    (tmp_path / "table.csv").write_text("a,b,color,target,cls\n,1.5,blue,7.6,1\n")
    assert columns_problem(spec_of(IMAGES), None, tmp_path / "table.csv") == (
        "the run's model takes 16 values per row (input (4, 4, 1)); table.csv has 5 columns")
    (tmp_path / "pixels.csv").write_text(",".join(["0"] * 16) + "\n")
    assert columns_problem(spec_of(IMAGES), None, tmp_path / "pixels.csv") is None


def test_a_plain_csv_run_takes_its_label_column_too(spec_of, tmp_path):
    (tmp_path / "four.csv").write_text("1,2,3,4\n")
    (tmp_path / "six.csv").write_text("1,2,3,4,5,6\n")
    flat = spec_of(IMAGES.replace("reshape: {shape: [4, 4, 1]}", "clip: {min: 0, max: 1}")
                   .replace("[4, 4, 1]", "[3]"))
    assert columns_problem(flat, {"path": "train.csv", "label": -1}, tmp_path / "four.csv") is None
    assert columns_problem(flat, {"path": "train.csv", "label": -1}, tmp_path / "six.csv") == (
        "the run's model takes 3 values per row (input (3,)) (or 4 with the label column); six.csv has 6 columns")


@pytest.mark.parametrize("change", [
    ("      - batch:", "      - window: {length: 4}\n      - batch:"),  # rows become series
    ("reshape: {shape: [4, 4, 1]}", "one_hot: {depth: 3}"),  # the count changes
])
def test_no_verdict_where_the_data_changes_the_count(spec_of, tmp_path, change):
    (tmp_path / "table.csv").write_text("1,2,3,4,5\n")
    assert columns_problem(spec_of(IMAGES.replace(*change)), None, tmp_path / "table.csv") is None


def test_a_tabular_run_or_one_without_a_numeric_input_shape_is_not_judged(spec_of, tmp_path):
    (tmp_path / "table.csv").write_text("1,2,3,4,5\n")
    assert columns_problem(spec_of(IMAGES), {"path": "t.csv", "features": ["a"]}, tmp_path / "table.csv") is None
    assert model_row_shape(spec_of(IMAGES.replace("    input_shape: [4, 4, 1]\n", ""))) is None
