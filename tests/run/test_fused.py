"""The fused engine: same steps as Keras `fit`, exact resume, the engine choice and its fallbacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runner.spec import load_spec
from runner.spec.errors import SpecError

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from runner.data import build_datasets  # noqa: E402
from runner.data.in_memory import plan_in_memory  # noqa: E402
from runner.run.pipeline import run_spec  # noqa: E402
from runner.train.devices import DeviceSetup  # noqa: E402
from runner.train.engine import choose_engine, needs_batch_hooks  # noqa: E402
from runner.train.fused import FusedLoop, InMemoryData, epoch_order  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# A shuffled classification spec: 150 examples in batches of 32 (a last batch of 22).
CLASSIFIER = """\
version: 1
name: fused
seed: 3
data:
  train:
    source:
      synthetic:
        x: {normal: {num: 150}}
        y: {polynomial: {coefficients: [0.0, 1.0]}}
    stages:
      - map: {ops: [{reshape: {shape: [1]}}]}
      - cache: {}
      - shuffle: {buffer_size: all}
      - batch: {batch_size: 32}
      - prefetch: {}
  test:
    source:
      synthetic:
        x: {linspace: {start: -2.0, stop: 2.0, num: 40}}
        y: {linear: {w: 1.0, b: 0.0}}
    stages:
      - batch: {batch_size: 16}
model:
  sequential:
    input_shape: [1]
    layers:
      - Dense: {units: 8, activation: tanh}
      - Dense: {units: 1}
train:
  loop: fit
  engine: fused
  epochs: 4
  loss: mse
  optimizer: {Adam: {learning_rate: 0.01}}
  metrics: [mae]
  validate_on: test
  verbose: 0
outputs:
  dir: runs
  plots: {enabled: false}
"""


def default_setup(jit_compile=False) -> DeviceSetup:
    return DeviceSetup(strategy=tf.distribute.get_strategy(), num_replicas=1, is_chief=True,
                       jit_compile=jit_compile, mixed_precision=None, summary="", manifest={})


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(folder: Path, text: str, name="spec.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def read_json(path: Path):
    return json.loads(path.read_text())


# ------------------------------------------------------------------ same steps as fit


def _classifier(seed=0, dropout=False):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-3)),
        *([keras.layers.Dropout(0.5, seed=7)] if dropout else []),
        keras.layers.Dense(3),
    ])


def _optimizer():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=3, decay_rate=0.8)
    return keras.optimizers.Adam(learning_rate=schedule, clipnorm=1.0)


@pytest.mark.parametrize("jit_compile, rtol", [(False, 1e-6), (True, 1e-5)])
def test_fused_epochs_take_the_steps_fit_takes_in_the_same_order(jit_compile, rtol):
    """Fit on the examples in the fused engine's order gives the fused losses and weights.

    Both run the same float32 ops on the same batches (class weights, an L2 loss, a
    learning-rate schedule and clipnorm included; without XLA also Dropout, whose masks
    both draw from the layer's seed in the same order: XLA draws other random numbers).
    On this machine they agree bit for bit;
    the tolerance, relative 1e-6 on losses and weights after 3 epochs of 5 steps, leaves
    room only for a different summation order of a kernel, while a loss reported after
    the update or a missed class weight moves the losses by 1e-4 or more. Under
    jit_compile XLA fuses the full batches' steps, which rounds differently (measured here:
    the same losses, weights within 1e-7): relative 1e-5, absolute 1e-6.
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=150).astype(np.int32)
    class_weight = {0: 1.0, 1: 2.0, 2: 0.5}
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    data = InMemoryData(tf.constant(x), tf.constant(y), batch_size=32, shuffle=True, seed=11)

    fused_model = _classifier(dropout=not jit_compile)
    fused = FusedLoop(fused_model, loss=loss, optimizer=_optimizer(), metrics=["sparse_categorical_accuracy"],
                      element_spec=(tf.TensorSpec([None, 6]), tf.TensorSpec([None], tf.int32)),
                      setup=default_setup(jit_compile), class_weight=class_weight, verbose=0, train_data=data)
    fused_history = fused.fit(epochs=3, quiet=True).history
    compiled = [getattr(full_batches, "_jit_compile", False) for _, full_batches in fused._traced_steps.values()]
    assert compiled == [jit_compile]  # the training step (no validation here), XLA-compiled under jit_compile

    fit_model = _classifier(dropout=not jit_compile)
    fit_model.compile(optimizer=_optimizer(), loss=loss, metrics=["sparse_categorical_accuracy"])
    fit_losses, fit_accuracy = [], []
    for epoch in range(3):
        order = epoch_order(data, epoch).numpy()
        logs = fit_model.fit(x[order], y[order], batch_size=32, epochs=1, shuffle=False, verbose=0,
                             class_weight=class_weight).history
        fit_losses += logs["loss"]
        fit_accuracy += logs["sparse_categorical_accuracy"]

    assert sorted(fused_history) == ["loss", "sparse_categorical_accuracy"]
    np.testing.assert_allclose(fused_history["loss"], fit_losses, rtol=rtol)
    np.testing.assert_allclose(fused_history["sparse_categorical_accuracy"], fit_accuracy, rtol=rtol)
    for a, b in zip(fused_model.get_weights(), fit_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol / 10)


