"""`import FILE` against a real OpenBao server, KV v1 and v2: render's inverse.

A generated config (every connection type of bruin's schema, hostile values, several environments)
imported then rendered comes back the same, value for value and type for type; invalid input,
existing secrets, two imports at once, --dry-run and names Vault cannot hold are each checked with
the exact exit code and message, and Vault's content before and after.
"""

from __future__ import annotations

import copy
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest
from conftest import MATERIALIZE, SHARED_SCHEMA, SUBSET_SCHEMA, LeakGuard
from fault_proxy import FaultProxy, fault_proxy_fixture  # noqa: F401  (the `fault_proxy` fixture)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from test_cli import _sample
from test_render import EXAMPLES, HOSTILE, text

from bruin_materialize.cli import identical, main
from bruin_materialize.importer import as_stored
from bruin_materialize.paths import PATH_FIELDS, absolutize
from bruin_materialize.render import render_environments
from bruin_materialize.schema import Schema, load_schema_file
from bruin_materialize.validate import INT64, Connection

PASSWORD = "imp-Pa55word-of-the-day"
OTHER_PASSWORD = "imp-Other-Pa55word-in-vault"
SCHEMA = load_schema_file(SHARED_SCHEMA if SHARED_SCHEMA.is_file() else SUBSET_SCHEMA)
_paths = itertools.count()  # a fresh Vault path per hypothesis example: the mount is per test

FILE_TEXT = f"""\
default_environment: prod
environments:
  prod:
    connections:
      postgres:
        - name: warehouse
          host: db.internal
          port: 5432
          username: app
          password: "{PASSWORD}"
          database: '0123'
          ssl_mode: require
      generic:
        - name: api
          value: tok_{{{{ not a template }}}}_0123
  staging:
    connections:
      postgres:
        - name: warehouse
          host: db.staging
          port: 5433
          password: "{PASSWORD}-staging"
"""


@pytest.fixture
def env(vault_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, schema_path: Path, tmp_path: Path,
        leak_guard: LeakGuard) -> dict[str, str]:
    monkeypatch.setenv("BRUIN_MATERIALIZE_SCHEMA", str(schema_path))
    monkeypatch.setenv("PATH", os.defpath)  # no bruin
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # the project root: where render resolves a relative path
    for value in (PASSWORD, f"{PASSWORD}-staging", OTHER_PASSWORD, "tok_{{ not a template }}_0123"):
        leak_guard.add(value)
    return vault_env


def write_file(tmp_path: Path, text_: str, name: str = ".bruin.yml") -> Path:
    path = tmp_path / "project" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text_, encoding="utf-8")
    return path


def listing(kv: Any, path: str) -> list[str]:
    engine = kv.server.client.secrets.kv.v2 if kv.version == 2 else kv.server.client.secrets.kv.v1
    try:
        keys: list[str] = engine.list_secrets(path=path, mount_point=kv.mount)["data"]["keys"]
    except hvac.exceptions.InvalidPath:
        return []
    return keys


def read(kv: Any, path: str) -> Any:
    client = kv.server.client
    if kv.version == 2:
        return client.secrets.kv.v2.read_secret_version(path=path, mount_point=kv.mount,
                                                        raise_on_deleted_version=True)["data"]["data"]
    return client.secrets.kv.v1.read_secret(path=path, mount_point=kv.mount)["data"]


def version_of(kv: Any, path: str) -> int:
    meta = kv.server.client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=kv.mount)
    return int(meta["data"]["current_version"])


