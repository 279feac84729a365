"""Per-epoch costs made small: steps per graph call, checkpoint intervals, one evaluation pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runner.spec import load_spec
from runner.spec.errors import SpecError

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from runner.models.identifiers import get_loss, get_metrics, get_optimizer  # noqa: E402
from runner.run.pipeline import run_spec  # noqa: E402
from runner.train import checkpoint as checkpoints  # noqa: E402
from runner.train.custom import CustomLoop  # noqa: E402
from runner.train.devices import DeviceSetup  # noqa: E402
from runner.train.execution import AUTO_STEPS_CAP, resolve_steps_per_execution  # noqa: E402

SPEC = """\
version: 1
name: small
seed: 3
data:
  train:
    source:
      synthetic:
        x: {{uniform: {{low: -1.0, high: 1.0, num: 100}}}}
        y: {{linear: {{w: -2.0, b: 0.5}}}}
        noise: {{stddev: 0.1}}
    stages:
{stages}
  test:
    source:
      synthetic:
        x: {{linspace: {{start: -1.0, stop: 1.0, num: 40}}}}
        y: {{linear: {{w: -2.0, b: 0.5}}}}
    stages:
      - batch: {{batch_size: 16}}
model:
  module: {{linear: {{w: 0.0, b: 0.0}}}}
train:
  loop: custom
  epochs: 4
  loss: mse
  optimizer: {{SGD: {{learning_rate: 0.1}}}}
  validate_on: test
"""
BATCHED = "      - shuffle: {buffer_size: all}\n      - batch: {batch_size: 16}"
# `unbatch` leaves the number of batches unknown to tf.data: the loop finds the end itself.
UNKNOWN = "      - batch: {batch_size: 5}\n      - unbatch: {}\n      - batch: {batch_size: 16}"


def small_spec(folder: Path, stages=BATCHED, overrides=()):
    path = folder / "small.yaml"
    path.write_text(SPEC.format(stages=stages))
    return load_spec(path, [f"outputs.dir={folder / 'runs'}", *overrides])


def read_json(path: Path):
    return json.loads(path.read_text())


@pytest.mark.parametrize("stages", [BATCHED, UNKNOWN], ids=["known-batches", "unknown-batches"])
@pytest.mark.parametrize("per_call", [3, "auto"])
def test_steps_per_execution_takes_the_same_steps(tmp_path, stages, per_call):
    """7 batches per epoch in calls of 3 (3 + 3 + 1) or of the whole epoch: the same history."""
    one = run_spec(small_spec(tmp_path, stages), quiet=True)
    several = run_spec(small_spec(tmp_path, stages, [f"train.steps_per_execution={per_call}"]), quiet=True)
    expected, got = read_json(one.run_dir / "history.json"), read_json(several.run_dir / "history.json")
    assert got.keys() == expected.keys() == {"loss", "val_loss"}
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6)
    np.testing.assert_allclose(read_json(several.run_dir / "trajectories.json")["w"],
                               read_json(one.run_dir / "trajectories.json")["w"], rtol=1e-6)


def test_fit_takes_steps_per_execution(tmp_path):
    spec = small_spec(tmp_path, overrides=[
        "train.loop=fit", "train.steps_per_execution=4",
        "model={sequential: {input_shape: [1], layers: [{Dense: {units: 1}}]}}",
    ])
    result = run_spec(spec, quiet=True)
    assert len(read_json(result.run_dir / "history.json")["loss"]) == 4
    model = keras.saving.load_model(result.run_dir / "model.keras")
    assert model.steps_per_execution == 4


def test_auto_is_the_epoch_up_to_a_cap():
    assert resolve_steps_per_execution("auto", 7) == 7
    assert resolve_steps_per_execution("auto", 10_000) == AUTO_STEPS_CAP
    assert resolve_steps_per_execution("auto", None) == 1
    # A call never straddles the epoch's end: the largest divisor up to the cap.
    assert resolve_steps_per_execution("auto", 150) == 75
    assert resolve_steps_per_execution("auto", 101) == 1
    assert resolve_steps_per_execution(None, 7) == 1


def test_the_validated_test_split_is_not_evaluated_again(tmp_path):
    """validate_on: test: the test metrics are the last epoch's val_ values, exactly."""
    result = run_spec(small_spec(tmp_path), quiet=True)
    history = read_json(result.run_dir / "history.json")
    assert result.metrics["test"] == {"loss": history["val_loss"][-1]}


