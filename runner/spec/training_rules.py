"""Rules across sections that Keras and tf.data would otherwise report late, or never.

Each rule names a mistake that makes `pipe run` fail after minutes of training (a schedule
with ReduceLROnPlateau fails at the first rate cut), hang (`repeat` without a bound: runner/spec/data_rules.py), or
silently do nothing (EarlyStopping on `val_loss` with no validation data only warns).
"""

from __future__ import annotations

import re

from runner.spec import catalog
from runner.spec.errors import SpecError, did_you_mean
from runner.spec.keras_names import is_loss_per_output, output_names, parse_identifier
from runner.spec.metadata import KNOWN_REFERENCES
from runner.spec.phases import init_from_errors, phase_errors

SPLITS = ("train", "validation", "test")
_REFERENCE = re.compile(r"\$\{[^}]*\}?")


def training_rule_errors(spec) -> list[SpecError]:
    """Every cross-section rule the spec breaks (each rule tolerates a malformed spec)."""
    errors = []
    for rule in (reference_errors, stage_order_errors, schedule_errors, optimizer_errors,
                 logits_errors, monitor_errors, class_weight_errors, loss_key_errors, checkpoint_errors,
                 module_errors, fused_engine_errors, phase_errors, init_from_errors):
        errors += rule(spec)
    return errors


def reference_errors(spec) -> list[SpecError]:
    """`${...}`: only the known references, written alone, of splits that exist."""
    errors = []
    for path, text in _strings(spec.doc, ()):
        if "${" not in text:
            continue
        found = _REFERENCE.findall(text)
        if text not in KNOWN_REFERENCES:
            reference = found[0] if found else text
            if reference in KNOWN_REFERENCES:
                message = f"{reference} must be the whole value, not part of {text!r}"
            else:
                message = f"unknown reference {text!r} (known: {', '.join(KNOWN_REFERENCES)})"
            errors.append(spec.error(path, message, did_you_mean(text, KNOWN_REFERENCES), at_value=True))
            continue
        split = text[len("${data."):].split(".")[0]
        if split in SPLITS and not _declared(spec, split):
            errors.append(spec.error(path, f"{text}: there is no data.{split} split", at_value=True))
    return errors


def stage_order_errors(spec) -> list[SpecError]:
    """Stage orders tf.data accepts but that do not do what they say."""
    errors = []
    for split in SPLITS:
        stages = spec.get("data", split, "stages", default=[])
        names = [next(iter(s)) if isinstance(s, dict) and len(s) == 1 else None for s in stages] \
            if isinstance(stages, list) else []
        for i, name in enumerate(names):
            where = ("data", split, "stages", i, name)
            cache = stages[i].get("cache") if name == "cache" else None
            if name == "cache" and "shuffle" in names[:i] and not (isinstance(cache, dict) and cache.get("filename")):
                errors.append(spec.error(where, "cache after shuffle stores the first epoch's order and replays "
                                                "it every epoch: put cache before shuffle"))
            if name == "unbatch" and "batch" not in names[:i]:
                errors.append(spec.error(where, "unbatch before any batch would split each element along its "
                                                "first axis (a source yields single elements): remove it or "
                                                "batch first"))
    return errors


def optimizer_errors(spec) -> list[SpecError]:
    """Optimizer arguments Keras refuses in combination, found before the build."""
    path = ("train", "optimizer")
    parsed = parse_identifier(spec.get(*path), path) if spec.get(*path) is not None else None
    if parsed is None or isinstance(parsed, str):
        return []
    clipping = [k for k in ("clipnorm", "clipvalue", "global_clipnorm") if parsed.config.get(k) is not None]
    errors = []
    if len(clipping) > 1:
        errors.append(spec.error(parsed.config_path + (clipping[1],), f"give only one of {', '.join(clipping)}: "
                                 "Keras clips gradients one way"))
    steps = parsed.config.get("gradient_accumulation_steps")
    if isinstance(steps, int) and not isinstance(steps, bool) and steps < 2:
        errors.append(spec.error(parsed.config_path + ("gradient_accumulation_steps",),
                                 f"gradient_accumulation_steps must be 2 or more, got {steps} (leave it out to "
                                 "update every step)", at_value=True))
    return errors


