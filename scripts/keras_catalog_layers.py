"""What the Keras catalog says of layers beyond their arguments, read from Keras's own code.

Used by scripts/make_keras_catalog.py: which arguments Keras builds a layer from (the
`from_config` it uses), which arguments give an adaptable layer its state, the keyword
arguments of a layer's `call`, and the family Keras files it under (the package of
`keras.layers` its class lives in: `preprocessing`, `regularization`, `convolutional`, ...).
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap


def layer_facts(cls, entry: dict) -> None:
    """Add to a layer's catalog entry: `layer` on arguments taking layers, `call`, `adapt`, `family`."""
    takes = _layer_arguments(cls)
    for argument in entry["args"]:
        if takes.get(argument["name"]):
            argument["layer"] = takes[argument["name"]]
    entry["call"] = call_arguments(cls.call)
    state = _state_arguments(cls, [a["name"] for a in entry["args"]])
    if state is not None:
        entry["adapt"] = state
    family = _family(cls)
    if family is not None:
        entry["family"] = family


def _family(cls) -> str | None:
    """The package of keras.layers a class lives in (keras.src.layers.<family>.<module>), or None."""
    parts = (cls.__module__ or "").split(".")
    return parts[3] if parts[:3] == ["keras", "src", "layers"] and len(parts) > 4 else None


def _layer_arguments(cls) -> dict:
    """Arguments Keras builds a layer from (`Bidirectional.layer`, `RNN.cell`, ...): name -> "one"/"list".

    Read from the `from_config` Keras itself uses (the first along the class's MRO): an
    argument whose config entry it hands to `deserialize_keras_object` takes a layer, and
    one whose entries it deserializes in a loop takes a list of layers. An argument whose
    `__init__` also accepts a list (`RNN(cell=[...])` stacks cells) is marked "one_or_list".
    """
    function = next((c.__dict__["from_config"] for c in cls.__mro__ if "from_config" in c.__dict__), None)
    function = getattr(function, "__func__", function)
    if function is None or not (getattr(function, "__module__", "") or "").startswith("keras"):
        return {}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return {}

    def key_of(node):  # config.pop("x") / config.get("x") / config["x"]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("pop", "get")
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "config"
                and node.args and isinstance(node.args[0], ast.Constant)):
            return node.args[0].value
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "config"
                and isinstance(node.slice, ast.Constant)):
            return node.slice.value
        return None

    names, loops = {}, {}  # variable -> config key; loop variable -> config key
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if key_of(node.value) is not None:
                names[node.targets[0].id] = key_of(node.value)
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.target, ast.Name):
            source = node.iter
            key = key_of(source) or (names.get(source.id) if isinstance(source, ast.Name) else None)
            if key is not None:
                loops[node.target.id] = key
    found = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "deserialize_keras_object"):
            continue
        argument = node.args[0]
        if key_of(argument) is not None:
            found[key_of(argument)] = "one"
        elif isinstance(argument, ast.Name) and argument.id in loops:
            found[loops[argument.id]] = "list"
        elif isinstance(argument, ast.Name) and argument.id in names:
            found[names[argument.id]] = "one"
    # Keras deserializes other objects the same way (Rescaling's scale, TextVectorization's
    # standardize callable): a layer argument is one named or documented as a layer or cell.
    doc = inspect.getdoc(cls) or ""
    for key in list(found):
        documented = re.search(rf"^\s*{re.escape(key)}:(.*?)(?=^\s*\**\w+:|\n\s*\n|\Z)", doc, re.M | re.S)
        said = f"{key} {documented.group(1) if documented else ''}"
        if not re.search(r"\b(layer|cell)s?\b|Layer`", said):
            del found[key]
        elif found[key] == "one" and _accepts_list(cls, key):
            found[key] = "one_or_list"
    return found


def _state_arguments(cls, arguments: list[str]) -> list[str] | None:
    """For a layer that learns state from data (it has `adapt`): the arguments that give that state.

    They are the constructor arguments its `finalize_state` (what `adapt` ends with) assigns
    as attributes (`Normalization.mean`, `Discretization.bin_boundaries`), and `vocabulary`
    for a layer whose state Keras sets with `set_vocabulary`. None for other layers.
    """
    if not callable(getattr(cls, "adapt", None)):
        return None
    assigned = set()
    for c in cls.__mro__:
        function = c.__dict__.get("finalize_state")
        if function is None or not (getattr(function, "__module__", "") or "").startswith("keras"):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        except (OSError, TypeError, SyntaxError):
            continue
        assigned |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                     and isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name) and node.value.id == "self"}
    if callable(getattr(cls, "set_vocabulary", None)):
        assigned.add("vocabulary")
    return [a for a in arguments if a in assigned]


def call_arguments(function) -> dict:
    """The keyword arguments a layer's `call` takes beyond its inputs: {args: [...], open: bool}."""
    try:
        parameters = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
    except (TypeError, ValueError):
        return {"args": [], "open": True}
    args = [p.name for p in parameters[1:] if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    return {"args": args, "open": any(p.kind is p.VAR_KEYWORD for p in parameters)}


def _accepts_list(cls, argument: str) -> bool:
    """Whether some `__init__` of the class checks `isinstance(argument, (list, tuple))`."""
    for c in cls.__mro__:
        function = c.__dict__.get("__init__")
        if function is None or not (getattr(function, "__module__", "") or "").startswith("keras"):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        except (OSError, TypeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2
                    and isinstance(node.args[0], ast.Name) and node.args[0].id == argument
                    and "list" in ast.unparse(node.args[1])):
                return True
    return False
