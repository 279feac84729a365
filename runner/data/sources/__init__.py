"""One module per source kind; `load_source` picks the one a spec declares.

Each kind's module is imported only when a spec uses it (tfds costs a second or two).
"""

from __future__ import annotations

import importlib

from runner.data.source import Source

# kind -> (module, loader): npz and npy share the NumPy module.
_LOADERS = {
    "tfds": ("tfds", "load"), "idx": ("idx", "load"), "csv": ("csv", "load"),
    "npz": ("numpy", "load_npz"), "npy": ("numpy", "load_npy"),
    "tfrecord": ("tfrecord", "load"), "synthetic": ("synthetic", "load"),
    "image_folder": ("image_folder", "load"), "text_folder": ("text_folder", "load"),
}

# kind -> the key that names what the examples are read from: an empty source is said there.
_READS_FROM = {"tfds": "split", "idx": "images", "csv": "path", "npz": "path", "npy": "features",
               "tfrecord": "files", "synthetic": "x", "image_folder": "directory", "text_folder": "directory"}


def load_source(spec, path: tuple, config: dict, seed: int | None = None) -> Source:
    """The Source declared at `path` (e.g. `("data", "train", "source")`).

    Raises:
        SpecError: a missing or corrupt file, or data that does not match the declaration.
    """
    ((kind, options),) = config.items()
    if kind not in _LOADERS:
        raise spec.error(path, f"unknown source '{kind}' (known: {', '.join(_LOADERS)})")
    module, loader = _LOADERS[kind]
    load = getattr(importlib.import_module(f"{__name__}.{module}"), loader)
    source = load(spec, path + (kind,), options or {}, seed)
    if source.count == 0:
        # Said here, not as a split left empty by its stages: no stage could have added one.
        key = _READS_FROM[kind]
        named = (options or {}).get(key)
        shown = ", ".join(map(str, named)) if isinstance(named, list) else str(named)
        raise spec.error(path + (kind, key), f"{shown} holds no examples",
                         at_value=True)
    return source
