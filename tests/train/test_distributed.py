"""One spec, three placements: one device, mirrored over 2 logical CPUs, 2 local workers.

Each run is a `pipe run` subprocess (a fresh TensorFlow runtime, as logical devices and
collective ops must be configured before it starts) of tests/specs/dist_regression.yaml,
changing only `device:` through `--set`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "specs" / "dist_regression.yaml"
TIMEOUT = 600

MIRRORED = ("device.cpu_devices=2", "device.strategy=mirrored")
CUSTOM = ("train.loop=custom",)

# Mirrored training must give the single-device result up to float32 rounding: per-replica
# gradients of 16 examples are summed across replicas instead of one sum over 32, which
# reorders float32 additions (relative error ~1e-7 each) over 48 steps. 1e-4 leaves three
# orders of magnitude of margin, while a loss averaged per replica instead of over the
# global batch (gradients off by the replica count) moves every epoch's loss by far more.
RTOL, ATOL = 1e-4, 1e-6


def _env(extra=None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    env.update(extra or {})
    return env


# Every worker runs the callback; only the chief's file may land in a run directory.
CSV_LOGGER = "train.callbacks=[{CSVLogger: {filename: logs/train.csv}}]"


def _command(outputs_dir: Path, sets) -> list:
    command = [sys.executable, "-m", "runner.cli", "run", str(SPEC), "--set", f"outputs.dir={outputs_dir}"]
    for item in sets:
        command += ["--set", item]
    return command


def _run_dir(stdout: str) -> Path:
    lines = [line for line in stdout.splitlines() if line.startswith("run directory: ")]
    assert len(lines) == 1, stdout
    return Path(lines[0][len("run directory: "):])


class Run:
    """A finished `pipe run`: its output and its run directory's files."""

    def __init__(self, completed: subprocess.CompletedProcess | tuple):
        self.returncode, self.stdout, self.stderr = completed
        assert self.returncode == 0, f"pipe run failed ({self.returncode}):\n{self.stdout}\n{self.stderr[-4000:]}"
        self.run_dir = _run_dir(self.stdout)

    def json(self, name: str):
        return json.loads((self.run_dir / name).read_text())

    @property
    def summary(self) -> str:
        return next(line for line in self.stdout.splitlines() if line.startswith("devices: "))


def pipe_run(outputs_dir: Path, sets=()) -> Run:
    completed = subprocess.run(
        _command(outputs_dir, sets), capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=TIMEOUT
    )
    return Run((completed.returncode, completed.stdout, completed.stderr))


