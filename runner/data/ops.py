"""Map operations: a closed vocabulary of element transforms, fused into one map function.

Nothing written in a spec is evaluated: each op is a known name with checked arguments,
and a slice spec such as "1:3, 0:2" is parsed here into Python slices.
"""

from __future__ import annotations

import re

import tensorflow as tf

from runner.spec.errors import first_line

_INDEX = re.compile(r"^-?\d+$")


def build_map_function(spec, path: tuple, ops: list, element_spec, constant=tf.constant):
    """One function applying every op in order to an element, for a single `Dataset.map`.

    Args:
        spec: the Spec, to locate errors.
        path: the map stage's path, e.g. `("data", "train", "stages", 0, "map")`.
        ops: the stage's `ops` list, metadata references already substituted.
        element_spec: the dataset's element_spec, to know whether elements carry a label.
        constant: makes the tensor of a scale's or a normalize's numbers, `(value, dtype)`.

    Raises:
        SpecError: an op that cannot apply (raised while tf.data traces the function).
    """
    labelled = isinstance(element_spec, tuple) and len(element_spec) == 2
    steps = []
    for i, op in enumerate(ops):
        ((name, args),) = op.items()
        where = path + ("ops", i, name)
        args = args or {}
        target = args.get("on", "features")
        if target == "label" and not labelled:
            raise spec.error(where, f"{name} is on the label, but the elements have no label")
        if target not in ("features", "label"):
            _part_holding(spec, where, element_spec if labelled else (element_spec,), target)
        steps.append((where, name, target, _make_op(spec, where, name, args, constant)))

    def apply(features, label=None):
        parts = {"features": features, "label": label}
        for where, name, target, transform in steps:
            value = _get(parts, target)
            if not isinstance(value, tf.Tensor):
                raise spec.error(where, f"{name} needs a tensor, but the {target} are a {type(value).__name__}",
                                 _names_hint(value))
            try:
                _set(parts, target, transform(value))
            except Exception as e:
                raise spec.error(where, f"{name} cannot apply to {target} of shape {value.shape.as_list()} "
                                        f"and dtype {value.dtype.name}: {first_line(e)}") from e
        return (parts["features"], parts["label"]) if labelled else parts["features"]

    # Plain TensorFlow ops, no Python control flow on tensors: autograph has nothing to do,
    # and skipping it keeps our located errors intact through tracing.
    function = tf.autograph.experimental.do_not_convert(apply)
    function.layers = [layer for *_, transform in steps for layer in getattr(transform, "layers", ())]  # augment's
    return function


def select_target(spec, where, element: tuple, target: str):
    """The tensor an op's `on` names in an element given as a tuple (features[, label])."""
    parts = {"features": element[0], "label": element[1] if len(element) > 1 else None}
    return _get(parts, target)


def _part_holding(spec, where, element_spec: tuple, name: str) -> str:
    """Which part (features or label) holds the named feature or label; else a located error."""
    for part, value in zip(("features", "label"), element_spec):
        if isinstance(value, dict) and name in value:
            return part
    names = [n for value in element_spec if isinstance(value, dict) for n in value]
    known = f"the named features and labels are {', '.join(names)}" if names else \
        "the features and label are single tensors, not named"
    raise spec.error(where + ("on",), f"no feature or label named {name!r} ({known})", at_value=True)


def _get(parts: dict, target: str):
    if target in parts:
        return parts[target]
    holder = "features" if isinstance(parts["features"], dict) and target in parts["features"] else "label"
    return parts[holder][target]


def _set(parts: dict, target: str, value) -> None:
    if target in parts:
        parts[target] = value
        return
    holder = "features" if isinstance(parts["features"], dict) and target in parts["features"] else "label"
    parts[holder] = {**parts[holder], target: value}


def _names_hint(value) -> str | None:
    if isinstance(value, dict):
        return f"aim it at one of them with on: {' | '.join(value)}"
    return None


def parse_slice(text: str) -> tuple:
    """ "1:3, 0:2" -> (slice(1, 3), slice(0, 2)); ints, start:stop:step and '...' only.

    Raises:
        ValueError: anything else.
    """
    items = []
    for part in (p.strip() for p in text.split(",")):
        if part == "...":
            items.append(Ellipsis)
        elif ":" in part:
            bounds = [b.strip() for b in part.split(":")]
            if len(bounds) > 3 or not all(b == "" or _INDEX.match(b) for b in bounds):
                raise ValueError(_bad_slice(text, part))
            values = [int(b) if b else None for b in bounds]
            if len(values) == 3 and values[2] == 0:
                raise ValueError(f"cannot parse slice '{text}': step cannot be zero")
            items.append(slice(*values))
        elif _INDEX.match(part):
            items.append(int(part))
        else:
            raise ValueError(_bad_slice(text, part))
    if items.count(Ellipsis) > 1:
        raise ValueError(f"cannot parse slice '{text}': '...' may appear only once")
    return tuple(items)


