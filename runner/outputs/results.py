"""Everything a finished run leaves: history, trajectories, metrics, the model and the plots."""

from __future__ import annotations

from runner.outputs import history
from runner.outputs.files import write_json
from runner.data.learned import FILE_NAME as PREPROCESSING_FILE
from runner.outputs.predictions import confusion_matrices, is_1d_regression, plot_regression
from runner.outputs.saving import save_model


def write_results(sections, datasets, model, result, evaluation, run_dir) -> None:
    """history, trajectories, metrics, model and plots into the run directory.

    Args:
        sections: the spec's `Sections` (its outputs and train split); the Spec is taken too.
    """
    sections = getattr(sections, "sections", sections)
    outputs = sections.outputs
    history.write_history(run_dir, result.history)
    history.write_trajectories(run_dir, result.trajectories)
    write_json(run_dir / "metrics.json", evaluation)
    if datasets.learned is not None and not datasets.learned.is_empty():
        # what train taught the pipeline (vocabularies, fills, normalize statistics)
        write_json(run_dir / PREPROCESSING_FILE, datasets.learned.to_json())
    save = outputs.save_model
    if save:
        save_model(model, run_dir, datasets.train.element_spec, format=save if isinstance(save, str) else "auto")
    if not outputs.plots.enabled:
        return
    from runner.outputs import plots  # matplotlib: only when plotting

    if result.history:
        plots.plot_history(result.history, run_dir / "history.png")
    if result.trajectories:
        plots.plot_trajectories(result.trajectories, run_dir / "trajectories.png", outputs.plots.truth)
    element_spec = datasets.train.element_spec
    if is_1d_regression(element_spec):
        plot_regression(sections.data.train, datasets.train, model, run_dir)
    elif outputs.plots.confusion_matrix and isinstance(element_spec, tuple) and len(element_spec) == 2:
        dataset = datasets.test or datasets.validation or datasets.train
        # The test split's final evaluation may have kept its predictions: no second pass.
        collected = result.predictions if dataset is datasets.test else None
        for name, matrix in confusion_matrices(model, dataset, collected).items():
            # one output: confusion_matrix.png; several: one file per classification output
            file = "confusion_matrix.png" if name is None else f"confusion_matrix_{name}.png"
            plots.plot_confusion_matrix(matrix, run_dir / file, datasets.info.get("class_names") if name is None else None)
