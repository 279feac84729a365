"""A sweep's worker: one long-lived process that runs trial after trial.

TensorFlow is imported once; each trial is an ordinary run (`run_spec`) of the sweep's
spec with the trial's values set as `--set` would set them, its directory at
`<sweep dir>/trial-NNNN/<stamp>`. Between trials Keras's state is cleared and garbage
collected; the spec's seed is set again by each run. Trials whose data is declared the
same (no swept `data.*` value) share the datasets the first of them built, the splits
already in memory (`runner.run.shared_data`): what a trial leaves is what `pipe run` of its
spec leaves. The objects the imports made are frozen out of the garbage collector's sight
(`gc.freeze`): they live as long as the worker, and each collection would walk them all. At each epoch end the trial reports
its objective to the study and the pruner may stop it (`pruned`). A failing trial is
recorded failed with its message and the worker goes on; a signal stops the running trial
as it stops a run (its epochs saved), records it interrupted and ends the worker (exit
128 + the signal's number).

Run as `python -m runner.sweep.worker SWEEP_DIR [SLOT]` (SLOT offsets the sampler's seed).
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from pathlib import Path

import optuna

from runner.run import epoch_end as progress
from runner.sweep import report as sweep_report, study as sweep_study
from runner.run.interrupts import RunInterrupted, signals_raise
from runner.spec.errors import SpecError
from runner.spec.sweep_space import override_text, yaml_value

State = optuna.trial.TrialState


def main(directory, slot: int = 0) -> int:
    directory = Path(directory)
    config = sweep_study.read_config(directory)
    spec, sweep = sweep_study.load_base(config)
    study = sweep_study.open_study(config, sweep, slot)
    if not sweep_study.budget_left(study, sweep):
        return 0  # nothing left to run: no need for TensorFlow (a late --join)
    import keras  # once per worker

    with signals_raise():  # between trials too: a signal ends the worker, recorded
        return _trials(directory, config, sweep, study, keras)


def _trials(directory, config, sweep, study, keras) -> int:
    from runner.run.pipeline import run_spec
    from runner.run.shared_data import SharedData
    from runner.outputs.failure import summarise_error

    gc.collect()
    gc.freeze()  # what the imports made lives as long as the worker: no collection walks it again
    shared = SharedData()

    while True:
        trial = sweep_study.ask(directory, study, sweep, config)
        if trial is None:
            return 0
        values = {p.name: sweep_study.decode(trial.params[p.name]) for p in sweep.parameters}
        shown = "  ".join(f"{name}={yaml_value(value)}" for name, value in values.items())
        started = time.monotonic()
        state, objective, message = State.FAIL, None, None
        try:
            trial_spec = _trial_spec(config, sweep, values, trial.number, directory)
            key = sweep.epoch_key(trial_spec.sections.train.validate_on or "validation")
            if key is not None and sweep.pruner != "none":  # else the fused engine keeps its long calls
                progress.listen(lambda epoch, logs, can_stop: _report(trial, key, epoch, logs, can_stop))
            result = run_spec(trial_spec, quiet=True, track=False, shared_data=shared, hparams=values)  # uploaded below, under the sweep's run
            objective = (result.metrics.get(sweep.split) or {}).get(sweep.metric)
            if objective is None:
                have = ", ".join(f"{s}.{m}" for s, ms in result.metrics.items() if isinstance(ms, dict) for m in ms)
                message = f"the run measured no {sweep.objective} (it has {have or 'no metrics'})"
            else:
                state = State.COMPLETE
        except progress.RunPruned as e:
            state, message = State.PRUNED, str(e)
        except RunInterrupted as e:
            trial.set_user_attr("interrupted", True)
            _finish(trial, study, State.FAIL, None, f"interrupted by {e.signal_name}", directory, started)
            print(f"trial {trial.number}: interrupted by {e.signal_name}  {shown}", flush=True)
            return e.exit_code
        except SpecError as e:
            message = str(e)
        except Exception as e:  # noqa: BLE001 - a failing trial is recorded and the sweep goes on
            message = summarise_error(e)
        finally:
            progress.listen(None)
        run_dir = _finish(trial, study, state, objective, message, directory, started)
        with sweep_study.locked(directory):  # trials.csv and best.yaml as the sweep goes
            sweep_report.write(directory, study, sweep, config, plots=False)
        if run_dir is not None:
            _track(directory, trial.number, run_dir, _word(state))
        outcome = f"{sweep.objective}={objective:.5g}" if objective is not None else message
        print(f"trial {trial.number}: {_word(state)}  {shown}  {outcome}", flush=True)
        keras.backend.clear_session()  # and a garbage collection


def _trial_spec(config, sweep, values, number, directory):
    from runner.spec import load_spec

    overrides = [*config["overrides"], *(override_text(p.key, values[p.name]) for p in sweep.parameters)]
    spec = load_spec([Path(f) for f in config["files"]], overrides)
    spec.remove("sweep")
    spec.set_value(("name",), f"trial-{number:04d}")
    spec.set_value(("outputs", "dir"), str(directory))
    if isinstance(spec.get("outputs", "mlflow"), dict) and not spec.get("outputs", "mlflow").get("experiment"):
        spec.set_value(("outputs", "mlflow", "experiment"), config["name"])  # the sweep's, not trial-NNNN
    return spec


def _report(trial, key, epoch, logs, can_stop) -> bool:
    value = logs.get(key) if key else None
    if value is None:
        return False
    trial.report(float(value), epoch)
    return can_stop and trial.should_prune()


def _finish(trial, study, state, objective, message, directory, started):
    """Tell the study how the trial ended; returns its run directory (None: it made none)."""
    runs = sorted((directory / f"trial-{trial.number:04d}").glob("*/manifest.json"))
    run_dir = runs[-1].parent if runs else None
    trial.set_user_attr("run_dir", str(run_dir.resolve()) if run_dir else None)  # one form, however the sweep was named
    trial.set_user_attr("wall_time_s", round(time.monotonic() - started, 3))
    trial.set_user_attr("worker_peak_rss_mb", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    if message:
        trial.set_user_attr("error" if state == State.FAIL else "reason", message[:2000])
    if state == State.COMPLETE:
        study.tell(trial, objective)
    else:
        study.tell(trial, state=state)
    return run_dir


def _track(directory, number, run_dir, state) -> None:
    """The trial in MLflow under the sweep's run, as it ends; a failure is a line in the worker's
    log (the sweep's end uploads what is missing, and says so once)."""
    from runner.sweep.tracking import upload_trial

    try:
        upload_trial(directory, number, run_dir, state)
    except Exception as e:  # noqa: BLE001 - tracking never costs a trial
        print(f"trial {number}: not tracked in MLflow yet: {e}", file=sys.stderr, flush=True)


def _word(state) -> str:
    return {State.COMPLETE: "completed", State.PRUNED: "pruned", State.FAIL: "failed"}.get(state, state.name.lower())


if __name__ == "__main__":
    try:
        code = main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    except KeyboardInterrupt as e:  # a signal between trials: nothing is running
        code = getattr(e, "exit_code", 130)
    # Every trial is told and its files closed: skip TensorFlow's teardown (seconds of destructors).
    caches = sys.modules.get("runner.data.cache")
    if caches is not None:
        caches.release_caches()  # os._exit skips atexit
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
