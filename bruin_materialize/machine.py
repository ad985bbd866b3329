"""`--format json`: one JSON document on stdout for check, plan and render, for CI jobs and dashboards.

The document holds what the text output says (findings, connections, changes, where the file went),
never a value: the same names and messages as the stderr lines, which are value-free by design.
Its shape is documented in docs/json-output.md; `format` changes only when a key changes meaning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from bruin_materialize import __version__
from bruin_materialize.plan import Change
from bruin_materialize.validate import Outcome, Problem

FORMAT = 1

# Every code a finding can carry (validate.py's kinds, then the pipeline's own); documented in
# docs/json-output.md, which a test keeps in step with this list.
CODES = ("secret-deleted", "secret-too-large", "secret-not-object", "secret-extra-keys", "name-replaced",
         "type-unknown", "type-invalid", "details-invalid", "key-too-long", "text-unencodable", "env-reference",
         "field-unknown", "field-required-missing", "value-converted", "field-type-mismatch", "name-duplicate",
         "base-collision", "path-absolutized", "path-collision", "reference-invalid", "reference-field-missing",
         "reference-not-scalar", "reference-dynamic")


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
        self.connections: list[dict[str, str | None]] = []
        self.changes: list[Change] | None = [] if command == "plan" else None
        self.schema: str | None = None
        self.written: str | None = None
        self.leases: list[dict[str, Any]] = []  # render: the leases left to their TTL (leases.py)
        self.references: list[dict[str, Any]] = []  # check: each referenced path, readable, and its engine

    def add_outcomes(self, outcomes: Sequence[tuple[str, Outcome]],
                     sources: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """Each environment's findings and connections; `sources`: where each connection was read from
        (environment -> name -> mount/path)."""
        for environment, outcome in outcomes:
            self.findings.extend(_finding(environment, p) for p in outcome.problems)
            where = (sources or {}).get(environment, {})
            self.connections.extend({"environment": environment, "name": c.name, "type": c.type,
                                     "source": where.get(c.name)} for c in outcome.connections)

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
            doc["leases"] = self.leases
        if self.command == "check":
            doc["references"] = self.references
        return json.dumps(doc, ensure_ascii=True, indent=2)  # ASCII: a lone surrogate in a name cannot break it


def _finding(environment: str, problem: Problem) -> Finding:
    location = problem.location or problem.where
    return Finding(environment, location, problem.field or None, problem.level, problem.code,
                   problem.message)


def _change(change: Change) -> dict[str, Any]:
    return {"kind": change.kind, "environment": change.environment, "name": change.name, "type": change.type,
            "old_type": change.old_type, "fields": list(change.fields), "source": change.source,
            "old_source": change.old_source}
