"""Augmentation in the fused engine: `augment` maps run on each training batch inside the
step, with draws of (seed, epoch, step) alone: reproducible, and exact on resume."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from runner.spec import load_spec

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")

from runner.data import build_datasets  # noqa: E402
from runner.data.in_memory import plan_in_memory  # noqa: E402
from runner.run.fused import replicas_reason  # noqa: E402
from runner.run.pipeline import run_spec  # noqa: E402

AUGMENT = ("{map: {ops: [{augment: {layers: [{RandomFlip: {mode: horizontal, seed: 7}}, "
           "{GaussianNoise: {stddev: 0.1, seed: 3}}]}}]}}")
SPEC = """\
version: 1
name: augmented
seed: 5
data:
  train:
    source: {npz: {path: data.npz, features: x, label: y}}
    stages: [{map: {ops: [{cast: {dtype: float32}}, {scale: {divisor: 255.0}}]}}, {cache: {}}, AUGMENT,
             {shuffle: {buffer_size: all}}, {batch: {batch_size: 32}}]
  validation: {fraction: 0.2}
model:
  sequential:
    input_shape: [8, 8, 1]
    layers:
      - Flatten: {}
      - Dense: {units: 2}
train:
  engine: fused
  epochs: 4
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: adam
  metrics: [accuracy]
  verbose: 0