def test_compiling_the_xla_loop_ahead_changes_no_variable():
    """Under jit_compile the fused engine first calls its compiled loop for no batches, in a
    thread, so that XLA compiles it while the epoch's graph is traced. That call leaves every
    variable as it was (weights, optimizer slots and iterations, metrics holding an earlier
    evaluation's sums), and training afterwards takes the steps it takes without it."""
    rng = np.random.default_rng(1)
    data = InMemoryData(tf.constant(rng.normal(size=(150, 6)).astype(np.float32)),
                        tf.constant(rng.integers(0, 3, size=150).astype(np.int32)), batch_size=32, shuffle=True, seed=3)
    histories = []
    for ahead in (True, False):
        fused = FusedLoop(_classifier(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          optimizer=_optimizer(), metrics=["sparse_categorical_accuracy"],
                          element_spec=(tf.TensorSpec([None, 6]), tf.TensorSpec([None], tf.int32)),
                          setup=default_setup(True), verbose=0, train_data=data)
        if ahead:
            fused.evaluate_in_memory(data)  # metrics hold sums, as after a report's initial evaluation
            variables = [*fused.model.variables, *fused.optimizer.variables, *fused.loss_tracker.variables,
                         *(v for metric in fused.metrics for v in metric.variables)]
            before = [v.numpy().copy() for v in variables]
            assert any(value.any() for value in before[-4:])
            fused._compile_ahead()
            for variable, value in zip(variables, before):
                np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)
        else:
            fused._compile_ahead = lambda: None
        histories.append(fused.fit(epochs=2, quiet=True).history)
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-6)


# A recurrent model, a partial last batch (256 = 8 x 30 + 16): XLA compiles an LSTM's
# gradient loop only for a static batch shape.
RECURRENT = """\
version: 1
name: recurrent
seed: 1
data:
  train:
    source:
      synthetic:
        x: {normal: {num: 256}}
        y: {polynomial: {coefficients: [0.0, 1.0]}}
    stages:
      - map: {ops: [{reshape: {shape: [1, 1]}}]}
      - cache: {}
      - shuffle: {buffer_size: all}
      - batch: {batch_size: 30}
model:
  sequential:
    input_shape: [1, 1]
    layers:
      - LSTM: {units: 4}
      - Dense: {units: 1}
train:
  engine: fused
  epochs: 2
  loss: mse
  optimizer: {Adam: {learning_rate: 0.01}}
  verbose: 0
device:
  jit_compile: false
outputs:
  dir: runs
  plots: {enabled: false}
"""


def test_jit_compile_runs_the_fused_engine_with_xla_compiled_steps(workdir):
    """device.jit_compile on one device keeps the fused engine, its full batches' steps
    compiled with XLA (an LSTM too), and trains as without XLA up to rounding."""
    spec = write(workdir, RECURRENT)
    plain = run_spec(load_spec(spec), quiet=True)
    compiled = run_spec(load_spec(spec, overrides=["device.jit_compile=true"]), quiet=True)
    for run in (plain, compiled):
        manifest = read_json(run.run_dir / "manifest.json")
        assert (manifest["status"], manifest["engine"]) == ("completed", "fused")
    np.testing.assert_allclose(read_json(compiled.run_dir / "history.json")["loss"],
                               read_json(plain.run_dir / "history.json")["loss"], rtol=1e-5)


