"""A source that holds no example is said at the key naming what it reads, for every kind
of file source; a split that its stages empty is still said at its stages."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from runner.spec import SpecError, load_spec

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")

from runner.data import build_datasets  # noqa: E402

SPEC = """\
version: 1
name: empty
data:
  train:
    source: {SOURCE}
    stages:
      - batch: {batch_size: 4}
model:
  sequential:
    input_shape: [4]
    layers:
      - Dense: {units: 2}
train:
  epochs: 1
  loss: mse
  optimizer: adam
"""


def _empty_files(root):
    np.savez(root / "e.npz", x=np.zeros((0, 4), np.float32), y=np.zeros((0,), np.int64))
    np.save(root / "x.npy", np.zeros((0, 4), np.float32))
    np.save(root / "y.npy", np.zeros((0,), np.int64))
    (root / "images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, 0, 2, 2))
    (root / "labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, 0))
    (root / "e.tfrecord").write_bytes(b"")
    np.savez(root / "full.npz", x=np.ones((6, 4), np.float32), y=np.zeros((6,), np.int64))


@pytest.mark.parametrize("source, where, shown", [
    ("{npz: {path: e.npz, features: x, label: y}}", "data.train.source.npz.path", "e.npz"),
    ("{npy: {features: x.npy, label: y.npy}}", "data.train.source.npy.features", "x.npy"),
    ("{idx: {images: images-idx3-ubyte, labels: labels-idx1-ubyte}}", "data.train.source.idx.images",
     "images-idx3-ubyte"),
    ("{tfrecord: {files: [e.tfrecord], features: {x: {shape: [4], dtype: float32}, y: {shape: [], dtype: int64}}, "
     "label: y}}", "data.train.source.tfrecord.files", "e.tfrecord"),
])
def test_an_empty_source_is_said_at_what_it_reads(tmp_path, monkeypatch, source, where, shown):
    monkeypatch.chdir(tmp_path)
    _empty_files(tmp_path)
    (tmp_path / "spec.yaml").write_text(SPEC.replace("{SOURCE}", source))
    with pytest.raises(SpecError) as info:
        build_datasets(load_spec(tmp_path / "spec.yaml"))
    message = str(info.value)
    assert "spec.yaml:5:" in message and f"{where}: {shown} holds no examples" in message, message
    assert "stages" not in message


def test_a_split_its_stages_empty_is_still_said_at_the_stages(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _empty_files(tmp_path)
    spec = SPEC.replace("{SOURCE}", "{npz: {path: full.npz, features: x, label: y}}")
    (tmp_path / "spec.yaml").write_text(spec.replace("      - batch:", "      - filter: {label_in: [1]}\n      - batch:"))
    with pytest.raises(SpecError) as info:
        build_datasets(load_spec(tmp_path / "spec.yaml"))
    assert "data.train.stages: the train split is empty after its stages" in str(info.value)
