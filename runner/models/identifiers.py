"""Keras identifiers from a spec: the short form mapped onto Keras's own grammar.

A spec names Keras objects as a string (`"adam"`), Keras's dict
(`{class_name: Adam, config: {...}}`) or the short form `{Adam: {...}}`. This module maps
the short form onto Keras's dict and lets Keras resolve every name; it only adds what
Keras lacks: the spec location and a did-you-mean for names Keras does not know.
"""

from __future__ import annotations

import re

import keras

from runner.internals import compile_loss, compile_metric, keras_alias_table
from runner.spec import catalog
from runner.spec.errors import did_you_mean
from runner.spec.paths import PATH_ARGUMENT
from runner.spec.safety import REFUSED



def to_keras_config(identifier):
    """Map the short form `{Name: {...}}` onto `{class_name: Name, config: {...}}`.

    Strings and Keras dicts pass through; nested identifiers inside a config (initializers,
    regularizers, schedules, ...) are mapped the same way so Keras can resolve them.
    """
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            return {**identifier, "config": _map_nested(identifier.get("config") or {})}
        if len(identifier) == 1:
            ((name, config),) = identifier.items()
            return {"class_name": name, "config": _map_nested(config or {})}
    return identifier


def identifier_name(identifier) -> str:
    """The class or function name an identifier refers to."""
    config = to_keras_config(identifier)
    if isinstance(config, dict):
        return str(config.get("class_name"))
    return str(config)


def config_path(identifier, path: tuple) -> tuple:
    """The spec path of an identifier's arguments (where an argument error points)."""
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            return (*path, "config") if "config" in identifier else path
        if len(identifier) == 1:
            return (*path, next(iter(identifier)))
    return path


def public_names(module) -> list[str]:
    """Names a Keras namespace exports (classes and functions), without its own API."""
    own = {getattr(module, n, None) for n in ("get", "serialize", "deserialize")}
    return [
        name
        for name in dir(module)
        if not name.startswith("_")
        and callable(getattr(module, name))
        and getattr(module, name) not in own
    ]


