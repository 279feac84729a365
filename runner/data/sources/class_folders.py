"""The files of a folder with one sub-folder per class, as Keras's *_dataset_from_directory
utilities read them: class names from the sub-folders' names in alphabetical order (or as
declared), label i for the i-th, files sorted within each class."""

from __future__ import annotations


def class_folder_files(spec, path, options, extensions: tuple, kind: str):
    """(files, labels, class_names) of the folder `options["directory"]`, keeping files whose
    suffix is one of `extensions` (lower case); located errors at `path` (the source)."""
    directory = spec.resolve_path(options["directory"])
    if not directory.is_dir():
        raise spec.error(path + ("directory",), f"directory not found: {directory}")
    class_names = options.get("class_names") or sorted(p.name for p in directory.iterdir() if p.is_dir())
    if not class_names:
        raise spec.error(path + ("directory",), f"{directory} has no class sub-folders (one folder per class)")
    files, labels = [], []
    for label, name in enumerate(class_names):
        folder = directory / name
        if not folder.is_dir():
            raise spec.error(path + ("class_names",), f"no sub-folder {name!r} in {directory}")
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in extensions and p.is_file())
        files += found
        labels += [label] * len(found)
    if not files:
        raise spec.error(path + ("directory",), f"no {kind} ({', '.join(extensions)}) under {directory}")
    return files, labels, class_names
