"""docs/reliability.md and the fault and transport tests stay in step: every row names a real test, every
test has a row."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from testsupport.paths import REPO_DIR

DOC = REPO_DIR / "docs" / "reliability.md"
SCENARIO_TESTS = ("tests/test_faults.py", "tests/test_transport.py")
# A test reference in a table cell: `tests/test_x.py::test_name`
_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
_SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")


def table_rows(text: str) -> list[list[str]]:
    """The cells of every table body row in a Markdown text (header and separator rows left out)."""
    rows: list[list[str]] = []
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(lines):
        if not line.startswith("|") or _SEPARATOR.match(line):
            continue
        is_header = i + 1 < len(lines) and bool(_SEPARATOR.match(lines[i + 1]))
        if not is_header:
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def collected_test_names(path: Path) -> set[str]:
    """Names of the test functions pytest would collect from `path`: module level or in Test classes."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        bodies = [node]
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            bodies = list(node.body)
        for item in bodies:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test"):
                names.add(item.name)
    return names


def documented() -> list[tuple[str, str, str]]:
    """(row's scenario, file, test name) for each reference in the doc's tables."""
    found = []
    for cells in table_rows(DOC.read_text(encoding="utf-8")):
        for match in _REFERENCE.finditer(cells[-1]):
            found.append((cells[0], match.group(1), match.group(2)))
    return found


def test_every_row_names_a_test() -> None:
    rows = table_rows(DOC.read_text(encoding="utf-8"))
    assert len(rows) >= 10, "the scenario table is missing or was not recognised"
    without = [cells[0] for cells in rows if not _REFERENCE.search(cells[-1])]
    assert without == [], "rows whose last cell names no `tests/FILE.py::test_name`"


def test_every_named_test_exists() -> None:
    missing = []
    for scenario, file, name in documented():
        path = REPO_DIR / file
        if not path.is_file() or name not in collected_test_names(path):
            missing.append(f"{file}::{name} ({scenario})")
    assert missing == [], "docs/reliability.md names tests that do not exist"


@pytest.mark.parametrize("tests", SCENARIO_TESTS)
def test_every_fault_test_has_a_row(tests: str) -> None:
    named = {name for _, file, name in documented() if file == tests}
    undocumented = sorted(collected_test_names(REPO_DIR / tests) - named)
    assert undocumented == [], f"tests in {tests} without a row in docs/reliability.md"


def test_table_parser_reads_rows_not_header() -> None:
    text = "| A | B |\n| --- | :-: |\n| x | `tests/t.py::test_a` |\n| y | z |\n\nnot a table\n"
    assert table_rows(text) == [["x", "`tests/t.py::test_a`"], ["y", "z"]]