def free_ports(count: int) -> list:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Runs by name, each started on first use and shared by every test."""
    done = {}

    def get(name: str, sets=()) -> Run:
        if name not in done:
            done[name] = pipe_run(tmp_path_factory.mktemp(name), sets)
        return done[name]

    return get


@pytest.fixture(scope="session")
def two_workers(tmp_path_factory):
    """The spec on a 2-worker multi_worker_mirrored cluster on 127.0.0.1 (TF_CONFIG per worker)."""
    outputs_dir = tmp_path_factory.mktemp("multi_worker")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(
            subprocess.Popen(
                _command(outputs_dir, ["device.strategy=multi_worker_mirrored", CSV_LOGGER]),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                env=_env({"TF_CONFIG": tf_config}),
            )
        )
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=TIMEOUT)
            results.append((process.returncode, stdout, stderr))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs_dir, [Run(result) for result in results]


def _assert_close(actual: dict, expected: dict, keys):
    for key in keys:
        assert actual[key] == pytest.approx(expected[key], rel=RTOL, abs=ATOL), key


def _spec_without_device(run: Run) -> dict:
    data = yaml.safe_load((run.run_dir / "spec.yaml").read_text())
    data.pop("device", None)
    data["train"].pop("callbacks", None)  # CSV_LOGGER, on the multi-worker runs only
    data.get("outputs", {}).pop("dir", None)
    return data


def test_single_device_learns(runs):
    single = runs("single_fit")
    assert single.summary == (
        "devices: 1 physical CPU, 1 logical CPU (no GPU visible: running on the CPU); "
        "strategy: default (1 replica); precision: float32; xla: off"
    )
    loss = single.json("history.json")["loss"]
    assert loss[-1] < 0.1 * loss[0]
    assert single.json("metrics.json")["test"]["loss"] < 0.5


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_mirrored_matches_single_device(runs, loop):
    extra = CUSTOM if loop == "custom" else ()
    single = runs(f"single_{loop}", extra)
    mirrored = runs(f"mirrored_{loop}", (*extra, *MIRRORED))
    assert mirrored.summary == (
        "devices: 1 physical CPU, 2 logical CPU (no GPU visible: running on the CPU); "
        "strategy: mirrored (2 replicas); precision: float32; xla: off"
    )
    devices = mirrored.json("manifest.json")["devices"]
    assert (devices["strategy"], devices["replicas"]) == ("mirrored", 2)
    single_history, mirrored_history = single.json("history.json"), mirrored.json("history.json")
    assert len(mirrored_history["loss"]) == 6
    for key in ("loss", "mae", "val_loss", "val_mae"):
        assert mirrored_history[key] == pytest.approx(single_history[key], rel=RTOL, abs=ATOL), key
    _assert_close(mirrored.json("metrics.json")["test"], single.json("metrics.json")["test"], ("loss", "mae"))
    assert _spec_without_device(mirrored) == _spec_without_device(single)


def test_multi_worker_two_local_workers(two_workers, runs):
    outputs_dir, (chief, worker) = two_workers
    assert "task worker:0 (chief) of 2 workers" in chief.summary
    assert "strategy: multi_worker_mirrored (2 replicas), task worker:1 of 2 workers" in worker.summary

    # Only the chief's run directory exists; the worker's temporary one is gone.
    assert [p.name for p in outputs_dir.iterdir()] == ["dist_regression"]
    assert list((outputs_dir / "dist_regression").iterdir()) == [chief.run_dir]
    assert not worker.run_dir.exists()

    names = {p.name for p in chief.run_dir.iterdir()}
    assert {"spec.yaml", "manifest.json", "history.json", "history.csv", "metrics.json", "model.keras"} <= names
    assert (chief.run_dir / "logs" / "train.csv").read_text().startswith("epoch,")  # the worker's went with its temp dir
    manifest = chief.json("manifest.json")
    assert manifest["status"] == "completed" and manifest["epochs_run"] == 6
    devices = manifest["devices"]
    assert (devices["strategy"], devices["replicas"], devices["is_chief"]) == ("multi_worker_mirrored", 2, True)
    assert devices["task"] == {"type": "worker", "index": 0}
    assert devices["cluster"]["worker"][0].startswith("127.0.0.1:")

    # Keras `fit` does not run under MultiWorkerMirroredStrategy, so the runner trains the
    # Keras model with its custom loop: each step's global batch is split over the two
    # workers, so the steps are those of one device, up to float32 rounding (RTOL above).
    assert "loop: custom (Keras fit does not run under multi_worker_mirrored)" in chief.stdout.splitlines()
    single = runs("single_fit")
    history = chief.json("history.json")
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    for key in ("loss", "val_loss"):
        assert history[key] == pytest.approx(single.json("history.json")[key], rel=RTOL, abs=ATOL), key
    _assert_close(chief.json("metrics.json")["test"], single.json("metrics.json")["test"], ("loss", "mae"))
    assert _spec_without_device(chief) == _spec_without_device(single)



def test_a_multi_worker_run_is_evaluated_in_one_process(two_workers):
    """pipe evaluate does not gather the run's cluster again (it would wait for workers that
    are gone): the chief's saved model, evaluated here, gives the run's own test metrics."""
    from runner.commands.evaluation import evaluate_run

    _, (chief, _) = two_workers
    cluster = ('device.strategy={name: multi_worker_mirrored, cluster: {worker: ["127.0.0.1:1", "127.0.0.1:2"]}, '
               'task: {type: worker, index: 0}}')  # as a spec that declares its cluster holds it
    evaluation = evaluate_run(chief.run_dir, [cluster], splits=["test"])
    _assert_close(evaluation.metrics["test"], chief.json("metrics.json")["test"], ("loss", "mae"))

def test_mixed_bfloat16_runs_on_the_cpu_and_learns(runs):
    run = runs("bf16", ("device.mixed_precision=mixed_bfloat16",))
    assert run.summary.endswith("precision: mixed_bfloat16; xla: off")
    assert run.json("manifest.json")["devices"]["precision"] == "mixed_bfloat16"
    loss = run.json("history.json")["loss"]
    assert loss[-1] < 0.1 * loss[0]
    # bfloat16 keeps 8 significant bits: the fit is coarser than float32's, not worse in kind.
    assert run.json("metrics.json")["test"]["loss"] < 0.5
    with zipfile.ZipFile(run.run_dir / "model.keras") as archive:
        config = archive.read("config.json").decode()
    assert "mixed_bfloat16" in config


@pytest.mark.parametrize(
    "sets, tf_config, message",
    [
        (("device.placement=gpu",), None,
         "--set device.placement=gpu: device.placement: placement 'gpu' asks for a GPU but TensorFlow "
         "sees none (install TensorFlow's GPU build with the gpu extra: pip install '.[gpu]'; or use placement: auto)"),
        (("device.strategy=multi_worker_mirrored",), '{"cluster": {"worker": ["127.0.0.1:1"]}}',
         "TF_CONFIG: has no 'task' (expected \"task\": {\"type\": \"worker\", \"index\": 0})"),
    ],
    ids=["no-gpu", "tf-config-without-task"],
)
def test_device_mistakes_stop_pipe_run_with_one_line(tmp_path, sets, tf_config, message):
    if "device.placement=gpu" in sets and shutil.which("nvidia-smi"):
        pytest.skip("this machine has a GPU driver: placement gpu may succeed here")
    completed = subprocess.run(
        _command(tmp_path, sets), capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT,
        env=_env({"TF_CONFIG": tf_config} if tf_config else None),
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert completed.stderr.rstrip().splitlines()[-1] == message
    assert not (tmp_path / "dist_regression").exists()
