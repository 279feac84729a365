"""The training loops on small in-memory datasets: fit and the GradientTape custom loop."""

from __future__ import annotations

import numpy as np
import pytest

from runner.spec import load_spec

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from runner.train.devices import DeviceSetup  # noqa: E402
from runner.models.identifiers import get_loss, get_metrics, get_optimizer  # noqa: E402
from runner.models.modules import Linear  # noqa: E402
from runner.train.custom import CustomLoop
from runner.train.fit import fit  # noqa: E402

SPEC = """\
version: 1
name: loops
data:
  train:
    source:
      synthetic:
        x: {linspace: {start: -2.0, stop: 2.0, num: 21}}
        y: {linear: {w: 3.0, b: 2.0}}
model:
  module: {linear: {w: 5.0, b: 0.0}}
train:
  loop: custom
  epochs: 3
  loss: mse
  optimizer: {SGD: {learning_rate: 0.1}}
  report:
    initial: "W = {w:.2f}, b = {b:.2f}, loss={loss:.5f}"
    epoch: "Epoch {epoch}: W = {w:.2f}, b = {b:.2f}, loss={loss:.5f}"
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "loops.yaml"
    path.write_text(SPEC)
    return load_spec(path)


def default_setup(jit_compile=False, mixed_precision=None) -> DeviceSetup:
    return DeviceSetup(
        strategy=tf.distribute.get_strategy(), num_replicas=1, is_chief=True,
        jit_compile=jit_compile, mixed_precision=mixed_precision, summary="", manifest={},
    )


def regression_data(n=64, batch=16, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(-2, 2, n, dtype=np.float32)[:, None]
    y = (3 * x + 2 + rng.normal(size=x.shape)).astype(np.float32)
    return x, y, tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def keras_model(seed=1):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])


def custom_loop(spec, model, dataset, *, metrics=(), setup=None, report=None, **kwargs):
    return CustomLoop(
        model, loss=get_loss("mse", spec), optimizer=get_optimizer({"SGD": {"learning_rate": 0.1}}, spec),
        metrics=get_metrics(list(metrics), spec), element_spec=dataset.element_spec,
        setup=setup or default_setup(), report=report, spec=spec, **kwargs,
    )


def test_module_loop_reports_and_records_trajectories(spec, capsys):
    x, y, dataset = regression_data(n=21, batch=21)
    model = Linear(w=5.0, b=0.0)
    loop = custom_loop(spec, model, dataset, report=spec.doc["train"]["report"], verbose=0)
    result = loop.fit(dataset, epochs=3)

    lines = capsys.readouterr().out.splitlines()
    initial_loss = float(np.mean((5.0 * x - y) ** 2))
    assert lines[0] == f"W = 5.00, b = 0.00, loss={initial_loss:.5f}"
    assert [line.split(":")[0] for line in lines[1:]] == ["Epoch 1", "Epoch 2", "Epoch 3"]  # numbered from 1, as Keras does
    # Full-batch gradient descent by hand: the loop must take exactly these steps.
    w, b = 5.0, 0.0
    for _ in range(3):
        error = (w * x + b - y)[:, 0]
        w, b = w - 0.1 * 2 * np.mean(error * x[:, 0]), b - 0.1 * 2 * np.mean(error)
    assert result.trajectories["w"][0] == 5.0 and result.trajectories["b"][0] == 0.0
    assert result.trajectories["w"][-1] == pytest.approx(w, rel=1e-5)
    assert result.trajectories["b"][-1] == pytest.approx(b, rel=1e-5)
    assert len(result.trajectories["w"]) == 4 and list(result.history) == ["loss"]
    assert result.history["loss"][0] == pytest.approx(initial_loss, rel=1e-5)
    assert lines[3] == f"Epoch 3: W = {w:.2f}, b = {b:.2f}, loss={result.history['loss'][2]:.5f}"


def test_quiet_prints_nothing(spec, capsys):
    _, _, dataset = regression_data()
    loop = custom_loop(spec, Linear(5.0, 0.0), dataset, report=spec.doc["train"]["report"])
    loop.fit(dataset, epochs=2, quiet=True)
    assert capsys.readouterr().out == ""


def test_report_with_unknown_field_is_located(spec):
    _, _, dataset = regression_data()
    loop = custom_loop(spec, Linear(5.0, 0.0), dataset, report={"epoch": "{epoch}: {weight:.2f}"})
    with pytest.raises(Exception) as caught:
        loop.fit(dataset, epochs=1, quiet=True)
    assert str(caught.value) == (
        f"{spec.file}:18:5: train.report.epoch: unknown field 'weight' in the report template "
        "(fields: loss, b, w, epoch)"
    )


def test_custom_loop_matches_fit_for_a_keras_model(spec):
    _, _, dataset = regression_data()
    validation = dataset.take(1)
    fitted = keras_model()
    fitted.compile(optimizer=get_optimizer({"SGD": {"learning_rate": 0.1}}, spec), loss="mse", metrics=["mae"])
    by_fit = fit(fitted, train=dataset, validation=validation, epochs=3, verbose=0)

    model = keras_model()
    loop = custom_loop(spec, model, dataset, metrics=["mae"], verbose=0)
    by_loop = loop.fit(dataset, validation=validation, epochs=3)

    assert list(by_loop.history) == list(by_fit.history) == ["loss", "mae", "val_loss", "val_mae"]
    for key in by_fit.history:
        np.testing.assert_allclose(by_loop.history[key], by_fit.history[key], rtol=1e-4)
    for mine, theirs in zip(model.get_weights(), fitted.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)
    evaluated = loop.evaluate(validation)
    assert evaluated["loss"] == pytest.approx(fitted.evaluate(validation, verbose=0, return_dict=True)["loss"], rel=1e-4)


def test_custom_loop_drives_keras_callbacks(spec, tmp_path):
    _, _, dataset = regression_data()
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="loss", min_delta=1e6, patience=1),
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
    ]
    loop = custom_loop(spec, keras_model(), dataset, callbacks=callbacks, verbose=0)
    result = loop.fit(dataset, epochs=10)
    assert result.epochs_run == 2  # EarlyStopping set stop_training after the second epoch
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,loss") and len(rows) == 3


def test_class_weight_scales_the_loss(spec):
    x = np.zeros((8, 2), np.float32)
    labels = np.array([0, 1] * 4)
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(4)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, kernel_initializer="zeros")])
    loss = get_loss({"SparseCategoricalCrossentropy": {"from_logits": True}}, spec)
    weighted = CustomLoop(
        model, loss=loss, optimizer=keras.optimizers.SGD(0.0), metrics=[], element_spec=dataset.element_spec,
        setup=default_setup(), class_weight={0: 1.0, 1: 3.0}, verbose=0,
    )
    # Zero logits: every example costs log(2); weights 1 and 3 average to 2.
    assert weighted.fit(dataset, epochs=1).history["loss"][0] == pytest.approx(2 * np.log(2), rel=1e-5)


def test_jit_compiled_step_trains_like_the_plain_one(spec):
    _, _, dataset = regression_data()
    plain = custom_loop(spec, Linear(5.0, 0.0), dataset, verbose=0).fit(dataset, epochs=2)
    jitted = custom_loop(spec, Linear(5.0, 0.0), dataset, setup=default_setup(jit_compile=True), verbose=0)
    assert jitted._train._jit_compile is True
    result = jitted.fit(dataset, epochs=2)
    np.testing.assert_allclose(result.history["loss"], plain.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(result.trajectories["w"], plain.trajectories["w"], rtol=1e-5)


def test_mixed_float16_uses_a_loss_scale_optimizer(spec):
    _, _, dataset = regression_data()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras_model()
        loop = custom_loop(spec, model, dataset, setup=default_setup(mixed_precision="mixed_float16"), verbose=0)
        result = loop.fit(dataset, epochs=3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(loop.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.layers[0].compute_dtype == "float16"
    assert all(np.isfinite(result.history["loss"]))
    assert result.history["loss"][-1] < result.history["loss"][0]
