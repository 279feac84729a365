"""How runs end, in process: divergence, and the resumes that are refused up front."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from runner.spec import SpecError, load_spec

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")

from runner.run.resume import check_same_spec, differences  # noqa: E402
from runner.run.pipeline import run_spec  # noqa: E402
from runner.train.divergence import TrainingDiverged  # noqa: E402

SPEC = """\
version: 1
name: endings
seed: 5
data:
  train:
    source:
      synthetic:
        x: {{uniform: {{low: -1.0, high: 1.0, num: 64}}}}
        y: {{linear: {{w: 3.0, b: 2.0}}}}
    stages:
      - shuffle: {{buffer_size: all}}
      - batch: {{batch_size: 16}}
model:
{model}
train:
  loop: {loop}
  epochs: {epochs}
  loss: mse
  optimizer: {{SGD: {{learning_rate: {rate}}}}}
outputs:
  plots: {{enabled: false}}
  checkpoints: {{every_epoch: true}}  # so the last good epoch is the one saved
"""
DENSE = "  sequential: {input_shape: [1], layers: [{Dense: {units: 1}}]}"
LINEAR = "  module: {linear: {w: 0.0, b: 0.0}}"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def spec_file(folder: Path, *, loop="fit", model=DENSE, epochs=30, rate=0.1) -> Path:
    path = folder / f"endings-{loop}.yaml"
    path.write_text(SPEC.format(loop=loop, model=model, epochs=epochs, rate=rate))
    return path


def read_json(path: Path):
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    return json.loads(text)


@pytest.mark.parametrize("loop, model", [("fit", DENSE), ("custom", DENSE), ("custom", LINEAR)])
def test_a_nan_loss_stops_the_run_as_diverged_keeping_the_last_good_checkpoint(workdir, loop, model):
    # SGD at 60 on inputs in [-1, 1]: each step multiplies the error by about -39, so the
    # loss overflows float32 after a few epochs of 4 steps.
    spec = load_spec(spec_file(workdir, loop=loop, model=model, rate=60.0))
    with pytest.raises(TrainingDiverged) as caught:
        run_spec(spec, quiet=True)
    error = caught.value
    assert 1 <= error.epoch < 30 and error.step is not None and 0 <= error.step < 4
    assert not math.isfinite(error.value)
    assert str(error) == f"the training loss became {error.value} at epoch {error.epoch + 1}, step {error.step + 1}"

    run_dir = error.run_dir
    manifest = read_json(run_dir / "manifest.json")
    assert manifest["status"] == "diverged" and manifest["reason"] == str(error)
    assert manifest["diverged_at"] == {"epoch": error.epoch + 1, "step": error.step + 1}
    good = error.epoch  # epochs that ended with a finite loss
    assert manifest["last_checkpoint"] == error.last_checkpoint == str(run_dir / "checkpoints" / f"ckpt-{good}")
    history = read_json(run_dir / "history.json")
    assert len(history["loss"]) == good and all(math.isfinite(v) for v in history["loss"])
    assert read_json(run_dir / "metrics.json")["train"]["loss"] == history["loss"][-1]
    assert not (run_dir / "model.keras").exists() and not (run_dir / "saved_model").exists()


def test_resuming_a_finished_run_says_so(workdir):
    spec = load_spec(spec_file(workdir, epochs=2))
    done = run_spec(spec, quiet=True)
    with pytest.raises(SpecError) as caught:
        run_spec(spec, quiet=True, resume_from=done.run_dir)
    assert str(caught.value) == (
        f"{done.run_dir}: nothing to resume: the run is completed, with all 2 epochs of train.epochs=2 in its "
        f"last checkpoint ({done.run_dir}/checkpoints/ckpt-2); set a larger train.epochs to train on")
    assert len(list((workdir / "runs" / "endings").iterdir())) == 1  # refused before a new directory
    with pytest.raises(SpecError) as caught:  # fewer epochs than the run has: said as such
        run_spec(load_spec(spec_file(workdir, epochs=1)), quiet=True, resume_from=done.run_dir)
    assert str(caught.value) == (
        f"{done.run_dir}: nothing to resume: the run's last checkpoint ({done.run_dir}/checkpoints/ckpt-2) holds "
        "2 epochs, more than the 1 of train.epochs=1; set train.epochs above 2 to train on")


def test_a_run_stopped_after_its_last_epoch_resumes_to_finish(workdir):
    """Interrupted while evaluating or writing: the resume trains nothing and writes the rest."""
    spec = load_spec(spec_file(workdir, epochs=2))
    done = run_spec(spec, quiet=True)
    manifest = read_json(done.run_dir / "manifest.json")
    (done.run_dir / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted"}))
    (done.run_dir / "model.keras").unlink()
    finished = run_spec(spec, quiet=True, resume_from=done.run_dir)
    assert read_json(finished.run_dir / "manifest.json")["status"] == "completed"
    assert (finished.run_dir / "model.keras").is_file()
    assert read_json(finished.run_dir / "history.json") == read_json(done.run_dir / "history.json")
    assert finished.metrics == done.metrics
    # ... and keeps the state it restored as its own checkpoint, to be resumed in turn
    assert (finished.run_dir / "checkpoints" / "ckpt-2.index").is_file()
    assert read_json(finished.run_dir / "history.json") == read_json(done.run_dir / "history.json")
    longer = run_spec(load_spec(spec_file(workdir, epochs=3)), quiet=True, resume_from=finished.run_dir)
    assert len(read_json(longer.run_dir / "history.json")["loss"]) == 3


def test_a_resumed_run_stopped_before_it_completes_can_be_resumed_in_turn(workdir, monkeypatch):
    """A resume with nothing to train, itself stopped while evaluating, keeps the checkpoint
    and the tables a further resume needs."""
    import signal

    import runner.run.engines
    from runner.run.interrupts import RunInterrupted

    spec = load_spec(spec_file(workdir, epochs=2))
    done = run_spec(spec, quiet=True)
    manifest = read_json(done.run_dir / "manifest.json")
    (done.run_dir / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted"}))

    def stopped(*args, **kwargs):
        raise RunInterrupted(signal.SIGTERM)

    evaluate_held_out = runner.run.engines.evaluate_held_out
    monkeypatch.setattr(runner.run.engines, "evaluate_held_out", stopped)
    with pytest.raises(RunInterrupted) as caught:
        run_spec(spec, quiet=True, resume_from=done.run_dir)
    monkeypatch.setattr(runner.run.engines, "evaluate_held_out", evaluate_held_out)
    second = caught.value.run_dir
    assert read_json(second / "manifest.json")["status"] == "interrupted"
    assert read_json(second / "history.json") == read_json(done.run_dir / "history.json")
    longer = run_spec(load_spec(spec_file(workdir, epochs=3)), quiet=True, resume_from=second)
    assert len(read_json(longer.run_dir / "history.json")["loss"]) == 3


def test_resuming_with_another_spec_is_refused_saying_what_differs(workdir):
    path = spec_file(workdir, epochs=2)
    done = run_spec(load_spec(path), quiet=True)
    changed = load_spec(path, ["train.optimizer.SGD.learning_rate=0.2", "seed=6", "train.epochs=4"])
    with pytest.raises(SpecError) as caught:
        run_spec(changed, quiet=True, resume_from=done.run_dir)
    saved = done.run_dir / "spec.yaml"
    tail = ("a resumed run trains what its run trained (train.epochs, steps_per_execution, outputs and "
            "reporting may change)")
    assert str(caught.value).splitlines() == [
        f"--set seed=6: seed: 6 here, but 5 in the run being resumed ({saved}); {tail}",
        f"--set train.optimizer.SGD.learning_rate=0.2: train.optimizer.SGD.learning_rate: 0.2 here, "
        f"but 0.1 in the run being resumed ({saved}); {tail}",
    ]
    assert len(list((workdir / "runs" / "endings").iterdir())) == 1


def test_spec_differences_skip_what_may_change():
    old = {"name": "a", "seed": 1, "train": {"epochs": 2, "loss": "mse", "metrics": ["mae"]}, "outputs": {"dir": "x"}}
    new = {"name": "b", "seed": 1, "train": {"epochs": 9, "loss": "mae", "metrics": ["mae", "mse"]}, "device": {}}
    found = [(path, old_value, new_value) for path, old_value, new_value in differences(old, new)]
    assert [f[0] for f in found] == [("train", "loss"), ("train", "metrics"), ("device",)]


def test_a_corrupt_checkpoint_is_named(workdir):
    path = spec_file(workdir, epochs=2)
    done = run_spec(load_spec(path), quiet=True)
    data = done.run_dir / "checkpoints" / "ckpt-2.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:10])  # truncated
    with pytest.raises(SpecError) as caught:
        run_spec(load_spec(path, ["train.epochs=3"]), quiet=True, resume_from=done.run_dir)
    prefix = done.run_dir / "checkpoints" / "ckpt-2"
    assert str(caught.value).startswith(
        f"{prefix}: the checkpoint cannot be read ({prefix}.index, {prefix}.data-*): ")
    assert "\n" not in str(caught.value)


def test_a_resumed_run_resumes_from_its_own_checkpoint_after_a_second_interruption(workdir):
    """Resume chains: the second resume continues the whole history of both earlier runs."""
    path = spec_file(workdir, loop="custom", model=LINEAR, epochs=4)
    whole = run_spec(load_spec(path), quiet=True)
    first = run_spec(load_spec(path, ["train.epochs=2"]), quiet=True)
    second = run_spec(load_spec(path, ["train.epochs=3"]), quiet=True, resume_from=first.run_dir)
    third = run_spec(load_spec(path), quiet=True, resume_from=second.run_dir)
    expected = json.loads((whole.run_dir / "trajectories.json").read_text())
    got = json.loads((third.run_dir / "trajectories.json").read_text())
    assert len(got["w"]) == 5
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-6)
    assert json.loads((third.run_dir / "history.json").read_text())["loss"] == pytest.approx(
        json.loads((whole.run_dir / "history.json").read_text())["loss"], rel=1e-6)


def test_a_default_written_out_resumes_the_run_that_left_it_out(workdir):
    """`train.engine: keras` (the default) written in the resumed spec, absent from the run's:
    the same run. Another value than the default is still a difference."""
    run_dir = workdir / "run"
    run_dir.mkdir()
    path = spec_file(workdir)
    (run_dir / "spec.yaml").write_text(load_spec(path).as_yaml())
    check_same_spec(load_spec(path, ["train.engine=keras", "train.validation_freq=1"]), run_dir)
    with pytest.raises(SpecError, match="train.engine: fused here, but absent in the run being resumed"):
        check_same_spec(load_spec(path, ["train.engine=fused"]), run_dir)