def keras_message(error: BaseException) -> str:
    """The useful part of a Keras/TensorFlow error, on one line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # Keras's bold/colour escapes: not for a log
    # Keras wraps the real cause of a failed from_config in a long generic message.
    while "Exception encountered: " in text:
        text = text.split("Exception encountered: ", 1)[1]
    # A layer's call failing: Keras frames the cause with the call's name and arguments.
    text = re.sub(r"^\s*Exception encountered when calling [\w.]+\(\)\.\s*", "", text)
    text = re.split(r"\s*Arguments received by |\s*\[Op:\w+\]", text)[0]
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)  # TensorFlow's node, not the cause
    text = re.sub(r"\s+", " ", text).strip()
    return text or type(error).__name__


def get_layer(identifier, spec, path: tuple):
    """A Keras layer (or keras.applications backbone) from a layer identifier.

    Layers are built through their constructor, so arguments left out take the
    constructor's defaults (Keras's `from_config` needs every key for some layers, such as
    `Rescaling` without `offset`); Keras's own deserialization is the fallback.
    """
    config = to_keras_config(identifier)
    if isinstance(config, str):
        config = {"class_name": config, "config": {}}
    name = config.get("class_name")
    if name in REFUSED:
        raise spec.error(path, REFUSED[name])
    if _is_application(name):
        return _application(name, dict(config.get("config") or {}), spec, config_path(identifier, path))
    if not _is_class(keras.layers, name, keras.layers.Layer):
        candidates = [
            n for n in public_names(keras.layers) if _is_class(keras.layers, n, keras.layers.Layer)
        ] + application_names()
        raise spec.error(path, f"unknown layer {name!r}", did_you_mean(name, candidates))
    arguments = dict(config.get("config") or {})
    if callable(getattr(getattr(keras.layers, name), "adapt", None)):
        arguments.pop("adapt", None)  # pipe's option: runner.models.adapt adapts it
    arguments.update(_nested_layers(name, identifier, spec, path))
    try:
        return getattr(keras.layers, name)(**arguments)
    except Exception as e:
        try:  # Keras's own namespace, whatever the spec says; safe_mode stays on (its default)
            own = {k: v for k, v in config.items() if k not in ("module", "registered_name")}
            return keras.layers.deserialize({**own, "module": "keras.layers"})
        except Exception:
            raise spec.error(config_path(identifier, path), keras_message(e)) from e


def _nested_layers(name: str, identifier, spec, path: tuple) -> dict:
    """The arguments of layer `name` that Keras takes as layers, built from their layer specs.

    Which arguments take a layer (Bidirectional's `layer` and `backward_layer`, RNN's `cell`,
    StackedRNNCells' `cells`, ...) is read from the catalog, generated from Keras's own
    `from_config`; each is built by `get_layer`, at any depth, located at its spec path.
    """
    entry = catalog.lookup("layers", name)
    if entry is None or isinstance(identifier, str):
        return {}
    if "class_name" in identifier:
        written = identifier.get("config") or {}
    else:
        written = next(iter(identifier.values())) or {}
    where = config_path(identifier, path)
    built = {}
    for argument, value in written.items():
        takes = entry.arguments.get(argument, {}).get("layer")
        if takes is None or value is None or isinstance(value, keras.layers.Layer):
            continue
        if isinstance(value, list) and takes in ("list", "one_or_list"):
            built[argument] = [get_layer(v, spec, (*where, argument, i)) for i, v in enumerate(value)]
        elif isinstance(value, (str, dict)):
            built[argument] = get_layer(value, spec, (*where, argument))
    return built


def _application(name, arguments, spec, path):
    """A keras.applications backbone; errors located at its arguments."""
    from runner.models import applications

    try:
        return applications.build_application(name, arguments, spec.resolve_path)
    except applications.WeightsFileNotFound as e:
        raise spec.error((*path, "weights"), str(e), at_value=True) from e
    except Exception as e:
        hint = applications.WEIGHTS_HINT if arguments.get("weights", "imagenet") == "imagenet" else None
        raise spec.error(path, f"{name}: {keras_message(e)}", hint) from e


def application_names() -> list[str]:
    """The model functions keras.applications exports (MobileNetV3Small, ResNet50, ...)."""
    return [n for n in dir(keras.applications) if _is_application(n)]


def _is_application(name) -> bool:
    obj = getattr(keras.applications, str(name), None) if isinstance(name, str) and name[:1].isupper() else None
    return callable(obj) and not isinstance(obj, type)


def get_loss(identifier, spec, path: tuple = ("train", "loss")):
    """A Keras loss (function or `keras.losses.Loss`) through `keras.losses.get`."""
    return _get(keras.losses, "loss", identifier, spec, path)


def get_optimizer(identifier, spec, path: tuple = ("train", "optimizer")):
    """A Keras optimizer through `keras.optimizers.get`; learning_rate may be a schedule."""
    config = to_keras_config(identifier)
    if isinstance(config, dict):
        inner = dict(config.get("config") or {})
        rate = inner.get("learning_rate")
        if isinstance(rate, dict):
            # Optimizers deserialize a schedule dict only when it names its module.
            rate_path = (*config_path(identifier, path), "learning_rate")
            inner["learning_rate"] = get_schedule(rate, spec, rate_path)
        config = {**config, "config": inner}
    return _get(keras.optimizers, "optimizer", config, spec, path, original=identifier)


def get_schedule(identifier, spec, path: tuple):
    """A learning-rate schedule through `keras.optimizers.schedules.deserialize`."""
    config = to_keras_config(identifier)
    module = keras.optimizers.schedules
    name = identifier_name(config)
    if not _is_class(module, name, module.LearningRateSchedule):
        raise spec.error(
            path, f"unknown learning-rate schedule {name!r}", did_you_mean(name, public_names(module))
        )
    try:
        return module.deserialize(config)
    except Exception as e:
        raise spec.error(config_path(identifier, path), keras_message(e)) from e


def get_metrics(identifiers, spec, path: tuple = ("train", "metrics")) -> list:
    """Metric identifiers checked through `keras.metrics.get`, ready for `compile`.

    Strings stay strings so Keras's compile (and `resolve_metric`) can pick the right
    accuracy for the labels, as it does for `metrics=["accuracy"]`.
    """
    resolved = []
    for i, identifier in enumerate(identifiers or []):
        name = identifier_name(identifier)
        if isinstance(identifier, str) and name.lower() in ("accuracy", "acc"):
            resolved.append(identifier)
            continue
        metric = _get(keras.metrics, "metric", identifier, spec, (*path, i))
        resolved.append(identifier if isinstance(identifier, str) else metric)
    return resolved


def resolve_metric(metric, y_true, y_pred):
    """A metric object for labels/predictions like y_true/y_pred, as `Model.compile` makes it."""
    return compile_metric(metric, y_true, y_pred)


def resolve_loss(loss, y_true, y_pred):
    """A `keras.losses.Loss` for labels/predictions like y_true/y_pred, as `compile` makes it."""
    return compile_loss(loss, y_true, y_pred)


def get_callbacks(identifiers, spec, run_dir, path: tuple = ("train", "callbacks")) -> list:
    """Keras callbacks, classes of `keras.callbacks`; their paths go inside run_dir.

    Callbacks have no Keras deserializer, so the class is looked up in the
    `keras.callbacks` namespace and constructed with the spec's arguments. Every argument
    whose name says path, dir or file is handed out by `run_dir.spec_path` (a
    `runner.outputs.run_dir.RunDir`), which refuses a path that leaves the run directory.
    """
    callbacks = []
    base = keras.callbacks.Callback
    for i, identifier in enumerate(identifiers or []):
        item = (*path, i)
        config = to_keras_config(identifier)
        name = identifier_name(config)
        arguments = dict(config.get("config") or {}) if isinstance(config, dict) else {}
        if not _is_class(keras.callbacks, name, base):
            candidates = [n for n in public_names(keras.callbacks) if _is_class(keras.callbacks, n, base)]
            raise spec.error(item, f"unknown callback {name!r}", did_you_mean(name, candidates))
        if name in REFUSED:
            raise spec.error(item, REFUSED[name])
        for key, value in arguments.items():
            if isinstance(key, str) and PATH_ARGUMENT.search(key):
                try:
                    arguments[key] = str(run_dir.spec_path(value))
                except (ValueError, TypeError) as e:
                    raise spec.error((*config_path(identifier, item), key), str(e), at_value=True) from None
        try:
            callbacks.append(_confine_formatted_paths(getattr(keras.callbacks, name)(**arguments), run_dir))
        except Exception as e:
            raise spec.error(config_path(identifier, item), keras_message(e)) from e
    return callbacks


def _confine_formatted_paths(callback, run_dir):
    """`callback` with the paths Keras formats at every save (ModelCheckpoint's `{epoch}`,
    `{val_loss:.4f}` ...) checked by the run directory's owner at each write, after
    formatting: a formatted path that leaves the run directory fails the run, unwritten."""
    format_path = getattr(callback, "_get_file_path", None)
    if callable(format_path) and hasattr(run_dir, "formatted_path"):
        def confined(*args, **kwargs):
            return str(run_dir.formatted_path(format_path(*args, **kwargs)))

        callback._get_file_path = confined
    return callback


def _get(module, kind: str, identifier, spec, path: tuple, original=None):
    """`module.get(config)` with unknown names and Keras errors located in the spec."""
    original = identifier if original is None else original
    config = to_keras_config(identifier)
    name = identifier_name(config)
    try:
        obj = module.get(config)
    except Exception as e:
        if name not in public_names(module) and name.lower() not in _lower_names(module):
            raise spec.error(
                path, f"unknown {kind} {name!r}", did_you_mean(name, _known_names(module))
            ) from e
        raise spec.error(config_path(original, path), keras_message(e)) from e
    if obj is None or isinstance(obj, str):
        raise spec.error(path, f"unknown {kind} {name!r}", did_you_mean(name, _known_names(module)))
    return obj


def _known_names(module) -> list[str]:
    """Every name Keras resolves for a kind: exported names and Keras's own aliases."""
    names = public_names(module)
    # Keras's deserialization table also holds aliases ("mse") and lower-case spellings
    # ("adam"); it is private, so the exported names stand alone when it is missing.
    table = keras_alias_table(module)
    extra = [n for n in table if isinstance(n, str) and n not in names and _accepts(module, n)]
    return names + extra


def _lower_names(module) -> set[str]:
    return {n.lower() for n in public_names(module)}


def _accepts(module, name: str) -> bool:
    try:
        return module.get(name) is not None
    except Exception:
        return False


def _is_class(module, name, base) -> bool:
    obj = getattr(module, str(name), None) if isinstance(name, str) else None
    return isinstance(obj, type) and issubclass(obj, base)


def _map_nested(value):
    if isinstance(value, dict):
        if "class_name" in value or _is_short_form(value):
            return to_keras_config(value)
        return {key: _map_nested(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_map_nested(item) for item in value]
    return value


def _is_short_form(value: dict) -> bool:
    if len(value) != 1:
        return False
    ((key, inner),) = value.items()
    return isinstance(key, str) and key[:1].isupper() and (inner is None or isinstance(inner, dict))
