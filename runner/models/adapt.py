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


class Adapter:
    """Adapts each adaptable layer while the model is built, before the layer is wired in.

    `runner.models.build` calls it with each layer before adding it to a Sequential model or
    calling it in a functional graph: a layer's output shape may depend on what it learns
    (a StringLookup's one-hot width is its vocabulary's size), so it is adapted (or, when
    resuming, restored from `resume_from`) first. `records` says what was done: one
    {layer, class, path, examples} per layer (`restored_from` instead of examples when resumed).
    """

    def __init__(self, model_config: dict, spec, train: tf.data.Dataset, resume_from=None):
        self.spec, self.train, self.resume_from = spec, train, resume_from
        self.sites = {site.index: site for site in adapted_sites(model_config)}
        self.records: list[dict] = []

    def sequential(self, index: int, layer, before: list) -> None:
        """Adapt layer `index` of a Sequential model on the features through the layers `before` it."""
        site = self.sites.get(index)
        if site is None:
            return
        feed = None
        if before:
            def feed(x):
                for previous in before:
                    x = previous(x)
                return x

            first = next(iter(self.train.take(1)))  # builds the layers before it, eagerly
            feed(first[0] if isinstance(first, tuple) else first)
            _refuse_trained(before, layer, site, self.spec)
        self._adapt_or_restore(layer, site, feed, lambda: _first_features(self.train, feed))

    def functional(self, index: int, layer, inputs: dict, source) -> None:
        """Adapt node `index` of a functional graph on the values of its input tensor `source`."""
        site = self.sites.get(index)
        if site is None:
            return
        feed = None
        names = [name for name, tensor in inputs.items() if tensor is source]
        if names and len(inputs) > 1:
            feed = lambda features, name=names[0]: features[name]  # noqa: E731
        elif not names:
            upstream = keras.Model(inputs if len(inputs) > 1 else next(iter(inputs.values())), source)
            _refuse_trained(upstream.layers, layer, site, self.spec)
            feed = upstream
        self._adapt_or_restore(layer, site, feed, lambda: tuple(source.shape))

    def _adapt_or_restore(self, layer, site: Site, feed, shape) -> None:
        record = {"layer": layer.name, "class": site.class_name, "path": _dotted(site.path)}
        if self.resume_from is not None:
            folder = Path(self.resume_from) / ADAPTED_DIR / layer.name
            if not layer.built:
                layer.build(shape())
            restore_layer(layer, folder, self.spec, site)
            record["restored_from"] = str(folder)
        else:
            record["examples"] = _adapt(layer, feed, site, self.spec, self.train)
        self.records.append(record)


def _first_features(train, feed) -> tuple:
    first = next(iter(train.take(1)))
    features = first[0] if isinstance(first, tuple) else first
    return tuple((features if feed is None else feed(features)).shape)


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
        if value is not None:  # state Keras keeps in the config (Discretization's bins)
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


def _refuse_trained(before, layer, site: Site, spec) -> None:
    trained = [b.name for b in before if b.trainable_weights]
    if trained:
        raise spec.error(site.path, f"{layer.name} ({site.class_name}) is adapted on the values that reach it, and "
                                    f"{', '.join(trained)} before it has weights that training changes: put adapted "
                                    "layers before trained ones, or give its state")


def _dotted(path: tuple) -> str:
    from runner.spec.errors import format_path

    return format_path(path)


def _is_json(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
