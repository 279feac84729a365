"""The documentation: generated reference up to date, every schema key in it, snippets that
validate, shown output that is real, the README short, and nothing of the old README lost."""

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference():
    return _script("make_docs_reference")


@pytest.fixture(scope="module")
def check_docs():
    return _script("check_docs")


def _headings(page: Path) -> set[str]:
    """Heading texts of a page, without their `{#anchor}` and outside code blocks."""
    found, fenced = set(), False
    for line in page.read_text(encoding="utf-8").split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(re.sub(r"\s*\{#[^}]*\}$", "", line.lstrip("#").strip()))
    return found


def test_the_reference_pages_are_the_generated_ones(reference):
    for name, text in reference.pages().items():
        page = DOCS / "reference" / name
        assert page.read_text(encoding="utf-8") == text, f"{page} is out of date: run python scripts/make_docs_reference.py"


def _walk(node, path, out):
    """Every property path under `node`, not following $ref (a definition is walked from its root)."""
    if not isinstance(node, dict) or "$ref" in node:
        return
    for name, child in (node.get("properties") or {}).items():
        out.append(f"{path}.{name}" if path else name)
        _walk(child, out[-1], out)
    if isinstance(node.get("items"), dict):
        _walk(node["items"], f"{path}[]", out)
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], f"{path}.<name>", out)
    for key in ("anyOf", "oneOf", "allOf"):
        for option in node.get(key) or []:
            _walk(option, path, out)


def test_every_schema_key_has_an_entry_in_the_reference():
    schema = json.loads((REPO / "schemas" / "pipeline.schema.json").read_text(encoding="utf-8"))
    paths = []
    _walk(schema, "", paths)
    for name, definition in schema["$defs"].items():
        inner = []
        _walk(definition, "", inner)
        paths += [f"{name}:{path}" for path in inner]
    entries = set()
    for page in (DOCS / "reference").glob("*.md"):
        entries |= {heading.strip("`") for heading in _headings(page)}
    assert len(paths) > 300
    missing = sorted(set(paths) - entries)
    assert not missing, f"schema keys without a reference entry: {missing[:20]}"


def test_a_reference_entry_gives_type_default_allowed_values_description_and_example():
    text = (DOCS / "reference" / "spec.md").read_text(encoding="utf-8")
    entry = text[text.index("### `train.loop`"):]
    entry = entry[:entry.index("\n### ", 5)]
    assert "**type** string" in entry and "**allowed** `fit`, `custom`" in entry
    assert "**default** `fit`" in entry and "**example** `train: {loop: fit}`" in entry
    assert "run directory path (&lt;outputs.dir&gt;/&lt;name&gt;/&lt;timestamp&gt;)" in text  # not HTML tags


def test_the_commands_reference_holds_every_commands_help():
    text = (DOCS / "reference" / "commands.md").read_text(encoding="utf-8")
    for command in ("validate", "plan", "run", "evaluate", "predict", "export", "runs", "compare", "log", "sweep",
                    "init", "schema", "doctor"):
        assert f"## `pipe {command}`" in text and f"Usage: pipe {command} [OPTIONS]" in text


def test_every_yaml_block_validates_or_is_marked_and_every_shown_output_is_real(check_docs):
    assert check_docs.snippet_problems() == []
    assert check_docs.command_problems() == []
    assert check_docs.code_problems() == []
    assert check_docs.layout_problems() == []


def test_the_check_finds_a_snippet_that_does_not_validate_and_output_that_changed(check_docs, tmp_path, monkeypatch):
    (tmp_path / "page.md").write_text(
        "A spec:\n\n```yaml\nversion: 1\nname: x\n```\n\n<!-- fragment -->\n```yaml\ntrain: {epochs: 3}\n```\n\n"
        "```console\n$ pipe init\nregression            a Keras regression model trained by hand\n```\n",
        encoding="utf-8")
    monkeypatch.setattr(check_docs, "DOCS", tmp_path)
    problems = check_docs.snippet_problems()
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path / 'page.md'}:3: a yaml block that does not validate")
    monkeypatch.setattr(check_docs, "COMMANDS", ["pipe init"])
    [problem] = check_docs.command_problems()
    assert "`pipe init` no longer prints 'regression            a Keras regression model trained by hand'" in problem
    (tmp_path / "page.md").write_text("`runner.outputs.status.read_state(run_dir)`, `runner/spec/rulez.py`\n")
    problems = [p for p in check_docs.code_problems() if p.startswith(str(tmp_path))]
    assert problems == [f"{tmp_path / 'page.md'}: names runner.outputs.status.read_state, but "
                        "runner/outputs/status.py defines no read_state",
                        f"{tmp_path / 'page.md'}: names runner/spec/rulez.py, which does not exist"]
    (tmp_path / "code-layout.md").write_text("```\nrunner/\n  sweeps/      the search (search.py)\n  run/  "
                                             "        pipeline.py, plannin.py\n```\n")
    assert check_docs.layout_problems() == [
        f"{tmp_path / 'code-layout.md'}:3: runner/sweeps/ does not exist",
        f"{tmp_path / 'code-layout.md'}:3: search.py is not in runner/sweeps/",
        f"{tmp_path / 'code-layout.md'}:4: plannin.py is not in runner/run/"]


