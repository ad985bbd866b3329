"""Several Vault paths into one environment (a shared path and a team's), the collision rule, and what
check, render, plan, exec and --format json make of them, against a real OpenBao server."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from bruin_materialize.cli import main
from bruin_materialize.errors import ExitCode, MaterializeError
from bruin_materialize.render import read_sources
from bruin_materialize.settings import list_items, parse_settings
from testsupport.fault_proxy import FaultProxy
from testsupport.harness import KV, BaoServer
from testsupport.runs import TIMESTAMP

SHARED_PASSWORD = "paths-Pa55word-of-shared"
TEAM_PASSWORD = "paths-Pa55word-of-team-a"
OTHER_PASSWORD = "paths-Pa55word-of-team-b"


def pg(password: str, host: str = "db.internal") -> dict[str, Any]:
    return {"type": "postgres", "details": {"host": host, "port": 5432, "password": password}}


def duckdb(path: str) -> dict[str, Any]:
    return {"type": "duckdb", "details": {"path": path}}


def load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def connections(doc: Any, env: str = "default") -> dict[str, dict[str, Any]]:
    """name -> connection, over every type of one environment."""
    return {c["name"]: c for conns in doc["environments"][env]["connections"].values() for c in conns}


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """stderr's lines, each without the time a -v line starts with when stderr is not a terminal."""
    return [TIMESTAMP.sub("", line, count=1) for line in capsys.readouterr().err.splitlines()]


@pytest.fixture
def env(vault_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, schema_path: Path) -> dict[str, str]:
    monkeypatch.setenv("BRUIN_MATERIALIZE_SCHEMA", str(schema_path))
    monkeypatch.setenv("PATH", os.defpath)  # no bruin
    return vault_env


@pytest.fixture
def teams(kv: KV, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> KV:
    """A platform team's bruin/shared (the warehouse, the lake) and two data teams' paths, on KV v1 and v2."""
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv.mount)
    monkeypatch.chdir(tmp_path)  # no project .bruin.yml to merge into
    kv.put("bruin/shared", "warehouse", pg(SHARED_PASSWORD, "wh.internal"))
    kv.put("bruin/shared", "lake", duckdb("/data/lake.db"))
    kv.put("bruin/team-a", "events", pg(TEAM_PASSWORD, "events.internal"))
    kv.put("bruin/team-b", "crm", pg(OTHER_PASSWORD, "crm.internal"))
    return kv


# --- settings ------------------------------------------------------------------------------------

BASE = {"BRUIN_VAULT_HOST": "http://127.0.0.1:8200", "BRUIN_VAULT_MOUNT_PATH": "kv", "BRUIN_VAULT_TOKEN": "t"}


def usage_message(argv: list[str], environ: dict[str, str], tmp_path: Path) -> str:
    with pytest.raises(MaterializeError) as info:
        parse_settings(argv, {**BASE, **environ}, cwd=tmp_path)
    assert info.value.exit_code == ExitCode.USAGE
    return info.value.message


def test_path_repeated_keeps_every_path_in_order(tmp_path: Path) -> None:
    s = parse_settings(["check", "--path", "bruin/shared", "--path", "/bruin/team-a/"], BASE, cwd=tmp_path)
    assert s.paths == ("bruin/shared", "bruin/team-a")
    assert s.on_collision == "error"


def test_variables_bruin_path_then_extra_paths(tmp_path: Path) -> None:
    environ = {"BRUIN_VAULT_PATH": "bruin/shared", "BRUIN_MATERIALIZE_EXTRA_PATHS": " bruin/team-a , bruin/team-b "}
    assert parse_settings(["check"], {**BASE, **environ}, cwd=tmp_path).paths == (
        "bruin/shared", "bruin/team-a", "bruin/team-b")
    environ["BRUIN_MATERIALIZE_EXTRA_PATHS"] = '["bruin/a,b", "/bruin/c/"]'  # JSON: a comma inside a path
    assert parse_settings(["check"], {**BASE, **environ}, cwd=tmp_path).paths == ("bruin/shared", "bruin/a,b",
                                                                                    "bruin/c")
    # The flags replace both variables.
    assert parse_settings(["check", "--path", "x"], {**BASE, **environ}, cwd=tmp_path).paths == ("x",)
    # bruin's own variable holds one path, commas and all.
    assert parse_settings(["check"], {**BASE, "BRUIN_VAULT_PATH": "bruin/a,b"}, cwd=tmp_path).paths == ("bruin/a,b",)
    s = parse_settings(["check"], {**BASE, "BRUIN_VAULT_PATH": "p", "BRUIN_MATERIALIZE_ON_COLLISION": "Last"},
                       cwd=tmp_path)
    assert s.on_collision == "last"


