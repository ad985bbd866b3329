"""The CLI contract against a real OpenBao server, KV v1 and v2: render, check, exec and exit codes."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from bruin_materialize.cli import main
from testsupport.values import sample_value

PASSWORD = "pg-Pa55word-0f-the-day"


def pg_secret(**details: Any) -> dict[str, Any]:
    base = {"host": "db.internal", "port": 5432, "username": "app", "password": PASSWORD, "database": "analytics"}
    return {"type": "postgres", "details": {**base, **details}}


def load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def connections(doc: Any, environment: str = "default") -> dict[str, list[dict[str, Any]]]:
    result: dict[str, list[dict[str, Any]]] = doc["environments"][environment]["connections"]
    return result


def err_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout belongs to bruin: we print nothing there
    return captured.err.splitlines()


@pytest.fixture
def env(vault_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, schema_path: Path) -> dict[str, str]:
    monkeypatch.setenv("BRUIN_VAULT_PATH", "bruin")
    monkeypatch.setenv("BRUIN_MATERIALIZE_SCHEMA", str(schema_path))
    monkeypatch.setenv("PATH", os.defpath)  # no bruin: render and check must not need one
    return vault_env


def test_render_writes_every_secret_0600_in_0700_dirs(kv: Any, env: dict[str, str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv.mount)
    kv.put("bruin", "warehouse", pg_secret(port="5433"))
    kv.put("bruin", "lake", {"type": "duckdb", "details": {"path": "/data/lake.db"}})
    kv.put("other", "elsewhere", pg_secret())
    out = tmp_path / "a" / "b" / "bruin.yml"
    assert main(["render", "--output", str(out)]) == 0
    doc = load(out)
    assert doc["default_environment"] == "default"
    assert connections(doc) == {
        "duckdb": [{"name": "lake", "path": "/data/lake.db"}],
        "postgres": [{"name": "warehouse", "host": "db.internal", "port": 5433, "username": "app",
                      "password": PASSWORD, "database": "analytics"}],
    }
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(out.parent.parent.stat().st_mode) == 0o700
    lines = err_lines(capsys)
    assert f"materialize: {kv.mount}/bruin/warehouse: details.port: string converted to integer" in lines
    assert "materialize: 2 connections for environment 'default': duckdb 1, postgres 1" in lines
    assert lines[-1] == f"materialize: wrote {out}"


def test_render_environment_flag(kv2: Any, env: dict[str, str], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv2.mount)
    kv2.put("bruin", "pg", pg_secret())
    out = tmp_path / "bruin.yml"
    assert main(["render", "-o", str(out), "--environment", "prod", "-q"]) == 0
    doc = load(out)
    assert doc["default_environment"] == "prod" and list(connections(doc, "prod")) == ["postgres"]


def test_check_writes_nothing_and_exits_0(kv: Any, env: dict[str, str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv.mount)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    kv.put("bruin", "pg", pg_secret())
    assert main(["check"]) == 0
    assert list(work.iterdir()) == []
    assert err_lines(capsys)[-1] == "materialize: check passed: the config would be valid; nothing written"


def test_invalid_secrets_exit_4_listing_every_problem(kv: Any, env: dict[str, str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv.mount)
    kv.put("bruin", "bad-port", pg_secret(port="fifty"))
    kv.put("bruin", "no-type", {"details": {"password": PASSWORD}})
    kv.put("bruin", "good", pg_secret())
    out = tmp_path / "out" / "bruin.yml"
    out.parent.mkdir()
    out.write_text("previous run\n")
    assert main(["render", "-o", str(out)]) == 4
    assert main(["check"]) == 4
    errors = [line for line in err_lines(capsys) if "error" in line]
    m = kv.mount
    assert errors == 2 * [
        f"materialize: error: {m}/bruin/bad-port: details.port: expected integer, got string; bruin would fail "
        "to load the whole file",
        f"materialize: error: {m}/bruin/no-type: type: is missing; set it to a bruin connection type such as "
        "postgres",
        "materialize: error: 2 invalid secret fields (listed above); nothing was written",
    ]
    assert out.read_text() == "previous run\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["bruin.yml"]


@pytest.mark.parametrize("value", ["quo\"te: # x", "line\nbreak", "-----BEGIN KEY-----\nAAA=\n-----END KEY-----\n",
                                   "☃ 𝄞", "{{ x }}{% y %}", "0123", "yes", "null", "1e3", "~", "", "x" * 20000,
                                   "\x00\x1b\x7f\x85\u2028"])
def test_hostile_values_render_exactly(kv: Any, env: dict[str, str], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv.mount)
    details = {"password": value, "host": value, "database": value, "sslmode": [value, {"x": value}]}
    kv.put("bruin", "pg", {"type": "postgres", "details": details})
    out = tmp_path / "bruin.yml"
    assert main(["render", "-o", str(out), "-q"]) == 0
    assert connections(load(out)) == {"postgres": [{"name": "pg", **details}]}


def test_subfolders_are_reported_or_read_recursively(kv: Any, env: dict[str, str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv.mount)
    kv.put("bruin", "top", pg_secret())
    kv.put("bruin/team", "nested", pg_secret())
    out = tmp_path / "bruin.yml"
    assert main(["render", "-o", str(out)]) == 0
    assert [c["name"] for c in connections(load(out))["postgres"]] == ["top"]
    assert (f"materialize: warning: {kv.mount}/bruin/team/: subfolder not read; pass --recursive to read its "
            "secrets as connections named FOLDER/NAME") in err_lines(capsys)
    assert main(["render", "-o", str(out), "--recursive"]) == 0
    assert [c["name"] for c in connections(load(out))["postgres"]] == ["team/nested", "top"]


def test_a_path_holding_only_subfolders_fails_without_recursive(kv: Any, env: dict[str, str], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """0 connections would pass `check` and give bruin a file with nothing in it."""
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv.mount)
    kv.put("bruin/team", "nested", pg_secret())
    kv.put("bruin/other", "nested", pg_secret())
    assert main(["check"]) == 3
    assert err_lines(capsys) == [
        f"materialize: error: no secrets at {kv.mount}/bruin, only subfolders (other/, team/); pass --recursive to "
        "read them as connections named FOLDER/NAME, or a --path that holds the secrets"]
    assert main(["check", "-q", "--recursive"]) == 0


def test_deleted_current_version_is_skipped_with_a_warning(kv2: Any, bao_server: Any, env: dict[str, str],
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv2.mount)
    kv2.put("bruin", "kept", pg_secret())
    kv2.put("bruin", "deleted", pg_secret())
    kv2.put("bruin", "destroyed", pg_secret())
    kv_api = bao_server.client.secrets.kv.v2
    kv_api.delete_latest_version_of_secret(path="bruin/deleted", mount_point=kv2.mount)
    kv_api.destroy_secret_versions(path="bruin/destroyed", versions=[1], mount_point=kv2.mount)
    out = tmp_path / "bruin.yml"
    assert main(["render", "-o", str(out)]) == 0
    assert [c["name"] for c in connections(load(out))["postgres"]] == ["kept"]
    warnings = [line for line in err_lines(capsys) if "deleted or destroyed" in line]
    assert [w.split(": ")[2] for w in warnings] == [f"{kv2.mount}/bruin/deleted", f"{kv2.mount}/bruin/destroyed"]
    assert main(["check", "--strict"]) == 4


def test_least_privilege_token_is_enough(kv: Any, bao_server: Any, env: dict[str, str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    m = kv.mount
    if kv.version == 2:
        policy = f'path "{m}/metadata/bruin" {{ capabilities = ["list"] }}\n' \
                 f'path "{m}/data/bruin/*" {{ capabilities = ["read"] }}\n'
    else:
        policy = f'path "{m}/bruin" {{ capabilities = ["list"] }}\npath "{m}/bruin/*" {{ capabilities = ["read"] }}\n'
    monkeypatch.setenv("BRUIN_VAULT_TOKEN", bao_server.token(policy))
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", m)
    kv.put("bruin", "pg", pg_secret())
    out = tmp_path / "bruin.yml"
    assert main(["render", "-o", str(out), "-q"]) == 0
    assert connections(load(out))["postgres"][0]["password"] == PASSWORD


@pytest.mark.parametrize("forced", ["1", "2"])
def test_forced_kv_version(kv: Any, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           forced: str, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv.mount)
    kv.put("bruin", "pg", pg_secret())
    code = main(["check", "--kv-version", forced, "-q"])
    if int(forced) == kv.version:
        assert code == 0
    else:  # a v2 mount read as v1 lists nothing at bruin/, a v1 mount has no metadata/ folder
        assert code == 3
        assert "the path is empty or does not exist" in err_lines(capsys)[-1]


def test_listing_without_list_capability_says_so(kv2: Any, bao_server: Any, env: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    m = kv2.mount
    monkeypatch.setenv("BRUIN_VAULT_TOKEN", bao_server.token(f'path "{m}/data/bruin/*" {{ capabilities = ["read"] }}'))
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", m)
    kv2.put("bruin", "pg", pg_secret())
    assert main(["check", "--kv-version", "2"]) == 3
    assert err_lines(capsys) == [f"materialize: error: permission denied listing {m}/bruin: the token's policy needs "
                                 f"the `list` capability on {m}/metadata/bruin"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("empty", "no secrets at {m}/bruin (KV v{v}): the path is empty or does not exist"),
        ("bad-token", "permission denied on mount {m}"),
        ("no-mount", "no secrets at nope/bruin: the mount or path is empty or does not exist"),
    ],
)
def test_vault_errors_exit_3_with_one_line(kv: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], setup: str, message: str) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", "nope" if setup == "no-mount" else kv.mount)
    if setup == "bad-token":
        monkeypatch.setenv("BRUIN_VAULT_TOKEN", "s.not-a-real-token-value")
    kv.put("elsewhere", "pg", pg_secret())
    assert main(["check"]) == 3
    [line] = err_lines(capsys)
    assert line.startswith("materialize: error: " + message.format(m=kv.mount, v=kv.version))


def test_unreachable_vault_exits_3(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("BRUIN_VAULT_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", "kv")
    assert main(["check", "--max-retries", "1", "--retry-wait-min", "10ms", "--retry-wait-max", "10ms"]) == 3
    assert err_lines(capsys) == [
        f"materialize: error: inspecting mount kv: connection refused by http://127.0.0.1:{port}; is Vault "
        "running and BRUIN_VAULT_HOST right? (after 1 retry)"]


@pytest.mark.parametrize("command", [[], ["render"], ["check"], ["exec"]])
def test_help_on_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: materialize.py" in capsys.readouterr().out


def test_all_schema_types_render_and_load(kv: Any, env: dict[str, str], tmp_path: Path, schema_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, fake_bruin: Any, run_cli: Any) -> None:
    """One secret per connection type in bruin's schema, every field set with its JSON type."""
    import json

    from bruin_materialize.schema import load_schema_file

    schema = load_schema_file(schema_path)
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv.mount)
    expected = {}
    for conn_type, spec in schema.types.items():
        details = {field: sample_value(schema, sub, field) for field, sub in spec.get("properties", {}).items()
                   if field != "name"}
        kv.put("bruin", f"c-{conn_type}", {"type": conn_type, "details": details})
        expected[conn_type] = [{"name": f"c-{conn_type}", **details}]
    proc = run_cli("exec", "--allow-non-tmpfs", "--runtime-dir", str(tmp_path),
                   env={"PATH": f"{fake_bruin.bin.parent}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    record = fake_bruin.record()
    assert json.loads(json.dumps(connections(record["config"]))) == expected
    assert len(expected) == len(schema.types)