# The old README's sections (## and ###), each now a heading of a docs page.
README_SECTIONS = {
    "Two commands": "getting-started.md",
    "A spec, walked through": "getting-started.md",
    "Sections": "getting-started.md",
    "Specs made of several files": "guides/composition.md",
    "Data": "guides/data.md",
    "Several inputs and outputs": "guides/data.md",
    "Preprocessing layers adapted on the train split": "guides/data.md",
    "Tabular CSV": "guides/data.md",
    "Text": "guides/data.md",
    "Time series: windows": "guides/data.md",
    "Values from the data: balanced class weights, a prior bias": "guides/data.md",
    "Images": "guides/data.md",
    "MNIST through tfds, and offline": "guides/data.md",
    "Fashion-MNIST": "guides/data.md",
    "Warm starts and phases": "guides/training.md",
    "The fused engine": "guides/training.md",
    "The run directory": "getting-started.md",
    "When a run stops": "safety.md",
    "Resuming": "safety.md",
    "Full disks, read-only and missing folders": "safety.md",
    "After the run: evaluate, predict, runs, compare": "guides/after-the-run.md",
    "Deploying a run": "guides/after-the-run.md",
    "Tracking with MLflow": "guides/after-the-run.md",
    "Sweeps": "guides/sweeps.md",
    "The command line": "guides/command-line.md",
    "Exit codes": "troubleshooting.md",
    "Tested versions": "troubleshooting.md",
    "When something is off: `pipe doctor`": "troubleshooting.md",
    "What validate and plan check": "guides/validating.md",
    "Speed": "performance.md",
    "Devices and distribution": "guides/devices.md",
    "Installing the GPU build": "guides/devices.md",
    "One GPU": "guides/devices.md",
    "Several GPUs on one machine": "guides/devices.md",
    "Several machines": "guides/devices.md",
    "`fit` and multi-worker training": "guides/devices.md",
    "Strategies at a glance": "guides/devices.md",
    "How the code is laid out": "code-layout.md",
    "Safety": "safety.md",
    "Using the schema in an editor and in CI": "guides/validating.md",
    "The CI story, end to end": "guides/validating.md",
}


def test_every_section_of_the_old_readme_is_a_docs_page_heading():
    missing = [f"{heading} -> {page}" for heading, page in README_SECTIONS.items() if heading not in _headings(DOCS / page)]
    assert not missing


def _nav_pages(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _nav_pages(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _nav_pages(value)


def test_every_example_spec_has_a_cookbook_page_that_includes_it_and_every_page_is_in_the_nav():
    nav = set(_nav_pages(yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]))
    for spec in sorted((REPO / "specs").glob("*.yaml")):
        page = DOCS / "cookbook" / f"{spec.stem}.md"
        assert page.is_file(), f"{spec.name} has no cookbook page"
        assert f'--8<-- "specs/{spec.name}"' in page.read_text(encoding="utf-8")
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages == nav, (sorted(pages - nav), sorted(nav - pages))


def test_the_readme_is_short_and_holds_the_two_commands_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.split("\n")) <= 250
    assert "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/pipe run specs/linear_regression.yaml" in readme
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").split("\n")
    [test_command] = [line for line in ci if line.startswith(".venv/bin/pip install -e '.[test]'")]
    assert test_command in readme
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / link).is_file(), link


def test_every_schema_key_has_a_description_editors_show():
    schema = json.loads((REPO / "schemas" / "pipeline.schema.json").read_text(encoding="utf-8"))
    bare = []

    def walk(node, path):
        if not isinstance(node, dict):
            return
        for name, child in (node.get("properties") or {}).items():
            if not (isinstance(child, dict) and str(child.get("description", "")).strip()):
                bare.append(f"{path}.{name}")
            walk(child, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            walk(node.get(key), path)
        for key in ("anyOf", "oneOf", "allOf"):
            for option in node.get(key) or []:
                walk(option, path)

    walk(schema, "")
    for name, definition in schema["$defs"].items():
        if not definition.get("description"):
            bare.append(f"$defs.{name}")
        walk(definition, f"$defs.{name}")
    assert not bare


def test_every_key_of_the_reference_shows_a_real_example_the_schema_accepts(reference):
    """An example is a value a reader can copy: never a placeholder, always valid where it goes."""
    import jsonschema

    schema = reference.load_schema()
    nodes = [*reference.fields(schema, "")]
    nodes += [(f"{name}:{path}", node) for name, d in schema["$defs"].items() for path, node in reference.fields(d, "")]
    for path, node in nodes:
        value = reference.example_value(node, schema)
        assert value != "<text>" and value != ["<text>"], f"{path}: no example in the schema"
        for example in node.get("examples", []):
            jsonschema.validate(example, {**node, "$defs": schema["$defs"]})
