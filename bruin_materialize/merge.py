"""Merging the connections read from Vault into a base bruin config (the project's own .bruin.yml).

ruamel.yaml round-trip keeps what the base holds besides them: its other environments, its own
connections (a duckdb file, a csv...), `schema_prefix`, `config`, the quoting of its values and
its comments. Vault strings are written double-quoted, escaped, never folded (the width is
unbounded), so every value reads back exactly (tests/test_environments.py round-trips them).
The base file is only ever read. ruamel.yaml is imported here only: the template path never
pays for it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from bruin_materialize.errors import usage_error
from bruin_materialize.render import Environments
from bruin_materialize.validate import Connection
from bruin_materialize.yamltext import load_file, show

# Keys written plain; any other key is double-quoted, like the values (`yes:`, `1e3:`, `a: b:`).
_PLAIN_KEY = re.compile(r"[a-z_][a-z0-9_]*")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
_UNBOUNDED = 2**31 - 1


class Base(NamedTuple):
    path: Path
    doc: Any  # ruamel.yaml CommentedMap, changed in place by merge()
    environments: tuple[str, ...]
    default_environment: str | None


class Collision(NamedTuple):
    environment: str
    name: str
    vault_type: str
    base_type: str


class Merged(NamedTuple):
    doc: Any
    collisions: list[Collision]
    written: list[tuple[str, Connection]]  # the Vault connections in the file: (environment, connection)


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip
    yaml.preserve_quotes = True  # the base's values are kept as they are written
    yaml.width = _UNBOUNDED
    yaml.indent(mapping=2, sequence=4, offset=2)  # bruin's own examples' layout
    return yaml


def load_base(path: Path) -> Base:
    """Read and check the base file. Errors are exit 2, naming the place, never quoting the text."""
    from ruamel.yaml.comments import CommentedMap

    doc = load_file(path, "the base file", _yaml().load)
    if doc is None:
        doc = CommentedMap()
    environments, default = check_config(doc, path, "the base file")
    return Base(path, doc, environments, default)


def check_config(doc: Any, path: Path, what: str) -> tuple[tuple[str, ...], str | None]:
    """Is `doc` (the file `what` at `path`) shaped like a bruin config? Its environments and default
    environment; exit 2 otherwise. `plan --against` holds its file to the same rule as the base file."""
    if doc is None:
        return (), None
    if not isinstance(doc, dict):
        raise usage_error(f"{what} {path} must be a mapping with `environments`, like a .bruin.yml")
    environments = doc.get("environments")
    if environments is not None and not isinstance(environments, dict):
        raise usage_error(f"{what} {path}: `environments` must be a mapping")
    for name, env in (environments or {}).items():
        _check_environment(f"{what} {path}", str(name), env)
    default = doc.get("default_environment")
    if default is not None and not isinstance(default, str):
        raise usage_error(f"{what} {path}: `default_environment` must be a string")
    return tuple(str(n) for n in environments or ()), str(default) if default else None


def _check_environment(file: str, name: str, env: Any) -> None:
    where = f"{file}: environment {name!r}"
    if env is None:
        return  # given connections below; bruin would refuse it as it is
    if not isinstance(env, dict):
        raise usage_error(f"{where} must be a mapping")
    connections = env.get("connections")
    if connections is not None and not isinstance(connections, dict):
        raise usage_error(f"{where}: `connections` must be a mapping of type to a list")
    for conn_type, entries in (connections or {}).items():
        if entries is not None and not isinstance(entries, list):
            raise usage_error(f"{where}: connections.{show(str(conn_type))} must be a list")
        for i, entry in enumerate(entries or ()):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise usage_error(f"{where}: connections.{show(str(conn_type))}[{i}] must be a mapping with a "
                                  "`name`")


def merge(base: Base, vault: Environments, default_environment: str, prefer: str | None) -> Merged:
    """Add each environment's Vault connections to the base document (in place).

    A name the base already has in that environment, whatever its type, is a collision: `prefer`
    decides who stays ("vault" or "base"); without it the caller refuses them all.
    """
    doc = base.doc
    environments = _child_mapping(doc, "environments")
    collisions: list[Collision] = []
    written: list[tuple[str, Connection]] = []
    for environment, connections in vault:
        env = environments.get(environment)
        if not isinstance(env, dict):
            env = environments[_key(environment)] = _new_mapping()
        existing = _child_mapping(env, "connections")
        names = _names(existing)
        for conn in connections:
            if conn.name in names:
                base_type = names[conn.name]
                collisions.append(Collision(environment, conn.name, conn.type, base_type))
                if prefer != "vault":
                    continue
                _remove(existing, base_type, conn.name)
            _append(existing, conn)
            written.append((environment, conn))
    _set_default_environment(doc, default_environment)
    return Merged(doc, collisions, written)


def dump(doc: Any, header: str) -> str:
    import io

    out = io.StringIO()
    _yaml().dump(doc, out)
    return f"{header}\n{out.getvalue()}"


def to_node(value: Any) -> Any:
    """A Vault value as ruamel nodes: every string double-quoted, so none is read back as another type."""
    from ruamel.yaml.comments import CommentedSeq
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if isinstance(value, str):
        return DoubleQuotedScalarString(value)
    if isinstance(value, dict):
        node = _new_mapping()
        for key, item in value.items():
            node[_key(key)] = to_node(item)
        return node
    if isinstance(value, list):
        return CommentedSeq(to_node(item) for item in value)
    return value  # None, bool, int, float: ruamel writes them as YAML 1.2 reads them back


def _key(key: str) -> Any:
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    return key if _PLAIN_KEY.fullmatch(key) and key not in _YAML_WORDS else DoubleQuotedScalarString(key)


def _new_mapping() -> Any:
    from ruamel.yaml.comments import CommentedMap

    return CommentedMap()


def _child_mapping(parent: Any, key: str) -> Any:
    child = parent.get(key)
    if not isinstance(child, dict):
        child = parent[key] = _new_mapping()
    return child


def _names(connections: Any) -> dict[str, str]:
    """Connection name -> type, for the connections the base gives one environment (first one wins)."""
    names: dict[str, str] = {}
    for conn_type, entries in connections.items():
        for entry in entries or ():
            names.setdefault(entry["name"], str(conn_type))
    return names


def _remove(connections: Any, conn_type: str, name: str) -> None:
    entries = connections[conn_type]
    del entries[next(i for i, e in enumerate(entries) if e["name"] == name)]  # keeps the others' comments
    if not entries:
        del connections[conn_type]


def _append(connections: Any, conn: Connection) -> None:
    from ruamel.yaml.comments import CommentedSeq

    entries = connections.get(conn.type)
    if not isinstance(entries, list):
        entries = connections[_key(conn.type)] = CommentedSeq()
    entries.append(to_node(conn.fields))


def _set_default_environment(doc: Any, name: str) -> None:
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if doc.get("default_environment") == name:
        return  # kept as written
    if "default_environment" in doc:
        doc["default_environment"] = DoubleQuotedScalarString(name)
    else:
        doc.insert(0, "default_environment", DoubleQuotedScalarString(name))


def environment_names(vault: Sequence[str], base: Base | None) -> list[str]:
    """The environments the file will have: the base's, then the new ones from Vault."""
    names = list(base.environments) if base is not None else []
    return names + [n for n in vault if n not in names]
