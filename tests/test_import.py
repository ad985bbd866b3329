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
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from bruin_materialize.cli import identical, main
from bruin_materialize.importer import as_stored, shown
from bruin_materialize.paths import absolutize
from bruin_materialize.render import render_environments
from bruin_materialize.schema import load_schema_file
from bruin_materialize.settings import ImportJob, parse_settings
from bruin_materialize.validate import INT64, Connection
from testsupport.fault_proxy import FaultProxy
from testsupport.leak import LeakGuard
from testsupport.paths import MATERIALIZE, PACKAGED_SCHEMA, SHARED_SCHEMA
from testsupport.values import HOSTILE, examples, sample_value, text
from testsupport.wait import wait_until

PASSWORD = "imp-Pa55word-of-the-day"
OTHER_PASSWORD = "imp-Other-Pa55word-in-vault"
SCHEMA = load_schema_file(SHARED_SCHEMA if SHARED_SCHEMA.is_file() else PACKAGED_SCHEMA)
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
        argv.append(f"--environment-path={env}={path}")  # one argument: an environment may start with -
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
        details = {field: sample_value(SCHEMA, sub, field) for field, sub in spec.get("properties", {}).items()
                   if field != "name"}
        conns.append(Connection(conn_type, f"c-{conn_type}", {"name": f"c-{conn_type}", **details}))
    file = write_file(tmp_path, render_environments([("default", conns)], "default", "test"))
    assert main(["import", "-q", str(file), "--mount-path", kv.mount, "--path", "all"]) == 0
    assert len(listing(kv, "all")) == len(SCHEMA.types)
    got = rendered(tmp_path, kv.mount, [("default", "all")])["default"]
    assert got == {c.type: [c.fields] for c in conns}


# Connection names Vault stores as they are: printable, no empty, `.` or `..` segment.
_name_chars = st.characters(categories=("L", "M", "N", "P", "S"), include_characters=" ", exclude_characters="/")
_name_part = st.text(_name_chars, min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))
_names = _name_part | st.tuples(_name_part, _name_part).map("/".join) | st.sampled_from(
    ["star*", "plus+", "q?x", "h#x", "pct%41", "sp ace", " lead", "trail ", "uni☃𝄞", "a/b", "...", "x..y"])
_env_names = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="=\x00"), min_size=1,
                     max_size=8).filter(lambda s: s.strip() == s)
# Values the import treats specially: ${NAME} (kept, noted), relative paths (made absolute), paths left alone.
_SPECIAL = ["pre-${API_TOKEN}-post", "${HOME}/x.db", "data/lake.db", "../up/key.pem", "./x", ":memory:", "md:db",
            "s3://bucket/key", "C:\\keys\\k.json", "/abs/path"]
_strings = st.sampled_from(HOSTILE + _SPECIAL) | text
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
    if kind == "array":  # deeper than two levels: still of the type the schema gives
        return st.just([])
    if kind == "object" or "properties" in spec:
        return st.just({})
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


