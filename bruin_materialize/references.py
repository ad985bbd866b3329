"""References from a connection's details to other Vault secrets: `{"$vault": PATH, "field": KEY}`.

Pure: the references in the secrets read are found and checked, then replaced by the values
leases.py read (or, for `check` and `plan`, which create no credentials, by a stand-in). Every
message names the secret, the field and the path, never a value.

A value read through a reference is not searched for references again, so a reference can never
lead to itself: cycles cannot arise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from bruin_materialize.validate import ERROR, MAX_DEPTH, Problem
from bruin_materialize.yamltext import show

if TYPE_CHECKING:  # the types only: this module stays pure
    from bruin_materialize.plan import Change
    from bruin_materialize.schema import Schema
    from bruin_materialize.vault import RawSecret

MARKER = "$vault"
KEYS = frozenset({MARKER, "field"})
# Paths of Vault itself rather than of a secrets engine: a reference there would copy a token
# (auth/token/lookup-self) or Vault's configuration into the file.
NOT_ENGINES = ("sys", "auth", "identity")
# RFC 3986's path characters without percent-encoding: a path goes into the URL as it is written.
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]+")

Step = str | int  # a key of an object or an index of an array, from `details` down


class Reference(NamedTuple):
    location: str  # the secret's mount/path/name
    field: str  # where in the secret: details.password, details.hosts[1]
    steps: tuple[Step, ...]  # the same, as keys and indexes from `details`
    path: str  # the Vault API path read
    key: str  # the key of the answer's data

    def describe(self) -> str:
        return f"{self.field} from {self.path} (field {_quoted(self.key)})"


class Found(NamedTuple):
    references: list[Reference]
    problems: list[Problem]

    def paths(self) -> list[str]:
        """Each path once, in the order first referenced: one read per path, one lease per path."""
        return list(dict.fromkeys(r.path for r in self.references))


def find(secrets: Iterable[RawSecret]) -> Found:
    references: list[Reference] = []
    problems: list[Problem] = []
    for secret in secrets:
        details = secret.data.get("details") if isinstance(secret.data, dict) else None
        if isinstance(details, dict):
            for steps, value in _objects(details):
                field = _field(steps)
                problem = _shape_problem(value)
                if problem is None:
                    references.append(Reference(secret.location, field, steps, value[MARKER], value["field"]))
                else:
                    problems.append(_problem(secret.location, field, "reference-invalid", problem))
    return Found(references, problems)


def _objects(details: dict[str, Any]) -> Iterable[tuple[tuple[Step, ...], dict[str, Any]]]:
    """Every object holding `$vault`, with its steps. Iterative and bounded: a secret nested deeper
    than any connection is reported by validation, not followed here. Only objects and arrays are
    queued: the text values (nearly all of every secret) can hold no reference."""
    pending: list[tuple[tuple[Step, ...], Any]] = _containers((), details.items())
    while pending:
        steps, value = pending.pop()
        if isinstance(value, dict) and MARKER in value:
            yield steps, value
        elif len(steps) < MAX_DEPTH:
            pending.extend(_containers(steps, value.items() if isinstance(value, dict) else enumerate(value)))


def _containers(steps: tuple[Step, ...], items: Iterable[tuple[Step, Any]]) -> list[tuple[tuple[Step, ...], Any]]:
    """The objects and arrays among `items`, with their steps, last first (`pending` pops the first)."""
    return [(steps + (k,), v) for k, v in reversed(list(items)) if isinstance(v, (dict, list))]


def _shape_problem(value: dict[str, Any]) -> str | None:
    """Why `value` is not a reference exactly as documented, or None."""
    if set(value) != KEYS:
        extra = sorted(set(value) - KEYS)
        missing = sorted(KEYS - set(value))
        said = "; ".join(part for part in (
            f"unknown key{'s' if len(extra) > 1 else ''} {', '.join(map(_quoted, extra))}" if extra else "",
            f"missing {', '.join(missing)}" if missing else "") if part)
        return f"a reference must be exactly {{\"$vault\": PATH, \"field\": KEY}} ({said})"
    path, key = value[MARKER], value["field"]
    if not isinstance(path, str) or not isinstance(key, str) or not key:
        return "a reference's $vault and field must be non-empty strings"
    return _path_problem(path)


def _path_problem(path: str) -> str | None:
    segments = path.split("/")
    if not all(_PATH_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments):
        # Not echoed: a malformed "path" may be a value put in the wrong place.
        return ("$vault is not a Vault API path as `bao read` takes it (such as database/creds/ROLE: letters, digits "
                "and -._~!$&'()*+,;=:@ between single slashes, no . or .. segment, no query)")
    if len(segments) < 2:
        return "$vault is not a path of a secrets engine (MOUNT/...); references read secrets engines only"
    if segments[0] in NOT_ENGINES:
        return f"$vault is under {segments[0]}/, which is not a secrets engine; references read secrets engines only"
    return None


def resolve(secrets: list[RawSecret], found: Found, value_of: Callable[[Any, Reference], Any]) -> list[RawSecret]:
    """The secrets with each reference replaced by `value_of(secret's data, reference)`. A secret holding a
    malformed reference is left out: its problems are reported, and nothing is built from it."""
    broken = {p.location for p in found.problems}
    by_secret: dict[str, list[Reference]] = {}
    for ref in found.references:
        by_secret.setdefault(ref.location, []).append(ref)
    resolved: list[RawSecret] = []
    for secret in secrets:
        if secret.location in broken:
            continue
        refs = by_secret.get(secret.location)
        resolved.append(secret if not refs else secret._replace(data=_replaced(secret.data, refs, value_of)))
    return resolved


def _replaced(data: dict[str, Any], refs: list[Reference],
              value_of: Callable[[Any, Reference], Any]) -> dict[str, Any]:
    """A copy of `data` along each reference's steps (the rest is shared: nothing is mutated)."""
    copy = dict(data)
    copy["details"] = dict(data["details"])
    for ref in refs:
        node: Any = copy["details"]
        for step in ref.steps[:-1]:
            child = node[step]
            node[step] = dict(child) if isinstance(child, dict) else list(child)
            node = node[step]
        node[ref.steps[-1]] = value_of(data, ref)
    return copy


