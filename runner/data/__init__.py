"""Data: each split's source through its declared tf.data stages.

Owns the sources (one module per kind under `sources/`), the stages, the closed vocabulary
of map ops and the dataset metadata (`Datasets.info`). May import TensorFlow, tfds (lazily,
only for tfds specs) and `runner.spec`; never the model, training or output packages.
"""

from runner.data.build import Datasets, build_datasets
from runner.data.sources.synthetic import synthetic_truth

__all__ = ["Datasets", "build_datasets", "synthetic_truth"]
