"""The data side of the tutorials' grammar: float targets, time windows, text, values from the data."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from runner.spec import load_spec
from runner.spec.errors import SpecError

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from runner.data import build_datasets  # noqa: E402

TAIL = """
model: {sequential: {layers: [Flatten]}}
train: {epochs: 1, loss: mse, optimizer: adam}
"""


def load(write_spec, data: str, tail: str = TAIL):
    head = "version: 1\nname: t\nseed: 7\n"
    return load_spec(write_spec(head + "data:\n" + textwrap.indent(textwrap.dedent(data), "  ") + tail))


def build(write_spec, data: str, tail: str = TAIL):
    spec = load(write_spec, data, tail)
    keras.utils.set_random_seed(7)
    return build_datasets(spec)


def error_of(write_spec, data: str) -> str:
    spec = load(write_spec, data)
    with pytest.raises(SpecError) as caught:
        build_datasets(spec)
    return str(caught.value).split(": ", 1)[1]


def batches(dataset):
    """Every batch of a dataset as numpy, concatenated: (x, y) or x."""
    parts = list(dataset.as_numpy_iterator())
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))
    return np.concatenate(parts)


# --- float targets stay float ---------------------------------------------------------------

def test_float_targets_written_as_whole_numbers_stay_float(write_spec, tmp_path):
    (tmp_path / "d.csv").write_text("a,mpg\n1,18.0\n2,15.0\n3,16.5\n4,2\n")
    data = build(write_spec, "train: {source: {csv: {path: d.csv, header: true, label: mpg}}}")
    assert data.train.element_spec[1].dtype == tf.float32
    assert [float(y) for _, y in data.train.as_numpy_iterator()] == [18.0, 15.0, 16.5, 2.0]
    assert data.info["num_classes"] is None
    (tmp_path / "w.csv").write_text("a,mpg\n1,18.0\n2,15.0\n3,16.0\n")  # every value whole, written as floats
    data = build(write_spec, "train: {source: {csv: {path: w.csv, header: true, label: mpg}}}")
    assert data.train.element_spec[1].dtype == tf.float32
    assert data.info["num_classes"] is None


def test_float_targets_in_a_tabular_csv_and_label_dtype(write_spec, tmp_path):
    (tmp_path / "d.csv").write_text("a,kind,y\n1,x,3.0\n2,z,4.0\n3,x,1\n")
    data = build(write_spec, "train: {source: {csv: {path: d.csv, header: true, label: y, categorical: [kind]}}}")
    assert data.train.element_spec[1].dtype == tf.float32
    assert data.info["num_classes"] is None
    (tmp_path / "i.csv").write_text("a,y\n1,3\n2,4\n3,1\n")  # integers, declared float
    data = build(write_spec, "train: {source: {csv: {path: i.csv, header: true, label: y, label_dtype: float32}}}")
    assert data.train.element_spec[1].dtype == tf.float32
    assert [float(y) for _, y in data.train.as_numpy_iterator()] == [3.0, 4.0, 1.0]
    data = build(write_spec, "train: {source: {csv: {path: i.csv, header: true, label: y}}}")
    assert data.train.element_spec[1].dtype == tf.int64
    assert data.info["num_classes"] == 5


def test_plan_counts_no_classes_of_float_targets():
    from runner.plan import describe_split

    targets = tf.data.Dataset.from_tensor_slices((np.zeros((6, 2), np.float32),
                                                  np.array([18, 15, 16, 18, 3, 2], np.float32))).batch(3)
    info, _ = describe_split(targets, 6)
    assert "class_counts" not in info
    binary = tf.data.Dataset.from_tensor_slices((np.zeros((4, 2), np.float32),
                                                 np.array([0, 1, 1, 1], np.float32))).batch(4)
    info, _ = describe_split(binary, 4)
    assert info["class_counts"]["counts"] == {0: 1, 1: 3}
