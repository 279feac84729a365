"""The fused engine holds a split as its source gives it (uint8 pixels, not float32) and runs
its map ops on each gathered batch inside the epoch's graph: the same values, less memory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runner.spec import load_spec

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")

from conftest import FASHION_MNIST, SPECS  # noqa: E402
from runner.data import build_datasets  # noqa: E402
from runner.data import in_memory  # noqa: E402
from runner.data.in_memory import plan_in_memory  # noqa: E402
from runner.run.pipeline import run_spec  # noqa: E402

# 200 uint8 images of 8x8x1 (64 bytes each, 8 more for the int64 label); every 4th is class 1.
SPEC = """\
version: 1
name: held
seed: 5
data:
  train:
    source: {npz: {path: data.npz, features: x, label: y}}
    stages: TRAIN
  test:
    source: {npz: {path: data.npz, features: x, label: y}}
    stages:
      - map: {ops: [{cast: {dtype: float32}}, {scale: {divisor: 255.0}}]}
      - batch: {batch_size: 64}
model:
  sequential:
    input_shape: [8, 8, 1]
    layers:
      - Flatten: {}
      - Dense: {units: 2}
train:
  engine: fused
  epochs: 3
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: adam
  metrics: [accuracy]
  validate_on: test
  verbose: 0
outputs: {dir: runs, plots: {enabled: false}, checkpoints: {enabled: false}}
"""
PIXELS = "{map: {ops: [{cast: {dtype: float32}}, {scale: {divisor: 255.0}}]}}, {cache: {}}"
BATCHING = "{shuffle: {buffer_size: all}}, {batch: {batch_size: 32}}"


@pytest.fixture
def write(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.integers(0, 256, (200, 8, 8, 1)).astype(np.uint8),
             y=(np.arange(200) % 4 == 0).astype(np.int64))

    def spec(train_stages: str, *sets):
        path = tmp_path / "spec.yaml"
        path.write_text(SPEC.replace("TRAIN", train_stages))
        return load_spec(path, list(sets)) if sets else load_spec(path)

    return spec


def _batch_values_equal_the_prefixs(plan, ids):
    """Each batch mapped in a graph (XLA-compiled, as the fused loop runs it) equals the same
    elements of the prefix as tf.data maps them one by one, bit for bit."""
    held = plan.materialise()
    expected = list(plan.prefix.as_numpy_iterator())

    @tf.function(jit_compile=True)
    def compiled(ids):
        return plan.batch_map(tf.nest.map_structure(lambda t: tf.gather(t, ids), held))

    for mapped in (plan.batch_map(tf.nest.map_structure(lambda t: tf.gather(t, ids), held)), compiled(ids)):
        for part in (0, 1):
            np.testing.assert_array_equal(mapped[part].numpy(), np.stack([expected[i][part] for i in ids]))
        assert mapped[0].dtype == tf.float32


def test_a_split_of_uint8_pixels_is_held_as_uint8_and_mapped_per_batch(write):
    spec = write(f"[{PIXELS}, {BATCHING}]")
    plan, why = plan_in_memory(spec, build_datasets(spec), "train")
    assert why == "" and plan.per_batch
    assert plan.nbytes == 200 * (64 + 8)  # uint8 pixels, not 256 bytes of float32
    x, y = plan.materialise()
    assert (x.dtype, x.shape, y.dtype) == (tf.uint8, (200, 8, 8, 1), tf.int64)
    _batch_values_equal_the_prefixs(plan, np.random.default_rng(1).permutation(200)[:37])


def test_what_filter_and_take_leave_is_held_as_the_source_gives_it(write):
    spec = write(f"[{{filter: {{label_in: [1]}}}}, {{take: {{count: 40}}}}, {PIXELS}, {BATCHING}]")
    plan, why = plan_in_memory(spec, build_datasets(spec), "train")
    assert why == "" and plan.per_batch
    assert (plan.count, plan.nbytes) == (40, 40 * (64 + 8))  # counted after the filter
    x, y = plan.materialise()
    assert x.dtype == tf.uint8 and set(y.numpy().tolist()) == {1}
    _batch_values_equal_the_prefixs(plan, np.arange(40)[::-1])


@pytest.mark.parametrize("ops", [
    "[{cast: {dtype: float32}}, {polynomial: {degree: 2}}]",  # powers XLA may expand into products
    "[{resize: {size: [4, 4]}}]",  # resampling
])
def test_other_ops_map_the_split_once_before_training(write, ops):
    spec = write(f"[{{map: {{ops: {ops}}}}}, {BATCHING}]")
    plan, why = plan_in_memory(spec, build_datasets(spec), "train")
    assert why == "" and not plan.per_batch and plan.batch_map is None
    x, _ = plan.materialise()
    assert x.dtype == tf.float32 and plan.nbytes == 200 * (int(np.prod(x.shape[1:])) * 4 + 8)


def test_a_map_that_does_not_grow_the_elements_runs_once(write):
    """Held as the source gives them only when that takes less memory: mapping every batch of
    every epoch costs time."""
    spec = write(f"[{PIXELS}, {{map: {{ops: [{{reshape: {{shape: [64]}}}}]}}}}, {BATCHING}]")
    plan, _ = plan_in_memory(spec, build_datasets(spec), "train")
    assert plan.per_batch  # uint8 held, both maps per batch
    spec = write("[{map: {ops: [{reshape: {shape: [64]}}]}}, " + BATCHING + "]")
    plan, _ = plan_in_memory(spec, build_datasets(spec), "train")
    assert not plan.per_batch and plan.nbytes == 200 * (64 + 8)


@pytest.mark.parametrize("jit", [False, True])
def test_a_run_on_the_held_source_has_the_history_of_a_run_on_mapped_tensors(write, monkeypatch, jit):
    """Train and validation mapped per batch inside the fused graph give exactly the
    losses and metrics of the same run with the splits mapped once before training."""
    histories = []
    for per_batch_ops in (in_memory._PER_BATCH_OPS, ()):
        monkeypatch.setattr(in_memory, "_PER_BATCH_OPS", per_batch_ops)
        spec = write(f"[{PIXELS}, {BATCHING}]", f"device.jit_compile={str(jit).lower()}")
        result = run_spec(spec, quiet=True)
        manifest = json.loads((result.run_dir / "manifest.json").read_text())
        assert manifest["engine"] == "fused"
        histories.append(json.loads((result.run_dir / "history.json").read_text()))
    assert sorted(histories[0]) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert histories[0] == histories[1]


@pytest.mark.skipif(not (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="needs Debian's dataset-fashion-mnist")
def test_fashion_mnist_is_held_as_uint8_and_its_batches_are_the_float32_it_maps_to(tmp_path):
    """specs/fashion_mnist.yaml: 60,000 images of 784 bytes and their labels (47 MB, not 188),
    and each batch's values those of the cast and scale applied once to every image."""
    spec = load_spec(SPECS / "fashion_mnist.yaml", [f"outputs.dir={tmp_path}"])
    datasets = build_datasets(spec)
    for split, count in (("train", 60000), ("test", 10000)):
        plan, why = plan_in_memory(spec, datasets, split)
        assert why == "" and plan.per_batch and plan.nbytes == count * (784 + 1)
        x, y = plan.materialise()
        ids = tf.random.experimental.stateless_shuffle(tf.range(count), seed=[1, 2])[:128]
        whole = tf.cast(x, tf.float32) / 255.0  # the map once, on every image
        batch_x, batch_y = plan.batch_map((tf.gather(x, ids), tf.gather(y, ids)))
        np.testing.assert_array_equal(batch_x.numpy(), tf.gather(whole, ids).numpy())
        np.testing.assert_array_equal(batch_y.numpy(), tf.gather(y, ids).numpy())


