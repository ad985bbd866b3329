"""Relative paths in connections, and the project root they are resolved against.

bruin makes some connection fields absolute against the directory of the config file it loads
(pkg/config, LoadFromFileOrEnv). The rendered file lives in a private
tmpfs directory, so a relative path kept as is would point into that directory. Each one is made
absolute here instead: a secret's against the project root, a base file's against that file's own
directory, which is where bruin resolved it when it read that file directly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any, NamedTuple

_SSL_FILES = (("ssl_ca_path",), ("ssl_cert_path",), ("ssl_key_path",))

# Connection type -> the fields bruin resolves, each as its key path inside the connection: the loop
# after decoding in bruin's pkg/config/manager.go (LoadFromFileOrEnv). Checked against that file at
# bruin commit 0034ee4f508d, which resolves duckdb, google_cloud_platform, mysql and snowflake,
# and against the v0.11.731 loader (the bruin of the schema snapshot), which adds google_sheets,
# doris, vitess and iceberg. bruin has only ever added to this list, so it holds the union: a field
# made absolute here that an older bruin would have left relative still names the same file.
# iceberg: the sqlite/hadoop catalog's `catalog.path`, local storage's `storage.path` (s3:// and gs://
# warehouses carry a scheme and are left alone) and the GCS key file `storage.key_file`.
PATH_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "duckdb": (("path",),),
    "google_cloud_platform": (("service_account_file",),),
    "google_sheets": (("service_account_file",),),
    "snowflake": (("private_key_path",),),
    "mysql": _SSL_FILES,
    "doris": _SSL_FILES,
    "vitess": _SSL_FILES,
    "iceberg": (("catalog", "path"), ("storage", "path"), ("storage", "key_file")),
}

# `md:db`, `s3://bucket`, `file:///x`, and also `C:\\x`: none of them is a path bruin would join.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_NOT_PATHS = frozenset({"", ":memory:"})


class Rewrite(NamedTuple):
    environment: str
    conn_type: str
    name: str
    field: str  # dotted key path inside the connection


def project_root(cwd: Path) -> Path:
    """The git work tree holding `cwd` (a `.git` directory or file), else `cwd` itself."""
    for candidate in (cwd, *cwd.parents):
        if (candidate / ".git").exists():
            return candidate
    return cwd


def is_relative_path(value: Any) -> bool:
    """A value bruin would join to the config file's directory, and that means the same after that.

    `${NAME}` is expanded by bruin before it joins, so such a value may well be absolute then: left alone.
    """
    return (isinstance(value, str) and value not in _NOT_PATHS and not _SCHEME.match(value)
            and "${" not in value and not os.path.isabs(value))


def absolutize(conn_type: str, connection: MutableMapping[str, Any], root: Path) -> list[str]:
    """Make the connection's relative path fields absolute against `root`, in place; their dotted names."""
    changed: list[str] = []
    for field in PATH_FIELDS.get(conn_type, ()):
        parent = _mapping_at(connection, field[:-1])
        if parent is None or not is_relative_path(parent.get(field[-1])):
            continue
        old = parent[field[-1]]
        parent[field[-1]] = _same_kind(old, os.path.normpath(os.path.join(root, old)))
        changed.append(".".join(field))
    return changed


def absolutize_document(doc: Any, root: Path) -> list[Rewrite]:
    """absolutize() over every connection of a config document (a base file, a file `plan` compares)."""
    rewrites: list[Rewrite] = []
    for environment, conn_type, connection in connections_in(doc):
        name = connection.get("name")
        for field in absolutize(conn_type, connection, root):
            rewrites.append(Rewrite(environment, conn_type, name if isinstance(name, str) else "?", field))
    return rewrites


def connections_in(doc: Any) -> Iterator[tuple[str, str, MutableMapping[str, Any]]]:
    """(environment, type, connection) for every well-formed connection; malformed parts are skipped."""
    environments = doc.get("environments") if isinstance(doc, dict) else None
    for environment, env in (environments.items() if isinstance(environments, dict) else ()):
        connections = env.get("connections") if isinstance(env, dict) else None
        for conn_type, entries in (connections.items() if isinstance(connections, dict) else ()):
            for connection in entries if isinstance(entries, list) else ():
                if isinstance(connection, dict):
                    yield str(environment), str(conn_type), connection


def _mapping_at(connection: MutableMapping[str, Any], keys: tuple[str, ...]) -> MutableMapping[str, Any] | None:
    """The mapping at `keys`; plain dicts on the way are copied first, as a secret's nested objects may be
    shared (two environments reading one path). A base file's mappings are its own: changed in place."""
    node: Any = connection
    for key in keys:
        child = node.get(key)
        if not isinstance(child, dict):
            return None
        if type(child) is dict:
            child = node[key] = dict(child)
        node = child
    return node if isinstance(node, dict) else None


def _same_kind(old: str, new: str) -> str:
    """Keep a YAML scalar's quoting style (ruamel's str subclasses) when its text changes."""
    if type(old) is str:
        return new
    try:
        return type(old)(new)
    except TypeError:
        return new
