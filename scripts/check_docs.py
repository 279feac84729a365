"""Check that the documentation cannot lie: its specs validate and its shown output is real.

    python scripts/check_docs.py        # exit 1, listing each problem, when one is found

1. Every ```yaml block in docs/ is a spec that `pipe validate` accepts, or is marked as a
   part of one by the line `<!-- fragment -->` just before it (`<!-- not a spec -->` for
   another tool's YAML: a CI workflow, a Kubernetes job). A block that includes a file
   (`--8<-- "specs/mnist.yaml"`) is that file, validated where it is.
2. Every command of COMMANDS is shown in docs/ as `$ COMMAND` in a ```console block, and the
   output lines shown below it (up to the next `$ ` line; a `...` line stands for lines left
   out) are lines of what the command prints now, in that order. Every `$ pipe` command of a
   kind that needs no TensorFlow (validate, schema, init, --help, --version) shown in docs/
   must be listed here, so none escapes the check. Commands run in this process, from the
   repository's root, through the CLI's own entry (no TensorFlow is imported).
3. Every `runner.module.function` and `runner/path` that docs/ and README.md name exists, and
   so does every package and module of their map of `runner/`.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
FRAGMENT = "<!-- fragment -->"  # a part of a spec: a section, some keys, a file that extends another
NOT_A_SPEC = "<!-- not a spec -->"  # another tool's YAML: a CI workflow, a Kubernetes job

# The shell commands whose output the docs show, each checked against a fresh run. Only
# commands that need no TensorFlow, so the check stays fast.
COMMANDS = [
    "pipe validate specs/mnist.yaml specs/tabular.yaml",
    "pipe validate tests/mistakes/02_layer_argument_typo.yaml tests/mistakes/46_early_stopping_default_monitor_without_validation.yaml",
    "pipe validate --resolved specs/fashion_mnist_convnet.yaml",
    "pipe init",
    "pipe validate specs/tabular.yaml --set train.epochs=0 --set train.optimzer=adam",
]
TF_FREE = re.compile(r"^pipe (validate|schema|init|--help|--version)\b|^pipe \S+ --help\b")

_OPEN = re.compile(r"^(\s*)```(\w*)\s*$")
_INCLUDE = re.compile(r'^--8<--\s+"([^"]+)"\s*$')


def blocks(text: str):
    """(language, first line number, lines, marked as a fragment) of every fenced block."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        opened = _OPEN.match(lines[i])
        if not opened:
            i += 1
            continue
        indent, language, start = opened.group(1), opened.group(2), i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        before = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        yield language, start + 1, body, before in (FRAGMENT, NOT_A_SPEC)
        i += 1


def pages():
    return sorted(DOCS.rglob("*.md"))


def _shown(page: Path) -> Path:
    """A page's path as problems name it: relative to the repository when it is inside it."""
    return page.relative_to(REPO) if page.is_relative_to(REPO) else page


