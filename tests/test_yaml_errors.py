"""A file the user names (the base file, plan's --against, import's FILE) that is not valid YAML: one line
that says what is wrong and where, never quoting the document; "a duplicate key" only for one."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from bruin_materialize import merge
from bruin_materialize.errors import ExitCode, MaterializeError
from bruin_materialize.yamltext import load_file

SECRET = "Yaml-err0r-Secret"


@pytest.mark.parametrize(("text", "problem"), [
    (f"a: 1\na: {SECRET}\n", "at line 2: a mapping has the same key twice (a duplicate key)"),
    (f"{{a: 1, a: {SECRET}}}\n", "at line 1: a mapping has the same key twice (a duplicate key)"),
    (f"a: '{SECRET}\n", "at line 2: found unexpected end of stream while scanning a quoted scalar"),
    (f"a: {SECRET}: c\n", "at line 1: mapping values are not allowed"),
    (f"a:\n\t- {SECRET}\n", "at line 2: a tab where YAML allows only spaces (indentation is spaces only)"),
    (f"a: [1, {SECRET}\n", "at line 2: "),
    (f"a: @{SECRET}\n", "at line 1: found character that cannot start any token while scanning for the next token"),
    (f'a: "{SECRET}\\q"\n', "at line 1: found unknown escape character while"),
])
@pytest.mark.parametrize("reader", ["safe", "round-trip"])
def test_yaml_errors_say_what_is_wrong_without_quoting_the_file(tmp_path: Path, text: str, problem: str,
                                                               reader: str, leak_guard: Any) -> None:
    leak_guard.add(SECRET)
    path = tmp_path / "f.yml"
    path.write_text(text)
    with pytest.raises(MaterializeError) as info:
        if reader == "safe":
            load_file(path, "the file to compare with")
        else:
            merge.load_base(path)
    what = "the file to compare with" if reader == "safe" else "the base file"
    message = info.value.message
    assert info.value.exit_code == ExitCode.USAGE
    assert message.startswith(f"{what} {path} is not valid YAML {problem}")
    assert "perhaps" not in message
    assert SECRET[:4] not in message and "@" not in message and "\\q" not in message  # nothing of the document


@pytest.mark.parametrize("reader", ["safe", "round-trip"])
def test_an_alias_without_its_anchor_is_named_without_quoting_it(tmp_path: Path, reader: str, leak_guard: Any) -> None:
    """Found by the bounds walk (yamlnodes) before either reader composes the document."""
    leak_guard.add(SECRET)
    path = tmp_path / "f.yml"
    path.write_text(f"a: *{SECRET}\n")
    with pytest.raises(MaterializeError) as info:
        load_file(path, "the file to compare with") if reader == "safe" else merge.load_base(path)
    what = "the file to compare with" if reader == "safe" else "the base file"
    assert info.value.exit_code == ExitCode.USAGE
    assert info.value.message == (f"{what} {path} at line 1 uses an alias (*NAME) whose anchor (&NAME) is not "
                                  "complete before it")


def test_a_reused_anchor_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], leak_guard: Any) -> None:
    """ruamel warns of a reused anchor by printing the document's lines around it."""
    leak_guard.add(SECRET)
    path = tmp_path / "base.yml"
    path.write_text(f"x: &a {SECRET}\ny: &a 2\nenvironments: {{}}\n")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")  # as a plain run shows them: on stderr
        merge.load_base(path)
    assert [str(w.message) for w in shown] == []
    captured = capsys.readouterr()
    assert SECRET not in captured.err + captured.out