def test_environment_paths_repeat_an_environment(tmp_path: Path) -> None:
    environ = {"BRUIN_MATERIALIZE_ENVIRONMENT_PATHS": "prod=bruin/shared,prod=bruin/prod,staging=bruin/staging"}
    s = parse_settings(["check"], {**BASE, **environ}, cwd=tmp_path)
    assert s.environment_paths == (("prod", "bruin/shared"), ("prod", "bruin/prod"), ("staging", "bruin/staging"))
    assert s.paths == ()
    s = parse_settings(["check", "--environment-path", "prod=a", "--environment-path", "prod=b"], BASE, cwd=tmp_path)
    assert s.environment_paths == (("prod", "a"), ("prod", "b"))
    environ = {"BRUIN_MATERIALIZE_ENVIRONMENT_PATHS": '["prod=bruin/x,y", "prod=bruin/z"]'}
    assert parse_settings(["check"], {**BASE, **environ}, cwd=tmp_path).environment_paths == (
        ("prod", "bruin/x,y"), ("prod", "bruin/z"))


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--path", "a", "--path", "/a/"], {}, "--path names path 'a' twice"),
        (["--path", "a", "--path", "/"], {}, "--path (item 2 of 2) must be set to a non-empty path"),
        ([], {"BRUIN_VAULT_PATH": "a", "BRUIN_MATERIALIZE_EXTRA_PATHS": "b,c/../d"},
         "BRUIN_MATERIALIZE_EXTRA_PATHS (item 2 of 2) "),
        ([], {"BRUIN_VAULT_PATH": "a", "BRUIN_MATERIALIZE_EXTRA_PATHS": "b,a"},
         "BRUIN_MATERIALIZE_EXTRA_PATHS names path 'a' twice"),
        ([], {"BRUIN_MATERIALIZE_EXTRA_PATHS": "b"}, "BRUIN_VAULT_PATH must be set to a non-empty path"),
        ([], {"BRUIN_VAULT_PATH": "a", "BRUIN_MATERIALIZE_EXTRA_PATHS": "bruin/team-a,"},  # "bruin/team-a,${B}"
         "BRUIN_MATERIALIZE_EXTRA_PATHS has an empty item (item 2 of 2); remove the extra comma, or fill in"),
        ([], {"BRUIN_MATERIALIZE_ENVIRONMENT_PATHS": "prod=a,,staging=b"},
         "BRUIN_MATERIALIZE_ENVIRONMENT_PATHS has an empty item (item 2 of 3)"),
        ([], {"BRUIN_VAULT_PATH": "a", "BRUIN_MATERIALIZE_EXTRA_PATHS": "[\"b\", 1]"},
         "BRUIN_MATERIALIZE_EXTRA_PATHS starts with [ but is not a JSON list of strings"),
        ([], {"BRUIN_VAULT_PATH": "a", "BRUIN_MATERIALIZE_EXTRA_PATHS": "[b"},
         "BRUIN_MATERIALIZE_EXTRA_PATHS starts with [ but is not a JSON list of strings"),
        ([], {"BRUIN_VAULT_PATH": "a", "BRUIN_MATERIALIZE_EXTRA_PATHS": "[" * 100_000},
         "BRUIN_MATERIALIZE_EXTRA_PATHS starts with [ but is not a JSON list of strings"),
        (["--path", "a", "--environment-path", "prod=b"], {},
         "--path and --environment-path do not mix: give each environment its paths as ENV=PATH items"),
        (["--environment-path", "prod=b"], {"BRUIN_MATERIALIZE_EXTRA_PATHS": "c"},
         "BRUIN_MATERIALIZE_EXTRA_PATHS and --environment-path do not mix"),
        ([], {"BRUIN_MATERIALIZE_ENVIRONMENT_PATHS": "[\"prod=a\""},
         "BRUIN_MATERIALIZE_ENVIRONMENT_PATHS starts with [ but is not a JSON list of strings"),
        (["--on-collision", "first", "--path", "a"], {}, "--on-collision must be error or last"),
        ([], {"BRUIN_VAULT_PATH": "a", "BRUIN_MATERIALIZE_ON_COLLISION": "first"},
         "BRUIN_MATERIALIZE_ON_COLLISION must be error or last"),
    ],
)
def test_bad_path_settings_are_exit_2_naming_the_setting(argv: list[str], environ: dict[str, str], message: str,
                                                         tmp_path: Path) -> None:
    assert usage_message(["check", *argv], environ, tmp_path).startswith(message)


