"""Training phases and warm starts: a two-phase run is phase 1, then phase 2 from its
checkpoint; init_from loads a run's weights by layer name; resume is exact across phases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from runner.spec import load_spec
from runner.spec.errors import SpecError, SpecErrors

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from runner.data import build_datasets  # noqa: E402
from runner.models import build_model  # noqa: E402
from runner.run.pipeline import run_spec  # noqa: E402

PHASED = """\
version: 1
name: phased
seed: 3
data:
  train:
    source:
      synthetic:
        x: {{uniform: {{low: -1.0, high: 1.0, num: 96}}}}
        y: {{linear: {{w: -2.0, b: 0.5}}}}
        noise: {{stddev: 0.1}}
    stages:
{shuffle}      - batch: {{batch_size: 32}}
  test:
    source:
      synthetic:
        x: {{linspace: {{start: -1.0, stop: 1.0, num: 40}}}}
        y: {{linear: {{w: -2.0, b: 0.5}}}}
        seed: 9
    stages:
      - batch: {{batch_size: 16}}
model:
{init_from}  sequential:
    input_shape: [1]
    layers:
      - Dense: {{units: {units}, activation: tanh, name: body}}
      - Dense: {{units: 1, name: {head}}}
train:
  loop: {loop}
  loss: mse
  optimizer: {{Adam: {{learning_rate: 0.05}}}}
  phases:
    - {{epochs: 2, trainable: {{body: false}}}}
    - {{epochs: {last}, learning_rate: 0.01}}
outputs:
  checkpoints: {{every_epoch: true}}
"""


def phased_spec(folder: Path, *, loop="fit", last=2, shuffle=True, init_from="", units=8, head="head",
                name="phased.yaml", overrides=()):
    path = folder / name
    shuffle = "      - shuffle: {buffer_size: all}\n" if shuffle else ""
    init = f"  init_from: {init_from}\n" if init_from else ""
    path.write_text(PHASED.format(loop=loop, last=last, shuffle=shuffle, init_from=init, units=units, head=head))
    return load_spec(path, list(overrides))


def read_json(path: Path):
    return json.loads(path.read_text())


def saved_weights(run_dir: Path) -> list:
    return keras.saving.load_model(run_dir / "model.keras", compile=False).get_weights()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_a_two_phase_run_equals_phase_two_run_by_hand_from_phase_ones_checkpoint(workdir, loop):
    spec = phased_spec(workdir, loop=loop, shuffle=False, overrides=["train.engine=auto"])
    run = run_spec(spec, quiet=True)
    history = read_json(run.run_dir / "history.json")
    manifest = read_json(run.run_dir / "manifest.json")
    assert (manifest["engine"], manifest["engine_reason"]) == (
        "keras", f"{loop}; not fused: train.phases (the fused engine trains one optimizer and the same layers "
                 "throughout)")
    assert len(history["loss"]) == 4  # one history, epochs numbered on across the phases

    # Phase 2 by hand: the model and phase 1's optimizer restored from phase 1's last
    # checkpoint, then every layer trainable, a fresh Adam at the phase's rate, two epochs of fit.
    keras.utils.set_random_seed(3)
    model = build_model(spec.doc["model"], spec)
    model.get_layer("body").trainable = False
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.05), loss="mse")
    model.optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    checkpoint.restore(str(run.run_dir / "checkpoints" / "ckpt-2")).expect_partial().assert_existing_objects_matched()
    body_after_phase_1 = model.get_layer("body").get_weights()
    model.get_layer("body").trainable = True
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
    by_hand = model.fit(build_datasets(spec).train, epochs=2, verbose=0, shuffle=False)

    got = saved_weights(run.run_dir)
    for mine, theirs in zip(model.get_weights(), got):
        np.testing.assert_allclose(theirs, mine, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(history["loss"][2:], by_hand.history["loss"], rtol=1e-5)
    # Phase 1 froze the body: its weights at phase 1's end are the initial ones (seed 3).
    keras.utils.set_random_seed(3)
    initial = build_model(spec.doc["model"], spec).get_layer("body").get_weights()
    for a, b in zip(body_after_phase_1, initial):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(got[0], initial[0])  # and phase 2 trained it


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_a_csv_logger_keeps_every_phase_s_epochs_in_one_file(workdir, loop):
    """Each phase is a `fit` of its own; CSVLogger, which opens its file anew when a fit
    begins, appends from the second phase on: one header, every epoch, numbered on."""
    spec = phased_spec(workdir, loop=loop, last=3, overrides=["train.callbacks=[{CSVLogger: {filename: epochs.csv}}]"])
    run = run_spec(spec, quiet=True)
    header, *rows = (run.run_dir / "epochs.csv").read_text().splitlines()
    assert header.split(",")[0] == "epoch" and "loss" in header.split(",")
    assert [row.split(",")[0] for row in rows] == ["0", "1", "2", "3", "4"]
    losses = [float(row.split(",")[header.split(",").index("loss")]) for row in rows]
    np.testing.assert_allclose(losses, read_json(run.run_dir / "history.json")["loss"], rtol=1e-5)


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_resume_inside_and_at_the_start_of_phase_two_equals_the_uninterrupted_run(workdir, loop):
    whole = run_spec(phased_spec(workdir, loop=loop), quiet=True)
    # Stopped after epoch 3 (inside phase 2: its optimizer's state is in the checkpoint).
    cut = run_spec(phased_spec(workdir, loop=loop, last=1), quiet=True)
    inside = run_spec(phased_spec(workdir, loop=loop), quiet=True, resume_from=cut.run_dir)
    # Stopped right after phase 1: its checkpoint holds phase 1's optimizer; phase 2 starts a fresh one.
    boundary_dir = workdir / "stopped_after_phase_1"
    shutil.copytree(whole.run_dir, boundary_dir)
    (boundary_dir / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\n')
    boundary = run_spec(phased_spec(workdir, loop=loop), quiet=True, resume_from=boundary_dir)

    with pytest.raises(SpecError) as caught:
        run_spec(phased_spec(workdir, loop=loop), quiet=True, resume_from=whole.run_dir)
    assert str(caught.value).endswith(f"nothing to resume: the run is completed, with all 4 epochs of its phases in "
                                      f"its last checkpoint ({whole.run_dir / 'checkpoints' / 'ckpt-4'}); "
                                      "set a larger train.phases[1].epochs to train on")
    phases = read_json(whole.run_dir / "manifest.json")["phases"]
    assert [(p["name"], p["epochs"], p["trainable_parameters"], p["optimizer"]["config"]["learning_rate"])
            for p in phases] == [("phase 1", [1, 2], 9, pytest.approx(0.05)),
                                 ("phase 2", [3, 4], 25, pytest.approx(0.01))]

    expected = read_json(whole.run_dir / "history.json")
    for resumed, at in ((inside, 3), (boundary, 2)):
        assert read_json(resumed.run_dir / "manifest.json")["resumed_at_epoch"] == at
        got = read_json(resumed.run_dir / "history.json")
        np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
        for mine, theirs in zip(saved_weights(resumed.run_dir), saved_weights(whole.run_dir)):
            np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
        assert resumed.metrics["test"]["loss"] == pytest.approx(whole.metrics["test"]["loss"], rel=1e-5)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A completed run whose weights later runs start from."""
    folder = tmp_path_factory.mktemp("source")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        run = run_spec(phased_spec(folder, last=1), quiet=True)
        return run.run_dir.resolve()