def test_a_split_mapped_once_has_the_values_tf_datas_map_gives(write):
    """After the filter the elements are float32 and normalize keeps them float32 (no memory
    to save): the split is mapped once, and divides as tf.data's map does (a graph would
    multiply by the reciprocal of std)."""
    spec = write("[{map: {ops: [{cast: {dtype: float32}}]}}, {filter: {label_in: [0, 1]}}, "
                 "{map: {ops: [{normalize: {mean: 127.0, std: 73.0}}, {scale: {divisor: 3.0}}]}}, " + BATCHING + "]")
    plan, _ = plan_in_memory(spec, build_datasets(spec), "train")
    assert not plan.per_batch and plan.nbytes == 200 * (256 + 8)
    x, y = plan.materialise()
    expected = list(plan.prefix.as_numpy_iterator())
    np.testing.assert_array_equal(x.numpy(), np.stack([e[0] for e in expected]))
    np.testing.assert_array_equal(y.numpy(), np.stack([e[1] for e in expected]))


@pytest.mark.parametrize("stages, where", [
    (BATCHING, "data.train.source"),
    ("{map: {ops: [{slice: {spec: '0:2'}}]}}, {cache: {}}, " + BATCHING, "data.train.stages[0]"),
])
def test_elements_that_cannot_be_held_are_said_where_they_take_their_form(write, tmp_path, stages, where):
    np.savez(tmp_path / "data.npz", x=np.array([[f"text {i}"] * 3 for i in range(200)]), y=np.arange(200) % 2)
    spec = write(f"[{stages}]")
    plan, why = plan_in_memory(spec, build_datasets(spec), "train")
    assert plan is None and why == f"{where}: string elements"
