"""Layers inside layers (Bidirectional, TimeDistributed, RNN cells) and call arguments of functional nodes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runner.spec import SpecError, load_spec
from runner.spec import catalog

HEAD = """\
version: 1
name: nested
seed: 3
data:
  train:
    source:
      npz: {path: seq.npz, features: x, label: y}
    stages:
      - batch: {batch_size: 16}
model:
  sequential:
    input_shape: [5, 3]
    layers:
"""
TRAIN = """\
train:
  epochs: 1
  loss: mse
  optimizer: {SGD: {learning_rate: 0.1}}
"""


def write(tmp_path, layers: str):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "seq.npz", x=rng.normal(size=(64, 5, 3)).astype("float32"),
             y=rng.normal(size=(64, 1)).astype("float32"))
    path = tmp_path / "spec.yaml"
    path.write_text(HEAD + "".join(f"      - {line}\n" for line in layers) + TRAIN)
    return path


def errors_of(path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return [str(e).split(": ", 1)[1] for e in getattr(caught.value, "errors", [caught.value])]


def test_the_catalog_knows_which_arguments_take_layers_from_keras():
    takes = {(name, a["name"]): a["layer"] for name, e in catalog.load_catalog()["kinds"]["layers"]["names"].items()
             for a in e["args"] if "layer" in a}
    assert takes[("Bidirectional", "layer")] == "one"
    assert takes[("Bidirectional", "backward_layer")] == "one"
    assert takes[("TimeDistributed", "layer")] == "one"
    assert takes[("RNN", "cell")] == "one_or_list"
    assert takes[("StackedRNNCells", "cells")] == "list"
    assert ("Rescaling", "scale") not in takes and ("TextVectorization", "standardize") not in takes


def test_validate_checks_nested_layers_at_every_depth(tmp_path):
    path = write(tmp_path, [
        "Bidirectional: {layer: {LSTM: {units: 4, return_sequences: true}},"
        " backward_layer: {class_name: LSTM, config: {unitz: 4, go_backwards: true}}}",
        "TimeDistributed: {layer: {Lambda: {function: x}}}",
        "RNN: {cell: [{LSTMCell: {units: 3}}, {GRUCel: {units: 2}}]}",
        "StackedRNNCells: {cells: {LSTMCell: {units: 3}}}",
        "Bidirectional: {layer: {TimeDistributed: {layer: {Dense: {units: 1, activaton: relu}}}}}",
    ])
    errors = errors_of(path)
    assert errors == [
        "model.sequential.layers[0].Bidirectional.backward_layer.config.unitz: unknown argument 'unitz' of LSTM "
        "(did you mean 'units'?)",
        "model.sequential.layers[1].TimeDistributed.layer.Lambda: a Lambda layer runs Python code; a spec holds "
        "data, never code (use map ops or a Keras layer)",
        "model.sequential.layers[2].RNN.cell[1]: unknown layer 'GRUCel' (did you mean 'GRUCell'?)",
        "model.sequential.layers[3].StackedRNNCells.cells: StackedRNNCells.cells: expected a list of layers",
        "model.sequential.layers[4].Bidirectional.layer.TimeDistributed.layer.Dense.activaton: unknown argument "
        "'activaton' of Dense (did you mean 'activation'?)",
    ]


@pytest.mark.slow
def test_wrappers_and_cells_build_from_layer_specs(tmp_path):
    keras = pytest.importorskip("keras")
    from runner.models import build_model

    path = write(tmp_path, [
        "Bidirectional: {layer: {LSTM: {units: 4, return_sequences: true}},"
        " backward_layer: {class_name: GRU, config: {units: 4, go_backwards: true, return_sequences: true}}}",
        "TimeDistributed: {layer: {Dense: {units: 2}}}",
        "RNN: {cell: [{LSTMCell: {units: 3}}, {GRUCell: {units: 2}}]}",
        "Dense: {units: 1}",
    ])
    spec = load_spec(path)
    model = build_model(spec.doc["model"], spec)
    bidirectional, distributed, rnn, _ = model.layers
    assert isinstance(bidirectional.forward_layer, keras.layers.LSTM)
    assert isinstance(bidirectional.backward_layer, keras.layers.GRU)
    assert isinstance(distributed.layer, keras.layers.Dense) and distributed.layer.units == 2
    assert [type(c).__name__ for c in rnn.cell.cells] == ["LSTMCell", "GRUCell"]
    assert model(np.zeros((2, 5, 3), np.float32)).shape == (2, 1)


@pytest.mark.slow
def test_bidirectional_lstm_trains_as_the_same_model_written_in_python(tmp_path, monkeypatch):
    keras = pytest.importorskip("keras")
    import tensorflow as tf
    from runner.run.pipeline import run_spec

    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, ["Bidirectional: {layer: {LSTM: {units: 4}}}", "Dense: {units: 1}"])
    result = run_spec(load_spec(path), quiet=True)
    pipe_loss = json.loads((result.run_dir / "history.json").read_text())
    trained = keras.models.load_model(result.run_dir / "model.keras")

    data = np.load(tmp_path / "seq.npz")
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.Bidirectional(keras.layers.LSTM(4)),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    history = model.fit(tf.data.Dataset.from_tensor_slices((data["x"], data["y"])).batch(16), epochs=1, verbose=0)

    assert isinstance(trained.layers[0], keras.layers.Bidirectional)
    for mine, theirs in zip(trained.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pipe_loss["loss"][0], history.history["loss"][0], rtol=1e-5)



FUNCTIONAL = """\
model:
  functional:
    inputs:
      seq: {shape: [5, 3]}
    layers:
