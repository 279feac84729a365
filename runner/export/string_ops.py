"""Text ops the tflite and onnx files cannot hold, found in the serving graph before converting.

A model that reads raw text (TextVectorization, StringLookup) standardizes, splits and looks
up strings inside its graph. A SavedModel holds those ops; the other formats do not:

- tflite: pipe converts to LiteRT's builtin ops only (the plain runtime runs them), which have
  no regex, split, case or hash-table op.
- onnx: tf2onnx turns these ops into ops of the onnxruntime-extensions domain, which ONNX
  Runtime itself does not run ("No Op registered for StaticRegexReplace").

Refusing before converting says which layer and which ops, in one line, instead of a
converter's error after it.
"""

from __future__ import annotations

import re

from runner.export.paths import ExportRefused
from runner.outputs.saving import graph_nodes

_REGEX_SPLIT_HASH = {"StaticRegexReplace", "RegexReplace", "StringSplit", "StringSplitV2", "StringNGrams",
                     "StringToHashBucket", "StringToHashBucketFast", "StringToHashBucketStrong",
                     "StringJoin", "ReduceJoin", "RegexSplitWithOffsets"}
UNHELD = {
    "tflite": _REGEX_SPLIT_HASH | {"StringLower", "StringUpper", "LookupTableFindV2", "LookupTableSizeV2",
                                   "UnicodeDecode", "UnicodeDecodeWithOffsets", "UnicodeEncode", "Substr",
                                   "StringToNumber", "AsString"},
    "onnx": _REGEX_SPLIT_HASH,  # tf2onnx converts lowercasing and string tables into standard ONNX
}


def refuse_unheld_string_ops(fmt: str, function, model) -> None:
    """Raise ExportRefused when the serving `function` (a tf.function) uses text ops `fmt` cannot hold.

    The message names the layer of `model` whose ops they are (from the graph's name scopes),
    or the run's preprocessing when no layer owns them.
    """
    unheld = UNHELD.get(fmt)
    if not unheld:
        return
    found = {}  # owner -> [op type]
    for node in graph_nodes(function.get_concrete_function()):
        if node.op in unheld:
            ops = found.setdefault(_owner(node.name, model), [])
            if node.op not in ops:
                ops.append(node.op)
    if not found:
        return
    owner, ops = next(iter(found.items()))
    raise ExportRefused(f"{fmt} cannot hold {owner} (string ops {', '.join(ops)}); export saved_model instead")


def _owner(op_name: str, model) -> str:
    """"TextVectorization 'vectorize'" for an op under that layer's name scope, else the preprocessing.

    Keras calls a layer under its name, numbered when the scope is taken (`vectorize_1`)."""
    import keras

    layers = {layer.name: layer for layer in _layers(model) if not isinstance(layer, keras.Model)}
    for scope in op_name.split("/")[:-1]:  # the outermost layer: the one the spec names, not its inner StringLookup
        layer = layers.get(scope) or layers.get(re.sub(r"_\d+$", "", scope))
        if layer is not None:
            return f"{type(layer).__name__} '{layer.name}'"
    return "the run's text preprocessing"


def _layers(model) -> list:
    flatten = getattr(model, "_flatten_layers", None)
    return list(flatten(include_self=False, recursive=True)) if flatten else []