@settings(max_examples=examples(1 / 12, at_least=25),
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
    assert main([*argv, *(f"--environment-path={e}={p}" for e, p in pairs)]) == 0
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


@settings(max_examples=examples(1 / 10, at_least=20),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(numbers=st.lists(st.integers(*INT64) | _floats, min_size=1, max_size=20))
def test_as_stored_is_what_each_kv_version_gives_back(kv: Any, numbers: list[int | float]) -> None:
    """The model of KV v2's number handling the import relies on, against the real server."""
    path = f"numbers{next(_paths)}"
    kv.put("", path, {"n": numbers, "nested": {"n": numbers}})
    assert identical(read(kv, path), as_stored({"n": numbers, "nested": {"n": numbers}}, kv.version))


# --- nothing written when anything is invalid -------------------------------------------------------------

INVALID_TEXT = f"""\
environments:
  default:
    connections:
      postgres:
        - name: bad-port
          host: db.internal
          port: fifty
          password: "{PASSWORD}"
        - name: good
          host: db.internal
          port: 5432
          password: "{PASSWORD}"
        - host: no-name
          password: "{PASSWORD}"
        - name: when
          host: db.internal
          password: "{PASSWORD}"
          database: 2026-11-29
      duckdb:
        - name: lake
          path: data/lake.db
      postgress:
        - name: typo
          host: db.internal
"""


def test_invalid_connections_exit_4_listing_each_and_nothing_is_written(
        kv: Any, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write_file(tmp_path, INVALID_TEXT)
    assert main(["import", str(file), "--mount-path", kv.mount, "--path", "bruin"]) == 4
    where = f"{file}: default"
    errors = [line for line in err_lines(capsys) if line.startswith("materialize: error:")]
    assert errors == [
        f"materialize: error: {where}/bad-port: details.port (line 7): is not an integer to bruin's parser; bruin "
        "would fail to load the file",
        f"materialize: error: {where}: connections.postgres[2] (line 13): must be a mapping with a string `name`",
        f"materialize: error: {where}/typo: type: unknown connection type 'postgress' (did you mean postgres?); "
        f"bruin knows {len(SCHEMA.types)} types",
        f"materialize: error: {where}/lake: details.path: is a relative path, which bruin resolves against "
        f"{file.parent}; pass --relative-paths absolute (resolve it there) or keep (leave it to render, which "
        "resolves it against the project root)",
        "materialize: error: 4 invalid secret fields (listed above); nothing was written",
    ]
    assert listing(kv, "") == []


@pytest.mark.parametrize(("name", "problem"), [
    ("", "is empty; a Vault secret needs a name"),
    *[(n, "has an empty, `.` or `..` segment between slashes, which Vault would store under another path; rename "
          "the connection") for n in (".", "..", "a//b", "/a", "a/", "a/./b", "a/../b", "a/..")],
    *[(n, "holds a control, format or separator character (other than the space), which Vault refuses in a path; "
          "rename the connection") for n in ("ctl\x01", "nl\nx", "tab\tx", "del\x7f", "c1\x85", "nbsp\u00a0",
                                             "zw\u200b", "ls\u2028", "bom\ufeff", "em\u2003space")],
], ids=repr)
def test_names_vault_cannot_hold_are_refused(kv2: Any, env: dict[str, str], tmp_path: Path, name: str,
                                             problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    conns = [Connection("generic", name, {"name": name, "value": PASSWORD}),
             Connection("generic", "fine", {"name": "fine", "value": PASSWORD})]
    file = write_file(tmp_path, render_environments([("default", conns)], "default", "test"))
    assert main(["import", str(file), "--mount-path", kv2.mount, "--path", "bruin"]) == 4
    errors = [line for line in err_lines(capsys) if line.startswith("materialize: error:")]
    assert errors == [f"materialize: error: {file}: default/{shown(name)}: name: {problem}",
                      "materialize: error: 1 invalid secret field (listed above); nothing was written"]
    assert shown(name).isprintable()  # no control character reaches the terminal
    assert listing(kv2, "") == []


def test_integers_kv2_would_round_are_refused_and_kv1_keeps_them(kv: Any, env: dict[str, str], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    file = write_file(tmp_path, "environments:\n  default:\n    connections:\n      generic:\n        - name: big\n"
                                f"          value: x\n          max_concurrent_assets: {2**63 - 1}\n"
                                "      google_cloud_platform:\n        - name: bq\n          max_query_cost: 1.0\n")
    code = main(["import", str(file), "--mount-path", kv.mount, "--path", "bruin"])
    lines = err_lines(capsys)
    if kv.version == 1:
        assert code == 0
        assert read(kv, "bruin/big")["details"] == {"value": "x", "max_concurrent_assets": 2**63 - 1}
        assert identical(read(kv, "bruin/bq")["details"], {"max_query_cost": 1.0})
        return
    assert code == 4
    assert lines[-3:] == [
        f"materialize: error: {kv.mount}/bruin/big: details.max_concurrent_assets: is an integer beyond 2**53, "
        "which KV v2 stores rounded (as a float64); use a KV v1 mount, or a string if the field takes one",
        f"materialize: {kv.mount}/bruin/bq: details.max_query_cost: KV v2 stores this number as an integer (without "
        "its `.0`); bruin reads it alike into a number field",
        "materialize: error: 1 invalid secret field (listed above); nothing was written",
    ]
    assert listing(kv, "") == []


def test_relative_paths_made_absolute_or_kept_on_request(kv2: Any, env: dict[str, str], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    file = write_file(tmp_path, "environments:\n  default:\n    connections:\n      duckdb:\n        - name: lake\n"
                                "          path: data/lake.db\n        - name: mem\n          path: ':memory:'\n")
    argv = ["import", str(file), "--mount-path", kv2.mount]
    assert main([*argv, "--path", "abs", "--relative-paths", "absolute"]) == 0
    assert f"materialize: {file}: default/lake: details.path: relative path made absolute against {file.parent}" \
        in err_lines(capsys)
    assert read(kv2, "abs/lake")["details"] == {"path": str(file.parent / "data" / "lake.db")}
    assert read(kv2, "abs/mem")["details"] == {"path": ":memory:"}
    assert main([*argv, "--path", "keep", "--relative-paths", "keep"]) == 0
    assert f"materialize: {file}: default/lake: details.path: relative path kept as it is; render resolves it " \
           "against the project root" in err_lines(capsys)
    assert read(kv2, "keep/lake")["details"] == {"path": "data/lake.db"}


def test_env_references_are_kept_with_a_note(kv2: Any, env: dict[str, str], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    file = write_file(tmp_path, "environments:\n  default:\n    connections:\n      generic:\n        - name: api\n"
                                "          value: pre-${API_TOKEN}-post\n          plain: $HOME\n")
    assert main(["import", str(file), "--mount-path", kv2.mount, "--path", "bruin"]) == 0
    assert f"materialize: {file}: default/api: details.value: holds ${{...}}: kept as written; bruin expands it on " \
           "load, so render needs --expand-env" in err_lines(capsys)
    assert read(kv2, "bruin/api")["details"] == {"value": "pre-${API_TOKEN}-post", "plain": "$HOME"}


# --- existing secrets ----------------------------------------------------------------------------------


def test_existing_secrets_are_left_alone_unless_overwrite(kv: Any, env: dict[str, str], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    file = write_file(tmp_path, FILE_TEXT)
    argv = ["import", str(file), "--mount-path", kv.mount, "--path", "bruin"]
    kv.put("bruin", "warehouse", {"type": "postgres", "details": {"host": "db.internal", "port": 5432,
                                                                  "password": OTHER_PASSWORD, "extra": 1}})
    kv.put("bruin", "api", {"type": "generic", "details": {"value": "tok_{{ not a template }}_0123"}})
    assert main(argv) == 5
    lines = err_lines(capsys)
    m = kv.mount
    assert lines[-2:] == [
        f"materialize: warning: {m}/bruin/warehouse (postgres) exists and differs (database, extra, password, "
        "ssl_mode, username); left alone: pass --overwrite to replace it",
        f"materialize: import into {m}/bruin (KV v{kv.version}): 1 already the same, 1 left alone",
    ]
    assert read(kv, "bruin/warehouse")["details"]["password"] == OTHER_PASSWORD
    assert main([*argv, "--overwrite"]) == 0
    assert err_lines(capsys)[-2:] == [
        f"materialize: replaced {m}/bruin/warehouse (postgres)",
        f"materialize: import into {m}/bruin (KV v{kv.version}): 1 replaced, 1 already the same",
    ]
    assert read(kv, "bruin/warehouse")["details"]["password"] == PASSWORD
    if kv.version == 2:
        assert (version_of(kv, "bruin/warehouse"), version_of(kv, "bruin/api")) == (2, 1)
    assert main(argv) == 0  # idempotent: a second import finds everything the same
    assert err_lines(capsys)[-1] == f"materialize: import into {m}/bruin (KV v{kv.version}): 2 already the same"


def test_dry_run_shows_names_types_and_fields_and_writes_nothing(kv: Any, env: dict[str, str], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    file = write_file(tmp_path, FILE_TEXT)
    kv.put("bruin", "warehouse", {"type": "postgres", "details": {"host": "db.internal", "port": 5432,
                                                                  "password": OTHER_PASSWORD}})
    argv = ["import", str(file), "--mount-path", kv.mount, "--path", "bruin", "--dry-run"]
    assert main(argv) == 5
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "+ prod/api (generic)",
        "! prod/warehouse (postgres): database, password, ssl_mode, username (exists; left alone without "
        "--overwrite)",
    ]
    assert captured.err.splitlines()[-1] == "materialize: import --dry-run: 1 to create, 1 to leave alone; " \
                                            "nothing written"
    assert main([*argv, "--overwrite"]) == 5
    assert capsys.readouterr().out.splitlines()[1] == "~ prod/warehouse (postgres): database, password, ssl_mode, " \
                                                      "username"
    assert listing(kv, "bruin") == ["warehouse"]
    assert read(kv, "bruin/warehouse")["details"]["password"] == OTHER_PASSWORD
    assert main(["import", "-q", str(file), "--mount-path", kv.mount, "--path", "bruin", "--overwrite"]) == 0
    assert main([*argv, "-q"]) == 0  # nothing would change
    assert capsys.readouterr().out == ""


def test_two_imports_at_once_one_wins_the_other_reports(kv2: Any, env: dict[str, str], tmp_path: Path,
                                                        fault_proxy: FaultProxy,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A's write is held by the proxy after A found the path free; B imports meanwhile; A's
    check-and-set then fails, and A reports it instead of replacing B's secret."""
    text_a = "environments:\n  default:\n    connections:\n      generic:\n        - name: api\n          value: {}\n"
    file_a = write_file(tmp_path, text_a.format(PASSWORD), "a.bruin.yml")
    file_b = write_file(tmp_path, text_a.format(OTHER_PASSWORD), "b.bruin.yml")
    target = f"/v1/{kv2.mount}/data/bruin/api"
    hold = 5.0
    fault_proxy.add_rule("delay", path=target, method="POST", seconds=hold)
    argv = ["import", "--mount-path", kv2.mount, "--path", "bruin"]
    a = subprocess.Popen([sys.executable, str(MATERIALIZE), *argv, str(file_a)], text=True,
                         env={**os.environ, "BRUIN_VAULT_HOST": fault_proxy.addr},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def a_wrote() -> bool:
            assert a.poll() is None, "A never wrote"
            return fault_proxy.requests(target, "POST") > 0

        wait_until(a_wrote, 30, 0.02, what="A's write reaching the proxy")
        held_since = fault_proxy.request_times(target, "POST")[0]
        assert main([*argv, "-q", str(file_b)]) == 0  # B, straight to the server
        assert time.monotonic() - held_since < hold  # B was done while A's write was still held
        out, err = a.communicate(timeout=60)
    finally:
        a.kill()
    sys.stderr.write(err)  # for the leak guard
    assert (a.returncode, out) == (5, "")
    assert err.splitlines()[-2:] == [
        f"materialize: warning: {kv2.mount}/bruin/api (generic) was created meanwhile by someone else; left alone",
        f"materialize: import into {kv2.mount}/bruin (KV v2): 1 written meanwhile by someone else",
    ]
    assert read(kv2, "bruin/api")["details"] == {"value": OTHER_PASSWORD}
    assert version_of(kv2, "bruin/api") == 1


# --- the policy the README documents --------------------------------------------------------------------

POLICY = {
    1: 'path "{mount}/bruin/*" {{ capabilities = ["create", "read", "update"] }}',
    2: 'path "{mount}/data/bruin/*" {{ capabilities = ["create", "read", "update"] }}',
}


def test_the_documented_policy_is_enough_and_update_is_needed_to_replace(
        kv: Any, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    file = write_file(tmp_path, FILE_TEXT)
    argv = ["import", "-q", str(file), "--mount-path", kv.mount, "--path", "bruin"]
    monkeypatch.setenv("BRUIN_VAULT_TOKEN", kv.server.token(POLICY[kv.version].format(mount=kv.mount)))
    assert main(argv) == 0
    assert main([*argv, "--overwrite"]) == 0
    no_update = POLICY[kv.version].format(mount=kv.mount).replace(', "update"', "")
    monkeypatch.setenv("BRUIN_VAULT_TOKEN", kv.server.token(no_update))
    kv.put("bruin", "api", {"type": "generic", "details": {"value": OTHER_PASSWORD}})
    assert main([*argv, "--overwrite"]) == 3
    data = f"{kv.mount}/data/bruin" if kv.version == 2 else f"{kv.mount}/bruin"
    assert err_lines(capsys) == [
        f"materialize: error: permission denied writing {kv.mount}/bruin/api: the token's policy needs `create` "
        f"(and `update` to replace secrets) on {data}/*"]
    monkeypatch.setenv("BRUIN_VAULT_TOKEN", kv.server.token(no_update.replace(', "read"', "")))
    assert main(argv) == 3
    assert err_lines(capsys)[0].startswith(f"materialize: error: permission denied reading {kv.mount}/bruin/")


def test_the_readme_migration_leaves_plan_nothing_but_what_vault_does_not_hold(
        kv: Any, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write_file(tmp_path, FILE_TEXT)
    where = ["-e", "prod", "--path", "bruin/prod", "--mount-path", kv.mount]
    assert main(["import", str(file), *where, "--dry-run", "-q"]) == 5
    assert capsys.readouterr().out.splitlines() == ["+ prod/api (generic)", "+ prod/warehouse (postgres)"]
    assert main(["import", str(file), *where, "-q"]) == 0
    assert main(["plan", *where, "--no-base", "--against", str(file), "-q"]) == 5
    assert capsys.readouterr().out.splitlines() == ["- staging (environment)", "- staging/warehouse (postgres)"]


def test_a_deleted_current_version_is_an_existing_secret(kv2: Any, env: dict[str, str], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    file = write_file(tmp_path, FILE_TEXT)
    kv2.put("bruin", "api", {"type": "generic", "details": {"value": OTHER_PASSWORD}})
    kv2.server.client.secrets.kv.v2.delete_latest_version_of_secret(path="bruin/api", mount_point=kv2.mount)
    argv = ["import", str(file), "--mount-path", kv2.mount, "--path", "bruin"]
    assert main(argv) == 5
    assert f"materialize: warning: {kv2.mount}/bruin/api (generic) exists and differs (its current version is " \
           "deleted); left alone: pass --overwrite to replace it" in err_lines(capsys)
    assert main([*argv, "--overwrite", "-q"]) == 0
    assert read(kv2, "bruin/api")["details"] == {"value": "tok_{{ not a template }}_0123"}
    assert version_of(kv2, "bruin/api") == 2


@pytest.mark.parametrize(("argv", "message"), [
    (["--environment-path", "prod=p", "--environment-path", "dev=d"], "{file} has no environment dev (it has prod, "
                                                                      "staging)"),
    (["--environment-path", "prod=p", "-e", "staging"], "--environment staging is not one of the environment paths"),
    (["--path", "p", "--relative-paths", "absolut"],
     "materialize.py import: argument --relative-paths: invalid choice: 'absolut' (choose from 'absolute', 'keep') "
     "(see --help)"),
])
def test_bad_import_settings_exit_2_before_any_vault_call(kv2: Any, env: dict[str, str], tmp_path: Path,
                                                          argv: list[str], message: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    file = write_file(tmp_path, FILE_TEXT)
    assert main(["import", str(file), "--mount-path", kv2.mount, *argv]) == 2
    assert err_lines(capsys) == [f"materialize: error: {message.format(file=file)}"]
    assert listing(kv2, "") == []


@pytest.mark.parametrize(("text_", "message"), [
    ("- a list\n", "{file} must be a bruin config: a mapping with `environments`, like a .bruin.yml"),
    ("environments:\n  default: [1]\n", "{file}: environment default must be a mapping"),
    ("environments:\n  default:\n    connections:\n      postgres: {name: x}\n",
     "{file}: environment default: connections.postgres must be a list"),
    (f"environments:\n  default:\n    connections:\n      generic:\n        - name: a\n          value: '{PASSWORD}\n",
     "the file to import {file} is not valid YAML at line 7: found unexpected end of stream while scanning a quoted "
     "scalar"),
])
def test_a_file_that_is_not_a_bruin_config_is_exit_2(kv2: Any, env: dict[str, str], tmp_path: Path, text_: str,
                                                     message: str, capsys: pytest.CaptureFixture[str]) -> None:
    file = write_file(tmp_path, text_)
    assert main(["import", str(file), "--mount-path", kv2.mount, "--path", "p"]) == 2
    assert err_lines(capsys) == [f"materialize: error: {message.format(file=file)}"]


def test_import_settings(tmp_path: Path) -> None:
    base = {"BRUIN_VAULT_HOST": "http://127.0.0.1:1", "BRUIN_VAULT_MOUNT_PATH": "kv", "BRUIN_VAULT_PATH": "p",
            "BRUIN_VAULT_TOKEN": "t"}
    s = parse_settings(["import", "conf/.bruin.yml", "--overwrite", "--dry-run", "--relative-paths", "keep", "-e",
                        "prod"], base, cwd=tmp_path)
    assert (s.command, s.importing, s.selected_environment) == (
        "import", ImportJob(tmp_path / "conf" / ".bruin.yml", True, True, "keep"), "prod")
    assert parse_settings(["import", "/f.yml"], base, cwd=tmp_path).importing == ImportJob(Path("/f.yml"), False,
                                                                                          False, None)
    assert parse_settings(["check"], base, cwd=tmp_path).importing is None


def test_the_demo_imports_its_example_file_and_renders_it_masked(leak_guard: LeakGuard) -> None:
    """scripts/demo's program, without bruin on PATH: import, check, render, the masked file."""
    demo = MATERIALIZE.parent / "demo"
    example = YAML(typ="safe", pure=True).load((demo / "example.bruin.yml").read_text(encoding="utf-8"))
    for conns in example["environments"]["default"]["connections"].values():
        for conn in conns:
            # The credentials; other values ("warehouse") are also names, which output may show.
            _register(leak_guard, {k: v for k, v in conn.items()
                                   if k in ("password", "private_key", "service_account_json", "value")})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRUIN_", "VAULT_", "BAO_"))}
    proc = subprocess.run([sys.executable, str(demo / "demo.py")], env={**env, "PATH": os.defpath}, text=True,
                          capture_output=True, timeout=120, check=False)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    assert proc.returncode == 0
    assert "materialize: import into secret/bruin (KV v2): 5 created" in proc.stderr.splitlines()
    assert "      - {name: warehouse, database: '*****', host: '*****', password: '*****', " in proc.stdout


def _demo_env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("BRUIN_", "VAULT_", "BAO_"))},
            "PATH": os.defpath}


def test_the_demos_help_describes_it_and_runs_nothing() -> None:
    demo = MATERIALIZE.parent / "scripts" / "demo"
    proc = subprocess.run(["bash", str(demo), "--help"], env=_demo_env(), text=True, capture_output=True, timeout=30,
                          check=False)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: scripts/demo [-h] [--keep]")
    assert "--keep" in proc.stdout and "OpenBao dev server at" not in proc.stdout


def test_the_demo_keeps_its_server_and_says_how_to_use_it(leak_guard: LeakGuard, tmp_path: Path) -> None:
    demo = MATERIALIZE.parent / "demo" / "demo.py"
    proc = subprocess.run([sys.executable, str(demo), "--keep"], env=_demo_env(), text=True, capture_output=True,
                          timeout=120, check=False)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    exports = dict(item.split("=", 1) for line in proc.stdout.splitlines() if line.startswith("export ")
                   for item in line.removeprefix("export ").split())
    [pid] = [int(word.rstrip(").")) for line in proc.stdout.splitlines() if line.startswith("  kill ")
             for word in line.split()[1:2]]
    try:
        assert proc.returncode == 0
        assert [line for line in proc.stdout.splitlines() if line.startswith("export ")] == [
            f"export BRUIN_VAULT_HOST={exports['BRUIN_VAULT_HOST']}",
            f"export BRUIN_VAULT_TOKEN_FILE={exports['BRUIN_VAULT_TOKEN_FILE']}",
            "export BRUIN_VAULT_MOUNT_PATH=secret BRUIN_VAULT_PATH=bruin"]
        assert "Next steps:" in proc.stdout
        token_file = Path(exports["BRUIN_VAULT_TOKEN_FILE"])
        assert token_file.stat().st_mode & 0o777 == 0o600
        leak_guard.add(token_file.read_text(encoding="utf-8").strip())  # never printed
        # The server outlived the demo: the exported settings work.
        check = subprocess.run([sys.executable, str(MATERIALIZE), "check"], env={**_demo_env(), **exports},
                               text=True, capture_output=True, timeout=60, check=False)
        sys.stderr.write(check.stderr)
        assert check.returncode == 0, check.stderr
        assert "5 connections" in check.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
        shutil.rmtree(Path(exports["BRUIN_VAULT_TOKEN_FILE"]).parent, ignore_errors=True)


# --- values as bruin's parser reads them -----------------------------------------------------------------

AS_WRITTEN = """\
environments:
  default:
    connections:
      postgres:
        - name: 0012
          host: 0x1F
          port: 0100
          username: 1e3
          password: 0012345
          database: 1.50
          schema: yes
          ssl_mode: 2026-11-29
          pool_max_conns: 1_0
      generic:
        - name: api
          value: ~
          0x10: "x"
"""


def test_scalars_are_read_into_bruins_field_types_never_changed(kv: Any, env: dict[str, str], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A string field keeps the scalar's text as written; an int field takes yaml.v3's reading (`0100` is
    octal 64, `_` dropped); null stays null; nothing is noted as converted."""
    file = write_file(tmp_path, AS_WRITTEN)
    assert main(["import", str(file), "--mount-path", kv.mount, "--path", "w"]) == 0
    assert not [line for line in err_lines(capsys) if "convert" in line]
    assert read(kv, "w/0012") == {"type": "postgres", "details": {
        "host": "0x1F", "port": 64, "username": "1e3", "password": "0012345", "database": "1.50", "schema": "yes",
        "ssl_mode": "2026-11-29", "pool_max_conns": 10}}
    assert read(kv, "w/api") == {"type": "generic", "details": {"value": None, "0x10": "x"}}


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("port", "5432.5", "is not a whole number within 64 bits, which bruin's integer field would cut or refuse; "
                       "write the integer bruin should get"),
    ("port", "yes", "is not an integer to bruin's parser; bruin would fail to load the file"),
    ("port", "1e30", "is not a whole number within 64 bits, which bruin's integer field would cut or refuse; "
                     "write the integer bruin should get"),
    ("password", "!!binary aGVsbG8=", "has a YAML tag (!!...), which bruin's parser reads its own way; remove it; "
                                      "quote it to keep it as text"),
    ("extra", "2026-11-29", "is a date, a merge key, NaN or an infinity to bruin's parser, which a Vault secret "
                            "(JSON) cannot hold; quote it to keep it as text"),
    ("extra", "{1: a}", "has a key that is a number, a boolean or a date to bruin's parser, not text; quote it to "
                        "keep it as text"),
    ("extra", "{[1]: a}", "has a key that is not plain text; quote it to keep it as text"),
    ("extra", ".nan", "is a date, a merge key, NaN or an infinity to bruin's parser, which a Vault secret (JSON) "
                      "cannot hold; quote it to keep it as text"),
])
def test_values_bruin_reads_otherwise_are_refused_naming_the_field(kv2: Any, env: dict[str, str], tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str], field: str,
                                                                   value: str, problem: str) -> None:
    file = write_file(tmp_path, f"environments:\n  default:\n    connections:\n      postgres:\n        - name: pg\n"
                                f"          {field}: {value}\n")
    assert main(["import", str(file), "--mount-path", kv2.mount, "--path", "r"]) == 4
    errors = [line for line in err_lines(capsys) if line.startswith("materialize: error:")]
    assert errors == [f"materialize: error: {file}: default/pg: details.{field} (line 6): {problem}",
                      "materialize: error: 1 invalid secret field (listed above); nothing was written"]
    assert listing(kv2, "") == []


def _demo(tmp_path: Path, leak_guard: LeakGuard) -> tuple[subprocess.Popen[str], Path]:
    """demo/demo.py started with its own runtime directory (where it renders), stdout a pipe to read."""
    demo = MATERIALIZE.parent / "demo"
    example = YAML(typ="safe", pure=True).load((demo / "example.bruin.yml").read_text(encoding="utf-8"))
    for conns in example["environments"]["default"]["connections"].values():
        for conn in conns:
            _register(leak_guard, {k: v for k, v in conn.items()
                                   if k in ("password", "private_key", "service_account_json", "value")})
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRUIN_", "VAULT_", "BAO_"))}
    proc = subprocess.Popen([sys.executable, str(demo / "demo.py")], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**env, "PATH": os.defpath, "XDG_RUNTIME_DIR": str(runtime)})
    return proc, runtime


def _read_until(proc: subprocess.Popen[str], fragment: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if fragment in line:
            return
    raise AssertionError(f"the demo ended before printing {fragment!r}")


def test_the_demo_removes_its_rendered_file_when_its_reader_leaves(tmp_path: Path, leak_guard: LeakGuard) -> None:
    """`scripts/demo | head`: the masked file meets a closed pipe; the rendered credentials still go."""
    proc, runtime = _demo(tmp_path, leak_guard)
    _read_until(proc, "values masked")
    assert proc.stdout is not None
    proc.stdout.close()  # as head does once it has its lines
    _, err = proc.communicate(timeout=60)
    sys.stderr.write(err)
    assert proc.returncode == 141, err
    assert "Traceback" not in err
    assert list(runtime.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_demo_removes_its_rendered_file_when_interrupted(tmp_path: Path, leak_guard: LeakGuard,
                                                             sig: signal.Signals) -> None:
    proc, runtime = _demo(tmp_path, leak_guard)
    _read_until(proc, "materialize.py render")
    wait_until(lambda: any(runtime.iterdir()), 30, what="the demo's render directory")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    sys.stdout.write(out)
    sys.stderr.write(err)
    assert proc.returncode == 128 + sig, err
    assert list(runtime.iterdir()) == []


@pytest.mark.parametrize(("key", "code"), [("1", 0), ("true", 0), ("0x1F", 0), ("[a, b]", 4), ("{k: v}", 4)])
def test_keys_that_are_not_text_to_yaml_1_2_are_taken_as_bruin_takes_them(
        kv2: Any, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, code: int) -> None:
    """bruin decodes a connection's keys into its struct's field names, as text: `1:` is the field "1"
    (unknown, so ignored by bruin); a collection as a key names no field at all and is refused."""
    file = write_file(tmp_path, f"environments:\n  default:\n    connections:\n      generic:\n        - name: api\n"
                                f"          value: v\n          {key}: x\n")
    assert main(["import", str(file), "--mount-path", kv2.mount, "--path", "k"]) == code
    if code == 0:
        assert read(kv2, "k/api") == {"type": "generic", "details": {"value": "v", key: "x"}}
    else:
        assert listing(kv2, "") == []
        field = 'details."(a key that is a list or a mapping)" (line 7)'
        assert f"{file}: default/api: {field}: has a key that is not plain text; quote it to keep it as text" \
               in capsys.readouterr().err


@pytest.mark.parametrize(("field", "value", "level"), [
    ("max_query_cost", "2.0", "note"), ("max_query_cost", "-0.0", "error"), ("extra", "2.0", "error"),
    ("extra", "[1.0]", "error"), ("extra", "2.5", None)])
def test_floats_kv2_gives_back_as_integers_are_refused_where_bruin_would_see_the_difference(
        kv2: Any, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: str,
        level: str | None) -> None:
    """KV v2 keeps no `.0`: a number field reads 2 as 2.0 alike, an untyped one would get an integer."""
    file = write_file(tmp_path, "environments:\n  default:\n    connections:\n      google_cloud_platform:\n"
                                f"        - name: bq\n          {field}: {value}\n")
    code = main(["import", str(file), "--mount-path", kv2.mount, "--path", "f"])
    lines = [line for line in err_lines(capsys) if "KV v2 " in line]
    if level is None:
        assert (code, lines) == (0, [])
    elif level == "note":
        assert code == 0 and lines == [f"materialize: {kv2.mount}/f/bq: details.{field}: KV v2 stores this number as "
                                       "an integer (without its `.0`); bruin reads it alike into a number field"]
    else:
        assert code == 4 and len(lines) == 1 and lines[0].startswith(f"materialize: error: {kv2.mount}/f/bq: details.")
        assert "is a whole float that KV v2 gives back as an integer" in lines[0]


REFERENCE_SHAPED = ("is a mapping with a `$vault` key, which render would read as a reference to another Vault "
                    "secret, not as this mapping bruin read; import writes no reference")


@pytest.mark.parametrize(("conn_type", "field", "value", "shown"), [
    ("spark", "options", '{"$vault": "kv/data/a/pg", "field": "type"}', "details.options"),
    ("generic", "other", '{"$vault": "kv/data/a/pg", "field": "type"}', "details.other"),
    ("generic", "other", '[x, {"$vault": "database/creds/ro"}]', "details.other[1]"),
    ("generic", "other", '{inner: {"$vault": 1, "field": 2, "more": 3}}', "details.other.inner"),
], ids=["typed-map", "unknown-field", "in-a-list-malformed", "nested-malformed"])
def test_a_mapping_shaped_as_a_reference_is_refused_by_import(kv2: Any, env: dict[str, str], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str], conn_type: str,
                                                               field: str, value: str, shown: str) -> None:
    """bruin knows no `$vault`: it read a literal mapping. Stored as it is, render would replace it by
    another secret's value, so the file bruin gets after import and render would not be the one it read."""
    file = write_file(tmp_path, f"environments:\n  default:\n    connections:\n      {conn_type}:\n"
                                f"        - name: c\n          value: v\n          {field}: {value}\n")
    assert main(["import", str(file), "--mount-path", kv2.mount, "--path", "r"]) == 4
    errors = [line for line in err_lines(capsys) if line.startswith("materialize: error:")]
    assert errors == [f"materialize: error: {file}: default/c: {shown}: {REFERENCE_SHAPED}",
                      "materialize: error: 1 invalid secret field (listed above); nothing was written"]
    assert listing(kv2, "") == []
