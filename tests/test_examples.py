"""Every example spec in specs/ runs as the README promises (one epoch each, to stay lean)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO, SPECS
from runner.spec import load_spec

pytestmark = pytest.mark.slow

# specs/mnist.yaml downloads MNIST through tfds on first use; its run is tested on tfds's
# mock data in tests/test_run.py.
EXAMPLES = [p for p in sorted(SPECS.glob("*.yaml")) if p.name != "mnist.yaml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_spec_runs(path, tmp_path):
    spec = load_spec(path)
    for split in spec.doc["data"].values():
        idx = (split.get("source") or {}).get("idx") if isinstance(split, dict) else None
        if idx and not spec.resolve_path(idx["images"]).is_file():
            pytest.skip(f"{path.name} reads {idx['images']}, which this machine does not have")
    phases = spec.doc["train"].get("phases") or []  # one epoch per phase
    one_epoch = [f"train.phases.{i}.epochs=1" for i in range(len(phases))] or ["train.epochs=1"]
    result = subprocess.run([sys.executable, "-m", "runner.cli", "run", str(path), "--quiet",
                             *(a for o in one_epoch for a in ("--set", o))],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                            timeout=900)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("run directory: "))
    run_dir = tmp_path / line.split(": ", 1)[1]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["epochs_run"] == max(1, len(phases))
    assert (run_dir / "history.csv").is_file() and (run_dir / "metrics.json").is_file()
