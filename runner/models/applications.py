"""keras.applications backbones by name: weights none or a local file, frozen or trainable.

A spec names a backbone where it names a layer, with the function's own arguments plus
`trainable` (false freezes it) and `trainable_layers` (train only its last N layers):

    - MobileNetV3Small: {weights: null, include_top: false, input_shape: [96, 96, 3],
                         pooling: avg, trainable: false}
"""

from __future__ import annotations

import keras

from runner.errors import EXIT_INVALID, PipeError

WEIGHTS_HINT = "set weights: null (random initial weights) or the path of a local weights file"


class WeightsFileNotFound(PipeError, FileNotFoundError):
    """The declared weights file does not exist (reported at the `weights` key)."""

    exit_code = EXIT_INVALID


def build_application(name: str, arguments: dict, resolve_path) -> keras.Model:
    """`keras.applications.<name>(**arguments)` with its layers frozen as declared.

    Args:
        resolve_path: turns a weights path written in the spec into a Path.

    Raises:
        WeightsFileNotFound, or what Keras raises for a bad argument or a failed download.
    """
    arguments = dict(arguments)
    trainable = arguments.pop("trainable", True)
    trainable_layers = arguments.pop("trainable_layers", None)
    weights = arguments.get("weights", "imagenet")
    if isinstance(weights, str) and weights != "imagenet":
        file = resolve_path(weights)
        if not file.is_file():
            raise WeightsFileNotFound(f"weights file not found: {file}")
        arguments["weights"] = str(file)
    if arguments.get("input_shape") is not None:
        arguments["input_shape"] = tuple(arguments["input_shape"])
    model = getattr(keras.applications, name)(**arguments)
    _freeze(model, trainable, trainable_layers)
    return model


def _freeze(model: keras.Model, trainable: bool, trainable_layers) -> None:
    """trainable: false freezes every layer; trainable_layers: N trains only the last N."""
    if trainable_layers is not None:
        model.trainable = True
        cut = len(model.layers) - int(trainable_layers)
        for i, layer in enumerate(model.layers):
            layer.trainable = i >= cut
    elif not trainable:
        model.trainable = False
