"""Several environments in one file, merging into the project's own .bruin.yml, relative paths, and
`render` without --output, against a real OpenBao server."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from bruin_materialize import __version__
from bruin_materialize.cli import identical, main
from bruin_materialize.errors import ExitCode, MaterializeError
from bruin_materialize.paths import PATH_FIELDS, absolutize, is_relative_path, project_root
from bruin_materialize.render import header
from bruin_materialize.schema import load_schema_file
from bruin_materialize.settings import parse_settings
from testsupport.harness import KV, FakeBruin, RunCli
from testsupport.runs import Run
from testsupport.values import rendered

DATA = Path(__file__).resolve().parent / "data"
SIMPLE = DATA / "simple.bruin.yml"  # bruin's examples/simple.bruin.yml with comments: dev and prod
PASSWORD = "env-Pa55word-of-prod"
STAGING_PASSWORD = "env-Pa55word-of-staging"


def pg(password: str = PASSWORD, **details: Any) -> dict[str, Any]:
    return {"type": "postgres", "details": {"host": "db.internal", "port": 5432, "password": password, **details}}


def load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def parse(text_: str) -> Any:
    return YAML(typ="safe", pure=True).load(text_)


def names(doc: Any, env: str) -> dict[str, list[str]]:
    return {t: [c["name"] for c in conns] for t, conns in doc["environments"][env]["connections"].items()}


def errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("materialize: error:")]


def exec_environments(run_cli: RunCli, fake_bruin: FakeBruin, kv2: KV, paths: str, runtime: Path, *bruin_args: str,
                      cwd: Path | None = None) -> Run:
    """`exec -- BRUIN_ARGS` with the stand-in bruin, reading environments NAME=PATH,... of `kv2`."""
    return run_cli("exec", "--", *bruin_args, cwd=cwd,
                   env={"PATH": f"{fake_bruin.bin.parent}{os.pathsep}{os.environ['PATH']}",
                        "BRUIN_VAULT_MOUNT_PATH": kv2.mount, "BRUIN_MATERIALIZE_ENVIRONMENT_PATHS": paths,
                        "BRUIN_MATERIALIZE_RUNTIME_DIR": str(runtime), "BRUIN_MATERIALIZE_ALLOW_NON_TMPFS": "1"})


@pytest.fixture
def env(vault_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, schema_path: Path) -> dict[str, str]:
    monkeypatch.setenv("BRUIN_MATERIALIZE_SCHEMA", str(schema_path))
    monkeypatch.setenv("PATH", os.defpath)  # no bruin
    return vault_env


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git work tree holding bruin's example .bruin.yml, and the current directory inside it."""
    root = tmp_path / "proj"
    (root / ".git").mkdir(parents=True)
    (root / "pipelines").mkdir()
    shutil.copyfile(SIMPLE, root / ".bruin.yml")
    monkeypatch.chdir(root / "pipelines")
    return root


# --- 1. several environments in one file ----------------------------------------------------------


