"""`pipe sweep`: a hyperparameter search whose trials are ordinary runs, on Optuna.

This process does not import TensorFlow (only Keras, to upload to MLflow a trial's model
that its worker could not): it creates (or reopens) the study, then keeps
`workers` worker processes (`runner.sweep.worker`) running until the study holds its
`trials` trials. A worker that dies (SIGKILL, out of memory) is replaced and its trial
marked failed. With `outputs.mlflow`, the sweep's MLflow run is made as it starts and
completed as it ends (`runner.sweep.tracking`). SIGINT/SIGTERM/SIGHUP are passed on to the workers once: each stops its
trial as a run stops (epochs saved) and records it interrupted; `--resume` runs those
again with the same values. At the end the sweep directory gets trials.csv, best.yaml and
the plots (`runner.sweep.report`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runner.sweep import report as sweep_report, study as sweep_study
from runner.sweep.tracking import SweepTracking
from runner.outputs.tracking_run import check_tracking_folder
from runner.run.interrupts import HANDLED
from runner.spec import SpecError, SpecErrors, load_spec
from runner.spec.sweep_space import read_sweep, sweep_errors


@dataclass
class SweepResult:
    directory: Path
    best: dict | None
    counts: dict
    interrupted: str | None = None  # the signal's name
    exit_code: int = 0


def start(files, overrides=(), workers: int = 1, storage: str | None = None, echo=print) -> SweepResult:
    """Validate the spec's sweep, create its directory and study, run it to the end."""
    spec = load_spec(files, overrides)
    if read_sweep(spec) is None:
        raise SpecErrors([spec.error((), "the spec has no sweep: section; add one (see docs/guides/sweeps.md) "
                                         "or train it with pipe run")])
    errors = sweep_errors(spec, files, overrides)
    if errors:
        raise SpecErrors(errors)
    check_tracking_folder(spec)  # the sweep's MLflow store, before its directory is made
    directory = sweep_study.create(spec, files, overrides, storage)
    echo(f"sweep directory: {directory}")
    return supervise(directory, workers, echo)


def resume(directory, workers: int = 1, echo=print) -> SweepResult:
    """Finish a sweep: its interrupted trials again (same values), then the rest of the budget."""
    config = sweep_study.read_config(directory)
    _, sweep = sweep_study.load_base(config)
    study = sweep_study.open_study(config, sweep)
    queued = sweep_study.requeue_interrupted(directory, study)
    config["started"] = time.time()  # sweep.timeout counts from the start of this part
    sweep_study.write_config(directory, config)
    echo(f"sweep directory: {directory}" + (f" ({queued} interrupted trial{'s' if queued != 1 else ''} "
                                            f"to run again)" if queued else ""))
    # Seeds apart from the earlier workers': a seeded sampler would draw their values again.
    return supervise(Path(directory), workers, echo, first_slot=1 + len(study.get_trials(deepcopy=False)))


def join(directory, workers: int = 1, echo=print) -> SweepResult:
    """Add workers to a running sweep (here, or on another machine sharing its storage)."""
    sweep_study.read_config(directory)
    echo(f"joining sweep: {directory}")
    # Slots (the samplers' seed offsets) apart from the sweep's own workers' and other joins'.
    return supervise(Path(directory), workers, echo, first_slot=1000 + os.getpid() % 100_000 * 64)


def supervise(directory: Path, workers: int, echo=print, first_slot: int = 0) -> SweepResult:
    """Keep `workers` worker processes going until the budget is used; then the report."""
    config = sweep_study.read_config(directory)
    _, sweep = sweep_study.load_base(config)
    study = sweep_study.open_study(config, sweep)
    stopping: list[int] = []
    running: dict[int, subprocess.Popen] = {}
    restarts = 0
    tracking = SweepTracking(directory)
    tracking.start()  # the parent run, for the workers to put their trials under

    def forward(signum, frame):
        if stopping:
            return  # once: a second signal would stop the workers' trials unsaved
        stopping.append(signum)
        for process in running.values():
            if process.poll() is None:
                process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in HANDLED if signal.getsignal(s) != signal.SIG_IGN}
    try:
        for slot in range(first_slot, first_slot + workers):
            running[slot] = _start_worker(directory, slot)
        while running:
            time.sleep(0.2)
            for slot, process in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[slot]
                worker = f"{os.uname().nodename}:{process.pid}"
                if stopping or code in (130, 143, 129):
                    sweep_study.fail_orphans(study, worker, "interrupted before its run started", interrupted=True)
                    if not stopping:
                        stopping.append(code - 128)
                elif code != 0:
                    why = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                    for number in sweep_study.fail_orphans(study, worker, f"its worker died ({why})"):
                        echo(f"trial {number}: failed  its worker died ({why})")
                    restarts += 1
                    if restarts <= workers + sweep.trials and sweep_study.budget_left(study, sweep):
                        slot += 100 * restarts  # a new seed: not the dead worker's draws again
                        running[slot] = _start_worker(directory, slot)
                    elif restarts > workers + sweep.trials:
                        echo(f"pipe sweep: workers keep dying; see {directory}/worker-{slot}.log")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    best, counts = sweep_report.write(directory, study, sweep, config, plots=not stopping, echo=echo)
    uploaded = tracking.finish(stopped=bool(stopping))  # after every file of the sweep; never raises
    if uploaded is not None:
        echo(uploaded.describe())
    if stopping:
        name = signal.Signals(stopping[0]).name
        return SweepResult(directory, best, counts, interrupted=name, exit_code=128 + stopping[0])
    return SweepResult(directory, best, counts)


def _start_worker(directory: Path, slot: int) -> subprocess.Popen:
    """A worker process in its own session: a terminal's Ctrl-C reaches it through this one, once."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log = open(directory / f"worker-{slot}.log", "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "runner.sweep.worker", str(directory), str(slot)], stderr=log,
                                env=env, start_new_session=True)
    finally:
        log.close()


__all__ = ["SpecError", "SweepResult", "join", "resume", "start"]
