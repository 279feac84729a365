"""Cross-field rules of a spec: what the JSON Schema cannot say."""

from __future__ import annotations

from runner.spec.data_rules import endless_errors
from runner.spec.errors import SpecError
from runner.spec.model_rules import model_errors
from runner.spec.safety import safety_errors


def rule_errors(spec) -> list[SpecError]:
    """Every rule the schema-valid `spec` breaks."""
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
    errors += safety_errors(spec) + model_errors(spec) + endless_errors(spec)
    return errors
