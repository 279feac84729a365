"""Which layers of a model learn their state from the train split before training (`adapt`).

A Keras layer with `adapt()` (Normalization, TextVectorization, StringLookup, IntegerLookup,
Discretization: the catalog records them, with the arguments that give their state) is
adapted by `pipe run` on the train split's values that reach it, unless the spec gives it
that state (`mean`/`variance`, `vocabulary`, `bin_boundaries`) or says `adapt: false`.
`adapt: {examples: N}` adapts it on the first N examples instead of the whole split.

This module reads the spec only (no TensorFlow): `runner.models.adapt` does the adapting.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.spec import catalog
from runner.spec.errors import SpecError

OPTION = "adapt"  # what pipe adds to an adaptable layer's own arguments


@dataclass(frozen=True)
class Site:
    """One layer the run adapts: where it is written and on how many examples (None: all)."""

    path: tuple  # the layer's identifier in the spec
    index: int  # its position in the sequential list / the functional layers
    class_name: str
    examples: int | None


def layer_sites(model: dict):
    """(path, index, identifier, functional item or None) of every top-level layer of a model."""
    if not isinstance(model, dict):
        return
    sequential, functional = model.get("sequential"), model.get("functional")
    if isinstance(sequential, dict) and isinstance(sequential.get("layers"), list):
        for i, layer in enumerate(sequential["layers"]):
            yield ("model", "sequential", "layers", i), i, layer, None
    if isinstance(functional, dict) and isinstance(functional.get("layers"), list):
        for i, item in enumerate(functional["layers"]):
            if isinstance(item, dict) and "layer" in item:
                yield ("model", "functional", "layers", i, "layer"), i, item["layer"], item


def parts(identifier) -> tuple[str | None, dict]:
    """(class name, arguments) of a layer identifier in any of its forms."""
    if isinstance(identifier, str):
        return identifier, {}
    if isinstance(identifier, dict) and "class_name" in identifier:
        config = identifier.get("config")
        return identifier["class_name"], config if isinstance(config, dict) else {}
    if isinstance(identifier, dict) and len(identifier) == 1:
        ((name, config),) = identifier.items()
        return name, config if isinstance(config, dict) else {}
    return None, {}


def state_arguments(class_name) -> list[str] | None:
    """The arguments that give an adaptable layer its state; None for a layer without adapt()."""
    entry = catalog.lookup("layers", class_name)
    return None if entry is None else entry.data.get("adapt")


def adapted_sites(model: dict) -> list[Site]:
    """The layers a run adapts, in the order they are written."""
    sites = []
    for path, index, identifier, _ in layer_sites(model):
        name, config = parts(identifier)
        state = state_arguments(name)
        option = config.get(OPTION, True)
        if state is None or option is False or any(config.get(a) is not None for a in state):
            continue
        examples = option.get("examples") if isinstance(option, dict) else None
        sites.append(Site(path, index, catalog.lookup("layers", name).name, examples))
    return sites


def adaptation_errors(spec) -> list[SpecError]:
    """`adapt:` written where it means nothing, or with a value that is not an option; an
    adapted layer after a trained one, or on an endless train split without a sample size."""
    errors = nested_errors(spec) + order_errors(spec) + endless_errors(spec)
    for path, _, identifier, _ in layer_sites(spec.get("model", default={})):
        name, config = parts(identifier)
        if OPTION not in config:
            continue
        option, where = config[OPTION], (*_config_path(identifier, path), OPTION)
        state = state_arguments(name)
        if state is None:  # an unknown argument of that layer (runner.spec.keras_names says so)
            continue
        given = [a for a in state if config.get(a) is not None]
        if given and option is not False:
            errors.append(spec.error(where, f"{name} is given its state ({', '.join(given)}): it is not adapted; "
                                            "remove adapt, or the state to learn it from the train split"))
        if isinstance(option, bool):
            continue
        examples = option.get("examples") if isinstance(option, dict) else None
        if not isinstance(option, dict) or set(option) - {"examples"}:
            errors.append(spec.error(where, "adapt is true, false or {examples: N}", at_value=not isinstance(option, dict)))
        elif examples is not None and (isinstance(examples, bool) or not isinstance(examples, int) or examples < 1):
            errors.append(spec.error((*where, "examples"), f"expected a number of examples >= 1, got {examples!r}",
                                     at_value=True))
    return errors


def order_errors(spec) -> list[SpecError]:
    """An adapted layer fed by a layer with weights training changes (Dense, Conv2D, ...):
    it would be adapted on the values of the untrained layer, which then change."""
    model = spec.get("model", default={})
    items = {i: (path, identifier, item) for path, i, identifier, item in layer_sites(model)}
    errors = []
    for site in adapted_sites(model):
        path, _, item = items[site.index]
        before = (range(site.index) if item is None else _upstream(model, item)) or ()
        trained = [_display_name(items[i]) for i in before if _trained(items[i][1])]
        if trained:
            named = _given_name(items[site.index])
            adapted = f"{named} ({site.class_name})" if named else site.class_name
            errors.append(spec.error(site.path, f"{adapted} is adapted on the values that reach it, and "
                                                f"{', '.join(trained)} before it {'has' if len(trained) == 1 else 'have'} "
                                                "weights that training changes: put adapted layers before trained "
                                                "ones, or give its state"))
    return errors


def endless_errors(spec) -> list[SpecError]:
    """An adapted layer without `examples` on a train split that repeats without end."""
    stages = spec.get("data", "train", "stages", default=[])
    endless = False
    for stage in stages if isinstance(stages, list) else []:
        if isinstance(stage, dict) and len(stage) == 1:
            ((name, args),) = stage.items()
            if name == "repeat":
                endless = endless or (args if isinstance(args, dict) else {}).get("count") in (None, -1)
            elif name == "take":
                endless = False
    if not endless:
        return []
    return [spec.error(site.path, f"{site.class_name} is adapted on the train split, which repeats without end: "
                                  "give a sample size (adapt: {examples: N})")
            for site in adapted_sites(spec.get("model", default={})) if site.examples is None]


def _upstream(model: dict, item: dict) -> list[int]:
    """The functional layers (by index) whose outputs flow into `item`."""
    layers = model["functional"]["layers"]
    index = {entry.get("name"): i for i, entry in enumerate(layers) if isinstance(entry, dict)}
    found, todo = set(), [item]
    while todo:
        for name in _names(todo.pop().get("inputs")):
            if name in index and index[name] not in found:
                found.add(index[name])
                todo.append(layers[index[name]])
    return sorted(found)


def _names(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _names(v)]
    if isinstance(value, list):
        return [n for v in value for n in _names(v)]
    return []


def _trained(identifier) -> bool:
    """Whether a layer has weights that training changes: an initializer of its own (kernel,
    embeddings, gamma, ...), or a wrapped layer that has one, unless it says trainable: false."""
    name, config = parts(identifier)
    entry = catalog.lookup("layers", name)
    if entry is None or config.get("trainable") is False:
        return False
    if any(a.endswith("_initializer") for a in entry.arguments):
        return True
    return any(_trained(config.get(a)) for a, arg in entry.arguments.items()
               if arg.get("layer") and isinstance(config.get(a), (str, dict)))


def _given_name(site: tuple) -> str | None:
    _, identifier, item = site
    return (item or {}).get("name") or parts(identifier)[1].get("name")


def _display_name(site: tuple) -> str:
    """A layer as the spec names it: its name, else its class and position."""
    return _given_name(site) or f"{parts(site[1])[0]} (layers[{site[0][3]}])"


def nested_errors(spec) -> list[SpecError]:
    """An adaptable layer inside another layer (TimeDistributed's, a cell) without its state.

    Only the layers of the model's own list are adapted: one nested deeper would silently
    stay as it was built (an identity Normalization, a TextVectorization without vocabulary).
    """
    errors = []
    for path, _, identifier, _ in layer_sites(spec.get("model", default={})):
        for inner, where, outer in _nested(identifier, path):
            name, config = parts(inner)
            state = state_arguments(name)
            if state and not any(config.get(a) is not None for a in state) and config.get(OPTION) is not False:
                errors.append(spec.error(where, f"{name} inside {outer} is not adapted (only the model's own layers "
                                                f"are): give its state ({', '.join(state)})"))
    return errors


def _nested(identifier, path: tuple):
    """(identifier, path, enclosing class) of every layer given as a layer argument, at any depth."""
    name, config = parts(identifier)
    entry = catalog.lookup("layers", name)
    if entry is None:
        return
    where = _config_path(identifier, path)
    for argument, value in config.items():
        if not entry.arguments.get(argument, {}).get("layer"):
            continue
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for i, item in items:
            at = (*where, argument) if i is None else (*where, argument, i)
            yield item, at, entry.name
            yield from _nested(item, at)


def adaptation_notes(spec) -> list[str]:
    """What `pipe validate` says about adaptation: one line per layer a run will adapt."""
    notes = []
    for site in adapted_sites(spec.get("model", default={})):
        size = "the whole train split" if site.examples is None else f"the first {site.examples} train examples"
        notes.append(str(spec.error(site.path, f"note: {site.class_name} will be adapted on {size} before training "
                                               "(give its state, or adapt: false, to keep it as written)")))
    return notes


def without_option(config: dict) -> dict:
    """A layer's arguments as Keras takes them: without pipe's `adapt` option."""
    return {k: v for k, v in config.items() if k != OPTION}


def _config_path(identifier, path: tuple) -> tuple:
    if isinstance(identifier, dict) and "class_name" in identifier:
        return (*path, "config")
    if isinstance(identifier, dict) and len(identifier) == 1:
        return (*path, next(iter(identifier)))
    return path