def rendered(tmp_path: Path, mount: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """What render makes of the Vault paths now: environment -> type -> connections, sorted by name."""
    out = tmp_path / f"rendered-{next(_paths)}" / "bruin.yml"
    argv = ["render", "-q", "-o", str(out), "--mount-path", mount, "--no-base", "--recursive", "--expand-env"]
    for env, path in pairs:
        argv += ["--environment-path", f"{env}={path}"]
    assert main(argv) == 0
    doc = YAML(typ="safe", pure=True).load(out.read_text(encoding="utf-8"))
    return {env: doc["environments"][env]["connections"] for env, _ in pairs}


def err_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.splitlines()


# --- round trips ---------------------------------------------------------------------------------------


def test_import_then_render_gives_the_file_back(kv: Any, env: dict[str, str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    file = write_file(tmp_path, FILE_TEXT)
    pairs = [("prod", "bruin/prod"), ("staging", "bruin/staging")]
    argv = ["import", str(file), "--mount-path", kv.mount]
    assert main([*argv, "--environment-path", "prod=bruin/prod", "--environment-path", "staging=bruin/staging"]) == 0
    lines = err_lines(capsys)
    m = kv.mount
    assert lines[-4:] == [
        f"materialize: created {m}/bruin/prod/api (generic)",
        f"materialize: created {m}/bruin/prod/warehouse (postgres)",
        f"materialize: created {m}/bruin/staging/warehouse (postgres)",
        f"materialize: import into {m}/bruin/prod, {m}/bruin/staging (KV v{kv.version}): 3 created",
    ]
    assert read(kv, "bruin/prod/warehouse") == {"type": "postgres", "details": {
        "host": "db.internal", "port": 5432, "username": "app", "password": PASSWORD, "database": "0123",
        "ssl_mode": "require"}}
    source = YAML(typ="safe", pure=True).load(FILE_TEXT)
    assert rendered(tmp_path, kv.mount, pairs) == {e: source["environments"][e]["connections"] for e, _ in pairs}


def test_one_path_takes_the_files_default_environment_or_the_selected_one(
        kv2: Any, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write_file(tmp_path, FILE_TEXT)
    assert main(["import", str(file), "--mount-path", kv2.mount, "--path", "p"]) == 0
    assert f"materialize: {file}: environment staging not imported (pass --environment-path staging=SUBPATH to " \
           "import it)" in err_lines(capsys)
    assert listing(kv2, "p") == ["api", "warehouse"]
    assert main(["import", str(file), "--mount-path", kv2.mount, "--path", "s", "-e", "staging", "-q"]) == 0
    assert read(kv2, "s/warehouse")["details"]["host"] == "db.staging"
    assert main(["import", str(file), "--mount-path", kv2.mount, "--path", "x", "-e", "dev"]) == 2
    assert err_lines(capsys) == [f"materialize: error: {file} has no environment dev (it has prod, staging)"]
    assert listing(kv2, "x") == []


def test_every_schema_type_round_trips(kv: Any, env: dict[str, str], tmp_path: Path) -> None:
    """One connection per type of bruin's schema, every field set with its JSON type."""
    conns = []
    for conn_type, spec in SCHEMA.types.items():
        details = {field: _sample(SCHEMA, sub, field) for field, sub in spec.get("properties", {}).items()
                   if field != "name"}
        conns.append(Connection(conn_type, f"c-{conn_type}", {"name": f"c-{conn_type}", **details}))
    file = write_file(tmp_path, render_environments([("default", conns)], "default", "test"))
    assert main(["import", "-q", str(file), "--mount-path", kv.mount, "--path", "all"]) == 0
    assert len(listing(kv, "all")) == len(SCHEMA.types)
    got = rendered(tmp_path, kv.mount, [("default", "all")])["default"]
    assert got == {c.type: [c.fields] for c in conns}


# Connection names Vault stores as they are: printable, no empty, `.` or `..` segment.
_name_part = st.text(st.characters(categories=("L", "M", "N", "P", "S"), include_characters=" ",
                                   exclude_characters="/"), min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))
_names = _name_part | st.tuples(_name_part, _name_part).map("/".join) | st.sampled_from(
    ["star*", "plus+", "q?x", "h#x", "pct%41", "sp ace", " lead", "trail ", "uni☃𝄞", "a/b", "...", "x..y"])
_env_names = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="=\x00"), min_size=1,
                     max_size=8).filter(lambda s: s.strip() == s)
_strings = st.sampled_from(HOSTILE) | text
# Integers KV v2 holds exactly (it keeps numbers as float64): larger ones have a test of their own.
_ints = st.integers(-(2**53), 2**53)
_floats = st.floats(allow_nan=False, allow_infinity=False)
_values = st.recursive(st.none() | st.booleans() | _ints | _floats | _strings,
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                       max_leaves=8)


def _value(spec: Any, field: str, depth: int = 0) -> st.SearchStrategy[Any]:
    """A value of the JSON type bruin's schema gives the field; nested shapes to two levels."""
    spec = SCHEMA.resolve(spec)
    kind = spec.get("type")
    simple = {"integer": _ints, "boolean": st.booleans(), "string": _strings, "number": _ints | _floats}
    if kind in simple:
        return simple[kind]
    if kind == "array" and depth < 2:
        return st.lists(_value(spec.get("items", {}), field, depth + 1), max_size=2)
    if (kind == "object" or "properties" in spec) and depth < 2:
        props = spec.get("properties") or {}
        if props:
            return st.fixed_dictionaries({}, optional={k: _value(v, k, depth + 1) for k, v in props.items()})
        extra = spec.get("additionalProperties")
        return st.dictionaries(text, _value(extra, field, depth + 1) if isinstance(extra, dict) else _values,
                               max_size=2)
    return _values


@st.composite
def _connection(draw: st.DrawFn, name: str) -> Connection:
    conn_type = draw(st.sampled_from(sorted(SCHEMA.types)))
    props = {k: v for k, v in SCHEMA.types[conn_type].get("properties", {}).items() if k != "name"}
    details = draw(st.fixed_dictionaries({}, optional={k: _value(v, k) for k, v in props.items()}))
    return Connection(conn_type, name, {"name": name, **details})


@st.composite
def _configs(draw: st.DrawFn) -> list[tuple[str, list[Connection]]]:
    environments = draw(st.lists(_env_names, min_size=1, max_size=3, unique=True))
    config = []
    for env in environments:
        names = draw(st.lists(_names, min_size=1, max_size=4, unique=True))  # render refuses an empty path
        config.append((env, [draw(_connection(name)) for name in names]))
    return config


@settings(max_examples=max(10, EXAMPLES // 30), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(config=_configs())
def test_any_config_imported_then_rendered_comes_back(kv: Any, env: dict[str, str], tmp_path: Path,
                                                      leak_guard: LeakGuard,
                                                      config: list[tuple[str, list[Connection]]]) -> None:
    for _, conns in config:
        for conn in conns:
            _register(leak_guard, {k: v for k, v in conn.fields.items() if k != "name"})
    run = next(_paths)
    file = write_file(tmp_path, render_environments(config, config[0][0], "test"), f"{run}.bruin.yml")
    pairs = [(env_name, f"rt{run}/e{i}") for i, (env_name, _) in enumerate(config)]
    argv = ["import", "-q", str(file), "--mount-path", kv.mount, "--relative-paths", "absolute"]
    assert main([*argv, *(a for e, p in pairs for a in ("--environment-path", f"{e}={p}"))]) == 0
    got = rendered(tmp_path, kv.mount, pairs)
    for env_name, conns in config:
        expected: dict[str, list[dict[str, Any]]] = {}
        for conn in sorted(conns, key=lambda c: (c.type, c.name)):
            fields = copy.deepcopy(conn.fields)
            absolutize(conn.type, fields, file.parent)  # what --relative-paths absolute asked for
            expected.setdefault(conn.type, []).append(as_stored(fields, kv.version))
        assert identical(got[env_name], expected)


def _register(leak_guard: LeakGuard, value: Any) -> None:
    """Every generated string long enough not to match output by chance is a secret to the leak guard."""
    if isinstance(value, str) and len(value) >= 8:
        leak_guard.add(value)
    elif isinstance(value, dict):
        for item in value.values():
            _register(leak_guard, item)
    elif isinstance(value, list):
        for item in value:
            _register(leak_guard, item)


@settings(max_examples=max(20, EXAMPLES // 10), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(numbers=st.lists(st.integers(*INT64) | _floats, min_size=1, max_size=20))
def test_as_stored_is_what_each_kv_version_gives_back(kv: Any, numbers: list[int | float]) -> None:
    """The model of KV v2's number handling the import relies on, against the real server."""
    path = f"numbers{next(_paths)}"
    kv.put("", path, {"n": numbers, "nested": {"n": numbers}})
    assert identical(read(kv, path), as_stored({"n": numbers, "nested": {"n": numbers}}, kv.version))
