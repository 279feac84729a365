"""Dataset metadata in a spec: `${data.num_classes}` and `${data.<split>.num_examples}`.

Only strings that are exactly one reference are replaced; anything else is left as written.
No TensorFlow here: the model builder and the data layer both use it.
"""

from __future__ import annotations

import re

_REFERENCE = re.compile(r"^\$\{data\.([A-Za-z0-9_.]*)\}$")
_SPLITS = ("train", "validation", "test")
KNOWN_REFERENCES = ("${data.num_classes}",) + tuple(f"${{data.{s}.num_examples}}" for s in _SPLITS)


def substitute_metadata(tree, info: dict, spec=None, path: tuple = ()):
    """A copy of `tree` with every `${data...}` reference replaced by its value in `info`.

    Args:
        tree: a spec subtree (dicts, lists, scalars).
        info: `Datasets.info`: num_classes, class_names, num_examples by split.
        spec: when given, mistakes are raised located in it (`spec.error`).
        path: where `tree` sits in the spec, for those locations.

    Raises:
        SpecError (with `spec`) or ValueError: an unknown reference, or metadata that the
            data does not provide (e.g. num_classes of float labels).
    """
    if isinstance(tree, dict):
        done = {k: substitute_metadata(v, info, spec, path + (k,)) for k, v in tree.items()}
        if done.get("bias_initializer") == "prior":
            done["bias_initializer"] = _prior(done, info, spec, path + ("bias_initializer",))
        return done
    if isinstance(tree, list):
        return [substitute_metadata(v, info, spec, path + (i,)) for i, v in enumerate(tree)]
    if isinstance(tree, str):
        match = _REFERENCE.match(tree)
        if match:
            return _lookup(match.group(1), tree, info, spec, path)
    return tree


def _lookup(name: str, text: str, info: dict, spec, path):
    parts = name.split(".")
    value, known = None, True
    if parts == ["num_classes"]:
        value = info.get("num_classes")
    elif len(parts) == 2 and parts[0] in _SPLITS and parts[1] == "num_examples":
        value = (info.get("num_examples") or {}).get(parts[0])
    else:
        known = False
    if not known:
        _fail(spec, path, f"unknown reference '{text}' (known: {', '.join(KNOWN_REFERENCES)})")
    if value is None:
        what = "number of classes" if parts[0] == "num_classes" else f"size of a data.{parts[0]} split"
        _fail(spec, path, f"'{text}': the data has no {what} (integer labels and a declared split are needed)")
    return value


def _fail(spec, path, message):
    if spec is not None:
        raise spec.error(path, message, at_value=True)
    raise ValueError(message)


def _prior(config: dict, info: dict, spec, path):
    """`bias_initializer: prior` as a Keras Constant of the train split's class frequencies:
    log(p / (1 - p)) for one unit (binary labels), log(p_c) for one unit per class."""
    bias = info.get("output_bias")
    if bias is None:
        _fail(spec, path, "prior needs the train split's class labels, and they were not read")
    units, classes = config.get("units"), len(bias["softmax"])
    if units == 1 and "sigmoid" in bias:
        value = [bias["sigmoid"]]
    elif units == classes:
        value = list(bias["softmax"])
    else:
        _fail(spec, path, f"prior sets one bias per class: the layer has {units} units and the train labels "
                          f"{classes} classes" + (" (or 1 unit for binary labels)" if classes == 2 else ""))
    return {"class_name": "Constant", "config": {"value": value}}
