"""Models and identifiers from specs: Keras Sequential/functional, tf.Module, located errors."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from runner.spec.errors import SpecError
from runner.spec import load_spec

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from runner.models import identifiers  # noqa: E402
from runner.models import build_model  # noqa: E402
from runner.models.modules import scalar_variables  # noqa: E402
from runner.train.loss_check import check_loss_fits  # noqa: E402

HEAD = """\
version: 1
name: models
data:
  train:
    source:
      synthetic:
        x: {linspace: {start: -2.0, stop: 2.0, num: 21}}
        y: {linear: {w: 3.0, b: 2.0}}
"""

TRAIN = """\
train:
  loop: {loop}
  epochs: 1
  loss: {loss}
  optimizer: {optimizer}
"""


def load(tmp_path, model: str, *, loop="fit", loss="mse", optimizer="sgd"):
    """A spec with the given `model:` body (YAML, unindented), saved as tmp_path/spec.yaml."""
    text = HEAD + "model:\n" + textwrap.indent(textwrap.dedent(model).strip(), "  ") + "\n"
    text += TRAIN.format(loop=loop, loss=loss, optimizer=optimizer)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return load_spec(path)


def load_unchecked(tmp_path, model: str, **train):
    """Like `load`, without validate's checks: what Keras itself says at build time.

    `pipe validate` reports these mistakes first (tests/mistakes/); the build still wraps
    Keras's own errors for when the installed Keras differs from the static catalog.
    """
    from runner.spec import yamlfile
    from runner.spec.document import Spec

    try:
        return load(tmp_path, model, **train)
    except SpecError:
        path = tmp_path / "spec.yaml"
        doc = yamlfile.parse(path.read_text(), file=path)
        return Spec(path, doc.data, doc.key_marks, doc.value_marks)


def error_of(call) -> str:
    with pytest.raises(SpecError) as caught:
        call()
    return str(caught.value)


def test_sequential_resolves_nested_identifiers(tmp_path):
    spec = load(tmp_path, """
        sequential:
          input_shape: [4]
          layers:
            - Dense: {units: 8, activation: relu, kernel_initializer: {HeNormal: {seed: 1}},
                      kernel_regularizer: {L2: {l2: 0.01}}}
            - {class_name: Dropout, config: {rate: 0.1}}
            - Dense: {units: 3, kernel_constraint: {MaxNorm: {max_value: 2.0}}}
    """)
    model = build_model(spec.doc["model"], spec)
    dense = model.layers[0]
    assert isinstance(dense.kernel_initializer, keras.initializers.HeNormal)
    assert isinstance(dense.kernel_regularizer, keras.regularizers.L2)
    assert dense.activation is keras.activations.relu
    assert isinstance(model.layers[1], keras.layers.Dropout)
    assert isinstance(model.layers[2].kernel_constraint, keras.constraints.MaxNorm)
    assert model(np.zeros((5, 4), np.float32)).shape == (5, 3)
    assert len(model.losses) == 1  # the L2 penalty is part of the model


def test_sequential_without_input_shape_builds_on_first_call(tmp_path):
    spec = load(tmp_path, """
        sequential:
          layers: [Flatten, {Dense: {units: 2}}]
    """)
    model = build_model(spec.doc["model"], spec)
    assert model(np.zeros((3, 2, 2), np.float32)).shape == (3, 2)


def test_functional_with_two_inputs_and_two_outputs(tmp_path):
    spec = load(tmp_path, """
        functional:
          inputs:
            image: {shape: [4, 4]}
            extra: {shape: [2]}
          layers:
            - {name: flat, layer: Flatten, inputs: [image]}
            - {name: joined, layer: Concatenate, inputs: [flat, extra]}
            - {name: hidden, layer: {Dense: {units: 5, activation: relu}}, inputs: [joined]}
            - {name: logits, layer: {Dense: {units: 3}}, inputs: [hidden]}
            - {name: value, layer: {Dense: {units: 1}}, inputs: [hidden]}
          outputs: [logits, value]
    """)
    model = build_model(spec.doc["model"], spec)
    logits, value = model({"image": np.zeros((2, 4, 4), np.float32), "extra": np.ones((2, 2), np.float32)})
    assert logits.shape == (2, 3) and value.shape == (2, 1)
    assert [layer.name for layer in model.layers if layer.name in ("hidden", "logits")] == ["hidden", "logits"]


def test_functional_unknown_input_is_located(tmp_path):
    # Found by validate now (runner/spec/graph.py), with the builder's wording.
    assert error_of(lambda: load(tmp_path, """
        functional:
          inputs: {x: {shape: [2]}}
          layers:
            - {name: out, layer: {Dense: {units: 1}}, inputs: [y]}
          outputs: [out]
    """)) == (
        f"{tmp_path / 'spec.yaml'}:13:58: model.functional.layers[0].inputs[0]: unknown input 'y' (known so far: 'x')"
    )


def test_linear_module_holds_scalar_w_and_b(tmp_path):
    spec = load(tmp_path, "module: {linear: {w: 5.0, b: 0.5}}", loop="custom")
    model = build_model(spec.doc["model"], spec)
    assert {k: float(v.numpy()) for k, v in scalar_variables(model).items()} == {"b": 0.5, "w": 5.0}
    np.testing.assert_allclose(model(tf.constant([[1.0], [2.0]])).numpy(), [[5.5], [10.5]])


def test_dense_module_is_relu_of_affine_with_seeded_normal_weights(tmp_path):
    spec = load(tmp_path, "module: {dense: {in_features: 3, out_features: 2, stddev: 1.0}}", loop="custom")
    first = build_model(spec.doc["model"], spec, seed=7)
    second = build_model(spec.doc["model"], spec, seed=7)
    np.testing.assert_array_equal(first.w.numpy(), second.w.numpy())
    assert first.w.shape == (3, 2) and not np.any(first.b.numpy())
    x = tf.constant([[1.0, -2.0, 0.5]])
    np.testing.assert_allclose(first(x).numpy(), np.maximum(x.numpy() @ first.w.numpy(), 0.0), rtol=1e-6)


def test_sequential_module_stacks_dense_layers(tmp_path):
    spec = load(tmp_path, """
        module:
          sequential:
            - dense: {in_features: 3, out_features: 3}
            - dense: {in_features: 3, out_features: 2}
    """, loop="custom")
    model = build_model(spec.doc["model"], spec)
    assert model(tf.ones([4, 3])).shape == (4, 2)
    assert len(model.trainable_variables) == 4


def test_module_bad_argument_is_located(tmp_path):
    spec = load(tmp_path, "module: {dense: {in_features: 3, out_features: 2, activation: rellu}}", loop="custom")
    assert error_of(lambda: build_model(spec.doc["model"], spec)) == (
        f"{spec.file}:10:12: model.module.dense: Could not interpret activation function identifier: rellu"
    )


def test_unknown_layer_suggests_the_closest_keras_layer(tmp_path):
    spec = load_unchecked(tmp_path, """
        sequential:
          input_shape: [4]
          layers:
            - Dense: {units: 8}
            - Dens: {units: 10}
    """)
    assert error_of(lambda: build_model(spec.doc["model"], spec)) == (
        f"{spec.file}:14:9: model.sequential.layers[1]: unknown layer 'Dens' (did you mean 'Dense'?)"
    )


def test_bad_layer_argument_is_located_at_the_layer(tmp_path):
    spec = load_unchecked(tmp_path, """
        sequential:
          input_shape: [4]
          layers:
            - Flatten
            - Dense: {units: 8, activation: relu}
            - Dense: {units: 10, use_bais: false}
    """)
    assert error_of(lambda: build_model(spec.doc["model"], spec)) == (
        f"{spec.file}:15:9: model.sequential.layers[2].Dense: "
        "Unrecognized keyword arguments passed to Dense: {'use_bais': False}"
    )


def test_layer_that_does_not_fit_its_input_is_located(tmp_path):
    spec = load(tmp_path, """
        sequential:
          input_shape: [4]
          layers:
            - Reshape: {target_shape: [3, 3]}
    """)
    message = error_of(lambda: build_model(spec.doc["model"], spec))
    assert message.startswith(f"{spec.file}:13:9: model.sequential.layers[0]: ")
    assert "\n" not in message


def test_unknown_optimizer_and_loss_suggest_keras_names(tmp_path):
    spec = load_unchecked(tmp_path, "sequential: {layers: [{Dense: {units: 1}}]}", loss="msee", optimizer="adamm")
    assert error_of(lambda: identifiers.get_optimizer(spec.doc["train"]["optimizer"], spec)) == (
        f"{spec.file}:15:3: train.optimizer: unknown optimizer 'adamm' (did you mean 'adam'?)"
    )
    assert error_of(lambda: identifiers.get_loss(spec.doc["train"]["loss"], spec)) == (
        f"{spec.file}:14:3: train.loss: unknown loss 'msee' (did you mean 'mse'?)"
    )


def test_bad_optimizer_argument_is_located(tmp_path):
    spec = load_unchecked(tmp_path, "sequential: {layers: [{Dense: {units: 1}}]}", optimizer="{Adam: {lr: 0.1}}")
    assert error_of(lambda: identifiers.get_optimizer(spec.doc["train"]["optimizer"], spec)) == (
        f"{spec.file}:15:15: train.optimizer.Adam: Argument(s) not recognized: {{'lr': 0.1}}"
    )


def test_learning_rate_schedule_in_the_short_form(tmp_path):
    spec = load(
        tmp_path, "sequential: {layers: [{Dense: {units: 1}}]}",
        optimizer="{SGD: {learning_rate: {ExponentialDecay: {initial_learning_rate: 0.1, decay_steps: 1, decay_rate: 0.5}}}}",
    )
    optimizer = identifiers.get_optimizer(spec.doc["train"]["optimizer"], spec)
    schedule = optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.ExponentialDecay)
    assert float(schedule(2)) == pytest.approx(0.025)


def test_metrics_keep_strings_for_compile_and_resolve_dicts(tmp_path):
    spec = load(tmp_path, "sequential: {layers: [{Dense: {units: 1}}]}")
    resolved = identifiers.get_metrics(["accuracy", "mae", {"AUC": {"num_thresholds": 10}}], spec)
    assert resolved[:2] == ["accuracy", "mae"]
    assert isinstance(resolved[2], keras.metrics.AUC) and resolved[2].num_thresholds == 10
    assert error_of(lambda: identifiers.get_metrics(["mae", "acuracy"], spec)) == (
        f"{spec.file}:11:1: train.metrics[1]: unknown metric 'acuracy' (did you mean 'accuracy'?)"
    )


def test_callbacks_with_relative_paths_go_into_the_run_directory(tmp_path):
    spec = load(tmp_path, "sequential: {layers: [{Dense: {units: 1}}]}")
    from runner.outputs.run_dir import RunDir

    (tmp_path / "run").mkdir()
    run_dir = RunDir(tmp_path / "run")
    callbacks = identifiers.get_callbacks(
        [{"CSVLogger": {"filename": "log.csv"}}, {"ModelCheckpoint": {"filepath": "best.keras"}},
         {"EarlyStopping": {"patience": 2}}],
        spec, run_dir,
    )
    assert callbacks[0].filename == str(tmp_path / "run" / "log.csv")
    assert callbacks[1].filepath == str(tmp_path / "run" / "best.keras")
    assert callbacks[2].patience == 2
    # an absolute path no longer passes through: a spec writes only inside its run directory
    assert error_of(lambda: identifiers.get_callbacks(
        [{"ModelCheckpoint": {"filepath": str(tmp_path / "abs.keras")}}], spec, run_dir)) == (
        f"{spec.file}:12:3: train.callbacks[0].ModelCheckpoint.filepath: {str(tmp_path / 'abs.keras')!r} is an "
        "absolute path: a spec writes only inside its run directory; give a path relative to it, such as "
        "'logs/train.csv'")
    assert error_of(lambda: identifiers.get_callbacks(["EarlyStoping"], spec, run_dir)) == (
        f"{spec.file}:11:1: train.callbacks[0]: unknown callback 'EarlyStoping' (did you mean 'EarlyStopping'?)"
    )


def test_loss_that_does_not_fit_the_labels_is_located_at_train_loss(tmp_path):
    spec = load(
        tmp_path, "sequential: {input_shape: [4], layers: [{Dense: {units: 3}}]}",
        loss="{SparseCategoricalCrossentropy: {from_logits: true}}",
    )
    model = build_model(spec.doc["model"], spec)
    one_hot = (tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None, 3], tf.float32))
    loss = identifiers.get_loss(spec.doc["train"]["loss"], spec)
    assert error_of(lambda: check_loss_fits(loss, model, one_hot, spec)) == (
        f"{spec.file}:14:3: train.loss: loss 'sparse_categorical_crossentropy' does not fit labels "
        "(batch, 3) float32 and predictions (batch, 3) float32: Argument `output` must have rank "
        "(ndim) `target.ndim - 1`. Received: target.shape=(2, 3), output.shape=(2, 3)"
    )
