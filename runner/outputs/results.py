"""Everything a finished run leaves: history, trajectories, metrics, the model and the plots."""

from __future__ import annotations

from runner.outputs import history
from runner.outputs.files import write_json
from runner.outputs.predictions import confusion_matrix, is_1d_regression, is_classification, plot_regression
from runner.outputs.saving import save_model


def write_results(spec, datasets, model, result, evaluation, run_dir) -> None:
    """history, trajectories, metrics, model and plots into the run directory."""
    output_config = spec.doc.get("outputs") or {}
    history.write_history(run_dir, result.history)
    history.write_trajectories(run_dir, result.trajectories)
    write_json(run_dir / "metrics.json", evaluation)
    save = output_config.get("save_model", True)
    if save:
        save_model(model, run_dir, datasets.train.element_spec, format=save if isinstance(save, str) else "auto")
    plot_config = output_config.get("plots") or {}
    if not plot_config.get("enabled", True):
        return
    from runner.outputs import plots  # matplotlib: only when plotting

    if result.history:
        plots.plot_history(result.history, run_dir / "history.png")
    if result.trajectories:
        plots.plot_trajectories(result.trajectories, run_dir / "trajectories.png", plot_config.get("truth"))
    element_spec = datasets.train.element_spec
    if is_1d_regression(element_spec):
        plot_regression(spec, datasets.train, model, run_dir)
    elif plot_config.get("confusion_matrix", True) and is_classification(element_spec):
        dataset = datasets.test or datasets.validation or datasets.train
        # The test split's final evaluation may have kept its predictions: no second pass.
        collected = result.predictions if dataset is datasets.test else None
        matrix = confusion_matrix(model, dataset, collected)
        if matrix is not None:
            plots.plot_confusion_matrix(matrix, run_dir / "confusion_matrix.png", datasets.info.get("class_names"))
