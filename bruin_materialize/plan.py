"""What a render would change in an existing config file: connections added, removed, changed.

Pure: two parsed documents in, lines out. A line names the environment, the connection, its type
and the fields that differ, never a value; names that could break a line are JSON-quoted.
"""

from __future__ import annotations

from typing import Any

from bruin_materialize.paths import connections_in
from bruin_materialize.yamltext import show


def identical(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1, 1.0 and True are not the same in a config)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b))
    return bool(a == b)


def diff(new: Any, old: Any) -> list[str]:
    """One line per difference, environment by environment, connections sorted by name."""
    lines: list[str] = []
    if _get(new, "default_environment") != _get(old, "default_environment"):
        lines.append("~ default_environment")
    new_envs, old_envs = _environments(new), _environments(old)
    for env in sorted(new_envs.keys() | old_envs.keys()):
        if env not in old_envs:
            lines.append(f"+ {show(env)} (environment)")
        elif env not in new_envs:
            lines.append(f"- {show(env)} (environment)")
        else:
            lines.extend(_settings_line(env, new_envs[env], old_envs[env]))
        lines.extend(_connection_lines(env, _connections(new, env), _connections(old, env)))
    return lines


def _connection_lines(env: str, new: dict[str, tuple[str, Any]], old: dict[str, tuple[str, Any]]) -> list[str]:
    lines: list[str] = []
    for name in sorted(new.keys() | old.keys()):
        where = f"{show(env)}/{show(name)}"
        if name not in old:
            lines.append(f"+ {where} ({show(new[name][0])})")
        elif name not in new:
            lines.append(f"- {where} ({show(old[name][0])})")
        elif new[name][0] != old[name][0]:
            lines.append(f"~ {where} ({show(new[name][0])}): type changed from {show(old[name][0])}")
        else:
            fields = changed_fields(new[name][1], old[name][1])
            if fields:
                lines.append(f"~ {where} ({show(new[name][0])}): {', '.join(show(f) for f in fields)}")
    return lines


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


def _settings_line(env: str, new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """An environment's own settings (schema_prefix, config, ...): everything but its connections."""
    keys = sorted((new.keys() | old.keys()) - {"connections"}, key=str)
    changed = [str(k) for k in keys if k not in new or k not in old or not identical(new[k], old[k])]
    return [f"~ {show(env)}: {', '.join(show(k) for k in changed)}"] if changed else []


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

