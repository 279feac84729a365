"""`pipe evaluate`: a run's saved model on its own held-out splits, or on other data.

The data is rebuilt from the run directory's resolved spec (spec.yaml, with `--set`
overrides such as another `data.test.source`), the model is the one the run saved, and
the loss and metrics are computed the way the run computed them (Keras `evaluate` for the
`fit` loop, the custom loop's own evaluation otherwise), so evaluating a run's own test
split reproduces its `metrics.json` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from runner import console
from runner.data.learned import load_learned
from runner.models import is_keras
from runner.outputs import plots
from runner.outputs.files import write_failure
from runner.outputs.manifest import fingerprint
from runner.outputs.predictions import confusion_matrices
from runner.outputs.records import load_run_spec, new_result_file, read_run, write_result
from runner.outputs.saving import require_saved_model
from runner.run.build import Build, restored_model
from runner.run.engines import evaluating
from runner.train.custom import CustomLoop
from runner.train.log_order import in_order, logged_names
from runner.train.multi_output import loop_metrics

HELD_OUT = ("validation", "test")


@dataclass
class Evaluation:
    """Metrics by split, the file they were written to, and the confusion matrices."""

    metrics: dict
    path: Path | None  # None: not kept (`not_kept` says why)
    confusion: dict
    not_kept: str | None = None


def evaluate_run(run_dir, overrides=(), splits=None) -> Evaluation:
    """Evaluate the model saved in `run_dir` on the splits its spec (plus overrides) declares.

    Args:
        run_dir: a run directory written by `pipe run`.
        overrides: `--set` texts applied to the run's spec.yaml (e.g. another test source).
        splits: which splits to evaluate; default: validation and test, those that exist.

    Raises:
        SpecError: an override or data mistake, located.
        FileNotFoundError: not a run directory, or no saved model in it.
    """
    console.hide_known_noise()  # evaluation reads each finite split to its end, by design
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    require_saved_model(record)
    spec = load_run_spec(run_dir, overrides)
    if spec.sections.device.strategy_name == "multi_worker_mirrored":
        spec.set_value(("device", "strategy"), "default")  # the workers trained together; one process evaluates
    # The run's build with the model it saved; train's statistics, as the run had them.
    build = Build(spec, learned=load_learned(run_dir), model=lambda: restored_model(run_dir, spec))
    datasets = build.through("datasets").datasets
    chosen = _chosen_splits(spec, datasets, splits)
    build.through("loss")
    model = build.model
    evaluate = _evaluator(build, record.manifest.get("loop"))
    metrics, confusion = {}, {}
    for split in chosen:
        dataset = getattr(datasets, split)
        metrics[split] = in_order(evaluating(spec, build.loss_object, split, evaluate, dataset),
                                  logged_names(build.metrics, build.loss_object))  # as the run's metrics.json
        for output, matrix in confusion_matrices(model, dataset).items():
            confusion[split if output is None else f"{split}-{output}"] = matrix
    try:  # a read-only run is still evaluated: its figures are printed, said not kept
        path = new_result_file(run_dir, "evaluation")
        write_result(path, {
            "time": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
            "overrides": list(overrides),
            "data_files": {str(p): fingerprint(p) for p in datasets.files if Path(p).exists()},
            "metrics": metrics,
            "confusion_matrix": {split: np.asarray(m).tolist() for split, m in confusion.items()},
        })
        for split, matrix in confusion.items():
            plots.plot_confusion_matrix(matrix, path.with_name(f"{path.stem}-{split}-confusion_matrix.png"),
                                        datasets.info.get("class_names"))
    except OSError as e:
        return Evaluation(metrics, None, confusion, not_kept=str(write_failure(e.filename or run_dir, e)))
    return Evaluation(metrics, path, confusion)


def _chosen_splits(spec, datasets, splits) -> list[str]:
    wanted = list(splits or HELD_OUT)
    chosen = [s for s in wanted if getattr(datasets, s, None) is not None]
    if splits and len(chosen) < len(wanted):
        missing = [s for s in wanted if s not in chosen]
        raise spec.error(("data",), f"the spec declares no {', '.join(missing)} split to evaluate")
    if not chosen:
        raise spec.error(("data",), "the spec declares no validation or test split to evaluate "
                                    "(give one with --set data.test.source=...)")
    return chosen


def _evaluator(build, loop):
    """A function dataset -> metrics, computed as the run computed them."""
    spec, setup, model, loss = build.spec, build.setup, build.model, build.loss_object
    loop = loop or spec.sections.train.loop
    with setup.strategy.scope():
        # Per-output losses and metrics resolve as the run resolved them (runner.train.multi_output).
        if loop == "fit" and is_keras(model):
            model.compile(loss=getattr(loss, "per_output", loss), loss_weights=getattr(loss, "loss_weights", None),
                          metrics=build.metrics, jit_compile=setup.jit_compile)
            return lambda dataset: {k: float(v) for k, v in
                                    model.evaluate(dataset, verbose=0, return_dict=True).items()}
        element_spec = build.datasets.train.element_spec
        custom = CustomLoop(
            model, loss=loss, optimizer=build.optimizer,
            metrics=loop_metrics(build.metrics, model, element_spec, loss),
            element_spec=element_spec, setup=setup, verbose=0,
        )
    return custom.evaluate
