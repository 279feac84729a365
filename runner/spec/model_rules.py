"""Rules of a model that the schema cannot say: names TensorFlow accepts as scopes.

(The functional graph's wiring — unknown, duplicate and unused nodes, cycles — is checked
by `runner.spec.graph`.)"""

from __future__ import annotations

import re

from runner.spec.errors import SpecError, format_path

# TensorFlow's name-scope pattern for a nested scope, without '/' (Keras refuses it in names).
_SCOPE_NAME = re.compile(r"^[A-Za-z0-9_.>-]+$")


def model_errors(spec) -> list[SpecError]:
    """Invalid names anywhere in the model."""
    return _name_errors(spec, spec.doc["model"], ("model",))


def _name_errors(spec, node, path: tuple) -> list[SpecError]:
    """Every `name:` of a model, a layer or a layer's config must be a valid scope name."""
    errors = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "name" and isinstance(value, str) and not _SCOPE_NAME.match(value):
                errors.append(spec.error((*path, key), _bad_name(value), at_value=True))
            elif key == "inputs" and path == ("model", "functional") and isinstance(value, dict):
                errors += [spec.error((*path, key, name), _bad_name(name)) for name in value
                           if not _SCOPE_NAME.match(str(name))]
            else:
                errors += _name_errors(spec, value, (*path, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            errors += _name_errors(spec, item, (*path, i))
    return errors


def _bad_name(name) -> str:
    return (f"{name!r} is not a valid layer name: TensorFlow scope names use only letters, digits, "
            "'_', '.', '-' and '>'")


# Formats whose converters cannot hold a TextVectorization's string ops (regex standardize,
# whitespace split): `runner.export.string_ops` finds them in the graph of any model; this
# rule sees the layers a spec writes out, before training.
_TEXT_HOLDLESS = {"tflite": "LiteRT's builtin ops", "onnx": "ONNX Runtime's standard ops"}


def text_export_errors(spec) -> list[SpecError]:
    """`outputs.export` listing tflite or onnx for a model the spec gives a TextVectorization."""
    exports = (spec.doc.get("outputs") or {}).get("export")
    if not isinstance(exports, list):
        return []
    found = _text_vectorization(spec.doc.get("model"), ("model",))
    if found is None:
        return []
    path, name = found
    return [spec.error(("outputs", "export", i), f"{fmt} cannot hold TextVectorization {name!r} ({format_path(path)}): its "
                       f"string ops (regex, split) are not among {_TEXT_HOLDLESS[fmt]}; export saved_model instead",
                       at_value=True)
            for i, fmt in enumerate(exports) if fmt in _TEXT_HOLDLESS]


def _text_vectorization(node, path: tuple, outer_name=None):
    """(path, layer name) of the first TextVectorization layer under `node`, or None.

    `outer_name`: a functional layer's `name`, beside the `layer:` that holds the config."""
    if isinstance(node, dict):
        if "TextVectorization" in node or node.get("layer") == "TextVectorization":
            config = node.get("TextVectorization")
            named = config.get("name") if isinstance(config, dict) else None
            return path, named or node.get("name") or outer_name or "text_vectorization"
        if isinstance(node.get("layer"), dict):
            found = _text_vectorization(node["layer"], (*path, "layer"), node.get("name"))
            if found is not None:
                return found
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return None
    for key, value in items:
        found = _text_vectorization(value, (*path, key))
        if found is not None:
            return found
    return None
