"""Bounds on what a data file may cost to read (issue 22): a CSV is refused, located, when its
text or its cells cannot be parsed in the memory, and its header is checked before its body."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest


class Refused(Exception):
    pass


class FakeSpec:
    def __init__(self, root: Path):
        self.root = root

    def resolve_path(self, value):
        return self.root / value

    def error(self, path, message, hint=None, at_value=False):
        return Refused(f"{'.'.join(map(str, path))}: {message}")


@pytest.fixture
def csv_source(monkeypatch):
    from runner.data.sources import csv as csv_source
    monkeypatch.setattr(csv_source, "memory_bound", lambda: 64_000)  # 4000 bytes of text, 500 cells
    return csv_source


PATH = ("data", "train", "source", "csv")


@pytest.mark.slow
def test_a_gzip_csv_that_inflates_past_what_parsing_can_hold_is_refused(csv_source, tmp_path):
    (tmp_path / "bomb.csv.gz").write_bytes(gzip.compress(b"a,b,c\n" + b"1,2,3\n" * 100_000))
    with pytest.raises(Refused) as refused:
        csv_source.load(FakeSpec(tmp_path), PATH, {"path": "bomb.csv.gz", "header": True, "label": "c"}, 1)
    assert str(refused.value) == (f"data.train.source.csv.path: {tmp_path / 'bomb.csv.gz'} decompresses to more "
                                  "than 4000 bytes (a gzip bomb, or more data than it declares)")


@pytest.mark.slow
def test_a_plain_csv_larger_than_the_text_bound_is_refused_before_it_is_read(csv_source, tmp_path):
    (tmp_path / "big.csv").write_bytes(b"a,b,c\n" + b"1,2,3\n" * 1000)
    with pytest.raises(Refused) as refused:
        csv_source.load(FakeSpec(tmp_path), PATH, {"path": "big.csv", "header": True, "label": "c"}, 1)
    assert str(refused.value) == (f"data.train.source.csv.path: {tmp_path / 'big.csv'} holds 6006 bytes, more CSV "
                                  "text than this machine's memory can parse (at most 4000 bytes)")


@pytest.mark.slow
def test_a_csv_with_too_many_cells_for_the_memory_is_refused(csv_source, tmp_path):
    (tmp_path / "cells.csv").write_bytes(b"a,b,c\n" + b"1,2,3\n" * 200)  # 1206 bytes, 604 cells
    with pytest.raises(Refused) as refused:
        csv_source.load(FakeSpec(tmp_path), PATH, {"path": "cells.csv", "header": True, "label": "c"}, 1)
    assert str(refused.value) == (f"data.train.source.csv.path: {tmp_path / 'cells.csv'} holds about 604 cells, "
                                  "more than this machine's memory can parse (at most 500)")


@pytest.mark.slow
@pytest.mark.parametrize("gzipped", [False, True])
def test_a_wrong_header_is_refused_before_the_body_is_read(csv_source, tmp_path, gzipped):
    body = b"a,b,c\n" + b"1,2,3\n" * 100_000  # far past the bound: only the header is read
    name = "wrong.csv.gz" if gzipped else "wrong.csv"
    (tmp_path / name).write_bytes(gzip.compress(body) if gzipped else body)
    with pytest.raises(Refused) as refused:
        csv_source.load(FakeSpec(tmp_path), PATH, {"path": name, "header": True, "label": "zz"}, 1)
    assert str(refused.value) == "data.train.source.csv.label: no column 'zz' in the header (columns: a, b, c)"
    with pytest.raises(Refused) as refused:
        csv_source.load(FakeSpec(tmp_path), PATH, {"path": name, "header": True, "label": "c",
                                                   "features": ["a", "q"]}, 1)
    assert str(refused.value) == "data.train.source.csv.features.1: no column 'q' in the header (columns: a, b, c)"


@pytest.mark.slow
def test_a_csv_within_the_bounds_still_loads(csv_source, tmp_path):
    (tmp_path / "ok.csv").write_bytes(b"a,b,c\n" + b"1,2,3\n" * 10)
    source = csv_source.load(FakeSpec(tmp_path), PATH, {"path": "ok.csv", "header": True, "label": "c"}, 1)
    assert source is not None


@pytest.mark.slow
@pytest.mark.parametrize("archive", [False, True])
def test_npy_and_npz_with_bytes_after_the_data_are_refused_as_idx_is(tmp_path, archive):
    import io
    import zipfile

    import numpy as np

    from runner.data.sources import numpy as numpy_source

    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 2), np.float32))
    data = buffer.getvalue() + b"APPENDED"
    if archive:
        with zipfile.ZipFile(tmp_path / "x.npz", "w") as out:
            out.writestr("x.npy", data)
        with pytest.raises(Refused) as refused:
            numpy_source.load_npz(FakeSpec(tmp_path), PATH, {"path": "x.npz", "features": "x"}, 1)
        assert str(refused.value) == (f"data.train.source.csv.path: cannot read NPZ archive {tmp_path / 'x.npz'}: "
                                      "'x': its header claims shape [3, 2] (24 bytes), but 32 bytes of data follow "
                                      "(bytes appended, or a forged header)")
    else:
        (tmp_path / "x.npy").write_bytes(data)
        with pytest.raises(Refused) as refused:
            numpy_source.load_npy(FakeSpec(tmp_path), PATH, {"features": "x.npy"}, 1)
        assert str(refused.value) == (f"data.train.source.csv.features: cannot read NPY file {tmp_path / 'x.npy'}: "
                                      "its header claims shape [3, 2] (24 bytes), but 32 bytes of data follow "
                                      "(bytes appended, or a forged header)")
        (tmp_path / "ok.npy").write_bytes(buffer.getvalue())
        assert numpy_source.load_npy(FakeSpec(tmp_path), PATH, {"features": "ok.npy"}, 1) is not None


@pytest.mark.slow
def test_a_shuffle_buffer_larger_than_the_split_is_capped_to_its_size():
    import tensorflow as tf

    from runner.data.stages import _shuffle

    dataset = tf.data.Dataset.range(72)
    shuffled = _shuffle(None, ("data", "train", "stages", 0, "shuffle"), dataset,
                        {"buffer_size": 400_000_000, "seed": 1, "reshuffle_each_iteration": False}, 72, {})
    assert int(shuffled._buffer_size) == 72  # not 400 million slots reserved
    assert sorted(int(x) for x in shuffled) == list(range(72))
    repeated = _shuffle(None, ("data", "train", "stages", 0, "shuffle"), dataset.repeat(),
                        {"buffer_size": 1000, "seed": 1, "reshuffle_each_iteration": False}, 72, {})
    assert int(repeated._buffer_size) == 1000  # an endless split: the buffer mixes across passes


@pytest.mark.slow
def test_pipe_plan_refuses_a_csv_gzip_bomb_located_without_filling_the_memory(tmp_path):
    """Sized to this machine: gzip members of 64 MB of text each, past what parsing may hold."""
    from runner.data.sources.csv import text_limit
    from tests.hostile.test_hostile import pipe

    member = gzip.compress(b"1,2,3\n" * ((64 << 20) // 6), compresslevel=9)
    (tmp_path / "bomb.csv.gz").write_bytes(b"".join(member for _ in range(text_limit() // (64 << 20) + 2)))
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\nname: bomb\ndata:\n  train:\n    source: {csv: {path: bomb.csv.gz, label: -1}}\n"
                    "    stages: [{batch: {batch_size: 4}}]\nmodel:\n  sequential:\n    layers: [{Dense: {units: 1}}]\n"
                    "train: {epochs: 1, loss: mse, optimizer: sgd}\noutputs: {dir: RUNS}\n")
    result = pipe(["plan", str(spec)], cwd=tmp_path, timeout=300)
    location = f"{spec}:5:20: data.train.source.csv.path: {tmp_path / 'bomb.csv.gz'} "
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(location)
    assert f"decompresses to more than {text_limit()} bytes (a gzip bomb" in result.stderr
