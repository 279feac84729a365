"""How a run ends, with real processes: killed, interrupted, resumed, diverged, out of disk.

Every run here is `python -m runner.cli run` in a subprocess, as a user or a scheduler
starts it, on a small synthetic spec with many short epochs and shuffled data.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

EPOCHS = 40

SPEC = """\
version: 1
name: outcome
seed: 7
data:
  train:
    source:
      synthetic:
        x: {{uniform: {{low: -1.0, high: 1.0, num: 80}}}}
        y: {{linear: {{w: -2.0, b: 0.5}}}}
        noise: {{stddev: 0.1}}
    stages:
      - shuffle: {{buffer_size: all}}
      - batch: {{batch_size: 16}}
  validation:
    fraction: 0.2
model:
{model}
train:
  loop: {loop}
  epochs: {epochs}
  loss: mse
  optimizer: {optimizer}
  metrics: [mae]
outputs:
  plots: {{enabled: false}}
"""

KERAS_MODEL = """\
  sequential:
    input_shape: [1]
    layers:
      - Dense: {units: 8, activation: tanh, kernel_initializer: {GlorotUniform: {seed: 1}}}
      - Dense: {units: 1}"""


def write_spec(folder: Path, loop: str, *, epochs=EPOCHS, optimizer="{Adam: {learning_rate: 0.01}}") -> Path:
    path = folder / f"{loop}.yaml"
    path.write_text(SPEC.format(model=KERAS_MODEL, loop=loop, epochs=epochs, optimizer=optimizer))
    return path


def environment(cwd: Path) -> dict:
    return {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONDONTWRITEBYTECODE": "1",
            "TF_CPP_MIN_LOG_LEVEL": "3"}


def pipe(*args, cwd: Path, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=environment(cwd), preexec_fn=preexec_fn, timeout=600)


def start(*args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runner.cli", *args], cwd=cwd, env=environment(cwd),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_dir_of(result) -> Path:
    line = next(x for x in result.stdout.splitlines() + result.stderr.splitlines() if x.startswith("run directory: "))
    return Path(line.split(": ", 1)[1])


def read_json(path: Path):
    return json.loads(path.read_text())


def wait_for_epochs(cwd: Path, process: subprocess.Popen, epochs: int) -> Path:
    """The run directory, once its history holds at least `epochs` epochs."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        for history in (cwd / "runs").glob("outcome/*/history.json"):
            try:
                if len(read_json(history)["loss"]) >= epochs:
                    return history.parent
            except (ValueError, KeyError):
                pytest.fail(f"{history} is not complete JSON: atomic writes failed")
        time.sleep(0.02)
    pytest.fail("the run never reached its second epoch")


def model_weights(run_dir: Path):
    import keras

    return keras.saving.load_model(run_dir / "model.keras").get_weights()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted run per loop: what a killed-then-resumed run must equal."""
    made = {}

    def get(loop):
        if loop not in made:
            folder = tmp_path_factory.mktemp(f"whole-{loop}")
            result = pipe("run", str(write_spec(folder, loop)), "--quiet", cwd=folder)
            assert result.returncode == 0, result.stderr
            made[loop] = folder / run_dir_of(result)
        return made[loop]

    return get


def assert_same_training(resumed: Path, whole: Path):
    expected, got = read_json(whole / "history.json"), read_json(resumed / "history.json")
    assert got.keys() == expected.keys()
    for key in expected:
        assert len(got[key]) == EPOCHS
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, atol=1e-7, err_msg=key)
    for a, b in zip(model_weights(resumed), model_weights(whole)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_sigkilled_run_reads_as_killed_and_resumes_into_the_uninterrupted_run(tmp_path, loop, uninterrupted):
    from runner.outputs.status import read_status

    spec = write_spec(tmp_path, loop)
    # A SIGKILL cannot be answered: only checkpoints saved every epoch leave nothing behind.
    every_epoch = ("--set", "outputs.checkpoints={every_epoch: true}")
    process = start("run", str(spec), "--quiet", *every_epoch, cwd=tmp_path)
    run_dir = wait_for_epochs(tmp_path, process, 2)
    process.send_signal(signal.SIGKILL)
    process.wait()

    manifest = read_json(run_dir / "manifest.json")
    assert manifest["status"] == "running" and manifest["pid"] == process.pid
    assert 1 <= manifest["epochs_done"] < EPOCHS  # its heartbeat comes after the history
    status = read_status(run_dir)
    assert status.status == "killed"
    assert status.reason.startswith(f"process {process.pid} on {manifest['host']} is gone without recording an end")

    resumed = pipe("run", str(spec), "--quiet", *every_epoch, "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    new_dir = tmp_path / run_dir_of(resumed)
    assert read_json(new_dir / "manifest.json")["resumed_at_epoch"] >= 1
    assert_same_training(new_dir, uninterrupted(loop))


@pytest.mark.parametrize("loop, signum", [("fit", signal.SIGTERM), ("custom", signal.SIGTERM),
                                          ("fit", signal.SIGHUP), ("custom", signal.SIGINT)])
def test_signalled_run_records_interrupted_and_its_resume_command_continues_it(tmp_path, loop, signum, uninterrupted):
    spec = write_spec(tmp_path, loop)
    # Tables written every epoch, so the signal comes after epoch 2, well before the last.
    spec.write_text(spec.read_text() + "  checkpoints: {every_epoch: true}\n")
    process = start("run", str(spec), "--set", "train.verbose=0", cwd=tmp_path)
    run_dir = wait_for_epochs(tmp_path, process, 2)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)

    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err
    name = signal.Signals(signum).name
    manifest = read_json(run_dir / "manifest.json")
    done = manifest["epochs_done"]
    assert manifest["status"] == "interrupted" and manifest["reason"] == f"stopped by {name} after {done} epochs"
    assert manifest["epochs_run"] == done == len(read_json(run_dir / "history.json")["loss"])
    relative = run_dir.relative_to(tmp_path)  # as printed: runs/ under the working directory
    assert manifest["last_checkpoint"] == str(relative / "checkpoints" / f"ckpt-{done}")
    assert not [p for p in run_dir.rglob("*") if p.name.endswith((".tmp", "_temp"))]
    lines = err.strip().splitlines()
    assert lines[-3:] == [
        f"pipe run: interrupted by {name} after {done} epochs",
        f"run directory: {relative}",
        f"resume with: pipe run {spec} --set train.verbose=0 --resume {relative}",
    ]

    command = lines[-1].removeprefix("resume with: pipe ").split(" ")
    resumed = pipe(*command, "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    new_dir = tmp_path / run_dir_of(resumed)
    assert read_json(new_dir / "manifest.json")["status"] == "completed"
    assert_same_training(new_dir, uninterrupted(loop))


@pytest.mark.parametrize("loop, epochs, engine", [("fit", 150, "keras"), ("custom", 150, "keras"),
                                                  ("fit", 8000, "fused")])
def test_a_signal_while_an_epoch_waits_unsaved_ends_that_epoch_saves_it_and_resumes_exactly(tmp_path, loop, epochs,
                                                                                            engine):
    """Default checkpoints (at most every 30 s): the signal waits for the epoch under way
    (the fused engine: for its graph call's last epoch), which is saved; the resumed run
    equals an uninterrupted one."""
    spec = write_spec(tmp_path, loop, epochs=epochs)
    spec.write_text(spec.read_text().replace("\ntrain:\n", f"\ntrain:\n  engine: {engine}\n"))
    apart = tmp_path / "uninterrupted"  # its own runs/: the run to signal is the only one in tmp_path
    apart.mkdir()
    whole = pipe("run", str(spec), "--quiet", cwd=apart)
    assert whole.returncode == 0, whole.stderr
    process = start("run", str(spec), "--quiet", cwd=tmp_path)
    run_dir = wait_for_epochs(tmp_path, process, 1)  # the tables' first write: after the first epoch
    time.sleep(0.3)  # a few epochs more, none of them saved (the next checkpoint is 30 s away)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)

    assert process.returncode == 143, err
    manifest = read_json(run_dir / "manifest.json")
    done = manifest["epochs_done"]
    assert 2 <= done < epochs and manifest["status"] == "interrupted" and manifest["epochs_run"] == done
    assert len(read_json(run_dir / "history.json")["loss"]) == done
    assert manifest["last_checkpoint"] == str(run_dir.relative_to(tmp_path) / "checkpoints" / f"ckpt-{done}")
    assert [p.name for p in (run_dir / "checkpoints").glob("*.index")] == [f"ckpt-{done}.index"]

    resumed = pipe("run", str(spec), "--quiet", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    expected = read_json(apart / run_dir_of(whole) / "history.json")
    got = read_json(tmp_path / run_dir_of(resumed) / "history.json")
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, atol=1e-7, err_msg=key)


def test_two_runs_started_together_get_their_own_directories_and_the_same_results(tmp_path):
    spec = write_spec(tmp_path, "fit", epochs=3)
    processes = [start("run", str(spec), "--quiet", cwd=tmp_path) for _ in range(2)]
    results = [(p, *p.communicate(timeout=600)) for p in processes]
    assert [p.returncode for p, _, _ in results] == [0, 0], [err for _, _, err in results]
    dirs = [tmp_path / out.splitlines()[0].split(": ", 1)[1] for _, out, _ in results]
    assert dirs[0] != dirs[1]
    manifests = [read_json(d / "manifest.json") for d in dirs]
    assert [m["status"] for m in manifests] == ["completed", "completed"]
    assert manifests[0]["pid"] != manifests[1]["pid"]
    assert read_json(dirs[0] / "history.json") == read_json(dirs[1] / "history.json")


def limit_file_size(size):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return apply


def test_a_full_disk_names_the_file_and_still_records_failed(tmp_path):
    """RLIMIT_FSIZE: every file of the run may grow to 6 KiB, which the model file outgrows."""
    spec = write_spec(tmp_path, "fit", epochs=2)
    result = pipe("run", str(spec), "--quiet", cwd=tmp_path, preexec_fn=limit_file_size(6 * 1024))

    assert result.returncode == 3, result.stderr
    (run_dir,) = (tmp_path / "runs" / "outcome").iterdir()
    assert result.stderr.strip().splitlines()[-1] == f"pipe run: cannot write {run_dir.relative_to(tmp_path)}/model.keras: File too large"
    assert "Traceback" not in result.stderr
    manifest = read_json(run_dir / "manifest.json")
    assert manifest["status"] == "failed"
    assert manifest["reason"] == f"WriteError: cannot write {run_dir.relative_to(tmp_path)}/model.keras: File too large"
    assert len(read_json(run_dir / "history.json")["loss"]) == 2  # what was trained is kept
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["checkpoints", "error.log", "history.csv", "history.json", "manifest.json", "metrics.json",
                     "spec.yaml", "tensorflow.log"]


@pytest.fixture
def small_disk(tmp_path):
    """A mounted tmpfs of a given size (skips where mounting is not allowed); unmounted after."""
    mounted = []

    def mount(size: str, *options: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def test_a_full_tmpfs_fails_on_a_named_file_and_the_reserve_records_failed(tmp_path, small_disk):
    """100 KiB: room for the first epoch's files, not for the second epoch's checkpoint
    (saved every epoch here, so the disk fills during training)."""
    disk = small_disk("100k")
    spec = write_spec(tmp_path, "fit", epochs=EPOCHS)
    result = pipe("run", str(spec), "--quiet", "--set", f"outputs.dir={disk}",
                  "--set", "outputs.checkpoints={every_epoch: true}", cwd=tmp_path)

    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    (run_dir,) = (disk / "outcome").iterdir()
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"pipe run: cannot write {run_dir}/") and message.endswith(": No space left on device")
    manifest = read_json(run_dir / "manifest.json")
    assert manifest["status"] == "failed" and manifest["reason"] == "WriteError: " + message.removeprefix("pipe run: ")
    left = [p.name for p in run_dir.rglob("*")]
    assert not [n for n in left if n.endswith((".tmp", "_temp")) or ".tempstate" in n], left
    assert ".manifest.reserve" not in left  # spent on the last word
    history = read_json(run_dir / "history.json")  # complete JSON, the epochs that were trained
    assert 1 <= len(history["loss"]) < EPOCHS


def test_a_read_only_or_non_folder_outputs_dir_is_one_line_naming_it(tmp_path, small_disk):
    spec = write_spec(tmp_path, "fit", epochs=1)
    read_only = small_disk("1m", "ro")
    result = pipe("run", str(spec), "--quiet", "--set", f"outputs.dir={read_only}", cwd=tmp_path)
    assert result.returncode == 1  # located at the --set that chose the folder
    assert result.stderr.strip().splitlines()[-1] == (
        f"--set outputs.dir={read_only}: outputs.dir: cannot create the run directory: "
        f"{read_only}/outcome: Read-only file system")

    (tmp_path / "a_file").write_text("not a folder")
    result = pipe("run", str(spec), "--quiet", "--set", "outputs.dir=a_file", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "--set outputs.dir=a_file: outputs.dir: cannot create the run directory: "
        "a_file/outcome: a file is in the way, not a directory")


def test_a_diverging_run_exits_4_naming_the_epoch_step_and_last_good_checkpoint(tmp_path):
    spec = tmp_path / "diverge.yaml"
    spec.write_text(write_spec(tmp_path, "fit").read_text()
                    .replace("{Adam: {learning_rate: 0.01}}", "{SGD: {learning_rate: 60.0}}")
                    .replace("      - Dense: {units: 8, activation: tanh, kernel_initializer: {GlorotUniform: {seed: 1}}}\n", ""))
    result = pipe("run", str(spec), "--quiet", "--set", "outputs.checkpoints={every_epoch: true}", cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    (run_dir,) = (tmp_path / "runs" / "outcome").iterdir()
    manifest = read_json(run_dir / "manifest.json")
    epoch, step = manifest["diverged_at"]["epoch"], manifest["diverged_at"]["step"]
    relative = run_dir.relative_to(tmp_path)
    lines = result.stderr.strip().splitlines()
    assert lines[-3].startswith("pipe run: training diverged: the training loss became ")
    assert lines[-3].endswith(f" at epoch {epoch}, step {step} (try a lower learning rate, or look for NaN in the "
                              "data or, under XLA, labels outside the model's classes)")
    assert lines[-2:] == [f"run directory: {relative}", f"last good checkpoint: {relative}/checkpoints/ckpt-{epoch - 1}"]


HELD_BY_TENSORFLOW = """\
import sys
from pathlib import Path

import tensorflow as tf

from runner.run import interrupts

interrupts.ANSWER_SECONDS = 1.0


@tf.function
def spin():  # one operation of minutes: Python's handler cannot run until it returns
    return tf.while_loop(lambda i: i < 10**11, lambda i: i + 1, [tf.constant(0, tf.int64)])


with interrupts.signals_raise():
    interrupts.on_unanswered(lambda signum: Path("recorded").write_text(str(signum)))
    print("spinning", flush=True)
    spin()
"""


def test_a_signal_tensorflow_keeps_from_the_main_thread_still_ends_the_process(tmp_path):
    """Python answers a signal between bytecodes; TensorFlow can hold the main thread in one
    operation for minutes. A signal left unanswered for ANSWER_SECONDS ends the process from
    the watching thread, after the run's `on_unanswered` recorded how it stopped."""
    (tmp_path / "held.py").write_text(HELD_BY_TENSORFLOW)
    process = subprocess.Popen([sys.executable, "held.py"], cwd=tmp_path, env=environment(tmp_path),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "spinning\n"
    time.sleep(1)  # inside the operation
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert process.returncode == 143
    assert time.monotonic() - sent < 60  # the operation alone runs for minutes
    assert (tmp_path / "recorded").read_text() == str(int(signal.SIGTERM))
