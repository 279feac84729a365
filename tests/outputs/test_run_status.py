"""A run's effective status from its manifest, and strict JSON: no TensorFlow needed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from runner.outputs.files import write_json
from runner.outputs.manifest import process_identity
from runner.outputs.status import effective_status, read_status


def manifest(**fields):
    return {"status": "running", "reason": None, **process_identity(), "heartbeat": "2026-01-02T03:04:05+00:00",
            "epochs_done": 3, **fields}


def test_a_running_manifest_of_a_live_process_is_running():
    assert effective_status(manifest()).status == "running"


def test_a_running_manifest_of_a_dead_process_is_killed():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    found = effective_status(manifest(pid=child.pid, pid_start=None))
    assert found.status == "killed"
    assert found.reason == (f"process {child.pid} on {socket.gethostname()} is gone without recording an end; "
                            "last heartbeat 2026-01-02T03:04:05+00:00 after 3 epochs")


def test_a_reused_pid_does_not_keep_a_dead_run_alive():
    # Our own pid, but the manifest's process started at another time: another process.
    assert effective_status(manifest(pid_start="1")).status == "killed"


def test_another_hosts_run_cannot_be_checked_and_stays_running():
    assert effective_status(manifest(host="elsewhere.example", pid=999_999_999)).status == "running"


def test_ended_runs_keep_their_status_and_reason(tmp_path):
    for status, reason in (("completed", None), ("failed", "WriteError: cannot write x: No space left on device"),
                           ("interrupted", "stopped by SIGTERM after 3 epochs"),
                           ("diverged", "the training loss became nan at epoch 4, step 2")):
        write_json(tmp_path / "manifest.json", manifest(status=status, reason=reason, pid=999_999_999))
        found = read_status(tmp_path)
        assert (found.status, found.reason) == (status, reason)


def test_json_outputs_are_strict_nan_and_infinity_become_null(tmp_path):
    write_json(tmp_path / "h.json", {"loss": [1.5, float("nan"), float("inf"), -float("inf")], "n": 2})
    text = (tmp_path / "h.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"loss": [1.5, None, None, None], "n": 2}


def test_pipe_runs_lists_a_killed_run_as_killed_with_its_epochs_so_far(tmp_path):
    from runner.commands.runs import list_runs

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    run_dir = tmp_path / "runs" / "demo" / "20260102-030405"
    run_dir.mkdir(parents=True)
    write_json(run_dir / "manifest.json", manifest(pid=child.pid, pid_start=None, name="demo",
                                                   start_time="2026-01-02T03:04:05+00:00"))
    (row,) = list_runs(tmp_path / "runs")
    assert (row["status"], row["epochs"]) == ("killed", 3)
