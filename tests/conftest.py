"""Shared test fixtures: paths of the repository and of the machine's real data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"
SHARED_DATA = REPO.parent / "shared" / "data"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def write_spec(tmp_path):
    """Write YAML text to a spec file in tmp_path and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
