"""A loaded spec: the whole YAML document, where each value came from, and `load_spec`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from runner.spec.compose import compose
from runner.spec.errors import SpecError, SpecErrors
from runner.spec.overrides import apply_override
from runner.spec.references import resolve_references
from runner.spec.schema import schema_errors
from runner.spec.sections import Sections


@dataclass
class Spec:
    """A loaded, schema-valid spec and where each of its values came from."""

    file: Path
    doc: dict  # the whole YAML document: version, name, data, model, train, ...
    key_marks: dict = field(default_factory=dict)
    value_marks: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)  # path -> the `--set` text that wrote it
    root: Path | None = None  # the folder input paths are relative to, when not the file's own
    files: list = field(default_factory=list)  # the spec files given, layered in order (the last is `file`)
    sources: list = field(default_factory=list)  # every file that went into it: layers and their bases
    source_texts: dict = field(default_factory=dict)  # str(source) -> its text as read
    _sections: object = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def for_input(cls, path) -> "Spec":
        """A stand-in spec for a file given on the command line, so errors reading it name that file."""
        return cls(Path(path), {}, root=Path.cwd())

    @property
    def sections(self) -> Sections:
        """The typed sections (train, outputs, device, data, model), built once on first use.

        Built from the document as it is then: code that changes `doc` in place afterwards
        calls `refresh`.
        """
        if self._sections is None:
            self._sections = Sections.of(self)
        return self._sections

    def as_yaml(self) -> str:
        """The whole document as YAML, in its order: what a run directory's spec.yaml holds."""
        import yaml

        return yaml.safe_dump(self.doc, sort_keys=False, allow_unicode=True)

    def set_value(self, path, value) -> None:
        """Write `value` at `path` of the document (mappings made as needed); the sections follow."""
        *parents, last = tuple(path)
        node = self.doc
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[last] = value
        self.refresh()

    def remove(self, key: str):
        """Remove the top-level `key` from the document and return its value (None when absent)."""
        value = self.doc.pop(key, None)
        self.refresh()
        return value

    def refresh(self) -> None:
        """Build the sections afresh on next use: after `doc` was changed in place."""
        self._sections = None

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
                    line, column, *file = table[prefix]  # (line, column, file) in a composed spec
                    file = file[0] if file else self.file
                    via = self.given if str(file) != str(self.file) or len(self.files) > 1 else None
                    return SpecError(message, file=file, line=line, column=column, path=path, hint=hint, via=via)
        return SpecError(message, file=self.file, path=path, hint=hint)

    @property
    def given(self) -> str | Path:
        """The spec as given to pipe: its file, or its layered files joined by ` + `."""
        return " + ".join(map(str, self.files)) if len(self.files) > 1 else self.file

    def origin(self, path):
        """(file, line) that set the value at `path`, or None (a `--set` or no mark)."""
        path = tuple(path)
        for end in range(len(path), -1, -1):
            if path[:end] in self.overrides:
                return None
            for table in (self.key_marks, self.value_marks):
                if path[:end] in table:
                    line, _, *file = table[path[:end]]
                    return (file[0] if file else self.file), line
        return None

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
    """Read, merge, override, resolve and validate the spec at `path`.

    `path` may be a list of files: layers merged in order, later over earlier (each with
    its `extends` bases), then the `overrides`, then `${}` references.

    Raises:
        SpecErrors: every mistake found, each located in the file that set the value (or in
            its `--set`).
    """
    files = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    composed = compose(files)
    spec = Spec(files[-1], composed.doc, composed.key_marks, composed.value_marks, files=files,
                sources=[Path(p) for p in composed.sources], source_texts=composed.texts,
                root=_sweep_spec_folder(files[-1]))
    set_errors = []  # one mistaken --set does not hide the others, nor the spec's own mistakes
    for text in overrides:
        try:
            apply_override(spec, text)
        except SpecError as e:
            set_errors += getattr(e, "errors", [e])
    try:
        resolve_references(spec)
    except SpecError as e:
        raise _with_spec(SpecErrors([*set_errors, e]), spec) from None
    from runner.spec.rules import checked_rule_errors, section_rule_errors

    errors = schema_errors(spec)
    # Every mistake at once: the rules written to tolerate a malformed spec always run; the
    # others assume a schema-valid one.
    if not errors:
        errors = section_rule_errors(spec) + checked_rule_errors(spec)
    else:
        errors += checked_rule_errors(spec, tolerant=True)  # a rule that trips on a bad shape is skipped
    if errors or set_errors:
        order = {str(f): i for i, f in enumerate(spec.sources)}
        raise _with_spec(SpecErrors(set_errors + sorted(_unique(errors), key=lambda e: (order.get(str(e.file), -1), e.line or 0,
                                                                           e.column or 0, str(e)))), spec)
    return spec


def _with_spec(error: SpecErrors, spec: Spec) -> SpecErrors:
    """The errors of a spec that merged: `validate --resolved` still prints what it merged to."""
    error.spec = spec
    return error


def _unique(errors):
    seen = {}
    for e in errors:
        seen.setdefault(str(e), e)
    return list(seen.values())


def _sweep_spec_folder(file: Path) -> Path | None:
    """The folder a sweep's best.yaml reads relative paths from: that of the spec the sweep
    was started with (sweep.json beside it records it), so `pipe run best.yaml` reads the
    data the trials read."""
    if file.name != "best.yaml":
        return None
    try:
        started_with = json.loads((file.parent / "sweep.json").read_text(encoding="utf-8"))["files"][-1]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return Path(started_with).parent if isinstance(started_with, str) else None

