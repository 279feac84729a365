"""Rules of a model that the schema cannot say: names TensorFlow accepts as scopes.

(The functional graph's wiring — unknown, duplicate and unused nodes, cycles — is checked
by `runner.spec.graph`.)"""

from __future__ import annotations

import re

from runner.spec.errors import SpecError

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