def _pipe(argv: list[str]):
    """(exit code, stdout, stdout and stderr interleaved) of `pipe ARGV`, run in this process."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from typer.testing import CliRunner

    from runner.cli import app

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        result = CliRunner(env={"COLUMNS": "100"}).invoke(app, argv, prog_name="pipe", terminal_width=100)
    finally:
        os.chdir(cwd)
    return result.exit_code, result.stdout, result.output


def _argv(command: str) -> list[str]:
    argv = []
    for word in shlex.split(command)[1:]:
        matches = sorted(glob.glob(word, root_dir=REPO)) if any(c in word for c in "*?[") else []
        argv += matches or [word]
    return argv


def snippet_problems() -> list[str]:
    problems, files = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for page in pages():
            where = _shown(page)
            for language, line, body, fragment in blocks(page.read_text(encoding="utf-8")):
                if language not in ("yaml", "yml") or fragment:
                    continue
                included = _INCLUDE.match(body[0].strip()) if len(body) == 1 else None
                if included:
                    target = (REPO / included.group(1)).resolve()
                    if not target.is_file():
                        problems.append(f"{where}:{line}: includes {included.group(1)}, which does not exist")
                        continue
                    files[str(target)] = f"{where}:{line}"
                    continue
                target = Path(folder) / f"{str(where).replace('/', '_')}-{line}.yaml"
                target.write_text("\n".join(body) + "\n", encoding="utf-8")
                files[str(target)] = f"{where}:{line}"
        if files:
            code, stdout, _ = _pipe(["validate", "--format", "json", *files])
            try:
                errors = json.loads(stdout)
            except json.JSONDecodeError:
                return problems + [f"pipe validate printed no JSON (exit {code}): {stdout[:500]}"]
            found = {}
            for error in errors:
                named = str(error.get("spec") or error["file"])
                found.setdefault(files.get(str(Path(named).resolve()), files.get(named, named)), []).append(error)
            for shown, mistakes in found.items():
                first = mistakes[0]
                more = f" (and {len(mistakes) - 1} more)" if len(mistakes) > 1 else ""
                problems.append(f"{shown}: a yaml block that does not validate: {first['path']}: {first['message']}"
                                f"{more}; mark it {FRAGMENT} if it is a part of a spec, {NOT_A_SPEC} if it is "
                                "another tool's")
    return problems


def shown_commands() -> dict[str, tuple[str, list[str]]]:
    """`$ command` lines of ```console blocks: the command -> (where, output lines shown)."""
    shown = {}
    for page in pages():
        where = _shown(page)
        for language, line, body, _ in blocks(page.read_text(encoding="utf-8")):
            if language != "console":
                continue
            command, output, start = None, [], 0
            for offset, text in enumerate(body + ["$ "]):
                if text.startswith("$ "):
                    if command:
                        shown.setdefault(command, (f"{where}:{line + start}", output))
                    command, output, start = text[2:].strip(), [], offset + 1
                elif command is not None:
                    output.append(text)
    return shown


def command_problems() -> list[str]:
    problems = []
    shown = shown_commands()
    for command in shown:
        if TF_FREE.match(command) and command not in COMMANDS:
            problems.append(f"{shown[command][0]}: `{command}` is shown with its output but not listed in "
                            "scripts/check_docs.py COMMANDS")
    for command in COMMANDS:
        if command not in shown:
            problems.append(f"scripts/check_docs.py: `{command}` is listed but no ```console block in docs/ shows it")
            continue
        where, expected = shown[command]
        _, _, output = _pipe(_argv(command))
        actual = output.rstrip("\n").split("\n")
        position = 0
        for line in expected:
            if line.strip() in ("...", "…") or not line.strip():
                continue
            try:
                position = actual.index(line, position) + 1
            except ValueError:
                problems.append(f"{where}: `{command}` no longer prints {line!r} (it prints: "
                                f"{' | '.join(actual[:8])}{' | ...' if len(actual) > 8 else ''})")
                break
    return problems


_CODE_NAME = re.compile(r"\brunner(?:[./][A-Za-z_][\w]*)+(?:\.(?:py|json|yaml))?/?")


def code_problems() -> list[str]:
    """Every `runner.module.name` and `runner/path` the docs name exists in the code."""
    import ast

    problems = []
    for page in pages() + [REPO / "README.md"]:
        for name in sorted(set(_CODE_NAME.findall(page.read_text(encoding="utf-8")))):
            if "/" in name:
                if not (REPO / name).exists():
                    problems.append(f"{_shown(page)}: names {name}, which does not exist")
                continue
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                module = REPO.joinpath(*parts[:cut])
                source = module / "__init__.py" if module.is_dir() else module.with_suffix(".py")
                if source.is_file():
                    break
            else:
                problems.append(f"{_shown(page)}: names {name}, which does not exist")
                continue
            rest = parts[cut:]
            if rest:
                defined = {node.name for node in ast.parse(source.read_text(encoding="utf-8")).body
                           if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
                if rest[0] not in defined:
                    problems.append(f"{_shown(page)}: names {name}, but {source.relative_to(REPO)} defines no "
                                    f"{rest[0]}")
    return problems


_TREE_ENTRY = re.compile(r"^  (\w+)(/|\.py)\s")


def layout_problems() -> list[str]:
    """The module map of code-layout.md and the README: each package and `x.py` it names exists."""
    problems = []
    for page in (DOCS / "code-layout.md", REPO / "README.md"):
        if not page.exists():
            continue
        for language, line, body, _ in blocks(page.read_text(encoding="utf-8")):
            if not body or body[0].strip() != "runner/":
                continue
            folder = REPO / "runner"
            for offset, text in enumerate(body[1:], start=1):
                entry = _TREE_ENTRY.match(text)
                if entry:
                    folder = REPO / "runner" / entry.group(1) if entry.group(2) == "/" else REPO / "runner"
                    if not (folder if entry.group(2) == "/" else folder / f"{entry.group(1)}.py").exists():
                        problems.append(f"{_shown(page)}:{line + 1 + offset}: runner/{entry.group(1)}{entry.group(2)} "
                                        "does not exist")
                for module in re.findall(r"\b(\w+\.py)\b", text[16:] if entry else text):
                    if not any(folder.rglob(module)):
                        problems.append(f"{_shown(page)}:{line + 1 + offset}: {module} is not in "
                                        f"{folder.relative_to(REPO)}/")
    return problems


def main() -> int:
    problems = snippet_problems() + command_problems() + code_problems() + layout_problems()
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"docs: every yaml block validates or is marked {FRAGMENT}; {len(COMMANDS)} commands print what "
              "the docs show; every runner module and function they name exists")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