@pytest.mark.parametrize(
    ("argv", "environ"),
    [(["--path", "a", "--path", "b"], {}), (["--environment-path", "prod=a", "--environment-path", "prod=b"], {}),
     ([], {"BRUIN_VAULT_PATH": "a", "BRUIN_MATERIALIZE_EXTRA_PATHS": "b"})],  # not in import --help, still refused
)
def test_import_writes_one_path_per_environment(argv: list[str], environ: dict[str, str], tmp_path: Path) -> None:
    message = usage_message(["import", "file.yml", *argv], environ, tmp_path)
    assert message.startswith("import writes ") and message.endswith("give one per environment")


def test_list_items() -> None:
    assert list_items(" a , b ", "X") == ["a", "b"]
    for text, where in ((" a, ,b", "item 2 of 3"), ("a,b,", "item 3 of 3"), (",a", "item 1 of 2")):
        with pytest.raises(MaterializeError) as info:
            list_items(text, "X")
        assert info.value.message == f"X has an empty item ({where}); remove the extra comma, or fill in what " \
            "belongs there"
        assert info.value.exit_code == ExitCode.USAGE
    assert list_items('[" a ", "b,c"]', "X") == [" a ", "b,c"]  # JSON items are taken as written
    assert list_items("", "X") == [] and list_items(None, "X") == []


# --- reading several paths -----------------------------------------------------------------------


