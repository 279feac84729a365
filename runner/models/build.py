"""Models from `model:`: Keras Sequential and functional graphs, or tf.Module models."""

from __future__ import annotations

import keras

from runner.internals import keep_call_context_arguments
from runner.models.identifiers import get_layer, keras_message
from runner.models.modules import build_module
from runner.models.warm_start import init_from


def build_model(model_config: dict, spec, seed: int = 0, adapter=None):
    """A Keras model or tf.Module from the (metadata-substituted) `model:` mapping.

    Args:
        model_config: the `model:` mapping (`spec.sections.model.as_dict()`) with `${data...}`
            already substituted.
        spec: the Spec, to locate errors.
        seed: seeds tf.Module initializers.
        adapter: a `runner.models.adapt.Adapter`: adapts preprocessing layers on the train
            split as they are wired in (None: none is adapted).

    Raises:
        SpecError: unknown layer, bad argument, or a graph Keras cannot build.
    """
    ((kind, config),) = [(k, v) for k, v in model_config.items() if k != "init_from"]
    path = ("model", kind)
    if kind == "sequential":
        model = build_sequential(config, spec, path, adapter)
    elif kind == "functional":
        model = build_functional(config, spec, path, adapter)
    elif kind == "module":
        model = build_module(config, spec, path, seed=seed)
    else:
        raise spec.error(("model",), f"unknown model kind {kind!r}")
    if model_config.get("init_from"):
        _build_on_the_data(model, adapter)  # a model without input_shape has no weights to load yet
        init_from(model, model_config, spec)  # the weights of a completed run, by layer name
    return model


def _build_on_the_data(model, adapter) -> None:
    """Build a Sequential model that has no input shape on the train split's features, as
    its first batch would; left unbuilt when the features are not one tensor (init_from
    then says which layers it cannot fill)."""
    if not isinstance(model, keras.Sequential) or model.built or adapter is None:
        return
    element = adapter.train.element_spec
    features = element[0] if isinstance(element, tuple) else element
    if hasattr(features, "shape"):
        model.build((None, *features.shape[1:]))


def build_sequential(config: dict, spec, path: tuple, adapter=None) -> keras.Model:
    """`keras.Sequential` of the listed layers, built on `input_shape` when given."""
    model = keras.Sequential(name=config.get("name", "sequential"))
    input_shape = config.get("input_shape")
    if input_shape is not None:
        model.add(keras.Input(shape=tuple(input_shape)))
    for i, identifier in enumerate(config.get("layers", [])):
        where = (*path, "layers", i)
        layer = get_layer(identifier, spec, where)
        if adapter is not None:
            adapter.sequential(i, layer, list(model.layers))
        try:
            model.add(layer)
        except Exception as e:
            raise spec.error(where, keras_message(e)) from e
    return model


def build_functional(config: dict, spec, path: tuple, adapter=None) -> keras.Model:
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
        if adapter is not None and len(arguments) == 1:
            adapter.functional(i, layer, dict(zip(config["inputs"], inputs)), arguments[0])
        keywords = _call_arguments(item.get("call") or {}, tensors)
        if "training" in keywords and keywords["training"] is not None:
            keep_call_context_arguments(layer, ["training"])  # fit's own training=True must not override it
        try:
            tensors[name] = layer(arguments[0] if len(arguments) == 1 else arguments, **keywords)
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


def _call_arguments(call: dict, tensors: dict) -> dict:
    """A node's `call:` arguments: names of earlier nodes become their tensors, the rest stay."""
    keywords = {}
    for argument, value in call.items():
        if isinstance(value, str) and value in tensors:
            value = tensors[value]
        elif isinstance(value, list) and value and all(isinstance(v, str) and v in tensors for v in value):
            value = [tensors[v] for v in value]
        keywords[argument] = value
    return keywords


def declared_output_names(model_config: dict) -> list:
    """The output names a `functional` model declares, in order (Keras names its outputs
    after these layers); none for other models."""
    outputs = (model_config.get("functional") or {}).get("outputs") if isinstance(model_config, dict) else None
    return [outputs] if isinstance(outputs, str) else list(outputs or [])


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