def _manager_checkpoints(run_dir: Path) -> list[str]:
    state = tf.train.get_checkpoint_state(str(run_dir / "checkpoints"))
    return [Path(p).name for p in state.all_model_checkpoint_paths]


def test_default_checkpoints_save_only_the_last_epoch_of_a_short_run(tmp_path):
    result = run_spec(small_spec(tmp_path), quiet=True)
    assert _manager_checkpoints(result.run_dir) == ["ckpt-4"]


def test_every_epoch_saves_each_epoch(tmp_path):
    result = run_spec(small_spec(tmp_path, overrides=["outputs.checkpoints={every_epoch: true}"]), quiet=True)
    assert _manager_checkpoints(result.run_dir) == ["ckpt-2", "ckpt-3", "ckpt-4"]  # the manager keeps 3


def test_every_epoch_saves_each_epoch_with_the_fused_engine(tmp_path):
    """The fused engine then runs one epoch per graph call: each epoch's state exists to save."""
    spec = small_spec(tmp_path, overrides=["train.engine=fused", "outputs.checkpoints={every_epoch: true}"])
    result = run_spec(spec, quiet=True)
    assert read_json(result.run_dir / "manifest.json")["engine"] == "fused"
    assert _manager_checkpoints(result.run_dir) == ["ckpt-2", "ckpt-3", "ckpt-4"]


def test_every_seconds_zero_saves_each_epoch_with_fit(tmp_path):
    spec = small_spec(tmp_path, overrides=[
        "train.loop=fit", "outputs.checkpoints={every_seconds: 0}",
        "model={sequential: {input_shape: [1], layers: [{Dense: {units: 1}}]}}",
    ])
    assert _manager_checkpoints(run_spec(spec, quiet=True).run_dir) == ["ckpt-2", "ckpt-3", "ckpt-4"]


def test_checkpoints_false_still_valid(tmp_path):
    result = run_spec(small_spec(tmp_path, overrides=["outputs.checkpoints=false"]), quiet=True)
    assert not (result.run_dir / "checkpoints").exists()


def test_resume_from_an_interval_checkpoint_is_exact(tmp_path):
    unshuffled = "      - batch: {batch_size: 16}"
    whole = run_spec(small_spec(tmp_path, unshuffled), quiet=True)
    cut = run_spec(small_spec(tmp_path, unshuffled, ["train.epochs=2"]), quiet=True)
    assert _manager_checkpoints(cut.run_dir) == ["ckpt-2"]  # the final save of a run shorter than 30 s
    resumed = run_spec(small_spec(tmp_path, unshuffled), quiet=True, resume_from=cut.run_dir)
    assert read_json(resumed.run_dir / "manifest.json")["epochs_run"] == 4
    expected, got = read_json(whole.run_dir / "history.json"), read_json(resumed.run_dir / "history.json")
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6)


def test_an_epoch_is_due_when_its_interval_passed_or_when_it_is_final(tmp_path):
    checkpoint = checkpoints.epoch_checkpoint(tf.Module(), keras.optimizers.SGD(), tmp_path, {"every_seconds": 3600})
    assert not checkpoint.due()
    checkpoint.skipped(0)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) is None and checkpoint.unsaved == 1
    assert checkpoint.due(final=True)
    checkpoint.save(1)
    assert _manager_checkpoints(tmp_path) == ["ckpt-2"] and checkpoint.unsaved is None
    assert int(checkpoint.epoch.numpy()) == 2