@pytest.mark.parametrize("engine", ["fused", "keras"])
def test_xla_is_off_and_said_so_when_keras_cannot_compile_the_model(workdir, capsys, engine):
    """A layer Keras cannot compile with XLA (Hashing) turns jit_compile off, as Keras does
    for fit: the run says so, trains, and its manifest records XLA off."""
    spec = write(workdir, RECURRENT.replace("LSTM: {units: 4}", "Hashing: {num_bins: 4}")
                 .replace("[1, 1]", "[1]").replace("engine: fused", f"engine: {engine}"))
    result = run_spec(load_spec(spec, overrides=["device.jit_compile=true", "train.verbose=0"]))
    manifest = read_json(result.run_dir / "manifest.json")
    assert (manifest["status"], manifest["engine"], manifest["devices"]["xla"]) == ("completed", engine, False)
    assert "xla: off (Keras cannot compile this model's layers with XLA)" in \
        capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("engine", ["fused", "keras"])
def test_a_model_xla_cannot_compile_is_a_located_error_at_jit_compile(workdir, engine):
    spec = write(workdir, RECURRENT.replace("LSTM: {units: 4}", "Resizing: {height: 2, width: 2, interpolation: area}")
                 .replace("[1, 1]", "[1, 1, 1]").replace("- Dense: {units: 1}", "- Flatten: {}\n      - Dense: {units: 1}")
                 .replace("engine: fused", f"engine: {engine}").replace("jit_compile: false", "jit_compile: true"))
    with pytest.raises(SpecError) as error:
        run_spec(load_spec(spec), quiet=True)
    assert str(error.value) == (
        f"{spec}:29:3: device.jit_compile: XLA cannot compile this model's training step "
        "(the op ResizeArea has no XLA_CPU_JIT kernel): set jit_compile: false")


def test_epoch_order_depends_on_seed_and_epoch_only():
    data = InMemoryData(tf.zeros([100, 2]), tf.zeros([100]), batch_size=10, shuffle=True, seed=5)
    first, again = epoch_order(data, 3).numpy(), epoch_order(data, 3).numpy()
    assert sorted(first) == list(range(100))
    assert (first == again).all()
    assert not (first == epoch_order(data, 4).numpy()).all()
    kept = InMemoryData(data.x, data.y, batch_size=10, shuffle=True, seed=5, reshuffle_each_iteration=False)
    assert (epoch_order(kept, 0).numpy() == epoch_order(kept, 7).numpy()).all()
    assert (epoch_order(InMemoryData(data.x, data.y, batch_size=10), 2).numpy() == np.arange(100)).all()


@pytest.mark.parametrize("drop_remainder, steps", [(False, 5), (True, 4)])
def test_last_partial_batch_follows_drop_remainder(drop_remainder, steps):
    data = InMemoryData(tf.zeros([150, 1]), tf.zeros([150]), batch_size=32, drop_remainder=drop_remainder)
    assert data.steps == steps


# ------------------------------------------------------------------ pipe run, fused


