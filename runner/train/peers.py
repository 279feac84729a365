"""Waiting for the other tasks of a cluster, with a deadline.

MultiWorkerMirroredStrategy (TensorFlow 2.21) waits inside C++ for every task to connect,
without a limit, holding the GIL (no Python thread or signal handler runs meanwhile) and
with a preemption notifier that takes SIGTERM. So the chief does its waiting first, in
Python: it polls the other tasks' addresses until each answers (their servers start as
soon as they create the strategy), and gives up with a message after the timeout. The
other tasks create the strategy at once; it is the chief they wait for.
"""

from __future__ import annotations

import socket
import time

DEFAULT_STARTUP_TIMEOUT_S = 600  # a cluster's pods may take minutes to be scheduled


def wait_for_peers(cluster, timeout_s: float, poll_s: float = 0.5) -> None:
    """Return once every other training task of `cluster` accepts connections (chief only).

    Raises:
        RuntimeError: when some did not within `timeout_s` seconds, naming them.
    """
    if cluster is None or not cluster.is_chief:
        return
    own = cluster.jobs[cluster.task_type][cluster.task_index]
    waiting = [a for job in ("chief", "worker") for a in cluster.jobs.get(job, []) if a != own]
    deadline = time.monotonic() + timeout_s
    while waiting:
        waiting = [a for a in waiting if not _answers(a)]
        if waiting and time.monotonic() >= deadline:
            raise RuntimeError(
                f"the other tasks of the cluster did not start within {timeout_s:g} s "
                f"(device.strategy.startup_timeout_s): nothing answers at {', '.join(waiting)}; "
                "start every worker with the same cluster, or wait longer")
        if waiting:
            time.sleep(poll_s)


def _answers(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False
