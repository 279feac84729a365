"""A deadline for what TensorFlow waits on without end: the peers of a cluster.

MultiWorkerMirroredStrategy (TensorFlow 2.21) waits for every task of the cluster to
connect before it returns, with no limit, and while it waits its preemption notifier takes
SIGTERM (the process logs "SIGTERM caught" and keeps waiting). Python cannot interrupt that
wait, so when the deadline passes the process says why and leaves.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager

EXIT_RUN_FAILED = 3


@contextmanager
def deadline(seconds: float, message: str):
    """Run the block; if it has not finished after `seconds`, print `message` and exit 3."""

    def expire():
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
        os._exit(EXIT_RUN_FAILED)  # the waiting thread holds no Python lock we could release

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
