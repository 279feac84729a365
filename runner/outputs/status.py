"""How a run ended, as its manifest tells it — and `killed` when it says `running` but cannot be.

A run killed with SIGKILL (or by the OOM killer, or a power cut) never gets to write its
end: its manifest still says `running`. The manifest also holds the pid, host and a
heartbeat time; a `running` manifest whose process is gone on this host reads as `killed`.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from runner.outputs.manifest import process_start

STATUSES = ("running", "completed", "failed", "interrupted", "diverged", "killed", "pruned")


@dataclass
class RunStatus:
    """A run's effective status and why (`reason` is None for running and completed runs)."""

    status: str
    reason: str | None = None


def read_status(run_dir) -> RunStatus:
    """The effective status of the run in `run_dir` (see `effective_status`).

    Raises:
        OSError: no manifest.json in `run_dir`.
        ValueError: the manifest is not JSON.
    """
    manifest = json.loads((Path(run_dir) / "manifest.json").read_text())
    return effective_status(manifest)


def effective_status(manifest: dict) -> RunStatus:
    """The status a manifest records, except that a `running` run whose process is gone is `killed`.

    A process on another host cannot be checked: its run reads as `running`, and its
    heartbeat tells how recently it was alive.
    """
    status = manifest.get("status")
    reason = manifest.get("reason") or manifest.get("error")
    if status != "running":
        return RunStatus(status, reason)
    pid, host = manifest.get("pid"), manifest.get("host")
    if pid is None or host != socket.gethostname() or _alive(pid, manifest.get("pid_start")):
        return RunStatus("running")
    done = manifest.get("epochs_done")
    return RunStatus("killed", f"process {pid} on {host} is gone without recording an end; "
                               f"last heartbeat {manifest.get('heartbeat')} after {done} epochs")


def checked_status(manifest: dict) -> RunStatus:
    """`effective_status`, or the manifest's own status when its process cannot be checked
    (a pid that is not a number, ...)."""
    try:
        return effective_status(manifest)
    except (TypeError, ValueError, OverflowError, OSError):
        return RunStatus(manifest.get("status"), manifest.get("reason") or manifest.get("error"))


def _alive(pid: int, started) -> bool:
    """Whether `pid` is still the run's process (not gone, and not a later process reusing it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if _zombie(pid):  # exited, not yet reaped by its parent
        return False
    return started is None or process_start(pid) in (None, started)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
