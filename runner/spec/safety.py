"""What a spec may not ask Keras for: code, the network, files outside the run directory.

A spec names Keras objects that Keras builds; a few of them would run code the spec
carries, reach the network or read and write arbitrary files. They are refused here, at
`pipe validate`, with the spec location (no TensorFlow needed to recognise them by name).
"""

from __future__ import annotations

from runner.spec.errors import SpecError
from runner.spec.paths import FILE_ARGUMENT, PATH_ARGUMENT, escape_message, escape_problem, folder_problem

# Keras objects a spec cannot name, and why (a policy, not a table of Keras's names).
REFUSED = {
    "Lambda": "a Lambda layer runs Python code; a spec holds data, never code (use map ops or a Keras layer)",
    "TFSMLayer": "TFSMLayer loads and runs a SavedModel from a file; a spec holds data, never code",
    "LambdaCallback": "LambdaCallback runs Python code; a spec holds data, never code",
    "RemoteMonitor": "RemoteMonitor sends training logs over the network; a run reaches nothing outside its run directory",
}
# Keys of Keras's serialization dicts that make it import or look up code by other names.
REFUSED_KEYS = {
    "module": "'module' would make Keras import from a Python module; name Keras objects by class only",
    "registered_name": "'registered_name' names a custom registered object; a spec uses Keras's own objects only",
}


# A file name each callback that writes one would take, for the message refusing a folder.
_FILE_EXAMPLES = {"ModelCheckpoint": "model.keras", "CSVLogger": "train.csv"}


def safety_errors(spec) -> list[SpecError]:
    """Refused Keras objects and keys under model and train, and escaping callback paths."""
    errors = []
    for section in ("model", "train"):
        errors += _walk(spec, spec.doc.get(section), (section,))
    train = spec.doc.get("train")
    callbacks = train.get("callbacks") if isinstance(train, dict) else None
    for i, identifier in enumerate(callbacks if isinstance(callbacks, list) else []):
        errors += _callback_path_errors(spec, identifier, ("train", "callbacks", i))
    return errors


def identifier_parts(identifier, path: tuple):
    """(class name, arguments, path of the arguments) of a Keras identifier in any form."""
    if isinstance(identifier, str):
        return identifier, {}, path
    if isinstance(identifier, dict) and "class_name" in identifier:
        config = identifier.get("config")
        return identifier["class_name"], config if isinstance(config, dict) else {}, (*path, "config")
    if isinstance(identifier, dict) and len(identifier) == 1:
        ((name, config),) = identifier.items()
        return name, config if isinstance(config, dict) else {}, (*path, name)
    return None, {}, path


def _walk(spec, node, path: tuple) -> list[SpecError]:
    errors = []
    if isinstance(node, dict):
        for key, value in node.items():
            # model.module is pipe's own tf.Module section, not Keras's `module` key.
            if key in REFUSED_KEYS and path != ("model",):
                errors.append(spec.error((*path, key), REFUSED_KEYS[key]))
            elif key in REFUSED and (value is None or isinstance(value, dict)):
                errors.append(spec.error((*path, key), REFUSED[key]))
            elif key in ("class_name", "layer") and isinstance(value, str) and value in REFUSED:
                errors.append(spec.error((*path, key), REFUSED[value], at_value=True))
            elif key == "vocabulary" and isinstance(value, str):
                errors.append(spec.error((*path, key), "a vocabulary file would be read from anywhere on disk; "
                                                       "give the vocabulary as a list", at_value=True))
            else:
                errors += _walk(spec, value, (*path, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, str) and item in REFUSED:
                errors.append(spec.error((*path, i), REFUSED[item], at_value=True))
            else:
                errors += _walk(spec, item, (*path, i))
    return errors


def _callback_path_errors(spec, identifier, path: tuple) -> list[SpecError]:
    """Path-valued callback arguments must stay inside the run directory; a file's is not a folder's."""
    name, arguments, where = identifier_parts(identifier, path)
    errors = []
    for key, value in arguments.items():
        if not (isinstance(key, str) and PATH_ARGUMENT.search(key)):
            continue
        problem = escape_problem(value) if isinstance(value, str) else "is not a path"
        if problem:
            errors.append(spec.error((*where, key), escape_message(value, problem), at_value=True))
        elif FILE_ARGUMENT.search(key) and folder_problem(value):
            example = _FILE_EXAMPLES.get(name, "train.csv")
            if name == "ModelCheckpoint" and arguments.get("save_weights_only") is True:
                example = "model.weights.h5"
            errors.append(spec.error((*where, key), f"{name} writes a file: {folder_problem(value, example)}",
                                     at_value=True))
    return errors
