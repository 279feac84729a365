"""Every Keras name and argument a spec writes, checked against the static catalog.

Mirrors the identifier grammar of `runner.models.identifiers` (which resolves them with
Keras at run time) without importing it: a name (`"adam"`), Keras's
`{class_name: Adam, config: {...}}`, or the short form `{Adam: {...}}`. Nested identifiers
(initializers, regularizers, constraints, activations, a layer wrapped by another, a
learning-rate schedule) are found by the argument that holds them and checked the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from runner.spec import catalog
from runner.spec.argument_shapes import shape_problems
from runner.spec.argument_values import value_problem
from runner.spec.catalog import KIND_WORDS
from runner.spec.errors import SpecError, did_you_mean

# `Model.compile` resolves these metric strings itself, by the labels' shape (as
# `runner.models.identifiers.get_metrics` lets it); `keras.metrics.get` does not know "acc".
COMPILE_METRICS = ("accuracy", "acc")

# The families of keras.layers (the catalog's `family`) whose layers an `augment` map op runs:
# preprocessing layers (RandomFlip, Rescaling, ...) and the noise of regularization layers
# (GaussianNoise, Dropout, ...). A layer with weights cannot make them inside tf.data.
AUGMENT_FAMILIES = ("preprocessing", "regularization")

# What pipe adds to a backbone's own arguments (runner.models.applications): freezing.
APPLICATION_OPTIONS = ("trainable", "trainable_layers")

_TYPE_WORDS = {"bool": "true or false", "int": "a number", "float": "a number", "str": "a string"}


@dataclass(frozen=True)
class Identifier:
    """A parsed identifier: the name, its arguments and where each is in the spec."""

    name: str
    config: dict
    path: tuple  # where the name is written
    config_path: tuple  # where its arguments are written


def parse_identifier(value, path: tuple) -> Identifier | str:
    """The Identifier written at `path`, or a message saying why it is not one."""
    if isinstance(value, str):
        return Identifier(value, {}, path, path)
    if isinstance(value, dict) and "class_name" in value:
        config = value.get("config") or {}
        if not isinstance(config, dict):
            return "'config' must be a mapping of arguments"
        return Identifier(value["class_name"], config, path + ("class_name",), path + ("config",))
    if isinstance(value, dict) and len(value) == 1:
        ((name, config),) = value.items()
        if config is not None and not isinstance(config, dict):
            return f"the arguments of {name} must be a mapping, e.g. {{{name}: {{...}}}}"
        return Identifier(name, config or {}, path + (name,), path + (name,))
    return "expected a name, {Name: {arguments}} or {class_name: Name, config: {...}}"


def keras_name_errors(spec) -> list[SpecError]:
    """Unknown names, unknown or missing arguments and wrong simple types, everywhere."""
    errors: list[SpecError] = []
    for kind, value, path in _identifier_sites(spec):
        if kind == "calls":
            errors += call_errors(spec, value, path)
        elif kind == "augment":
            errors += check_identifier(spec, "layers", value, path) or augment_layer_errors(spec, value, path)
        else:
            errors += check_identifier(spec, kind, value, path)
    return errors


def augment_layer_errors(spec, value, path: tuple) -> list[SpecError]:
    """An `augment` op's layer is one Keras runs on data: a preprocessing or noise layer."""
    parsed = parse_identifier(value, path)
    entry = catalog.lookup("layers", parsed.name) if not isinstance(parsed, str) else None
    if entry is None or entry.data.get("family") in AUGMENT_FAMILIES:
        return []
    return [spec.error(parsed.path, f"{entry.name} is not an augmentation layer: augment runs Keras's preprocessing "
                                    "layers (RandomFlip, RandomRotation, Rescaling, ...) and noise layers "
                                    "(GaussianNoise, GaussianDropout, ...) on the data",
                       f"{entry.name} belongs in the model's layers",
                       at_value=isinstance(value, str))]


