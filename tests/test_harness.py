"""Tests of the test harness itself: the leak guard, the fake bruin and the OpenBao fixtures."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hvac
import hvac.exceptions
import pytest

from testsupport.paths import REPO_DIR, TESTS_DIR

if TYPE_CHECKING:
    from testsupport.harness import KV, BaoServer, FakeBruin
    from testsupport.leak import LeakGuard

CONFTEST = TESTS_DIR / "conftest.py"


# --- leak guard ----------------------------------------------------------------------------------


def test_leak_guard_fails_tests_that_print_a_secret(
    pytester: pytest.Pytester, leak_guard: LeakGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Random values, so that a leak found in the output cannot come from this file's source.
    secret = f"leaked-{secrets.token_hex(8)}"
    forgotten = f"forgotten-{secrets.token_hex(8)}"
    leak_guard.add(secret)  # the inner run's output is echoed here: this guard checks it too
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    monkeypatch.setenv("PYTHONPATH", str(REPO_DIR))  # the inner run's conftest imports testsupport
    pytester.makepyfile(test_inner=textwrap.dedent(f"""
        import logging

        def test_prints(leak_guard):
            leak_guard.add({secret!r})
            print("value:", {secret!r})

        def test_asserts(leak_guard):
            leak_guard.add({secret!r})
            assert {secret!r} == "something else"

        def test_logs(leak_guard, caplog):
            leak_guard.add({secret!r})
            logging.getLogger("inner").warning("value: %s", {secret!r})

        def test_registers_only(leak_guard):
            leak_guard.add({forgotten!r})

        def test_prints_a_value_registered_by_an_earlier_test():
            print("value:", {forgotten!r})
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    output = result.stdout.str() + result.stderr.str()

    result.assert_outcomes(failed=3, passed=2)
    assert secret not in output
    assert forgotten in output  # values are forgotten between tests
    result.stdout.fnmatch_lines([
        "*LEAK GUARD: a registered secret value appeared in: Captured stdout call.*",
        "*LEAK GUARD: a registered secret value appeared in: the failure report.*",
        "*LEAK GUARD: * appeared in: Captured log call, caplog records (call).*",
    ])


def test_leak_guard_finds_escaped_forms(leak_guard: LeakGuard) -> None:
    leak_guard.add('pa"ss\\word')
    assert leak_guard.find_in(json.dumps({"password": 'pa"ss\\word'}))
    assert leak_guard.find_in(repr('pa"ss\\word'))
    assert leak_guard.redact('x pa"ss\\word y') == "x <redacted secret> y"
    assert not leak_guard.find_in("pass word")


# --- fake bruin ----------------------------------------------------------------------------------

PG_PASSWORD = "pg-password-1234"
POSTGRES: dict[str, Any] = {
    "name": "pg", "host": "db.internal", "port": 5432, "username": "app",
    "password": PG_PASSWORD, "database": "analytics",
}


@pytest.fixture
def bruin(
    fake_bruin: FakeBruin, monkeypatch: pytest.MonkeyPatch, leak_guard: LeakGuard
) -> FakeBruin:
    """The fake bruin, with none of the variables that change how it loads the config."""
    for name in ("BRUIN_CONFIG_FILE", "BRUIN_CONFIG_FILE_CONTENT", "BRUIN_SECRETS_BACKEND",
                 "FAKE_BRUIN_EXIT"):
        monkeypatch.delenv(name, raising=False)
    leak_guard.add(PG_PASSWORD)  # the fake must never print it
    return fake_bruin


def write_config(directory: Path, connections: dict[str, Any], name: str = ".bruin.yml") -> Path:
    config = {"default_environment": "dev", "environments": {"dev": {"connections": connections}}}
    path = directory / name
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML 1.2
    return path


def run_bruin(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["bruin", *args], capture_output=True, text=True, timeout=30, cwd=cwd)
    print(proc.stdout, end="")  # to the captured output, where the leak guard looks
    print(proc.stderr, end="")
    return proc


def test_fake_bruin_accepts_an_int_in_an_integer_field(bruin: FakeBruin, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"postgres": [POSTGRES]})

    proc = run_bruin("run", "--config-file", str(config))

    assert (proc.returncode, proc.stderr) == (0, "")
    assert bruin.record()["config"]["environments"]["dev"]["connections"]["postgres"] == [POSTGRES]


@pytest.mark.parametrize(
    ("port", "kind"), [("5432", "string"), (True, "boolean"), (5432.0, "number")]
)
def test_fake_bruin_rejects_other_kinds_in_an_integer_field(
    bruin: FakeBruin, tmp_path: Path, port: Any, kind: str
) -> None:
    config = write_config(tmp_path, {"postgres": [{**POSTGRES, "port": port}]})

    proc = run_bruin("run", "--config-file", str(config))

    assert (proc.returncode, proc.stderr) == (1, (
        "bruin: error: config type mismatch: environment 'dev', postgres connection 'pg' "
        f"field 'port': expected integer, got {kind}\n"
    ))
    assert not bruin.record_path.exists()


