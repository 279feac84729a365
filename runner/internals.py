"""The one door to private Keras and TensorFlow APIs: every such reach lives here.

Each entry names the private place it uses; `tests/test_internals.py` fails with a message
naming the entry when an installed Keras or TensorFlow moves it. The versions the project
is tested with are declared in pyproject.toml (Keras and TensorFlow have upper bounds for
this reason).
"""

from __future__ import annotations

import importlib

# (what it is for, module, attribute): checked by tests/test_internals.py.
PRIVATE_APIS = (
    ("loss resolution as Model.compile does it", "keras.src.trainers.compile_utils", "get_loss"),
    ("metric resolution as Model.compile does it", "keras.src.trainers.compile_utils", "get_metric"),
    ("Keras's alias tables (mse, adam, ...)", "keras.src.losses", "ALL_OBJECTS_DICT"),
    ("switching op determinism off again", "tensorflow.python.framework.config", "disable_op_determinism"),
    ("a functional node's own training argument kept under fit", "keras.src.models.functional", "operation_fn"),
    ("a model's serving signature as Model.export makes it", "keras.src.export.export_utils",
     "get_input_signature"),
    ("ONNX from a function whose module holds lookup tables", "tf2onnx.tf_loader", "from_trackable"),
    ("ONNX from a frozen graph with its tables", "tf2onnx.convert", "_convert_common"),
    ("freezing an exported function's variables for LiteRT", "tensorflow.python.framework.convert_to_constants",
     "convert_variables_to_constants_v2"),
)


def compile_loss(loss, y_true, y_pred):
    """A `keras.losses.Loss` for labels/predictions like these, as `Model.compile` makes it."""
    from keras.src.trainers.compile_utils import get_loss

    return get_loss(loss, y_true, y_pred)


def compile_metric(metric, y_true, y_pred):
    """A metric object for labels/predictions like these, as `Model.compile` makes it."""
    from keras.src.trainers.compile_utils import get_metric

    return get_metric(metric, y_true, y_pred)


def keras_alias_table(module) -> dict:
    """Keras's deserialization table of a public namespace (`keras.losses`): aliases included.

    Empty when the private table moved: callers then fall back to the exported names.
    """
    try:
        private = importlib.import_module(module.__name__.replace("keras.", "keras.src.", 1))
        return dict(private.ALL_OBJECTS_DICT)
    except (ImportError, AttributeError):
        return {}


def disable_op_determinism() -> None:
    """Turn TensorFlow's op determinism off (it exports only the switch to turn it on)."""
    from tensorflow.python.framework import config

    if config.is_op_determinism_enabled():
        config.disable_op_determinism()


def keep_call_context_arguments(layer, names) -> None:
    """Let a functional node keep the call-context arguments it was called with (`training`).

    Keras 3's functional model hands its own `training` to every node it runs
    (`keras.src.models.functional.operation_fn`, for the names in the layer's private
    `_call_context_args`), so `base(x, training=False)` would run in training mode under
    `fit`. Taking the names out of that set for this layer keeps the node's value.
    """
    context = getattr(layer, "_call_context_args", None)
    if context is None:
        raise RuntimeError("keras.layers.Layer has no _call_context_args: keep_call_context_arguments needs updating")
    layer._call_context_args = set(context) - set(names)


def export_input_signature(model) -> list:
    """The input signature `Model.export` gives a Keras model's `serve` endpoint."""
    from keras.src.export.export_utils import get_input_signature

    return get_input_signature(model)


def frozen_function(concrete):
    """A concrete function with its variables as constants (what LiteRT's converter needs)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(concrete)


def onnx_from_module(module, concrete, opset: int):
    """The ONNX model of `concrete`, whose lookup tables `module` holds (as tf2onnx's
    from_keras converts a Keras model; its from_function cannot find such tables)."""
    import tensorflow as tf
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common, tensor_names_from_structed

    captured = {t.name for t in concrete.graph.internal_captures}
    inputs = [t.name for t in concrete.inputs if t.name not in captured]
    outputs = [t.name for t in concrete.outputs if t.dtype != tf.resource]
    renames = tensor_names_from_structed(concrete, inputs, outputs)
    with tf.device("/cpu:0"):
        frozen, tables = tf_loader.from_trackable(module, concrete, inputs, outputs, False)
        proto, _ = _convert_common(frozen, name="serving_default", continue_on_error=False, opset=opset,
                                   input_names=inputs, output_names=outputs, tensors_to_rename=renames,
                                   initialized_tables=tables)
    return proto
