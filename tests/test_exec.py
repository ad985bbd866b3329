"""exec: render onto tmpfs, then become `bruin run` with a clean environment and arguments.

These run materialize.py as a process (exec replaces it), with the stand-in bruin on PATH that loads
the file as bruin does and records what it got.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from bruin_materialize.schema import SNAPSHOT, SNAPSHOT_FROM, load_snapshot

PASSWORD = "exec-Secret-Passw0rd"


@pytest.fixture
def env(vault_env: dict[str, str], kv2: Any, monkeypatch: pytest.MonkeyPatch, fake_bruin: Any,
        tmp_path: Path) -> dict[str, str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv2.mount)
    monkeypatch.setenv("BRUIN_VAULT_PATH", "bruin")
    monkeypatch.setenv("BRUIN_MATERIALIZE_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("BRUIN_MATERIALIZE_ALLOW_NON_TMPFS", "1")  # pytest's tmp_path is on disk here
    kv2.put("bruin", "pg", {"type": "postgres", "details": {"host": "db", "port": "5432", "password": PASSWORD}})
    return vault_env


def test_exec_hands_over_to_bruin_run(env: dict[str, str], fake_bruin: Any, run_cli: Any, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRUIN_SECRETS_BACKEND", "vault")
    monkeypatch.setenv("VAULT_ADDR", "http://elsewhere:8200")
    monkeypatch.setenv("BAO_TOKEN", "bao-token-not-for-bruin")
    monkeypatch.setenv("BRUIN_VAULT_ROLE", "r")
    monkeypatch.setenv("UNRELATED", "kept as is")
    proc = run_cli("exec", "--", "--env", "prod", "--secrets-backend", "vault", "pipelines/x", "--workers=2",
                   "--secrets-backend=vault")
    assert proc.returncode == 0, proc.stderr
    record = fake_bruin.record()
    config_file = Path(record["config_file"])
    assert record["argv"] == ["run", "--config-file", str(config_file), "--env", "prod", "pipelines/x",
                              "--workers=2"]
    assert record["environment"] == "prod" and not record.get("ignored_config")
    [pg] = record["config"]["environments"]["prod"]["connections"]["postgres"]
    assert pg == {"name": "pg", "host": "db", "port": 5432, "password": PASSWORD}
    bruin_env = record["env"]
    assert not [k for k in bruin_env if k.startswith(("BRUIN_VAULT_", "VAULT_", "BAO_"))]
    assert "BRUIN_SECRETS_BACKEND" not in bruin_env and bruin_env["UNRELATED"] == "kept as is"
    # A fresh private directory under the runtime dir, holding the file and bruin's .gitignore.
    assert config_file.parent.parent == tmp_path / "runtime"
    assert stat.S_IMODE(config_file.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert (config_file.parent / ".gitignore").read_text().splitlines() == [config_file.name]


def test_bruin_exit_code_is_ours(env: dict[str, str], fake_bruin: Any, run_cli: Any) -> None:
    assert run_cli("exec", env={"FAKE_BRUIN_EXIT": "7"}).returncode == 7


def test_bruin_is_looked_up_before_any_vault_call(env: dict[str, str], run_cli: Any) -> None:
    proc = run_cli("exec", env={"PATH": os.defpath, "BRUIN_VAULT_HOST": "http://127.0.0.1:9"})
    assert proc.returncode == 2
    assert proc.stderr == ("materialize: error: bruin was not found on PATH; install it or set BRUIN_BIN to its "
                           "path\n")
    proc = run_cli("exec", env={"BRUIN_BIN": "/nonexistent/bruin"})
    assert (proc.returncode, proc.stderr) == (2, "materialize: error: BRUIN_BIN=/nonexistent/bruin is not an "
                                                 "executable file\n")


def test_bruin_bin_overrides_path(env: dict[str, str], fake_bruin: Any, run_cli: Any) -> None:
    proc = run_cli("exec", env={"PATH": os.defpath, "BRUIN_BIN": str(fake_bruin.bin)})
    assert proc.returncode == 0, proc.stderr
    assert fake_bruin.record()["argv"][:2] == ["run", "--config-file"]


def test_runtime_dir_must_be_tmpfs_unless_allowed(env: dict[str, str], run_cli: Any, fake_bruin: Any) -> None:
    proc = run_cli("exec", env={"BRUIN_MATERIALIZE_ALLOW_NON_TMPFS": "0"})
    assert proc.returncode == 2
    assert "is not on tmpfs, so credentials would reach a disk" in proc.stderr
    assert not fake_bruin.record_path.exists()


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm")
def test_default_runtime_dir_is_tmpfs(env: dict[str, str], run_cli: Any, fake_bruin: Any) -> None:
    proc = run_cli("exec", env={"BRUIN_MATERIALIZE_RUNTIME_DIR": "", "XDG_RUNTIME_DIR": "",
                                "BRUIN_MATERIALIZE_ALLOW_NON_TMPFS": "0"})
    assert proc.returncode == 0, proc.stderr
    config_file = Path(fake_bruin.record()["config_file"])
    try:
        assert config_file.parent.parent == Path("/dev/shm")
    finally:
        for child in config_file.parent.iterdir():
            child.unlink()
        config_file.parent.rmdir()


def test_config_file_argument_is_refused(env: dict[str, str], run_cli: Any) -> None:
    proc = run_cli("exec", "--", "--config-file", "x.yml")
    assert proc.returncode == 2
    assert "--config-file is set by materialize" in proc.stderr


def test_env_reference_bruin_would_expand_is_refused(env: dict[str, str], kv2: Any, run_cli: Any,
                                                     fake_bruin: Any) -> None:
    kv2.put("bruin", "pg", {"type": "postgres", "details": {"password": "a${MY_VAR}b-" + PASSWORD}})
    proc = run_cli("exec", env={"MY_VAR": "x"})
    assert proc.returncode == 4
    assert f"materialize: error: {kv2.mount}/bruin/pg: details.password: holds ${{...}} naming an environment " \
           "variable" in proc.stderr
    assert not fake_bruin.record_path.exists()
    # Not set in bruin's environment: bruin leaves it alone, and so the value arrives intact.
    proc = run_cli("exec")
    assert proc.returncode == 0, proc.stderr
    [pg] = fake_bruin.record()["config"]["environments"]["default"]["connections"]["postgres"]
    assert pg["password"] == "a${MY_VAR}b-" + PASSWORD
    # Opted in: bruin expands it.
    proc = run_cli("exec", "--expand-env", env={"MY_VAR": "x"})
    assert proc.returncode == 0, proc.stderr
    [pg] = fake_bruin.record()["config"]["environments"]["default"]["connections"]["postgres"]
    assert pg["password"] == "axb-" + PASSWORD


def test_schema_comes_from_bruin_once_per_binary(env: dict[str, str], run_cli: Any, fake_bruin: Any,
                                                 kv2: Any) -> None:
    kv2.put("bruin", "bad", {"type": "postgress", "details": {}})
    for _ in range(2):
        proc = run_cli("exec")
        assert proc.returncode == 4
        assert f"materialize: error: {kv2.mount}/bruin/bad: type: unknown connection type 'postgress' (did you " \
               "mean postgres?)" in proc.stderr
    assert fake_bruin.schema_calls() == 1


def test_without_bruin_or_schema_the_packaged_snapshot_checks(env: dict[str, str], run_cli: Any, kv2: Any,
                                                                 tmp_path: Path) -> None:
    """No bruin on PATH, no --schema: a mistyped type is still caught (exit 4), against the snapshot in the
    package, which is said once; the rendered file's header names it."""
    snapshot_line = (f"materialize: bruin not found and no --schema: checking against {SNAPSHOT_FROM} (the schema "
                     "shipped with bruin-materialize); put bruin on PATH or pass --schema to check against the "
                     "bruin that will run")
    no_bruin = {"PATH": os.defpath, "BRUIN_BIN": None, "BRUIN_MATERIALIZE_SCHEMA": None}
    kv2.put("bruin", "bad", {"type": "postgress", "details": {"host": "db"}})
    proc = run_cli("check", env=no_bruin)
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == snapshot_line and lines.count(snapshot_line) == 1
    assert f"materialize: error: {kv2.mount}/bruin/bad: type: unknown connection type 'postgress' (did you mean " \
           "postgres?); bruin knows 147 types" in lines
    kv2.put("bruin", "bad", {"type": "postgres", "details": {"host": "db", "port": "x"}})
    assert run_cli("check", env=no_bruin).returncode == 4  # field types too, not only the type names
    kv2.put("bruin", "bad", {"type": "postgres", "details": {"host": "db", "port": 5432, "password": PASSWORD}})
    out = tmp_path / "out.yml"
    proc = run_cli("render", "-o", str(out), env=no_bruin)
    assert proc.returncode == 0, proc.stderr
    digest = hashlib.sha256(SNAPSHOT.read_bytes()).hexdigest()[:12]
    assert out.read_text().splitlines()[1] == (f'# Checked against "the schema snapshot shipped with '
                                               f'bruin-materialize ({SNAPSHOT_FROM}), sha256 {digest}".')


