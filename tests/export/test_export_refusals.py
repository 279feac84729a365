"""`pipe export` refusing a mistaken run directory or output path in one line, before the model
loads (so without TensorFlow), and writing nothing anywhere; `pipe predict` never writing into
a run's exports."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.cli import app
from runner.outputs.run_dir import run_file_problem
from tests.conftest import SPECS


@pytest.fixture
def run(tmp_path) -> Path:
    """A completed run's directory as far as export reads it before the model: manifest and spec."""
    run = tmp_path / "runs" / "keras_regression" / "20990101-000000"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"status": "completed", "exports": [
        {"format": "onnx", "path": "export/model.onnx", "sha256": "0" * 64, "quantize": None}]}))
    shutil.copy(SPECS / "keras_regression.yaml", run / "spec.yaml")
    return run


def _export(*args):
    return CliRunner().invoke(app, ["export", *map(str, args)])


def _files(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_folder_that_is_not_a_run_is_a_usage_mistake(run, tmp_path):
    result = _export(tmp_path, "--format", "saved_model")
    assert (result.exit_code, result.stderr) == (2, f"pipe export: {tmp_path}: not a run directory (no manifest.json)\n")
    inside = run / "export" / "saved_model"  # the export given where its run is meant
    inside.mkdir(parents=True)
    result = _export(inside, "--format", "saved_model")
    assert (result.exit_code, result.stderr) == (
        2, f"pipe export: {inside}: not a run directory (no manifest.json); it is inside the run directory {run}\n")


def test_a_run_still_running_is_refused(run):
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(status="running", pid=os.getpid(), host=socket.gethostname())  # alive: this process
    (run / "manifest.json").write_text(json.dumps(manifest))
    before = _files(run)
    result = _export(run, "--format", "saved_model")
    assert result.exit_code == 1
    assert result.stderr == f"pipe export: {run}: the run is running; only a completed run's model is exported\n"
    assert _files(run) == before


def test_a_run_without_its_spec_is_refused(run):
    (run / "spec.yaml").unlink()
    result = _export(run, "--format", "saved_model")
    assert (result.exit_code, result.stderr) == (
        1, f"pipe export: {run}: the run's spec.yaml is missing; it says how to preprocess raw inputs\n")
    assert not (run / "export").exists()


def test_no_export_inside_an_exported_model(run, tmp_path):
    served = tmp_path / "served"  # a SavedModel anyone wrote: a file added there changes the model
    served.mkdir()
    (served / "saved_model.pb").write_bytes(b"")
    for target, model in [(served / "inner", served), (served / "a" / "b" / "model", served),
                          (run / "export" / "model.onnx" / "inner", run / "export" / "model.onnx")]:
        if model.name == "model.onnx":
            model.mkdir(parents=True)  # the manifest lists it (a file or, here, a folder)
        result = _export(run, "--format", "saved_model", "--output", target)
        assert (result.exit_code, result.stderr) == (
            1, f"pipe export: {target}: inside the exported model {model}; export beside it\n")
        assert not target.exists() and not (served / "a").exists()


def test_a_symlink_into_another_run_or_an_exported_model_is_followed(run, tmp_path):
    other = tmp_path / "runs" / "other" / "20990101-000000"
    (other / "logs").mkdir(parents=True)
    (other / "manifest.json").write_text("{}")
    served = tmp_path / "served"
    served.mkdir()
    (served / "saved_model.pb").write_bytes(b"")
    (tmp_path / "to_logs").symlink_to(other / "logs")
    (tmp_path / "to_served").symlink_to(served)
    result = _export(run, "--format", "onnx", "--output", tmp_path / "to_logs" / "m.onnx")
    assert result.exit_code == 1 and f"inside another run directory ({other})" in result.stderr
    result = _export(run, "--format", "onnx", "--output", tmp_path / "to_served" / "m.onnx")
    assert result.exit_code == 1 and f"inside the exported model {tmp_path / 'to_served'}" in result.stderr
    assert _files(other) == ["logs", "manifest.json"] and _files(served) == ["saved_model.pb"]



def test_a_runs_export_folder_swapped_for_a_link_is_refused(run, tmp_path):
    """export/ is the run's own folder: a link there (to /tmp, to anywhere) would carry the
    export out of the run directory, by default or by an --output inside it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "export").symlink_to(elsewhere)
    for output in ((), ("--output", run / "export" / "m.onnx")):
        result = _export(run, "--format", "onnx", *output)
        assert result.exit_code == 1, result.stderr
        assert f"the run's export/ is a link pipe did not make (to {elsewhere})" in result.stderr
    assert _files(elsewhere) == []

def test_the_runs_own_files_are_refused_but_its_export_folder_is_the_place(run):
    for name in ("saved_model", "checkpoints/x", "history.csv", "preprocessing.json"):
        result = _export(run, "--format", "saved_model", "--output", run / name)
        assert result.exit_code == 1
        assert f"would replace '{name.split('/')[0]}' of the run directory {run}" in result.stderr
    assert run_file_problem(run / "export" / "custom.onnx", allowed=("export",)) is None


@pytest.mark.parametrize("target", ["/proc/self/pipe-export-test", "/proc/pipe-export-test/a/saved_model",
                                    "/sys/pipe-export-test"])
def test_a_target_where_nothing_can_be_written_is_refused(run, target):
    """Said in one line before the model loads, as root too (os.access would let root pass)."""
    result = _export(run, "--format", "saved_model", "--output", target)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"pipe export: {target}: cannot write there: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not Path(target).exists() and not (run / "export").exists()


def test_other_commands_never_write_into_a_runs_exports(run):
    """The exports are listed with their SHA-256: a predictions file there would sit among them."""
    assert run_file_problem(run / "export" / "predictions.csv") == (
        f"would replace 'export' of the run directory {run}, which pipe wrote: write the output to another file")
    assert run_file_problem(run / "exported.csv") is None


@pytest.mark.parametrize("args, said", [
    (("--format", "onnx", "--quantize", "int8"), "--quantize applies to tflite, not onnx"),
    (("--format", "saved_model", "--quantize", "float16"), "--quantize applies to tflite, not saved_model"),
    (("--format", "tflite", "--jit-compile"), "--jit-compile applies to saved_model, not tflite"),
    (("--format", "tflite", "--output", "x.onnx"),
     "--output x.onnx: a TFLite file's name ends in .tflite, not .onnx (name it x.tflite, or choose the --format "
     "of that file)"),
    (("--format", "onnx", "--output", "x.keras"),
     "--output x.keras: an ONNX file's name ends in .onnx, not .keras (name it x.onnx, or choose the --format "
     "of that file)"),
    (("--format", "saved_model", "--output", "m.tflite"),
     "--output m.tflite: a SavedModel is a folder, and .tflite names a file of another format (give a folder "
     "name, or choose the --format of that file)"),
])
def test_an_option_that_contradicts_the_format_is_a_usage_mistake(run, tmp_path, args, said):
    """Exit 2, like an unknown format: said before the run is read, and nothing is written."""
    os.chdir(tmp_path)
    result = _export(run, *args)
    assert (result.exit_code, result.stderr) == (2, f"pipe export: {said}\n")
    assert not (run / "export").exists() and not any(tmp_path.glob("x.*")) and not (tmp_path / "m.tflite").exists()


def test_a_name_of_the_user_s_own_is_no_contradiction():
    from runner.export.paths import request_problem

    for fmt, output in [("onnx", "model"), ("tflite", "m.v2"), ("saved_model", "served.d"), ("tflite", "M.TFLITE")]:
        assert request_problem(fmt, None, False, output) is None


def test_an_output_that_exists_is_refused_naming_the_ways_out(run, tmp_path):
    taken = tmp_path / "model.tflite"
    taken.write_text("mine")
    result = _export(run, "--format", "tflite", "--output", taken)
    assert result.exit_code == 1
    assert result.stderr == (f"pipe export: {taken}: already exists; pipe export never replaces a file (remove it, "
                             "choose another --output, or leave --output out: the run's export/ numbers its "
                             "exports)\n")
    assert taken.read_text() == "mine"


def test_an_output_folder_is_where_the_default_name_goes_as_cp_takes_it(run, tmp_path):
    from runner.export.paths import output_path

    manifest = json.loads((run / "manifest.json").read_text())
    exdir = tmp_path / "exdir"
    exdir.mkdir()  # an existing, empty folder: not "already exists"
    assert output_path(run, manifest, "tflite", str(exdir), None) == exdir / "model.tflite"
    (exdir / "model.tflite").write_text("mine")  # an earlier export there: numbered past it, never replaced
    assert output_path(run, manifest, "tflite", f"{exdir}/", None) == exdir / "model-2.tflite"
    assert output_path(run, manifest, "saved_model", str(exdir), "float16") == exdir / "saved_model-float16"
    fresh = tmp_path / "fresh"  # a trailing '/' says folder, even before it exists
    assert output_path(run, manifest, "onnx", f"{fresh}/", None) == fresh / "model.onnx"
    assert not fresh.exists()


def test_the_default_path_is_numbered_past_earlier_exports(run):
    from runner.export.paths import free_default_path

    assert free_default_path(run, "tflite") == run / "export" / "model.tflite"
    (run / "export").mkdir()
    (run / "export" / "model.tflite").write_text("")
    (run / "export" / "model-2.tflite").write_text("")
    (run / "export" / "saved_model-int8").mkdir()
    assert free_default_path(run, "tflite") == run / "export" / "model-3.tflite"
    assert free_default_path(run, "onnx") == run / "export" / "model.onnx"
    assert free_default_path(run, "saved_model") == run / "export" / "saved_model"
    (run / "export" / "saved_model").mkdir()
    assert free_default_path(run, "saved_model") == run / "export" / "saved_model-2"
    assert free_default_path(run, "tflite", "int8") == run / "export" / "model-int8.tflite"
