"""Class labels drawn in plots come from data files: control characters are drawn as escapes
and a missing glyph never reaches the terminal as a library warning (issue 22)."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("matplotlib")

from runner.outputs import plots  # noqa: E402


def test_control_and_bidi_characters_are_drawn_as_escapes():
    assert plots.drawn("A\x1b[31m") == "A\\x1b[31m"
    assert plots.drawn("B\u202eC") == "B\\u202eC"
    assert plots.drawn("$x^2$ Adélie") == "\\$x^2\\$ Adélie"
    assert plots.drawn(3) == "3"


def test_a_confusion_matrix_with_hostile_class_names_warns_nothing(tmp_path, capfd):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning a label causes fails the test
        path = plots.plot_confusion_matrix([[2, 1], [0, 3]], tmp_path / "cm.png",
                                           ["A\x1b[31m\x07", "\u202eB\U0001f600"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