@pytest.mark.parametrize("engine", ["fused", "keras"])
def test_resumed_run_repeats_the_uninterrupted_runs_batches(workdir, engine):
    """The same batches, and the same Dropout masks: the layers' random generators are
    saved with the checkpoint."""
    spec = write(workdir, CLASSIFIER.replace("engine: fused", f"engine: {engine}").replace(
        "- Dense: {units: 1}", "- Dropout: {rate: 0.3}\n      - Dense: {units: 1}"))
    whole = run_spec(load_spec(spec), quiet=True)
    first = run_spec(load_spec(spec, overrides=["train.epochs=2"]), quiet=True)
    resumed = run_spec(load_spec(spec), quiet=True, resume_from=first.run_dir)

    assert read_json(whole.run_dir / "manifest.json")["engine"] == engine
    assert read_json(resumed.run_dir / "manifest.json")["engine"] == engine
    assert read_json(resumed.run_dir / "history.json") == read_json(whole.run_dir / "history.json")
    whole_model = keras.saving.load_model(whole.run_dir / "model.keras")
    resumed_model = keras.saving.load_model(resumed.run_dir / "model.keras")
    for a, b in zip(whole_model.get_weights(), resumed_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert resumed.metrics["test"] == whole.metrics["test"]


def test_fused_writes_what_fit_writes(workdir):
    """Same files, history keys and metrics layout as the Keras path; one line says which engine ran."""
    spec = write(workdir, CLASSIFIER)
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        fused = run_spec(load_spec(spec, overrides=["train.epochs=2"]))
    keras_run = run_spec(load_spec(spec, overrides=["train.epochs=2", "train.engine=keras"]), quiet=True)
    assert "engine: fused (data in memory, 1 KB; whole epochs per graph call)" in printed.getvalue().splitlines()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run_spec(load_spec(spec, overrides=["train.epochs=1", "outputs.checkpoints={every_epoch: true}"]))
    assert "engine: fused (data in memory, 1 KB; one graph call per epoch (each epoch checkpointed))" in \
        printed.getvalue().splitlines()
    fused_files = sorted(p.name for p in fused.run_dir.iterdir())
    assert fused_files == sorted(p.name for p in keras_run.run_dir.iterdir())
    fused_history = read_json(fused.run_dir / "history.json")
    assert sorted(fused_history) == sorted(read_json(keras_run.run_dir / "history.json"))
    assert [len(v) for v in fused_history.values()] == [2, 2, 2, 2]
    assert fused.metrics.keys() == keras_run.metrics.keys() and fused.metrics["test"].keys() == {"loss", "mae"}
    assert read_json(keras_run.run_dir / "manifest.json")["engine"] == "keras"


def test_a_metric_that_builds_on_its_first_batch_trains_fused(workdir):
    """R2Score has no result before its first update: its column is there all the same."""
    result = run_spec(load_spec(write(workdir, CLASSIFIER.replace("metrics: [mae]", "metrics: [mae, R2Score]"))),
                      quiet=True)
    history = read_json(result.run_dir / "history.json")
    assert read_json(result.run_dir / "manifest.json")["engine"] == "fused"
    keras_run = run_spec(load_spec(write(workdir, CLASSIFIER.replace("metrics: [mae]", "metrics: [mae, R2Score]")),
                                   overrides=["train.engine=keras"]), quiet=True)
    assert list(history) == list(read_json(keras_run.run_dir / "history.json"))
    assert history["R2Score"][-1] > history["R2Score"][0]


def test_per_epoch_callbacks_still_work(workdir):
    text = CLASSIFIER.replace("  validate_on: test\n", """\
  validate_on: test
  callbacks:
    - EarlyStopping: {monitor: loss, min_delta: 100.0, patience: 2}
    - CSVLogger: {filename: epochs.csv}
    - ReduceLROnPlateau: {monitor: loss, min_delta: 100.0, patience: 1, factor: 0.5}
""")
    result = run_spec(load_spec(write(workdir, text)), quiet=True)
    history = read_json(result.run_dir / "history.json")
    assert len(history["loss"]) == 3  # EarlyStopping: no improvement of 100 in 2 epochs after the first
    rows = (result.run_dir / "epochs.csv").read_text().splitlines()
    assert rows[0].split(",")[0] == "epoch" and len(rows) == 4
    # The rate each epoch trained with: halved after the second epoch's plateau.
    assert history["learning_rate"] == pytest.approx([0.01, 0.01, 0.005])


def test_module_model_fused_reports_like_the_custom_loop(workdir, capsys):
    spec = ROOT / "specs" / "linear_regression.yaml"
    sets = [f"outputs.dir={workdir}/runs", "train.epochs=4"]
    custom = run_spec(load_spec(spec, overrides=sets))
    custom_lines = capsys.readouterr().out.splitlines()
    fused = run_spec(load_spec(spec, overrides=[*sets, "train.engine=auto"]))
    fused_lines = capsys.readouterr().out.splitlines()
    assert read_json(fused.run_dir / "manifest.json")["engine"] == "fused"
    report = [line for line in custom_lines if line.startswith(("W =", "Epoch "))]
    assert report == [line for line in fused_lines if line.startswith(("W =", "Epoch "))] and len(report) == 5
    np.testing.assert_allclose(read_json(fused.run_dir / "history.json")["loss"],
                               read_json(custom.run_dir / "history.json")["loss"], rtol=1e-6)
    fused_trajectories = read_json(fused.run_dir / "trajectories.json")
    for name, values in read_json(custom.run_dir / "trajectories.json").items():
        np.testing.assert_allclose(fused_trajectories[name], values, rtol=1e-6)


# ------------------------------------------------------------------ the choice


@pytest.mark.parametrize("stages, reason", [
    ("[{shuffle: {buffer_size: 10}}, {batch: {batch_size: 8}}]",
     "data.train.stages[0]: a shuffle buffer of 10 is smaller than the split, a different order"),
    ("[{batch: {batch_size: 8}}, {map: {ops: [{scale: {factor: 2.0}}]}}]",
     "data.train.stages[1]: a 'map' stage after batch cannot run in memory"),
    ("[{batch: {batch_size: 8}}, {shuffle: {buffer_size: 4}}]",
     "data.train.stages[1]: a 'shuffle' stage after batch cannot run in memory"),
    ("[{map: {ops: [{scale: {factor: 2.0}}]}}]", "data.train: no batch stage"),
])
def test_auto_falls_back_and_says_why(workdir, stages, reason):
    text = CLASSIFIER.replace("engine: fused", "engine: auto")
    start = text.index("    stages:\n      - map")
    end = text.index("  test:")
    text = text[:start] + f"    stages: {stages}\n" + text[end:]
    spec = load_spec(write(workdir, text))
    datasets = build_datasets(spec)
    plan, why = plan_in_memory(spec, datasets, "train")
    assert plan is None and why == reason
    engine = choose_engine(spec, setup=_setup_named("default"), loop="fit", callbacks=[], data_reason=why,
                           nbytes=None)
    assert engine.line == f"engine: keras (fit; not fused: {reason})"


def test_in_memory_plan_holds_the_prefix_as_its_stages_give_it(workdir):
    spec = load_spec(write(workdir, CLASSIFIER))
    plan, why = plan_in_memory(spec, build_datasets(spec), "train")
    assert why == "" and plan.maps is not None  # map and cache only: applied vectorised
    x, y = plan.materialise()
    expected = list(plan.prefix.as_numpy_iterator())
    np.testing.assert_array_equal(x.numpy(), np.stack([e[0] for e in expected]))
    np.testing.assert_array_equal(y.numpy(), np.stack([e[1] for e in expected]))
    assert (plan.count, plan.batch_size, plan.drop_remainder, plan.shuffle) == (150, 32, False, True)
    assert plan.nbytes == 150 * 8


def _setup_named(name, jit=False, replicas=1):
    setup = default_setup()
    setup.strategy_name, setup.jit_compile, setup.num_replicas = name, jit, replicas
    return setup


@pytest.mark.parametrize("setup, train, callbacks, nbytes, reason", [
    (_setup_named("multi_worker_mirrored"), {}, [], 10,
     "the multi_worker_mirrored strategy (fused runs on one device or mirrored)"),
    (_setup_named("mirrored", jit=True, replicas=2), {}, [], 10,
     "jit_compile with several replicas (the fused engine compiles one device's step with XLA)"),
    (_setup_named("default"), {"steps_per_epoch": 3}, [], 10, "steps_per_epoch (epochs that span dataset passes)"),
    (_setup_named("default"), {"fused_memory_mb": 1}, [], 3 * 2**20,
     "the training and validation splits take 3 MB, over train.fused_memory_mb 1"),
    (_setup_named("default"), {}, ["TerminateOnNaN"], 10, "callbacks acting on every batch: TerminateOnNaN"),
    (_setup_named("default"), {"validation_freq": 2}, [], 10,
     "validation_freq (the fused epoch validates after every epoch)"),
    (_setup_named("default"), {"initial_epoch": 1}, [], 10, "initial_epoch (the fused engine counts epochs from 0)"),
])
def test_obstacles_to_fusing(workdir, setup, train, callbacks, nbytes, reason):
    spec = load_spec(write(workdir, CLASSIFIER.replace("engine: fused", "engine: auto")))
    for key, value in train.items():
        spec.set_value(("train", key), value)
    made = [getattr(keras.callbacks, name)() for name in callbacks]
    engine = choose_engine(spec, setup=setup, loop="fit", callbacks=made, data_reason="", nbytes=nbytes)
    assert (engine.name, engine.reason) == ("keras", f"fit; not fused: {reason}")
    spec.set_value(("train", "engine"), "fused")
    with pytest.raises(SpecError) as error:
        choose_engine(spec, setup=setup, loop="fit", callbacks=made, data_reason="", nbytes=nbytes)
    assert str(error.value).endswith(f"train.engine: the fused engine cannot run this spec: {reason}")


def test_only_callbacks_that_act_between_batches_prevent_fusing(tmp_path):
    per_epoch = [keras.callbacks.EarlyStopping(), keras.callbacks.ReduceLROnPlateau(),
                 keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras")), keras.callbacks.CSVLogger("x.csv"),
                 keras.callbacks.TensorBoard(str(tmp_path / "tb"))]
    assert [needs_batch_hooks(c) for c in per_epoch] == [False] * 5
    per_batch = [keras.callbacks.TerminateOnNaN(), keras.callbacks.TensorBoard(str(tmp_path), update_freq=10),
                 keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_freq=5)]
    assert [needs_batch_hooks(c) for c in per_batch] == [True] * 3


