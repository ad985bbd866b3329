"""The rendered file read by bruin's own YAML parser, Go's gopkg.in/yaml.v3, not only by ruamel.yaml.

tests/yamlv3/decode.go decodes a file with yaml.v3 into Go values and prints them tagged with their
Go type; these tests compare that with the secrets, value and type. It is built from Debian's
golang-go and golang-gopkg-yaml.v3-dev, which .ci/run installs; without them the tests are skipped
locally and fail in CI, so they cannot silently stop running there.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bruin_materialize.cli import main
from bruin_materialize.validate import Connection
from testsupport.skips import GOPATH, go_yaml_v3, require
from testsupport.values import BASE_TEXT, HOSTILE, SCALARS, examples, merged_text, rendered, text, values

SOURCE = Path(__file__).resolve().parent / "yamlv3" / "decode.go"
TYPED_SOURCE = Path(__file__).resolve().parent / "yamlv3" / "typed" / "typed.go"


def go_build(source: Path, out: Path) -> Path:
    require(go_yaml_v3())
    go = shutil.which("go")
    assert go is not None
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOCACHE": str(out / "cache")}
    subprocess.run([go, "build", "-o", str(out / source.stem), str(source)], check=True, env=env,
                   capture_output=True, cwd=out)
    return out / source.stem


@pytest.fixture(scope="session")
def yaml_v3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return go_build(SOURCE, tmp_path_factory.mktemp("yamlv3"))


@pytest.fixture(scope="session")
def yaml_v3_typed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/yamlv3/typed: a config decoded into bruin's field types, as bruin decodes it."""
    return go_build(TYPED_SOURCE, tmp_path_factory.mktemp("yamlv3typed"))