def test_init_from_loads_the_runs_weights_by_layer_name(workdir, source_run):
    spec = phased_spec(workdir, init_from=str(source_run))
    model = build_model(spec.doc["model"], spec)
    for mine, theirs in zip(model.get_weights(), saved_weights(source_run)):
        np.testing.assert_array_equal(mine, theirs)


def test_init_from_loads_into_a_model_whose_input_shape_comes_from_the_data(workdir, source_run):
    """No input_shape: the model is built on the train split's features before the weights load."""
    from runner.models.adapt import Adapter

    spec = phased_spec(workdir, init_from=str(source_run))
    text = spec.file.read_text().replace("    input_shape: [1]\n", "")
    spec.file.write_text(text)
    spec = load_spec(spec.file)
    model_config = spec.doc["model"]
    model = build_model(model_config, spec, adapter=Adapter(model_config, spec, build_datasets(spec).train))
    for mine, theirs in zip(model.get_weights(), saved_weights(source_run), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(SpecError, match="model.init_from: this model has no weights yet to load that run's into"):
        build_model(model_config, spec)  # nothing to build it on: said, not silently skipped


def test_init_from_some_layers_keeps_the_others_initial_weights(workdir, source_run):
    spec = phased_spec(workdir, init_from=f"{{run: {source_run}, layers: [body]}}", head="new_head")
    keras.utils.set_random_seed(0)
    model = build_model(spec.doc["model"], spec)
    source = keras.saving.load_model(source_run / "model.keras", compile=False)
    for mine, theirs in zip(model.get_layer("body").get_weights(), source.get_layer("body").get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert not np.allclose(model.get_layer("new_head").get_weights()[0], source.get_layer("head").get_weights()[0])


def test_init_from_lists_what_does_not_match(workdir, source_run):
    spec = phased_spec(workdir, init_from=str(source_run), units=4, head="new_head")
    with pytest.raises(SpecError) as caught:
        build_model(spec.doc["model"], spec)
    assert str(caught.value) == (
        f"{workdir / 'phased.yaml'}:23:3: model.init_from: the weights of {source_run} do not fit this model by "
        "layer name: body: kernel (1, 4) here, (1, 8) there; body: bias (4,) here, (8,) there; "
        "new_head: not in that run's model (that run's layers: body, head)")


def test_init_from_a_folder_that_is_no_run_is_refused_at_validate_and_build(workdir):
    spec = phased_spec(workdir, init_from="not_a_run")  # validate: it may be made before the run
    with pytest.raises(SpecError) as caught:
        build_model(spec.doc["model"], spec)
    assert str(caught.value) == (f"{workdir / 'phased.yaml'}:23:14: model.init_from: no such run directory: "
                                 f"{workdir / 'not_a_run'}")
    (workdir / "not_a_run").mkdir()
    message = (f"{workdir / 'phased.yaml'}:23:14: model.init_from: {workdir / 'not_a_run'} is not a pipe run "
               "directory (no manifest.json)")
    with pytest.raises(SpecErrors) as caught:
        phased_spec(workdir, init_from="not_a_run")
    assert str(caught.value) == message
    with pytest.raises(SpecError) as caught:
        build_model(spec.doc["model"], spec)
    assert str(caught.value) == message


def test_a_phase_naming_an_unknown_layer_is_a_located_error(workdir):
    spec = phased_spec(workdir, overrides=["train.phases.0.trainable={bdy: false}"])
    with pytest.raises(SpecError) as caught:
        run_spec(spec, quiet=True)
    assert str(caught.value) == ("--set train.phases.0.trainable={bdy: false}: train.phases[0].trainable.bdy: "
                                 "no layer named 'bdy' in the model "
                                      "(its layers: body, head)")


def test_a_phase_trains_the_last_n_layers_of_a_backbone_and_the_next_starts_from_the_built_flags(workdir):
    from runner.train.phases import describe_phases

    path = workdir / "backbone.yaml"
    path.write_text(PHASED.format(loop="fit", last=1, shuffle="", init_from="", units=8, head="head").replace(
        "    input_shape: [1]\n    layers:\n      - Dense: {units: 8, activation: tanh, name: body}\n",
        "    input_shape: [32, 32, 3]\n    layers:\n      - MobileNetV3Small: {weights: null, include_top: false, "
        "input_shape: [32, 32, 3], pooling: avg, minimalistic: true, name: backbone, trainable_layers: 2}\n"
    ).replace("{body: false}", "{backbone: false}").replace("learning_rate: 0.01}", "learning_rate: 0.01, "
                                                           "trainable: {backbone: 6}}").replace(
        "    - {epochs: 1,", "    - {epochs: 1, name: top 6,").replace("  phases:\n", "  phases:\n    - {epochs: 1}\n"))
    spec = load_spec(path)
    model = build_model(spec.doc["model"], spec)
    backbone = model.get_layer("backbone")

    def count(variables):
        return sum(int(np.prod(v.shape)) for v in variables)

    head = count(model.get_layer("head").trainable_weights)
    as_built = count(model.trainable_weights)
    # every weight of the last 6 layers but batch normalisation's moving statistics
    last_6 = sum(count(w for w in layer.weights if "moving_" not in w.path) for layer in backbone.layers[-6:])
    described = describe_phases(model, spec)
    assert [(d["name"], d["epochs"], d["trainable_parameters"]) for d in described] == [
        ("phase 1", [1, 1], as_built), ("phase 2", [2, 3], head), ("top 6", [4, 4], last_6 + head)]
    assert count(model.trainable_weights) == as_built  # the flags as built, afterwards
    assert as_built == head + sum(count(layer.trainable_weights) for layer in backbone.layers[-2:])


def test_a_phases_learning_rate_may_be_a_schedule_and_its_optimizer_its_own(workdir):
    from runner.train.phases import describe_phases

    spec = phased_spec(workdir, overrides=[
        "train.phases.0.optimizer={SGD: {learning_rate: 0.1, momentum: 0.9}}",
        "train.phases.1.learning_rate={ExponentialDecay: {initial_learning_rate: 0.01, decay_steps: 10, "
        "decay_rate: 0.5}}"])
    model = build_model(spec.doc["model"], spec)
    first, second = describe_phases(model, spec)
    assert first["line"] == "phase 1: epochs 1-2, SGD(learning_rate=0.1), 9 trainable parameters"
    assert first["optimizer"]["config"]["momentum"] == pytest.approx(0.9)
    assert second["line"] == "phase 2: epochs 3-4, Adam(learning_rate=ExponentialDecay), 25 trainable parameters"
    schedule = second["optimizer"]["config"]["learning_rate"]
    assert schedule["class_name"] == "ExponentialDecay" and schedule["config"]["decay_rate"] == 0.5


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_a_metric_object_starts_each_phase_empty(workdir, loop):
    """A metric declared with arguments is one object compiled again in each phase: the first
    epoch of phase 2 counts phase 2's examples only, as the same metric named by string does."""
    spec = phased_spec(workdir, loop=loop, shuffle=False, overrides=[
        "train.metrics=[mae, {MeanAbsoluteError: {name: mae2}}]", "train.validate_on=test"])
    history = read_json(run_spec(spec, quiet=True).run_dir / "history.json")
    np.testing.assert_allclose(history["mae2"], history["mae"], rtol=1e-6)
    np.testing.assert_allclose(history["val_mae2"], history["val_mae"], rtol=1e-6)
