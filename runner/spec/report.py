"""How `pipe validate` prints errors: text, json or GitHub annotations."""

from __future__ import annotations

import json

from runner.spec.errors import format_path, printable


def _text(errors) -> str:
    return "\n".join(printable(str(e)) for e in errors)  # one error, one line


def _json(errors) -> str:
    return json.dumps([e.as_dict() for e in errors], indent=2)


def _escape(text: str) -> str:
    # Control characters shown as escapes (no ESC reaches the log), then GitHub's
    # workflow-command escaping for properties and messages.
    text = printable(text)
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    # A property's value also escapes the characters that separate properties.
    return _escape(text).replace(":", "%3A").replace(",", "%2C")


def _github(errors) -> str:
    lines = []
    for e in errors:
        from_set = str(e.file).startswith("--set ")  # not a file: the --set text goes in the message
        props = [f"file={_escape_property(str(e.file))}"] if e.file is not None and not from_set else []
        props += [f"line={e.line}"] if e.line else []
        props += [f"col={e.column}"] if e.column else []
        where = ": ".join(([str(e.file)] if from_set else []) + ([format_path(e.path)] if e.path else []))
        head = f"::error {','.join(props)}::" if props else "::error::"
        lines.append(f"{head}{_escape((where + ': ' if where else '') + e.full_message + e.via_note)}")
    return "\n".join(lines)


FORMATS = {"text": _text, "json": _json, "github": _github}


def render(errors, fmt: str) -> str:
    """All `errors` in the format named `fmt`."""
    return FORMATS[fmt](errors)
