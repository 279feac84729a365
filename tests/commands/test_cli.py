"""The `pipe` command line: exit codes, output formats and the no-TensorFlow guarantee."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from runner.cli import app
from tests.conftest import REPO, SPECS
from tests.spec.test_spec import MINIMAL

runner = CliRunner()


def test_validate_all_example_specs():
    specs = [str(p) for p in sorted(SPECS.glob("*.yaml"))]
    result = runner.invoke(app, ["validate", *specs])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{len(specs)} specs valid\n"  # the result, on stdout as the findings are
    notes = result.stderr.splitlines()
    assert [n.split(": ", 2)[1:] for n in notes] == [  # the layers a run adapts on the train split
        ["model.sequential.layers[0]", "note: Normalization will be adapted on the whole train split before "
         "training (give its state, or adapt: false, to keep it as written)"],
        *[["model.functional.layers[0].layer", "note: TextVectorization will be adapted on the whole train split "
           "before training (give its state, or adapt: false, to keep it as written)"]] * 2,  # the text examples
    ]


def test_invalid_spec_exits_1_with_one_line_per_error(write_spec):
    path = write_spec(MINIMAL.replace("  optimizer:", "  optimzer:").replace("epochs: 2", "epochs: 0"))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}:17:11: train.epochs: 0 is less than the minimum of 1",
        f"{path}:19:3: train.optimzer: unknown key 'optimzer' (did you mean 'optimizer'?)",
    ]


def test_one_bad_file_among_good_ones_exits_1(write_spec):
    good, bad = write_spec(MINIMAL, "good.yaml"), write_spec(MINIMAL.replace("version: 1", "version: 3"), "bad.yaml")
    result = runner.invoke(app, ["validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert result.stdout == f"{bad}:1:10: version: expected 1, got 3\n"


def test_missing_file_is_a_usage_error():
    result = runner.invoke(app, ["validate", "does-not-exist.yaml"])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_json_format(write_spec):
    path = write_spec(MINIMAL.replace("epochs: 2", "epochs: two"))
    result = runner.invoke(app, ["validate", "--format", "json", str(path)])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == [{"file": str(path), "line": 17, "column": 11, "path": "train.epochs",
                                          "message": "expected an integer, got string 'two'"}]


def test_json_format_of_valid_specs_is_an_empty_list(write_spec):
    result = runner.invoke(app, ["validate", "--format", "json", str(write_spec(MINIMAL))])
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])


def test_github_format(write_spec):
    path = write_spec(MINIMAL.replace("  optimizer:", "  optimzer:"))
    result = runner.invoke(app, ["validate", "--format", "github", str(path)])
    assert result.exit_code == 1
    assert result.stdout == (f"::error file={path},line=19,col=3::train.optimzer: unknown key 'optimzer' "
                             "(did you mean 'optimizer'?)\n")


def test_set_on_validate(write_spec):
    path = write_spec(MINIMAL)
    assert runner.invoke(app, ["validate", str(path), "--set", "train.epochs=4"]).exit_code == 0
    result = runner.invoke(app, ["validate", str(path), "--set", "train.optimiser=adam"])
    assert result.exit_code == 1
    assert result.stdout == "--set train.optimiser=adam: unknown key 'optimiser' in train (did you mean 'optimizer'?)\n"


def test_run_with_an_invalid_spec_exits_1_without_importing_tensorflow(write_spec):
    path = write_spec(MINIMAL.replace("epochs: 2", "epochs: two"))
    code = ("import sys; from runner.cli import app\n"
            "try: app(['run', sys.argv[1]])\n"
            "except SystemExit as e: print('exit', e.code, 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=REPO)
    assert result.stdout == "exit 1 False\n"
    assert result.stderr == f"{path}:17:11: train.epochs: expected an integer, got string 'two'\n"


def test_validate_never_imports_tensorflow_or_keras():
    specs = [str(p) for p in sorted(SPECS.glob("*.yaml"))]
    code = ("import sys; from runner.cli import app\n"
            "try: app(['validate', *sys.argv[1:]])\n"
            "except SystemExit as e: code = e.code\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tensorflow_datasets'))\n"
            "print(code, heavy)")
    result = subprocess.run([sys.executable, "-c", code, *specs], capture_output=True, text=True, cwd=REPO)
    assert result.stdout == f"{len(specs)} specs valid\n0 []\n", result.stderr


def test_help_and_version():
    assert "validate" in runner.invoke(app, ["--help"]).stdout
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("pipe ")


def test_a_spec_path_that_is_a_device_is_a_usage_mistake_like_a_folder(tmp_path):
    """Exit 2 for both: the command line names something that is no spec file."""
    for command in ("validate", "plan", "run"):
        for given in ("/dev/null", str(tmp_path)):
            result = runner.invoke(app, [command, given])
            assert result.exit_code == 2, (command, given, result.output)
    assert "file '/dev/null' is not a regular file (a pipe or a device)" in runner.invoke(app, ["validate", "/dev/null"]).stderr


def test_resuming_a_folder_that_is_no_run_is_a_usage_mistake(tmp_path):
    """Exit 2 before TensorFlow, as evaluate, predict and export say a folder that is no run."""
    result = runner.invoke(app, ["run", str(SPECS / "keras_regression.yaml"), "--resume", str(tmp_path)])
    assert (result.exit_code, result.stderr) == (
        2, f"pipe run --resume: {tmp_path}: not a run directory (no manifest.json)\n")


def test_a_malformed_set_is_a_usage_mistake_on_every_command_that_takes_it(write_spec, tmp_path):
    spec = str(write_spec(MINIMAL))
    for command in (["validate", spec], ["plan", spec], ["run", spec], ["sweep", spec], ["evaluate", str(tmp_path)]):
        for malformed in ("foo", "=3", " =3"):
            result = runner.invoke(app, [*command, "--set", malformed])
            assert result.exit_code == 2, (command, malformed, result.output)
            # (Typer 0.16 adds " (env var: 'None')" after the option's name)
            assert "Invalid value for '--set'" in result.stderr
            assert f"{malformed!r}: expected KEY.PATH=VALUE" in result.stderr
    assert runner.invoke(app, ["validate", spec, "--set", "train.epochs=3"]).exit_code == 0


def test_a_reader_that_leaves_early_ends_pipe_by_sigpipe_quietly(tmp_path):
    """`pipe schema | head -1`: as coreutils and git, pipe dies by SIGPIPE (the shell shows 141),
    with nothing on stderr; before, click's exit 1 said "invalid spec"."""
    import signal

    spec = tmp_path / "spec.yaml"
    spec.write_text(MINIMAL)
    for command in (["schema"], ["validate", str(spec)], ["--help"]):
        child = subprocess.Popen([sys.executable, "-m", "runner.cli", *command], cwd=REPO,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        child.stdout.close()  # the reader leaves before pipe has written a line
        stderr = child.stderr.read()
        assert (child.wait(), stderr) == (-signal.SIGPIPE, b""), command
