"""`--format json`: one JSON document on stdout for check, plan and render, for CI jobs and dashboards.

The document holds what the text output says (findings, connections, changes, where the file went),
never a value: the same names and messages as the stderr lines, which are value-free by design.
Its shape is documented in docs/json-output.md; `format` changes only when a key changes meaning.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from bruin_materialize import __version__
from bruin_materialize.plan import Change
from bruin_materialize.validate import Outcome, Problem

FORMAT = 1

# A stable code per kind of finding, for machines to match on instead of the wording. Matched on the
# message validate.py writes; a message no pattern knows is "other" (a test covers every kind).
_CODES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((code, re.compile(pattern)) for code, pattern in (
    ("secret-deleted", r"^its current version is deleted or destroyed"),
    ("secret-not-object", r"^the secret must be a JSON object"),
    ("secret-extra-keys", r"^top-level keys other than type/details"),
    ("name-replaced", r"^differs from the secret's name"),
    ("type-unknown", r"^unknown connection type "),
    ("type-invalid", r"set it to a bruin connection type"),
    ("details-invalid", r"^(is missing; the connection's fields|is a string, not an object|must be an object)"),
    ("key-too-long", r"characters YAML allows for a key$"),
    ("text-unencodable", r"^holds a lone UTF-16 surrogate"),
    ("env-reference", r"^holds \$\{\.\.\.\} naming an environment variable"),
    ("field-unknown", r"^fields unknown to bruin's schema"),
    ("field-required-missing", r"^fields the schema marks required are missing"),
    ("value-converted", r" converted to \w+$"),
    ("field-type-mismatch", r"^expected \w+, got \w+"),
    ("name-duplicate", r"^given by two secrets"),
))


def code_of(message: str) -> str:
    for code, pattern in _CODES:
        if pattern.search(message):
            return code
    return "other"


class Finding(NamedTuple):
    environment: str
    location: str  # mount/path/name of the secret, or what else the finding is about
    field: str | None
    level: str  # error, warning or note
    code: str
    message: str


class Document:
    """Filled as the run goes; written once at the end, whatever the exit code."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.findings: list[Finding] = []
        self.connections: list[dict[str, str]] = []
        self.changes: list[Change] | None = [] if command == "plan" else None
        self.schema: str | None = None
        self.written: str | None = None

    def add_outcomes(self, outcomes: Sequence[tuple[str, Outcome]]) -> None:
        for environment, outcome in outcomes:
            self.findings.extend(_finding(environment, p) for p in outcome.problems)
            self.connections.extend({"environment": environment, "name": c.name, "type": c.type}
                                    for c in outcome.connections)

    def add(self, environment: str, location: str, field: str | None, level: str, code: str, message: str) -> None:
        self.findings.append(Finding(environment, location, field, level, code, message))

    def to_json(self, exit_code: int, error: str | None = None) -> str:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "tool": {"name": "bruin-materialize", "version": __version__},
            "command": self.command,
            "exit_code": exit_code,
            "ok": exit_code == 0,
            "error": error,
            "schema": self.schema,
            "findings": [f._asdict() for f in self.findings],
            "connections": self.connections,
        }
        if self.changes is not None:
            doc["changes"] = [_change(c) for c in self.changes]
        if self.command == "render":
            doc["written"] = self.written
        return json.dumps(doc, ensure_ascii=True, indent=2)  # ASCII: a lone surrogate in a name cannot break it


def _finding(environment: str, problem: Problem) -> Finding:
    location = problem.location or problem.where
    return Finding(environment, location, problem.field or None, problem.level, code_of(problem.message),
                   problem.message)


def _change(change: Change) -> dict[str, Any]:
    return {"kind": change.kind, "environment": change.environment, "name": change.name, "type": change.type,
            "old_type": change.old_type, "fields": list(change.fields)}
