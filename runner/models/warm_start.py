"""`model.init_from`: a new model starts from the weights of a completed run, layer by layer.

The run's saved model (model.keras) is loaded without its optimizer; each layer of the new
model takes the weights of the run's layer of the same name. Every layer that takes weights
must exist there with the same weight shapes; otherwise nothing is loaded and one located
error lists what does not match. The optimizer of the new run starts afresh.
"""

from __future__ import annotations

import keras

from runner.spec.phases import init_from_run, run_dir_problem


def init_from(model, model_config: dict, spec) -> list[str]:
    """Load `model.init_from`'s weights into `model` by layer name; returns the layers loaded.

    Without `layers`, every layer of `model` that has weights takes them from the run;
    with `layers: [names]`, those layers only.

    Raises:
        SpecError: at model.init_from: no completed run, no saved Keras model, a tf.Module
            model, or layers that are missing there or differ in shape (all of them listed).
    """
    run, names = init_from_run(model_config)
    where = ("model", "init_from") + (("run",) if isinstance(model_config.get("init_from"), dict) else ())
    directory = spec.resolve_path(run)
    problem = run_dir_problem(directory)
    if problem:
        raise spec.error(where, problem, at_value=True)
    if not isinstance(model, keras.Model):
        raise spec.error(("model", "init_from"), "init_from loads Keras layers by name; a module model has none")
    saved = directory / "model.keras"
    if not saved.is_file():
        raise spec.error(where, f"the run in {directory} saved no Keras model (model.keras): init_from needs "
                                "one (outputs.save_model: true or keras in that run)", at_value=True)
    try:
        source = keras.saving.load_model(saved, compile=False)
    except Exception as e:  # noqa: BLE001 - Keras raises many kinds for an unreadable file
        raise spec.error(where, f"cannot load {saved}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                         at_value=True) from None
    theirs = {layer.name: layer for layer in source.layers}
    ours = {layer.name: layer for layer in model.layers}
    wanted = names if names is not None else [name for name, layer in ours.items() if layer.weights]
    if not wanted and any(layer.weights for layer in source.layers):  # nothing would be loaded: say so
        raise spec.error(where, "this model has no weights yet to load that run's into (its input shape is "
                                "not known before training: give the model's input_shape)", at_value=True)
    problems = []
    for name in wanted:
        if name not in ours:
            problems.append(f"{name}: no such layer in this model")
        elif name not in theirs:
            problems.append(f"{name}: not in that run's model")
        else:
            problems += _shape_problems(name, ours[name], theirs[name])
    if problems:
        path = ("model", "init_from", "layers") if names is not None else where
        known = ", ".join(theirs)
        raise spec.error(path, f"the weights of {directory} do not fit this model by layer name: "
                               f"{'; '.join(problems)} (that run's layers: {known})")
    for name in wanted:
        ours[name].set_weights(theirs[name].get_weights())
    return list(wanted)


def _shape_problems(name, ours, theirs) -> list[str]:
    mine = [tuple(w.shape) for w in ours.weights]
    other = [tuple(w.shape) for w in theirs.weights]
    if mine == other:
        return []
    if len(mine) != len(other):
        return [f"{name}: {len(mine)} weights here, {len(other)} there"]
    return [f"{name}: {w.path.split('/')[-1]} {_shape(a)} here, {_shape(b)} there"
            for w, a, b in zip(ours.weights, mine, other) if a != b]


def _shape(shape) -> str:
    return str(tuple(int(d) for d in shape))