# ------------------------------------------------------------------ mirrored


def _pipe(outputs: Path, *sets):
    command = [sys.executable, "-m", "runner.cli", "run", str(ROOT / "tests" / "specs" / "dist_regression.yaml"),
               "--quiet", "--set", f"outputs.dir={outputs}"]
    for item in sets:
        command += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return Path(completed.stdout.splitlines()[0].split(": ", 1)[1])


def test_fused_under_mirrored_matches_fit_on_one_device(tmp_path):
    """dist_regression has no shuffle: fit and fused see the same batches in the same order.

    Mirrored splits each global batch of 32 over 2 replicas and sums their gradients,
    which reorders float32 additions: relative 1e-4 (as tests/train/test_distributed.py).
    """
    fit_dir = _pipe(tmp_path / "fit")
    fused_dir = _pipe(tmp_path / "fused", "train.engine=fused", "device.cpu_devices=2", "device.strategy=mirrored")
    manifest = read_json(fused_dir / "manifest.json")
    assert (manifest["engine"], manifest["devices"]["replicas"]) == ("fused", 2)
    fit_history, fused_history = read_json(fit_dir / "history.json"), read_json(fused_dir / "history.json")
    assert sorted(fused_history) == sorted(fit_history) == ["loss", "mae", "val_loss", "val_mae"]
    for key, values in fit_history.items():
        np.testing.assert_allclose(fused_history[key], values, rtol=1e-4, atol=1e-6)


