"""Pure validation: raw secrets in, connections and every problem out. No I/O, no printing.

Every message names the secret and the field, never a value: values are credentials.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from bruin_materialize.schema import Schema
from bruin_materialize.yamltext import MAX_KEY, show, to_yaml

if TYPE_CHECKING:  # the type only: validation is pure and never loads the Vault client
    from bruin_materialize.vault import RawSecret

ERROR, WARNING, NOTE = "error", "warning", "note"


class Problem(NamedTuple):
    level: str
    where: str  # the secret's location, and the field when there is one
    message: str
    location: str = ""  # the secret's location alone (mount/path/name), for `--format json`
    field: str = ""  # the field alone, "" for the secret as a whole
    code: str = "other"  # the kind of finding, stable across wording changes (`--format json`)

    def line(self) -> str:
        return f"{self.where}: {self.message}"


class Connection(NamedTuple):
    type: str
    name: str
    fields: dict[str, Any]  # "name" first, then the secret's details


class Outcome(NamedTuple):
    connections: list[Connection]  # sorted by type, then name: the file is deterministic
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == ERROR]


class Options(NamedTuple):
    strict: bool = False
    expand_env: bool = False
    # Names set in the environment bruin will get; None when unknown (render for another
    # container): then every ${NAME} counts, as any could be set there.
    env_names: frozenset[str] | None = None


INT64 = (-(2**63), 2**63 - 1)
_CANONICAL_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})")
_ENV_REF = re.compile(r"\$\{([^}]*)\}")


class Checked(NamedTuple):
    """One secret's connection (None when it gives none) and its own problems."""

    connection: Connection | None
    problems: list[Problem]


def validate(secrets: Iterable[RawSecret], schema: Schema | None, options: Options) -> Outcome:
    return combine(check_secret(s, schema, options) for s in secrets)


def check_secret(secret: RawSecret, schema: Schema | None, options: Options) -> Checked:
    """Everything about one secret alone: the reading threads run it as each secret arrives."""
    problems: list[Problem] = []
    return Checked(_connection(secret, schema, options, problems), problems)


def combine(checked: Iterable[Checked]) -> Outcome:
    """The secrets' own checks, in their order, and the one across them: a name given twice."""
    problems: list[Problem] = []
    connections: list[Connection] = []
    for one in checked:
        problems.extend(one.problems)
        if one.connection is not None:
            connections.append(one.connection)
    _check_duplicates(connections, problems)
    connections.sort(key=lambda c: (c.type, c.name))
    return Outcome(connections, problems)


class _Report:
    """Collects the problems of one secret, with its location as prefix."""

    def __init__(self, location: str, options: Options, out: list[Problem]) -> None:
        self.location, self.options, self.out = location, options, out
        self.errors = 0  # this secret's, counted as they come: scanning `out` would be quadratic

    def add(self, level: str, field: str, code: str, message: str) -> None:
        where = f"{self.location}: {field}" if field else self.location
        self.out.append(Problem(level, where, message, self.location, field, code))
        self.errors += level == ERROR

    def hint(self, field: str, code: str, message: str) -> None:
        """Schema hints: warnings, errors with --strict."""
        self.add(ERROR if self.options.strict else WARNING, field, code, message)