def test_each_path_fills_its_environment(kv: Any, env: dict[str, str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv.mount)
    kv.put("bruin/prod", "pg", pg())
    kv.put("bruin/prod", "lake", {"type": "duckdb", "details": {"path": "/data/prod.db"}})
    kv.put("bruin/staging", "pg", pg(STAGING_PASSWORD))  # the same name in another environment is fine
    out = tmp_path / "out" / "bruin.yml"
    assert main(["render", "-o", str(out), "--environment-path", "prod=bruin/prod",
                 "--environment-path", "staging=/bruin/staging/"]) == 0
    doc = load(out)
    assert doc["default_environment"] == "prod"  # the first listed
    assert list(doc["environments"]) == ["prod", "staging"]
    assert names(doc, "prod") == {"duckdb": ["lake"], "postgres": ["pg"]}
    assert doc["environments"]["staging"]["connections"]["postgres"][0]["password"] == STAGING_PASSWORD
    lines = capsys.readouterr().err.splitlines()
    assert "materialize: 2 connections for environment 'prod': duckdb 1, postgres 1" in lines
    assert "materialize: 1 connection for environment 'staging': postgres 1" in lines
    header_line = out.read_text().splitlines()[0]
    assert header_line == (f'# bruin config rendered by bruin-materialize {__version__} from "{kv.mount}/bruin/prod, '
                           f'{kv.mount}/bruin/staging (KV v{kv.version})".')
    assert main(["check", "-v", "--environment-path", "prod=bruin/prod", "--environment-path",
                 "staging=bruin/staging"]) == 0
    # -v lines start with their time here (stderr is not a terminal)
    read = [line.partition(" ")[2] for line in capsys.readouterr().err.splitlines() if " materialize: read " in line]
    assert len(read) == 1  # one client, one login, for both paths
    assert read[0].startswith(f"materialize: read 3 secrets from {kv.mount}/bruin/prod, {kv.mount}/bruin/staging "
                              f"(KV v{kv.version}) in ")


def test_environment_paths_from_the_environment_and_the_default(kv2: Any, env: dict[str, str], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv2.mount)
    monkeypatch.setenv("BRUIN_MATERIALIZE_ENVIRONMENT_PATHS", "prod=bruin/prod,staging=bruin/staging")
    kv2.put("bruin/prod", "pg", pg())
    kv2.put("bruin/staging", "pg", pg(STAGING_PASSWORD))
    out = tmp_path / "bruin.yml"
    assert main(["render", "-o", str(out), "-q", "--environment", "staging"]) == 0
    assert load(out)["default_environment"] == "staging"  # the selected one, as it is read
    assert main(["render", "-o", str(out), "-q", "--environment", "elsewhere"]) == 0
    assert load(out)["default_environment"] == "prod"  # not read: the first listed
    monkeypatch.setenv("BRUIN_MATERIALIZE_DEFAULT_ENVIRONMENT", "staging")
    assert main(["render", "-o", str(out), "-q"]) == 0
    assert load(out)["default_environment"] == "staging"
    assert main(["render", "-o", str(out), "-q", "--default-environment", "prod"]) == 0
    assert load(out)["default_environment"] == "prod"


def test_default_environment_must_be_in_the_file(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", "kv")
    monkeypatch.setenv("BRUIN_VAULT_HOST", "http://127.0.0.1:9")  # never reached
    assert main(["check", "--environment-path", "prod=bruin/prod", "--default-environment", "dev"]) == 2
    assert errors(capsys) == ["materialize: error: the default environment 'dev' would not be in the file, which "
                              "has 'prod'; bruin could not load it"]


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--environment-path", "prod"], {}, "--environment-path takes ENV=SUBPATH, e.g. prod=bruin/prod"),
        (["--environment-path", "=bruin"], {}, "--environment-path takes ENV=SUBPATH"),
        (["--environment-path", "prod=/"], {}, "--environment-path takes ENV=SUBPATH"),
        (["--environment-path", "a=x", "--environment-path", "a=/x/"], {},
         "--environment-path names path 'x' twice for environment 'a'"),
        ([], {"BRUIN_MATERIALIZE_ENVIRONMENT_PATHS": "a=x,b"},
         "BRUIN_MATERIALIZE_ENVIRONMENT_PATHS (item 2 of 2) takes ENV=SUBPATH"),
        ([], {"BRUIN_MATERIALIZE_PREFER": "both", "BRUIN_VAULT_PATH": "p"},
         "BRUIN_MATERIALIZE_PREFER must be vault or base"),
    ],
)
def test_bad_environment_settings(argv: list[str], environ: dict[str, str], message: str, tmp_path: Path) -> None:
    base = {"BRUIN_VAULT_HOST": "http://127.0.0.1:8200", "BRUIN_VAULT_MOUNT_PATH": "kv", "BRUIN_VAULT_TOKEN": "t"}
    with pytest.raises(MaterializeError) as info:
        parse_settings(["check", *argv], {**base, **environ}, cwd=tmp_path)
    assert info.value.exit_code == ExitCode.USAGE
    assert info.value.message.startswith(message)


