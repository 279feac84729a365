"""Models from `model:`: Keras Sequential and functional graphs, or tf.Module models."""

from __future__ import annotations

import keras

from runner.models.identifiers import get_layer, keras_message
from runner.models.modules import build_module
from runner.models.warm_start import init_from


def build_model(model_config: dict, spec, seed: int = 0):
    """A Keras model or tf.Module from the (metadata-substituted) `model:` mapping.

    Args:
        model_config: `spec.doc["model"]` with `${data...}` already substituted.
        spec: the Spec, to locate errors.
        seed: seeds tf.Module initializers.

    Raises:
        SpecError: unknown layer, bad argument, or a graph Keras cannot build.
    """
    ((kind, config),) = [(k, v) for k, v in model_config.items() if k != "init_from"]
    path = ("model", kind)
    if kind == "sequential":
        model = build_sequential(config, spec, path)
    elif kind == "functional":
        model = build_functional(config, spec, path)
    elif kind == "module":
        model = build_module(config, spec, path, seed=seed)
    else:
        raise spec.error(("model",), f"unknown model kind {kind!r}")
    if model_config.get("init_from"):
        init_from(model, model_config, spec)  # the weights of a completed run, by layer name
    return model


def build_sequential(config: dict, spec, path: tuple) -> keras.Model:
    """`keras.Sequential` of the listed layers, built on `input_shape` when given."""
    model = keras.Sequential(name=config.get("name", "sequential"))
    input_shape = config.get("input_shape")
    if input_shape is not None:
        model.add(keras.Input(shape=tuple(input_shape)))
    for i, identifier in enumerate(config.get("layers", [])):
        where = (*path, "layers", i)
        layer = get_layer(identifier, spec, where)
        try:
            model.add(layer)
        except Exception as e:
            raise spec.error(where, keras_message(e)) from e
    return model


def build_functional(config: dict, spec, path: tuple) -> keras.Model:
    """A Keras functional model: named inputs, layers wired by name, named outputs.

    Several inputs make a model fed by a dict of features keyed by input name (what a
    TFRecord source with several features yields); several outputs a list.
    """
    tensors = {}
    inputs = []
    for name, declared in config["inputs"].items():
        declared = declared or {}
        try:
            tensor = keras.Input(
                shape=tuple(declared.get("shape", ())),
                dtype=declared.get("dtype", "float32"),
                name=name,
            )
        except Exception as e:
            raise spec.error((*path, "inputs", name), keras_message(e)) from e
        tensors[name] = tensor
        inputs.append(tensor)
    for i, item in enumerate(config["layers"]):
        where = (*path, "layers", i)
        name = item["name"]
        layer = get_layer(_named(item["layer"], name), spec, (*where, "layer"))
        sources = item.get("inputs", [])
        if isinstance(sources, str):
            sources = [sources]
        for j, source in enumerate(sources):
            if source not in tensors:
                known = ", ".join(repr(n) for n in tensors)
                raise spec.error(
                    (*where, "inputs", j), f"unknown input {source!r} (known so far: {known})"
                )
        arguments = [tensors[s] for s in sources]
        try:
            tensors[name] = layer(arguments[0] if len(arguments) == 1 else arguments)
        except Exception as e:
            raise spec.error(where, keras_message(e)) from e
    outputs = config["outputs"]
    if isinstance(outputs, str):
        outputs = [outputs]
    for j, name in enumerate(outputs):
        if name not in tensors:
            raise spec.error((*path, "outputs", j), f"unknown output {name!r}")
    try:
        return keras.Model(
            inputs=inputs[0] if len(inputs) == 1 else dict(zip(config["inputs"], inputs)),
            outputs=tensors[outputs[0]] if len(outputs) == 1 else [tensors[n] for n in outputs],
            name=config.get("name", "functional"),
        )
    except Exception as e:
        raise spec.error(path, keras_message(e)) from e


def is_keras(model) -> bool:
    """Whether the model is a Keras model (else a tf.Module)."""
    return isinstance(model, keras.Model)


def _named(identifier, name: str):
    """The layer identifier with the graph name as the Keras layer name (unless set)."""
    if isinstance(identifier, str):
        return {"class_name": identifier, "config": {"name": name}}
    if "class_name" in identifier:
        config = dict(identifier.get("config") or {})
        config.setdefault("name", name)
        return {**identifier, "config": config}
    ((class_name, config),) = identifier.items()
    config = dict(config or {})
    config.setdefault("name", name)
    return {class_name: config}