outputs: {dir: runs, plots: {enabled: false}}
"""


@pytest.fixture
def write(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.integers(0, 256, (200, 8, 8, 1)).astype(np.uint8),
             y=(np.arange(200) % 4 == 0).astype(np.int64))

    def spec(augment=AUGMENT, *sets):
        path = tmp_path / "spec.yaml"
        path.write_text(SPEC.replace("AUGMENT", augment))
        return load_spec(path, list(sets)) if sets else load_spec(path)

    return spec


def _run(spec, resume_from=None):
    result = run_spec(spec, quiet=True, resume_from=resume_from)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["engine"] == "fused", manifest["engine_reason"]
    return result.run_dir, json.loads((result.run_dir / "history.json").read_text())


def test_an_augmented_split_is_fused_reproducibly_and_resumes_exactly(write):
    first_dir, first = _run(write())
    _, again = _run(write())
    assert again == first  # the draws depend on (seed, epoch, step) alone
    _, plain = _run(write("{cache: {}}"))
    assert plain["loss"] != first["loss"]  # the augmentation acts
    assert plain["val_loss"][0] != first["val_loss"][0]

    half_dir, _ = _run(write(AUGMENT, "train.epochs=2"))
    resumed_dir, resumed = _run(write(), resume_from=half_dir)
    assert resumed == first  # epochs 3 and 4 drew what the uninterrupted run drew


def test_the_augmentation_draws_per_example_and_per_step(write):
    spec = write()
    plan, why = plan_in_memory(spec, build_datasets(spec), "train")
    assert why == "" and plan.augment is not None and plan.augment.where == "data.train.stages[2]"
    x = tf.fill([32, 8, 8, 1], 0.5)
    y = tf.zeros([32], tf.int64)

    def draw(epoch, step):
        return plan.augment((x, y), 5, tf.constant(epoch, tf.int64), tf.constant(step))[0].numpy()

    assert np.array_equal(draw(1, 2), draw(1, 2))
    assert not np.array_equal(draw(1, 2), draw(1, 3)) and not np.array_equal(draw(1, 2), draw(2, 2))
    one = draw(0, 0)
    assert not np.array_equal(one[0], one[1])  # each example its own noise


def test_augmentation_outside_train_is_not_fused(write):
    spec = write()
    spec.set_value(("data", "test"), {"source": {"npz": {"path": "data.npz", "features": "x", "label": "y"}},
                                      "stages": yaml.safe_load("[{map: {ops: [{augment: {layers: [RandomFlip]}}]}}, "
                                                               "{batch: {batch_size: 8}}]")})
    plan, why = plan_in_memory(spec, build_datasets(spec), "test")
    assert plan is None
    assert why == "data.test.stages[0]: a 'map' stage with augment ops on test (the fused step augments train only)"


def test_augmentation_under_several_replicas_is_not_fused(write):
    spec = write()
    plan, _ = plan_in_memory(spec, build_datasets(spec), "train")
    assert replicas_reason({"train": plan}, SimpleNamespace(num_replicas=1)) == ""
    assert replicas_reason({"train": plan}, SimpleNamespace(num_replicas=2)) == (
        "data.train.stages[2]: a 'map' stage with augment ops under 2 replicas")


def test_augmentation_runs_inside_the_xla_compiled_loop(write):
    """RandomFlip and GaussianNoise compile with the step (RandomRotation's projective
    transform has no XLA kernel: such a run is fused without XLA, below)."""
    _, first = _run(write(AUGMENT, "device.jit_compile=true"))
    _, again = _run(write(AUGMENT, "device.jit_compile=true"))
    assert again == first and len(first["loss"]) == 4


def test_random_layers_of_the_model_resume_exactly_in_the_fused_engine(write, tmp_path):
    """Random layers in the model draw from their seed generators, whose states the epoch
    checkpoint holds: a resumed run draws on as the uninterrupted one did."""
    write()  # the data
    layers = ("      - RandomFlip: {mode: horizontal, seed: 7}\n      - GaussianNoise: {stddev: 0.1, seed: 3}\n"
              "      - Flatten: {}\n")
    path = tmp_path / "model_random.yaml"
    path.write_text(SPEC.replace("AUGMENT", "{cache: {}}").replace("      - Flatten: {}\n", layers))
    _, first = _run(load_spec(path))
    half_dir, _ = _run(load_spec(path, ["train.epochs=2"]))
    _, resumed = _run(load_spec(path), resume_from=half_dir)
    assert resumed == first


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_an_augmented_split_under_tf_data_repeats_and_resumes_exactly(write, loop):
    """Under tf.data the augment map seeds each element by (seed, epoch, place in the pass), not
    by the order parallel calls happen in: unseeded layers too give two equal runs."""
    augment = "{map: {ops: [{augment: {layers: [{RandomRotation: {factor: 0.1}}, {GaussianNoise: {stddev: 0.1}}]}}]}}"

    def run(*sets, resume_from=None):
        result = run_spec(write(augment, "train.engine=keras", f"train.loop={loop}", *sets), quiet=True,
                          resume_from=resume_from)
        manifest = json.loads((result.run_dir / "manifest.json").read_text())
        assert manifest["engine"] == "keras"
        return result.run_dir, json.loads((result.run_dir / "history.json").read_text())

    _, first = run()
    _, again = run()
    assert again == first
    half_dir, _ = run("train.epochs=2")
    _, resumed = run(resume_from=half_dir)
    assert resumed == first


def test_evaluating_train_reads_it_without_its_augmentation(write, tmp_path):
    """`pipe evaluate --split train` measures the model on train as it sees data at inference:
    the same figures on every call, those of train with its augment map taken out."""
    from runner.commands.evaluation import evaluate_run

    augment = "{map: {ops: [{augment: {layers: [{RandomRotation: {factor: 0.2}}]}}]}}"
    run_dir = run_spec(write(augment, "train.epochs=1", "train.engine=keras"), quiet=True).run_dir
    first, again = (evaluate_run(run_dir, splits=["train"]).metrics["train"] for _ in range(2))
    stages = ("data.train.stages=[{map: {ops: [{cast: {dtype: float32}}, {scale: {divisor: 255.0}}]}}, "
              "{shuffle: {buffer_size: all}}, {batch: {batch_size: 32}}]")
    plain = evaluate_run(run_dir, [stages], splits=["train"]).metrics["train"]
    assert first == again == plain


# The image-classification tutorial's model on an image folder (benchmarks/fused_image_folder.py),
# smaller: its random layers first, or (RANDOM_LAYERS emptied) the same layers as an augment map.
IMAGE_SPEC = """\
version: 1
name: image_folder
seed: 3
data:
  train:
    source: {image_folder: {directory: images/train, color_mode: grayscale}}
    stages: [{cache: {}}, AUGMENT, {shuffle: {buffer_size: all}}, {batch: {batch_size: 32}}, {prefetch: {}}]
  test:
    source: {image_folder: {directory: images/test, color_mode: grayscale}}
    stages: [{batch: {batch_size: 32}}]