def test_environment_paths_settings(tmp_path: Path) -> None:
    base = {"BRUIN_VAULT_HOST": "http://127.0.0.1:8200", "BRUIN_VAULT_MOUNT_PATH": "kv", "BRUIN_VAULT_TOKEN": "t",
            "BRUIN_MATERIALIZE_ENVIRONMENT_PATHS": " prod = bruin/prod/ ,staging=bruin/staging"}
    s = parse_settings(["check"], base, cwd=tmp_path)
    assert s.environment_paths == (("prod", "bruin/prod"), ("staging", "bruin/staging"))
    assert s.path == ""  # BRUIN_VAULT_PATH is not needed then
    s = parse_settings(["check", "--environment-path", "x=y"], base, cwd=tmp_path)
    assert s.environment_paths == (("x", "y"),)  # flags win over the variable, all of it
    s = parse_settings(["check"], {**base, "BRUIN_MATERIALIZE_ENVIRONMENT_PATHS": "", "BRUIN_VAULT_PATH": "p"},
                       cwd=tmp_path)
    assert (s.environment_paths, s.path) == ((), "p")


def test_exec_refuses_an_environment_the_file_would_not_have(env: dict[str, str], fake_bruin: Any, run_cli: Any,
                                                             tmp_path: Path) -> None:
    proc = run_cli("exec", "--environment-path", "prod=bruin/prod", "--", "--env", "staging", "pipelines/x",
                   env={"PATH": f"{fake_bruin.bin.parent}{os.pathsep}{os.environ['PATH']}",
                        "BRUIN_VAULT_MOUNT_PATH": "kv", "BRUIN_VAULT_HOST": "http://127.0.0.1:9",
                        "BRUIN_MATERIALIZE_RUNTIME_DIR": str(tmp_path), "BRUIN_MATERIALIZE_ALLOW_NON_TMPFS": "1"})
    assert proc.returncode == 2
    assert proc.stderr == ("materialize: error: bruin's arguments select environment 'staging', which the file would "
                           "not have (it has 'prod'); read it with --environment-path staging=SUBPATH\n")
    assert not fake_bruin.record_path.exists()


def test_exec_with_two_environments(kv2: Any, env: dict[str, str], fake_bruin: Any, run_cli: Any,
                                    tmp_path: Path) -> None:
    kv2.put("bruin/prod", "pg", pg())
    kv2.put("bruin/staging", "pg", pg(STAGING_PASSWORD))
    proc = exec_environments(run_cli, fake_bruin, kv2, "prod=bruin/prod,staging=bruin/staging", tmp_path,
                             "-e", "staging", "pipelines/x")
    assert proc.returncode == 0, proc.stderr
    record = fake_bruin.record()
    assert record["environment"] == "staging"
    assert record["config"]["default_environment"] == "staging"
    assert list(record["config"]["environments"]) == ["prod", "staging"]


