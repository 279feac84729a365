"""`pipe validate --resolved`: the merged spec as YAML, each line saying which file set it."""

from __future__ import annotations

import json

import yaml


def resolved_text(spec) -> str:
    """The spec's merged, resolved document as block YAML with `# file:line` comments.

    The text reads back (with any YAML loader) as `spec.doc`; a value from `--set` says so,
    a value a `${}` reference copied names the line of the reference.
    """
    lines = []
    _mapping(spec, spec.doc, (), 0, lines, first_prefix=None)
    return "\n".join(lines) + "\n"


def strict_json(value):
    """`value` for strict JSON: the floats JSON has no word for as YAML writes them (".inf",
    "-.inf", ".nan"), strings, so `--format json` output parses anywhere."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return ".nan" if value != value else ".inf" if value > 0 else "-.inf"
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def _scalar(value) -> str:
    if isinstance(value, str) and any(c in value for c in "\n\r\t"):
        return json.dumps(value, ensure_ascii=False)  # one line: a JSON string is a YAML one
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6).strip()
    return text.removesuffix("...").strip()


def _where(spec, path) -> str:
    for end in range(len(path), -1, -1):
        if path[:end] in spec.overrides:
            return _comment(f"--set {spec.overrides[path[:end]]}")
    origin = spec.origin(path)
    return _comment(f"{origin[0]}:{origin[1]}") if origin else ""


def _comment(text: str) -> str:
    """`  # text` on one line, whatever the text holds."""
    return "  # " + text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _is_leaf(value) -> bool:
    return not isinstance(value, (dict, list)) or not value


def _mapping(spec, node, path, indent, lines, first_prefix):
    pad = " " * indent
    for i, (key, value) in enumerate(node.items()):
        prefix = first_prefix if i == 0 and first_prefix is not None else pad
        child = path + (key,)
        if _is_leaf(value):
            lines.append(f"{prefix}{_scalar(key)}: {_scalar(value)}{_where(spec, child)}")
        else:
            lines.append(f"{prefix}{_scalar(key)}:{_where(spec, child)}")
            _node(spec, value, child, indent + 2, lines)


def _node(spec, value, path, indent, lines):
    if isinstance(value, dict):
        _mapping(spec, value, path, indent, lines, first_prefix=None)
        return
    pad = " " * indent
    for i, item in enumerate(value):
        child = path + (i,)
        if _is_leaf(item):
            lines.append(f"{pad}- {_scalar(item)}{_where(spec, child)}")
        elif isinstance(item, dict):
            _mapping(spec, item, child, indent + 2, lines, first_prefix=f"{pad}- ")
        else:
            lines.append(f"{pad}-{_where(spec, child)}")
            _node(spec, item, child, indent + 2, lines)
