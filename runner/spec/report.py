"""How `pipe validate` prints errors: text, json or GitHub annotations."""

from __future__ import annotations

import json
import re

from runner.spec.errors import format_path


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _one_line(text: str) -> str:
    """`text` with control characters (a newline in a file name, ...) written as escapes."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group()) or f"\\u{ord(m.group()):04x}", text)


def _text(errors) -> str:
    return "\n".join(_one_line(str(e)) for e in errors)  # one error, one line


def _json(errors) -> str:
    return json.dumps([e.as_dict() for e in errors], indent=2)


def _escape(text: str) -> str:
    # GitHub's workflow-command escaping of a message.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    # A property's value also escapes the characters that separate properties.
    return _escape(text).replace(":", "%3A").replace(",", "%2C")


def _github(errors) -> str:
    lines = []
    for e in errors:
        props = [f"file={_escape_property(str(e.file))}"] if e.file is not None else []
        props += [f"line={e.line}"] if e.line else []
        props += [f"col={e.column}"] if e.column else []
        where = format_path(e.path)
        lines.append(f"::error {','.join(props)}::{_escape((where + ': ' if where else '') + e.full_message + e.via_note)}")
    return "\n".join(lines)


FORMATS = {"text": _text, "json": _json, "github": _github}


def render(errors, fmt: str) -> str:
    """All `errors` in the format named `fmt`."""
    return FORMATS[fmt](errors)
