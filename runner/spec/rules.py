"""Cross-field rules of a spec: what the JSON Schema cannot say."""

from __future__ import annotations

from runner.spec.errors import SpecError


def rule_errors(spec) -> list[SpecError]:
    """Every rule the schema-valid `spec` breaks."""
    return section_rule_errors(spec) + checked_rule_errors(spec)


def checked_rule_errors(spec) -> list[SpecError]:
    """Keras names and arguments, the functional graph and the cross-section rules.

    Written to tolerate a spec with schema errors (each looks at what it needs and skips
    what is malformed), so that `pipe validate` reports these mistakes together with those.
    """
    from runner.spec.graph import graph_errors
    from runner.spec.keras_names import keras_name_errors
    from runner.spec.training_rules import training_rule_errors

    return keras_name_errors(spec) + graph_errors(spec) + training_rule_errors(spec)


def section_rule_errors(spec) -> list[SpecError]:
    """The rules that assume a schema-valid spec: loop, report, validation, validate_on."""
    errors = []
    train, data = spec.doc["train"], spec.doc["data"]
    loop = train.get("loop", "fit")
    if "module" in spec.doc["model"] and loop != "custom":
        errors.append(spec.error(("train", "loop"), "a module model trains with loop: custom (Keras fit needs a Keras model)",
                                 at_value=True) if "loop" in train else
                      spec.error(("train",), "a module model needs 'loop: custom' (Keras fit needs a Keras model)"))
    if "report" in train and loop != "custom":
        errors.append(spec.error(("train", "report"), "report lines are printed by the custom loop only; set 'loop: custom'"))
    validation = data.get("validation")
    if validation is not None and ("source" in validation) == ("fraction" in validation):
        errors.append(spec.error(("data", "validation"), "give either 'source' or 'fraction', not both or neither"))
    split = train.get("validate_on")
    if split and split not in data:
        errors.append(spec.error(("train", "validate_on"), f"there is no data.{split} split to validate on", at_value=True))
    return errors