def value_problems(found: Found, answers: Mapping[str, Mapping[str, Any]]) -> list[Problem]:
    """References whose key the answer lacks, or whose value is not one value (an object, an array,
    null): `answers` maps each path to the keys of its answer's data."""
    problems: list[Problem] = []
    for ref in found.references:
        data = answers[ref.path]
        if ref.key not in data:
            keys = ", ".join(map(show, sorted(data))) or "none"
            problems.append(_problem(ref.location, ref.field, "reference-field-missing",
                                     f"{ref.path} has no field {_quoted(ref.key)} (it has: {keys})"))
        elif data[ref.key] is None or isinstance(data[ref.key], (dict, list)):
            kind = "null" if data[ref.key] is None else ("an object" if isinstance(data[ref.key], dict) else "an array")
            problems.append(_problem(ref.location, ref.field, "reference-not-scalar",
                                     f"field {_quoted(ref.key)} of {ref.path} is {kind}, not a value bruin can take"))
    return problems


def placeholder(schema: Schema | None, secret_data: Any, ref: Reference) -> Any:
    """What stands in for a referenced value where none is read (check, plan): a value of the type
    the field takes, so that the connection is checked as it will be with a real value."""
    conn_type = secret_data.get("type") if isinstance(secret_data, dict) else None
    spec: Mapping[str, Any] | None = schema.types.get(conn_type) if schema and isinstance(conn_type, str) else None
    for step in ref.steps:
        if spec is None:
            break
        spec = schema.resolve(spec) if schema else spec
        properties = spec.get("properties")
        below = spec.get("items") if isinstance(step, int) else (
            properties.get(step) if isinstance(properties, dict) else None)
        spec = below if isinstance(below, dict) else None
    expected = (schema.resolve(spec) if schema and spec else {}).get("type")
    return {"integer": 0, "number": 0, "boolean": False}.get(expected if isinstance(expected, str) else "",
                                                           "(dynamic)")


def compared_field(ref: Reference) -> str:
    """The field as plan names a changed one: object keys down to the first array, which it compares whole."""
    keys: list[str] = []
    for step in ref.steps:
        if isinstance(step, int):
            break
        keys.append(step)
    return ".".join(keys)


def without_dynamic(found: list[Change], dynamic: frozenset[tuple[str, str, str]]) -> list[Change]:
    """plan's changes without the fields read per run: their value is new at every run, so it is
    "dynamic", never a difference (`dynamic` holds environment, connection and field)."""
    kept: list[Change] = []
    for change in found:
        if change.kind == "changed":
            fields = tuple(f for f in change.fields if not any(
                (env, name) == (change.environment, change.name) and (f == d or f.startswith(d + "."))
                for env, name, d in dynamic))
            if not fields:
                continue
            change = change._replace(fields=fields)
        kept.append(change)
    return kept


def _field(steps: tuple[Step, ...]) -> str:
    field = "details"
    for step in steps:
        field += f"[{step}]" if isinstance(step, int) else f".{show(step)}"
    return field


def _quoted(name: str) -> str:
    shown = show(name)
    return f"'{name}'" if shown == name else shown


def _problem(location: str, field: str, code: str, message: str) -> Problem:
    return Problem(ERROR, f"{location}: {field}", message, location, field, code)
