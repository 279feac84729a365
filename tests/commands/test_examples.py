"""Every example spec in specs/ runs as the README promises (one epoch each, to stay lean)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import REPO, SPECS, pipe_in_process
from runner.spec import load_spec

pytestmark = pytest.mark.slow

# specs/mnist.yaml downloads MNIST through tfds on first use; its run is tested on tfds's
# mock data in tests/run/test_run.py.
EXAMPLES = [p for p in sorted(SPECS.glob("*.yaml")) if p.name != "mnist.yaml"]
FORTUNES = Path("/usr/share/games/fortunes")


@pytest.fixture(scope="module")
def fortunes_corpus(tmp_path_factory):
    """The corpus the text specs read (specs/data/fortunes, not in the repository), written
    by scripts/make_fortunes_corpus.py from the Debian package `fortunes`."""
    if not (FORTUNES / "computers").is_file():
        pytest.skip(f"the text examples read a corpus made from {FORTUNES}: apt-get install fortunes")
    script = importlib.util.spec_from_file_location("make_fortunes_corpus",
                                                    REPO / "scripts" / "make_fortunes_corpus.py")
    module = importlib.util.module_from_spec(script)
    script.loader.exec_module(module)
    out = tmp_path_factory.mktemp("fortunes")
    counts = module.write_corpus(out)
    assert set(counts) == {"computers", "politics", "science", "songs-poems"} and min(counts.values()) > 500
    return out


def text_folder_settings(spec, request) -> list[str]:
    """`--set` options pointing each text_folder source at the corpus the test wrote."""
    settings = []
    for split, section in spec.doc["data"].items():
        folder = (section.get("source") or {}).get("text_folder") if isinstance(section, dict) else None
        if folder:
            corpus = request.getfixturevalue("fortunes_corpus")
            settings += ["--set", f"data.{split}.source.text_folder.directory={corpus}"]
    return settings


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_spec_runs(path, tmp_path, request):
    spec = load_spec(path)
    settings = text_folder_settings(spec, request)
    for split in spec.doc["data"].values():
        idx = (split.get("source") or {}).get("idx") if isinstance(split, dict) else None
        if idx and not spec.resolve_path(idx["images"]).is_file():
            pytest.skip(f"{path.name} reads {idx['images']}, which this machine does not have")
    phases = spec.doc["train"].get("phases") or []  # one epoch per phase
    one_epoch = [f"train.phases.{i}.epochs=1" for i in range(len(phases))] or ["train.epochs=1"]
    result = pipe_in_process(["run", path, "--quiet", *(a for o in one_epoch for a in ("--set", o)), *settings],
                             cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("run directory: "))
    run_dir = tmp_path / line.split(": ", 1)[1]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["epochs_run"] == max(1, len(phases))
    assert (run_dir / "history.csv").is_file() and (run_dir / "metrics.json").is_file()
