"""One error family: every error a user can see is a PipeError, and the command line maps
each to its message and exit code by type."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from runner.cli import app
from runner.commands.reporting import reporting_errors
from runner.environment import BrokenInstall
from runner.errors import PipeError, PipeInterrupted
from runner.outputs.files import WriteError
from runner.outputs.records import NotARunDirectory, RunFileError
from runner.run.interrupts import RunInterrupted
from runner.spec import SpecError
from tests.conftest import REPO
from tests.spec.test_spec import MINIMAL

cli = CliRunner()

# Exceptions defined in runner that no user sees: the sweep's pruner stopping a trial is
# caught by the sweep's worker and recorded as the trial's state.
NOT_USER_FACING = {"runner.run.epoch_end.RunPruned"}

# Imports every runner module (those that need TensorFlow only when asked: a blocked import
# fails them, and they are listed as skipped), then lists each exception class defined in
# runner with whether it is a PipeError or a PipeInterrupted.
_WALK = r"""
import importlib, json, pkgutil, sys
BLOCK = sys.argv[1] == "block"

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tensorflow_datasets", "tf_keras"):
            raise ImportError(f"blocked: {name}")

if BLOCK:
    sys.meta_path.insert(0, Blocker())
import runner
from runner.errors import PipeError, PipeInterrupted
classes, skipped = {}, []
for info in pkgutil.walk_packages(runner.__path__, "runner."):
    try:
        module = importlib.import_module(info.name)
    except ImportError as e:
        if not BLOCK or "blocked: " not in str(e):
            raise
        skipped.append(info.name)
        continue
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == info.name:
            classes[f"{value.__module__}.{value.__qualname__}"] = issubclass(value, (PipeError, PipeInterrupted))
