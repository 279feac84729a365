"""A split rebuilt as an earlier run preprocessed it: its spec plus its saved statistics."""

from __future__ import annotations

from runner.data.build import build_datasets
from runner.data.learned import load_learned


def build_split_from_run(spec, run_dir, split: str = "test"):
    """One split of `spec` through its stages, with the statistics the run at `run_dir` learned.

    Vocabularies, fill values and normalize statistics come from the run's preprocessing.json,
    never from the data being read, so new data is encoded exactly as the model was trained.

    Args:
        spec: the run's spec (`load_spec(run_dir / "spec.yaml")`, or the original spec file
            whose relative data paths resolve), possibly with another source set for `split`.
        run_dir: the run directory holding preprocessing.json.
        split: "test" (or "validation" with its own source, or "train").

    Returns:
        The split's tf.data.Dataset after its stages.
    """
    datasets = build_datasets(spec, learned=load_learned(run_dir), splits=(split,))
    return getattr(datasets, split)
