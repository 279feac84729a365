"""Cross-field rules of a spec: what the JSON Schema cannot say."""

from __future__ import annotations

from runner.spec.errors import SpecError


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
    if "module" in spec.doc["model"] and (spec.doc.get("outputs") or {}).get("save_model") == "keras":
        errors.append(spec.error(("outputs", "save_model"), "a module model saves as a SavedModel: use saved_model (or true)",
                                 at_value=True))
    split = train.get("validate_on")
    if split and split not in data:
        errors.append(spec.error(("train", "validate_on"), f"there is no data.{split} split to validate on", at_value=True))
    return errors