def call_errors(spec, item: dict, path: tuple) -> list[SpecError]:
    """A functional node's call arguments, checked against its layer's `call` signature.

    `training` is accepted by every layer (Keras passes it on to the layers inside).
    """
    parsed = parse_identifier(item["layer"], (*path, "layer"))
    if isinstance(parsed, str):
        return []
    entry = catalog.lookup("layers", parsed.name) or catalog.lookup("applications", parsed.name)
    call = entry.data.get("call") if entry is not None else None
    if call is None or call.get("open"):
        return []
    accepted = list(dict.fromkeys([*call["args"], "training"]))
    errors = []
    for argument in item["call"]:
        if argument not in accepted:
            takes = ", ".join(accepted)
            errors.append(spec.error((*path, "call", argument),
                                     f"unknown call argument {argument!r} of {entry.name} (its call takes {takes})",
                                     did_you_mean(str(argument), accepted)))
    return errors


def _identifier_sites(spec):
    """(kind, value, path) of every top-level Keras identifier in the spec."""
    model = spec.get("model", default={})
    if isinstance(model, dict):
        layers = (model.get("sequential") or {}).get("layers") if isinstance(model.get("sequential"), dict) else None
        for i, layer in enumerate(layers if isinstance(layers, list) else []):
            yield "layers", layer, ("model", "sequential", "layers", i)
        functional = model.get("functional")
        items = functional.get("layers") if isinstance(functional, dict) else None
        for i, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict) and "layer" in item:
                yield "layers", item["layer"], ("model", "functional", "layers", i, "layer")
                if isinstance(item.get("call"), dict):
                    yield "calls", item, ("model", "functional", "layers", i)
    yield from _augment_sites(spec)
    train = spec.get("train", default={})
    if not isinstance(train, dict):
        return
    if "loss" in train:
        loss = train["loss"]
        outputs = output_names(spec)
        if is_loss_per_output(loss, outputs):
            for name, value in loss.items():  # one loss per output; other keys: training_rules
                if name in outputs:
                    yield "losses", value, ("train", "loss", name)
        else:
            yield "losses", loss, ("train", "loss")
    if "optimizer" in train:
        yield "optimizers", train["optimizer"], ("train", "optimizer")
    for i, phase in enumerate(train.get("phases") if isinstance(train.get("phases"), list) else []):
        if isinstance(phase, dict) and "optimizer" in phase:
            yield "optimizers", phase["optimizer"], ("train", "phases", i, "optimizer")
        if isinstance(phase, dict) and isinstance(phase.get("learning_rate"), (dict, str)):  # a schedule
            yield "schedules", phase["learning_rate"], ("train", "phases", i, "learning_rate")
    for key, kind in (("metrics", "metrics"), ("callbacks", "callbacks")):
        for i, value in enumerate(train.get(key) if isinstance(train.get(key), list) else []):
            yield kind, value, ("train", key, i)


def _augment_sites(spec):
    """("augment", layer, path) of every layer of a split's `augment` map ops."""
    for split in ("train", "validation", "test"):
        stages = spec.get("data", split, "stages", default=[])
        for i, stage in enumerate(stages if isinstance(stages, list) else []):
            ops = stage["map"].get("ops") if isinstance(stage, dict) and isinstance(stage.get("map"), dict) else None
            for j, op in enumerate(ops if isinstance(ops, list) else []):
                augment = op.get("augment") if isinstance(op, dict) else None
                layers = augment.get("layers") if isinstance(augment, dict) else None
                for k, layer in enumerate(layers if isinstance(layers, list) else []):
                    yield "augment", layer, ("data", split, "stages", i, "map", "ops", j, "augment", "layers", k)


def is_loss_per_output(loss, outputs) -> bool:
    """Whether a loss mapping is keyed by output names rather than one Keras identifier."""
    if not isinstance(loss, dict) or "class_name" in loss or len(outputs) < 2:
        return False
    return len(loss) > 1 or next(iter(loss)) in outputs


def output_names(spec) -> list[str]:
    """The functional model's output names (empty for other models)."""
    functional = spec.get("model", "functional")
    outputs = functional.get("outputs") if isinstance(functional, dict) else None
    if isinstance(outputs, str):
        return [outputs]
    return [o for o in outputs if isinstance(o, str)] if isinstance(outputs, list) else []


