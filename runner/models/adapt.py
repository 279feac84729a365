"""Preprocessing layers adapted on the train split before training (`runner.spec.adaptation`).

One step used by `pipe run` and `pipe plan`: each layer the spec leaves without its state
(`Normalization` without `mean`/`variance`, `TextVectorization` without `vocabulary`, ...)
is adapted with Keras's own `adapt()` on the train split's values that reach it — the
features, passed through the layers before it when it is not the first (which must have no
trained weights: nothing is learnt yet) — streamed through tf.data, never held in memory.

The adapted state is part of the model, so the saved model holds it; the run also keeps it in
`adapted/` (Keras's own variables and assets of each layer), from which `--resume` restores
it instead of adapting again.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from runner.models.identifiers import keras_message
from runner.spec.adaptation import Site, adapted_sites, state_arguments

ADAPTED_DIR = "adapted"
ADAPT_BATCH = 1024  # examples per adapt() batch when a sample size re-batches the split


def adapt_model(model, model_config: dict, spec, train: tf.data.Dataset, resume_from=None) -> list[dict]:
    """Adapt the model's adaptable layers (or restore them from `resume_from`); what was done.

    Returns one record per layer: {layer, class, path, examples} (examples: how many train
    examples it was adapted on; `restored_from` instead when resumed).

    Raises:
        SpecError: a layer after trained layers, an endless split without a sample size, or
            data the layer cannot adapt on (located at the layer).
    """
    sites = adapted_sites(model_config)
    if not sites or not isinstance(model, keras.Model):
        return []
    kind = next(iter(model_config))
    records = []
    for site in sites:
        layer, feed = _layer_and_feed(model, kind, model_config[kind], site, spec, train)
        record = {"layer": layer.name, "class": site.class_name, "path": _dotted(site.path)}
        if resume_from is not None:
            restore_layer(layer, Path(resume_from) / ADAPTED_DIR / layer.name, spec, site)
            record["restored_from"] = str(Path(resume_from) / ADAPTED_DIR / layer.name)
        else:
            record["examples"] = _adapt(layer, feed, site, spec, train)
        records.append(record)
    return records


def save_adapted(model, records: list[dict], run_dir) -> None:
    """Keep each adapted layer's state in `run_dir/adapted/<layer>/` (what --resume restores)."""
    for record in records:
        layer = model.get_layer(record["layer"])
        folder = Path(run_dir / ADAPTED_DIR / layer.name)
        folder.mkdir(parents=True, exist_ok=True)
        store = {}
        layer.save_own_variables(store)
        np.savez(folder / "variables.npz", **{k: np.asarray(v) for k, v in store.items()})
        if hasattr(layer, "save_assets"):
            layer.save_assets(str(folder))
        config = layer.get_config()
        state = {a: config.get(a) for a in state_arguments(record["class"]) or [] if _is_json(config.get(a))}
        (folder / "state.json").write_text(json.dumps(state) + "\n")


def restore_layer(layer, folder: Path, spec, site: Site) -> None:
    """Give a layer the state an earlier run adapted (Keras's load_own_variables / load_assets)."""
    if not (folder / "variables.npz").is_file():
        raise spec.error(site.path, f"the run being resumed kept no adapted state of {layer.name} ({folder}): "
                                    "it cannot be restored (and adapting again could differ)")
    with np.load(folder / "variables.npz", allow_pickle=False) as saved:
        store = {k: saved[k] for k in saved.files}
    for name, value in json.loads((folder / "state.json").read_text()).items():
        if value is not None and not store:  # state Keras keeps in the config (Discretization's bins)
            setattr(layer, name, value)
    if hasattr(layer, "load_assets"):
        layer.load_assets(str(folder))
    layer.load_own_variables(store)


def describe(records: list[dict]) -> list[str]:
    """Lines for `pipe plan` and the run: what was adapted, on how many examples."""
    lines = []
    for r in records:
        if "restored_from" in r:
            lines.append(f"adapted: {r['layer']} ({r['class']}) restored from {r['restored_from']}")
        else:
            lines.append(f"adapted: {r['layer']} ({r['class']}) on {r['examples']} train examples")
    return lines


def _adapt(layer, feed, site: Site, spec, train: tf.data.Dataset) -> int:
    features = train.map(lambda *element: element[0]) if isinstance(train.element_spec, tuple) else train
    endless = features.cardinality() == tf.data.INFINITE_CARDINALITY
    if site.examples is not None:
        features = features.unbatch().take(site.examples).batch(ADAPT_BATCH)
    elif endless:
        raise spec.error(site.path, f"{site.class_name} is adapted on the train split, which repeats without end: "
                                    "give a sample size (adapt: {examples: N})")
    counted = [0]  # examples that reached adapt(), counted as they stream by (one pass)

    def count(batch):
        size = tf.shape(tf.nest.flatten(batch)[0])[0]
        tf.py_function(lambda n: counted.__setitem__(0, counted[0] + int(n)), [size], [])
        return batch

    data = features.map(count)
    data = data if feed is None else data.map(feed)
    try:
        layer.adapt(data)
    except Exception as e:
        raise spec.error(site.path, f"{site.class_name} could not be adapted on the train split: "
                                    f"{keras_message(e)}") from e
    return counted[0]


def _layer_and_feed(model, kind: str, config: dict, site: Site, spec, train):
    """The Keras layer of a site, and what turns the split's features into its input (None: as is)."""
    if kind == "sequential":
        layer = model.layers[site.index]
        before = model.layers[:site.index]
        if not before:
            return layer, None

        def feed(x):
            for previous in before:
                x = previous(x)
            return x

        first = next(iter(train.take(1)))  # builds the layers before it, eagerly
        feed(first[0] if isinstance(first, tuple) else first)
        _refuse_trained(before, layer, site, spec)
        return layer, feed
    item = config["layers"][site.index]
    layer = model.get_layer(_node_layer_name(item))
    source = layer.input
    inputs = model.input
    if isinstance(inputs, dict):
        for name, tensor in inputs.items():
            if tensor is source:
                return layer, lambda features, name=name: features[name]
    elif source is inputs:
        return layer, None
    upstream = keras.Model(inputs, source)
    _refuse_trained(upstream.layers, layer, site, spec)
    return layer, upstream


def _refuse_trained(before, layer, site: Site, spec) -> None:
    trained = [b.name for b in before if b.trainable_weights]
    if trained:
        raise spec.error(site.path, f"{layer.name} ({site.class_name}) is adapted on the values that reach it, and "
                                    f"{', '.join(trained)} before it has weights that training changes: put adapted "
                                    "layers before trained ones, or give its state")


def _node_layer_name(item: dict) -> str:
    identifier = item["layer"]
    if isinstance(identifier, dict):
        config = identifier.get("config") if "class_name" in identifier else next(iter(identifier.values()))
        if isinstance(config, dict) and isinstance(config.get("name"), str):
            return config["name"]
    return item["name"]


def _dotted(path: tuple) -> str:
    from runner.spec.errors import format_path

    return format_path(path)


def _is_json(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
