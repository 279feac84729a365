"""Nothing waits forever: a chief whose peers never start gives up after its timeout (the
endless `repeat` is refused by validate: tests/hostile/validate/repeat_*)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.spec.test_spec import MINIMAL

pytestmark = pytest.mark.slow


def test_a_chief_whose_peers_never_start_stops_after_its_timeout(tmp_path):
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    spec = tmp_path / "spec.yaml"
    spec.write_text(MINIMAL + (
        "device:\n  strategy:\n    name: multi_worker_mirrored\n    startup_timeout_s: 5\n"
        f"    cluster: {{worker: ['127.0.0.1:{ports[0]}', '127.0.0.1:{ports[1]}']}}\n"
        "    task: {type: worker, index: 0}\n"))
    result = subprocess.run([sys.executable, "-m", "runner.cli", "run", str(spec)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=600,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1] == (
        "pipe run: the run failed: RuntimeError: the other tasks of the cluster did not start within 5 s "
        f"(device.strategy.startup_timeout_s): nothing answers at 127.0.0.1:{ports[1]}; start every worker with "
        "the same cluster, or wait longer (no error.log was written; --debug prints it)")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
