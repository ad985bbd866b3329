"""Merging the connections read from Vault into a base bruin config (the project's own .bruin.yml).

ruamel.yaml round-trip keeps what the base holds besides them: its other environments, its own
connections (a duckdb file, a csv...), `schema_prefix`, `config`, the quoting of its values and
its comments. Vault strings are written double-quoted, escaped, never folded (the width is
unbounded), so every value reads back exactly (tests/test_environments.py round-trips them).
The base file is only ever read. ruamel.yaml is imported here only: the template path never
pays for it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from bruin_materialize import comments
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
    yaml.Scanner, yaml.Emitter = _scanner(), _emitter()
    yaml.preserve_quotes = True  # the base's values are kept as they are written
    yaml.width = _UNBOUNDED
    yaml.indent(mapping=2, sequence=4, offset=2)  # bruin's own examples' layout
    return yaml


@functools.cache
def _scanner() -> Any:
    """ruamel.yaml's round-trip scanner, with two fixes:

    - comment lines right after a flow collection that has no comment on its own line (`- {name: a}`
      then `# about b`) were dropped; they are kept now the way it keeps them after a plain scalar;
    - a tab before a comment or a line's end (`name: x<TAB># c`) was "a character that cannot start
      any token"; YAML 1.2 separates with spaces and tabs alike there, and bruin's yaml.v3 reads it.
    """
    from ruamel.yaml import tokens
    from ruamel.yaml.scanner import RoundTripScanner

    flow_ends = (tokens.FlowSequenceEndToken, tokens.FlowMappingEndToken)
    line_ends = "#\0\r\n\x85\u2028\u2029"

    class Scanner(RoundTripScanner):
        def scan_to_next_token(self) -> Any:
            if not self.flow_level:  # in flow context ruamel skips tabs itself
                run = 0
                while self.reader.peek(run) in " \t":
                    run += 1
                if run and self.reader.peek(run) in line_ends:
                    self.reader.forward(run)  # blanks before a comment or a line break: never indentation
            return super().scan_to_next_token()

        def get_token(self) -> Any:
            while self.need_more_tokens():
                self.fetch_more_tokens()
            if not self.done and len(self.tokens) < 2:
                self.fetch_more_tokens()
            if (len(self.tokens) > 1 and isinstance(self.tokens[0], flow_ends)
                    and isinstance(self.tokens[1], tokens.CommentToken)
                    and self.tokens[0].end_mark.line != self.tokens[1].start_mark.line):
                self._lines_after_flow_end()
            return super().get_token()

        def _lines_after_flow_end(self) -> None:  # RoundTripScanner.get_token's branch for a scalar
            self.tokens_taken += 1
            comment = self.tokens.pop(1)
            comment.value = ("\n" * (comment.start_mark.line - self.tokens[0].end_mark.line)
                             + " " * comment.start_mark.column + comment.value)
            self.fetch_more_tokens()
            while len(self.tokens) > 1 and isinstance(self.tokens[1], tokens.CommentToken):
                self.tokens_taken += 1
                more = self.tokens.pop(1)
                comment.value += " " * more.start_mark.column + more.value
                self.fetch_more_tokens()
            self.tokens[0].add_post_comment(comment)

    return Scanner


@functools.cache
def _emitter() -> Any:
    """ruamel.yaml's round-trip emitter, with one fix: after the comment that ends a flow collection's
    line (`- {name: a}  # c`), it still believed itself mid-line, and wrote the next block mapping's
    keys onto one line (`- name: b host: x`), which no parser reads back."""
    from ruamel.yaml.emitter import RoundTripEmitter

    class Emitter(RoundTripEmitter):
        def write_post_comment(self, event: Any) -> bool:
            written = bool(super().write_post_comment(event))
            if written:
                self.no_newline = False  # a comment ends with its line break
            return written

    return Emitter


def load_base(path: Path) -> Base:
    """Read and check the base file. Errors are exit 2, naming the place, never quoting the text."""
    from ruamel.yaml.comments import CommentedMap

    doc = load_file(path, "the base file", _yaml().load)
    if doc is None:
        doc = CommentedMap()
    environments, default = check_config(doc, path, "the base file")
    _refuse_shared_nodes(doc, path)
    _keep_anchors(doc)
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


def _refuse_shared_nodes(doc: Any, path: Path) -> None:
    """Exit 2 when a place merge() writes to (the environments, an environment, its connections, a list
    of one type) is reachable twice, through an alias or a `<<` merge key: a write would reach both."""
    written = {id(node): where for where, node in _write_places(doc)}
    first: dict[int, str] = {}
    for where, node in _walk(doc, "", set()):
        if id(node) not in written:
            continue
        if id(node) in first:
            anchor = getattr(getattr(node, "anchor", None), "value", None)
            how = f"the alias *{anchor}" if anchor else "a `<<` merge key"
            other = first[id(node)] or "the document"
            raise usage_error(f"the base file {path}: {where or 'the document'} and {other} are one node ({how}), so "
                              "a connection written to one would appear in both; write each out in full")
        first[id(node)] = where


def _keep_anchors(doc: Any) -> None:
    """ruamel drops an anchor no alias uses when it writes the document back; the base keeps them all."""
    for _, node in _walk(doc, "", set()):
        values = node.values() if isinstance(node, dict) else node
        for item in [node, *values]:
            anchor: Any = getattr(item, "anchor", None)
            if getattr(anchor, "value", None):
                anchor.always_dump = True


def _write_places(doc: Any) -> list[tuple[str, Any]]:
    """The collections merge() may change, each with its place for messages."""
    places: list[tuple[str, Any]] = []
    environments = doc.get("environments")
    if isinstance(environments, dict):
        places.append(("environments", environments))
        for name, env in environments.items():
            where = f"environments.{show(str(name))}"
            if isinstance(env, dict):
                places.append((where, env))
                connections = env.get("connections")
                if isinstance(connections, dict):
                    places.append((f"{where}.connections", connections))
                    places.extend((f"{where}.connections.{show(str(t))}", entries)
                                  for t, entries in connections.items() if isinstance(entries, list))
    return places


def _walk(node: Any, where: str, seen: set[int]) -> Any:
    """Every collection under `node`, once per place it is reached: through its key or index, and
    through each `<<` merge key (whose source mapping counts as reached there too)."""
    if not isinstance(node, (dict, list)):
        return
    yield where, node
    if id(node) in seen:  # an alias: counted above, its insides were walked where it was first met
        return
    seen.add(id(node))
    prefix = f"{where}." if where else ""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _walk(item, f"{where}[{index}]", seen)
        return
    for source in getattr(node, "merge", None) or ():  # ruamel: the mappings `<<` merges
        yield from _walk(source, f"{prefix}<<", seen)
    for key, value in node.items():  # a merged key's value counts here as well as in its source
        yield from _walk(value, f"{prefix}{show(str(key))}", seen)


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
        env = _child_mapping(environments, environment)
        existing = _child_mapping(env, "connections")
        names = _names(existing)
        for conn in connections:
            if conn.name in names:
                collisions.append(Collision(environment, conn.name, conn.type, names[conn.name]))
                if prefer != "vault":
                    continue
                _remove(env, conn.name)
            _append(existing, conn)
            written.append((environment, conn))
    _set_default_environment(doc, default_environment)
    return Merged(doc, collisions, written)


def kept_names(base: Base, environment: str) -> frozenset[str]:
    """The connection names the base gives `environment` (with --prefer base, Vault's of these names are
    not written)."""
    env = (base.doc.get("environments") or {}).get(environment) or {}
    return frozenset(_names(env.get("connections") or {}))


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
    if isinstance(child, dict):
        return child
    child = _new_mapping()
    if key in parent:  # `key:` with no value (null)
        parent[key] = child
    else:
        comments.append(parent, _key(key), child)
    return child


def _names(connections: Any) -> dict[str, str]:
    """Connection name -> type, for the connections the base gives one environment (first one wins)."""
    names: dict[str, str] = {}
    for conn_type, entries in connections.items():
        for entry in entries or ():
            names.setdefault(entry["name"], str(conn_type))
    return names


def _remove(env: Any, name: str) -> None:
    """Every entry of the base named `name` in this environment (bruin would take any one of them),
    each entry's neighbours keeping their comments (comments.py); a list left empty goes too."""
    connections = env["connections"]
    for conn_type in list(connections):
        entries = connections[conn_type] or []
        doomed = [i for i, entry in enumerate(entries) if entry["name"] == name]
        if doomed and len(doomed) == len(entries):
            comments.remove(connections, conn_type, (env, "connections"))
            continue
        for index in reversed(doomed):
            comments.remove(entries, index, (connections, conn_type))


def _append(connections: Any, conn: Connection) -> None:
    from ruamel.yaml.comments import CommentedSeq

    entries = connections.get(conn.type)
    if isinstance(entries, list):
        comments.append(entries, None, to_node(conn.fields))
    elif conn.type in connections:  # `postgres:` with no value (null)
        connections[conn.type] = CommentedSeq([to_node(conn.fields)])
    else:
        comments.append(connections, _key(conn.type), CommentedSeq([to_node(conn.fields)]))


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
