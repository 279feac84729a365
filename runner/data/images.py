"""Image map ops: decoding encoded or raw bytes, central crops, Keras augmentation layers."""

from __future__ import annotations

import keras
import tensorflow as tf

from runner.spec.errors import did_you_mean


def decode_image(spec, where, args):
    """PNG, JPEG, GIF or BMP bytes -> an image tensor (tf.io.decode_image, format by content).

    `channels` 0 keeps the file's; `dtype` uint8 (default) or a float dtype scaled to [0, 1].
    """
    channels = args.get("channels", 0)
    dtype = tf.as_dtype(args.get("dtype", "uint8"))

    def decode(x):
        # expand_animations=False: always one [height, width, channels] frame, even for GIFs
        return tf.io.decode_image(x, channels=channels, dtype=dtype, expand_animations=False)

    return decode


def decode_raw(spec, where, args):
    """Raw bytes (e.g. a TFRecord feature holding an array's tobytes()) -> a tensor of `shape`."""
    dtype = tf.as_dtype(args.get("dtype", "uint8"))
    shape = [-1 if s is None else s for s in args["shape"]]
    little_endian = args.get("little_endian", True)
    return lambda x: tf.reshape(tf.io.decode_raw(x, dtype, little_endian=little_endian), shape)


def center_crop(spec, where, args):
    """The central [height, width] of an image, padded with zeros where it is smaller."""
    height, width = args["size"]

    def crop(x):
        image = x[..., tf.newaxis] if x.shape.rank == 2 else x
        return tf.image.resize_with_crop_or_pad(image, height, width)

    return crop


def grayscale_to_rgb(spec, where, args):
    """A one-channel image (or a 2-D one) as three equal channels (tf.image.grayscale_to_rgb)."""

    def rgb(x):
        image = x[..., tf.newaxis] if x.shape.rank == 2 else x
        return tf.image.grayscale_to_rgb(image)

    return rgb


def augment(spec, where, args):
    """Keras augmentation layers (RandomFlip, RandomRotation, ...) applied with training=True.

    Only train applies them: a validation fraction inherits train's map ops without these.
    """
    layers = [_layer(spec, where + ("layers", i), identifier) for i, identifier in enumerate(args["layers"])]

    def apply(x):
        for layer in layers:
            x = layer(x, training=True)
        return x

    apply.layers = layers  # what the fused engine asks whether XLA compiles (`BatchAugment.xla_refusals`)
    return apply


def _layer(spec, path, identifier):
    """A keras.layers class built through its constructor (Keras resolves the name)."""
    if isinstance(identifier, str):
        name, config = identifier, {}
    elif "class_name" in identifier:
        name, config = identifier["class_name"], dict(identifier.get("config") or {})
    else:
        ((name, config),) = identifier.items()
        config = dict(config or {})
    cls = getattr(keras.layers, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
        candidates = [n for n in dir(keras.layers) if n.startswith("Random") or n in ("Rescaling", "Resizing")]
        raise spec.error(path, f"unknown layer {name!r}", did_you_mean(str(name), candidates))
    try:
        return cls(**config)
    except Exception as e:
        raise spec.error(path, f"{name}: {e}") from e