def test_the_template_path_never_imports_ruamel(kv2: Any, env: dict[str, str], tmp_path: Path) -> None:
    """Without a base file, rendering stays on the jinja2 template: no ruamel.yaml to import."""
    kv2.put("bruin/prod", "pg", pg())
    kv2.put("bruin/staging", "pg", pg(STAGING_PASSWORD))
    code = ("import sys\nfrom bruin_materialize.cli import main\n"
            f"code = main(['render', '-q', '-o', {str(tmp_path / 'out.yml')!r}, '--mount-path', {kv2.mount!r}, "
            "'--environment-path', 'prod=bruin/prod', '--environment-path', 'staging=bruin/staging'])\n"
            "print(code, sorted(m for m in sys.modules if m.startswith('ruamel')))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.stdout == "0 []\n", proc.stderr


# --- 2. merging into a base file ------------------------------------------------------------------


def test_merge_keeps_every_environment_comment_and_setting_of_the_base(
        kv2: Any, env: dict[str, str], project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    base_text = (project / ".bruin.yml").read_text().replace(
        "  prod:\n    connections:\n",
        "  prod:\n    schema_prefix: prod_  # tables get it\n    config:\n      full_refresh_restricted: true\n"
        "    connections:\n")
    (project / ".bruin.yml").write_text(base_text)
    before = (project / ".bruin.yml").stat()
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv2.mount)
    kv2.put("bruin/prod", "warehouse", pg())
    kv2.put("bruin/staging", "warehouse", pg(STAGING_PASSWORD))
    out = tmp_path / "out" / "bruin.yml"
    # The project's .bruin.yml is the base without saying so.
    assert main(["render", "-o", str(out), "--environment-path", "prod=bruin/prod",
                 "--environment-path", "staging=bruin/staging"]) == 0
    written = out.read_text(encoding="utf-8")
    doc, base = parse(written), parse(base_text)
    schema = load_schema_file(Path(os.environ["BRUIN_MATERIALIZE_SCHEMA"])).describe()
    assert written.splitlines()[:3] == header(f"{kv2.mount}/bruin/prod, {kv2.mount}/bruin/staging (KV v2) and "
                                               f"{project / '.bruin.yml'}", schema).splitlines()
    assert written.splitlines()[1:3] == rendered([], "x", "y", schema).splitlines()[1:3]  # the template's header
    for line in base_text.splitlines():  # every comment, where it was
        if "#" in line:
            assert line in written.splitlines()
    assert doc["default_environment"] == "dev"  # the base's
    assert list(doc["environments"]) == ["dev", "prod", "staging"]
    assert identical(doc["environments"]["dev"], base["environments"]["dev"])
    prod = doc["environments"]["prod"]
    assert (prod["schema_prefix"], prod["config"]) == ("prod_", {"full_refresh_restricted": True})
    assert prod["connections"]["google_cloud_platform"] == base["environments"]["prod"]["connections"][
        "google_cloud_platform"]
    assert prod["connections"]["postgres"] == [{"name": "warehouse", **pg()["details"]}]
    assert doc["environments"]["staging"]["connections"]["postgres"][0]["password"] == STAGING_PASSWORD
    assert (project / ".bruin.yml").read_text() == base_text  # never written
    assert (project / ".bruin.yml").stat().st_mtime_ns == before.st_mtime_ns
    assert main(["check", "-q", "--environment-path", "prod=bruin/prod", "--environment-path",
                 "staging=bruin/staging"]) == 0
    # --no-base: the template alone, as before.
    assert main(["render", "-o", str(out), "-q", "--no-base", "--environment-path", "prod=bruin/prod"]) == 0
    assert list(load(out)["environments"]) == ["prod"]
    capsys.readouterr()


def test_one_path_goes_into_the_environment_bruin_will_select(kv2: Any, env: dict[str, str], project: Path,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv2.mount)
    monkeypatch.setenv("BRUIN_VAULT_PATH", "bruin/dev")
    kv2.put("bruin/dev", "warehouse", pg())
    out = tmp_path / "bruin.yml"
    assert main(["render", "-o", str(out), "-q"]) == 0  # the base's default_environment: dev
    assert "warehouse" in names(load(out), "dev")["postgres"]
    assert main(["render", "-o", str(out), "-q", "-e", "prod"]) == 0
    doc = load(out)
    assert doc["default_environment"] == "dev" and names(doc, "prod")["postgres"] == ["warehouse"]
    assert main(["render", "-o", str(out), "-q", "-e", "prod", "--default-environment", "prod"]) == 0
    assert load(out)["default_environment"] == "prod"


def test_explicit_base_and_its_errors(kv2: Any, env: dict[str, str], tmp_path: Path, leak_guard: Any,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv2.mount)
    monkeypatch.setenv("BRUIN_VAULT_PATH", "bruin")
    kv2.put("bruin", "pg", pg())
    out = tmp_path / "out.yml"
    assert main(["render", "-o", str(out), "-q", "--base", str(tmp_path / "missing.yml")]) == 2
    base_secret = "base-only-Secret-value"
    leak_guard.add(base_secret)
    bad = tmp_path / "bad.yml"
    bad.write_text(f"environments:\n  dev:\n    connections: {{}}\n  dev:\n    x: {base_secret}\n")
    assert main(["render", "-o", str(out), "-q", "--base", str(bad)]) == 2
    bad.write_text("- a list\n")
    assert main(["check", "-q", "--base", str(bad)]) == 2
    bad.write_text("environments:\n  dev:\n    connections:\n      postgres: {name: x}\n")
    monkeypatch.setenv("BRUIN_MATERIALIZE_BASE", str(bad))
    assert main(["check", "-q"]) == 2
    assert errors(capsys) == [
        f"materialize: error: cannot read the base file {tmp_path / 'missing.yml'}: No such file or directory",
        f"materialize: error: the base file {bad} is not valid YAML at line 4: a mapping has the same key twice (a "
        "duplicate key)",
        f"materialize: error: the base file {bad} must be a mapping with `environments`, like a .bruin.yml",
        f"materialize: error: the base file {bad}: environment 'dev': connections.postgres must be a list",
    ]
    assert not out.exists()


def test_a_name_in_both_is_an_error_unless_one_is_preferred(kv2: Any, env: dict[str, str], project: Path,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv2.mount)
    monkeypatch.setenv("BRUIN_VAULT_PATH", "bruin/prod")
    kv2.put("bruin/prod", "conn1", pg())  # prod's conn1 is google_cloud_platform in the base
    kv2.put("bruin/prod", "conn3", pg())  # dev has a conn3, prod does not: no collision
    out = tmp_path / "out" / "bruin.yml"
    assert main(["render", "-o", str(out), "-e", "prod"]) == 4
    assert errors(capsys) == [
        f"materialize: error: environment 'prod': connection 'conn1' (postgres in Vault, google_cloud_platform in "
        f"the base) is both in Vault and in {project / '.bruin.yml'}; remove one, or pass --prefer vault|base",
        "materialize: error: 1 connection name in both Vault and the base file (listed above); nothing was written",
    ]
    assert not out.exists()
    assert main(["render", "-o", str(out), "-q", "-e", "prod", "--prefer", "vault"]) == 0
    assert names(load(out), "prod") == {"postgres": ["conn1", "conn3"]}
    monkeypatch.setenv("BRUIN_MATERIALIZE_PREFER", "base")
    assert main(["render", "-o", str(out), "-e", "prod"]) == 0
    assert names(load(out), "prod") == {"google_cloud_platform": ["conn1"], "postgres": ["conn3"]}
    lines = capsys.readouterr().err.splitlines()
    assert (f"materialize: environment 'prod': connection 'conn1' (postgres in Vault, google_cloud_platform in the "
            f"base) is both in Vault and in {project / '.bruin.yml'}; base's is kept (--prefer base)") in lines
    # The summary counts what was written: Vault's conn1 was not.
    assert ("materialize: 1 connection for environment 'prod': postgres 1 (1 more in Vault, not written: the base "
            "file's kept, --prefer base)") in lines


# --- 3. relative paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(("conn_type", "field"), [(t, f) for t, fields in PATH_FIELDS.items() for f in fields],
                         ids=lambda x: x if isinstance(x, str) else ".".join(x))