"""


def write_functional(tmp_path, nodes: list[str]):
    path = write(tmp_path, [])
    text = path.read_text().split("model:\n")[0] + FUNCTIONAL
    text += "".join(f"      - {node}\n" for node in nodes) + "    outputs: out\n" + TRAIN
    path.write_text(text)
    return path


def test_validate_checks_call_arguments_against_the_layers_call(tmp_path):
    path = write_functional(tmp_path, [
        "{name: rnn, layer: {LSTM: {units: 4}}, inputs: seq, call: {trainig: false}}",
        "{name: out, layer: {Dense: {units: 1}}, inputs: rnn, call: {value: late}}",
        "{name: late, layer: {Dense: {units: 1}}, inputs: rnn}",
    ])
    assert errors_of(path) == [
        "model.functional.layers[0].call.trainig: unknown call argument 'trainig' of LSTM "
        "(its call takes initial_state, mask, training) (did you mean 'training'?)",
        "model.functional.layers[1].call.value: unknown call argument 'value' of Dense (its call takes training)",
        "model.functional.layers[1].call.value: 'late' is defined after 'out': list the layers in the order "
        "they run (move 'late' above layer 1)",
    ]


@pytest.mark.slow
def test_call_arguments_reach_the_layer_training_false_and_tensors_by_name(tmp_path):
    pytest.importorskip("keras")
    from runner.models import build_model

    path = write_functional(tmp_path, [
        "{name: frozen, layer: {BatchNormalization: {}}, inputs: seq, call: {training: false}}",
        "{name: drop, layer: {Dropout: {rate: 0.9}}, inputs: frozen, call: {training: false}}",
        "{name: att, layer: {MultiHeadAttention: {num_heads: 2, key_dim: 4}}, inputs: drop, call: {value: seq}}",
        "{name: out, layer: {Dense: {units: 1}}, inputs: att}",
    ])
    spec = load_spec(path)
    model = build_model(spec.doc["model"], spec)
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(8, 5, 3)).astype(np.float32)
    # In training mode too, Dropout drops nothing and BatchNormalization uses (and keeps) its moving statistics.
    np.testing.assert_allclose(model(x, training=True), model(x, training=False), rtol=1e-6)
    np.testing.assert_array_equal(model.get_layer("frozen").moving_mean.numpy(), np.zeros(3))
    attention = model.get_layer("att")
    assert attention._inbound_nodes[0].arguments.kwargs["value"] is model.inputs[0]


def test_the_editor_schema_checks_a_layer_inside_a_layer(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    from runner.spec import yamlfile
    from runner.spec.keras_schema import keras_schema

    validator = jsonschema.Draft202012Validator(keras_schema())
    good = write(tmp_path, ["Bidirectional: {layer: {LSTM: {units: 4}}}", "Normalization: {adapt: {examples: 8}}",
                            "Dense: {units: 1}"])
    assert list(validator.iter_errors(yamlfile.parse(good.read_text()).data)) == []
    bad = write(tmp_path, ["Bidirectional: {layer: {LSTM: {unitz: 4}}}", "Dense: {units: 1}"])
    assert [e.json_path for e in validator.iter_errors(yamlfile.parse(bad.read_text()).data)] == [
        "$.model.sequential.layers[0]"]
