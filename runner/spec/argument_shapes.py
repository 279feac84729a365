"""How many values a Keras argument takes: by its layer's axes, or by a sibling argument.

A layer named `...2D` slides, pools, crops or pads over 2 axes: its `kernel_size`,
`pool_size`, `strides`, `dilation_rate`, `size`, `output_size` and `output_padding` are one integer or a
list of exactly 2; `cropping`/`padding` of Cropping2D/ZeroPadding2D are one integer or 2
entries, each an integer or a (before, after) pair. Every other `padding` is a word:
'valid' or 'same' (Conv1D also 'causal'). Keras refuses the rest only when it builds the
layer, and an integer `padding` on a convolution fails with an AttributeError no user can
read; `pipe validate` says them first. The axes come from the name, as Keras names them, so
an alias (`MaxPool2D`, `Convolution2D`) is checked the same way. PiecewiseConstantDecay's
`values` are one more than its `boundaries`.
"""

from __future__ import annotations

import re

from runner.spec.argument_values import is_int, shown

_AXES = re.compile(r"(\d)D(Transpose)?$")
_WINDOWS = ("kernel_size", "pool_size", "strides", "dilation_rate", "size", "output_size", "output_padding")
_EDGES = ("ZeroPadding", "Cropping")  # the layers whose padding/cropping are integers
_CAUSAL = ("Conv1D", "Convolution1D")  # Keras's only layers that pad causally


def shape_problems(name: str, config: dict) -> list[tuple[str, str]]:
    """(argument, why) for each argument of the Keras class `name` whose count Keras would refuse."""
    if name == "PiecewiseConstantDecay":
        return _piecewise_problems(config)
    return _window_problems(name, config)


def _piecewise_problems(config: dict) -> list[tuple[str, str]]:
    boundaries, values = config.get("boundaries"), config.get("values")
    if isinstance(boundaries, list) and isinstance(values, list) and len(values) != len(boundaries) + 1:
        return [("values", f"expected {len(boundaries) + 1} values (one per interval of the {len(boundaries)} "
                           f"boundaries), got {len(values)}")]
    return []


def _window_problems(layer: str, config: dict) -> list[tuple[str, str]]:
    """(argument, why) for each window argument of `layer` Keras would refuse."""
    match = _AXES.search(layer)
    axes = int(match.group(1)) if match else None
    problems = []
    for argument in _WINDOWS:
        value = config.get(argument)
        if axes is not None and isinstance(value, list) and len(value) != axes:
            problems.append((argument, f"expected an integer or a list of {_integers(axes)} ({layer} works on "
                                       f"{_axes_word(axes)}), got {shown(value)}"))
    if layer == "UpSampling1D" and isinstance(config.get("size"), list):
        problems.append(("size", f"expected an integer (UpSampling1D repeats along one axis), got "
                                 f"{shown(config['size'])}"))
    for argument in ("padding", "cropping"):
        if config.get(argument) is None or isinstance(config[argument], str) and config[argument].startswith("${"):
            continue
        problem = (_edge_problem(layer, axes, config[argument]) if layer.startswith(_EDGES)
                   else _padding_word_problem(layer, config[argument]) if argument == "padding" else None)
        if problem is not None:
            problems.append((argument, problem))
    return problems + _stride_problems(layer, config)


def _edge_problem(layer: str, axes: int | None, value) -> str | None:
    """ZeroPadding/Cropping: an integer, or per axis an integer or a (before, after) pair."""
    if axes is None or is_int(value):
        return None
    if axes == 1:
        ok = isinstance(value, list) and len(value) == 2 and all(is_int(v) for v in value)
        expected = "an integer or a list of 2 integers (before, after)"
    else:
        ok = isinstance(value, list) and len(value) == axes and all(
            is_int(v) or isinstance(v, list) and len(v) == 2 and all(is_int(x) for x in v) for v in value)
        expected = f"an integer or a list of {axes} entries (one per axis: an integer or [before, after])"
    return None if ok else f"expected {expected}, got {shown(value)}"


def _padding_word_problem(layer: str, value) -> str | None:
    words = ("valid", "same", "causal") if layer in _CAUSAL else ("valid", "same")
    if isinstance(value, str) and value.lower() in words:
        return None
    quoted = ", ".join(f"'{w}'" for w in words[:-1]) + f" or '{words[-1]}'"
    integers = " (integer padding is ZeroPadding's: put one before the layer)" if not isinstance(value, str) else ""
    return f"expected {quoted}, got {shown(value)}{integers}"


def _stride_problems(layer: str, config: dict) -> list[tuple[str, str]]:
    """Convolutions refuse a stride and a dilation both above 1, and a transpose's
    `output_padding` must be below its stride on every axis."""
    strides, dilation = _per_axis(config.get("strides")), _per_axis(config.get("dilation_rate"))
    problems = []
    if (layer.startswith(("Conv", "Convolution")) and strides and dilation
            and max(strides) > 1 and max(dilation) > 1):
        problems.append(("dilation_rate", f"a dilation_rate above 1 ({shown(config['dilation_rate'])}) cannot go "
                                          f"with strides above 1 ({shown(config['strides'])}) in {layer}"))
    padding = _per_axis(config.get("output_padding"))
    if layer.endswith("Transpose") and padding:
        steps = strides or [1]
        if len(steps) == 1:
            steps = steps * len(padding)
        if len(steps) == len(padding) and any(p >= s for p, s in zip(padding, steps)):
            strides_shown, padding_shown = shown(config.get("strides", 1)), shown(config["output_padding"])
            problems.append(("output_padding", f"expected each output_padding below the strides ({strides_shown}), "
                                               f"got {padding_shown}"))
    return problems


def _per_axis(value) -> list[int] | None:
    """An integer or a list of integers as a list; None for anything else (checked elsewhere)."""
    if is_int(value):
        return [value]
    if isinstance(value, list) and value and all(is_int(v) for v in value):
        return value
    return None


def _axes_word(axes: int) -> str:
    return "1 axis" if axes == 1 else f"{axes} axes"


def _integers(count: int) -> str:
    return "1 integer" if count == 1 else f"{count} integers"
