"""`cache: {filename}`: keyed by what it holds, one file per worker, and recovered after a
run that was killed while writing it."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from runner.data.cache import cache_file  # runner.data imports TensorFlow
from runner.spec import load_spec
from tests.conftest import REPO

pytestmark = pytest.mark.slow

SPEC = """\
version: 1
name: cached
seed: 1
data:
  train:
    source:
      synthetic:
        x: {linspace: {start: 0.0, stop: 1.0, num: 64}}
        y: {linear: {w: 1.0, b: 0.0}}
    stages:
      - map: {ops: [{scale: {factor: 2.0}}]}
      - cache: {filename: cache/train}
      - batch: {batch_size: 8}
model:
  sequential:
    input_shape: [1]
    layers: [{Dense: {units: 1}}]
train:
  epochs: 1
  loss: mse
  optimizer: sgd
"""
CLUSTER = """\
device:
  strategy:
    name: multi_worker_mirrored
    cluster: {worker: ["127.0.0.1:1", "127.0.0.1:2"]}
    task: {type: worker, index: INDEX}
"""


def _spec(tmp_path, text=SPEC, overrides=()):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return load_spec(path, overrides)


def test_each_worker_gets_its_own_cache_file(tmp_path):
    names = {cache_file(_spec(tmp_path, SPEC + CLUSTER.replace("INDEX", str(i))), ("data",), "c/train", ["k"])
             for i in (0, 1)}
    assert sorted(n.rsplit("-", 1)[1] for n in names) == ["worker0", "worker1"]


def test_a_cache_in_use_by_another_process_falls_back_to_memory(tmp_path, capsys):
    spec = _spec(tmp_path)
    key = ["held elsewhere"]
    path = cache_file(spec, ("data",), "c/held", key)
    with open(f"{path}.pipe-lock", "a") as other:  # another open file: flock conflicts with ours
        from runner.data import cache

        cache._HELD.pop(path).close()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert cache_file(spec, ("data",), "c/held", key) is None
    assert capsys.readouterr().err == f"cache: {path} is in use by another run; caching in memory instead\n"


def test_a_changed_spec_never_reads_a_stale_cache(tmp_path):
    from runner.data import build_datasets

    def features(overrides=()):
        dataset = build_datasets(_spec(tmp_path, overrides=overrides)).train
        return np.concatenate([x.numpy().ravel() for x, _ in dataset])

    first = features()
    assert features() == pytest.approx(first)  # the same spec reads its cache
    changed = features(["data.train.stages.0.map.ops.0.scale.factor=3.0"])
    assert changed == pytest.approx(first * 1.5)  # not the cache of factor 2
    files = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.name.endswith(".index"))
    assert len(files) == 2 and all(name.startswith("train-") for name in files)


def test_a_lockfile_left_by_a_killed_run_is_removed_with_a_message(tmp_path):
    _spec(tmp_path)
    code = textwrap.dedent("""
        import sys, time
        import numpy as np
        from runner.data import build_datasets
        from runner.spec import load_spec
        dataset = build_datasets(load_spec("spec.yaml")).train
        if sys.argv[1] == "stop":
            elements = iter(dataset)
            next(elements)  # the cache is being written: tf.data's lockfile exists
            print("writing", flush=True)
            time.sleep(600)
        print(sum(int(x.shape[0]) for x, _ in dataset))
    """)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"}
    killed = subprocess.Popen([sys.executable, "-c", code, "stop"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert killed.stdout.readline() == "writing\n"
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    (lockfile,) = (tmp_path / "cache").glob("*.lockfile")
    result = subprocess.run([sys.executable, "-c", code, "read"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "64\n"
    assert f"cache: removed {lockfile}, a lockfile left by a run that did not finish\n" in result.stderr
    # the killed run's .pipe-lock was taken over by the next run, which removed it as it ended
    assert not list((tmp_path / "cache").glob("*lock*"))


def test_a_released_cache_leaves_no_lock_file_and_can_be_taken_again(tmp_path):
    from runner.data import cache

    spec = _spec(tmp_path)
    path = cache_file(spec, ("data",), "c/train", ["k"])
    stale = open(f"{path}.pipe-lock", "a")  # opened by another process just before this one lets go
    cache.release_caches()
    assert not os.path.exists(f"{path}.pipe-lock") and cache._HELD == {}
    fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the old file is free: its lock is on nothing now
    try:
        again = cache_file(spec, ("data",), "c/train", ["k"])  # locks the file at the path, not the old one
        assert again == path
        with open(f"{path}.pipe-lock", "a") as other:
            with pytest.raises(OSError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        stale.close()
        cache.release_caches()
    assert list((tmp_path / "c").iterdir()) == []  # nothing was cached: no file, no lock


@pytest.mark.parametrize("where", ["cache/train", "ABSOLUTE"])
def test_a_run_with_a_cache_file_leaves_only_the_cache(tmp_path, where):
    filename = str(tmp_path / "elsewhere" / "train") if where == "ABSOLUTE" else where
    (tmp_path / "spec.yaml").write_text(SPEC.replace("cache/train", filename))
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2", "HOME": str(tmp_path)}
    for _ in range(2):  # the second run reads the cache the first wrote
        result = subprocess.run([sys.executable, "-m", "runner.cli", "run", "-q", "spec.yaml"], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
    folder = (tmp_path / filename).parent
    names = sorted(p.name.split("-", 1)[1].split(".", 1)[1] for p in folder.iterdir())
    assert names == ["data-00000-of-00001", "index"]