def test_two_paths_go_into_one_environment(teams: KV, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bruin.yml"
    assert main(["render", "-o", str(out), "--path", "bruin/shared", "--path", "bruin/team-a"]) == 0
    found = connections(load(out))
    assert set(found) == {"warehouse", "lake", "events"}  # both paths were read, not only the last
    assert found["warehouse"]["password"] == SHARED_PASSWORD and found["events"]["password"] == TEAM_PASSWORD
    assert "materialize: 3 connections for environment 'default': duckdb 1, postgres 2" in stderr_lines(capsys)
    m = teams.mount
    assert out.read_text().splitlines()[-1] == (
        f'# bruin-materialize sources: {{"default":{{"{m}/bruin/shared":["lake","warehouse"],'
        f'"{m}/bruin/team-a":["events"]}}}}')


def test_one_session_reads_every_path(teams: KV, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-v", "--path", "bruin/shared", "--path", "bruin/team-a"]) == 0
    read = [line for line in stderr_lines(capsys) if line.startswith("materialize: read ")]
    assert len(read) == 1  # one client, one login
    assert read[0].startswith(f"materialize: read 3 secrets from {teams.mount}/bruin/shared, "
                              f"{teams.mount}/bruin/team-a (KV v{teams.version}) in ")


def test_several_paths_merged_into_a_base_file(teams: KV, tmp_path: Path) -> None:
    base = tmp_path / "base.yml"
    base.write_text("# the project's own\ndefault_environment: default\nenvironments:\n  default:\n"
                    "    connections:\n      duckdb:\n        - name: local\n          path: /data/local.db\n")
    out = tmp_path / "bruin.yml"
    argv = ["--base", str(base), "--path", "bruin/shared", "--path", "bruin/team-a"]
    assert main(["render", "-o", str(out), "-q", *argv]) == 0
    text = out.read_text()
    assert set(connections(load(out))) == {"local", "warehouse", "lake", "events"}
    assert "# the project's own" in text
    assert read_sources(text) == {"default": {"warehouse": f"{teams.mount}/bruin/shared",
                                              "lake": f"{teams.mount}/bruin/shared",
                                              "events": f"{teams.mount}/bruin/team-a"}}
    assert main(["check", "-q", *argv]) == 0  # the merged text, trailer and all, parses back to what was read


def test_three_paths_from_the_variables(teams: KV, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRUIN_VAULT_PATH", "bruin/shared")
    monkeypatch.setenv("BRUIN_MATERIALIZE_EXTRA_PATHS", "bruin/team-a,bruin/team-b")
    out = tmp_path / "bruin.yml"
    assert main(["render", "-o", str(out), "-q"]) == 0
    assert set(connections(load(out))) == {"warehouse", "lake", "events", "crm"}


@pytest.mark.parametrize("order", [("bruin/shared", "bruin/team-a"), ("bruin/team-a", "bruin/shared")])
def test_a_name_in_two_paths_is_an_error_naming_both(teams: KV, tmp_path: Path, order: tuple[str, str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    teams.put("bruin/team-a", "warehouse", pg(TEAM_PASSWORD, "own-wh.internal"))
    out = tmp_path / "out" / "bruin.yml"
    out.parent.mkdir()
    out.write_text("# the previous file\n")
    argv = ["render", "-o", str(out), "--path", order[0], "--path", order[1]]
    assert main(argv) == 4
    m = teams.mount
    assert [line for line in stderr_lines(capsys) if "error" in line] == [
        f"materialize: error: environment 'default': connection 'warehouse' is in two paths, at {m}/{order[0]}/"
        f"warehouse and at {m}/{order[1]}/warehouse; remove one, or pass --on-collision last to let the later path "
        "win",
        "materialize: error: 1 connection name in two paths of one environment (listed above); nothing was written",
    ]
    assert out.read_text() == "# the previous file\n"  # nothing written
    assert sorted(p.name for p in out.parent.iterdir()) == ["bruin.yml"]
    assert main(["check", "--path", order[0], "--path", order[1], "--on-collision", "error", "-q"]) == 4


@pytest.mark.parametrize("order", [("bruin/shared", "bruin/team-a", "bruin/team-b"),
                                   ("bruin/team-b", "bruin/team-a", "bruin/shared")])
def test_on_collision_last_lets_the_later_path_win(teams: KV, tmp_path: Path, order: tuple[str, str, str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Three paths holding `warehouse`: the last one listed wins, one note per override naming both paths."""
    passwords = {"bruin/shared": SHARED_PASSWORD, "bruin/team-a": TEAM_PASSWORD, "bruin/team-b": OTHER_PASSWORD}
    for path in ("bruin/team-a", "bruin/team-b"):
        teams.put(path, "warehouse", pg(passwords[path], "wh.internal"))
    out = tmp_path / "bruin.yml"
    argv = ["render", "-o", str(out), *[a for path in order for a in ("--path", path)], "--on-collision", "last"]
    assert main(argv) == 0
    found = connections(load(out))
    assert found["warehouse"]["password"] == passwords[order[2]]
    assert set(found) == {"warehouse", "lake", "events", "crm"}
    m = teams.mount
    notes = [line for line in stderr_lines(capsys) if "is in two paths" in line]
    assert notes == [
        f"materialize: environment 'default': connection 'warehouse' is in two paths: {m}/{order[1]}/warehouse "
        f"replaces {m}/{order[0]}/warehouse (--on-collision last)",
        f"materialize: environment 'default': connection 'warehouse' is in two paths: {m}/{order[2]}/warehouse "
        f"replaces {m}/{order[1]}/warehouse (--on-collision last)",
    ]
    assert read_sources(out.read_text())["default"]["warehouse"] == f"{m}/{order[2]}"  # type: ignore[index]


def test_several_environments_each_with_several_paths(teams: KV, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    teams.put("bruin/staging", "events", pg(OTHER_PASSWORD, "events-staging.internal"))
    monkeypatch.setenv("BRUIN_MATERIALIZE_ENVIRONMENT_PATHS",
                       "prod=bruin/shared,staging=bruin/shared,prod=bruin/team-a,staging=bruin/staging")
    out = tmp_path / "bruin.yml"
    assert main(["render", "-o", str(out), "-q"]) == 0
    doc = load(out)
    assert list(doc["environments"]) == ["prod", "staging"] and doc["default_environment"] == "prod"
    assert set(connections(doc, "prod")) == set(connections(doc, "staging")) == {"warehouse", "lake", "events"}
    assert connections(doc, "prod")["events"]["password"] == TEAM_PASSWORD
    assert connections(doc, "staging")["events"]["password"] == OTHER_PASSWORD
    # A name in two paths of *different* environments is no collision; in one environment it is.
    monkeypatch.setenv("BRUIN_MATERIALIZE_ENVIRONMENT_PATHS",
                       "prod=bruin/team-a,staging=bruin/staging,staging=bruin/team-a")
    assert main(["check", "-q"]) == 4


def test_a_missing_path_among_several_is_named(teams: KV, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--path", "bruin/shared", "--path", "bruin/nothing", "--path", "bruin/team-a"]) == 3
    assert stderr_lines(capsys)[-1] == (f"materialize: error: no secrets at {teams.mount}/bruin/nothing "
                                        f"(KV v{teams.version}): the path is empty or does not exist")


def test_recursive_applies_to_each_path(teams: KV, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    teams.put("bruin/shared/finance", "ledger", pg(SHARED_PASSWORD, "ledger.internal"))
    teams.put("bruin/team-a/raw", "ledger", pg(TEAM_PASSWORD, "raw.internal"))
    out = tmp_path / "bruin.yml"
    assert main(["render", "-o", str(out), "--path", "bruin/shared", "--path", "bruin/team-a"]) == 0
    m = teams.mount
    warnings = [line for line in stderr_lines(capsys) if "subfolder not read" in line]
    assert [w.split(": ")[2] for w in warnings] == [f"{m}/bruin/shared/finance/", f"{m}/bruin/team-a/raw/"]
    assert main(["render", "-o", str(out), "-q", "--recursive", "--path", "bruin/shared", "--path",
                 "bruin/team-a"]) == 0
    assert set(connections(load(out))) == {"warehouse", "lake", "events", "finance/ledger", "raw/ledger"}


PATHS_DOC = Path(__file__).resolve().parent.parent / "docs" / "paths.md"


def documented_policy(kv: KV) -> str:
    """docs/paths.md's policy for team A's runner, on `kv`'s mount (KV v1: without metadata/ and data/)."""
    text = PATHS_DOC.read_text(encoding="utf-8")
    block = text[text.index("```hcl\n", text.index("<!-- policy: team-a runner -->")) + 7:]
    hcl = block[:block.index("```")].replace('"secret/', f'"{kv.mount}/')
    return hcl if kv.version == 2 else hcl.replace("/metadata/", "/").replace("/data/", "/")


def test_each_team_policy_reads_its_paths_and_nothing_else(teams: KV, bao_server: BaoServer, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Team A's token holds the docs/paths.md policy: shared and team-a, not team-b. A run of its two paths
    succeeds (so nothing outside them was listed or read); adding team-b names team-b in the refusal."""
    assert documented_policy(teams).count("capabilities") == 4
    monkeypatch.setenv("BRUIN_VAULT_TOKEN", bao_server.token(documented_policy(teams)))
    out = tmp_path / "bruin.yml"
    assert main(["render", "-o", str(out), "-q", "--path", "bruin/shared", "--path", "bruin/team-a"]) == 0
    assert set(connections(load(out))) == {"warehouse", "lake", "events"}
    assert main(["check", "--path", "bruin/shared", "--path", "bruin/team-b", "--path", "bruin/team-a"]) == 3
    m = teams.mount
    listed = f"{m}/metadata/bruin/team-b" if teams.version == 2 else f"{m}/bruin/team-b"
    assert stderr_lines(capsys)[-1] == (f"materialize: error: permission denied listing {m}/bruin/team-b: the "
                                        f"token's policy needs the `list` capability on {listed}")


def test_json_names_each_connections_source(teams: KV, run_cli: Any) -> None:
    teams.put("bruin/team-a", "warehouse", pg(TEAM_PASSWORD))
    m = teams.mount
    proc = run_cli("check", "--format", "json", "--path", "bruin/shared", "--path", "bruin/team-a",
                   "--on-collision", "last")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {(c["name"], c["source"]) for c in doc["connections"]} == {
        ("warehouse", f"{m}/bruin/team-a"), ("lake", f"{m}/bruin/shared"), ("events", f"{m}/bruin/team-a")}
    [note] = [f for f in doc["findings"] if f["code"] == "path-collision"]
    assert (note["environment"], note["location"], note["level"]) == ("default", "connection 'warehouse'", "note")
    proc = run_cli("check", "--format", "json", "--path", "bruin/shared", "--path", "bruin/team-a")
    assert proc.returncode == 4
    doc = json.loads(proc.stdout)
    assert [f["level"] for f in doc["findings"] if f["code"] == "path-collision"] == ["error"]
    assert doc["error"] == "1 connection name in two paths of one environment (listed above); nothing was written"


def test_plan_shows_a_connection_read_from_another_path(teams: KV, tmp_path: Path, run_cli: Any,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The same values, moved from a team's path to the shared one: plan says so (exit 5)."""
    deployed = tmp_path / "deployed.yml"
    paths = ["--path", "bruin/shared", "--path", "bruin/team-a"]
    assert main(["render", "-o", str(deployed), "-q", *paths]) == 0
    assert main(["plan", "--against", str(deployed), "-q", *paths]) == 0
    teams.put("bruin/shared", "events", pg(TEAM_PASSWORD, "events.internal"))
    client = teams.server.client
    if teams.version == 2:
        client.secrets.kv.v2.delete_metadata_and_all_versions(mount_point=teams.mount, path="bruin/team-a/events")
    else:
        client.secrets.kv.v1.delete_secret(mount_point=teams.mount, path="bruin/team-a/events")
    teams.put("bruin/team-a", "dashboards", duckdb("/data/dash.db"))  # keeps team-a listable
    capsys.readouterr()
    assert main(["plan", "--against", str(deployed), *paths]) == 5
    m = teams.mount
    assert capsys.readouterr().out.splitlines() == [
        "+ default/dashboards (duckdb)",
        f"~ default/events (postgres): read from {m}/bruin/shared, was {m}/bruin/team-a",
    ]
    proc = run_cli("plan", "--against", str(deployed), "--format", "json", *paths)
    assert proc.returncode == 5, proc.stderr
    moved = [c for c in json.loads(proc.stdout)["changes"] if c["kind"] == "source_changed"]
    assert moved == [{"kind": "source_changed", "environment": "default", "name": "events", "type": "postgres",
                      "old_type": None, "fields": [], "source": f"{m}/bruin/shared",
                      "old_source": f"{m}/bruin/team-a"}]


def test_plan_refuses_a_damaged_sources_line(teams: KV, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deployed = tmp_path / "deployed.yml"
    deployed.write_text('default_environment: default\nenvironments:\n  default:\n    connections: {}\n'
                        '# bruin-materialize sources: {"default": [' + "[" * 50_000 + "\n")
    assert main(["plan", "--against", str(deployed), "--path", "bruin/shared"]) == 2
    assert stderr_lines(capsys)[-1] == (f"materialize: error: {deployed}: its 'bruin-materialize sources' line is "
                                        "damaged; render the file again, or remove the line")


def test_exec_gives_bruin_every_path(teams: KV, fake_bruin: Any, run_cli: Any, tmp_path: Path) -> None:
    proc = run_cli("exec", "--", "pipelines/x",
                   env={"BRUIN_VAULT_PATH": "bruin/shared", "BRUIN_MATERIALIZE_EXTRA_PATHS": "bruin/team-a",
                        "BRUIN_MATERIALIZE_RUNTIME_DIR": str(tmp_path), "BRUIN_MATERIALIZE_ALLOW_NON_TMPFS": "1",
                        "PATH": f"{fake_bruin.bin.parent}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    assert set(connections(fake_bruin.record()["config"])) == {"warehouse", "lake", "events"}


# --- one session, one parallel reader --------------------------------------------------------------

DELAY = 2.0  # seconds the proxy holds one request back; the others must not wait for it


def test_paths_are_read_side_by_side(kv2: KV, env: dict[str, str], fault_proxy: FaultProxy,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The LIST and the GET of bruin/slow are each held back DELAY seconds by the proxy; bruin/fast's LIST
    and GET reach Vault meanwhile, as one pool lists and reads every path. Read one path after another,
    bruin/fast would wait for bruin/slow's answers, or bruin/slow for bruin/fast's."""
    kv2.put("bruin/slow", "warehouse", pg(SHARED_PASSWORD))
    kv2.put("bruin/fast", "events", pg(TEAM_PASSWORD))
    monkeypatch.setenv("BRUIN_VAULT_HOST", fault_proxy.addr)
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv2.mount)
    fault_proxy.add_rule("delay", path="/metadata/bruin/slow", seconds=DELAY)
    fault_proxy.add_rule("delay", path="/data/bruin/slow/warehouse", seconds=DELAY)
    assert main(["check", "-q", "--path", "bruin/slow", "--path", "bruin/fast"]) == 0
    [slow_list], [fast_list] = (fault_proxy.request_times(f"/metadata/bruin/{p}") for p in ("slow", "fast"))
    [slow_get], [fast_get] = (fault_proxy.request_times(f"/data/bruin/{p}/") for p in ("slow", "fast"))
    assert fast_list < slow_list + DELAY / 2
    assert fast_get < slow_get + DELAY / 2
