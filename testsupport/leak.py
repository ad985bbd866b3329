"""The leak guard: secret values that must never appear in a test's output or failure report.

Everything a test writes as a secret is registered here (by the fixtures that write it); a pytest
plugin (tests/conftest.py registers it) fails any test whose captured output, caplog records or
failure report holds one, and redacts it from the report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from typing import Any

import pytest


class LeakGuard:
    """Secret values that must never appear in a test's captured output or failure report.

    Values added with `add` are forgotten at the start and end of every test; `persistent` ones
    (the session's root token) are kept for the whole session.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._persistent: set[str] = set()

    def add(self, value: str, *, persistent: bool = False) -> None:
        if value:  # an empty string would "leak" everywhere
            (self._persistent if persistent else self._values).add(value)

    def clear(self) -> None:
        self._values.clear()

    def find_in(self, text: str) -> bool:
        return any(form in text for form in self._forms())

    def redact(self, text: str) -> str:
        for form in sorted(self._forms(), key=len, reverse=True):
            text = text.replace(form, "<redacted secret>")
        return text

    def _forms(self) -> set[str]:
        """Each value as printed raw, inside a JSON string and inside a Python repr."""
        forms: set[str] = set()
        for value in self._values | self._persistent:
            forms.update((value, json.dumps(value)[1:-1], repr(value)[1:-1]))
        return {form for form in forms if form}


LEAK_GUARD = LeakGuard()


@pytest.fixture
def leak_guard() -> LeakGuard:
    return LEAK_GUARD


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    # Forget the previous test's values before this one, and this one's once all its reports are
    # made (teardown included).
    LEAK_GUARD.clear()
    try:
        return (yield)
    finally:
        LEAK_GUARD.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _apply_leak_guard(item, report)
    return report


def _apply_leak_guard(item: pytest.Item, report: pytest.TestReport) -> None:
    """Fail a report whose output holds a registered value; redact the value everywhere in it."""
    leaked: list[str] = []
    sections = []
    for title, content in report.sections:
        if LEAK_GUARD.find_in(content):
            # A report carries the sections of earlier phases too: blame only this phase's, but
            # redact all of them, since any failed report prints every section.
            if title.endswith(f" {report.when}"):
                leaked.append(title)
            content = LEAK_GUARD.redact(content)
        sections.append((title, content))
    report.sections = sections
    if _caplog_leaks(item, report.when):
        leaked.append(f"caplog records ({report.when})")
    longrepr = report.longreprtext
    if LEAK_GUARD.find_in(longrepr):
        leaked.append("the failure report")
    if leaked:
        _turn_into_leak_failure(report, leaked, LEAK_GUARD.redact(longrepr))


def _caplog_leaks(item: pytest.Item, when: str) -> bool:
    caplog = getattr(item, "funcargs", {}).get("caplog")
    if not isinstance(caplog, pytest.LogCaptureFixture):
        return False  # records without caplog reach the "Captured log" section, scanned above
    try:
        records = caplog.get_records(when)  # type: ignore[arg-type]
    except KeyError:  # the logging plugin drops the records once the teardown is over
        return False
    formatter = logging.Formatter()
    return any(LEAK_GUARD.find_in(formatter.format(record)) for record in records)


def _turn_into_leak_failure(report: pytest.TestReport, leaked: list[str], redacted: str) -> None:
    message = (
        f"LEAK GUARD: a registered secret value appeared in: {', '.join(leaked)}. "
        "The value is not shown; the output below is redacted."
    )
    report.outcome = "failed"
    report.longrepr = f"{message}\n\n{redacted}" if redacted else message
    if hasattr(report, "wasxfail"):  # an xfail/skip marker must not hide a leak
        del report.wasxfail


# Keys whose values are not secret and may appear in output (connection names, hosts, ...).
_NOT_SECRET_KEYS = frozenset(
    {
        "type", "host", "name", "database", "schema", "username", "region", "account",
        "warehouse", "role", "project_id", "path", "ssl_mode",
    }
)
_MIN_SECRET_LEN = 8  # shorter values ("5432", "true") would match output by accident


def register_secret_values(node: Any, key: str | None = None) -> None:
    """Register every string in `node` that looks like a secret (not a host, name, ...)."""
    if isinstance(node, dict):
        for child_key, child in node.items():
            register_secret_values(child, str(child_key))
    elif isinstance(node, list):
        for child in node:
            register_secret_values(child, key)  # list items count as values of the list's key
    elif isinstance(node, str) and len(node) >= _MIN_SECRET_LEN and key not in _NOT_SECRET_KEYS:
        LEAK_GUARD.add(node)
