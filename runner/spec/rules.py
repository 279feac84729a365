"""Cross-field rules of a spec: what the JSON Schema cannot say."""

from __future__ import annotations

from runner.spec.data_rules import augment_errors, endless_errors, prior_errors, window_errors
from runner.spec.errors import SpecError, printable
from runner.spec.model_rules import model_errors, text_export_errors
from runner.spec.paths import template_problem
from runner.spec.safety import safety_errors
from runner.spec.store_paths import malformed_problem, missing_folder_problem


def rule_errors(spec) -> list[SpecError]:
    """Every rule the schema-valid `spec` breaks."""
    return section_rule_errors(spec) + checked_rule_errors(spec)


def checked_rule_errors(spec, tolerant: bool = False) -> list[SpecError]:
    """Safety, Keras names and arguments, the functional graph and the cross-section rules.

    Written to tolerate a spec with schema errors (each looks at what it needs and skips
    what is malformed), so that `pipe validate` reports these mistakes together with those.
    `tolerant`: a rule that trips over a shape the schema already reports is skipped on its
    own, so the others' errors (an absolute callback path, say) are still reported.
    """
    from runner.spec.graph import graph_errors
    from runner.spec.keras_names import keras_name_errors
    from runner.spec.training_rules import training_rule_errors

    from runner.spec.adaptation import adaptation_errors

    errors = []
    for rule in (safety_errors, keras_name_errors, graph_errors, training_rule_errors, endless_errors,
                 adaptation_errors, window_errors, prior_errors, augment_errors,
                 text_export_errors):
        try:
            errors += rule(spec)
        except (TypeError, KeyError, AttributeError, ValueError):
            if not tolerant:
                raise
    return errors


def section_rule_errors(spec) -> list[SpecError]:
    """The rules that assume a schema-valid spec: loop, report, validation, validate_on."""
    errors = []
    train, data = spec.doc["train"], spec.doc["data"]
    loop = train.get("loop", "fit")
    if "module" in spec.doc["model"] and loop != "custom":
        errors.append(spec.error(("train", "loop"), "a module model trains with loop: custom (Keras fit needs a Keras model)",
                                 at_value=True) if "loop" in train else
                      spec.error(("train",), "a module model needs 'loop: custom' (Keras fit needs a Keras model)"))
    per_call, steps = train.get("steps_per_execution"), train.get("steps_per_epoch")
    if loop == "fit" and isinstance(per_call, int) and steps and steps % per_call:
        # Keras's fit would run whole calls past the epoch's end (more steps than asked)
        errors.append(spec.error(("train", "steps_per_execution"), f"{per_call} does not divide steps_per_epoch "
                                 f"{steps}: with loop: fit every call runs {per_call} steps, so epochs would run "
                                 "more steps than asked; use a divisor, or loop: custom", at_value=True))
    if "report" in train and loop != "custom":
        errors.append(spec.error(("train", "report"), "report lines are printed by the custom loop only; set 'loop: custom'"))
    for key, template in (train.get("report") or {}).items():
        problem = template_problem(template) if isinstance(template, str) else None
        if problem:
            errors.append(spec.error(("train", "report", key), f"{template!r} {problem}", at_value=True))
    precision = (spec.doc.get("device") or {}).get("mixed_precision")
    if "module" in spec.doc["model"] and precision:
        errors.append(spec.error(("device", "mixed_precision"),
                                 f"{precision} applies to Keras models (their layers follow the Keras dtype "
                                 "policy); a tf.Module model keeps float32 variables and computes in float32: "
                                 "remove device.mixed_precision or use a Keras model", at_value=True))
    for held in ("validation", "test"):
        declared = data.get(held)
        if declared is not None and ("source" in declared) == ("fraction" in declared):
            errors.append(spec.error(("data", held), "give either 'source' or 'fraction', not both or neither"))
        for key in ("shuffle", "stratify"):
            if declared is not None and key in declared and "fraction" not in declared:
                errors.append(spec.error(("data", held, key), f"{key} applies to a {held} fraction "
                                         f"(a {held} source is read as it is)"))
    if "module" in spec.doc["model"] and (spec.doc.get("outputs") or {}).get("save_model") == "keras":
        errors.append(spec.error(("outputs", "save_model"), "a module model saves as a SavedModel: use saved_model (or true)",
                                 at_value=True))
    outputs = spec.doc.get("outputs") or {}
    for key in ("experiment", "run_name", "register_as"):  # shown by MLflow and printed by pipe
        name = (outputs.get("mlflow") or {}).get(key)
        if isinstance(name, str) and printable(name) != name:
            errors.append(spec.error(("outputs", "mlflow", key), "holds control characters: use a plain name",
                                     at_value=True))
    # An absolute path only: validate may run elsewhere than the run (a relative one is checked
    # as the run starts, where MLflow will resolve it).
    uri = (outputs.get("mlflow") or {}).get("tracking_uri")
    problem = malformed_problem(uri) or missing_folder_problem(uri, relative_too=False)
    if problem:
        errors.append(spec.error(("outputs", "mlflow", "tracking_uri"), problem, at_value=True))
    if (outputs.get("mlflow") or {}).get("register_as"):
        save = outputs.get("save_model", True)
        why = ("outputs.save_model is false: save the model" if save is False else
               "a module model saves no model.keras (its saved_model/ is uploaded as files): use a Keras model"
               if "module" in spec.doc["model"] else
               "outputs.save_model is saved_model: save it as keras (or true)" if save == "saved_model" else None)
        if why:
            errors.append(spec.error(("outputs", "mlflow", "register_as"), "registers the model.keras MLflow's Keras "
                                     f"flavour logs, but {why}, or drop register_as", at_value=True))
    split = train.get("validate_on")
    if split and split not in data:
        errors.append(spec.error(("train", "validate_on"), f"there is no data.{split} split to validate on", at_value=True))
    errors += model_errors(spec)
    return errors
