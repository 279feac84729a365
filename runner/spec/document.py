"""A loaded spec: the whole YAML document, where each value came from, and `load_spec`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runner.spec import yamlfile
from runner.spec.errors import SpecError, SpecErrors
from runner.spec.overrides import apply_override
from runner.spec.schema import schema_errors


@dataclass
class Spec:
    """A loaded, schema-valid spec and where each of its values came from."""

    file: Path
    doc: dict  # the whole YAML document: version, name, data, model, train, ...
    key_marks: dict = field(default_factory=dict)
    value_marks: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)  # path -> the `--set` text that wrote it
    root: Path | None = None  # the folder input paths are relative to, when not the file's own

    def error(self, path, message: str, hint: str | None = None, *, at_value: bool = False) -> SpecError:
        """A SpecError located at `path` (its key, or its value with `at_value`)."""
        path = tuple(path)
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefix in self.overrides:
                return SpecError(message, file=f"--set {self.overrides[prefix]}", path=path, hint=hint)
            marks = (self.value_marks, self.key_marks) if at_value else (self.key_marks, self.value_marks)
            for table in marks:
                if prefix in table:
                    line, column = table[prefix]
                    return SpecError(message, file=self.file, line=line, column=column, path=path, hint=hint)
        return SpecError(message, file=self.file, path=path, hint=hint)

    def resolve_path(self, value: str) -> Path:
        """A path written in the spec: `~` expanded, relative to the spec file's folder.

        A run directory's copy of a spec (spec.yaml) sets `root` to the original's folder,
        so its paths mean what they meant when the run started.
        """
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.root or self.file.resolve().parent) / path

    def get(self, *path, default=None):
        """The value at `path` in the spec, or `default` when any part is absent."""
        node = self.doc
        for key in path:
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node):
                node = node[key]
            else:
                return default
        return default if node is None else node


def load_spec(path, overrides=()) -> Spec:
    """Read, override and validate the spec at `path`.

    Raises:
        SpecErrors: every mistake found, each located in the file (or in its `--set`).
    """
    path = Path(path)
    try:
        doc = yamlfile.parse(yamlfile.read_text(path), file=path)
    except SpecError as e:
        raise SpecErrors([e]) from None
    if not isinstance(doc.data, dict):
        kind = "a list" if isinstance(doc.data, list) else "a single value"
        raise SpecErrors([SpecError(f"the top level must be a mapping of sections, not {kind}", file=path, line=1, column=1)])
    spec = Spec(path, doc.data, doc.key_marks, doc.value_marks)
    for text in overrides:
        apply_override(spec, text)
    from runner.spec.rules import checked_rule_errors, section_rule_errors

    errors = schema_errors(spec)
    # Every mistake at once: the rules written to tolerate a malformed spec always run; the
    # others assume a schema-valid one.
    if not errors:
        errors = section_rule_errors(spec) + checked_rule_errors(spec)
    else:
        try:
            errors += checked_rule_errors(spec)
        except (TypeError, KeyError, AttributeError, ValueError):
            pass  # a shape the schema already reports and a rule did not foresee
    if errors:
        raise SpecErrors(sorted(_unique(errors), key=lambda e: (e.line or 0, e.column or 0, str(e))))
    return spec


def _unique(errors):
    seen = {}
    for e in errors:
        seen.setdefault(str(e), e)
    return list(seen.values())
