"""A run directory's files are read only as pipe wrote them (issue 22): a symbolic link is
refused, never followed; a file too large is said so, never taken as empty; a malformed one is
named with the position of the mistake, never quoted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.cli import app
from runner.outputs.records import RunFileError, load_run_spec, read_run

SPEC = "version: 1\nname: r\nseed: 1\n"


def make_run(path: Path, spec: str = SPEC) -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"name": "r", "status": "completed"}))
    (path / "metrics.json").write_text(json.dumps({"test": {"loss": 0.5}}))
    (path / "spec.yaml").write_text(spec)
    return path


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("root:x:0:0:TOPSECRET\n")
    return path


@pytest.mark.parametrize("name", ["spec.yaml", "manifest.json", "metrics.json"])
def test_compare_refuses_a_symlinked_run_file(tmp_path, secret, name):
    first, second = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    (second / name).unlink()
    (second / name).symlink_to(secret)
    result = CliRunner().invoke(app, ["compare", str(first), str(second)])
    assert result.exit_code == 1, result.output
    assert "TOPSECRET" not in result.output
    assert f"{second / name}: a symbolic link, not a file the run wrote; not read" in result.output


def test_compare_says_a_spec_is_too_large_instead_of_showing_no_difference(tmp_path):
    first, second = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    (second / "spec.yaml").write_text(SPEC + "#" * (17 << 20))
    result = CliRunner().invoke(app, ["compare", str(first), str(second)])
    assert result.exit_code == 1, result.output
    assert f"{second / 'spec.yaml'}: {(second / 'spec.yaml').stat().st_size} bytes, more than a run's spec holds" \
        in result.output
    assert "the same spec" not in result.output


def test_compare_names_a_malformed_manifest_without_quoting_it(tmp_path):
    first, second = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    (second / "manifest.json").write_text('{"name": TOPSECRET}')
    result = CliRunner().invoke(app, ["compare", str(first), str(second)])
    assert result.exit_code == 1, result.output
    assert result.output.strip() == (f"pipe compare: {second / 'manifest.json'}: not JSON "
                                     "(line 1, column 10: Expecting value)")


def test_evaluate_and_predict_read_no_symlinked_spec(tmp_path, secret):
    run = make_run(tmp_path / "a")
    (run / "spec.yaml").unlink()
    (run / "spec.yaml").symlink_to(secret)
    with pytest.raises(RunFileError, match="a symbolic link"):
        load_run_spec(run)
    assert read_run(run).metrics == {"test": {"loss": 0.5}}  # the manifest is still the run's


@pytest.mark.slow
def test_a_symlinked_preprocessing_json_is_refused(tmp_path, secret):
    from runner.data.learned import load_learned
    from runner.spec import SpecError

    run = make_run(tmp_path / "a")
    (run / "preprocessing.json").symlink_to(secret)
    with pytest.raises(SpecError, match="a symbolic link, not the file pipe run wrote"):
        load_learned(run)


def test_a_tampered_model_file_is_refused_before_it_is_loaded(tmp_path):
    import hashlib

    from runner.outputs.saving import load_model

    run = make_run(tmp_path / "a")
    (run / "model.keras").write_bytes(b"the model the run saved")
    manifest = {"name": "r", "status": "completed",
                "model_sha256": hashlib.sha256(b"the model the run saved").hexdigest()}
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "model.keras").write_bytes(b"another model")
    with pytest.raises(RunFileError) as refused:
        load_model(run)
    assert str(refused.value) == (f"{run / 'model.keras'}: not the model the run saved (its SHA-256 differs from "
                                  "the manifest's model_sha256); not loaded")


@pytest.mark.slow
@pytest.mark.parametrize("columns, problem", [
    ({"island": []}, "columns.island: not an object"),
    ({"island": {"vocabulary": "Biscoe"}}, "columns.island: 'vocabulary' is not a list of strings or integers"),
    ({"island": {"vocabulary": ["a", "a"]}}, "columns.island: 'vocabulary' repeats a value"),
    ({"island": {"fill": [1]}}, "columns.island: 'fill' is not a string or a finite number"),
])
def test_an_edited_preprocessing_json_is_named(tmp_path, columns, problem):
    from runner.data.learned import load_learned
    from runner.spec import SpecError

    run = make_run(tmp_path / "a")
    (run / "preprocessing.json").write_text(json.dumps({"version": 1, "columns": columns}))
    with pytest.raises(SpecError) as refused:
        load_learned(run)
    assert str(refused.value) == (f"{run / 'preprocessing.json'}: {problem}: the file was edited or is damaged; "
                                  "rerun the run to rewrite it")


@pytest.mark.slow
def test_a_column_missing_from_an_edited_preprocessing_json_is_blamed_on_it_not_on_the_input(tmp_path):
    from types import SimpleNamespace

    import numpy as np

    from runner.data.learned import load_learned
    from runner.data.table import Column, _encoded
    from runner.spec import SpecError

    run = make_run(tmp_path / "a")
    (run / "preprocessing.json").write_text(json.dumps({"version": 1, "columns": {
        "island": {"kind": "categorical", "vocabulary": ["Biscoe"]}, "mass": {"kind": "numeric"}}}))
    learned = load_learned(run)
    table = SimpleNamespace(path=("data", "test", "source", "csv"), columns=[
        Column("island", "categorical", "one_hot"), Column("mass", "numeric", "one_hot", fill="mean"),
        Column("bill", "numeric", "one_hot")],
        values={"island": np.array(["Biscoe"]), "mass": np.array([np.nan]), "bill": np.array([1.0])})
    with pytest.raises(SpecError) as refused:
        _encoded(None, SimpleNamespace(table=table), learned)
    assert str(refused.value) == (f"{run / 'preprocessing.json'}: columns.mass: no 'fill' for the column's gaps: "
                                  "the file was edited or is damaged; rerun the run to rewrite it")
    table.values["mass"] = np.array([3.0])
    with pytest.raises(SpecError) as refused:
        _encoded(None, SimpleNamespace(table=table), learned)
    assert str(refused.value) == (f"{run / 'preprocessing.json'}: no entry for the column 'bill' of the run's table: "
                                  "the file was edited or is damaged; rerun the run to rewrite it")


@pytest.mark.slow
@pytest.mark.parametrize("status, said", [("failed", "the run is failed and saved no model"),
                                          ("completed", "the run saved no model (outputs.save_model: false)")])
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_run_without_a_model_is_said_so_before_its_data_is_read(tmp_path, command, status, said):
    """Not a message about the data (a killed run has no preprocessing.json either)."""
    run = make_run(tmp_path / "a", SPEC + "data: {train: {source: {csv: {path: missing.csv}}}}\n")
    (run / "manifest.json").write_text(json.dumps({"name": "r", "status": status}))
    (tmp_path / "in.csv").write_text("x\n1\n")
    args = [command, str(run)] + ([str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv")]
                                  if command == "predict" else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert f"{run}: {said} (model.keras or saved_model/)" in result.output
    assert "missing.csv" not in result.output


def test_a_symlinked_model_is_not_loaded_even_to_the_same_bytes(tmp_path):
    """A run's model.keras that is a link (here to another run's identical copy) is not the
    file the run saved: evaluate, predict and export refuse it (exit 1)."""
    from runner.outputs.saving import load_model

    first, second = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    (first / "model.keras").write_bytes(b"the same bytes")
    (second / "model.keras").symlink_to(first / "model.keras")
    with pytest.raises(RunFileError, match="model.keras: a symbolic link, not the file the run saved") as caught:
        load_model(second)
    assert caught.value.exit_code == 1