model:
  sequential:
    input_shape: [28, 28, 1]
    layers:
RANDOM_LAYERS
      - Rescaling: {scale: 0.00392156862745098}
      - Conv2D: {filters: 4, kernel_size: 3, padding: same, activation: relu}
      - MaxPooling2D: {}
      - Conv2D: {filters: 8, kernel_size: 3, padding: same, activation: relu}
      - MaxPooling2D: {}
      - Dropout: {rate: 0.2}
      - Flatten: {}
      - Dense: {units: 16, activation: relu}
      - Dense: {units: 2}
train:
  engine: auto
  epochs: 4
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: {Adam: {learning_rate: 0.01}}
  metrics: [accuracy]
  validate_on: test
  verbose: 0
outputs: {dir: runs, plots: {enabled: false}}
"""
RANDOM_LAYERS = ("      - RandomFlip: {mode: horizontal}\n      - RandomRotation: {factor: 0.1}\n"
                 "      - RandomZoom: {height_factor: 0.1}")
AUGMENT_IMAGES = ("{map: {ops: [{augment: {layers: [{RandomFlip: {mode: horizontal}}, {RandomRotation: {factor: 0.1}}, "
                  "{RandomZoom: {height_factor: 0.1}}]}}]}}")


@pytest.fixture
def image_spec(tmp_path, monkeypatch):
    """The spec over a folder of 28x28 grayscale PNGs of two classes (a bright square on
    noise, or noise alone): 240 to train on, 60 to validate on."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for split, count in (("train", 240), ("test", 60)):
        for i in range(count):
            label = i % 2
            image = rng.integers(0, 100, (28, 28, 1), dtype=np.uint8)
            if label:
                image[6 + i % 5: 18 + i % 5, 8:20] = 255
            folder = tmp_path / "images" / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:03d}.png").write_bytes(tf.io.encode_png(image).numpy())

    def spec(in_model=True, *sets):
        path = tmp_path / "spec.yaml"
        path.write_text(IMAGE_SPEC.replace("RANDOM_LAYERS", RANDOM_LAYERS if in_model else "")
                        .replace("AUGMENT", "{cache: {}}" if in_model else AUGMENT_IMAGES))
        return load_spec(path, list(sets))

    return spec


def _manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def _learns(history) -> bool:
    """The loss falls and the bright squares are told from noise (chance: 0.5)."""
    return history["loss"][-1] < history["loss"][0] and history["val_accuracy"][-1] > 0.8


def test_the_tutorials_image_folder_model_is_fused_and_trains(image_spec):
    """Random layers first in the model, uint8 pixels held in memory: fused, and it learns."""
    run_dir, history = _run(image_spec())
    assert _manifest(run_dir)["engine_reason"] == "data in memory, 232 KB; whole epochs per graph call"
    assert len(history["loss"]) == 4 and _learns(history)


def test_augmenting_uint8_images_under_jit_compile_is_fused_without_xla(image_spec):
    """An augment map of layers XLA cannot compile (RandomRotation, RandomZoom) on uint8
    pixels (they give floats): under jit_compile the run is still fused, without XLA, and
    says so; it trains as the same run without jit_compile does."""
    run_dir, compiled = _run(image_spec(False, "device.jit_compile=true"))
    manifest = _manifest(run_dir)
    assert manifest["engine_reason"] == ("data in memory, 232 KB; whole epochs per graph call; xla off: "
                                         "data.train.stages[1] augments with RandomRotation, RandomZoom, "
                                         "which XLA cannot compile")
    assert manifest["devices"]["xla"] is False
    _, plain = _run(image_spec(False))
    assert compiled == plain and _learns(plain)