def logits_errors(spec) -> list[SpecError]:
    """`from_logits: true` on a model whose last layer already applies softmax or sigmoid."""
    loss = parse_identifier(spec.get("train", "loss"), ("train", "loss")) if spec.get("train", "loss") else None
    if loss is None or isinstance(loss, str) or loss.config.get("from_logits") is not True:
        return []
    layers = spec.get("model", "sequential", "layers", default=[])
    last = parse_identifier(layers[-1], ()) if isinstance(layers, list) and layers else None
    if last is None or isinstance(last, str):
        return []
    activation = last.config.get("activation")
    squashed = activation if activation in ("softmax", "sigmoid") else None
    if last.name in ("Softmax",):
        squashed = "softmax"
    if squashed is None:
        return []
    return [spec.error(loss.config_path + ("from_logits",), f"from_logits: true, but the model's last layer "
                       f"applies {squashed}: its outputs are probabilities, not logits (drop the activation, "
                       "or set from_logits: false)")]


def schedule_errors(spec) -> list[SpecError]:
    """A learning-rate schedule cannot be set by a callback that sets the rate."""
    rate = _arguments(spec.get("train", "optimizer"), ("train", "optimizer")).get("learning_rate")
    if not isinstance(rate, (str, dict)):
        return []
    errors = []
    for i, callback in _callbacks(spec):
        if callback.name in ("ReduceLROnPlateau", "LearningRateScheduler"):
            errors.append(spec.error(callback.path, f"{callback.name} sets the learning rate, but "
                                     "train.optimizer's learning_rate is a schedule (Keras fails at the first "
                                     "change): use a number as learning_rate, or drop the callback"))
    return errors


def monitor_errors(spec) -> list[SpecError]:
    """A callback's `monitor` must name a logged value; `val_...` needs validation data."""
    errors = []
    logged = logged_names(spec)
    for i, callback in _callbacks(spec):
        entry = catalog.lookup("callbacks", callback.name)
        if entry is None or "monitor" not in entry.arguments:
            continue
        explicit = "monitor" in callback.config
        monitor = callback.config["monitor"] if explicit else entry.arguments["monitor"].get("default")
        if not isinstance(monitor, str) or _ignores_monitor(callback):
            continue
        where = callback.config_path + ("monitor",) if explicit else callback.path
        if monitor.startswith("val_") and not _has_validation(spec):
            fix = "declare data.validation (a source or a fraction)"
            fix += " or set train.validate_on: test" if explicit else ", set train.validate_on: test, or set monitor: loss"
            by_default = "" if explicit else " by default"
            errors.append(spec.error(where, f"{callback.name} monitors {monitor!r}{by_default}, which needs "
                                            f"validation data: {fix}"))
            continue
        if logged is not None and monitor.removeprefix("val_") not in logged:
            # the validation copies are logged too (learning_rate is the optimizer's, not a metric's)
            names = sorted(logged | ({f"val_{n}" for n in logged if n != "learning_rate"}
                                     if _has_validation(spec) else set()))
            errors.append(spec.error(where, f"{callback.name} monitors {monitor!r}, which training does not log "
                                     f"(logged: {', '.join(names)})", did_you_mean(monitor, names)))
    return errors


def _ignores_monitor(callback) -> bool:
    """ModelCheckpoint reads `monitor` only with save_best_only: it otherwise saves every epoch."""
    return callback.name == "ModelCheckpoint" and callback.config.get("save_best_only") is not True


def class_weight_errors(spec) -> list[SpecError]:
    """class_weight: one output only, and classes within the one-hot depth of the labels."""
    weights = spec.get("train", "class_weight")
    if not (isinstance(weights, dict) or weights == "balanced") or not weights:
        return []
    if len(output_names(spec)) > 1:
        return [spec.error(("train", "class_weight"), "class_weight weighs the classes of one output; "
                           "this model has several outputs (Keras refuses it)")]
    depth = _label_one_hot_depth(spec)
    errors = []
    if depth is not None and isinstance(weights, dict):
        for key in weights:
            if str(key).isdigit() and int(key) >= depth:
                errors.append(spec.error(("train", "class_weight", key), f"class {key} does not exist: "
                                         f"the labels are one-hot with depth {depth} (classes 0..{depth - 1})"))
    return errors


def loss_key_errors(spec) -> list[SpecError]:
    """A loss per output: its keys are the output names, one for every output."""
    loss = spec.get("train", "loss")
    outputs = output_names(spec)
    if not is_loss_per_output(loss, outputs):
        return []  # one loss for every output
    errors, hints = [], set()
    for key in loss:
        if key not in outputs:
            hint = did_you_mean(key, outputs)
            hints.add(hint)
            errors.append(spec.error(("train", "loss", key), f"{key!r} is not an output of the model "
                                     f"(outputs: {', '.join(outputs)})", hint))
    missing = [o for o in outputs if o not in loss and f"did you mean '{o}'?" not in hints]
    if missing and len(missing) < len(outputs):
        errors.append(spec.error(("train", "loss"), f"no loss for output{'s' if len(missing) > 1 else ''} "
                                 f"{', '.join(map(repr, missing))}: give every output a loss"))
    return errors


