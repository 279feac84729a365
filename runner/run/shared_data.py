"""The datasets one process keeps between runs whose data is the same: a sweep's trials.

Each trial of a sweep is an ordinary run of the sweep's spec with other values; most trials
change the model or the optimizer, not the data. Reading and decoding the sources,
learning statistics and putting the splits in memory then give the very same tensors every
time, so a worker builds them once and hands the same `Datasets` (with what the engines
derived from them: in-memory plans and tensors, see `Datasets.keep`) to each trial whose
data is declared the same.

"The same" is everything building the datasets reads: the `data` section as resolved
(a swept `data.*` value changes it), the seed, the device section (where the tensors are
placed), the spec's folder (relative paths), and what the train split's class values are
computed for. An unseeded spec shuffles differently on each run: it is never shared. Only
the last datasets are kept, so memory stays that of one run.
"""

from __future__ import annotations

import json
import os

from runner.spec.data_rules import prior_paths


class SharedData:
    """The last datasets built, under the key of what they were built from."""

    def __init__(self):
        self._key = None
        self._datasets = None
        self._stamps = None  # the data files' sizes and times when they were read: a changed file is read again
        self.reused = 0  # how many times a run took the kept datasets (for tests and logs)

    def datasets(self, spec, build):
        """The datasets of `spec`: the kept ones when built from the same data, else `build()`."""
        key = data_key(spec)
        if key is not None and key == self._key and _stamps(self._datasets.files) == self._stamps:
            self.reused += 1
            if self._datasets.epoch is not None:
                self._datasets.epoch.assign(0)  # as a new run starts it: adapt layers shuffle as epoch 0
            return self._datasets
        self._key, self._datasets = None, None  # the old ones freed before the new are built
        datasets = build()
        if key is not None:
            self._key, self._datasets, self._stamps = key, datasets, _stamps(datasets.files)
        return datasets


def data_key(spec) -> str | None:
    """What building `spec`'s datasets depends on, as text; None when it cannot be shared."""
    sections = spec.sections
    if sections.seed is None:
        return None
    return json.dumps({
        "data": sections.data.as_dict(),
        "seed": sections.seed,
        "device": sections.device.as_dict(),
        "folder": str(spec.resolve_path(".")),
        "balanced": sections.train.class_weight == "balanced",
        "prior": [list(p) for p in prior_paths(sections.model.as_dict() or None)],
    }, sort_keys=True, default=str)


def _stamps(files) -> list:
    stamps = []
    for file in files:
        try:
            stat = os.stat(file)
            stamps.append((str(file), stat.st_size, stat.st_mtime_ns))
        except OSError:
            stamps.append((str(file), None, None))
    return stamps
