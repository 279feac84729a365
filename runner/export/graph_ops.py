"""Forms of the serving graph's own ops that TensorFlow's runtime runs faster, with the same values.

Only for the plain SavedModel (TensorFlow's graph runtime, no XLA): XLA fuses these ops by
itself, and LiteRT and ONNX Runtime have their own single kernels for them.

Measured on the Fashion-MNIST model at batch 256 (benchmarks/export_latency.py), against the
Keras model's `predict_on_batch` on the batch already preprocessed:

- `cast` then `scale` of uint8 pixels are two elementwise kernels over every pixel, each one
  split across the intra-op threads; together about 15 % of the model's time. TensorFlow's
  `Dequantize` of the same bytes (read as quint8, range [0, 255 / divisor]) is one kernel
  and gives the same float32 values as the graph of the two, which is checked on all 256
  byte values before it is used.
- TensorFlow's Softmax kernel (oneDNN's, on x86) costs about 10 % on a [256, 10] batch;
  exp(x - max) / sum is a handful of small ops that cost a fifth of that.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def softmax(logits, decomposed: bool):
    """tf.nn.softmax over the last axis; `decomposed`: as exp(x - max) / sum (equal to a few ulp)."""
    if not decomposed:
        return tf.nn.softmax(logits, axis=-1)
    exp = tf.exp(logits - tf.reduce_max(logits, axis=-1, keepdims=True))
    return exp / tf.reduce_sum(exp, axis=-1, keepdims=True)


def pixel_scaling(ops: list, element, reference):
    """One kernel for a map stage that starts by scaling uint8 pixels, or None.

    Args:
        ops: the stage's ops (metadata substituted, normalize statistics resolved).
        element: the TensorSpec of the stage's input (one tensor, without the batch axis).
        reference: the stage's function as `pipe predict` builds it (element -> element).

    Returns:
        A batch -> batch function equal to `reference` on every input, when the stage is
        `scale` or `cast: float32` then `scale` on uint8 pixels, and nothing else; else None.
    """
    if not isinstance(element, tf.TensorSpec) or element.dtype != tf.uint8:
        return None
    names = [next(iter(op)) for op in ops]
    if names not in (["scale"], ["cast", "scale"]):
        return None
    if any((next(iter(op.values())) or {}).get("on", "features") != "features" for op in ops):
        return None
    if names[0] == "cast" and (ops[0]["cast"] or {}).get("dtype") not in ("float32", "float"):
        return None
    args = ops[-1]["scale"] or {}
    top = 255.0 / args["divisor"] if args.get("divisor") is not None else 255.0 * args.get("factor", 1.0)
    if not top > 0:  # a negative or zero factor: Dequantize's range must be increasing
        return None

    def fused(pixels):
        # MIN_COMBINED maps byte b to min_range + b * (max_range - min_range) / 255.
        return tf.raw_ops.Dequantize(input=tf.bitcast(pixels, tf.quint8), min_range=0.0,
                                     max_range=float(top), mode="MIN_COMBINED")

    # Every byte value, in the element's shape when it is known (a kernel may pick its path by shape)
    shape = element.shape.as_list() if element.shape.is_fully_defined() else []
    size = max(int(np.prod(shape)), 1)
    count = -(-256 // size)  # enough elements to hold each byte once
    pixels = tf.constant((np.arange(count * size) % 256).astype(np.uint8).reshape([count, *shape]))
    # Both run as graphs, as they are served (Grappler turns the division by a constant into a
    # multiplication by its reciprocal, which is what Dequantize computes)
    expected, got = tf.function(reference)(pixels), tf.function(fused)(pixels)
    if expected.dtype != tf.float32 or not np.array_equal(expected.numpy().view(np.uint32),
                                                          got.numpy().view(np.uint32)):
        return None
    return fused
