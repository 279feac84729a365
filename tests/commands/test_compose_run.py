"""A composed spec runs as its merged single file does, and its run directory keeps its sources."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, pipe_in_process

pytestmark = pytest.mark.slow
COMPOSE = REPO / "tests" / "compose"


def pipe(*args, cwd):
    return pipe_in_process(args, cwd)


def run_dir_of(result, cwd):
    assert result.returncode == 0, result.stderr
    return cwd / result.stdout.splitlines()[0].split(": ", 1)[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """compose/regression.yaml (data, model and train from three bases) and its merged file, run."""
    cwd = tmp_path_factory.mktemp("compose_run")
    merged = cwd / "merged.yaml"
    resolved = pipe("validate", "--resolved", COMPOSE / "regression.yaml", cwd=cwd)
    assert resolved.returncode == 0, resolved.stderr
    merged.write_text(resolved.stdout)
    composed = run_dir_of(pipe("run", COMPOSE / "regression.yaml", "--quiet", cwd=cwd), cwd)
    single = run_dir_of(pipe("run", merged, "--quiet", cwd=cwd), cwd)
    return cwd, composed, single, merged


def test_a_composed_spec_and_its_merged_file_leave_the_same_run(runs):
    _, composed, single, _ = runs
    assert composed != single
    for name in ("spec.yaml", "metrics.json", "history.json", "history.csv"):
        assert (composed / name).read_text() == (single / name).read_text(), name
    assert len(json.loads((composed / "history.json").read_text())["loss"]) == 2


def test_the_run_directory_keeps_every_source_file(runs):
    _, composed, single, _ = runs
    names = ["regression.yaml", "data.yaml", "model.yaml", "train.yaml"]
    assert sorted(p.name for p in (composed / "sources").iterdir()) == [f"{i}-{n}" for i, n in enumerate(names, 1)]
    for i, name in enumerate(names, 1):
        assert (composed / "sources" / f"{i}-{name}").read_text() == (COMPOSE / name).read_text()
    manifest = json.loads((composed / "manifest.json").read_text())
    assert manifest["spec_files"] == [str(COMPOSE / "regression.yaml")]
    assert manifest["spec_sources"]["sources/2-data.yaml"] == str(COMPOSE / "data.yaml")
    assert not (single / "sources").exists() and "spec_sources" not in json.loads((single / "manifest.json").read_text())


def test_resume_compares_resolved_specs(runs):
    cwd, composed, _, merged = runs
    resumed = run_dir_of(pipe("run", merged, "--quiet", "--set", "train.epochs=3", "--resume", composed, cwd=cwd), cwd)
    assert len(json.loads((resumed / "history.json").read_text())["loss"]) == 3
    changed = pipe("run", COMPOSE / "lr.yaml", "--quiet", "--set", "name=regression", "--resume", composed, cwd=cwd)
    assert changed.returncode == 1
    assert changed.stderr.strip().splitlines()[-1] == (
        f"{COMPOSE}/lr.yaml:4:21: train.optimizer.SGD.learning_rate: 0.1 here, but 0.05 in the run being resumed "
        f"({composed}/spec.yaml); a resumed run trains what its run trained (train.epochs, steps_per_execution, "
        "outputs and reporting may change)")


def test_a_run_time_error_points_at_the_base_that_set_the_value(tmp_path):
    expected = (f"{COMPOSE}/classes_base.yaml:6:24: model.sequential.layers[1].Dense.units: '${{data.num_classes}}': "
                "the data has no number of classes (integer labels and a declared split are needed) "
                f"[from {COMPOSE}/classes_child.yaml]")
    for command in ("run", "plan"):
        result = pipe(command, COMPOSE / "classes_child.yaml", cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1] == expected, command
        assert "Traceback" not in result.stderr
