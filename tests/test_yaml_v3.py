"""The rendered file read by bruin's own YAML parser, Go's gopkg.in/yaml.v3, not only by ruamel.yaml.

tests/yamlv3/decode.go decodes a file with yaml.v3 into Go values and prints them tagged with their
Go type; these tests compare that with the secrets, value and type. It is built from Debian's
golang-go and golang-gopkg-yaml.v3-dev, which .ci/run installs; without them the tests are skipped
locally and fail in CI, so they cannot silently stop running there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bruin_materialize.validate import Connection
from testsupport.skips import GOPATH, go_yaml_v3
from testsupport.values import BASE_TEXT, HOSTILE, SCALARS, examples, merged_text, rendered, text, values

SOURCE = Path(__file__).resolve().parent / "yamlv3" / "decode.go"


@pytest.fixture(scope="session")
def yaml_v3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    message = go_yaml_v3()
    if message is not None:
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    go = shutil.which("go")
    assert go is not None
    out = tmp_path_factory.mktemp("yamlv3")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOCACHE": str(out / "cache")}
    subprocess.run([go, "build", "-o", str(out / "decode"), str(SOURCE)], check=True, env=env,
                   capture_output=True, cwd=out)
    return out / "decode"


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
