"""runner/export/graph_ops.py: the plain SavedModel's faster forms of its ops give the values of
the ops they replace, and are used only where they do."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow
tf = pytest.importorskip("tensorflow")

from runner.data.ops import build_map_function  # noqa: E402
from runner.export.graph_ops import pixel_scaling, softmax  # noqa: E402
from runner.spec import load_spec  # noqa: E402
from tests.conftest import SPECS  # noqa: E402

PIXELS = tf.TensorSpec([28, 28], tf.uint8)


def _stage(ops, element=PIXELS):
    spec = load_spec(SPECS / "keras_regression.yaml")
    return pixel_scaling(ops, element, build_map_function(spec, ("data", "test", "stages", 0, "map"), ops, element))


@pytest.mark.parametrize("ops", [
    [{"cast": {"dtype": "float32"}}, {"scale": {"divisor": 255.0}}],
    [{"scale": {"divisor": 255.0}}],
    [{"cast": {"dtype": "float32"}}, {"scale": {"factor": 1 / 255}}],
    [{"scale": {"divisor": 127.5}}],
])
def test_scaled_pixels_as_one_kernel_equal_the_ops_as_served(ops):
    fused = _stage(ops)
    assert fused is not None
    spec = load_spec(SPECS / "keras_regression.yaml")
    reference = tf.function(build_map_function(spec, ("x",), ops, PIXELS))
    pixels = tf.constant(np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8))
    graph = tf.function(fused).get_concrete_function(tf.TensorSpec([None, 28, 28], tf.uint8)).graph
    assert {op.type for op in graph.get_operations()} >= {"Dequantize"}
    expected, got = reference(pixels).numpy(), tf.function(fused)(pixels).numpy()
    assert got.dtype == np.float32 and np.array_equal(expected.view(np.uint32), got.view(np.uint32))


@pytest.mark.parametrize("ops, element", [
    ([{"cast": {"dtype": "float32"}}, {"scale": {"divisor": 255.0}}], tf.TensorSpec([28, 28], tf.float32)),
    ([{"cast": {"dtype": "float16"}}, {"scale": {"divisor": 255.0}}], PIXELS),
    ([{"cast": {"dtype": "float32"}}, {"scale": {"divisor": 255.0}}, {"reshape": {"shape": [784]}}], PIXELS),
    ([{"cast": {"dtype": "float32"}}], PIXELS),
    ([{"scale": {"factor": -1.0}}], PIXELS),
    ([{"normalize": {"mean": 0.5, "std": 2.0}}], PIXELS),
])
def test_other_stages_keep_their_ops(ops, element):
    assert _stage(ops, element) is None


def test_a_scale_whose_kernel_would_differ_keeps_its_ops(monkeypatch):
    """Checked on every byte value: where Dequantize's rounding would differ, the ops stay."""
    real = tf.raw_ops.Dequantize
    monkeypatch.setattr(tf.raw_ops, "Dequantize", lambda **kw: real(**kw) * (1.0 + 1e-6))
    assert _stage([{"scale": {"divisor": 255.0}}]) is None


def test_softmax_as_exp_over_sum_equals_tensorflows():
    logits = tf.constant(np.random.default_rng(1).normal(scale=20.0, size=(256, 10)).astype(np.float32))
    np.testing.assert_allclose(softmax(logits, decomposed=True).numpy(), tf.nn.softmax(logits).numpy(),
                               rtol=1e-6, atol=1e-7)
    graph = tf.function(lambda x: softmax(x, decomposed=True)).get_concrete_function(logits).graph
    assert "Softmax" not in {op.type for op in graph.get_operations()}