def test_fused_under_mixed_bfloat16_trains_like_fit(tmp_path):
    """mixed_bfloat16 on the CPU: bfloat16 compute (8 bits of mantissa) in both paths, on the
    same batches; the epoch losses agree to 1e-2 relative, far below the tenfold drop
    training makes."""
    mixed = "device.mixed_precision=mixed_bfloat16"
    fit_dir = _pipe(tmp_path / "fit", mixed)
    fused_dir = _pipe(tmp_path / "fused", mixed, "train.engine=fused")
    assert read_json(fused_dir / "manifest.json")["engine"] == "fused"
    fit_loss, fused_loss = read_json(fit_dir / "history.json")["loss"], read_json(fused_dir / "history.json")["loss"]
    np.testing.assert_allclose(fused_loss, fit_loss, rtol=1e-2)
    assert fused_loss[-1] < 0.1 * fused_loss[0]


def test_a_validation_fraction_is_held_in_memory_with_trains_preprocessing(workdir):
    """A fraction without stages inherits train's map and batch: the fused engine validates it too."""
    text = CLASSIFIER.replace("  test:\n", "  validation: {fraction: 0.2}\n  test:\n", 1)
    spec = load_spec(write(workdir, text))
    keras.utils.set_random_seed(3)
    datasets = build_datasets(spec)
    plan, reason = plan_in_memory(spec, datasets, "validation")
    assert reason == "" and plan.count == 30 and plan.batch_size == 32
    assert plan.prefix.element_spec[0].shape.as_list() == [1]  # train's reshape applied