def test_each_relative_path_field_is_made_absolute(conn_type: str, field: tuple[str, ...], tmp_path: Path) -> None:
    def connection(value: str) -> dict[str, Any]:
        conn: dict[str, Any] = {"name": "c"}
        node = conn
        for key in field[:-1]:
            node = node.setdefault(key, {"type": "x"})
        node[field[-1]] = value
        return conn

    conn = connection("keys/../certs/a.pem")
    assert absolutize(conn_type, conn, tmp_path) == [".".join(field)]
    assert conn == connection(str(tmp_path / "certs" / "a.pem"))
    for kept in ("/abs/a.pem", "", ":memory:", "md:my_db", "s3://bucket/lake", "file:///x", "${HOME}/a.pem",
                 "C:\\keys\\a.pem"):
        conn = connection(kept)
        assert absolutize(conn_type, conn, tmp_path) == []
        assert conn == connection(kept)
    assert absolutize("postgres", {"name": "c", "path": "rel"}, tmp_path) == []  # bruin leaves it alone


# bruin's list (pkg/config/manager.go, LoadFromFileOrEnv), written out here so that a field dropped from
# PATH_FIELDS fails a test instead of silently shrinking the parametrized one above.
BRUIN_RESOLVES = {
    ("duckdb", "path"), ("google_cloud_platform", "service_account_file"),
    ("google_sheets", "service_account_file"), ("snowflake", "private_key_path"),
    *((t, f) for t in ("mysql", "doris", "vitess") for f in ("ssl_ca_path", "ssl_cert_path", "ssl_key_path")),
    ("iceberg", "catalog.path"), ("iceberg", "storage.path"), ("iceberg", "storage.key_file"),
}


