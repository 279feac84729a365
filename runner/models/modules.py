"""tf.Module models: containers of variables with a forward pass, as in the seed lecture."""

from __future__ import annotations

import keras
import tensorflow as tf


class Linear(tf.Module):
    """`w * x + b` with scalar variables `w` and `b`."""

    def __init__(self, w: float = 0.0, b: float = 0.0, name: str | None = None):
        super().__init__(name=name)
        self.w = tf.Variable(float(w), name="w")
        self.b = tf.Variable(float(b), name="b")

    def __call__(self, x):
        return self.w * x + self.b


class Dense(tf.Module):
    """`activation(x @ w + b)` with `w ~ N(0, stddev)` (seeded) and `b = 0`."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation="relu",
        stddev: float = 1.0,
        seed: int = 0,
        name: str | None = None,
    ):
        super().__init__(name=name)
        initial = tf.random.stateless_normal(
            [int(in_features), int(out_features)], seed=[int(seed), 0], stddev=float(stddev)
        )
        self.w = tf.Variable(initial, name="w")
        self.b = tf.Variable(tf.zeros([int(out_features)]), name="b")
        self.activation = keras.activations.get(activation)

    def __call__(self, x):
        return self.activation(tf.matmul(x, self.w) + self.b)


class Sequential(tf.Module):
    """A stack of modules applied in order (the seed's SequentialModule)."""

    def __init__(self, layers, name: str | None = None):
        super().__init__(name=name)
        self.layers = list(layers)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def build_module(config: dict, spec, path: tuple, seed: int = 0) -> tf.Module:
    """A tf.Module model from `model.module` (linear, dense or sequential).

    Raises:
        SpecError: an argument the module does not take, or a bad value.
    """
    ((kind, arguments),) = config.items()
    arguments = dict(arguments or {}) if not isinstance(arguments, list) else arguments
    where = (*path, kind)
    if kind == "sequential":
        layers = []
        for i, item in enumerate(arguments):
            layers.append(build_module(item, spec, (*where, i), seed=seed + i + 1))
        return Sequential(layers, name="sequential")
    try:
        if kind == "linear":
            return Linear(**arguments, name="linear")
        if kind == "dense":
            arguments.setdefault("seed", seed)
            return Dense(**arguments, name="dense")
    except (TypeError, ValueError) as e:
        message = str(e).replace("__init__() ", "")
        raise spec.error(where, message) from e
    raise spec.error(path, f"unknown module {kind!r} (expected linear, dense or sequential)")


def scalar_variables(model) -> dict:
    """Every scalar variable of a model by its short name (`w`, `b`), in creation order.

    Names repeated across layers keep their scope (`linear/w`) so none is lost.
    """
    variables = [v for v in model.variables if v.shape.rank == 0]
    short = [_short_name(v) for v in variables]
    named = {}
    for variable, name in zip(variables, short):
        key = name if short.count(name) == 1 else _scoped_name(variable)
        named[key] = variable
    return named


def _short_name(variable) -> str:
    name = getattr(variable, "path", None) or variable.name
    return name.split("/")[-1].split(":")[0]


def _scoped_name(variable) -> str:
    name = getattr(variable, "path", None) or variable.name
    return name.split(":")[0]
