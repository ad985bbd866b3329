"""What a render would change in an existing config file: connections added, removed, changed.

Pure: two parsed documents in, lines out. A line names the environment, the connection, its type
and the fields that differ, never a value; names that could break a line are JSON-quoted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from bruin_materialize.paths import connections_in
from bruin_materialize.yamltext import show


def identical(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1, 1.0 and True are not the same in a config)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


Sources = Mapping[str, Mapping[str, str]]  # environment -> connection name -> the Vault path it was read from


class Change(NamedTuple):
    """One difference. kind: added, removed, changed (fields), type_changed, source_changed (read from
    another Vault path), settings (an environment's own keys, in fields) or default_environment; an
    environment added or removed has name None."""

    kind: str
    environment: str | None
    name: str | None = None
    type: str | None = None
    old_type: str | None = None  # type_changed
    fields: tuple[str, ...] = ()  # changed, settings: dotted names, never values
    source: str | None = None  # source_changed: the mount/path it is read from now
    old_source: str | None = None  # source_changed: the one the compared file says

    def line(self) -> str:
        if self.kind == "default_environment":
            return "~ default_environment"
        env = show(self.environment or "")
        if self.name is None:
            if self.kind == "settings":
                return f"~ {env}: {', '.join(show(f) for f in self.fields)}"
            return f"{'+' if self.kind == 'added' else '-'} {env} (environment)"
        where = f"{env}/{show(self.name)}"
        if self.kind in ("added", "removed"):
            return f"{'+' if self.kind == 'added' else '-'} {where} ({show(self.type or '')})"
        if self.kind == "source_changed":
            return f"~ {where} ({show(self.type or '')}): read from {show(self.source or '')}, was " \
                   f"{show(self.old_source or '')}"
        if self.kind == "type_changed":
            return f"~ {where} ({show(self.type or '')}): type changed from {show(self.old_type or '')}"
        return f"~ {where} ({show(self.type or '')}): {', '.join(show(f) for f in self.fields)}"


def diff(new: Any, old: Any) -> list[str]:
    """One line per difference, environment by environment, connections sorted by name."""
    return [change.line() for change in changes(new, old)]


def changes(new: Any, old: Any, new_sources: Sources | None = None, old_sources: Sources | None = None) -> list[Change]:
    """Every difference; a connection's Vault path is compared where both files record it (render.read_sources)."""
    found: list[Change] = []
    if _get(new, "default_environment") != _get(old, "default_environment"):
        found.append(Change("default_environment", None))
    new_envs, old_envs = _environments(new), _environments(old)
    for env in sorted(new_envs.keys() | old_envs.keys()):
        if env not in old_envs:
            found.append(Change("added", env))
        elif env not in new_envs:
            found.append(Change("removed", env))
        else:
            found.extend(_settings_change(env, new_envs[env], old_envs[env]))
        now, before = _connections(new, env), _connections(old, env)
        found.extend(_connection_changes(env, now, before))
        found.extend(_source_changes(env, now, before, (new_sources or {}).get(env), (old_sources or {}).get(env)))
    return found


def _source_changes(env: str, new: dict[str, tuple[str, Any]], old: dict[str, tuple[str, Any]],
                    new_sources: Mapping[str, str] | None, old_sources: Mapping[str, str] | None) -> list[Change]:
    """A connection in both files, read from another path than before: a change even with equal values."""
    if not new_sources or not old_sources:
        return []
    found: list[Change] = []
    for name in sorted(new.keys() & old.keys()):
        source, old_source = new_sources.get(name), old_sources.get(name)
        if source is not None and old_source is not None and source != old_source:
            found.append(Change("source_changed", env, name, new[name][0], source=source, old_source=old_source))
    return found


def _connection_changes(env: str, new: dict[str, tuple[str, Any]], old: dict[str, tuple[str, Any]]) -> list[Change]:
    found: list[Change] = []
    for name in sorted(new.keys() | old.keys()):
        if name not in old:
            found.append(Change("added", env, name, new[name][0]))
        elif name not in new:
            found.append(Change("removed", env, name, old[name][0]))
        elif new[name][0] != old[name][0]:
            found.append(Change("type_changed", env, name, new[name][0], old_type=old[name][0]))
        else:
            fields = changed_fields(new[name][1], old[name][1])
            if fields:
                found.append(Change("changed", env, name, new[name][0], fields=tuple(fields)))
    return found


def changed_fields(new: Any, old: Any, prefix: str = "") -> list[str]:
    """The dotted names of the fields whose values differ, or that only one side has."""
    if not (isinstance(new, dict) and isinstance(old, dict)):
        return [] if identical(new, old) else [prefix]
    changed: list[str] = []
    for key in sorted(new.keys() | old.keys(), key=str):
        if prefix == "" and key == "name":
            continue
        field = f"{prefix}.{key}" if prefix else str(key)
        if key not in new or key not in old:
            changed.append(field)
        else:
            changed.extend(changed_fields(new[key], old[key], field))
    return changed


def _settings_change(env: str, new: dict[str, Any], old: dict[str, Any]) -> list[Change]:
    """An environment's own settings (schema_prefix, config, ...): everything but its connections."""
    keys = sorted((new.keys() | old.keys()) - {"connections"}, key=str)
    changed = [str(k) for k in keys if k not in new or k not in old or not identical(new[k], old[k])]
    return [Change("settings", env, fields=tuple(changed))] if changed else []


def _environments(doc: Any) -> dict[str, dict[str, Any]]:
    envs = _get(doc, "environments")
    if not isinstance(envs, dict):
        return {}
    return {str(name): env if isinstance(env, dict) else {} for name, env in envs.items()}


def _connections(doc: Any, env: str) -> dict[str, tuple[str, Any]]:
    """name -> (type, connection) in one environment; a repeated name counts once (bruin keeps one)."""
    found: dict[str, tuple[str, Any]] = {}
    for environment, conn_type, connection in connections_in(doc):
        name = connection.get("name")
        if environment == env and isinstance(name, str):
            found.setdefault(name, (conn_type, connection))
    return found


def _get(doc: Any, key: str) -> Any:
    return doc.get(key) if isinstance(doc, dict) else None

