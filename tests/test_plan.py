"""plan: what a render would change in a file, one line per connection, never a value."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from bruin_materialize.cli import main
from bruin_materialize.plan import changed_fields, diff

DATA = Path(__file__).resolve().parent / "data"
PASSWORD = "plan-Pa55word-before"
NEW_PASSWORD = "plan-Pa55word-after"


def pg(password: str = PASSWORD, **details: Any) -> dict[str, Any]:
    return {"type": "postgres", "details": {"host": "db.internal", "port": 5432, "password": password, **details}}


def doc(**environments: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"default_environment": next(iter(environments), "default"),
            "environments": {name: {"connections": conns} for name, conns in environments.items()}}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], list[str]]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


# --- the diff itself -----------------------------------------------------------------------------


def test_diff_names_connections_and_fields_never_values() -> None:
    old = doc(prod={"postgres": [{"name": "a", "password": "old-value", "port": 5432},
                                 {"name": "gone", "password": "x"}],
                    "duckdb": [{"name": "t", "path": "/x"}]},
              staging={"postgres": [{"name": "s", "host": "h"}]})
    new = doc(prod={"postgres": [{"name": "a", "password": "new-value", "port": "5432", "sslmode": "require"},
                                 {"name": "same", "host": "h"}],
                    "snowflake": [{"name": "t", "path": "/x"}]},
              dev={"duckdb": [{"name": "d", "path": "/y"}]})
    old["environments"]["prod"]["connections"]["postgres"].append({"name": "same", "host": "h"})
    new["default_environment"] = "dev"
    lines = diff(new, old)
    assert lines == [
        "~ default_environment",
        "+ dev (environment)",
        "+ dev/d (duckdb)",
        "~ prod/a (postgres): password, port, sslmode",
        "- prod/gone (postgres)",
        "~ prod/t (snowflake): type changed from duckdb",
        "- staging (environment)",
        "- staging/s (postgres)",
    ]
    assert not any("value" in line for line in lines)
    assert diff(new, new) == []


def test_nested_fields_and_environment_settings() -> None:
    old = doc(prod={"iceberg": [{"name": "i", "catalog": {"type": "glue", "auth": {"secret_key": "k"}}}]})
    new = doc(prod={"iceberg": [{"name": "i", "catalog": {"type": "glue", "auth": {"secret_key": "k2"},
                                                          "region": "r"}}]})
    new["environments"]["prod"]["schema_prefix"] = "p_"
    assert diff(new, old) == ["~ prod: schema_prefix", "~ prod/i (iceberg): catalog.auth.secret_key, catalog.region"]
    assert changed_fields({"a": [1, 2]}, {"a": [1, 3]}) == ["a"]  # lists are one field
    assert changed_fields({"a": 1}, {"a": 1.0}) == ["a"]  # a type change is a change


def test_names_that_could_break_a_line_are_quoted() -> None:
    new = doc(**{"pr od": {"post\ngres": [{"name": "a,b\nc"}]}})
    assert diff(new, {}) == ['~ default_environment', '+ "pr od" (environment)',
                             '+ "pr od"/"a,b\\nc" ("post\\ngres")']


def test_malformed_files_count_as_empty() -> None:
    new = doc(prod={"postgres": [{"name": "a"}]})
    malformed: tuple[Any, ...] = (None, [], {"environments": []}, {"environments": {"prod": None}},
                                  {"environments": {"prod": {"connections": {"postgres": [None, {"name": 5}]}}}})
    for old in malformed:
        assert "+ prod/a (postgres)" in diff(new, old)


def test_plan_help() -> None:
    with pytest.raises(SystemExit) as info:
        main(["plan", "--help"])
    assert info.value.code == 0


# --- against a real server -------------------------------------------------------------------------


@pytest.fixture
def project(vault_env: dict[str, str], kv2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            schema_path: Path) -> Path:
    """A git work tree with bruin's example .bruin.yml (dev, prod); Vault holds prod's secrets."""
    root = tmp_path / "proj"
    (root / ".git").mkdir(parents=True)
    shutil.copyfile(DATA / "simple.bruin.yml", root / ".bruin.yml")
    monkeypatch.chdir(root)
    monkeypatch.setenv("BRUIN_MATERIALIZE_SCHEMA", str(schema_path))
    monkeypatch.setenv("PATH", os.defpath)
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv2.mount)
    monkeypatch.setenv("BRUIN_MATERIALIZE_ENVIRONMENT_PATHS", "prod=bruin/prod")
    kv2.put("bruin/prod", "warehouse", pg())
    kv2.put("bruin/prod", "events", pg(database="events"))
    return root


def test_plan_against_the_base_shows_what_vault_adds(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["plan"], capsys)
    assert code == 5
    assert out == ["+ prod/events (postgres)", "+ prod/warehouse (postgres)"]
    assert err[-1] == "materialize: plan: 2 differences"


def test_plan_against_a_rendered_file_shows_drift(project: Path, kv2: Any, bao_server: Any, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    rendered = tmp_path / "deployed" / "bruin.yml"
    assert main(["render", "-q", "-o", str(rendered)]) == 0
    code, out, err = run(["plan", "--against", str(rendered)], capsys)
    assert (code, out, err[-1]) == (0, [], "materialize: plan: no changes")
    # Vault moves on: a password rotated, a connection added, one deleted, one changed type.
    kv2.put("bruin/prod", "warehouse", pg(NEW_PASSWORD))
    kv2.put("bruin/prod", "lake", {"type": "duckdb", "details": {"path": "/data/lake.duckdb"}})
    kv2.put("bruin/prod", "conn1", pg())  # the base's google_cloud_platform conn1 in prod
    bao_server.client.secrets.kv.v2.delete_metadata_and_all_versions(path="bruin/prod/events",
                                                                     mount_point=kv2.mount)
    code, out, _ = run(["plan", "--against", str(rendered), "--prefer", "vault"], capsys)
    assert code == 5
    assert out == [
        "~ prod/conn1 (postgres): type changed from google_cloud_platform",
        "- prod/events (postgres)",
        "+ prod/lake (duckdb)",
        "~ prod/warehouse (postgres): password",
    ]
    # Someone edited the deployed file by hand: its own values drift too.
    text = rendered.read_text()
    rendered.write_text(text.replace('password: "pgpass"', 'password: "edited"'))
    code, out, _ = run(["plan", "--against", str(rendered), "--prefer", "vault"], capsys)
    assert "~ dev/conn3 (postgres): password" in out


def test_plan_resolves_the_files_relative_paths_as_bruin_would(project: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    base = project / ".bruin.yml"
    base.write_text(base.read_text().replace('path: "/path/to/duck.db"', 'path: "data/duck.db"'))
    code, out, _ = run(["plan"], capsys)
    assert code == 5 and not [line for line in out if "conn20" in line]


def test_plan_needs_a_file(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["plan", "--no-base"], capsys)
    assert (code, out) == (2, [])
    assert err == ["materialize: error: plan needs a file to compare with: pass --against FILE or --base FILE (or "
                   "keep a .bruin.yml at the project root)"]
    code, _, err = run(["plan", "--against", str(tmp_path / "nope.yml")], capsys)
    assert code == 2 and err == [f"materialize: error: cannot read {tmp_path / 'nope.yml'}: No such file or directory"]


def test_plan_fails_like_check_on_invalid_secrets(project: Path, kv2: Any, capsys: pytest.CaptureFixture[str]) -> None:
    kv2.put("bruin/prod", "bad", {"type": "postgres", "details": {"port": "fifty"}})
    code, out, err = run(["plan"], capsys)
    assert (code, out) == (4, [])
    assert err[-1] == "materialize: error: 1 invalid secret field (listed above); nothing was written"


@pytest.mark.parametrize(("text", "problem"), [
    ("- name: a\n- name: b\n", "must be a mapping with `environments`, like a .bruin.yml"),
    ("replicaCount: 2\nimage:\n  tag: v1\nenvironments: [prod]\n", ": `environments` must be a mapping"),
    ("apiVersion: v1\nkind: Secret\nenvironments:\n  prod: x\n", ": environment 'prod' must be a mapping"),
    ("environments:\n  prod:\n    connections:\n      postgres: {name: a}\n",
     ": environment 'prod': connections.postgres must be a list"),
])
def test_plan_against_a_file_that_is_not_a_bruin_config_is_a_usage_error(
        project: Path, tmp_path: Path, text: str, problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = tmp_path / "values.yaml"
    wrong.write_text(text)
    code, out, err = run(["plan", "--against", str(wrong)], capsys)
    assert (code, out) == (2, [])  # misconfigured, not drift (5)
    sep = "" if problem.startswith(":") else " "
    assert err == [f"materialize: error: the file to compare with {wrong}{sep}{problem}"]
    # The same file as the base file is refused the same way.
    code, _, err = run(["plan", "--base", str(wrong)], capsys)
    assert code == 2 and err == [f"materialize: error: the base file {wrong}{sep}{problem}"]


@pytest.mark.parametrize("line", [
    '{"prod": {"kv/\\ud800": ["warehouse"]}}', '{"prod": {"kv/\\udc80": ["warehouse"]}}',
    '{"prod": {"kv/bruin/prod": ["ware\\udfffhouse"]}}', '{"\\ud83d": {"kv/bruin/prod": ["warehouse"]}}',
], ids=["source-high", "source-low", "name", "environment"])
def test_plan_refuses_a_sources_line_holding_what_no_render_writes(
        project: Path, tmp_path: Path, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A lone surrogate escaped in the sources line is no text a render writes: the line is damaged
    (exit 2), never printed as a byte that is not UTF-8, or an internal error, in text or JSON."""
    deployed = tmp_path / "deployed.yml"
    assert main(["render", "-q", "--allow-repo", "-o", str(deployed)]) == 0
    kept = [x for x in deployed.read_text().splitlines() if not x.startswith("# bruin-materialize sources: ")]
    deployed.write_text("\n".join([*kept, "# bruin-materialize sources: " + line, ""]))
    for fmt in ([], ["--format", "json"]):
        code, out, err = run(["plan", "--against", str(deployed), *fmt], capsys)
        assert code == 2 and err[-1] == (f"materialize: error: {deployed}: its 'bruin-materialize sources' line is "
                                         "damaged; render the file again, or remove the line"), err
        assert not fmt or '"exit_code": 2' in "\n".join(out)