def _connection(secret: RawSecret, schema: Schema | None, options: Options, out: list[Problem]) -> Connection | None:
    report = _Report(secret.location, options, out)
    data = secret.data
    if data is None:
        report.hint("", "secret-deleted",
                    "its current version is deleted or destroyed; skipped (undelete it, or delete the "
                    "secret's metadata to drop the connection)")
        return None
    too_big, plain = _survey(data)
    if too_big:  # before the recursive checks below, which a deep enough secret would overflow
        report.add(ERROR, "", "secret-too-large", too_big)
        return None
    if not isinstance(data, dict):
        report.add(ERROR, "", "secret-not-object",
                   f"the secret must be a JSON object with `type` and `details`, not {_kind(data)}")
        return None
    conn_type, details = data.get("type"), data.get("details")
    ok = _check_type_field(conn_type, report) & _check_details_field(details, report)
    extra = sorted(k for k in data if k not in ("type", "details"))
    if extra:
        report.add(WARNING, "", "secret-extra-keys",
                   f"top-level keys other than type/details are ignored: {', '.join(map(show, extra))}")
    if not ok:
        return None
    assert isinstance(conn_type, str) and isinstance(details, dict)
    fields = dict(details)
    if "name" in fields and fields["name"] != secret.name:
        report.add(WARNING, "details.name", "name-replaced",
                   "differs from the secret's name; the secret's name is used")
    fields.pop("name", None)
    _check_keys(conn_type, fields, report, plain)
    _check_text(secret.name, report, "name", options)
    if not plain:  # else no value can fail the text checks, which build a field path for every value
        for key, value in fields.items():
            _check_text(value, report, f"details.{key}", options)
    if schema is not None:
        fields = _check_against_schema(conn_type, fields, schema, report)
    if report.errors:
        return None
    return Connection(conn_type, secret.name, {"name": secret.name, **fields})


MAX_DEPTH = 32  # objects and arrays within one another; bruin's deepest connection field is 3 levels down
MAX_SIZE = 1 << 20  # characters of keys and strings, plus one per value: a connection is a few KiB


# A key this short cannot be too long for YAML, whatever it escapes to (an escape is at most 6 characters).
_SHORT_KEY = (MAX_KEY - 2) // 6


def _survey(data: Any) -> tuple[str | None, bool]:
    """Why the secret is too deep or too big to be a connection, or None; and whether it is plain: every
    key and text ASCII (so UTF-8 can carry it), every key short, no text holding `${`. Nothing in a plain
    secret can fail the key and text checks, the usual case. Iterative: a secret nested thousands of
    levels deep must be reported by name, not end in a RecursionError."""
    size = 0
    plain = True
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        node, depth = pending.pop()
        size += 1
        if isinstance(node, str):
            size += len(node)
            plain = plain and node.isascii() and "${" not in node
        elif isinstance(node, (dict, list)):
            if depth > MAX_DEPTH:
                return f"is nested more than {MAX_DEPTH} levels deep; no bruin connection is", False
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, item in items:
                if isinstance(key, str):
                    size += len(key)
                    plain = plain and key.isascii() and len(key) <= _SHORT_KEY
                pending.append((item, depth + 1))
        if size > MAX_SIZE:
            return f"is larger than {MAX_SIZE // (1 << 20)} MiB; no bruin connection is", False
    return None, plain


def _check_type_field(conn_type: Any, report: _Report) -> bool:
    if isinstance(conn_type, str) and conn_type.strip():
        return True
    problem = "is missing" if conn_type is None else f"must be a non-empty string, not {_kind(conn_type)}"
    report.add(ERROR, "type", "type-invalid", f"{problem}; set it to a bruin connection type such as postgres")
    return False


def _check_details_field(details: Any, report: _Report) -> bool:
    if isinstance(details, dict):
        return True
    if details is None:
        report.add(ERROR, "details", "details-invalid", "is missing; the connection's fields go in a `details` object")
    elif isinstance(details, str):
        report.add(ERROR, "details", "details-invalid", "is a string, not an object; write the secret as JSON "
                                                        "(e.g. `bao kv put PATH @secret.json`)")
    else:
        report.add(ERROR, "details", "details-invalid", f"must be an object, not {_kind(details)}")
    return False


def _check_keys(conn_type: str, details: dict[str, Any], report: _Report, plain: bool) -> None:
    """Keys YAML cannot carry: the type and field names are mapping keys in the file."""
    if _too_long_for_a_key(conn_type):
        report.add(ERROR, "type", "key-too-long", f"is longer than the {MAX_KEY} characters YAML allows for a key")
    if not _encodable(conn_type):
        report.add(ERROR, "type", "text-unencodable", "holds a lone UTF-16 surrogate, which cannot be written as UTF-8")
    if plain:  # every field name ASCII and short: _survey
        return
    for field, key in _keys(details, "details"):
        if not _encodable(key):
            report.add(ERROR, field, "text-unencodable",
                       "has a field name holding a lone UTF-16 surrogate, which cannot be written as UTF-8")
        elif _too_long_for_a_key(key):
            report.add(ERROR, field, "key-too-long",
                       f"has a field name longer than the {MAX_KEY} characters YAML allows for a key")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _too_long_for_a_key(key: str) -> bool:
    # An escape is at most 6 characters (\\uXXXX): shorter keys need no encoding to know.
    return len(key) * 6 + 2 > MAX_KEY and len(to_yaml(key)) > MAX_KEY