def test_a_bruin_on_path_wins_over_the_snapshot(env: dict[str, str], run_cli: Any, fake_bruin: Any, kv2: Any,
                                                tmp_path: Path) -> None:
    kv2.put("bruin", "pg", {"type": "postgres", "details": {"host": "db", "password": PASSWORD}})
    out = tmp_path / "out.yml"
    proc = run_cli("render", "-o", str(out), env={"BRUIN_MATERIALIZE_SCHEMA": None})
    assert proc.returncode == 0, proc.stderr
    assert "snapshot" not in proc.stderr and fake_bruin.schema_calls() == 1
    header = out.read_text().splitlines()[1]
    assert header.startswith(f'# Checked against "`{fake_bruin.bin} internal connections`, sha256 ')


def test_snapshot_is_bruins_schema_and_says_where_it_came_from() -> None:
    schema = load_snapshot()
    assert len(schema.types) == 147 and {"postgres", "google_sheets", "iceberg"} <= set(schema.types)
    provenance = (SNAPSHOT.parent / "connections-schema.md").read_text(encoding="utf-8")
    assert hashlib.sha256(SNAPSHOT.read_bytes()).hexdigest() in provenance


def test_internal_error_prints_its_type_only(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A bug's exception text could quote a value: the boundary prints the type, no traceback."""
    from bruin_materialize import cli

    def bug(*_: Any) -> int:
        raise KeyError(PASSWORD)

    monkeypatch.setattr(cli, "run", bug)
    assert cli.main(["check"]) == 1
    assert capsys.readouterr().err == ("materialize: error: internal error (KeyError); rerun with --traceback to "
                                       "see where\n")
    with pytest.raises(KeyError):
        cli.main(["check", "--traceback"])
