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
    ("Dropout: {rate: 1.5}", "model.sequential.layers[0].Dropout.rate: Dropout.rate: expected a number in [0, 1], "
                             "got 1.5"),
    ("Dropout: {rate: -0.1}", "Dropout.rate: expected a number in [0, 1]"),
    ("SpatialDropout1D: {rate: 1.01}", "SpatialDropout1D.rate: expected a number in [0, 1]"),
    ("LSTM: {units: 2, recurrent_dropout: 2}", "LSTM.recurrent_dropout: expected a number in [0, 1]"),
    ("GaussianNoise: {stddev: -1}", "GaussianNoise.stddev: expected a number in [0, 1], got -1"),
    ("BatchNormalization: {momentum: 1.5}", "BatchNormalization.momentum: expected a number in [0, 1], got 1.5"),
    ("BatchNormalization: {epsilon: -0.001}", "BatchNormalization.epsilon: expected a number ≥ 0, got -0.001"),
    ("LeakyReLU: {negative_slope: -1}", "LeakyReLU.negative_slope: expected a number ≥ 0, got -1"),
    ("Dense: {units: 2, kernel_regularizer: {L2: {l2: -0.1}}}", "L2.l2: expected a number ≥ 0, got -0.1"),
    ("Bidirectional: {layer: {LSTM: {units: 0}}}", "LSTM.units: expected a positive integer, got 0"),
    ("ZeroPadding1D: {padding: -1}", "ZeroPadding1D.padding: expected an integer ≥ 0 or a list of them, got -1"),
    # a 2D layer takes one integer or 2 of them, a 1D layer 1, a 3D layer 3
    ("Conv2D: {filters: 2, kernel_size: [3]}", "model.sequential.layers[0].Conv2D.kernel_size: Conv2D.kernel_size: "
                                               "expected an integer or a list of 2 integers (Conv2D works on 2 axes), "
                                               "got [3]"),
    ("Conv2D: {filters: 2, kernel_size: [3, 3, 3]}", "Conv2D.kernel_size: expected an integer or a list of 2 integers"),
    ("Conv1D: {filters: 2, kernel_size: [3, 3]}", "Conv1D.kernel_size: expected an integer or a list of 1 integer "
                                                  "(Conv1D works on 1 axis), got [3, 3]"),
    ("MaxPooling2D: {pool_size: [2]}", "MaxPooling2D.pool_size: expected an integer or a list of 2 integers"),
    ("MaxPool2D: {pool_size: 2, strides: [2, 2, 2]}", "MaxPool2D.strides: expected an integer or a list of 2"),
    ("SeparableConv2D: {filters: 2, kernel_size: [3]}", "SeparableConv2D.kernel_size: expected an integer or a list"),
    ("UpSampling2D: {size: [2]}", "UpSampling2D.size: expected an integer or a list of 2 integers"),
    ("UpSampling1D: {size: [2]}", "UpSampling1D.size: expected an integer (UpSampling1D repeats along one axis)"),
    ("Conv3D: {filters: 2, kernel_size: 3, dilation_rate: [1, 2]}", "Conv3D.dilation_rate: expected an integer or a "
                                                                    "list of 3 integers"),
    ("Cropping2D: {cropping: [1, 2, 3]}", "Cropping2D.cropping: expected an integer or a list of 2 entries (one per "
                                          "axis: an integer or [before, after]), got [1, 2, 3]"),
    ("Cropping2D: {cropping: [[1, 2, 3], 1]}", "Cropping2D.cropping: expected an integer or a list of 2 entries"),
    ("ZeroPadding2D: {padding: [1, 2, 3]}", "ZeroPadding2D.padding: expected an integer or a list of 2 entries"),
    ("ZeroPadding1D: {padding: [1, 2, 3]}", "ZeroPadding1D.padding: expected an integer or a list of 2 integers "
                                            "(before, after), got [1, 2, 3]"),
    ("Cropping1D: {cropping: [[1, 2]]}", "Cropping1D.cropping: expected an integer or a list of 2 integers"),
    # padding is a word but for ZeroPadding's; 'causal' is Conv1D's alone
    ("Conv2D: {filters: 2, kernel_size: 3, padding: 1}", "Conv2D.padding: expected 'valid' or 'same', got 1 (integer "
                                                         "padding is ZeroPadding's: put one before the layer)"),
    ("Conv2D: {filters: 2, kernel_size: 3, padding: causal}", "Conv2D.padding: expected 'valid' or 'same', got "
                                                              "'causal'"),
    ("Conv1D: {filters: 2, kernel_size: 3, padding: full}", "Conv1D.padding: expected 'valid', 'same' or 'causal', "
                                                            "got 'full'"),
    ("MaxPooling1D: {pool_size: 2, padding: causal}", "MaxPooling1D.padding: expected 'valid' or 'same'"),
    ("SeparableConv1D: {filters: 2, kernel_size: 3, padding: causal}", "SeparableConv1D.padding: expected 'valid' or"),
    ("Conv2D: {filters: 2, kernel_size: 3, padding: [1, 1]}", "Conv2D.padding: expected 'valid' or 'same'"),
    # arguments Keras checks against each other
    ("Conv2D: {filters: 2, kernel_size: 3, strides: 2, dilation_rate: 2}",
     "Conv2D.dilation_rate: a dilation_rate above 1 (2) cannot go with strides above 1 (2) in Conv2D"),
    ("Conv1D: {filters: 2, kernel_size: 3, strides: [2], dilation_rate: [2]}", "Conv1D.dilation_rate: a dilation_rate"),
    ("Conv2DTranspose: {filters: 2, kernel_size: 3, strides: 2, output_padding: 2}",
     "Conv2DTranspose.output_padding: expected each output_padding below the strides (2), got 2"),
    ("Conv2DTranspose: {filters: 2, kernel_size: 3, output_padding: 1}",
     "Conv2DTranspose.output_padding: expected each output_padding below the strides (1), got 1"),
    # the random layers' factors, as each holds them
    ("RandomContrast: {factor: 1.5}", "RandomContrast.factor: expected a number in [0, 1] or a list of two numbers, "
                                      "got 1.5"),
    ("RandomContrast: {factor: -0.1}", "RandomContrast.factor: expected a number in [0, 1]"),
    ("RandomRotation: {factor: 2}", "RandomRotation.factor: expected a number in [-1, 1]"),
    ("RandomBrightness: {factor: 2}", "RandomBrightness.factor: expected a number in [-1, 1]"),
    ("RandomZoom: {height_factor: -1.0}", "RandomZoom.height_factor: expected a number in (-1, 1]"),
    ("RandomZoom: {height_factor: 0.1, width_factor: 2}", "RandomZoom.width_factor: expected a number in (-1, 1]"),
    ("RandomTranslation: {height_factor: 2, width_factor: 0.1}", "RandomTranslation.height_factor: expected a number "
                                                                 "in [-1, 1]"),
])
def test_a_layer_argument_out_of_range_is_located(write_spec, layer, message):
    found = errors(write_spec, layer=layer)
    assert any(message in e for e in found), found


