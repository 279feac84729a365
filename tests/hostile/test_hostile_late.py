"""Checks that came too late or said the wrong thing: each now refused up front, clearly,
with the documented exit code (TF_CONFIG, Ctrl-C during plan, predict's input, a resumed
run's checkpoint, an edited preprocessing.json)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from runner.cli import app
from runner.spec.cluster import parse_tf_config
from runner.spec.errors import SpecError
from tests.conftest import pipe_in_process


@pytest.mark.parametrize("raw, message", [
    ('{"cluster": {"worker": ["localhost:notaport"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: 'cluster' 'worker' has 'localhost:notaport', expected 'host:port' (a host name or address, "
     "and a port 0 to 65535)"),
    ('{"cluster": {"worker": ["localhost:99999"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: 'cluster' 'worker' has 'localhost:99999', expected 'host:port' (a host name or address, "
     "and a port 0 to 65535)"),
    ('{"cluster": {"worker": ["a b:1"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: 'cluster' 'worker' has 'a b:1', expected 'host:port' (a host name or address, "
     "and a port 0 to 65535)"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 0}, "rpc_layer": 5}',
     "TF_CONFIG: 'rpc_layer' must be a string such as \"grpc\", got int"),
])
def test_a_malformed_tf_config_is_named_before_tensorflow_reads_it(raw, message):
    with pytest.raises(SpecError) as info:
        parse_tf_config(raw)
    assert str(info.value) == message


def test_addresses_tensorflow_takes_still_pass():
    raw = '{"cluster": {"worker": ["127.0.0.1:2222", "[::1]:2223", "host-1.example.com:0"]}, "task": {"type": "worker"}}'
    assert parse_tf_config(raw).jobs["worker"][1] == "[::1]:2223"


def test_ctrl_c_during_plan_says_interrupted_and_no_tensorflow_log(monkeypatch, tmp_path):
    import runner.commands.plan

    def interrupted(*args, **kwargs):
        import os
        os.write(2, b"I0000 TensorFlow start-up noise\n")  # what fd 2 holds while TensorFlow starts
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.commands.plan, "load_spec", interrupted)
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\n")
    result = CliRunner().invoke(app, ["plan", str(spec)])
    assert result.exit_code == 130
    assert result.stderr == "pipe plan: interrupted\n"


SPEC = """version: 1
name: late
seed: 1
data:
  train:
    source:
      synthetic:
        x: {linspace: {start: -1.0, stop: 1.0, num: 16}}
        y: {linear: {w: 2.0, b: 0.5}}
    stages:
      - map: {ops: [normalize: {}]}
      - batch: {batch_size: 4}
model:
  sequential:
    input_shape: [1]
    layers:
      - Dense: {units: UNITS}
      - Dense: {units: 1}
train:
  epochs: 2
  engine: keras
  loss: mse
  optimizer: sgd
outputs: {dir: RUNS, plots: {enabled: false}}
"""


def pipe(args, cwd):
    return pipe_in_process(args, cwd)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run with learned statistics, a saved model and checkpoints."""
    folder = tmp_path_factory.mktemp("late")
    (folder / "spec.yaml").write_text(SPEC.replace("UNITS", "3"))
    result = pipe(["run", "--quiet", "spec.yaml"], folder)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (folder / "RUNS" / "late").iterdir()
    return folder, run_dir


@pytest.mark.slow
def test_predict_on_rows_of_the_wrong_width_is_one_located_line(trained):
    folder, run_dir = trained
    np.save(folder / "wide.npy", np.zeros((5, 3), np.float32))
    result = pipe(["predict", run_dir, "wide.npy", "-o", "out.csv"], folder)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr
    assert result.stderr.startswith("wide.npy: the input's rows (float32, shape (3,)) do not fit the run's ")


@pytest.mark.slow
def test_predict_on_text_rows_is_one_located_line(trained):
    folder, run_dir = trained
    np.save(folder / "text.npy", np.array([["a"], ["b"]]))
    result = pipe(["predict", run_dir, "text.npy", "-o", "out.csv"], folder)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "function_node" not in result.stderr
    assert result.stderr.startswith("text.npy: the input's rows (text, shape (1,)) do not fit the run's ")