def test_a_signal_the_process_ignores_stays_ignored():
    """Under `nohup` (SIGHUP ignored) a hangup does not stop the run; the others still do."""
    import os
    import signal
    import time

    from runner.run import interrupts

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with interrupts.signals_raise():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)  # ignored: nothing is raised
            with pytest.raises(interrupts.RunInterrupted):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_first_signal_waits_for_the_epoch_end_while_an_epoch_is_unsaved():
    """A held signal is raised when the epoch-end section ends (after its save); a second
    one, or one with nothing unsaved, is raised at once."""
    import os
    import signal

    from runner.run import interrupts

    with interrupts.signals_raise():
        interrupts.hold_till_epoch_end(True)
        os.kill(os.getpid(), signal.SIGTERM)  # mid-epoch: held
        assert interrupts.signal_held()
        with pytest.raises(interrupts.RunInterrupted) as caught:
            with interrupts.deferred():  # the epoch end
                pass
        assert caught.value.signal_name == "SIGTERM" and not interrupts.signal_held()

        os.kill(os.getpid(), signal.SIGINT)  # held again
        with pytest.raises(interrupts.RunInterrupted):
            os.kill(os.getpid(), signal.SIGINT)  # a second signal: at once
        interrupts.hold_till_epoch_end(False)
        with pytest.raises(interrupts.RunInterrupted):
            os.kill(os.getpid(), signal.SIGHUP)

        # The run's last words (its manifest's end) are not cut by a signal, nor raise it.
        with interrupts.deferred(release=False):
            os.kill(os.getpid(), signal.SIGTERM)
        assert interrupts.signal_held()
    assert not interrupts.signal_held()  # dropped with the run


def test_a_signal_held_within_a_fused_call_waits_for_its_last_epoch_without_writing_each_epoch(tmp_path):
    """Inside one fused graph call of thousands of short epochs, a held signal makes no
    epoch the last but the call's last one: the tables are written then, not every epoch
    (which made a SIGTERM take 20 s and more to stop such a run)."""
    import os
    import signal

    from runner.run import interrupts
    from runner.run.epoch_end import Progress

    class Manifest:
        def heartbeat(self, **fields):
            pass

    progress = Progress(tmp_path, Manifest())
    writes = []
    write = progress.log.write
    progress.log.write = lambda: (writes.append(progress.log.epochs), write())[1]
    checkpoint = checkpoints.epoch_checkpoint(tf.Module(), keras.optimizers.SGD(), tmp_path, {"every_seconds": 3600})
    within_call = progress.epoch_end(None, within_call=True)
    call_end = progress.epoch_end(checkpoint, 10_000)
    with interrupts.signals_raise():
        call_end(0, {"loss": 1.0})  # the first epoch writes; the next wait for the interval
        interrupts.hold_till_epoch_end(True)
        os.kill(os.getpid(), signal.SIGTERM)
        for epoch in range(1, 2000):
            within_call(epoch, {"loss": 1.0})
        assert writes == [1] and interrupts.signal_held()
        with pytest.raises(interrupts.RunInterrupted):
            call_end(2000, {"loss": 1.0})  # the call's last epoch: written, saved, then stopped
    assert writes == [1, 2001] and _manager_checkpoints(tmp_path) == ["ckpt-2001"]


def test_a_signal_during_an_epoch_ends_writes_saves_that_epoch_before_the_run_stops(tmp_path):
    """A signal that lands while an epoch's end is being written (after it was judged not
    the last) still ends the run with that epoch checkpointed, as the tables hold it."""
    import os
    import signal

    from runner.run import interrupts
    from runner.run.epoch_end import Progress

    class Manifest:  # the signal comes with the first heartbeat, after the tables were written
        beats = 0

        def heartbeat(self, **fields):
            self.beats += 1
            if self.beats == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    progress = Progress(tmp_path, Manifest())
    checkpoint = checkpoints.epoch_checkpoint(tf.Module(), keras.optimizers.SGD(), tmp_path, {"every_seconds": 3600})
    hook = progress.epoch_end(checkpoint, 100)
    with interrupts.signals_raise():
        with pytest.raises(interrupts.RunInterrupted):
            hook(0, {"loss": 1.0})
    assert _manager_checkpoints(tmp_path) == ["ckpt-1"]


def test_mid_run_metrics_name_the_split_validated_on(tmp_path):
    """metrics.json during a run (and of a run a signal stopped) names test as test."""
    from runner.outputs.epochs import EpochLog

    log = EpochLog(tmp_path, validated="test")
    log.record({"loss": 1.0, "val_loss": 2.0}, None)
    log.write()
    assert read_json(tmp_path / "metrics.json") == {"train": {"loss": 1.0}, "test": {"loss": 2.0}}


