"""The run directory has one owner: paths inside it only, files the team can read, one
directory per run, and a failed run told in one paragraph with its traceback in error.log."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.outputs.files import write_text
from runner.outputs.run_dir import PathEscapeError, RunDir
from runner.spec import load_spec
from tests.conftest import REPO, SPECS, pipe_in_process
from tests.spec.test_spec import MINIMAL


def pipe(*args, cwd, umask=None, timeout=600):
    home = cwd.parent if cwd.name == "work" else cwd
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout, preexec_fn=preexec)


@pytest.mark.parametrize("value,problem", [
    ("..", "climbs out with '..'"), ("a/../../b", "climbs out with '..'"), ("/etc/passwd", "is an absolute path"),
    ("~/x", "starts with '~' (a home directory)"), (".", "is the run directory itself"), ("", "is empty"),
    ("manifest.json", "would replace 'manifest.json', which pipe writes"),
    ("./checkpoints/x", "would replace 'checkpoints', which pipe writes"),
])
def test_spec_paths_that_escape_are_refused(tmp_path, value, problem):
    with pytest.raises(PathEscapeError) as info:
        RunDir(tmp_path).spec_path(value)
    assert str(info.value).startswith(f"{value!r} {problem}: a spec writes only inside its run directory")


def test_spec_paths_inside_are_handed_out_with_their_folder(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    (tmp_path / "run").mkdir()
    target = run_dir.spec_path("logs/train.csv")
    assert target == tmp_path / "run" / "logs" / "train.csv" and target.parent.is_dir()
    assert run_dir / "manifest.json" == tmp_path / "run" / "manifest.json"  # pipe's own files


def test_a_symlink_out_of_the_run_directory_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run" / "logs").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PathEscapeError, match="leaves the run directory through a symlink"):
        RunDir(tmp_path / "run").spec_path("logs/train.csv")
    with pytest.raises(PathEscapeError, match="leaves the run directory"):
        RunDir(tmp_path / "run") / "../x"


def test_a_non_chief_run_directory_is_temporary_and_removed(tmp_path):
    spec = load_spec(_write(tmp_path, MINIMAL))
    worker = RunDir.create(spec, is_chief=False)
    log = worker.spec_path("logs/train.csv")
    log.write_text("epoch\n")
    assert not worker.path.is_relative_to(tmp_path)
    worker.discard()
    assert not worker.path.exists()


def test_an_output_dir_that_is_a_file_is_a_located_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("x")
    spec = load_spec(_write(tmp_path, MINIMAL + "outputs: {dir: taken}\n"))
    with pytest.raises(Exception) as info:
        RunDir.create(spec)
    assert str(info.value) == (f"{spec.file}:21:11: outputs.dir: cannot create the run directory: "
                               "taken/tiny: a file is in the way, not a directory")


def test_a_read_only_output_dir_is_a_located_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "locked").mkdir()
    undo = _make_read_only(tmp_path / "locked")
    try:
        spec = load_spec(_write(tmp_path, MINIMAL + "outputs: {dir: locked}\n"))
        with pytest.raises(Exception) as info:
            RunDir.create(spec)
    finally:
        undo()
    assert str(info.value) in (
        f"{spec.file}:21:11: outputs.dir: cannot create the run directory: locked/tiny: {reason}"
        for reason in ("Operation not permitted", "Permission denied"))


def _make_read_only(folder: Path):
    """A folder nobody may write to, root included (chattr +i); returns how to undo it."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a filesystem without chattr +i: cannot make a folder read-only")
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_files_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    write_text(tmp_path / "b.json", "{}")
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o666 & ~old


