"""Shared test fixtures: paths of the repository and of the machine's real data, and a
real MLflow tracking server on 127.0.0.1 for the tracking tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"
SHARED_DATA = REPO.parent / "shared" / "data"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def write_spec(tmp_path):
    """Write YAML text to a spec file in tmp_path and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def pipe_in_process(args, cwd: Path) -> subprocess.CompletedProcess:
    """`pipe ARGS` in cwd, run by this process: TensorFlow is imported once per test process
    instead of once per command. What a user's terminal would show comes back as from
    `subprocess.run`: an exception that escaped the command line is printed as its traceback."""
    from typer.testing import CliRunner

    from runner.cli import app

    with contextlib.chdir(cwd):
        result = CliRunner().invoke(app, [str(a) for a in args])
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, stderr)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlflow server` on 127.0.0.1 with a SQLite store and a local artefact root under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.process = None
        self.uri = None

    def start(self) -> "Server":
        port = _free_port()
        self.uri = f"http://127.0.0.1:{port}"
        command = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
                   "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                   "--artifacts-destination", str(self.root / "artifacts"), "--workers", "1"]
        self.log = open(self.root / f"server-{port}.log", "w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                        cwd=self.root)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / f'server-{port}.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("mlflow server did not answer /health within 120 s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'pipe[mlflow]')")
    server = Server(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server
    server.stop()