def check_identifier(spec, kind: str, value, path: tuple) -> list[SpecError]:
    """The mistakes of one identifier of `kind` and of the identifiers nested in it."""
    word = KIND_WORDS[kind]
    if _is_reference(value):
        return []
    if isinstance(value, dict) and len(value) > 1 and set(value) != {"class_name", "config"}:
        return [_two_names_error(spec, word, value, path)]
    parsed = parse_identifier(value, path)
    if isinstance(parsed, str):
        return [spec.error(path, f"{word}: {parsed}")]
    if kind == "metrics" and isinstance(value, str) and value.lower() in COMPILE_METRICS:
        return []
    entry = catalog.lookup(kind, parsed.name)
    if entry is None and kind == "layers":  # a keras.applications backbone goes where a layer goes
        entry = catalog.lookup("applications", parsed.name)
        if entry is not None:
            config = {k: v for k, v in parsed.config.items() if k not in APPLICATION_OPTIONS}
            return _argument_errors(spec, entry, dataclasses.replace(parsed, config=config))
    if entry is None:
        candidates = catalog.names(kind) + (catalog.names("applications") if kind == "layers" else [])
        hint = did_you_mean(parsed.name, candidates)
        # Located where `pipe run` locates it (runner.models.identifiers): the identifier.
        return [spec.error(path, f"unknown {word} {parsed.name!r}", hint, at_value=isinstance(value, str))]
    if kind == "layers" and "adapt" in entry.data and "adapt" in parsed.config:  # pipe's option (adaptation.py)
        parsed = dataclasses.replace(parsed, config={k: v for k, v in parsed.config.items() if k != "adapt"})
    if entry.data.get("abstract"):
        return [_abstract_error(spec, kind, entry, parsed, at_value=isinstance(value, str))]
    return _argument_errors(spec, entry, parsed)


def _abstract_error(spec, kind: str, entry, parsed: Identifier, at_value: bool) -> SpecError:
    """A base class Keras leaves abstract (the catalog's `abstract`): it would fail at run time."""
    word = KIND_WORDS[kind]
    plural = word + ("es" if word.endswith("s") else "s")
    concrete = catalog.names(kind)
    # Not did-you-mean: the nearest names to a base are other special classes (MultiOptimizer).
    hint = "name one of its subclasses, e.g. " + ", ".join(concrete[:3])
    article = "an" if word[0] in "aeiou" else "a"
    return spec.error(parsed.path, f"{entry.name!r} is the base class of Keras {plural}, not {article} {word}", hint,
                      at_value=at_value)


def _two_names_error(spec, word: str, value: dict, path: tuple) -> SpecError:
    """A mapping of several names, or a short form mixed with `class_name` (often a file over
    a base that wrote the other form): both keys, where each came from, how to drop one."""
    def where(key):
        origin = spec.origin((*path, key))
        return f" ({origin[0]}:{origin[1]})" if origin else " (--set)" if spec.origin(path) is None else ""
    keys = [k for k in value if k != "config"] if "class_name" in value else list(value)
    names = " and ".join(f"'{k}'{where(k)}" for k in keys[:2]) + (f" and {len(keys) - 2} more" if len(keys) > 2 else "")
    return spec.error(path, f"{word}: one identifier names one class, but this mapping has {names}; write "
                            f"{{Name: {{arguments}}}} or {{class_name: Name, config: {{...}}}}",
                      f"keep one; a later file removes a base's with '{keys[0]}: null'")


def _argument_errors(spec, entry, parsed: Identifier) -> list[SpecError]:
    errors, hints = [], set()
    accepted = entry.arguments
    for argument, argument_value in parsed.config.items():
        where = parsed.config_path + (argument,)
        known = accepted.get(argument)
        if known is None:
            ignored = " (Keras would ignore it)" if entry.data.get("open") else ""
            hint = did_you_mean(argument, list(accepted))
            hints.add(hint)
            errors.append(spec.error(where, f"unknown argument {argument!r} of {entry.name}{ignored}", hint))
            continue
        errors += _value_errors(spec, entry, known, argument_value, where)
    if not errors:  # counts only of values that are each right
        errors += [spec.error(parsed.config_path + (argument,), f"{entry.name}.{argument}: {problem}", at_value=True)
                   for argument, problem in shape_problems(entry.name, parsed.config)]
    if not entry.is_function:
        # A required argument written with a typo is reported once, as unknown.
        missing = [a for a in entry.required if parsed.config.get(a) is None and f"did you mean '{a}'?" not in hints]
        for argument in missing:
            errors.append(_missing_argument(spec, entry, parsed, argument))
    return errors