def test_path_fields_are_the_ones_bruin_resolves() -> None:
    assert {(t, ".".join(f)) for t, fields in PATH_FIELDS.items() for f in fields} == BRUIN_RESOLVES


def test_google_sheets_key_file_reaches_bruin_absolute(kv2: Any, env: dict[str, str], fake_bruin: Any, run_cli: Any,
                                                       tmp_path: Path) -> None:
    """The stand-in bruin resolves it against the file's (tmpfs) directory, as bruin does: it must arrive
    absolute, naming the file in the project."""
    project_dir = tmp_path / "proj"
    (project_dir / ".git").mkdir(parents=True)
    kv2.put("bruin", "sheets", {"type": "google_sheets", "details": {"service_account_file": "keys/sa.json"}})
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    proc = run_cli("exec", "--no-base", "--", ".", cwd=project_dir,
                   env={"PATH": f"{fake_bruin.bin.parent}{os.pathsep}{os.environ['PATH']}",
                        "BRUIN_VAULT_MOUNT_PATH": kv2.mount, "BRUIN_VAULT_PATH": "bruin",
                        "BRUIN_MATERIALIZE_RUNTIME_DIR": str(runtime), "BRUIN_MATERIALIZE_ALLOW_NON_TMPFS": "1"})
    assert proc.returncode == 0, proc.stderr
    [sheets] = fake_bruin.record()["config"]["environments"]["default"]["connections"]["google_sheets"]
    assert sheets["service_account_file"] == str(project_dir / "keys" / "sa.json")
    assert "details.service_account_file: relative path made absolute" in proc.stderr


def test_is_relative_path() -> None:
    assert is_relative_path("lake.db") and is_relative_path("./a/b") and is_relative_path("~/x")
    assert not any(is_relative_path(v) for v in ("", ":memory:", "md:", "s3://b", "/x", 5, None, "a${X}"))


def test_project_root_is_the_git_root_else_the_directory(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "a" / "b").mkdir(parents=True)
    assert project_root(tmp_path / "repo" / "a" / "b") == tmp_path / "repo"
    (tmp_path / "plain").mkdir()
    assert project_root(tmp_path / "plain") == tmp_path / "plain"
    base = {"BRUIN_VAULT_HOST": "http://127.0.0.1:8200", "BRUIN_VAULT_MOUNT_PATH": "kv", "BRUIN_VAULT_TOKEN": "t",
            "BRUIN_VAULT_PATH": "p"}
    assert parse_settings(["check"], base, cwd=tmp_path / "repo" / "a").project_root == tmp_path / "repo"
    assert parse_settings(["check", "--project-root", "b"], base, cwd=tmp_path / "repo" / "a"
                          ).project_root == tmp_path / "repo" / "a" / "b"
    assert parse_settings(["check"], {**base, "BRUIN_MATERIALIZE_PROJECT_ROOT": "/srv/p"},
                          cwd=tmp_path).project_root == Path("/srv/p")


def test_relative_paths_from_secrets_and_base_still_resolve(kv2: Any, env: dict[str, str], project: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    base = project / ".bruin.yml"
    base.write_text(base.read_text().replace('path: "/path/to/duck.db"', 'path: "data/duck.db"'))
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv2.mount)
    monkeypatch.setenv("BRUIN_VAULT_PATH", "bruin/prod")
    kv2.put("bruin/prod", "lake", {"type": "duckdb", "details": {"path": "./lake/prod.duckdb"}})
    kv2.put("bruin/prod", "mem", {"type": "duckdb", "details": {"path": ":memory:"}})
    kv2.put("bruin/prod", "sf", {"type": "snowflake", "details": {"account": "a", "private_key_path": "keys/sf.p8"}})
    out = tmp_path / "out" / "bruin.yml"
    assert main(["render", "-o", str(out), "-e", "prod"]) == 0
    doc = load(out)
    prod = doc["environments"]["prod"]["connections"]
    assert prod["duckdb"] == [{"name": "lake", "path": str(project / "lake" / "prod.duckdb")},
                              {"name": "mem", "path": ":memory:"}]
    assert prod["snowflake"][0]["private_key_path"] == str(project / "keys" / "sf.p8")
    [duck] = doc["environments"]["dev"]["connections"]["duckdb"]
    assert duck["path"] == str(project / "data" / "duck.db")
    assert 'path: "' + str(project / "data" / "duck.db") + '"' in out.read_text()  # its quoting kept
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "relative path" in line] == [
        f"materialize: {base}: dev/conn20 (duckdb): path: relative path made absolute against {project}, the base "
        "file's directory",
        f"materialize: {kv2.mount}/bruin/prod/lake: details.path: relative path made absolute against the project "
        f"root {project}",
        f"materialize: {kv2.mount}/bruin/prod/sf: details.private_key_path: relative path made absolute against the "
        f"project root {project}",
    ]