print(json.dumps({"classes": classes, "skipped": skipped}))
"""


def _walk(block: bool) -> dict:
    result = subprocess.run([sys.executable, "-c", _WALK, "block" if block else "all"], capture_output=True,
                            text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def _not_in_the_family(classes: dict) -> list[str]:
    return sorted(name for name, ok in classes.items() if not ok and name not in NOT_USER_FACING)


def test_every_error_of_the_modules_without_tensorflow_is_a_pipe_error():
    found = _walk(block=True)
    assert _not_in_the_family(found["classes"]) == []
    # The walk did reach the kinds of the TensorFlow-free parts, and skipped only TensorFlow's importers.
    assert {"runner.spec.errors.SpecError", "runner.outputs.files.WriteError", "runner.environment.BrokenInstall",
            "runner.run.interrupts.RunInterrupted", "runner.sweep.study.NotASweepDirectory"} <= set(found["classes"])
    assert "runner.spec.errors" not in found["skipped"] and "runner.run.pipeline" in found["skipped"]


@pytest.mark.slow
def test_every_error_of_every_module_is_a_pipe_error():
    found = _walk(block=False)
    assert found["skipped"] == []
    assert _not_in_the_family(found["classes"]) == []
    assert {"runner.train.divergence.TrainingDiverged", "runner.export.write.ExportFailed",
            "runner.models.applications.WeightsFileNotFound"} <= set(found["classes"])


def test_the_kinds_keep_the_builtin_errors_they_were():
    assert issubclass(WriteError, OSError) and issubclass(RunFileError, ValueError)
    assert issubclass(NotARunDirectory, FileNotFoundError)
    assert issubclass(RunInterrupted, KeyboardInterrupt) and not issubclass(RunInterrupted, Exception)
    assert str(WriteError("/runs/x/history.csv", "No space left on device")) == \
        "cannot write /runs/x/history.csv: No space left on device"


def _ends(capsys, error: BaseException, command: str = "run", debug: bool = False) -> tuple[int, str]:
    def work():
        raise error

    with pytest.raises(typer.Exit) as ended:
        reporting_errors(command, work, debug)
    return ended.value.exit_code, capsys.readouterr().err


@pytest.mark.parametrize(("error", "code", "said"), [
    (SpecError("0 is less than the minimum of 1", file="spec.yaml", line=17, column=11, path=("train", "epochs")),
     1, "spec.yaml:17:11: train.epochs: 0 is less than the minimum of 1\n"),
    (WriteError("runs/x/history.csv", "No space left on device"), 3,
     "pipe run: cannot write runs/x/history.csv: No space left on device\n"),
    (BrokenInstall("tensorflow cannot be imported: no module named 'tensorflow'"), 5,
     "pipe run: tensorflow cannot be imported: no module named 'tensorflow'\n"),
    (RunFileError("runs/x/manifest.json: not JSON"), 1, "pipe run: runs/x/manifest.json: not JSON\n"),
    (PipeError("the tracking server refused the run", exit_code=4), 4,
     "pipe run: the tracking server refused the run\n"),
    (RunInterrupted(signal.SIGTERM), 143, "pipe run: interrupted by SIGTERM before training started; nothing to resume\n"),
    (KeyboardInterrupt(), 130, "pipe run: interrupted\n"),
    (FileNotFoundError("data.csv: no such file"), 1, "pipe run: data.csv: no such file\n"),
    (ValueError("a bug"), 3, "pipe run: failed: ValueError: a bug\n"),
])
def test_each_error_ends_the_command_with_its_message_and_code(capsys, error, code, said):
    assert _ends(capsys, error) == (code, said)


def test_a_message_from_a_file_cannot_forge_lines_or_escape_sequences(capsys):
    code, said = _ends(capsys, WriteError("runs/x\n\x1b[31mok", "denied"))
    assert (code, said) == (3, "pipe run: cannot write runs/x\\n\\x1b[31mok: denied\n")


def test_an_unknown_error_is_one_line_and_its_traceback_only_with_debug(capsys):
    assert "Traceback" not in _ends(capsys, RuntimeError("boom"))[1]
    code, said = _ends(capsys, RuntimeError("boom"), debug=True)
    assert code == 3 and "Traceback (most recent call last)" in said
    assert said.splitlines()[-1] == "pipe run: failed: RuntimeError: boom"


def test_a_kind_of_pipe_interrupted_keeps_its_own_code(capsys):
    class Stopped(PipeInterrupted):
        exit_code = 129

    assert _ends(capsys, Stopped(), "sweep") == (129, "pipe sweep: interrupted\n")


def test_pipe_run_maps_a_spec_mistake_to_1_without_a_traceback(write_spec):
    path = write_spec(MINIMAL.replace("epochs: 2", "epochs: 0"))
    result = cli.invoke(app, ["run", str(path)])
    assert result.exit_code == 1
    assert result.stderr == f"{path}:17:11: train.epochs: 0 is less than the minimum of 1\n"


def test_pipe_run_says_a_failure_it_does_not_know_in_one_line(write_spec, monkeypatch):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr("runner.commands.run.load_spec", broken)
    result = cli.invoke(app, ["run", str(write_spec(MINIMAL))])
    assert (result.exit_code, result.stderr) == (3, "pipe run: the run failed: RuntimeError: boom (no error.log was "
                                                    "written; --debug prints it)\n")


@pytest.mark.parametrize("option", ["--resume", "--join"])
def test_pipe_sweep_maps_a_folder_that_is_not_a_sweep_to_2_as_run_resume_does(tmp_path, option):
    pytest.importorskip("optuna")
    result = cli.invoke(app, ["sweep", option, str(tmp_path)])
    assert (result.exit_code, result.stderr) == (2, f"pipe sweep: {tmp_path} is not a sweep directory (no sweep.json)\n")
    (tmp_path / "spec.yaml").write_text(MINIMAL)
    assert cli.invoke(app, ["run", "--resume", str(tmp_path), str(tmp_path / "spec.yaml")]).exit_code == 2
    (tmp_path / "sweep.json").write_text("{not json")
    result = cli.invoke(app, ["sweep", option, str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.startswith(f"pipe sweep: {tmp_path / 'sweep.json'}: not a sweep's config")
