"""What validate says about train.phases and model.init_from, without TensorFlow."""

from __future__ import annotations

import json

import pytest

from runner.spec import load_spec
from runner.spec.errors import SpecError
from runner.spec.phases import phase_at, phases_of, total_epochs

SPEC = """\
version: 1
name: tiny
data:
  train:
    source:
      synthetic:
        x: {linspace: {start: -1.0, stop: 1.0, num: 8}}
        y: {linear: {w: 2.0, b: 0.5}}
    stages:
      - batch: {batch_size: 4}
model:
  sequential:
    input_shape: [1]
    layers:
      - Dense: {units: 4, name: body}
      - Dense: {units: 1, name: head}
train:
  loss: mse
  optimizer: {SGD: {learning_rate: 0.05}}
  phases:
    - {epochs: 2, trainable: {body: false}}
    - {epochs: 3, learning_rate: 0.01, trainable: {body: true}}
"""


def errors_of(path, overrides=()):
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides)
    return [str(e) for e in info.value.errors]


def test_a_spec_with_phases_validates_and_numbers_its_epochs_on(write_spec):
    spec = load_spec(write_spec(SPEC))
    phases = phases_of(spec.doc["train"])
    assert [(p.start, p.end, p.learning_rate, p.trainable) for p in phases] == [
        (0, 2, None, {"body": False}), (2, 5, 0.01, {"body": True})]
    assert total_epochs(spec.doc["train"]) == 5
    assert [phase_at(phases, e).index for e in range(6)] == [0, 0, 1, 1, 1, 1]
    assert [p.name for p in phases] == ["phase 1", "phase 2"]


def test_without_phases_train_epochs_is_required(write_spec):
    path = write_spec(SPEC.split("  phases:")[0])
    assert errors_of(path) == [f"{path}:17:1: train: missing required key 'epochs'"]


def test_phases_replace_train_epochs(write_spec):
    path = write_spec(SPEC.replace("  loss: mse\n", "  loss: mse\n  epochs: 5\n"))
    assert errors_of(path) == [f"{path}:19:3: train.epochs: with train.phases, each phase gives its epochs "
                               "(the run trains their sum): remove train.epochs"]


def test_a_phase_gives_an_optimizer_or_a_learning_rate_not_both(write_spec):
    path = write_spec(SPEC.replace("learning_rate: 0.01,", "learning_rate: 0.01, optimizer: adam,"))
    assert errors_of(path) == [f"{path}:22:19: train.phases[1].learning_rate: give a phase either its own "
                               "optimizer or a learning_rate for train.optimizer, not both"]


def test_a_phases_optimizer_and_keys_are_checked(write_spec):
    path = write_spec(SPEC.replace("learning_rate: 0.01,", "optimizer: adamm, epoch: 2,"))
    assert errors_of(path) == [
        f"{path}:22:30: train.phases[1].optimizer: unknown optimizer 'adamm' (did you mean 'adam'?)",
        f"{path}:22:37: train.phases[1].epoch: unknown key 'epoch' (did you mean 'epochs'?)",
    ]


def test_a_trainable_value_is_true_false_or_a_count(write_spec):
    path = write_spec(SPEC.replace("trainable: {body: true}", "trainable: {body: some}"))
    assert errors_of(path) == [f"{path}:22:58: train.phases[1].trainable.body: expected true or false or an "
                               "integer >= 0, got string 'some'"]


def test_the_fused_engine_refuses_phases(write_spec):
    path = write_spec(SPEC.replace("  loss: mse\n", "  loss: mse\n  engine: fused\n"))
    assert errors_of(path) == [f"{path}:19:3: train.engine: the fused engine cannot run this spec: train.phases "
                               "(the fused engine trains one optimizer and the same layers throughout)"]


def test_init_from_sits_beside_one_model_kind(write_spec):
    path = write_spec(SPEC.replace("model:\n", "model:\n  init_from: {run: runs/base/1, layers: [body]}\n"))
    assert load_spec(path).doc["model"]["init_from"] == {"run": "runs/base/1", "layers": ["body"]}
    path = write_spec(SPEC.replace("model:\n", "model:\n  init_from: runs/base/1\n  module: {linear: {}}\n"))
    assert errors_of(path) == [f"{path}:11:1: model: expected exactly one of: sequential, functional, module; "
                               "got 'module', 'sequential'"]
    path = write_spec(SPEC.replace("model:\n  sequential:", "model:\n  init_from: runs/base/1\n  sequentail:"))
    assert f"{path}:13:3: model.sequentail: unknown key 'sequentail' (did you mean 'sequential'?)" in errors_of(path)


@pytest.mark.parametrize("status, message", [
    ("failed", "the run in {run} is failed: init_from takes the weights of a completed run"),
    (None, "{run} is not a pipe run directory (no manifest.json)"),
])
def test_init_from_a_run_that_is_not_completed_is_refused(write_spec, tmp_path, status, message):
    run = tmp_path / "runs" / "base" / "1"
    run.mkdir(parents=True)
    if status:
        (run / "manifest.json").write_text(json.dumps({"status": status}))
    path = write_spec(SPEC.replace("model:\n", "model:\n  init_from: runs/base/1\n"))
    assert errors_of(path) == [f"{path}:12:14: model.init_from: " + message.format(run=run)]


def test_init_from_a_run_not_made_yet_passes_validate(write_spec):
    path = write_spec(SPEC.replace("model:\n", "model:\n  init_from: runs/base/1\n"))
    assert load_spec(path).doc["model"]["init_from"] == "runs/base/1"
