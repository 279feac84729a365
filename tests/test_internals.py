"""Every private Keras/TensorFlow API pipe uses is still where runner.internals expects it."""

from __future__ import annotations

import importlib
import importlib.util

import pytest

from runner.internals import PRIVATE_APIS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("purpose, module, attribute", PRIVATE_APIS, ids=[a[2] for a in PRIVATE_APIS])
def test_private_api_is_still_there(purpose, module, attribute):
    package = module.split(".")[0]
    if package not in ("keras", "tensorflow") and importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (an extra: the export tests skip without it too)")
    try:
        found = getattr(importlib.import_module(module), attribute, None)
    except ImportError:
        found = None
    assert found is not None, (
        f"{module}.{attribute} ({purpose}) is gone in this Keras/TensorFlow: "
        "update runner/internals.py and the tested version range in pyproject.toml"
    )


def test_internals_resolve_what_compile_resolves():
    import keras
    import numpy as np

    from runner.internals import compile_loss, compile_metric, keras_alias_table

    y_true, y_pred = np.array([1, 0]), np.array([[0.1, 0.9], [0.8, 0.2]], dtype="float32")
    assert isinstance(compile_metric("accuracy", y_true, y_pred), keras.metrics.SparseCategoricalAccuracy)
    assert isinstance(compile_loss("sparse_categorical_crossentropy", y_true, y_pred), keras.losses.Loss)
    assert "mse" in keras_alias_table(keras.losses)