@pytest.mark.parametrize("optimizer, message", [
    ("{Adam: {learning_rate: -0.001}}", "train.optimizer.Adam.learning_rate: Adam.learning_rate: expected a number "
                                        "≥ 0, got -0.001"),
    ("{class_name: RMSprop, config: {learning_rate: -1}}", "RMSprop.learning_rate: expected a number ≥ 0"),
    ("{SGD: {momentum: 1.5}}", "SGD.momentum: expected a number in [0, 1], got 1.5"),
    ("{SGD: {momentum: -0.1}}", "SGD.momentum: expected a number in [0, 1], got -0.1"),
    ("{Nadam: {beta_1: 1.5}}", "Nadam.beta_1: expected a number in [0, 1], got 1.5"),
    ("{Adam: {beta_1: 1.0}}", "Adam.beta_1: expected a number in [0, 1) (at 1 the bias correction divides by 0: the "
                              "first update is NaN), got 1.0"),
    ("{Nadam: {beta_2: 1}}", "Nadam.beta_2: expected a number in [0, 1) (at 1 the bias correction divides by 0"),
    ("{Muon: {adam_beta_1: 1.0}}", "Muon.adam_beta_1: expected a number in [0, 1) (at 1 the bias correction"),
    ("{RMSprop: {rho: -0.1}}", "RMSprop.rho: expected a number in [0, 1], got -0.1"),
    ("{Adam: {epsilon: -1.0e-7}}", "Adam.epsilon: expected a number ≥ 0, got -1e-07"),
    ("{Lion: {beta_1: 0}}", "Lion.beta_1: expected a number in (0, 1] (at 0 Lion is sign descent, which Keras "
                            "refuses), got 0"),
    ("{Lion: {beta_1: 1.5}}", "Lion.beta_1: expected a number in (0, 1]"),
    ("{Ftrl: {learning_rate_power: 0.5}}", "Ftrl.learning_rate_power: expected a number ≤ 0, got 0.5"),
    ("{Ftrl: {l1_regularization_strength: -1}}", "Ftrl.l1_regularization_strength: expected a number ≥ 0, got -1"),
    ("{Ftrl: {l2_regularization_strength: -1}}", "Ftrl.l2_regularization_strength: expected a number ≥ 0, got -1"),
    ("{Ftrl: {l2_shrinkage_regularization_strength: -1}}", "Ftrl.l2_shrinkage_regularization_strength: expected"),
    ("{Ftrl: {initial_accumulator_value: -1}}", "Ftrl.initial_accumulator_value: expected a number ≥ 0, got -1"),
    ("{SGD: {learning_rate: {PiecewiseConstantDecay: {boundaries: [10, 20], values: [1.0, 0.5]}}}}",
     "train.optimizer.SGD.learning_rate.PiecewiseConstantDecay.values: PiecewiseConstantDecay.values: expected 3 "
     "values (one per interval of the 2 boundaries), got 2"),
    ("{Adam: {clipnorm: -1}}", "Adam.clipnorm: expected a number > 0, got -1"),
    ("{AdamW: {weight_decay: -0.1}}", "AdamW.weight_decay: expected a number ≥ 0"),
    ("{Adam: {gradient_accumulation_steps: 1}}", "Adam.gradient_accumulation_steps: expected an integer ≥ 2"),
    ("{Adam: {learning_rate: {ExponentialDecay: {initial_learning_rate: -0.1, decay_steps: 10, decay_rate: 0.9}}}}",
     "ExponentialDecay.initial_learning_rate: expected a number ≥ 0, got -0.1"),
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
        "  epochs: 1\n", "  phases:\n    - {epochs: 1, learning_rate: {CosineDecay: {initial_learning_rate: -1,"
                         " decay_steps: 10}}}\n")
    try:
        load_spec(write_spec(text))
        found = []
    except SpecError as e:
        found = [str(x) for x in e.errors]
    assert any("train.phases[0].learning_rate.CosineDecay.initial_learning_rate: CosineDecay.initial_learning_rate: "
               "expected a number ≥ 0, got -1" in e for e in found), found


@pytest.mark.parametrize("layer", [
    "Dense: {units: 1}", "Dropout: {rate: 0.0}", "Dropout: {rate: 0.99}", "Conv1D: {filters: 2, kernel_size: [3]}",
    "Conv1D: {filters: 2, kernel_size: 3, padding: causal, strides: 1, dilation_rate: 2}",
    "MaxPooling1D: {pool_size: 2, strides: null}", "ZeroPadding1D: {padding: [1, 2]}", "GaussianNoise: {stddev: 1}",
    "BatchNormalization: {momentum: 0.0, epsilon: 0.00001}", "LeakyReLU: {negative_slope: 0}",
    "Dense: {units: '${data.num_classes}'}", "Embedding: {input_dim: 1, output_dim: 1}",
    "Dropout: {rate: 1}", "LSTM: {units: 2, dropout: 1.0}", "BatchNormalization: {epsilon: 0}",
    "LayerNormalization: {epsilon: 0}", "Conv2D: {filters: 2, kernel_size: [3, 3], padding: SAME}",
    "Conv1D: {filters: 2, kernel_size: 3, strides: 2, dilation_rate: 1}", "Cropping2D: {cropping: [[1, 2], 3]}",
    "ZeroPadding3D: {padding: [[1, 2], [1, 2], 1]}", "Cropping1D: {cropping: [1, 2]}",
    "DepthwiseConv2D: {kernel_size: 3, strides: 2, dilation_rate: 2}",
    "Conv2DTranspose: {filters: 2, kernel_size: 3, strides: [2, 1], output_padding: [1, 0]}",
    "RandomContrast: {factor: [0.1, 0.5]}", "RandomRotation: {factor: -1}", "RandomZoom: {height_factor: 1.0}",
    "RandomTranslation: {height_factor: -1.0, width_factor: 1.0}",
])
def test_values_keras_accepts_pass(write_spec, layer):
    found = [e for e in errors(write_spec, layer=layer) if "expected" in e]
    assert found == []


# Edge values Keras builds (the slow test below builds each): validate must take them too.
ACCEPTED_OPTIMIZERS = [
    "{Adam: {learning_rate: 0.0}}",
    "{Adam: {learning_rate: {CosineDecay: {initial_learning_rate: 0.0, decay_steps: 10, warmup_target: 0.003, "
    "warmup_steps: 10}}}}",
    "{Lion: {beta_1: 1.0}}", "{Adam: {epsilon: 0, beta_2: 1.0}}", "{Nadam: {beta_1: 1.0}}", "{RMSprop: {rho: 1.0}}",
    "{Adadelta: {rho: 1.0}}", "{Ftrl: {learning_rate_power: 0, l1_regularization_strength: 0}}",
    "{SGD: {learning_rate: {PiecewiseConstantDecay: {boundaries: [10, 20], values: [1.0, 0.5, 0.1]}}}}",
]


@pytest.mark.parametrize("optimizer", [
    "{SGD: {learning_rate: 0.5, momentum: 1}}", "{Adam: {beta_1: 0, beta_2: 0.999, epsilon: 1.0e-7}}",
    "{Adam: {gradient_accumulation_steps: 2, weight_decay: 0, clipnorm: 1}}",
    "{Adam: {learning_rate: {CosineDecay: {initial_learning_rate: 0.1, decay_steps: 1, warmup_steps: 0}}}}",
    *ACCEPTED_OPTIMIZERS,
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


@pytest.mark.parametrize("callback, message", [
    ("{ReduceLROnPlateau: {factor: 1.0}}", "train.callbacks[0].ReduceLROnPlateau.factor: ReduceLROnPlateau.factor: "
                                           "expected a number < 1 (the rate is multiplied by it), got 1.0"),
])
def test_a_callback_argument_out_of_range_is_located(write_spec, callback, message):
    path = write_spec(SPEC.format(layer="Dense: {units: 2}", optimizer="adam", loss="mse")
                      + f"  callbacks: [{callback}]\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    found = [str(x) for x in caught.value.errors]
    assert any(message in e for e in found), found


@pytest.mark.parametrize("layer", ["Conv2D: {filters: 2, kernel_size: [3]}",
                                   "Conv2D: {filters: 2, kernel_size: 3, padding: 1}"])
def test_pipe_validate_exits_1_on_a_window_its_layer_refuses(write_spec, layer):
    path = write_spec(SPEC.format(layer=layer, optimizer="adam", loss="mse"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:15:" in result.output and "Traceback" not in result.output


def _keras_layer(text: str):
    """A layer as a spec writes it ({Name: {arguments}}), built by Keras."""
    import keras
    import yaml

    ((name, arguments),) = yaml.safe_load("{" + text + "}").items()
    return getattr(keras.layers, name)(**arguments)


@pytest.mark.slow
@pytest.mark.parametrize("layer", [
    "Dropout: {rate: 1}", "LSTM: {units: 2, dropout: 1.0}", "BatchNormalization: {epsilon: 0}",
    "LayerNormalization: {epsilon: 0}", "Conv2D: {filters: 2, kernel_size: [3, 3], padding: SAME}",
    "Cropping2D: {cropping: [[1, 2], 3]}", "ZeroPadding3D: {padding: [[1, 2], [1, 2], 1]}",
    "Cropping1D: {cropping: [1, 2]}", "DepthwiseConv2D: {kernel_size: 3, strides: 2, dilation_rate: 2}",
    "Conv2DTranspose: {filters: 2, kernel_size: 3, strides: [2, 1], output_padding: [1, 0]}",
    "RandomContrast: {factor: [0.1, 0.5]}", "RandomRotation: {factor: -1}", "RandomZoom: {height_factor: 1.0}",
    "RandomTranslation: {height_factor: -1.0, width_factor: 1.0}",
])
def test_edge_values_validate_accepts_keras_builds(write_spec, layer):
    assert [e for e in errors(write_spec, layer=layer) if "expected" in e or "cannot" in e] == []
    _keras_layer(layer)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ACCEPTED_OPTIMIZERS)
def test_edge_optimizers_validate_accepts_keras_builds(optimizer):
    import keras
    import yaml

    ((name, arguments),) = yaml.safe_load(optimizer).items()
    schedule = arguments.get("learning_rate")
    if isinstance(schedule, dict):
        ((kind, config),) = schedule.items()
        arguments["learning_rate"] = getattr(keras.optimizers.schedules, kind)(**config)
        assert float(arguments["learning_rate"](5)) >= 0  # the warmup's first steps run
    getattr(keras.optimizers, name)(**arguments)


@pytest.mark.slow
@pytest.mark.parametrize("layer", [
    "Conv2D: {filters: 2, kernel_size: [3]}", "Conv2D: {filters: 2, kernel_size: [3, 3, 3]}",
    "MaxPooling2D: {pool_size: [2]}", "UpSampling2D: {size: [2]}", "UpSampling1D: {size: [2]}",
    "Cropping2D: {cropping: [1, 2, 3]}", "ZeroPadding2D: {padding: [1, 2, 3]}",
    "Conv2D: {filters: 2, kernel_size: 3, padding: causal}",
    "Conv2D: {filters: 2, kernel_size: 3, strides: 2, dilation_rate: 2}",
    "Conv2DTranspose: {filters: 2, kernel_size: 3, strides: 2, output_padding: 2}",
    "RandomContrast: {factor: 1.5}", "RandomRotation: {factor: 2}", "RandomZoom: {height_factor: -1.0}",
    "RandomTranslation: {height_factor: 2, width_factor: 0.1}",
])
def test_what_validate_rejects_keras_rejects_too_by_layer(write_spec, layer):
    assert errors(write_spec, layer=layer) != []
    with pytest.raises((ValueError, TypeError)):
        _keras_layer(layer)


@pytest.mark.slow
@pytest.mark.parametrize("kind, name, arguments", [
    ("optimizers", "Lion", {"beta_1": 0.0}), ("optimizers", "Ftrl", {"learning_rate_power": 0.5}),
    ("optimizers", "Ftrl", {"l2_regularization_strength": -1.0}),
    ("schedules", "PiecewiseConstantDecay", {"boundaries": [10, 20], "values": [1.0, 0.5]}),
    ("callbacks", "ReduceLROnPlateau", {"factor": 1.0}),
])
def test_what_validate_rejects_keras_rejects_too_beyond_layers(kind, name, arguments):
    import keras

    from runner.spec.argument_shapes import shape_problems
    from runner.spec.argument_values import value_problem

    refused = shape_problems(name, arguments) + [
        problem for argument, value in arguments.items() if (problem := value_problem(kind, argument, value, name))]
    assert refused
    module = keras.optimizers.schedules if kind == "schedules" else getattr(keras, kind)
    with pytest.raises(ValueError):
        getattr(module, name)(**arguments)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer, argument", [
    ("Adam", "beta_1"), ("AdamW", "beta_1"), ("Adamax", "beta_1"), ("Lamb", "beta_1"), ("Lamb", "beta_2"),
    ("Muon", "adam_beta_1"), ("Nadam", "beta_2"), ("ScheduleFreeAdamW", "beta_2"),
    ("Adam", "beta_2"), ("Nadam", "beta_1"), ("Lion", "beta_1"), ("RMSprop", "rho"), ("Adadelta", "rho"),
])
def test_a_decay_of_1_is_refused_exactly_where_keras_trains_to_nan(optimizer, argument):
    """1 passes validate where Keras trains with it, and is refused where every update is NaN."""
    import keras
    import numpy as np

    from runner.spec.argument_values import value_problem

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(getattr(keras.optimizers, optimizer)(**{argument: 1.0}), "mse")
    x = np.linspace(-1.0, 1.5, 32)[:, None]
    model.fit(x, 2 * x + 0.3, epochs=2, verbose=0)
    finite = all(np.isfinite(w).all() for w in model.get_weights())
    assert (value_problem("optimizers", argument, 1.0, optimizer) is None) == finite


AUGMENTED = SPEC.replace("      - batch: {{batch_size: 4}}\n",
                         "      - map: {{ops: [{{augment: {{layers: [{augment}]}}}}]}}\n"
                         "      - batch: {{batch_size: 4}}\n")


@pytest.mark.parametrize("augment, message", [
    ("{Dense: {units: 1}}", "data.train.stages[0].map.ops[0].augment.layers[0].Dense: Dense is not an augmentation "
                            "layer"),
    ("Flatten", "Flatten is not an augmentation layer"),
    ("{Conv2D: {filters: 2, kernel_size: 3}}", "Conv2D is not an augmentation layer"),
    ("{RandomFlipp: {mode: horizontal}}", "unknown layer 'RandomFlipp' (did you mean 'RandomFlip'?)"),
    ("{RandomRotation: {factor: 2}}", "RandomRotation.factor: expected a number in [-1, 1]"),
])
def test_an_augment_layer_is_a_known_preprocessing_or_noise_layer(write_spec, augment, message):
    path = write_spec(AUGMENTED.format(augment=augment, layer="Dense: {units: 2}", optimizer="adam", loss="mse"))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    found = [str(x) for x in caught.value.errors]
    assert any(message in e for e in found), found


@pytest.mark.parametrize("augment", ["{RandomFlip: {mode: horizontal}}", "{GaussianNoise: {stddev: 0.1}}",
                                     "{Rescaling: {scale: 0.5}}", "{Dropout: {rate: 0.1}}", "RandomInvert"])
def test_preprocessing_and_noise_layers_augment(write_spec, augment):
    load_spec(write_spec(AUGMENTED.format(augment=augment, layer="Dense: {units: 2}", optimizer="adam", loss="mse")))