# --- 2 + 3 + exec: the merged file as bruin loads it ------------------------------------------------


def test_exec_loads_the_merged_file(kv2: Any, env: dict[str, str], project: Path, fake_bruin: Any, run_cli: Any,
                                    tmp_path: Path) -> None:
    base = project / ".bruin.yml"
    base.write_text(base.read_text().replace('path: "/path/to/duck.db"', 'path: "data/duck.db"'))
    kv2.put("bruin/prod", "warehouse", pg())
    kv2.put("bruin/dev", "warehouse", pg(STAGING_PASSWORD))
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    proc = exec_environments(run_cli, fake_bruin, kv2, "prod=bruin/prod,dev=bruin/dev", runtime,
                             "--environment", "prod", "pipelines/x", cwd=project / "pipelines")
    assert proc.returncode == 0, proc.stderr
    record = fake_bruin.record()
    assert record["environment"] == "prod"
    config = record["config"]
    assert config["default_environment"] == "dev"
    assert config["environments"]["prod"]["connections"]["postgres"][0]["password"] == PASSWORD
    dev = config["environments"]["dev"]["connections"]
    assert dev["postgres"][-1] == {"name": "warehouse", **pg(STAGING_PASSWORD)["details"]}
    assert dev["duckdb"] == [{"name": "conn20", "path": str(project / "data" / "duck.db")}]  # not on tmpfs
    assert Path(record["config_file"]).parent.parent == runtime
    text = record["config_text"]
    assert "# a local file, no secret in it" in text


# --- 5. render without --output -------------------------------------------------------------------


def test_render_without_output_prints_the_path_of_a_private_file(kv2: Any, env: dict[str, str], run_cli: Any,
                                                                 tmp_path: Path) -> None:
    kv2.put("bruin", "pg", pg())
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    settings_env = {"BRUIN_VAULT_MOUNT_PATH": kv2.mount, "BRUIN_VAULT_PATH": "bruin",
                    "BRUIN_MATERIALIZE_RUNTIME_DIR": str(runtime)}
    proc = run_cli("render", env=settings_env)
    assert proc.returncode == 2 and "is not on tmpfs, so credentials would reach a disk" in proc.stderr
    assert proc.stdout == "" and list(runtime.iterdir()) == []
    proc = run_cli("render", "--allow-non-tmpfs", env=settings_env)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.removesuffix("\n"))
    assert proc.stdout == f"{path}\n" and path.parent.parent == runtime and path.name == "bruin.yml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load(path)["environments"]["default"]["connections"]["postgres"][0]["password"] == PASSWORD
    assert f"delete it when done: rm -r {path.parent}" in proc.stderr


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm")
def test_render_without_output_defaults_to_tmpfs(kv2: Any, env: dict[str, str], run_cli: Any) -> None:
    kv2.put("bruin", "pg", pg())
    proc = run_cli("render", "-q", env={"BRUIN_VAULT_MOUNT_PATH": kv2.mount, "BRUIN_VAULT_PATH": "bruin",
                                        "XDG_RUNTIME_DIR": ""})
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    try:
        assert path.parent.parent == Path("/dev/shm") and path.is_file()
    finally:
        shutil.rmtree(path.parent)
