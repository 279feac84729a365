"""The console without TensorFlow: help pages, `pipe init`, the stderr capture, verbosity."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.cli import app
from runner.console import TensorFlowLog, progress_verbosity
from runner.commands.init import template_names
from runner.spec import load_spec

runner = CliRunner()
COMMANDS = ("validate", "run", "schema", "evaluate", "predict", "runs", "compare", "init")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example_and_no_type_artefacts(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "100"}, prog_name="pipe")
    assert result.exit_code == 0
    text = result.stdout
    assert "Example: pipe " + command in text
    for artefact in ("<bool>", "{file", "{files", "<list[", "<path>", "<file>", "<text|"):
        assert artefact not in text, f"{artefact} in pipe {command} --help"
    assert text.startswith(f"Usage: pipe {command} [OPTIONS]")


def test_run_usage_line():
    assert runner.invoke(app, ["run", "--help"], prog_name="pipe").stdout.splitlines()[0] == "Usage: pipe run [OPTIONS] FILE..."
    assert runner.invoke(app, ["predict", "--help"], prog_name="pipe").stdout.splitlines()[0] == \
        "Usage: pipe predict [OPTIONS] RUN_DIR INPUT"


@pytest.mark.parametrize("argv, usage", [
    (["run"], "Usage: pipe run [OPTIONS] FILE...\nTry 'pipe run --help' for help."),
    (["validate", "--set", "train.epochs"], "Usage: pipe validate [OPTIONS] FILE...\nTry 'pipe validate --help' for help."),
    (["--help"], "Usage: pipe [OPTIONS] COMMAND [ARGS]..."),
])
def test_the_program_is_pipe_however_it_was_started(argv, usage):
    # Through `python -m runner.cli` click would name the program from sys.argv[0].
    started = subprocess.run([sys.executable, "-m", "runner.cli", *argv], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[2], env={**os.environ, "COLUMNS": "100"})
    assert (started.stdout + started.stderr).startswith(usage)
    assert "runner.cli" not in started.stdout + started.stderr


def test_init_lists_writes_valid_templates_and_never_overwrites(tmp_path):
    listing = runner.invoke(app, ["init"]).stdout.splitlines()
    assert [line.split()[0] for line in listing] == template_names() == \
        ["image-classification", "module", "regression", "tabular-csv"]
    for name in template_names():
        result = runner.invoke(app, ["init", name, str(tmp_path / "specs")])
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[0] == f"wrote {tmp_path}/specs/{name}.yaml"
        load_spec(tmp_path / "specs" / f"{name}.yaml")  # validates: raises otherwise
    assert (tmp_path / "specs" / "tabular-sample.csv").read_text().startswith("f1,f2,f3,f4,label\n")

    target = tmp_path / "specs" / "module.yaml"
    target.write_text("mine")
    again = runner.invoke(app, ["init", "module", str(target)])
    assert again.exit_code == 1
    assert again.stderr == f"pipe init: {target} exists; not overwritten\n"
    assert target.read_text() == "mine"
    unknown = runner.invoke(app, ["init", "gan"])
    assert unknown.exit_code == 2
    assert unknown.stderr == ("pipe init: unknown template 'gan' (templates: image-classification, module, "
                              "regression, tabular-csv)\n")


def test_init_keeps_an_existing_sample(tmp_path):
    (tmp_path / "tabular-sample.csv").write_text("my data\n")
    result = runner.invoke(app, ["init", "tabular-csv", str(tmp_path / "t.yaml")])
    assert result.exit_code == 0
    assert f"kept {tmp_path}/tabular-sample.csv (exists)" in result.stdout
    assert (tmp_path / "tabular-sample.csv").read_text() == "my data\n"


def test_tensorflow_log_takes_fd_2_and_moves_into_the_run_directory(tmp_path, capfd):
    log = TensorFlowLog.start()
    os.write(2, b"I0000 before the run directory\n")
    log.move_to(tmp_path)
    os.write(2, b"W0000 after\n")
    text = log.stop()
    os.write(2, b"restored\n")
    assert text == "I0000 before the run directory\nW0000 after\n"
    assert (tmp_path / "tensorflow.log").read_text() == text
    assert capfd.readouterr().err == "restored\n"


def test_the_libraries_python_logging_goes_to_the_log_and_pipe_s_stderr_to_the_console(tmp_path, capfd):
    import logging

    tensorflow = logging.getLogger("tensorflow")
    terminal = logging.StreamHandler(sys.stderr)  # as TensorFlow made its own when first imported
    tensorflow.addHandler(terminal)
    try:
        root = logging.getLogger().handlers[:]
        log = TensorFlowLog.start()
        tensorflow.warning("Issue encountered when serializing table_initializer.")
        logging.getLogger("tf2onnx.shape_inference").warning("Cannot infer shape for one_hot")
        log.move_to(tmp_path)
        logging.getLogger("absl").warning("'_a' is not a valid tf.function parameter name")
        sys.stderr.write("pipe export: pipe's own line\n")
        text = log.stop()
        assert tensorflow.handlers == [terminal] and logging.getLogger().handlers == root  # as they were
    finally:
        tensorflow.removeHandler(terminal)
    assert text == ("WARNING:tensorflow:Issue encountered when serializing table_initializer.\n"
                    "WARNING:tf2onnx.shape_inference:Cannot infer shape for one_hot\n"
                    "WARNING:absl:'_a' is not a valid tf.function parameter name\n")
    assert (tmp_path / "tensorflow.log").read_text() == text
    assert capfd.readouterr().err == "pipe export: pipe's own line\n"


def test_a_later_command_continues_the_runs_log(tmp_path):
    (tmp_path / "tensorflow.log").write_text("the run's lines\n")
    log = TensorFlowLog.start()
    os.write(2, b"the export's start-up\n")
    log.append_to(tmp_path)
    os.write(2, b"and its end\n")
    log.stop()
    assert (tmp_path / "tensorflow.log").read_text() == "the run's lines\nthe export's start-up\nand its end\n"


def test_tensorflow_log_shows_itself_on_request(capfd):
    log = TensorFlowLog.start()
    os.write(2, b"E0000 cuInit failed\n")
    log.stop(show=True)
    assert capfd.readouterr().err == "E0000 cuInit failed\n"


def test_progress_bars_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert progress_verbosity("auto") == 2
    assert progress_verbosity(1) == 1 and progress_verbosity(0) == 0


@pytest.mark.parametrize("code, verbose, shown", [(0, False, False), (0, True, True), (1, False, False),
                                                  (3, False, False), (3, True, True), (5, False, True)])
def test_a_commands_tensorflow_log_shows_with_verbose_or_a_broken_install(capfd, code, verbose, shown):
    """A failed run (3) ends on pipe's own paragraph; TensorFlow's log stays in the run directory."""
    import typer

    from runner.commands.reporting import keeps_tensorflow_log

    @keeps_tensorflow_log
    def command(verbose=False):
        os.write(2, b"I0000 oneDNN custom operations are on\n")
        if code:
            raise typer.Exit(code=code)

    if code:
        with pytest.raises(typer.Exit):
            command(verbose=verbose)
    else:
        command(verbose=verbose)
    assert capfd.readouterr().err == ("I0000 oneDNN custom operations are on\n" if shown else "")


def test_the_libraries_python_warnings_go_to_the_log_and_pipe_s_to_the_console(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        shown = []  # what Python would print on the console
        warnings.showwarning = lambda message, *rest: shown.append(str(message))
        log = TensorFlowLog.start()
        warnings.warn_explicit("a map function's note", UserWarning,
                               "/venv/lib/python3.11/site-packages/tensorflow/python/data/ops/map_op.py", 37)
        warnings.warn_explicit("pipe's own warning", UserWarning, str(Path("runner/data/stages.py").resolve()), 9)
        text = log.stop()
    assert "map_op.py:37: UserWarning: a map function's note" in text and "pipe's own" not in text
    assert shown == ["pipe's own warning"]