def test_a_keras_model_saved_as_a_saved_model(tmp_path):
    spec = small_spec(tmp_path, overrides=[
        "train.loop=fit", "outputs.save_model=saved_model",
        "model={sequential: {input_shape: [1], layers: [{Dense: {units: 1}}]}}",
    ])
    result = run_spec(spec, quiet=True)
    assert not (result.run_dir / "model.keras").exists()
    loaded = tf.saved_model.load(str(result.run_dir / "saved_model"))  # kept: it owns the variables
    assert loaded.serve(tf.constant([[0.5]])).shape == (1, 1)
    # pipe evaluate reads it back: the same test metrics as the run's
    from runner.commands.evaluation import evaluate_run

    evaluation = evaluate_run(result.run_dir)
    assert evaluation.metrics["test"]["loss"] == pytest.approx(result.metrics["test"]["loss"], rel=1e-5)


def test_a_module_model_cannot_be_saved_as_keras(tmp_path):
    with pytest.raises(SpecError) as caught:
        small_spec(tmp_path, overrides=["outputs.save_model=keras"])
    assert str(caught.value).endswith(
        "outputs.save_model: a module model saves as a SavedModel: use saved_model (or true)")


def test_the_loop_reads_nothing_per_step_without_listeners(tmp_path):
    """No callbacks and no progress bar: the step function runs once per call, not per batch."""
    x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
    dataset = tf.data.Dataset.from_tensor_slices((x, 2 * x)).batch(8)
    spec = small_spec(tmp_path)
    setup = DeviceSetup(strategy=tf.distribute.get_strategy(), num_replicas=1, is_chief=True,
                        jit_compile=False, mixed_precision=None, summary="", manifest={})
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    loop = CustomLoop(model, loss=get_loss("mse", spec), optimizer=get_optimizer("sgd", spec),
                      metrics=get_metrics(["mae"], spec), element_spec=dataset.element_spec,
                      setup=setup, verbose=0, steps_per_execution=8)
    calls = []
    original = loop.runner.run
    loop.runner.run = lambda count, first: calls.append(count) or original(count, first)
    result = loop.fit(dataset, epochs=3)
    assert calls == [8, 8, 8]
    assert set(result.history) == {"loss", "mae"} and len(result.history["loss"]) == 3
    # A second fit iterates its own dataset, not the first one's iterator.
    far = tf.data.Dataset.from_tensor_slices((x, 1000 * x)).batch(8)
    again = loop.fit(far, epochs=1)
    assert again.history["loss"][0] > 1000 * result.history["loss"][-1]


def test_data_of_unknown_length_takes_exactly_its_batches_per_epoch(tmp_path):
    """With several steps per call over data whose end is found on the way (a filter), every
    epoch takes its batches and no more: the optimizer counts 5 steps an epoch."""
    x = np.linspace(-1, 1, 80, dtype=np.float32)[:, None]
    dataset = tf.data.Dataset.from_tensor_slices((x, 2 * x)).filter(lambda a, b: a[0] < 2).batch(16)
    assert int(dataset.cardinality()) < 0  # unknown
    spec = small_spec(tmp_path)
    setup = DeviceSetup(strategy=tf.distribute.get_strategy(), num_replicas=1, is_chief=True,
                        jit_compile=False, mixed_precision=None, summary="", manifest={})
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    loop = CustomLoop(model, loss=get_loss("mse", spec), optimizer=get_optimizer("adam", spec), metrics=[],
                      element_spec=dataset.element_spec, setup=setup, verbose=0, steps_per_execution=3)
    result = loop.fit(dataset, epochs=3)
    assert len(result.history["loss"]) == 3
    assert int(loop.optimizer.iterations.numpy()) == 15


def test_batches_are_cached_only_when_every_epoch_repeats_them(tmp_path):
    from runner.data import build_datasets
    from runner.data.reuse import MAX_CACHED_BYTES, batches_repeat_each_epoch, small_enough

    unshuffled = small_spec(tmp_path, "      - batch: {batch_size: 16}")
    assert batches_repeat_each_epoch(unshuffled)
    assert not batches_repeat_each_epoch(small_spec(tmp_path))  # a shuffle stage
    assert not batches_repeat_each_epoch(small_spec(tmp_path, "      - batch: {batch_size: 16}\n      - repeat: {count: 2}"))
    train = build_datasets(unshuffled).train
    assert small_enough(train, 100)  # 100 examples of 2 float32
    assert not small_enough(train, MAX_CACHED_BYTES // 8 + 1)
