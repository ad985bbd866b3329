"""Connections to the text of a bruin config file: a jinja2 template, each value through `to_yaml`.

Emitting with ruamel.yaml costs ~0.9 s per 1,000 connections; JSON literals cost ~15 ms and read
back the same. Tests round-trip every value class through a YAML 1.2 parser (tests/test_render.py);
`check` re-parses the real output with ruamel.yaml. Merging into a base file is merge.py's job.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bruin_materialize import __version__
from bruin_materialize.validate import Connection
from bruin_materialize.yamltext import to_yaml

if TYPE_CHECKING:
    import jinja2

# A link to the top-level templates/ in a checkout, the files themselves in an installed wheel.
TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "bruin.yml.j2"

# One environment's connections, as validate() returns them (sorted by type, then name).
Environments = Sequence[tuple[str, list[Connection]]]


def header(source: str, schema: str = "") -> str:
    """The comment lines every rendered file starts with: this tool's version, where the connections came
    from and which connection schema they were checked against (an init container's bruin-materialize
    image carries its own bruin, which may not be the one that loads the file). Each is quoted as one
    line, whatever the mount, path or file name holds, so it cannot end the comment."""
    lines = [f"# bruin config rendered by bruin-materialize {__version__} from {to_yaml(source)}."]
    if schema:
        lines.append(f"# Checked against {to_yaml(schema)}.")
    lines.append("# It holds credentials: ephemeral, never edit or commit it.")
    return "\n".join(lines)


# The last line of every rendered file: where each connection was read from, so that `plan` can tell
# a connection that moved to another path. JSON, ASCII only: no name can end the comment early.
SOURCES_PREFIX = "# bruin-materialize sources: "

Sources = Mapping[str, Mapping[str, str]]  # environment -> connection name -> the mount/path it came from


def sources_comment(sources: Sources) -> str:
    """One comment line: {environment: {mount/path: [connection, ...]}}, paths and names sorted."""
    grouped: dict[str, dict[str, list[str]]] = {}
    for environment, names in sources.items():
        by_path = grouped.setdefault(environment, {})
        for name, source in sorted(names.items(), key=lambda item: (item[1], item[0])):
            by_path.setdefault(source, []).append(name)
    return SOURCES_PREFIX + json.dumps(grouped, ensure_ascii=True, separators=(",", ":")) + "\n"


def read_sources(text: str) -> dict[str, dict[str, str]] | None:
    """What sources_comment wrote in a file, as environment -> name -> source; None when the file has no
    such line (not rendered by this tool, or by a version before it). ValueError: the line is damaged."""
    lines = [line for line in text.splitlines() if line.startswith(SOURCES_PREFIX)]
    if not lines:
        return None
    try:
        grouped = json.loads(lines[-1][len(SOURCES_PREFIX):])  # a JSONDecodeError is a ValueError
    except RecursionError:  # lists nested thousands deep
        raise ValueError("nested too deep") from None
    if not isinstance(grouped, dict):
        raise ValueError("not an object")
    found: dict[str, dict[str, str]] = {}
    for environment, by_path in grouped.items():
        if not isinstance(by_path, dict):
            raise ValueError("not an object")
        for source, names in by_path.items():
            if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
                raise ValueError("not a list of names")
            _check_text(environment, source, *names)
            found.setdefault(environment, {}).update(dict.fromkeys(names, source))
    return found


def _check_text(*texts: str) -> None:
    """JSON may escape a lone surrogate (`\\ud800`), which no render writes and no UTF-8 stream can
    carry: printed by plan it would end the run, so the line is damaged."""
    for text in texts:
        text.encode("utf-8")  # a UnicodeEncodeError is a ValueError


def render_environments(environments: Environments, default_environment: str, source: str,
                        schema: str = "") -> str:
    # Connections come sorted by type, so by_type keeps the file's order.
    grouped = [(name, list(by_type(connections).items())) for name, connections in environments]
    text: str = template().render(header=header(source, schema), default_environment=default_environment,
                                  environments=grouped)
    return text if text.endswith("\n") else text + "\n"


@functools.cache
def template() -> jinja2.Template:
    """The compiled template, loaded once. Not while the secrets are read: pure-Python work on the main
    thread then holds the GIL for 5 ms at a time, and the reading threads wait (docs/performance.md)."""
    import jinja2  # imported here: `--help`, usage errors and `import` should not pay for it

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["yaml"] = to_yaml
    return env.get_template(TEMPLATE)


def expected_documents(environments: Environments, default_environment: str) -> dict[str, Any]:
    return {"default_environment": default_environment,
            "environments": {name: {"connections": by_type(connections)} for name, connections in environments}}


def by_type(connections: list[Connection]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for conn in connections:
        grouped.setdefault(conn.type, []).append(conn.fields)
    return grouped
