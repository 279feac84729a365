"""A sweep's study on Optuna's storage: the sweep directory, its config, and asking for trials.

Every process of a sweep (the one that started it, its workers, a `--join`) opens the same
study from the storage named in the sweep directory's sweep.json. A trial is asked for
under a lock file in the sweep directory, after counting the trials already taken, so the
study never holds more than `trials` of them whatever the number of workers; a trial a
signal interrupted does not count, and is asked again (the same values) on `--resume`.
Imports Optuna, never TensorFlow.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import socket
import time
from datetime import datetime
from pathlib import Path

import optuna

from runner.errors import EXIT_USAGE, PipeError
from runner.outputs.tracking_uri import mask
from runner.spec.store_paths import missing_folder_problem
from runner.spec.sweep_space import Sweep, read_sweep

CONFIG = "sweep.json"
STUDY = "sweep"
LOCK = ".ask.lock"


class NotASweepDirectory(PipeError, FileNotFoundError):
    """`--resume` or `--join` given a folder without a readable sweep.json: a usage mistake, as
    `run --resume` of a folder that is not a run."""

    exit_code = EXIT_USAGE


class StorageRefused(PipeError):
    """`--storage` names a store this machine cannot use (its driver is not installed, its
    folder does not exist): a usage mistake, said before the sweep directory is made."""

    exit_code = EXIT_USAGE


def check_storage(storage: str) -> None:
    """Refuse a `--storage` URL that cannot be opened here, in one line: StorageRefused.

    Optuna would say only "Failed to import DB access module" (exit 3), and SQLite would make
    a missing folder wherever a typo puts it.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        dialect = make_url(storage).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as e:
        raise StorageRefused(f"--storage {mask(storage)}: not a storage URL Optuna can open "
                             f"(sqlite:///study.db, postgresql://..., mysql://...): {e}") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        raise StorageRefused(f"--storage {mask(storage)}: its database driver, the module {e.name or e}, "
                             "is not installed: pip install it, or use another storage") from None
    problem = missing_folder_problem(storage) if dialect.name == "sqlite" else None
    if problem:
        raise StorageRefused(f"--storage {mask(storage)}: {problem}")


def create(spec, files, overrides, storage: str | None = None, now: datetime | None = None) -> Path:
    """A new sweep directory `<outputs.dir>/<name>/sweep-<stamp>` with its config and study;
    nothing of it is left (folders included) when the study cannot be made."""
    if storage:
        check_storage(storage)
    base = Path(spec.sections.outputs.dir).expanduser() / spec.sections.name
    made = [p for p in (base, *base.parents) if not p.exists()]
    base.mkdir(parents=True, exist_ok=True)
    try:
        return _create_in(base, spec, files, overrides, storage, now)
    except BaseException:
        for folder in made:  # deepest first; only what is still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _create_in(base: Path, spec, files, overrides, storage, now) -> Path:
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 10_000):
        directory = base / ("sweep-" + stamp + ("" if attempt == 1 else f"-{attempt}"))
        try:
            os.mkdir(directory)
            break
        except FileExistsError:
            continue
    directory = directory.resolve()
    try:
        _start_study(directory, spec, files, overrides, storage)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory


def _start_study(directory: Path, spec, files, overrides, storage) -> None:
    storage = storage or f"sqlite:///{directory / 'study.db'}"
    sweep = read_sweep(spec)
    config = {"files": [str(Path(f).resolve()) for f in files], "overrides": list(overrides), "storage": storage,
              "study": STUDY, "started": time.time(), "trials": sweep.trials, "objective": sweep.objective,
              "direction": sweep.direction, "name": spec.sections.name, "cwd": os.getcwd(),
              # as resolved at the start, for the sweep's MLflow run (the spec files may change later)
              "sweep": spec.doc["sweep"], "mlflow": (spec.doc.get("outputs") or {}).get("mlflow")}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=storage, study_name=STUDY, direction=sweep.direction,
                        sampler=sampler(sweep), pruner=pruner(sweep), load_if_exists=True)
    write_config(directory, config)


