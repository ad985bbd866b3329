"""Whatever a secret holds comes back exactly when the rendered file is parsed: same values, same types,
no added structure. Parsed with ruamel.yaml as YAML 1.2, as bruin's yaml.v3 does.

Both writers are held to it: the jinja2 template (`render`) and the ruamel.yaml merge into the
project's own file (`merge`, with a base file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from bruin_materialize import yamltext
from bruin_materialize.cli import identical
from bruin_materialize.validate import Connection, Options, validate
from bruin_materialize.vault import RawSecret
from bruin_materialize.yamltext import MAX_KEY, to_yaml
from testsupport.values import BASE_TEXT, HOSTILE, SCALARS, expected, merged_text, rendered, text, values

WRITERS = ["template", "merge"]


def parse(text: str) -> Any:
    """Both of ruamel's loaders must agree with the data: `check` uses the C one when installed."""
    pure = YAML(typ="safe", pure=True).load(text)
    assert identical(yamltext.parse(text), pure)
    return pure


def round_trip(details: dict[str, Any], name: str = "conn", conn_type: str = "generic",
               environment: str = "default") -> None:
    conns = [Connection(conn_type, name, {"name": name, **details})]
    text = rendered(conns, environment, "kv/path (KV v2)")
    parsed = parse(text)
    assert identical(parsed, expected(conns, environment))


def written(writer: str, conns: list[Connection], tmp_path: Path) -> Any:
    """The connections `writer` wrote, parsed back, once the rest of its file is checked: the template
    writes one environment and nothing else; the merge adds "prod" and leaves the base's "dev" as it was."""
    if writer == "template":
        parsed = parse(rendered(conns, "default", "kv/p (KV v2)"))
        assert parsed["default_environment"] == "default"
        assert list(parsed["environments"]) == ["default"] and list(parsed["environments"]["default"]) == [
            "connections"]
        return parsed["environments"]["default"]["connections"]
    parsed = parse(merged_text(conns, BASE_TEXT, tmp_path))
    assert identical(parsed["environments"]["dev"], parse(BASE_TEXT)["environments"]["dev"])
    return parsed["environments"]["prod"]["connections"]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_values_round_trip(writer: str, value: str, tmp_path: Path) -> None:
    details = {"password": value, "nested": {"list": [value, {"k": value}]}, value[:150]: value}
    conns = [Connection("generic", value, {"name": value, **details}),
             Connection("postgres", value or "empty", {"name": value or "empty", "port": 5432, "host": value})]
    assert identical(written(writer, conns, tmp_path), {"generic": [conns[0].fields], "postgres": [conns[1].fields]})


def test_longest_key_yaml_allows_round_trips_and_a_longer_one_is_refused() -> None:
    longest = "k" * (MAX_KEY - 2)  # two quotes make MAX_KEY characters
    round_trip({longest: 1, "n": {longest: [longest]}}, conn_type="t" * (MAX_KEY - 2))
    outcome = validate([RawSecret("c", "kv/c", {"type": "generic", "details": {"n": {longest + "k": 1}}})],
                       None, Options())
    assert [p.line() for p in outcome.errors] == [
        f"kv/c: details.n: has a field name longer than the {MAX_KEY} characters YAML allows for a key"]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_scalars_keep_their_type(writer: str, value: Any, tmp_path: Path) -> None:
    conns = [Connection("generic", "conn", {"name": "conn", "v": value, "list": [value], "map": {"x": value}})]
    assert identical(written(writer, conns, tmp_path), {"generic": [conns[0].fields]})


def test_values_cannot_add_structure() -> None:
    evil = "x\n      snowflake:\n        - name: injected"
    conns = [Connection("postgres", "pg", {"name": "pg", "password": evil})]
    parsed = parse(rendered(conns, "default", "kv/x"))
    assert list(parsed["environments"]["default"]["connections"]) == ["postgres"]


def test_hostile_environment_and_type_names() -> None:
    round_trip({"a": 1}, conn_type="ty: pe\n- x", environment="env\n  # x: {")


def test_source_comment_stays_one_line() -> None:
    text = rendered([], "default", "kv/evil\nenvironments: {}")
    assert parse(text) == {"default_environment": "default", "environments": {"default": {"connections": {}}}}


def test_output_is_deterministic_and_grouped_by_type() -> None:
    secrets = [RawSecret(n, n, {"type": t, "details": {"z": 1, "a": 2}}) for n, t in
               [("b", "pg"), ("a", "sf"), ("a2", "pg")]]
    outcome = validate(secrets, None, Options())
    first = rendered(outcome.connections, "prod", "kv/x")
    second = rendered(validate(list(reversed(secrets)), None, Options()).connections, "prod", "kv/x")
    assert first == second
    parsed = parse(first)
    assert parsed["default_environment"] == "prod"
    assert [c["name"] for c in parsed["environments"]["prod"]["connections"]["pg"]] == ["a2", "b"]


def test_to_yaml_escapes_what_yaml_will_not_take_raw() -> None:
    assert to_yaml("\x85\u2028\ufeff\x7f") == '"\\u0085\\u2028\\ufeff\\u007f"'
    assert to_yaml("ü𝄞") == '"ü𝄞"'  # no surrogate-pair escapes: yaml.v3 refuses them


@pytest.mark.parametrize("writer", WRITERS)
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(secrets=st.dictionaries(text, st.dictionaries(text, values, max_size=6), min_size=1, max_size=4),
       conn_type=text.filter(str.strip))
def test_any_secrets_round_trip_one_connection_each(writer: str, secrets: dict[str, dict[str, Any]], conn_type: str,
                                                    tmp_path: Path) -> None:
    raw = [RawSecret(name, name, {"type": conn_type, "details": details}) for name, details in secrets.items()]
    outcome = validate(raw, None, Options(expand_env=True))
    assert outcome.errors == []
    connections = written(writer, outcome.connections, tmp_path)[conn_type]
    assert sorted(c["name"] for c in connections) == sorted(secrets)
    for conn in connections:
        expected = {"name": conn["name"], **{k: v for k, v in secrets[conn["name"]].items() if k != "name"}}
        assert identical(conn, expected)
