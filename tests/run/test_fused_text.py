"""The fused engine on strings: a split looked up once by the model's fixed lookups
(TextVectorization, StringLookup) and held as their output, the rest of the model trained on
it; the same steps as `fit` on the raw strings, exact resume, a saved model of raw strings."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from runner.spec import load_spec

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from runner.models.string_front import string_front  # noqa: E402
from runner.run.pipeline import run_spec  # noqa: E402
from runner.train.devices import DeviceSetup  # noqa: E402
from runner.train.fused import FusedLoop, InMemoryData, epoch_order  # noqa: E402

WORDS = np.array("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split())

SPEC = """\
version: 1
name: texts
seed: 3
data:
  train:
    source: {npz: {path: data.npz, features: x, label: y}}
    stages: [{cache: {}}, {shuffle: {buffer_size: all}}, {batch: {batch_size: 16}}]
  validation: {fraction: 0.25}
model:
  functional:
    inputs:
      text: {shape: [], dtype: string}
    layers:
      - {name: vectorize, inputs: text, layer: {TextVectorization: {max_tokens: 20, output_sequence_length: 8}}}
      - {name: embedding, inputs: vectorize, layer: {Embedding: {input_dim: 20, output_dim: 4}}}
      - {name: dropout, inputs: embedding, layer: {Dropout: {rate: 0.3}}}
      - {name: average, inputs: dropout, layer: GlobalAveragePooling1D}
      - {name: logits, inputs: average, layer: {Dense: {units: 3}}}
    outputs: logits
train:
  engine: fused
  epochs: 3
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: adam
  metrics: [accuracy]
  verbose: 0
outputs: {dir: runs, plots: {enabled: false}}
"""


def _texts(count, seed=0):
    """Texts of 2 to 11 words; the class is which third of the words the first one is from."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(2, 12))) for _ in range(count)]
    labels = np.array([int(np.where(WORDS == t.split()[0])[0][0]) // 4 for t in texts], np.int64)
    return np.array(texts), labels


@pytest.fixture
def spec_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y = _texts(120)
    np.savez(tmp_path / "data.npz", x=x, y=y)

    def write(text=SPEC):
        (tmp_path / "spec.yaml").write_text(text)
        return tmp_path / "spec.yaml"

    return write


def _text_model(seed=0):
    keras.utils.set_random_seed(seed)
    text = keras.Input((), dtype="string", name="text")
    vectorize = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=8, name="vectorize")
    vectorize.adapt(tf.constant(_texts(120)[0]))
    x = keras.layers.Embedding(20, 4)(vectorize(text))
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Dropout(0.3, seed=7)(x))
    return keras.Model(text, keras.layers.Dense(3)(x))


