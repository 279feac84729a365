"""Keras argument values out of range are found by `pipe validate`, located, before any build."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from runner.cli import app
from runner.spec import SpecError, load_spec

SPEC = """\
version: 1
name: ranges
data:
  train:
    source:
      synthetic:
        x: {{linspace: {{start: -1.0, stop: 1.0, num: 8}}}}
        y: {{linear: {{w: 2.0, b: 0.5}}}}
    stages:
      - batch: {{batch_size: 4}}
model:
  sequential:
    input_shape: [1]
    layers:
      - {layer}
      - Dense: {{units: 1}}
train:
  epochs: 1
  loss: {loss}
  optimizer: {optimizer}
"""


def errors(write_spec, layer="Dense: {units: 2}", optimizer="adam", loss="mse") -> list[str]:
    path = write_spec(SPEC.format(layer=layer, optimizer=optimizer, loss=loss))
    try:
        load_spec(path)
    except SpecError as e:
        return [str(x).split(": ", 1)[1] for x in e.errors]
    return []


@pytest.mark.parametrize("layer, message", [
    ("Dense: {units: 0}", "model.sequential.layers[0].Dense.units: Dense.units: expected a positive integer, got 0"),
    ("Dense: {units: 8.0}", "Dense.units: expected a positive integer, got 8.0"),
    ("Dense: {units: -3}", "Dense.units: expected a positive integer, got -3"),
    ("LSTM: {units: 0}", "LSTM.units: expected a positive integer, got 0"),
    ("Conv1D: {filters: 0, kernel_size: 3}", "Conv1D.filters: expected a positive integer, got 0"),
    ("Conv1D: {filters: 4, kernel_size: 2.5}", "Conv1D.kernel_size: expected a positive integer or a list of them"),
    ("Conv2D: {filters: 4, kernel_size: [3, 0]}", "Conv2D.kernel_size: expected a positive integer or a list of "
                                                  "them, got [3, 0]"),
    ("MaxPooling1D: {pool_size: 2, strides: 0}", "MaxPooling1D.strides: expected a positive integer"),
    ("Embedding: {input_dim: 0, output_dim: 4}", "Embedding.input_dim: expected a positive integer, got 0"),
    ("Embedding: {input_dim: 10, output_dim: 4.0}", "Embedding.output_dim: expected a positive integer, got 4.0"),
    ("MultiHeadAttention: {num_heads: 0, key_dim: 2}", "MultiHeadAttention.num_heads: expected a positive integer"),
    ("RepeatVector: {n: 0}", "RepeatVector.n: expected a positive integer, got 0"),
    ("Dropout: {rate: 1.5}", "model.sequential.layers[0].Dropout.rate: Dropout.rate: expected a number in [0, 1) "
                             "(1 would drop every unit), got 1.5"),
    ("Dropout: {rate: -0.1}", "Dropout.rate: expected a number in [0, 1)"),
    ("SpatialDropout1D: {rate: 1}", "SpatialDropout1D.rate: expected a number in [0, 1)"),
    ("GaussianDropout: {rate: 1.0}", "GaussianDropout.rate: expected a number in [0, 1)"),
    ("LSTM: {units: 2, recurrent_dropout: 2}", "LSTM.recurrent_dropout: expected a number in [0, 1)"),
    ("GaussianNoise: {stddev: -1}", "GaussianNoise.stddev: expected a number in [0, 1], got -1"),
    ("BatchNormalization: {momentum: 1.5}", "BatchNormalization.momentum: expected a number in [0, 1], got 1.5"),
    ("BatchNormalization: {epsilon: -0.001}", "BatchNormalization.epsilon: expected a number > 0, got -0.001"),
    ("LeakyReLU: {negative_slope: -1}", "LeakyReLU.negative_slope: expected a number ≥ 0, got -1"),
    ("Dense: {units: 2, kernel_regularizer: {L2: {l2: -0.1}}}", "L2.l2: expected a number ≥ 0, got -0.1"),
    ("Bidirectional: {layer: {LSTM: {units: 0}}}", "LSTM.units: expected a positive integer, got 0"),
    ("ZeroPadding1D: {padding: -1}", "ZeroPadding1D.padding: expected 'valid', 'same', 'causal', or an integer ≥ 0"),
])
def test_a_layer_argument_out_of_range_is_located(write_spec, layer, message):
    found = errors(write_spec, layer=layer)
    assert any(message in e for e in found), found


@pytest.mark.parametrize("optimizer, message", [
    ("{Adam: {learning_rate: -0.001}}", "train.optimizer.Adam.learning_rate: Adam.learning_rate: expected a number "
                                        "> 0, got -0.001"),
    ("{SGD: {learning_rate: 0}}", "SGD.learning_rate: expected a number > 0, got 0"),
    ("{class_name: RMSprop, config: {learning_rate: -1}}", "RMSprop.learning_rate: expected a number > 0"),
    ("{SGD: {momentum: 1.5}}", "SGD.momentum: expected a number in [0, 1], got 1.5"),
    ("{Adam: {beta_1: 1.0}}", "Adam.beta_1: expected a number in [0, 1), got 1.0"),
    ("{Adam: {epsilon: 0}}", "Adam.epsilon: expected a number > 0, got 0"),
    ("{Adam: {clipnorm: -1}}", "Adam.clipnorm: expected a number > 0, got -1"),
    ("{AdamW: {weight_decay: -0.1}}", "AdamW.weight_decay: expected a number ≥ 0"),
    ("{Adam: {gradient_accumulation_steps: 1}}", "Adam.gradient_accumulation_steps: expected an integer ≥ 2"),
    ("{Adam: {learning_rate: {ExponentialDecay: {initial_learning_rate: -0.1, decay_steps: 10, decay_rate: 0.9}}}}",
     "ExponentialDecay.initial_learning_rate: expected a number > 0, got -0.1"),
    ("{Adam: {learning_rate: {ExponentialDecay: {initial_learning_rate: 0.1, decay_steps: 0, decay_rate: 0.9}}}}",
     "ExponentialDecay.decay_steps: expected a positive integer, got 0"),
])
def test_an_optimizer_argument_out_of_range_is_located(write_spec, optimizer, message):
    found = errors(write_spec, optimizer=optimizer)
    assert any(message in e for e in found), found


def test_a_loss_argument_out_of_range_is_located(write_spec):
    found = errors(write_spec, loss="{BinaryCrossentropy: {label_smoothing: 1.5}}")
    assert any("BinaryCrossentropy.label_smoothing: expected a number in [0, 1], got 1.5" in e for e in found), found


def test_a_phase_schedule_is_checked_as_train_optimizer_s_would_be(write_spec):
    text = SPEC.format(layer="Dense: {units: 2}", optimizer="adam", loss="mse").replace(
        "  epochs: 1\n", "  phases:\n    - {epochs: 1, learning_rate: {CosineDecay: {initial_learning_rate: 0,"
                         " decay_steps: 10}}}\n")
    try:
        load_spec(write_spec(text))
        found = []
    except SpecError as e:
        found = [str(x) for x in e.errors]
    assert any("train.phases[0].learning_rate.CosineDecay.initial_learning_rate: CosineDecay.initial_learning_rate: "
               "expected a number > 0, got 0" in e for e in found), found


@pytest.mark.parametrize("layer", [
    "Dense: {units: 1}", "Dropout: {rate: 0.0}", "Dropout: {rate: 0.99}", "Conv1D: {filters: 2, kernel_size: [3]}",
    "Conv1D: {filters: 2, kernel_size: 3, padding: causal, strides: 1, dilation_rate: 2}",
    "MaxPooling1D: {pool_size: 2, strides: null}", "ZeroPadding1D: {padding: [1, 2]}", "GaussianNoise: {stddev: 1}",
    "BatchNormalization: {momentum: 0.0, epsilon: 0.00001}", "LeakyReLU: {negative_slope: 0}",
    "Dense: {units: '${data.num_classes}'}", "Embedding: {input_dim: 1, output_dim: 1}",
])
def test_values_keras_accepts_pass(write_spec, layer):
    found = [e for e in errors(write_spec, layer=layer) if "expected" in e]
    assert found == []


@pytest.mark.parametrize("optimizer", [
    "{SGD: {learning_rate: 0.5, momentum: 1}}", "{Adam: {beta_1: 0, beta_2: 0.999, epsilon: 1.0e-7}}",
    "{Adam: {gradient_accumulation_steps: 2, weight_decay: 0, clipnorm: 1}}",
    "{Adam: {learning_rate: {CosineDecay: {initial_learning_rate: 0.1, decay_steps: 1, warmup_steps: 0}}}}",
])
def test_optimizer_values_keras_accepts_pass(write_spec, optimizer):
    assert errors(write_spec, optimizer=optimizer) == []


def test_pipe_validate_exits_1_on_a_value_out_of_range(write_spec):
    path = write_spec(SPEC.format(layer="Dense: {units: 0}", optimizer="adam", loss="mse"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:15:24: model.sequential.layers[0].Dense.units: Dense.units: expected a positive integer, got 0" \
        in result.output


@pytest.mark.slow
@pytest.mark.parametrize("layer, arguments", [
    ("Dense", {"units": 0}), ("Dense", {"units": 8.0}), ("Dropout", {"rate": 1.5}), ("Conv2D", {"filters": 0, "kernel_size": 3}),
    ("Conv2D", {"filters": 2, "kernel_size": [3, 0]}), ("Embedding", {"input_dim": 0, "output_dim": 2}),
    ("GaussianNoise", {"stddev": -1.0}), ("RepeatVector", {"n": 0}), ("LeakyReLU", {"negative_slope": -1.0}),
])
def test_what_validate_rejects_keras_rejects_too(layer, arguments):
    """The rules follow Keras: a layer they reject is one Keras refuses to make."""
    import keras

    with pytest.raises(ValueError):
        getattr(keras.layers, layer)(**arguments)