def test_a_validation_fractions_reason_names_the_stage_of_train_it_inherited(workdir):
    """The inherited stages are a selection of train's (no shuffle): the reason points at the
    stage's own index in data.train.stages, not at its place in the selection."""
    text = CLASSIFIER.replace("engine: fused", "engine: auto").replace(
        "  test:\n", "  validation: {fraction: 0.2}\n  test:\n", 1)
    start, end = text.index("    stages:\n      - map"), text.index("  validation:")
    stages = "[{shuffle: {buffer_size: all}}, {batch: {batch_size: 8}}, {map: {ops: [{scale: {factor: 2.0}}]}}]"
    text = text[:start] + f"    stages: {stages}\n" + text[end:]
    spec = load_spec(write(workdir, text))
    plan, reason = plan_in_memory(spec, build_datasets(spec), "validation")
    assert plan is None and reason == "data.train.stages[2]: a 'map' stage after batch cannot run in memory"


def test_fused_reports_the_metrics_of_the_weights_early_stopping_restored(workdir):
    text = CLASSIFIER.replace("  verbose: 0\n", "  verbose: 0\n  callbacks: [{EarlyStopping: "
                                                  "{monitor: loss, patience: 1, restore_best_weights: true}}]\n")
    spec = load_spec(write(workdir, text.replace("epochs: 4", "epochs: 12"), "stop.yaml"),
                     ["train.optimizer={SGD: {learning_rate: 0.9}}"])
    result = run_spec(spec, quiet=True)
    history = read_json(result.run_dir / "history.json")
    best = min(range(len(history["loss"])), key=lambda i: history["loss"][i])
    assert result.metrics["train"]["loss"] == history["loss"][best]


@pytest.mark.parametrize("loop, engine", [("fit", "fused"), ("custom", "keras")])
def test_callbacks_watching_a_metric_find_which_way_it_improves_as_under_fit(workdir, loop, engine):
    """EarlyStopping, ModelCheckpoint and ReduceLROnPlateau on `val_mae` without a mode:
    Keras finds the direction among compile's metrics, which these loops keep themselves."""
    text = CLASSIFIER.replace("loop: fit", f"loop: {loop}").replace("engine: fused", f"engine: {engine}").replace(
        "  validate_on: test\n", """\
  validate_on: test
  callbacks:
    - EarlyStopping: {monitor: val_mae, patience: 1}
    - ModelCheckpoint: {filepath: best.keras, monitor: val_mae, save_best_only: true}
    - ReduceLROnPlateau: {monitor: val_mae, patience: 1}
""")
    result = run_spec(load_spec(write(workdir, text)), quiet=True)
    manifest = read_json(result.run_dir / "manifest.json")
    assert (manifest["status"], manifest["engine"]) == ("completed", engine)
    history = read_json(result.run_dir / "history.json")
    best = int(np.argmin(history["val_mae"]))
    # 'min' for a mean absolute error: training ran on while it fell, the best epoch was kept
    assert len(history["val_mae"]) in (4, best + 2)
    assert (result.run_dir / "best.keras").exists()


def test_a_model_xla_compiles_step_by_step_but_not_in_a_loop_trains_under_jit_compile(workdir, tmp_path):
    """XLA cannot compile CategoryEncoding's count inside a loop (a size it must know is
    computed there), but can compile the step alone, as fit compiles it: the fused engine
    then compiles each step instead of the epoch's loop."""
    rng = np.random.default_rng(0)
    np.savez(workdir / "cls.npz", x=rng.normal(size=(200, 8)).astype(np.float32),
             y=rng.integers(0, 3, size=200).astype(np.int32))
    spec = write(workdir, """\
version: 1
name: counts
seed: 3
data:
  train:
    source: {npz: {path: cls.npz, features: x, label: y}}
    stages:
      - shuffle: {buffer_size: all}
      - batch: {batch_size: 64}
model:
  sequential:
    input_shape: [8]
    layers:
      - Discretization: {bin_boundaries: [-1.0, 0.0, 1.0]}
      - CategoryEncoding: {num_tokens: 4, output_mode: count}
      - Dense: {units: 3}
train:
  engine: fused
  epochs: 2
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: adam
  metrics: [accuracy]
  verbose: 0
device:
  jit_compile: true
outputs:
  dir: runs
  plots: {enabled: false}
""")
    compiled = run_spec(load_spec(spec), quiet=True)
    plain = run_spec(load_spec(spec, overrides=["device.jit_compile=false"]), quiet=True)
    manifest = read_json(compiled.run_dir / "manifest.json")
    assert (manifest["status"], manifest["engine"], manifest["devices"]["xla"]) == ("completed", "fused", True)
    np.testing.assert_allclose(read_json(compiled.run_dir / "history.json")["loss"],
                               read_json(plain.run_dir / "history.json")["loss"], rtol=1e-5)


