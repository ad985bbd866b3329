"""Validation is pure: every problem names the secret and the field, never the value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bruin_materialize import validate as validate_module
from bruin_materialize.schema import Schema, load_schema_file
from bruin_materialize.validate import ERROR, NOTE, WARNING, Options, Outcome, validate
from bruin_materialize.vault import RawSecret

SECRET = "hunter2-Very-Secret"


@pytest.fixture(scope="module")
def schema(schema_path: Path) -> Schema:
    return load_schema_file(schema_path)


def check(data: Any, schema: Schema | None = None, name: str = "pg", **options: Any) -> Outcome:
    return validate([RawSecret(name, f"kv/bruin/{name}", data)], schema, Options(**options))


def lines(outcome: Outcome, level: str) -> list[str]:
    return [p.line() for p in outcome.problems if p.level == level]


def pg(**details: Any) -> dict[str, Any]:
    base = {"host": "db", "port": 5432, "username": "u", "password": SECRET, "database": "d"}
    return {"type": "postgres", "details": {**base, **details}}


def test_valid_secret_becomes_a_connection_named_by_its_key(schema: Schema) -> None:
    out = check(pg(), schema)
    assert out.errors == []
    [conn] = out.connections
    assert (conn.type, conn.name) == ("postgres", "pg")
    assert list(conn.fields)[0] == "name" and conn.fields["password"] == SECRET


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("just text", "kv/bruin/pg: the secret must be a JSON object with `type` and `details`, not string"),
        ({"details": {}}, "kv/bruin/pg: type: is missing; set it to a bruin connection type such as postgres"),
        ({"type": "", "details": {}},
         "kv/bruin/pg: type: must be a non-empty string, not string; set it to a bruin connection type such as "
         "postgres"),
        ({"type": 5, "details": {}},
         "kv/bruin/pg: type: must be a non-empty string, not integer; set it to a bruin connection type such as "
         "postgres"),
        ({"type": "postgres"}, "kv/bruin/pg: details: is missing; the connection's fields go in a `details` object"),
        ({"type": "postgres", "details": "{\"host\": 1}"},
         "kv/bruin/pg: details: is a string, not an object; write the secret as JSON "
         "(e.g. `bao kv put PATH @secret.json`)"),
        ({"type": "postgres", "details": [1]}, "kv/bruin/pg: details: must be an object, not array"),
    ],
)
def test_shape_errors(data: Any, message: str) -> None:
    out = check(data)
    assert lines(out, ERROR) == [message]
    assert out.connections == []


def test_unknown_type_suggests_the_closest(schema: Schema) -> None:
    out = check({"type": "postgress", "details": {}}, schema)
    assert lines(out, ERROR)[0].startswith("kv/bruin/pg: type: unknown connection type 'postgress' (did you "
                                           "mean postgres?)")


def test_lossless_conversions_are_made_and_reported(schema: Schema) -> None:
    out = check(pg(port="5432", pool_max_conns=4.0), schema)
    assert out.errors == []
    assert out.connections[0].fields["port"] == 5432
    assert out.connections[0].fields["pool_max_conns"] == 4
    assert lines(out, NOTE) == ["kv/bruin/pg: details.port: string converted to integer",
                                "kv/bruin/pg: details.pool_max_conns: number converted to integer"]


@pytest.mark.parametrize("password", [1.5, 1e3, -0.0, 1e-7])
def test_a_float_where_bruin_wants_text_is_an_error_not_converted(schema: Schema, password: float) -> None:
    """JSON keeps 1.50 as 1.5: the text the owner wrote is unknown, so it is never guessed."""
    out = check(pg(password=password), schema)
    assert lines(out, ERROR) == ["kv/bruin/pg: details.password: expected string, got a number with a fraction or "
                                 "exponent, whose written form JSON does not keep; store it in Vault as a string"]
    assert out.connections == []


def test_an_integer_where_bruin_wants_text_is_its_digits(schema: Schema) -> None:
    out = check(pg(password=12345, username=True), schema)
    assert out.errors == []
    assert (out.connections[0].fields["password"], out.connections[0].fields["username"]) == ("12345", "true")


@pytest.mark.parametrize("port", ["0123", "54 32", "5432.5", True, [5432], {"n": 1}, 2**63, "1e3"])
def test_lossy_or_impossible_conversions_are_errors(schema: Schema, port: Any) -> None:
    out = check(pg(port=port), schema)
    [error] = lines(out, ERROR)
    assert error.startswith("kv/bruin/pg: details.port: expected integer, got ")
    assert error.endswith("; bruin would fail to load the whole file")
    assert out.connections == []


def test_string_field_takes_a_number_as_its_text(schema: Schema) -> None:
    out = check(pg(host=10, database=True), schema)
    assert out.connections[0].fields["host"] == "10"
    assert out.connections[0].fields["database"] == "true"


def test_unknown_and_missing_fields_are_warnings_or_strict_errors(schema: Schema) -> None:
    data = {"type": "postgres", "details": {"host": "db", "colour": "blue", "password": SECRET}}
    loose = check(data, schema)
    assert loose.errors == [] and len(loose.connections) == 1
    assert "kv/bruin/pg: details: fields unknown to bruin's schema (bruin ignores them): colour" in lines(loose,
                                                                                                       WARNING)
    assert any("fields the schema marks required are missing: " in line for line in lines(loose, WARNING))
    strict = check(data, schema, strict=True)
    assert len(strict.errors) == 2 and strict.connections == []


def test_nested_objects_and_maps_are_checked(schema: Schema) -> None:
    data = {"type": "iceberg", "details": {"catalog": {"type": "glue", "port": "http"},
                                           "table_properties": {"a": "x", "b": ["y"]}}}
    out = check(data, schema)
    assert lines(out, ERROR) == [
        "kv/bruin/pg: details.catalog.port: expected integer, got string; bruin would fail to load the whole file",
        "kv/bruin/pg: details.table_properties.b: expected string, got array; bruin would fail to load the whole "
        "file"]


def test_name_inside_details_is_overridden_with_a_warning(schema: Schema) -> None:
    out = check(pg(name="other"), schema)
    assert out.connections[0].fields["name"] == "pg"
    assert lines(out, WARNING)[0] == "kv/bruin/pg: details.name: differs from the secret's name; the secret's " \
                                     "name is used"


def test_two_secrets_with_the_same_name_are_an_error() -> None:
    secrets = [RawSecret("pg", "kv/a/pg", pg()), RawSecret("pg", "kv/b/pg", {"type": "mysql", "details": {}})]
    out = validate(secrets, None, Options())
    assert lines(out, ERROR) == ["connection 'pg': given by two secrets (postgres and mysql); names must be unique"]


def test_env_references_are_refused_when_bruin_would_expand_them() -> None:
    value = "pa${HOME}ss"
    known = check(pg(password=value), env_names=frozenset({"HOME"}))
    assert lines(known, ERROR) == ["kv/bruin/pg: details.password: holds ${...} naming an environment variable; "
                                   "bruin would replace it on load. Change the value, or pass --expand-env if "
                                   "that is wanted"]
    assert check(pg(password=value), env_names=frozenset({"PATH"})).errors == []
    assert len(check(pg(password=value)).errors) == 1  # environment unknown: any name could be set
    assert check(pg(password=value), expand_env=True).errors == []
    nested = check({"type": "generic", "details": {"x": {"y": ["${A}"]}}}, env_names=frozenset({"A"}))
    assert lines(nested, ERROR)[0].startswith("kv/bruin/pg: details.x.y[0]: holds ${...}")
    assert len(check(pg(), name="a${A}", env_names=frozenset({"A"})).errors) == 1


def test_lone_surrogates_are_refused() -> None:
    out = check(pg(password="\ud800x"))
    assert lines(out, ERROR) == ["kv/bruin/pg: details.password: holds a lone UTF-16 surrogate, which cannot be "
                                 "written as UTF-8"]


def test_deleted_secret_is_skipped_with_a_warning_or_refused_when_strict() -> None:
    out = check(None)
    assert out.connections == [] and out.errors == []
    assert lines(out, WARNING)[0].startswith("kv/bruin/pg: its current version is deleted or destroyed; skipped")
    assert len(check(None, strict=True).errors) == 1


def test_connections_are_sorted_by_type_then_name() -> None:
    secrets = [RawSecret(n, n, {"type": t, "details": {}}) for n, t in [("b", "z"), ("c", "a"), ("a", "z")]]
    out = validate(secrets, None, Options())
    assert [(c.type, c.name) for c in out.connections] == [("a", "c"), ("z", "a"), ("z", "b")]


def test_no_message_holds_a_value(schema: Schema) -> None:
    hostile = {"type": "postgres", "name": SECRET,
               "details": {"port": SECRET, "name": SECRET, "password": "${" + SECRET + "}", "x": [SECRET]}}
    out = check(hostile, schema, strict=True)
    text = json.dumps([p.line() for p in out.problems])
    assert out.problems and SECRET not in text


def deep(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for i in range(depth):
        value = {"n": value} if i % 2 else [value]
    return value


@pytest.mark.parametrize("depth", [31, 33, 5000])
def test_nesting_beyond_32_levels_is_an_error_naming_the_secret(schema: Schema, depth: int) -> None:
    # The secret itself is level 1 and details level 2: `extra` adds `depth` more below them.
    out = check(pg(extra=deep(depth)), schema)
    if depth + 2 <= 32:
        assert out.errors == []
    else:
        assert lines(out, ERROR) == ["kv/bruin/pg: is nested more than 32 levels deep; no bruin connection is"]
        assert out.connections == []


def test_a_secret_beyond_one_mib_is_an_error(schema: Schema) -> None:
    out = check(pg(blob=["a" * 1024] * 1024), schema)
    assert lines(out, ERROR) == ["kv/bruin/pg: is larger than 1 MiB; no bruin connection is"]
    assert check(pg(blob="a" * 1000_000), schema).errors == []


# A plain secret (ASCII, short keys, no `${`) skips the per-field key and text checks: the skip must
# never change an outcome. Keys and texts near each rule's edge: long, escaped, non-ASCII, surrogates.
_TEXT = st.one_of(st.sampled_from(["${A}", "${}", "a${B}c", "\ud800", "\x01" * 200, "é", "a" * 170, "a" * 171,
                                   "\x01" * 171, "$", "{A}"]),
                  st.text(st.characters(max_codepoint=127), max_size=8), st.text(max_size=8))
_VALUE = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), _TEXT),
                      lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_TEXT, inner, max_size=3)),
                      max_leaves=8)


@example(details={"\x01" * 200: 1}, conn_type="postgres", name="pg", expand_env=False)  # ASCII, escapes too long
@example(details={"a" * 171: 1}, conn_type="postgres", name="pg", expand_env=False)
@example(details={"é": 1, "x": ["é"]}, conn_type="postgres", name="pg", expand_env=False)
@example(details={"x": {"y": ["${A}"]}}, conn_type="postgres", name="pg", expand_env=False)
@example(details={"x": "\ud800"}, conn_type="postgres", name="pg", expand_env=True)
@given(details=st.dictionaries(_TEXT, _VALUE, max_size=4), conn_type=st.sampled_from(["postgres", "generic", "é"]),
       name=st.sampled_from(["pg", "a${A}", "\u00e9"]), expand_env=st.booleans())
def test_a_plain_secret_skips_only_checks_it_cannot_fail(details: dict[str, Any], conn_type: str, name: str,
                                                        expand_env: bool) -> None:
    data = {"type": conn_type, "details": details}
    fast = check(data, name=name, expand_env=expand_env, env_names=frozenset({"A", "B"}))
    survey = validate_module._survey
    try:
        validate_module._survey = lambda value: (survey(value)[0], False)  # type: ignore[assignment]
        slow = check(data, name=name, expand_env=expand_env, env_names=frozenset({"A", "B"}))
    finally:
        validate_module._survey = survey
    assert fast == slow
