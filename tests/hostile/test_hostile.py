"""A corpus of hostile specs and files, each run through the real command line.

Every file under tests/hostile/validate/ and tests/hostile/run/ starts with
`# expect: <words of its message>`. Each must make `pipe` exit non-zero, within a bounded
time (the subprocess timeout), without a Python traceback, with a located
`file:line:col:` error or a one-paragraph run error holding the expected words. Most fail
at `pipe validate` (no TensorFlow, each in its own process); the ones in run/ need data
and TensorFlow, and run in the test process (TensorFlow imported once).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.cli import app
from tests.conftest import REPO, pipe_in_process

HOSTILE = Path(__file__).parent
VALIDATE = sorted((HOSTILE / "validate").glob("*.yaml"))
RUN = sorted((HOSTILE / "run").glob("*.yaml"))
LOCATED = re.compile(r"^\S[^\n]*:\d+:\d+: \S")
RUN_FAILED = "pipe run: the run failed: "


def expected(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode("ascii")
    assert first.startswith("# expect: "), path
    return first[len("# expect: "):]


def pipe(args, cwd, timeout):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def assert_refused(result, path: Path) -> str:
    """Exit 1 or 3, no traceback, and a last line that is located or one run paragraph."""
    output = result.stdout + result.stderr
    assert result.returncode in (1, 3), output
    assert "Traceback" not in output
    assert "\x1b" not in output and "\x07" not in output  # names and cells from files are escaped
    last = [line for line in output.splitlines() if line.strip()][-1]
    assert LOCATED.match(last) or last.startswith(RUN_FAILED), last
    assert expected(path) in output, output
    return output


def test_the_corpus_is_large_enough():
    assert len(VALIDATE) + len(RUN) >= 125


@pytest.mark.parametrize("path", VALIDATE, ids=lambda p: p.stem)
def test_validate_refuses(path, tmp_path):
    result = pipe(["validate", str(path)], cwd=tmp_path, timeout=60)
    assert_refused(result, path)
    assert all(LOCATED.match(line) for line in result.stdout.splitlines()), result.stdout


@pytest.mark.parametrize("fmt", ["json", "github"])
@pytest.mark.parametrize("path", [p for p in VALIDATE if p.stem.startswith("yaml_")], ids=lambda p: p.stem)
def test_yaml_errors_are_located_in_every_format(path, fmt):
    result = CliRunner().invoke(app, ["validate", "--format", fmt, str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    if fmt == "json":
        (error,) = json.loads(result.stdout)
        assert error["file"] == str(path) and error["line"] >= 1 and error["column"] >= 1
        assert expected(path) in error["message"]
    else:
        assert re.match(rf"::error file={re.escape(str(path))},line=\d+,col=\d+::", result.stdout), result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("path", RUN, ids=lambda p: p.stem)
def test_run_refuses(path, tmp_path):
    (tmp_path / "a_file").write_text("a file where outputs.dir wants a directory\n")
    result = pipe_in_process(["run", "--quiet", path], cwd=tmp_path)
    output = assert_refused(result, path)
    assert "TOPSECRET" not in output  # a data file's content is never echoed
    assert not (tmp_path / "RUNS").exists()  # found before a run directory is made


def test_every_run_case_is_valid_for_validate():
    """The run/ cases pass validate: only running finds them (data, shapes, disk)."""
    result = CliRunner().invoke(app, ["validate", *map(str, RUN)])
    assert result.exit_code == 0, result.output


# Sizes and formats read from data files: refused by plan as by run, before TensorFlow allocates.
BOMBS = [p for p in RUN if p.stem.startswith(("idx_", "npy_", "npz_", "tfrecord_length", "tfrecord_gzip_length",
                                              "image_folder_"))]


@pytest.mark.slow
@pytest.mark.parametrize("path", BOMBS, ids=lambda p: p.stem)
def test_plan_refuses_what_run_refuses_in_the_data(path, tmp_path):
    result = pipe_in_process(["plan", path], cwd=tmp_path)
    assert "TOPSECRET" not in assert_refused(result, path)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "plan"])
def test_an_image_that_fails_to_decode_mid_run_is_named_and_located(command, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""version: 1
name: hostile
data:
  train:
    source:
      image_folder: {{directory: {HOSTILE / 'data' / 'images_corrupt_body'}, image_size: [4, 4]}}
    stages:
      - batch: {{batch_size: 4}}
model:
  sequential:
    input_shape: [4, 4, 3]
    layers:
      - Flatten: {{}}
      - Dense: {{units: 2}}
train:
  epochs: 1
  loss: {{SparseCategoricalCrossentropy: {{from_logits: true}}}}
  optimizer: sgd
outputs: {{dir: RUNS, plots: {{enabled: false}}, save_model: false}}
""")
    result = pipe([command, *(["--quiet"] if command == "run" else []), "spec.yaml"], cwd=tmp_path, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output and "TOPSECRET" not in output
    broken = HOSTILE / "data" / "images_corrupt_body" / "dog" / "broken.png"
    assert output.strip().splitlines()[-1] == (
        f"spec.yaml:6:22: data.train.source.image_folder.directory: {broken}: cannot be decoded as an image "
        "(Invalid PNG data, size 87); remove or replace it")