def _keys(value: Any, field: str) -> Iterable[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield field, key
            yield from _keys(item, f"{field}.{show(key)}" if len(key) < 64 else f"{field}.{show(key[:60])}...")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _keys(item, f"{field}[{i}]")


def _check_text(value: Any, report: _Report, field: str, options: Options) -> None:
    """Text bruin could not read back exactly: unencodable, or ${NAME} it would expand on load."""
    for sub_field, text in ((f, v) for f, v in leaves(value, field) if isinstance(v, str)):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            report.add(ERROR, sub_field, "text-unencodable",
                       "holds a lone UTF-16 surrogate, which cannot be written as UTF-8")
            continue
        if not options.expand_env and _expands(text, options.env_names):
            report.add(ERROR, sub_field, "env-reference",
                       "holds ${...} naming an environment variable; bruin would replace it "
                       "on load. Change the value, or pass --expand-env if that is wanted")


def _expands(text: str, env_names: frozenset[str] | None) -> bool:
    for match in _ENV_REF.finditer(text):
        name = match.group(1)
        if name and (env_names is None or name in env_names):
            return True
    return False


def leaves(value: Any, field: str) -> Iterable[tuple[str, Any]]:
    """Every scalar inside `value`, with its field path (`details.catalog.path`, `details.hosts[1]`)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{field}.{show(key)}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, f"{field}[{i}]")
    else:
        yield field, value


def _check_against_schema(conn_type: str, fields: dict[str, Any], schema: Schema, report: _Report) -> dict[str, Any]:
    spec = schema.types.get(conn_type)
    if spec is None:
        import difflib  # here: only an unknown type needs it

        close = difflib.get_close_matches(conn_type, schema.types, n=1)
        suggestion = f" (did you mean {close[0]}?)" if close else ""
        report.add(ERROR, "type", "type-unknown", f"unknown connection type {_quoted(conn_type)}{suggestion}; "
                                                  f"bruin knows {len(schema.types)} types")
        return fields
    checked = _object(fields, spec, "details", schema, report)
    return checked if isinstance(checked, dict) else fields


def _object(value: dict[str, Any], spec: Mapping[str, Any], field: str, schema: Schema, report: _Report) -> Any:
    props = spec.get("properties")
    extra = spec.get("additionalProperties")
    result: dict[str, Any] = {}
    unknown: list[str] = []
    for key, item in value.items():
        if isinstance(props, dict) and key in props:
            result[key] = _value(item, props[key], f"{field}.{key}", schema, report)
        elif isinstance(extra, dict):
            result[key] = _value(item, extra, f"{field}.{show(key)}", schema, report)
        else:
            if isinstance(props, dict) and extra is False:
                unknown.append(key)
            result[key] = item
    if unknown:
        shown = ", ".join(map(show, sorted(unknown)))
        report.hint(field, "field-unknown", f"fields unknown to bruin's schema (bruin ignores them): {shown}")
    required = [r for r in spec.get("required", ()) if r not in value and not (field == "details" and r == "name")]
    if required:
        report.hint(field, "field-required-missing",
                    f"fields the schema marks required are missing: {', '.join(required)}")
    return result


def _value(value: Any, spec: Mapping[str, Any], field: str, schema: Schema, report: _Report) -> Any:
    spec = schema.resolve(spec)
    expected = spec.get("type")
    if value is None or expected is None:
        return value  # null decodes to the zero value; an untyped field takes anything
    if expected == "object" or "properties" in spec:
        if isinstance(value, dict):
            return _object(value, spec, field, schema, report)
    elif expected == "array":
        if isinstance(value, list):
            items = spec.get("items")
            if not isinstance(items, dict):
                return value
            return [_value(v, items, f"{field}[{i}]", schema, report) for i, v in enumerate(value)]
    else:
        if expected == "string" and isinstance(value, float):
            # JSON keeps a number's value, not how it was written (`1.50`, `15e-1`): the text bruin should
            # get is unknown, and a credential is text exactly as its owner wrote it.
            report.add(ERROR, field, "field-type-mismatch", "expected string, got a number with a fraction or "
                       "exponent, whose written form JSON does not keep; store it in Vault as a string")
            return value
        converted = _scalar(value, expected)
        if converted is not _MISMATCH:
            if type(converted) is not type(value):
                report.add(NOTE, field, "value-converted", f"{_kind(value)} converted to {expected}")
            return converted
    report.add(ERROR, field, "field-type-mismatch",
               f"expected {expected}, got {_kind(value)}; bruin would fail to load the whole file")
    return value


_MISMATCH = object()


def _scalar(value: Any, expected: str) -> Any:
    """`value` as `expected` when that loses nothing, else _MISMATCH."""
    if expected == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value) if isinstance(value, int) else _MISMATCH  # an integer's text is its digits
    if expected == "boolean":
        if isinstance(value, bool):
            return value
        return {"true": True, "false": False}.get(value, _MISMATCH) if isinstance(value, str) else _MISMATCH
    if isinstance(value, bool):
        return _MISMATCH
    if expected == "integer":
        return _as_int(value)
    if expected == "number":
        if isinstance(value, (int, float)):
            return value if isinstance(value, int) or math.isfinite(value) else _MISMATCH
        if isinstance(value, str):
            number = _as_int(value)
            if number is _MISMATCH:
                number = _as_float(value)
            return number
    return _MISMATCH


def _as_int(value: Any) -> Any:
    if isinstance(value, int):
        return value if INT64[0] <= value <= INT64[1] else _MISMATCH
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, str) and _CANONICAL_INT.fullmatch(value):
        return _as_int(int(value))
    return _MISMATCH


def _as_float(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return _MISMATCH
    return number if math.isfinite(number) and repr(number) == text else _MISMATCH


def name_problems(name: str, where: str) -> list[Problem]:
    """A connection name must be a path Vault stores as it is (OpenBao 2.x, checked against a server):
    it refuses non-printable characters in a path, and cleans empty, `.` and `..` segments, which would
    move the secret elsewhere. A `/` between segments makes FOLDER/NAME, as `render --recursive` reads."""
    if not name:
        return [Problem(ERROR, f"{where}: name", "is empty; a Vault secret needs a name")]
    if not name.isprintable():
        return [Problem(ERROR, f"{where}: name", "holds a control, format or separator character (other than "
                        "the space), which Vault refuses in a path; rename the connection")]
    if any(segment in ("", ".", "..") for segment in name.split("/")):
        return [Problem(ERROR, f"{where}: name", "has an empty, `.` or `..` segment between slashes, which "
                        "Vault would store under another path; rename the connection")]
    if "/" in name:
        return [Problem(NOTE, f"{where}: name", "holds `/`: stored as FOLDER/NAME, which render reads only "
                        "with --recursive")]
    return []


def _check_duplicates(connections: list[Connection], out: list[Problem]) -> None:
    seen: dict[str, Connection] = {}
    for conn in connections:
        first = seen.setdefault(conn.name, conn)
        if first is not conn:
            out.append(Problem(ERROR, f"connection {_quoted(conn.name)}",
                               f"given by two secrets ({show(first.type)} and {show(conn.type)}); names must be "
                               "unique", code="name-duplicate"))


def _quoted(name: str) -> str:
    """'name' as the messages always quoted it, or show()'s escaped form when it needs escaping."""
    shown = show(name)
    return f"'{name}'" if shown == name else shown


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(type(value), "value")
