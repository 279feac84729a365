"""What a sweep leaves beside its trials: trials.csv, best.yaml, the plots, and its summary.

best.yaml extends the spec files the sweep was started with, removes the `sweep:` section
and sets the best trial's values (and the sweep's `--set` values): `pipe run best.yaml`
trains the best trial again. A value inside a list (`layers[1].Dense.units`) is written as
the whole list, since a list in a spec replaces its base's list.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import yaml

from runner.sweep import study as sweep_study
from runner.spec.sweep_space import override_text

State = optuna.trial.TrialState
PLOTS = {"optimization_history.png": "plot_optimization_history",
         "param_importances.png": "plot_param_importances",
         "parallel_coordinate.png": "plot_parallel_coordinate"}


def trial_state(trial) -> str:
    if trial.state == State.FAIL and trial.user_attrs.get("interrupted"):
        return "interrupted"
    return {State.COMPLETE: "completed", State.PRUNED: "pruned", State.FAIL: "failed",
            State.RUNNING: "running", State.WAITING: "waiting"}[trial.state]


def write(directory, study, sweep, config, plots: bool = True, echo=print):
    """Write the report; returns (the best trial as a dict or None, trials by state)."""
    directory = Path(directory)
    trials = study.get_trials(deepcopy=False)
    rows = [_row(trial, sweep) for trial in trials]
    with open(directory / "trials.csv", "w", newline="", encoding="utf-8") as handle:
        fields = ["number", "state", *(p.name for p in sweep.parameters), sweep.objective, "epochs", "wall_time_s",
                  "run_dir", "worker_peak_rss_mb", "message"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    counts = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    completed = [t for t in trials if t.state == State.COMPLETE]
    best = None
    if completed:
        chosen = (min if sweep.direction == "minimize" else max)(completed, key=lambda t: t.value)
        best = {"number": chosen.number, "objective": sweep.objective, "value": chosen.value,
                "params": {p.name: sweep_study.decode(chosen.params[p.name]) for p in sweep.parameters},
                "run_dir": chosen.user_attrs.get("run_dir")}
        _write_best(directory, sweep, config, best)
    config = sweep_study.read_config(directory)
    config.update(best=best, counts=counts)
    sweep_study.write_config(directory, config)
    if plots and len(completed) >= 2:
        _plots(directory, study, echo)
    return best, counts


def _row(trial, sweep) -> dict:
    attrs = trial.user_attrs
    run_dir = attrs.get("run_dir")
    epochs = None
    if run_dir and (Path(run_dir) / "manifest.json").is_file():
        try:
            epochs = json.loads((Path(run_dir) / "manifest.json").read_text()).get("epochs_run")
        except ValueError:
            pass
    row = {"number": trial.number, "state": trial_state(trial), sweep.objective: trial.value,
           "epochs": epochs, "wall_time_s": attrs.get("wall_time_s"), "run_dir": run_dir,
           "worker_peak_rss_mb": attrs.get("worker_peak_rss_mb"),
           "message": attrs.get("error") or attrs.get("reason") or ""}
    for p in sweep.parameters:
        value = sweep_study.decode(trial.params.get(p.name))
        row[p.name] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return row


def _write_best(directory: Path, sweep, config: dict, best: dict) -> None:
    from runner.spec import load_spec

    sets = [*config["overrides"], *(override_text(p.key, best["params"][p.name]) for p in sweep.parameters)]
    spec = load_spec([Path(f) for f in config["files"]], sets)
    overlay: dict = {"sweep": None}
    for text in sets:
        key = text.partition("=")[0].strip()
        parts = [int(p) if p.lstrip("-").isdigit() else p for p in key.split(".")]
        if parts[0] == "sweep":
            continue  # best.yaml has no sweep
        cut = next((i for i, p in enumerate(parts) if isinstance(p, int)), len(parts))
        path = parts[:cut]  # up to the first list: the whole list is written
        node = overlay
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = spec.get(*path)
    files = config["files"]
    header = (f"# The best trial ({best['number']}) of the sweep {directory}:\n"
              f"# {best['objective']} = {best['value']:.6g}. Run it again with: pipe run {directory / 'best.yaml'}\n")
    body = {"extends": files[0] if len(files) == 1 else files, **overlay}
    text = header + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)
    (directory / "best.yaml").write_text(text, encoding="utf-8")


def _plots(directory: Path, study, echo) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import warnings

    from optuna.visualization import matplotlib as views

    for name, function in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = getattr(views, function)(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
            figure.savefig(directory / name, dpi=100, bbox_inches="tight")
            plt.close(figure)
        except Exception as e:  # noqa: BLE001 - a plot that cannot be drawn is said, not fatal
            echo(f"pipe sweep: no {name}: {e}")