@pytest.mark.slow
def test_predict_clamps_a_huge_batch_size_to_the_rows(trained):
    folder, run_dir = trained
    np.save(folder / "x.npy", np.linspace(-1, 1, 7, dtype=np.float32).reshape(7, 1))
    result = pipe(["predict", run_dir, "x.npy", "-o", "out.csv", "--batch-size", 10**9], folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "predictions: out.csv (7 rows)"


@pytest.mark.slow
def test_predict_never_writes_over_a_run_s_own_files(trained):
    folder, run_dir = trained
    before = (run_dir / "history.csv").read_bytes()
    np.save(folder / "x.npy", np.zeros((2, 1), np.float32))
    result = pipe(["predict", run_dir, "x.npy", "-o", run_dir / "history.csv"], folder)
    assert result.returncode == 1
    assert "would replace 'history.csv' of the run directory" in result.stderr
    assert (run_dir / "history.csv").read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("edit, problem", [
    (lambda s: s["normalize"][0].update(variance=[-1.0]), "normalize[0].variance holds a negative value"),
    (lambda s: s["normalize"][0].update(mean=[float("nan")]), "normalize[0].mean holds a value that is not a finite number"),
    (lambda s: s["normalize"][0].update(variance="x"), "normalize[0].variance is not a list of numbers"),
])
def test_an_edited_preprocessing_json_is_refused_when_loaded(trained, tmp_path, edit, problem):
    folder, run_dir = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    stats = json.loads((copy / "preprocessing.json").read_text())
    edit(stats)
    (copy / "preprocessing.json").write_text(json.dumps(stats, allow_nan=True))
    for command in (["evaluate", copy, "--split", "train"], ["predict", copy, folder / "x.npy", "-o", tmp_path / "p.csv"]):
        np.save(folder / "x.npy", np.zeros((2, 1), np.float32))
        result = pipe(command, folder)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip() == (f"{copy / 'preprocessing.json'}: {problem}: the file was edited or is "
                                         "damaged; rerun the run to rewrite it")


@pytest.mark.slow
def test_resume_from_a_checkpoint_of_another_model_creates_nothing(trained, tmp_path):
    folder, run_dir = trained
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    (other / "spec.yaml").write_text((other / "spec.yaml").read_text().replace("units: 3", "units: 5"))
    (folder / "five.yaml").write_text(SPEC.replace("UNITS", "5").replace("epochs: 2", "epochs: 4"))
    before = sorted((folder / "RUNS" / "late").iterdir())
    result = pipe(["run", "--quiet", "five.yaml", "--resume", other], folder)
    assert result.returncode == 1, result.stderr
    assert "the checkpoint cannot be read" in result.stderr and "Traceback" not in result.stderr
    assert sorted((folder / "RUNS" / "late").iterdir()) == before


@pytest.mark.slow
def test_an_outputs_dir_with_a_newline_cannot_forge_the_run_directory_line(tmp_path):
    spec = SPEC.replace("UNITS", "1").replace("epochs: 2", "epochs: 1").replace(
        "outputs: {dir: RUNS,", "outputs: {dir: \"RUNS\\nrun directory: /etc\",")
    (tmp_path / "spec.yaml").write_text(spec)
    result = pipe(["run", "--quiet", "spec.yaml"], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("run directory:")]
    assert len(lines) == 1 and lines[0].startswith("run directory: RUNS\\nrun directory: /etc/late/"), result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["", "GZIP", "ZLIB"])
def test_record_lengths_of_files_tensorflow_wrote_pass(tmp_path, compression):
    import tensorflow as tf

    from runner.data.sources.tfrecord import record_length_problem

    path = tmp_path / "data.tfrecord"
    with tf.io.TFRecordWriter(str(path), options=compression or None) as writer:
        for i in range(300):
            writer.write(bytes([i % 256]) * (i * 97 % 5000))
    assert record_length_problem(path, compression) is None
    data = path.read_bytes()
    if not compression:
        path.write_bytes(data[:-10])
        assert "but only" in record_length_problem(path, compression)


@pytest.mark.slow
def test_gunzip_reads_every_member_and_stops_past_its_limit():
    import gzip

    from runner.data.source import gunzip

    data = gzip.compress(b"a" * 1000) + gzip.compress(b"b" * 500)
    assert gunzip(data, 1500) == b"a" * 1000 + b"b" * 500
    with pytest.raises(OverflowError):
        gunzip(data, 1499)
    with pytest.raises(EOFError):
        gunzip(gzip.compress(b"c" * 1000)[:-12], 10_000)
