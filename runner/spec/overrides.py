"""`--set KEY.PATH=VALUE` overrides: applied to a loaded document, checked against the schema's keys."""

from __future__ import annotations

from runner.spec import yamlfile
from runner.spec.errors import SpecError, SpecErrors, did_you_mean, format_path
from runner.spec.schema import deref, load_schema


def apply_override(spec, text: str) -> None:
    """Apply one `key.path=value` override; the value is parsed as YAML, and `null` (or
    nothing) removes the key, as `null` does in a layered file."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecErrors([SpecError("expected KEY.PATH=VALUE", file=f"--set {text}")])
    parts = [int(p) if p.lstrip("-").isdigit() else p for p in key.strip().split(".")]
    if parts[0] == "extends":
        raise SpecErrors([SpecError("extends cannot be set with --set; give the files to layer on the command line",
                                    file=f"--set {text}")])
    try:
        value = yamlfile.parse(raw, file=f"--set {text}").data if raw.strip() else None
    except SpecError as e:
        hint = e.hint and e.hint.replace('"${train.epochs}"', f"""--set '{key}=["${{...}}"]'""") \
            if raw.lstrip().startswith("[") else e.hint
        raise SpecErrors([SpecError(e.message, file=f"--set {text}", hint=hint)]) from None
    node, schema = spec.doc, load_schema()
    for depth, part in enumerate(parts):
        where = tuple(parts[:depth])
        schema = _child_schema(schema, part, where, text)
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if isinstance(part, int) and part < 0:
                raise SpecErrors([SpecError(f"{format_path(where)}: --set counts list items from 0; no index {part} "
                                            f"(it has {len(node)} items)", file=f"--set {text}")])
            if last and value is None:
                raise SpecErrors([SpecError(f"{format_path(where)}: null cannot remove a list item; set the whole "
                                            f"list, e.g. --set '{format_path(where)}=[...]'", file=f"--set {text}")])
            if not isinstance(part, int) or not 0 <= part < len(node):
                raise SpecErrors([SpecError(f"{format_path(where)} has {len(node)} items; no index {part}", file=f"--set {text}")])
        elif isinstance(node, dict):
            if isinstance(part, int) and part not in node:
                raise SpecErrors([SpecError(f"{format_path(where) or 'the spec'} is a mapping, not a list", file=f"--set {text}")])
        else:
            raise SpecErrors([SpecError(f"{format_path(where)} is a single value; it has no '{part}'", file=f"--set {text}")])
        if last and value is None and isinstance(node, dict):
            if part not in node:  # as a null in a layered file: removing nothing is a mistake
                raise SpecErrors([SpecError(f"null removes nothing: no key '{part}' in "
                                            f"{format_path(where) or 'the spec'}", file=f"--set {text}",
                                            hint=did_you_mean(part, [str(k) for k in node]))])
            del node[part]  # null removes a key, as in a layered file
        elif last:
            node[part] = value
        else:
            if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
    written = tuple(parts)
    for table in (spec.key_marks, spec.value_marks, spec.overrides):  # what was below is gone
        for path in [p for p in table if p[:len(written)] == written and len(p) > len(written)]:
            del table[path]
    spec.overrides[written] = text


def _child_schema(schema, key, where, text):
    """The schema of `key` inside `schema`, or an error when the schema forbids that key."""
    if schema is None:
        return None
    schema = deref(schema)
    if isinstance(key, int):
        return schema.get("items")
    branches = schema.get("anyOf", [schema])
    known = []
    for branch in map(deref, branches):
        props = branch.get("properties", {})
        if key in props:
            return props[key]
        extra = branch.get("additionalProperties")
        if isinstance(extra, dict):
            return extra
        types = branch.get("type", [])
        if extra is None and "object" in ([types] if isinstance(types, str) else types):
            return None  # a free-form mapping, such as a layer's arguments: Keras checks it
        known += list(props)
    if not known:
        return None
    hint = did_you_mean(key, known)
    raise SpecErrors([SpecError(f"unknown key '{key}' in {format_path(where) or 'the spec'}", file=f"--set {text}", hint=hint)])