def read_config(directory) -> dict:
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise NotASweepDirectory(f"{directory} is not a sweep directory (no {CONFIG})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # not JSON, or not UTF-8
        raise NotASweepDirectory(f"{path}: not a sweep's config ({e})") from None


def write_config(directory, config: dict) -> None:
    path = Path(directory) / CONFIG
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def load_base(config: dict):
    """The sweep's spec (the `sweep:` section included) and its Sweep, loaded as at the start."""
    from runner.spec import load_spec

    spec = load_spec([Path(f) for f in config["files"]], config["overrides"])
    return spec, read_sweep(spec)


def open_study(config: dict, sweep: Sweep, slot: int = 0) -> optuna.Study:
    """The study as worker `slot` samples it: the sweep's seed plus the slot, so that workers
    started together never draw the same values (one worker: the seed as given)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=config["study"], storage=config["storage"], sampler=sampler(sweep, slot),
                             pruner=pruner(sweep))


def sampler(sweep: Sweep, slot: int = 0):
    if sweep.seed is not None and slot:
        from dataclasses import replace

        sweep = replace(sweep, seed=(sweep.seed + slot) % 2**32)
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=sweep.seed)
    if sweep.sampler == "grid":
        return _Grid(grid_space(sweep), seed=sweep.seed)
    return optuna.samplers.TPESampler(seed=sweep.seed)


class _Grid(optuna.samplers.GridSampler):
    """The grid without its stop at the last point (`Study.stop` works only inside `optimize`):
    `ask` stops at the grid's size itself."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def pruner(sweep: Sweep):
    if sweep.pruner == "none":
        return optuna.pruners.NopPruner()
    if sweep.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    # A trial may be cut after its first epoch (n_warmup_steps=0, steps count epochs from 0):
    # most of a pruner's saving is there, as sweeps train few epochs per trial (with a
    # warm-up of 1, a 3-epoch trial could only be cut before its last epoch, saving a third
    # at most). Two complete trials first give the median something to stand on.
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


def grid_space(sweep: Sweep) -> dict:
    space = {}
    for p in sweep.parameters:
        if p.kind == "choice":
            space[p.name] = [_encode(c) for c in p.choices]
        else:
            space[p.name] = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
    return space


def distributions(sweep: Sweep) -> dict:
    found = {}
    for p in sweep.parameters:
        if p.kind == "choice":
            found[p.name] = optuna.distributions.CategoricalDistribution([_encode(c) for c in p.choices])
        elif p.kind == "int":
            found[p.name] = optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log,
                                                                 step=int(p.step or 1))
        else:
            found[p.name] = optuna.distributions.FloatDistribution(float(p.low), float(p.high), log=p.log,
                                                                   step=p.step)
    return found


def _encode(choice):
    """Optuna's choices are single values; a list or mapping is kept as its JSON text."""
    return choice if choice is None or isinstance(choice, (bool, int, float, str)) else "json:" + json.dumps(choice)


def decode(value):
    return json.loads(value[5:]) if isinstance(value, str) and value.startswith("json:") else value


def counted(trial) -> bool:
    """Whether a trial uses the budget: everything but a waiting one and one a signal stopped."""
    state = trial.state
    if state == optuna.trial.TrialState.WAITING:
        return False
    return not (state == optuna.trial.TrialState.FAIL and trial.user_attrs.get("interrupted"))


@contextlib.contextmanager
def locked(directory):
    with open(Path(directory) / LOCK, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ask(directory, study: optuna.Study, sweep: Sweep, config: dict):
    """The next trial (its values sampled), or None once the budget or the timeout is used up."""
    with locked(directory):
        if sweep.timeout is not None and time.time() - config["started"] > sweep.timeout:
            return None
        trials = study.get_trials(deepcopy=False)
        budget = sweep.trials
        if sweep.sampler == "grid":  # each point of the grid once
            budget = min(budget, math.prod(len(values) for values in grid_space(sweep).values()))
        if sum(map(counted, trials)) >= budget:
            return None
        trial = study.ask(distributions(sweep))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        return trial


def budget_left(study: optuna.Study, sweep: Sweep) -> bool:
    """Whether a trial is still to be asked (the timeout aside): waiting ones, or budget."""
    trials = study.get_trials(deepcopy=False)
    waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials)
    return waiting or sum(map(counted, trials)) < sweep.trials


def requeue_interrupted(directory, study: optuna.Study) -> int:
    """Queue again, with the same values, each interrupted trial not queued yet; how many."""
    queued = 0
    with locked(directory):
        trials = study.get_trials(deepcopy=False)
        rerun = {t.user_attrs.get("rerun_of") for t in trials}
        for trial in trials:
            if (trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs.get("interrupted")
                    and trial.number not in rerun):
                study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number}, skip_if_exists=False)
                queued += 1
    return queued


def fail_orphans(study: optuna.Study, worker: str, message: str, interrupted: bool = False) -> list[int]:
    """Mark failed (or interrupted) the running trials of a worker that ended; their numbers."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") == worker:
            study._storage.set_trial_user_attr(trial._trial_id, "error", message)
            if interrupted:
                study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            failed.append(trial.number)
    return failed
