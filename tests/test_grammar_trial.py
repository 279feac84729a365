"""What an outside trial of the tutorial grammar found: each mistake is a located message."""

from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from runner.cli import app


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def reviews_csv(tmp_path):
    rows = ["review,label"] + [f"{'good fine great' if i % 2 else 'bad awful poor'} {i},{i % 2}" for i in range(24)]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.slow
def test_plan_of_text_into_a_sequential_without_input_shape_is_located_not_a_traceback(tmp_path):
    reviews_csv(tmp_path)
    spec = write(tmp_path, "spec.yaml", """\
        version: 1
        name: textnum
        data:
          train:
            source:
              csv: {path: reviews.csv, header: true, label: label, features: [review], text: [review]}
            stages:
              - batch: {batch_size: 8}
        model:
          sequential:
            layers:
              - Dense: {units: 1}
        train:
          epochs: 1
          loss: {BinaryCrossentropy: {from_logits: true}}
          optimizer: adam
        """)
    result = CliRunner().invoke(app, ["plan", str(spec)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "AttributeError" not in result.output
    assert (f"{spec}:10:3: model.sequential: data.train does not fit the model's input: it gives (8,) string: "
            "Input 0 with name 'None' of layer 'dense' is incompatible with the layer: expected min_ndim=2, "
            "found ndim=1") in result.output
