"""Connections to the text of a bruin config file: a jinja2 template, each value through `to_yaml`.

Emitting with ruamel.yaml costs ~0.9 s per 1,000 connections; JSON literals cost ~15 ms and read
back the same. Tests round-trip every value class through a YAML 1.2 parser (tests/test_render.py);
`check` re-parses the real output with ruamel.yaml.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from bruin_materialize.validate import Connection
from bruin_materialize.yamltext import to_yaml

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
TEMPLATE = "bruin.yml.j2"

def render(connections: list[Connection], environment: str, source: str) -> str:
    import jinja2  # imported here: `--help` and usage errors should not pay for it

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["yaml"] = to_yaml
    by_type = [(t, [c.fields for c in group]) for t, group in itertools.groupby(connections, key=lambda c: c.type)]
    # The source is a comment: keep it on one line whatever the mount or path holds.
    text: str = env.get_template(TEMPLATE).render(environment=environment, by_type=by_type,
                                             source=to_yaml(source))
    return text if text.endswith("\n") else text + "\n"


def expected_document(connections: list[Connection], environment: str) -> dict[str, Any]:
    """The data the rendered text must parse back to (for `check` and the tests)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for conn in connections:
        by_type.setdefault(conn.type, []).append(conn.fields)
    return {"default_environment": environment, "environments": {environment: {"connections": by_type}}}