def test_runs_started_together_get_different_directories(tmp_path):
    """Real processes racing for the same second's directory name."""
    spec = _write(tmp_path, MINIMAL)
    code = textwrap.dedent(f"""
        import sys, time
        from datetime import datetime
        from runner.outputs.run_dir import RunDir
        from runner.spec import load_spec
        spec = load_spec({str(spec)!r})
        time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
        print(RunDir.create(spec, now=datetime(2026, 1, 2, 3, 4, 5)))
    """)
    import time

    start = str(time.time() + 2)
    processes = [subprocess.Popen([sys.executable, "-c", code, start], cwd=tmp_path, stdout=subprocess.PIPE,
                                  text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
                 for _ in range(6)]
    made = [p.communicate(timeout=120)[0].strip() for p in processes]
    assert sorted(made) == sorted(f"runs/tiny/20260102-030405{s}" for s in ["", "-2", "-3", "-4", "-5", "-6"])


def test_a_callback_path_escape_deletes_nothing(tmp_path):
    """`backup_dir: ..` used to delete earlier runs: now `pipe run` refuses the spec first."""
    earlier = tmp_path / "runs" / "keras_regression" / "20260101-000000"
    earlier.mkdir(parents=True)
    (earlier / "model.keras").write_text("earlier run")
    spec = (SPECS / "keras_regression.yaml").read_text().replace(
        "  epochs: 20", "  epochs: 1\n  callbacks:\n    - BackupAndRestore: {backup_dir: ..}")
    path = _write(tmp_path, spec)
    result = pipe("run", str(path), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"{path}:28:38: train.callbacks[0].BackupAndRestore.backup_dir: '..' climbs out with '..': a spec "
        "writes only inside its run directory; give a path relative to it, such as 'logs/train.csv'")
    assert (earlier / "model.keras").read_text() == "earlier run"
    assert [p.name for p in (tmp_path / "runs" / "keras_regression").iterdir()] == ["20260101-000000"]


@pytest.mark.slow
def test_callback_files_land_inside_the_run_directory_readable_by_the_team(tmp_path):
    callbacks = ("  epochs: 2\n  callbacks:\n"
                 "    - CSVLogger: {filename: logs/train.csv}\n"
                 "    - BackupAndRestore: {backup_dir: backup}\n"
                 "    - ModelCheckpoint: {filepath: 'ck/e{epoch}.keras'}\n"
                 "    - {class_name: TensorBoard, config: {log_dir: tb}}")
    spec = (SPECS / "keras_regression.yaml").read_text().replace("  epochs: 20", callbacks)
    path = _write(tmp_path, spec)
    work = tmp_path / "work"  # the current directory; HOME (Keras's and matplotlib's caches) is its parent
    work.mkdir()
    result = pipe("run", str(path), "--quiet", cwd=work, umask=0o022)
    assert result.returncode == 0, result.stderr
    run_dir = work / result.stdout.splitlines()[0].split(": ", 1)[1]
    assert [p.name for p in work.iterdir()] == ["runs"]  # nothing written beside the run directory
    assert sorted(p.name for p in (work / "runs" / "keras_regression").iterdir()) == [run_dir.name]
    assert (run_dir / "logs" / "train.csv").read_text().startswith("epoch,loss")
    assert sorted(p.name for p in (run_dir / "ck").iterdir()) == ["e1.keras", "e2.keras"]
    assert list((run_dir / "tb").rglob("events.out.tfevents.*"))
    assert not (run_dir / "backup").exists()  # BackupAndRestore removes its folder when training ends
    modes = {p.relative_to(run_dir).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in run_dir.rglob("*") if p.is_file()}
    assert {name: mode for name, mode in modes.items() if mode != 0o644} == {}
    assert {"manifest.json", "history.json", "spec.yaml", "model.keras", "logs/train.csv"} <= set(modes)


@pytest.mark.slow
@pytest.mark.parametrize("debug", [False, True])
def test_a_failed_run_is_one_paragraph_and_its_traceback_goes_to_error_log(tmp_path, debug):
    spec = (SPECS / "keras_regression.yaml").read_text().replace(
        "  epochs: 20", "  epochs: 1\n  callbacks:\n    - ModelCheckpoint: {filepath: 'ck/{nothing}.keras'}")
    path = _write(tmp_path, spec)
    result = pipe_in_process(["run", path, "--quiet", *(["--debug"] if debug else [])], cwd=tmp_path)
    assert result.returncode == 3
    (run_dir,) = (tmp_path / "runs" / "keras_regression").iterdir()
    log = run_dir / "error.log"
    assert log.read_text().startswith("Traceback (most recent call last):")
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("pipe run: the run failed: KeyError: ")
    assert last.endswith(f"(the full traceback is in {Path('runs') / 'keras_regression' / run_dir.name / 'error.log'}; "
                         "--debug prints it)")
    assert ("Traceback" in result.stderr) == debug


def _write(folder: Path, text: str) -> Path:
    path = folder / "spec.yaml"
    path.write_text(text)
    return path


def test_a_failure_is_told_in_one_paragraph(tmp_path):
    from runner.outputs.failure import describe_failure, note_error_log, summarise_error

    error = ValueError("Incompatible shapes: [4] vs. [3]\n\t [[{{node mul}}]] [Op:Mul] name: ")
    (tmp_path / "run").mkdir()
    try:
        raise error
    except ValueError as e:
        note_error_log(e, RunDir(tmp_path / "run"))
    assert describe_failure(error) == (
        "pipe run: the run failed: ValueError: Incompatible shapes: [4] vs. [3] "
        f"(the full traceback is in {tmp_path / 'run' / 'error.log'}; --debug prints it)")
    assert "raise error" in (tmp_path / "run" / "error.log").read_text()
    graph_error = ValueError(  # as TensorFlow words an error in a graph: the cause after the lines defining it
        "Graph execution error:\n\nDetected at node model/embedding/GatherV2 defined at (most recent call last):\n"
        + '  File "runner/cli.py", line 70, in with_log\n\n' * 40
        + "indices[0,5] = 41 is not in [0, 40)\n\t [[{{node model/embedding/GatherV2}}]] [Op:__inference_3387]")
    assert describe_failure(graph_error) == (
        "pipe run: the run failed: ValueError: Graph execution error: indices[0,5] = 41 is not in [0, 40) "
        "(no error.log was written; --debug prints it)")
    label_error = ValueError("Received a label value of 7 which is outside the valid range of [0, 3).  "
                             "Label values: 0 1 2 1 2 7 2 2")  # the data's values are not quoted
    assert summarise_error(label_error) == (
        "ValueError: A label value is outside the valid range of [0, 3).")  # not which one
    long = describe_failure(RuntimeError("x" * 5000))
    assert "\n" not in long and len(long) < 700 and long.endswith("... (no error.log was written; --debug prints it)")
