"""Example counts after `take`/`skip`/`filter`: `pipe plan`'s figure and the fused engine's
memory estimate are measured on what the stages let through; the engine's reason names
the stage that keeps a split out of memory."""

from __future__ import annotations

import numpy as np
import pytest

from runner.spec import load_spec

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")

from runner.data import build_datasets  # noqa: E402
from runner.data.in_memory import plan_in_memory  # noqa: E402
from runner.commands.planning import plan_spec  # noqa: E402
from runner.commands.plan_text import render_text  # noqa: E402

# 200 images of 8x8x1 float32 (256 bytes each, 8 more for the int64 label); every 4th is class 1.
SPEC = """\
version: 1
name: counts
seed: 0
data:
  train:
    source: {npz: {path: data.npz, features: x, label: y}}
    stages: TRAIN
  test:
    source: {npz: {path: data.npz, features: x, label: y}}
    stages:
      - filter: {label_in: [1]}
      - batch: {batch_size: 16}
model:
  sequential:
    input_shape: [8, 8, 1]
    layers:
      - Flatten: {}
      - Dense: {units: 2}
train:
  engine: auto
  epochs: 1
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: adam
outputs: {dir: runs, plots: {enabled: false}}
"""


@pytest.fixture
def write(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((200, 8, 8, 1)).astype(np.float32),
             y=(np.arange(200) % 4 == 0).astype(np.int64))

    def spec(train_stages: str):
        path = tmp_path / "spec.yaml"
        text = SPEC.replace("TRAIN", train_stages)
        if "repeat: {}" in train_stages:  # endless: steps_per_epoch ends each epoch
            text = text.replace("  epochs: 1\n", "  epochs: 1\n  steps_per_epoch: 5\n")
        path.write_text(text)
        return load_spec(path)

    return spec


def test_the_in_memory_estimate_counts_what_filter_and_take_leave(write):
    spec = write("[{filter: {label_in: [1]}}, {take: {count: 40}}, {shuffle: {buffer_size: all}}, "
                 "{batch: {batch_size: 8}}]")
    plan, why = plan_in_memory(spec, build_datasets(spec), "train")
    assert why == ""
    assert plan.count == 40  # 50 of class 1, the first 40 taken (not the source's 200)
    assert plan.nbytes == 40 * (8 * 8 * 4 + 8)
    x, y = plan.materialise()
    assert x.shape == (40, 8, 8, 1) and set(y.numpy().tolist()) == {1}

    spec = write("[{filter: {label_in: [0]}}, {batch: {batch_size: 8}}]")
    plan, _ = plan_in_memory(spec, build_datasets(spec), "train")
    assert (plan.count, plan.nbytes) == (150, 150 * 264)


def test_plan_counts_the_examples_the_stages_let_through(write):
    """(With `seed: 0`, whose global seed TensorFlow once compared as a Python bool when an
    epoch-seeded shuffle was built.)"""
    spec = write("[{take: {count: 120}}, {skip: {count: 20}}, {shuffle: {buffer_size: all}}, "
                 "{batch: {batch_size: 32}}]")
    plan = plan_spec(spec)
    assert plan.errors == []
    assert plan.data["train"]["num_examples"] == 100
    assert plan.data["test"]["num_examples"] == 50  # filtered: counted
    lines = render_text(plan, "spec.yaml").splitlines()
    assert any(line.startswith("data.train: 100 examples, 4 steps per epoch;") for line in lines)
    assert any(line.startswith("data.test: 50 examples,") for line in lines)


@pytest.mark.parametrize("stages, reason", [
    ("[{map: {ops: [{augment: {layers: [{RandomFlip: {mode: horizontal}}]}}, {scale: {factor: 2.0}}]}}, "
     "{shuffle: {buffer_size: all}}, {batch: {batch_size: 8}}]",
     "data.train.stages[0]: a 'map' stage with augment and other ops (the fused step runs maps of augment ops "
     "alone)"),
    ("[{shuffle: {buffer_size: all}}, {batch: {batch_size: 8}}, "
     "{map: {ops: [{augment: {layers: [{RandomFlip: {mode: horizontal}}]}}]}}]",
     "data.train.stages[2]: a 'map' stage after batch cannot run in memory"),
    ("[{shuffle: {buffer_size: all}}, {map: {ops: [{scale: {factor: 2.0}}]}}, {batch: {batch_size: 8}}]",
     "data.train.stages[1]: a 'map' stage after shuffle cannot run in memory"),
    ("[{repeat: {}}, {batch: {batch_size: 8}}]",
     "data.train.stages[0]: a 'repeat' stage (not the same elements on every pass) cannot run in memory"),
])
def test_the_reason_names_the_stage_that_keeps_the_split_out_of_memory(write, stages, reason):
    spec = write(stages)
    plan, why = plan_in_memory(spec, build_datasets(spec), "train")
    assert plan is None and why == reason