def _bad_slice(text, part):
    return f"cannot parse slice '{text}': '{part}' is not an index, a start:stop:step slice or '...'"


def _make_op(spec, where, name, args, constant=tf.constant):
    """The tensor -> tensor function of one op; argument mistakes are raised here, before tracing."""
    if name == "cast":
        dtype = _dtype(spec, where + ("dtype",), args["dtype"])
        return lambda x: tf.cast(x, dtype)
    if name == "scale":
        return _scale(spec, where, args, constant)
    if name == "normalize":
        if "mean" not in args or "std" not in args:
            raise spec.error(where, "give both mean and std, or neither to learn them from train")
        mean, std = args["mean"], args["std"]
        if any(s == 0 for s in (std if isinstance(std, list) else [std])):
            raise spec.error(where + ("std",), "std cannot be 0", at_value=True)
        return lambda x: (_floating(x) - constant(mean, _floating(x).dtype)) / constant(std, _floating(x).dtype)
    if name == "reshape":
        shape = [-1 if s is None else s for s in args["shape"]]
        return lambda x: tf.reshape(x, shape)
    if name == "flatten":
        return lambda x: tf.reshape(x, [-1])
    if name == "transpose":
        perm = args["perm"]
        return lambda x: tf.transpose(x, perm)
    if name == "slice":
        try:
            index = parse_slice(args["spec"])
        except ValueError as e:
            raise spec.error(where + ("spec",), str(e), at_value=True) from e
        return lambda x: x[index]
    if name == "one_hot":
        depth = args["depth"]
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise spec.error(where + ("depth",), f"depth must be a positive integer or ${{data.num_classes}}, "
                                                 f"got {depth!r}", at_value=True)
        return lambda x: tf.one_hot(x, depth)
    if name == "resize":
        size, method = args["size"], args.get("method", "bilinear")
        return lambda x: tf.image.resize(x[..., tf.newaxis] if x.shape.rank == 2 else x, size, method=method)
    if name == "einsum":
        equation, operand = args["equation"], args["operand"]
        return lambda x: tf.einsum(equation, x, tf.constant(operand, dtype=x.dtype))
    if name == "clip":
        return _clip(spec, where, args)
    if name == "polynomial":
        degree = args["degree"]
        return lambda x: tf.concat([_floating(x) ** k for k in range(1, degree + 1)], axis=-1)
    if name in _IMAGE_OPS:
        from runner.data import images  # image decoding, cropping and Keras augmentation

        return getattr(images, _IMAGE_OPS[name])(spec, where, args)
    raise spec.error(where, f"unknown map op '{name}'")


_IMAGE_OPS = {"decode_image": "decode_image", "decode_raw": "decode_raw", "center_crop": "center_crop",
              "augment": "augment", "grayscale_to_rgb": "grayscale_to_rgb"}


def _scale(spec, where, args, constant=tf.constant):
    factor, divisor = args.get("factor"), args.get("divisor")
    if (factor is None) == (divisor is None):
        raise spec.error(where, "give either factor or divisor")
    if divisor is not None:
        if divisor == 0:
            raise spec.error(where + ("divisor",), "divisor cannot be 0", at_value=True)
        # x / divisor, not x * (1 / divisor): bit-identical to a hand-written `x / 255.`
        return lambda x: _floating(x) / constant(divisor, _floating(x).dtype)
    return lambda x: _floating(x) * constant(factor, _floating(x).dtype)


def _clip(spec, where, args):
    """Values below min become min, above max become max (integers stay integers with integer bounds)."""
    low, high = args.get("min"), args.get("max")
    if low is None and high is None:
        raise spec.error(where, "give min, max or both")
    if low is not None and high is not None and low > high:
        raise spec.error(where + ("min",), f"min {low} is above max {high}", at_value=True)
    whole = all(isinstance(b, int) for b in (low, high) if b is not None)

    def clip(x):
        x = x if x.dtype.is_integer and whole else _floating(x)
        if low is not None:
            x = tf.maximum(x, tf.constant(low, x.dtype))
        return x if high is None else tf.minimum(x, tf.constant(high, x.dtype))

    return clip


def _floating(x):
    """Integer tensors (e.g. uint8 pixels) become float32 before arithmetic with floats."""
    return x if x.dtype.is_floating else tf.cast(x, tf.float32)


def _dtype(spec, path, name):
    try:
        return tf.as_dtype(name)
    except TypeError as e:
        raise spec.error(path, f"unknown dtype '{name}'", at_value=True) from e
