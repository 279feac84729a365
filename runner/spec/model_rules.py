"""Rules of a model's graph that the schema cannot say: names TensorFlow accepts as scopes,
references to known nodes, and declared inputs that reach an output."""

from __future__ import annotations

import re

from runner.spec.errors import SpecError

# TensorFlow's name-scope pattern for a nested scope, without '/' (Keras refuses it in names).
_SCOPE_NAME = re.compile(r"^[A-Za-z0-9_.>-]+$")


def model_errors(spec) -> list[SpecError]:
    """Invalid names anywhere in the model, and a functional graph's wiring mistakes."""
    model = spec.doc["model"]
    errors = _name_errors(spec, model, ("model",))
    if "functional" in model:
        errors += _graph_errors(spec, model["functional"], ("model", "functional"))
    return errors


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


def _graph_errors(spec, graph: dict, path: tuple) -> list[SpecError]:
    """Unknown or duplicate node names, and inputs that feed no output."""
    errors, feeds = [], {name: set() for name in graph["inputs"]}
    for i, item in enumerate(graph["layers"]):
        sources = [item["inputs"]] if isinstance(item["inputs"], str) else item["inputs"]
        for j, source in enumerate(sources):
            if source not in feeds:
                where = (*path, "layers", i, "inputs") + (() if isinstance(item["inputs"], str) else (j,))
                known = ", ".join(repr(n) for n in feeds)
                errors.append(spec.error(where, f"unknown input {source!r} (known so far: {known})", at_value=True))
        if item["name"] in feeds:
            errors.append(spec.error((*path, "layers", i, "name"), f"the name {item['name']!r} is already used",
                                     at_value=True))
        feeds[item["name"]] = {s for s in sources if s in feeds}
    outputs = [graph["outputs"]] if isinstance(graph["outputs"], str) else graph["outputs"]
    reached, todo = set(), [o for o in outputs if o in feeds]
    for j, name in enumerate(outputs):
        if name not in feeds:
            where = (*path, "outputs") + (() if isinstance(graph["outputs"], str) else (j,))
            errors.append(spec.error(where, f"unknown output {name!r}", at_value=True))
    if errors:  # with a name unknown, what reaches the outputs is unclear: report that first
        return errors
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo += feeds[name]
    for name in graph["inputs"]:
        if name not in reached:
            errors.append(spec.error((*path, "inputs", name), f"input {name!r} feeds no output: connect it "
                                     "through the layers or remove it"))
    return errors