def go_load(decoder: Path, text: str, tmp_path: Path) -> Any:
    path = tmp_path / "bruin.yml"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run([str(decoder), str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]


def same(go: dict[str, Any], value: Any) -> bool:
    """Does yaml.v3's tagged value hold `value`, with the matching type?"""
    [(kind, got)] = go.items()
    if value is None:
        return kind == "null"
    if isinstance(value, bool):
        return kind == "bool" and got is value
    if isinstance(value, int):
        return kind == "int" and int(got) == value
    if isinstance(value, float):
        return kind == "float" and float(got) == value
    if isinstance(value, str):
        return kind == "str" and got == value
    if isinstance(value, list):
        return kind == "seq" and len(got) == len(value) and all(same(g, v) for g, v in zip(got, value, strict=True))
    if isinstance(value, dict):
        return kind == "map" and got.keys() == value.keys() and all(same(got[k], value[k]) for k in value)
    raise AssertionError(f"unexpected {type(value).__name__}")


def rendered_connections(decoder: Path, conns: list[Connection], tmp_path: Path) -> Any:
    doc = go_load(decoder, rendered(conns, "default", "kv/p (KV v2)"), tmp_path)
    return doc["map"]["environments"]["map"]["default"]["map"]["connections"]


def merged_connections(decoder: Path, conns: list[Connection], tmp_path: Path) -> Any:
    doc = go_load(decoder, merged_text(conns, BASE_TEXT, tmp_path), tmp_path)
    return doc["map"]["environments"]["map"]["prod"]["map"]["connections"]


WRITTEN = {"template": rendered_connections, "merge": merged_connections}
# Every hostile value through the template; every fourth through the merge, whose runs are slower.
HOSTILE_CASES = [("template", value) for value in HOSTILE] + [("merge", value) for value in HOSTILE[::4]]


@pytest.mark.parametrize(("writer", "value"), HOSTILE_CASES,
                         ids=[f"{writer}-{i}" for i, (writer, _) in enumerate(HOSTILE_CASES)])
def test_hostile_strings_read_back_by_yaml_v3(yaml_v3: Path, tmp_path: Path, writer: str, value: str) -> None:
    fields = {"name": value, "password": value, "nested": {"list": [value, {"k": value}]}, value[:150]: value}
    got = WRITTEN[writer](yaml_v3, [Connection("generic", value, fields)], tmp_path)
    assert same(got, {"generic": [fields]})


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_scalars_keep_their_type_in_yaml_v3(yaml_v3: Path, tmp_path: Path, value: Any) -> None:
    fields = {"name": "c", "v": value, "list": [value], "map": {"x": value}}
    got = rendered_connections(yaml_v3, [Connection("generic", "c", fields)], tmp_path)
    assert same(got, {"generic": [fields]})


@settings(max_examples=examples(1 / 4, at_least=100),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(details=st.dictionaries(text, values, max_size=6), name=text)
def test_any_details_read_back_by_yaml_v3(yaml_v3: Path, tmp_path: Path, details: dict[str, Any],
                                          name: str) -> None:
    fields = {"name": name, **{k: v for k, v in details.items() if k != "name"}}
    got = rendered_connections(yaml_v3, [Connection("generic", name, fields)], tmp_path)
    assert same(got, {"generic": [fields]})


def test_a_tab_before_a_comment_is_read_as_yaml_v3_reads_it(yaml_v3: Path, tmp_path: Path) -> None:
    """`name: x<TAB># c` is YAML 1.2 (tabs separate as spaces do there) and bruin loads it: so does the base file."""
    from bruin_materialize import merge

    text = ("default_environment: dev\nenvironments:\n  dev:\t# the team's\n    connections:\n      duckdb:\n"
            "        - name: x\t# c\n          path: /a \t \n")
    go = go_load(yaml_v3, text, tmp_path)
    assert go["map"]["environments"]["map"]["dev"]["map"]["connections"]["map"]["duckdb"]["seq"][0] == {
        "map": {"name": {"str": "x"}, "path": {"str": "/a"}}}
    base = tmp_path / "base.yml"
    base.write_text(text)
    loaded = merge.load_base(base)
    assert dict(loaded.doc["environments"]["dev"]["connections"]["duckdb"][0]) == {"name": "x", "path": "/a"}
    written = merge.dump(loaded.doc, "# h")
    assert "# the team's" in written and "x # c" in written  # the comments stay; the tab is written as a space


# --- import reads a file as bruin reads it ---------------------------------------------------------------

# Plain scalars YAML readers disagree on: YAML 1.1 and 1.2, yaml.v3's own rules, Go's and Python's numbers.
AMBIGUOUS = ["0012345", "0x1F", "0X1f", "0o17", "0b101", "-0b11", "0100", "08", "09.5", "1_000", "0x_1F", "+5",
             "-0", "-0.", "-0.0", "1e3", "1E+3", "1.50", ".5", "-.5", "._5", "1e400", "1e-400", "+.inf", "-.Inf",
             ".nan", "~",
             "null", "Null", "yes", "no", "on", "off", "y", "N", "true", "False", "TRUE", "2001-12-14",
             "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10", "12:30:45", "1:20", "0.", "00", "0",
             "9223372036854775807", "9223372036854775808", "18446744073709551616", "-9223372036854775809", "1.0",
             "5432.9", "0x8000000000000000", "0b", "+", "0o8", "1__0", "<<", "abc", "0012345abc"]
_ambiguous = st.sampled_from(AMBIGUOUS) | st.from_regex(
    r"[+-]?(0[xXoObB])?[0-9_]{1,8}(\.[0-9_]{0,3})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)
# google_cloud_platform has a field of each type; kalshi's query_params is a map of strings; `extra`
# is unknown to bruin (an untyped value, as bruin would ignore it).
GCP_FIELDS = ("project_id", "location", "max_billable_bytes", "max_query_cost",
              "use_application_default_credentials", "extra")


def config_text(values: list[tuple[str, str]]) -> str:
    """A connection per (field, value): one ambiguous value each, so that one refusal hides no other."""
    lines = ["default_environment: default", "environments:", "  default:", "    connections:",
             "      google_cloud_platform:"]
    for i, (field, value) in enumerate(values):
        lines += [f"        - name: c{i}", f"          {field}: {value}"]
    lines += ["      kalshi:", "        - name: k", "          query_params:"]
    lines.extend(f"            q{i}: {value}" for i, (_, value) in enumerate(values))
    return "\n".join(lines) + "\n"


def typed(decoder: Path, schema: Path, file: Path) -> Any:
    proc = subprocess.run([str(decoder), str(schema), str(file)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def refused_somewhere(value: Any) -> bool:
    if isinstance(value, dict):
        return "error" in value or any(refused_somewhere(v) for v in value.values())
    return isinstance(value, list) and any(refused_somewhere(v) for v in value)


_runs = itertools.count()


@settings(max_examples=examples(1 / 20, at_least=15),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.tuples(st.sampled_from(GCP_FIELDS), _ambiguous), min_size=1, max_size=3))
def test_import_then_render_gives_bruin_the_same_typed_values(yaml_v3_typed: Path, kv: Any, vault_env: Any,
                                                              schema_path: Path, tmp_path: Path,
                                                              values: list[tuple[str, str]]) -> None:
    """yaml.v3 decodes FILE into bruin's field types; import then render must give the same typed values,
    or import refuses with exit 4: never a silent difference (KV v2 included, which keeps no float's `.0`)."""
    run = next(_runs)
    file = tmp_path / f"{run}.bruin.yml"
    file.write_text(config_text(values), encoding="utf-8")
    before = typed(yaml_v3_typed, schema_path, file)
    common = ["--mount-path", kv.mount, "--path", f"v3/{run}", "--schema", str(schema_path), "-q"]
    code = main(["import", str(file), *common])
    if refused_somewhere(before):
        assert code == 4  # bruin could not load FILE: import must not store what it cannot know
        return
    assert code in (0, 4)
    if code == 0:
        out = tmp_path / f"{run}.rendered" / "bruin.yml"
        assert main(["render", "-o", str(out), "--no-base", *common]) == 0
        assert typed(yaml_v3_typed, schema_path, out) == before


def test_import_takes_string_fields_as_written_in_bruins_parser(yaml_v3_typed: Path, kv1: Any, vault_env: Any,
                                                                schema_path: Path, tmp_path: Path) -> None:
    """The values that YAML 1.2 readers change, as bruin's string, int, float and bool fields take them."""
    values = list(zip(GCP_FIELDS, ("0012345", "1.50", "0100", "1e3", "yes", "0x1F"), strict=True))
    file = tmp_path / "fixed.bruin.yml"
    file.write_text(config_text(values), encoding="utf-8")
    before = typed(yaml_v3_typed, schema_path, file)
    assert [c["map"] for c in before["default"]["google_cloud_platform"]] == [
        {"name": {"str": f"c{i}"}, field: value} for i, (field, value) in enumerate([
            ("project_id", {"str": "0012345"}), ("location", {"str": "1.50"}), ("max_billable_bytes", {"int": "64"}),
            ("max_query_cost", {"float": "1000"}), ("use_application_default_credentials", {"bool": True}),
            ("extra", {"int": "31"})])]
    assert before["default"]["kalshi"][0]["map"]["query_params"]["map"]["q0"] == {"str": "0012345"}
    common = ["--mount-path", kv1.mount, "--path", "fixed", "--schema", str(schema_path), "-q"]
    assert main(["import", str(file), *common]) == 0
    out = tmp_path / "rendered" / "bruin.yml"
    assert main(["render", "-o", str(out), "--no-base", *common]) == 0
    assert typed(yaml_v3_typed, schema_path, out) == before
