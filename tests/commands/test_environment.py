"""A broken install is named with its reason and fix; `pipe doctor` reports this machine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO
from runner.environment import import_problem, installed

TFDS_SPEC = """\
version: 1
name: tfds_spec
data:
  train:
    source:
      tfds: {name: mnist, split: train}
model:
  sequential:
    layers: [{Dense: {units: 1}}]
train: {epochs: 1, loss: mse, optimizer: sgd}
"""


def test_a_missing_library_is_named_with_the_install_command():
    assert import_problem("no-such-distribution", "no_such_module") == (
        "no-such-distribution is not installed (fix: pip install 'no-such-distribution')"
    )


def test_the_declared_range_is_read_from_the_installed_metadata():
    tensorflow = installed("tensorflow")
    assert tensorflow.version is not None
    assert tensorflow.declared.startswith(">=") and tensorflow.in_range is True


@pytest.mark.slow
def test_a_half_importing_tfds_is_diagnosed_before_the_run(tmp_path, write_spec):
    # A tensorflow_datasets whose core fails the way tfds does against an unsuitable protobuf.
    fake = tmp_path / "fake" / "tensorflow_datasets"
    (fake / "core").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "core" / "__init__.py").write_text(
        "raise ImportError(\"cannot import name 'runtime_version' from 'google.protobuf'\")\n")
    spec = write_spec(TFDS_SPEC)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), str(REPO)])}
    result = subprocess.run([sys.executable, "-m", "runner.cli", "run", str(spec)], capture_output=True,
                            text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 5
    # pipe's line, then TensorFlow's start-up log (shown when the install is broken)
    last = next(line for line in result.stderr.splitlines() if line.startswith("pipe run: "))
    assert re.fullmatch(
        r"pipe run: tensorflow-datasets \S+ cannot be imported: ImportError: cannot import name "
        r"'runtime_version' from 'google.protobuf' \(fix: .+\)", last), last
    assert "Traceback" not in result.stderr and "AttributeError" not in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_doctor_reports_this_cpu_only_machine_as_json():
    result = subprocess.run([sys.executable, "-m", "runner.cli", "doctor", "--format", "json"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert result.returncode == 0 and report["ok"] is True
    assert {"tensorflow", "keras", "tensorflow-datasets", "numpy", "protobuf", "devices"} <= set(checks)
    assert checks["tensorflow"]["status"] == "ok"
    assert checks["tensorflow"]["detail"].startswith(installed("tensorflow").version)
    assert ", 0 GPU;" in checks["devices"]["detail"]
    assert "runs on the CPU" in checks["gpu"]["detail"]
