"""Reading YAML safely: bad files give one located line, never a traceback or executed code."""

from __future__ import annotations

import pytest

from runner.spec import load_spec
from runner.spec.errors import SpecError
from runner.spec.yamlfile import parse
from tests.spec.test_spec import MINIMAL


def only_error(path) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert len(info.value.errors) == 1
    return str(info.value.errors[0])


def test_python_tag_is_rejected_and_never_executed(write_spec, tmp_path):
    marker = tmp_path / "executed"
    path = write_spec(MINIMAL.replace("name: tiny", f'name: !!python/object/apply:os.system ["touch {marker}"]'))
    assert only_error(path) == f"{path}:2:7: tag '!!python/object/apply:os.system' is not allowed; a spec holds plain data only"
    assert not marker.exists()


def test_custom_tags_are_rejected(write_spec):
    path = write_spec(MINIMAL.replace("epochs: 2", "epochs: !fancy 2"))
    assert only_error(path) == f"{path}:17:11: tag '!fancy' is not allowed; a spec holds plain data only"


def test_duplicate_keys_name_both_lines(write_spec):
    path = write_spec(MINIMAL.replace("  loss: mse", "  loss: mse\n  epochs: 3"))
    assert only_error(path) == f"{path}:19:3: duplicate key 'epochs' (first defined on line 17)"


@pytest.mark.parametrize("text,value", [("1e-3", 0.001), ("1.5E+2", 150.0), (".5", 0.5), ("3", 3), ("1_000", 1000)])
def test_numbers_read_as_yaml_1_2(write_spec, text, value):
    spec = load_spec(write_spec(MINIMAL.replace("learning_rate: 0.05", f"learning_rate: {text}")))
    assert spec.doc["train"]["optimizer"]["SGD"]["learning_rate"] == value


def test_on_and_yes_stay_strings_so_the_schema_catches_them(write_spec):
    path = write_spec(MINIMAL.replace("  epochs: 2", "  epochs: 2\n  deterministic: yes"))
    assert only_error(path) == f"{path}:18:18: train.deterministic: expected true or false, got string 'yes'"


def test_syntax_error(write_spec):
    path = write_spec(MINIMAL.replace("units: 1}", "units: 1"))
    assert only_error(path) == f"{path}:16:6: YAML syntax error: expected ',' or '}}', but got ':'"


def test_tab_indentation(write_spec):
    path = write_spec(MINIMAL.replace("  epochs: 2", "\tepochs: 2"))
    assert only_error(path) == f"{path}:17:1: YAML syntax error: found character '\\t' that cannot start any token"


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.replace("tiny", "caf\xe9").encode("latin-1"))
    assert only_error(path) == f"{path}:2:10: not UTF-8 text (byte 0xe9)"


def test_nul_byte(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_bytes(MINIMAL.encode().replace(b"tiny", b"ti\0ny"))
    assert only_error(path) == f"{path}:2:9: NUL byte in file; a spec is a text file"


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(write_spec, text):
    path = write_spec(text)
    assert only_error(path) == f"{path}:1:1: file is empty; a spec is a YAML mapping"


@pytest.mark.parametrize("text,kind", [("- a\n- b\n", "a list"), ("just words\n", "a single value"), ("42\n", "a single value")])
def test_top_level_must_be_a_mapping(write_spec, text, kind):
    path = write_spec(text)
    assert only_error(path) == f"{path}:1:1: the top level must be a mapping of sections, not {kind}"


def test_deep_nesting_is_bounded(write_spec):
    path = write_spec("version: 1\nname: " + "[" * 100 + "]" * 100 + "\n")
    assert only_error(path) == f"{path}:2:71: YAML nesting is deeper than 64 levels"


def test_very_deep_nesting_does_not_crash(write_spec):
    path = write_spec("a: " + "[" * 20000 + "]" * 20000 + "\n")
    assert only_error(path) == f"{path}:1:1: YAML nesting is deeper than 64 levels"


def test_alias_bomb_is_refused(write_spec):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    path = write_spec("\n".join(lines) + "\n")
    assert only_error(path).startswith(f"{path}:")
    assert "document expands to more than 100000 values (aliases used as a bomb?)" in only_error(path)


def test_huge_file_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "w") as f:
        f.write(MINIMAL)
        f.write("# " + "x" * 30_000_000 + "\n")
    assert only_error(path) == f"{path}: file is larger than 1 MB; a spec is a small YAML file"


def test_anchors_and_merge_keys_are_plain_data(write_spec):
    text = MINIMAL.replace("    source:\n", "    source: &src\n").replace(
        "model:", "  test:\n    source: *src\n    stages:\n      - batch: &b {batch_size: 4}\n      - <<: *b\nmodel:")
    spec = load_spec(write_spec(text.replace("      - <<: *b\n", "")))
    assert spec.doc["data"]["test"]["source"] == spec.doc["data"]["train"]["source"]
    path = write_spec(text.replace("      - <<: *b", "      - batch: {<<: *b, drop_remainder: true}"))
    assert load_spec(path).doc["data"]["test"]["stages"][1] == {"batch": {"batch_size": 4, "drop_remainder": True}}


@pytest.mark.parametrize("text,value", [("010", 10), ("007", 7), ("0o17", 15), ("0x1F", 31), ("-5", -5),
                                        ("1_0", 10), ("1:30", "1:30"), ("0b11", "0b11"), ("0x", "0x")])
def test_integers_follow_yaml_1_2(text, value):
    data = parse(f"a: {text}\n").data
    assert data["a"] == value and type(data["a"]) is type(value)


def test_a_sexagesimal_is_a_string_the_schema_catches(write_spec):
    path = write_spec(MINIMAL.replace("epochs: 2", "epochs: 1:30"))
    assert only_error(path) == f"{path}:17:11: train.epochs: expected an integer, got string '1:30'"


def test_a_merge_bomb_is_refused_quickly_and_located(write_spec):
    lines = ["a: &a {a0: 1, a1: 1, a2: 1, a3: 1, a4: 1, a5: 1, a6: 1, a7: 1, a8: 1, a9: 1}"]
    for prev, name in zip("abcdefg", "bcdefgh"):
        lines.append(f"{name}: &{name} {{<<: [" + ", ".join([f"*{prev}"] * 10) + "]}")
    path = write_spec("\n".join(lines) + "\n")
    assert len(path.read_bytes()) < 700
    assert only_error(path) == f"{path}:1:36: document expands to more than 100000 values (aliases used as a bomb?)"


def test_recursive_merges_and_aliases_are_located(write_spec):
    path = write_spec("a: &a\n  b: 1\n  <<: *a\n")
    assert only_error(path) == f"{path}:3:3: recursive merge: a mapping merges itself"
    path = write_spec("a: &a [1, [2, *a]]\n")
    assert only_error(path) == f"{path}:1:4: recursive alias: a value contains itself"


@pytest.mark.parametrize("text,code,column", [('"ti\\x07ny"', "0007", 7), ("ti\x1bny", "001B", 9),
                                              ("ti\u202eny", "202E", 9), ("ti\x85ny", "0085", 9)])
def test_control_characters_are_located(write_spec, text, code, column):
    path = write_spec(MINIMAL.replace("name: tiny", f"name: {text}"))
    where = "a value" if text.startswith('"') else "file"
    assert only_error(path) == f"{path}:2:{column}: control character U+{code} in {where}; a spec is plain text"
