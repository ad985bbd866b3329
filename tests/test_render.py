"""Whatever a secret holds comes back exactly when the rendered file is parsed: same values, same types,
no added structure. Parsed with ruamel.yaml as YAML 1.2, as bruin's yaml.v3 does."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from bruin_materialize.cli import identical
from bruin_materialize.render import expected_document, render
from bruin_materialize import yamltext
from bruin_materialize.yamltext import MAX_KEY, to_yaml
from bruin_materialize.validate import INT64, Connection, Options, validate
from bruin_materialize.vault import RawSecret

EXAMPLES = 2000 if os.environ.get("CI") else 300

HOSTILE = [
    'quo"te', "it's", "a: b", "a:b", "- item", "# not a comment", "x #y", "line\nbreak", "crlf\r\n", "\ttab",
    "-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----\n", "unicodé ☃ 𝄞 中文", "{{ jinja }}",
    "{% raw %}", "{# c #}", "0123", "0x1F", "0o17", "yes", "no", "on", "off", "y", "n", "true", "False", "null",
    "Null", "~", "1e3", "1_000", ".inf", "-.inf", ".nan", "", " ", "  leading and trailing  ", "x" * 100_000,
    "&anchor", "*alias", "!!binary", "!tag", "%YAML 1.2", "---", "...", "|", ">", "@", "`", "[a, b]", "{a: b}",
    "\\", "\\n", "\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\u2028", "\u2029", "\ufeff", "\ufffe", "\uffff",
    "\x9f", "\u00a0", "2001-12-14", "12:30:45", "=", "<<", "? key",
]
SCALARS: list[Any] = [None, True, False, 0, -1, 5432, INT64[0], INT64[1], 0.0, -0.0, 1.5, 1e300, 5e-324, 1e16,
                      123456789.123]


def parse(text: str) -> Any:
    """Both of ruamel's loaders must agree with the data: `check` uses the C one when installed."""
    pure = YAML(typ="safe", pure=True).load(text)
    assert identical(yamltext.parse(text), pure)
    return pure


def round_trip(details: dict[str, Any], name: str = "conn", conn_type: str = "generic",
               environment: str = "default") -> None:
    conns = [Connection(conn_type, name, {"name": name, **details})]
    text = render(conns, environment, "kv/path (KV v2)")
    parsed = parse(text)
    assert identical(parsed, expected_document(conns, environment))


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_strings_round_trip(value: str) -> None:
    round_trip({"password": value, "nested": {"list": [value, {"k": value}]}, value[:150]: value}, name=value)


def test_longest_key_yaml_allows_round_trips_and_a_longer_one_is_refused() -> None:
    longest = "k" * (MAX_KEY - 2)  # two quotes make MAX_KEY characters
    round_trip({longest: 1, "n": {longest: [longest]}}, conn_type="t" * (MAX_KEY - 2))
    outcome = validate([RawSecret("c", "kv/c", {"type": "generic", "details": {"n": {longest + "k": 1}}})],
                       None, Options())
    assert [p.line() for p in outcome.errors] == [
        f"kv/c: details.n: has a field name longer than the {MAX_KEY} characters YAML allows for a key"]


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_scalars_keep_their_type(value: Any) -> None:
    round_trip({"v": value, "list": [value], "map": {"x": value}})


def test_values_cannot_add_structure() -> None:
    evil = "x\n      snowflake:\n        - name: injected"
    conns = [Connection("postgres", "pg", {"name": "pg", "password": evil})]
    parsed = parse(render(conns, "default", "kv/x"))
    assert list(parsed["environments"]["default"]["connections"]) == ["postgres"]


def test_hostile_environment_and_type_names() -> None:
    round_trip({"a": 1}, conn_type="ty: pe\n- x", environment="env\n  # x: {")


def test_source_comment_stays_one_line() -> None:
    text = render([], "default", "kv/evil\nenvironments: {}")
    assert parse(text) == {"default_environment": "default", "environments": {"default": {"connections": {}}}}


def test_output_is_deterministic_and_grouped_by_type() -> None:
    secrets = [RawSecret(n, n, {"type": t, "details": {"z": 1, "a": 2}}) for n, t in
               [("b", "pg"), ("a", "sf"), ("a2", "pg")]]
    outcome = validate(secrets, None, Options())
    first = render(outcome.connections, "prod", "kv/x")
    second = render(validate(list(reversed(secrets)), None, Options()).connections, "prod", "kv/x")
    assert first == second
    parsed = parse(first)
    assert parsed["default_environment"] == "prod"
    assert [c["name"] for c in parsed["environments"]["prod"]["connections"]["pg"]] == ["a2", "b"]


def test_to_yaml_escapes_what_yaml_will_not_take_raw() -> None:
    assert to_yaml("\x85\u2028\ufeff\x7f") == '"\\u0085\\u2028\\ufeff\\u007f"'
    assert to_yaml("ü𝄞") == '"ü𝄞"'  # no surrogate-pair escapes: yaml.v3 refuses them


# Text as Vault could hold it: any code point but lone surrogates (JSON cannot carry them to UTF-8).
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
scalars = st.none() | st.booleans() | st.integers(*INT64) | st.floats(allow_nan=False, allow_infinity=False) | text
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                      max_leaves=12)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secrets=st.dictionaries(text, st.dictionaries(text, values, max_size=6), min_size=1, max_size=4),
       conn_type=text.filter(str.strip))
def test_any_secrets_round_trip_one_connection_each(secrets: dict[str, dict[str, Any]], conn_type: str) -> None:
    raw = [RawSecret(name, name, {"type": conn_type, "details": details}) for name, details in secrets.items()]
    outcome = validate(raw, None, Options(expand_env=True))
    assert outcome.errors == []
    parsed = parse(render(outcome.connections, "default", "kv/p"))
    connections = parsed["environments"]["default"]["connections"][conn_type]
    assert sorted(c["name"] for c in connections) == sorted(secrets)
    for conn in connections:
        expected = {"name": conn["name"], **{k: v for k, v in secrets[conn["name"]].items() if k != "name"}}
        assert identical(conn, expected)