def _missing_argument(spec, entry, parsed: Identifier, argument: str) -> SpecError:
    """At the identifier, or at the `null` that gave or removed the argument (a file's or a `--set`'s)."""
    message = f"{entry.name} needs the argument {argument!r}"
    where = (*parsed.config_path, argument)
    if argument in parsed.config:
        return spec.error(where, message, "null gives it no value")
    if where in getattr(spec, "overrides", {}) or where in getattr(spec, "key_marks", {}):
        error = spec.error(where, message, "a null removed it")
        error.path = parsed.path
        return error
    return spec.error(parsed.path, message)


def _value_errors(spec, entry, argument: dict, value, where: tuple) -> list[SpecError]:
    """A nested identifier checked as its kind, or a simple type checked against the default's."""
    if value is None or _is_reference(value):
        return []
    if argument["name"] == "bias_initializer" and value == "prior":
        return []  # the train split's class frequencies (runner.spec.metadata); prior_errors says where
    takes = argument.get("layer")  # an argument Keras builds a layer from (the catalog says)
    if takes is not None:
        if isinstance(value, list) and takes in ("list", "one_or_list"):
            return [e for i, item in enumerate(value) for e in check_identifier(spec, "layers", item, (*where, i))]
        if isinstance(value, list) or (takes == "list" and not isinstance(value, list)):
            expected = "a list of layers" if takes == "list" else "one layer"
            return [spec.error(where, f"{entry.name}.{argument['name']}: expected {expected}", at_value=True)]
        return check_identifier(spec, "layers", value, where)
    nested = nested_kind(entry.kind, argument["name"])
    if nested == "schedules" and not isinstance(value, (int, float)):
        return check_identifier(spec, "schedules", value, where)
    if nested is not None and nested != "schedules":
        if isinstance(value, (str, dict)):
            return check_identifier(spec, nested, value, where)
        return []
    expected = argument.get("type")
    if isinstance(value, bool) and argument.get("required") and expected != "bool":
        # YAML's true is Python's 1 to Keras: Dense(units=true) would train one unit
        return [spec.error(where, f"{entry.name}.{argument['name']}: expected a value, got {str(value).lower()} "
                                  "(true and false are no sizes, rates or names)", at_value=True)]
    if expected == "bool" and not isinstance(value, bool):
        return [spec.error(where, f"{entry.name}.{argument['name']}: expected true or false, got {value!r}", at_value=True)]
    if expected in ("int", "float") and (isinstance(value, (str, bool))):
        return [spec.error(where, f"{entry.name}.{argument['name']}: expected a number, got {value!r}", at_value=True)]
    problem = value_problem(entry.kind, argument["name"], value, entry.name)
    if problem is not None:
        return [spec.error(where, f"{entry.name}.{argument['name']}: {problem}", at_value=True)]
    return []


def nested_kind(kind: str, argument: str) -> str | None:
    """Which kind of identifier an argument takes, by Keras's naming of its arguments."""
    if argument == "activation" or argument.endswith("_activation"):
        return "activations"
    for suffix, nested in (("_initializer", "initializers"), ("_regularizer", "regularizers"),
                           ("_constraint", "constraints")):
        if argument.endswith(suffix):
            return nested
    if kind == "layers" and argument in ("layer", "backward_layer"):
        return "layers"  # Bidirectional, TimeDistributed: a layer inside a layer
    if kind == "optimizers" and argument == "learning_rate":
        return "schedules"
    return None


def _is_reference(value) -> bool:
    return isinstance(value, str) and value.startswith("${")