def checkpoint_errors(spec) -> list[SpecError]:
    """Keras 3's ModelCheckpoint writes `.keras` files, or `.weights.h5` with save_weights_only."""
    errors = []
    for i, callback in _callbacks(spec):
        path = callback.config.get("filepath")
        if callback.name != "ModelCheckpoint" or not isinstance(path, str) or path.endswith(("/", "\\")):
            continue  # a folder's path is refused by runner.spec.safety
        weights_only = callback.config.get("save_weights_only") is True
        suffix = ".weights.h5" if weights_only else ".keras"
        if not path.endswith(suffix):
            what = "with save_weights_only: true" if weights_only else "saving the whole model"
            errors.append(spec.error(callback.config_path + ("filepath",),
                                     f"ModelCheckpoint {what} needs a filepath ending in {suffix!r}, got {path!r}",
                                     at_value=True))
    return errors


def module_errors(spec) -> list[SpecError]:
    """Callbacks drive Keras models; a tf.Module model takes none."""
    if not isinstance(spec.get("model", "module"), dict) or not spec.get("train", "callbacks"):
        return []
    return [spec.error(("train", "callbacks"), "callbacks drive Keras models; a module model takes none")]


# --- helpers ---------------------------------------------------------------------------


def fused_obstacle(train: dict) -> str | None:
    """Why the fused engine cannot take these training settings' steps, known from the
    spec alone (the rest needs the data, the devices or Keras: `runner.train.engine`)."""
    if train.get("steps_per_epoch"):
        return "steps_per_epoch (epochs that span dataset passes)"
    if train.get("validation_freq", 1) != 1:
        return "validation_freq (the fused epoch validates after every epoch)"
    if train.get("initial_epoch", 0):
        return "initial_epoch (the fused engine counts epochs from 0)"
    if train.get("phases"):
        return "train.phases (the fused engine trains one optimizer and the same layers throughout)"
    return None


def fused_engine_errors(spec) -> list[SpecError]:
    """`train.engine: fused` with settings it cannot run, before `pipe run` finds them."""
    train = spec.get("train", default={})
    if not isinstance(train, dict) or train.get("engine") != "fused":
        return []
    reason = fused_obstacle(train)
    return [spec.error(("train", "engine"), f"the fused engine cannot run this spec: {reason}")] if reason else []


def _strings(node, path):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, path + (i,))
    elif isinstance(node, str):
        yield path, node


def _declared(spec, split) -> bool:
    return isinstance(spec.get("data", split), dict)


def _has_validation(spec) -> bool:
    which = spec.get("train", "validate_on")
    if which == "test":
        return _declared(spec, "test")
    return _declared(spec, "validation")


def _arguments(value, path) -> dict:
    parsed = parse_identifier(value, path) if value is not None else None
    return parsed.config if parsed is not None and not isinstance(parsed, str) else {}


def _callbacks(spec):
    callbacks = spec.get("train", "callbacks", default=[])
    for i, value in enumerate(callbacks if isinstance(callbacks, list) else []):
        parsed = parse_identifier(value, ("train", "callbacks", i))
        if not isinstance(parsed, str):
            yield i, parsed


def logged_names(spec) -> set | None:
    """The names `fit` logs (loss and each metric), or None when they cannot be told statically."""
    if len(output_names(spec)) > 1:
        return None  # Keras prefixes them by output
    names = {"loss", "learning_rate"}
    metrics = spec.get("train", "metrics", default=[])
    for i, value in enumerate(metrics if isinstance(metrics, list) else []):
        if isinstance(value, str):  # logged under the very string, whatever the class's own name
            names.add(value)
            continue
        parsed = parse_identifier(value, ("train", "metrics", i))
        if isinstance(parsed, str):
            return None
        entry = catalog.lookup("metrics", parsed.name)
        if entry is None:
            return None  # reported as an unknown metric
        name = parsed.config.get("name")
        if name is None and not entry.is_function:
            name = (entry.arguments.get("name") or {}).get("default")
        names.add(name if isinstance(name, str) else entry.name)
    return names


def _label_one_hot_depth(spec) -> int | None:
    """The depth of a `one_hot` op applied to train's labels, if any."""
    stages = spec.get("data", "train", "stages", default=[])
    for stage in stages if isinstance(stages, list) else []:
        ops = (stage.get("map") or {}).get("ops") if isinstance(stage, dict) and isinstance(stage.get("map"), dict) else None
        for op in ops if isinstance(ops, list) else []:
            one_hot = op.get("one_hot") if isinstance(op, dict) else None
            if isinstance(one_hot, dict) and one_hot.get("on") == "label" and isinstance(one_hot.get("depth"), int):
                return one_hot["depth"]
    return None