def test_fused_steps_on_held_ids_are_fits_steps_on_the_strings():
    """The body of the model on ids looked up once takes the steps `fit` takes on the raw
    strings, in the same order (Dropout's masks included): the lookup gives each text the same
    ids in a batch as alone, and the body shares the model's layers and weights."""
    x, y = _texts(120)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    fused_model = _text_model()
    front, why = string_front(fused_model)
    assert why == "" and front.names == "TextVectorization 'vectorize'"
    held = front.encode(tf.constant(x))
    assert [t.dtype for t in held] == [tf.int64] and held[0].shape == (120, 8)
    data = InMemoryData(held, tf.constant(y), batch_size=16, shuffle=True, seed=5)
    setup = DeviceSetup(strategy=tf.distribute.get_strategy(), num_replicas=1, is_chief=True,
                        jit_compile=False, mixed_precision=None, summary="", manifest={})
    fused = FusedLoop(fused_model, loss=loss, optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"],
                      element_spec=(tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int64)),
                      setup=setup, verbose=0, train_data=data, forward=front.body)
    history = fused.fit(epochs=3, quiet=True).history

    fit_model = _text_model()
    fit_model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, metrics=["accuracy"])
    fit_losses = []
    for epoch in range(3):
        order = epoch_order(data, epoch).numpy()
        batches = tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(16)
        fit_losses += fit_model.fit(batches, epochs=1, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(history["loss"], fit_losses, rtol=1e-6)
    for a, b in zip(fused_model.get_weights(), fit_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_text_spec_runs_fused_and_saves_a_model_of_raw_strings(spec_file):
    spec = spec_file()
    result = run_spec(load_spec(spec), quiet=True)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert (manifest["status"], manifest["engine"]) == ("completed", "fused")
    assert manifest["engine_reason"] == ("data in memory, 8 KB; whole epochs per graph call; "
                                         "strings held as looked up by TextVectorization 'vectorize'")
    saved = keras.saving.load_model(result.run_dir / "model.keras")
    texts = tf.constant(["alpha beta", "mu lambda kappa"])
    np.testing.assert_allclose(saved(texts), keras.saving.load_model(result.run_dir / "model.keras")(texts))
    assert saved.inputs[0].dtype == "string"


def test_a_resumed_text_run_repeats_the_uninterrupted_run(spec_file):
    spec = spec_file(SPEC.replace("epochs: 3", "epochs: 4"))
    whole = run_spec(load_spec(spec), quiet=True)
    first = run_spec(load_spec(spec, overrides=["train.epochs=2"]), quiet=True)
    resumed = run_spec(load_spec(spec), quiet=True, resume_from=first.run_dir)
    read = lambda run: json.loads((run.run_dir / "history.json").read_text())  # noqa: E731
    assert json.loads((resumed.run_dir / "manifest.json").read_text())["engine"] == "fused"
    assert read(resumed) == read(whole)


@pytest.mark.parametrize("change, reason", [
    ("output_sequence_length: 8", "TextVectorization 'vectorize' gives each batch its own length of ids "
                                  "(no output_sequence_length)"),
])
def test_auto_says_why_a_text_spec_is_not_fused(spec_file, change, reason):
    spec = spec_file(SPEC.replace(", " + change, "").replace("engine: fused", "engine: auto"))
    result = run_spec(load_spec(spec), quiet=True)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["engine"] == "keras"
    assert manifest["engine_reason"] == f"fit; not fused: data.train.source: string elements ({reason})"


def test_string_inputs_split_at_their_lookups_and_other_models_refused():
    words = keras.Input((), dtype="string", name="words")
    place = keras.Input((), dtype="string", name="place")
    hashed = keras.layers.Embedding(5, 2)(keras.layers.Hashing(num_bins=5, name="hash")(words))
    looked_up = keras.layers.StringLookup(vocabulary=["x", "y"], output_mode="one_hot", name="lookup")(place)
    joined = keras.layers.Concatenate()([hashed, looked_up])
    # Inputs by name, declared in another order than their names sort in.
    model = keras.Model({"words": words, "place": place}, keras.layers.Dense(1)(joined))
    front, why = string_front(model)
    assert why == "" and front.names in ("Hashing 'hash', StringLookup 'lookup'", "StringLookup 'lookup', Hashing 'hash'")
    features = {"place": tf.constant(["y", "z"]), "words": tf.constant(["a", "b"])}
    np.testing.assert_allclose(front.body(front.encode(features)), model(features))
    model.save(Path(tempfile.mkdtemp()) / "model.keras")  # the body leaves the model saveable

    numbers = keras.Input((2,), name="numbers")
    mixed = keras.Model([words, numbers], keras.layers.Dense(1)(keras.layers.Concatenate()([hashed, numbers])))
    assert string_front(mixed) == (None, "the model takes strings and numbers (input 'numbers'); only a model "
                                         "whose every input is looked up is split")

    same = keras.layers.Identity(name="same")(words)
    vectorize = keras.layers.TextVectorization(output_sequence_length=3, name="v")
    vectorize.adapt(tf.constant(["a b"]))
    front, why = string_front(keras.Model(words, vectorize(same)))
    assert front is None and why == "the model input 'words' goes to Identity 'same', not a lookup"


TABLE = """\
version: 1
name: islands
seed: 4
data:
  train:
    source:
      csv:
        path: PENGUINS
        header: true
        label: species
        features: {island: [island], measures: [bill_length_mm, flipper_length_mm]}
        text: [island]
        fill: {bill_length_mm: mean, flipper_length_mm: mean}
    stages: [{map: {ops: [normalize: {on: measures}]}}, {cache: {}}, {shuffle: {buffer_size: all}},
             {batch: {batch_size: 32}}]
  validation: {fraction: 0.2, stratify: true}
model:
  functional:
    inputs:
      island: {shape: [], dtype: string}
      measures: {shape: [2]}
    layers:
      - {name: island_lookup, inputs: island, layer: {StringLookup: {output_mode: one_hot}}}
      - {name: joined, inputs: [island_lookup, measures], layer: Concatenate}
      - {name: hidden, inputs: joined, layer: {Dense: {units: 8, activation: relu}}}
      - {name: logits, inputs: hidden, layer: {Dense: {units: 3}}}
    outputs: logits
train:
  engine: fused
  epochs: 3
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: {Adam: {learning_rate: 0.01}}
  metrics: [accuracy]
  verbose: 0
outputs: {dir: runs, plots: {enabled: false}}
"""


def test_a_table_of_strings_and_numbers_into_one_model_says_why_it_is_not_fused(tmp_path, monkeypatch):
    """The island column stays strings in the data, beside the measures: the model is not
    split (see string_front), and the run says so."""
    from conftest import SPECS

    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(TABLE.replace("PENGUINS", str(SPECS / "data" / "penguins.csv")))
    result = run_spec(load_spec(tmp_path / "spec.yaml", overrides=["train.engine=auto"]), quiet=True)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert (manifest["status"], manifest["engine"]) == ("completed", "keras")
    assert manifest["engine_reason"] == ("fit; not fused: data.train.stages[0]: string elements (the model takes "
                                         "strings and numbers (input 'measures'); only a model whose every input "
                                         "is looked up is split)")
    saved = keras.saving.load_model(result.run_dir / "model.keras")
    assert saved({"island": tf.constant(["Dream"]), "measures": tf.constant([[0.1, -0.2]])}).shape == (1, 3)


def test_plans_held_through_a_models_lookups_are_not_kept_for_the_next_model(spec_file):
    """A sweep's worker reuses its datasets (and what was planned on them) between trials;
    a split held as one model's lookups gave it belongs to that model: the next trial's
    model, with other lookups, plans its own."""
    from runner.data import build_datasets
    from runner.run.fused import plan_data

    spec = load_spec(spec_file())
    keras.utils.set_random_seed(3)
    datasets = build_datasets(spec)
    first, second = string_front(_text_model(seed=0)), string_front(_text_model(seed=1))
    plans_first, _ = plan_data(spec, datasets, first)
    plans_second, _ = plan_data(spec, datasets, second)
    assert plans_first["train"].encode == first[0].encode and plans_second["train"].encode == second[0].encode
    # Plans of a model without lookups depend on the data alone: made once, kept.
    assert plan_data(spec, datasets, (None, ""))[0] is plan_data(spec, datasets, (None, ""))[0]
