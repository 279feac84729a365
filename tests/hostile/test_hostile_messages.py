"""Messages never quote the data (issue 22): weights in a checkpoint's Variables, input rows
in a model's shape complaint, a label cell that train did not have."""

from __future__ import annotations

import pytest

from runner.outputs.failure import summarise_error
from runner.spec.errors import without_values

CHECKPOINT = ("Found 2 Python objects that were not bound to checkpointed values. Showing 2 of 2 unmatched "
              "objects: [<Variable path=sequential/dense/bias, shape=(1,), dtype=float32, value=[0.]>, "
              "<Variable path=sequential/dense/kernel, shape=(64, 1), dtype=float32, value=[[-0.12414648]\n"
              " [ 0.2041]\n [-0.0113]]>]")


def test_a_variables_value_is_left_out():
    assert without_values(CHECKPOINT) == (
        "Found 2 Python objects that were not bound to checkpointed values. Showing 2 of 2 unmatched objects: "
        "[<Variable path=sequential/dense/bias, shape=(1,), dtype=float32>, "
        "<Variable path=sequential/dense/kernel, shape=(64, 1), dtype=float32>]")


def test_printed_arrays_are_left_out_and_shapes_kept():
    message = ("Invalid input shape for input [[0. 0. 0.]\n [0. 0. 0.]\n [1.5 nan 2.]]. Expected shape (None, 4), "
               "but input has incompatible shape (3, 3)")
    assert summarise_error(ValueError(message)) == (
        "ValueError: Invalid input shape for input <values>. Expected shape (None, 4), "
        "but input has incompatible shape (3, 3)")
    assert without_values("row [0.25 1. 3.] vs. [32, 10] and [32,1]") == "row <values> vs. [32, 10] and [32,1]"
    assert without_values("a 1e400 [inf nan]") == "a 1e400 <values>"
    assert without_values("input [0.1 0.2] [0.4 0.5]\n [1.0 2.0]. Expected") == "input <values>. Expected"
    tensor = ("Received args: (<tf.Tensor: shape=(3,), dtype=float32, numpy=\narray([-2.  , -1.75,\n"
              "        0.25], dtype=float32)>,) and x = array([[1, 2], [3, 4]]), shape [32, 10]")
    assert without_values(tensor) == ("Received args: (<tf.Tensor: shape=(3,), dtype=float32, numpy=<values>>,) "
                                      "and x = <values>, shape [32, 10]")


def test_a_checkpoint_that_does_not_fit_is_told_without_its_weights(tmp_path):
    from runner.train import checkpoint

    error = checkpoint._corrupt(str(tmp_path / "ckpt-2"), AssertionError(CHECKPOINT))
    assert "0.2041" not in str(error) and "-0.124" not in str(error)
    assert "Variable path=sequential/dense/kernel, shape=(64, 1), dtype=float32>" in str(error)


@pytest.mark.slow
def test_a_class_train_did_not_have_is_told_without_quoting_it():
    from types import SimpleNamespace

    import numpy as np

    from runner.data.learned import Learned
    from runner.data.table import _encoded_labels

    class Refused(Exception):
        pass

    spec = SimpleNamespace(error=lambda path, message: Refused(f"{'.'.join(path)}: {message}"))
    table = SimpleNamespace(path=("data", "test", "source", "csv"), labels=np.array(["A", "Adelie", "A"]),
                            text_labels=["species"], label_names=["species"], rows=np.array([1, 2, 3]))
    with pytest.raises(Refused) as refused:
        _encoded_labels(spec, table, Learned(labels={"species": {"vocabulary": ["A"]}}, frozen=True))
    assert str(refused.value) == ("data.test.source.csv.label: row 2, column 'species': a class train did not have "
                                  "(1 such rows; train's 1 classes are in the run's preprocessing.json)")