@pytest.mark.parametrize("loop, engine", [("fit", "fused"), ("custom", "keras")])
def test_each_outputs_loss_is_the_one_fit_reports_with_a_partial_last_batch(workdir, loop, engine):
    """fit averages each output's loss over the batches (a batch whose size is unknown when
    traced counts as one), not over the examples: 120 examples in batches of 50."""
    rng = np.random.default_rng(1)
    np.savez(workdir / "two.npz", a=rng.normal(size=(120, 8)).astype(np.float32),
             b=rng.normal(size=(120, 4)).astype(np.float32), cls=rng.integers(0, 3, size=120).astype(np.int32),
             reg=rng.normal(size=(120, 1)).astype(np.float32))
    text = f"""\
version: 1
name: two
seed: 9
data:
  train:
    source: {{npz: {{path: two.npz, features: [a, b], label: [cls, reg]}}}}
    stages:
      - batch: {{batch_size: 50}}
model:
  functional:
    inputs: {{a: {{shape: [8]}}, b: {{shape: [4]}}}}
    layers:
      - {{name: cat, layer: Concatenate, inputs: [a, b]}}
      - {{name: h, layer: {{Dense: {{units: 16, activation: relu}}}}, inputs: cat}}
      - {{name: cls, layer: {{Dense: {{units: 3}}}}, inputs: h}}
      - {{name: reg, layer: {{Dense: {{units: 1}}}}, inputs: h}}
    outputs: [cls, reg]
train:
  loop: {loop}
  engine: {engine}
  epochs: 3
  loss: {{cls: {{SparseCategoricalCrossentropy: {{from_logits: true}}}}, reg: mse}}
  loss_weights: {{cls: 1.0, reg: 0.5}}
  metrics: {{cls: [accuracy], reg: [mae]}}
  optimizer: {{SGD: {{learning_rate: 0.1}}}}
  verbose: 0
outputs:
  dir: runs
  plots: {{enabled: false}}
"""
    text = text.replace("  verbose: 0\n", """\
  verbose: 0
  callbacks:  # watched by the name each engine logs, without a mode
    - EarlyStopping: {monitor: cls_accuracy, patience: 5}
    - ModelCheckpoint: {filepath: best.keras, monitor: reg_mae, save_best_only: true}
""")
    ours = run_spec(load_spec(write(workdir, text)), quiet=True)
    by_fit = run_spec(load_spec(write(workdir, text.replace(f"loop: {loop}", "loop: fit").replace(
        f"engine: {engine}", "engine: keras"), name="fit.yaml")), quiet=True)
    history, fit_history = read_json(ours.run_dir / "history.json"), read_json(by_fit.run_dir / "history.json")
    for key in ("loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"):
        np.testing.assert_allclose(history[key], fit_history[key], rtol=1e-5, err_msg=key)


def test_fused_asked_for_on_data_it_cannot_hold_is_refused_before_a_run_directory_exists(workdir):
    """What the data allows is known once the splits are built: `train.engine: fused` on a split
    with a `map` after its batches is a located error, and no run directory is left behind."""
    spec = load_spec(write(workdir, CLASSIFIER.replace(
        "      - batch: {batch_size: 32}\n", "      - batch: {batch_size: 32}\n      - map: {ops: [{scale: {divisor: 2.0}}]}\n")),
        [f"outputs.dir={workdir / 'runs'}"])
    with pytest.raises(SpecError) as error:
        run_spec(spec, quiet=True)
    assert "train.engine: the fused engine cannot run this spec: data.train.stages[4]" in str(error.value)
    assert not (workdir / "runs").exists()
