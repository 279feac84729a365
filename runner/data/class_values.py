"""Values computed from the train split's classes: balanced class weights and a prior output bias.

`train.class_weight: balanced` weighs class c by n_samples / (n_classes * count_c), as
scikit-learn's `compute_class_weight("balanced")`. `bias_initializer: prior` on the output
Dense starts the model predicting the train split's class frequencies: log(p / (1 - p)) for
one sigmoid unit (p the frequency of class 1), log(p_c) for one unit per class (softmax or
logits: softmax(log p) = p). Both are computed on the train split's labels (after a held-out
fraction is carved off, before train's stages) and land in the dataset metadata, which the
manifest records (`data_info`).
"""

from __future__ import annotations

import math

import numpy as np

from runner.data.split import source_labels
from runner.spec.data_rules import prior_paths


def class_values(spec, train, num_classes) -> dict:
    """{"class_counts", "class_weight", "output_bias"} as the spec needs them (else {})."""
    balanced = spec.sections.train.class_weight == "balanced"
    prior = next(prior_paths(spec.sections.model.as_dict() or None), None)
    if not (balanced or prior) or train is None:
        return {}
    labels = source_labels(train)
    path, what = (("train", "class_weight"), "class_weight: balanced") if balanced else (prior, "a prior bias")
    if labels is None or not len(labels):
        raise spec.error(path, f"{what} is computed from the train split's class labels, and its labels are not "
                               "integer classes (one per element)")
    if labels.min() < 0 or (num_classes and labels.max() >= num_classes):
        classes = f"0..{num_classes - 1}" if num_classes else "0 and up"
        raise spec.error(path, f"{what} counts the train split's classes ({classes}), and a label there is outside "
                               "them")  # which one is the data's: not quoted
    counts = np.bincount(labels, minlength=num_classes or 0)
    values = {"class_counts": [int(c) for c in counts]}
    absent = [c for c, n in enumerate(counts) if n == 0]
    if absent:
        raise spec.error(path, f"class {absent[0]} has no example in the train split: its "
                               f"{'balanced weight' if balanced else 'prior'} would be infinite")
    total = int(counts.sum())
    if balanced:
        values["class_weight"] = {c: total / (len(counts) * int(n)) for c, n in enumerate(counts)}
    if prior:
        frequencies = counts / total
        values["output_bias"] = {"softmax": [math.log(p) for p in frequencies]}
        if len(counts) == 2:
            values["output_bias"]["sigmoid"] = math.log(frequencies[1] / frequencies[0])
    return values