def test_fake_bruin_type_checks_nested_objects(bruin: FakeBruin, tmp_path: Path) -> None:
    iceberg = {"name": "ice", "catalog": {"type": "rest", "port": "8181"}}
    config = write_config(tmp_path, {"iceberg": [iceberg], "not_a_type": "ignored"})

    proc = run_bruin("run", "--config-file", str(config))

    assert proc.returncode == 1
    assert proc.stderr == (
        "bruin: error: config type mismatch: environment 'dev', iceberg connection 'ice' "
        "field 'catalog.port': expected integer, got string\n"
    )


def test_fake_bruin_expands_only_names_that_are_set(
    bruin: FakeBruin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_SET", "X")
    monkeypatch.delenv("HARNESS_UNSET", raising=False)
    value = "a${HARNESS_SET}b${HARNESS_UNSET}c$HARNESS_SET"  # bare $NAME is not expanded
    config = write_config(tmp_path, {"generic": [{"name": "g", "value": value}]})

    assert run_bruin("run", "--config-file", str(config)).returncode == 0

    generic = bruin.record()["config"]["environments"]["dev"]["connections"]["generic"]
    assert generic == [{"name": "g", "value": "aXb${HARNESS_UNSET}c$HARNESS_SET"}]


def test_fake_bruin_lists_the_config_in_gitignore(bruin: FakeBruin, tmp_path: Path) -> None:
    config = write_config(tmp_path, {}, name="team.bruin.yml")
    (tmp_path / ".gitignore").write_text("*.pyc", encoding="utf-8")  # no final newline

    for _ in range(2):  # the second run must not add it again
        assert run_bruin("run", "--config-file", str(config)).returncode == 0

    assert (tmp_path / ".gitignore").read_text(encoding="utf-8") == "*.pyc\nteam.bruin.yml\n"


def test_fake_bruin_creates_gitignore(bruin: FakeBruin, tmp_path: Path) -> None:
    config = write_config(tmp_path, {})

    assert run_bruin("run", f"--config-file={config}").returncode == 0

    assert (tmp_path / ".gitignore").read_text(encoding="utf-8") == ".bruin.yml\n"


def test_fake_bruin_records_the_run(
    bruin: FakeBruin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, {"duckdb": [{"name": "d", "path": "data/x.db"}]})
    monkeypatch.setenv("FAKE_BRUIN_EXIT", "3")

    proc = run_bruin("run", "-e", "dev", "--config-file", str(config), "pipeline/", cwd=tmp_path)

    record = bruin.record()
    assert proc.returncode == 3
    assert record["argv"] == ["run", "-e", "dev", "--config-file", str(config), "pipeline/"]
    assert record["environment"] == "dev"
    assert (record["secrets_backend"], record["ignored_config"]) == (None, False)
    assert record["cwd"] == str(tmp_path)
    duckdb = record["config"]["environments"]["dev"]["connections"]["duckdb"]
    assert duckdb == [{"name": "d", "path": str(tmp_path / "data" / "x.db")}]


@pytest.mark.parametrize(
    ("connections", "args", "message"),
    [
        (None, [], "environment 'dev' has no connections defined"),
        ({}, ["--environment", "prod"], "environment 'prod' not found in the configuration file"),
    ],
)
def test_fake_bruin_load_errors(
    bruin: FakeBruin, tmp_path: Path, connections: Any, args: list[str], message: str
) -> None:
    config = write_config(tmp_path, connections)

    proc = run_bruin("run", "--config-file", str(config), *args)

    assert (proc.returncode, proc.stderr) == (1, f"bruin: error: {message}\n")
    assert not bruin.record_path.exists()


def test_fake_bruin_prefers_config_file_content(
    bruin: FakeBruin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, {"postgres": [{**POSTGRES, "port": "not an int"}]})
    monkeypatch.setenv("BRUIN_CONFIG_FILE_CONTENT", "environments: {default: {connections: {}}}")

    assert run_bruin("run", "--config-file", str(config)).returncode == 0

    assert bruin.record()["config"] == {"environments": {"default": {"connections": {}}}}


def test_fake_bruin_with_vault_backend_ignores_the_config(bruin: FakeBruin, tmp_path: Path) -> None:
    missing = tmp_path / "missing.yml"

    proc = run_bruin("run", "--config-file", str(missing), "--secrets-backend", "vault")

    assert proc.returncode == 0
    assert (bruin.record()["ignored_config"], bruin.record()["secrets_backend"]) == (True, "vault")


def test_fake_bruin_never_quotes_the_document_in_yaml_errors(
    bruin: FakeBruin, tmp_path: Path
) -> None:
    config = tmp_path / ".bruin.yml"
    duplicate_key = f"password: {PG_PASSWORD}\n" * 2  # ruamel's message quotes values
    config.write_text(duplicate_key, encoding="utf-8")

    proc = run_bruin("run", "--config-file", str(config))

    assert proc.stderr == "bruin: error: cannot parse the config as YAML at line 2\n"
    assert proc.returncode == 1


def test_fake_bruin_internal_connections_prints_the_schema(
    bruin: FakeBruin, schema_path: Path
) -> None:
    proc = run_bruin("internal", "connections")

    assert proc.returncode == 0
    assert json.loads(proc.stdout) == json.loads(schema_path.read_text(encoding="utf-8"))
    assert bruin.schema_calls() == 1


def test_fake_bruin_version(bruin: FakeBruin) -> None:
    assert run_bruin("--version").stdout == "bruin v0.0.0-fake\n"


def test_schema_subset_is_self_contained() -> None:
    subset_path = Path(__file__).parent / "data" / "connections-schema-subset.json"
    subset = json.loads(subset_path.read_text(encoding="utf-8"))
    refs = _refs(subset)
    assert subset["$ref"] == "#/$defs/Connections"
    assert {ref.removeprefix("#/$defs/") for ref in refs} <= set(subset["$defs"])
    assert len(subset["$defs"]["Connections"]["properties"]) == 11


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"]} if "$ref" in node else set()
        return own.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


# --- OpenBao fixtures ----------------------------------------------------------------------------


def test_kv_put_reads_back_and_registers_secret_values(kv: KV, leak_guard: LeakGuard) -> None:
    secret = {"type": "postgres", "details": {**POSTGRES, "hosts": ["replica-host-1"]}}

    kv.put("team/a", "pg", secret)

    kv_api = kv.server.client.secrets.kv
    if kv.version == 2:
        response = kv_api.v2.read_secret_version(
            mount_point=kv.mount, path="team/a/pg", raise_on_deleted_version=True
        )
        read = response["data"]["data"]
    else:
        read = kv_api.v1.read_secret(mount_point=kv.mount, path="team/a/pg")["data"]
    assert read == secret
    assert leak_guard.find_in(PG_PASSWORD) and leak_guard.find_in("replica-host-1")
    assert not leak_guard.find_in("db.internal analytics postgres")  # not-secret keys


def test_new_kv2_mount_lists_only_test_data(kv2: KV) -> None:
    kv2.put("", "one", {"type": "generic", "details": {"value": "v"}})

    listed = kv2.server.client.secrets.kv.v2.list_secrets(mount_point=kv2.mount, path="")

    assert listed["data"]["keys"] == ["one"]  # the readiness probe left nothing behind


def test_token_has_only_its_policy(bao_server: BaoServer, kv2: KV, leak_guard: LeakGuard) -> None:
    kv2.put("team", "pg", {"type": "postgres", "details": POSTGRES})
    token = bao_server.token(f'path "{kv2.mount}/data/team/*" {{ capabilities = ["read"] }}')
    client = hvac.Client(url=bao_server.addr, token=token)

    client.secrets.kv.v2.read_secret_version(
        mount_point=kv2.mount, path="team/pg", raise_on_deleted_version=True
    )
    with pytest.raises(hvac.exceptions.Forbidden):
        client.secrets.kv.v2.list_secrets(mount_point=kv2.mount, path="team")
    with pytest.raises(hvac.exceptions.Forbidden):  # not even `default`: no lookup-self
        client.auth.token.lookup_self()
    assert leak_guard.find_in(token)


def test_vault_env_points_at_the_server_only(
    monkeypatch: pytest.MonkeyPatch, bao_server: BaoServer, request: pytest.FixtureRequest
) -> None:
    stale = {"VAULT_ADDR", "BAO_TOKEN", "BRUIN_VAULT_PATH", "BRUIN_MATERIALIZE_X", "BRUIN_BIN"}
    for name in stale:
        monkeypatch.setenv(name, "stale")

    env = request.getfixturevalue("vault_env")  # after the setenv calls above

    assert stale.isdisjoint(os.environ)
    assert env["BRUIN_VAULT_HOST"] == os.environ["BRUIN_VAULT_HOST"] == bao_server.addr
    assert os.environ["BRUIN_VAULT_TOKEN"] == bao_server.root_token
    assert not (Path(os.environ["HOME"]) / ".vault-token").exists()


def test_the_run_says_up_front_which_tests_skip_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from testsupport import skips

    real = shutil.which
    monkeypatch.setattr("testsupport.skips.shutil.which",
                        lambda name: None if name in ("go", "kubectl") else real(name))
    monkeypatch.setattr("testsupport.postgres.find_programs", lambda: None)
    lines = skips.header()
    assert lines[0] == "skips: these will be skipped here (they run in CI):"
    assert "  tests/test_yaml_v3.py (bruin's YAML parser): needs Go and yaml.v3 (apt-get install golang-go " \
           "golang-gopkg-yaml.v3-dev)" in lines
    assert "  tests/test_deploy.py (the kustomize overlay): needs kubectl for its kustomize (CI installs it)" in lines
    assert "  tests/test_dynamic.py (leases on a real database): needs PostgreSQL's initdb, pg_ctl and psql " \
           "(apt-get install postgresql)" in lines


def test_a_missing_tool_skips_here_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from testsupport.skips import require

    require(None)  # nothing missing: the test goes on
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs a tool"):
        require("needs a tool")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="needs a tool"):
        require("needs a tool")
