"""--format json: one JSON document on stdout for check, plan and render, never a value.

The commands run as processes against the real OpenBao server: stdout must hold the document and
nothing else. The leak guard scans what they print; the tests also look for the values themselves.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from bruin_materialize import __version__, references
from bruin_materialize.machine import CODES
from bruin_materialize.schema import load_snapshot
from bruin_materialize.validate import Options, validate
from bruin_materialize.vault import RawSecret

PASSWORD = "json-Pa55word-of-prod"
NEW_PASSWORD = "json-Pa55word-rotated"
SECRET_KEY = "json-Secret-Key-Value"
TOP_KEYS = {"format", "tool", "command", "exit_code", "ok", "error", "schema", "findings", "connections"}
FINDING_KEYS = {"environment", "location", "field", "level", "code", "message"}


def pg(password: str = PASSWORD, **details: Any) -> dict[str, Any]:
    return {"type": "postgres", "details": {"host": "db.internal", "port": 5432, "password": password, **details}}


@pytest.fixture
def env(vault_env: dict[str, str], kv2: Any, monkeypatch: pytest.MonkeyPatch, schema_path: Path,
        tmp_path: Path) -> dict[str, str]:
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv2.mount)
    monkeypatch.setenv("BRUIN_VAULT_PATH", "bruin")
    monkeypatch.setenv("BRUIN_MATERIALIZE_SCHEMA", str(schema_path))
    monkeypatch.setenv("PATH", os.defpath)  # no bruin
    monkeypatch.chdir(tmp_path)  # no project .bruin.yml to merge into
    return vault_env


def document(stdout: str) -> dict[str, Any]:
    """stdout is exactly one JSON document (and no value of any secret)."""
    doc = json.loads(stdout)
    assert isinstance(doc, dict) and TOP_KEYS <= doc.keys()
    for value in (PASSWORD, NEW_PASSWORD, SECRET_KEY):
        assert value not in stdout
    return doc


def test_check_lists_each_finding_and_connection(env: dict[str, str], kv2: Any, run_cli: Any) -> None:
    kv2.put("bruin", "pg", pg(port="5432", sslmode=True))
    kv2.put("bruin", "typo", {"type": "postgress", "details": {"password": PASSWORD}})
    kv2.put("bruin", "s3", {"type": "s3", "details": {"access_key_id": 7, "secret_access_key": SECRET_KEY}})
    proc = run_cli("check", "--format", "json")
    assert proc.returncode == 4, proc.stderr
    doc = document(proc.stdout)
    assert doc["format"] == 1 and doc["tool"] == {"name": "bruin-materialize", "version": __version__}
    assert doc["command"] == "check" and doc["exit_code"] == 4 and doc["ok"] is False
    assert doc["error"] == "1 invalid secret field (listed above); nothing was written"
    assert doc["schema"].startswith(f"{os.environ['BRUIN_MATERIALIZE_SCHEMA']}, sha256 ")
    for finding in doc["findings"]:
        assert set(finding) == FINDING_KEYS and finding["environment"] == "default"
    found = {(f["location"], f["field"], f["level"], f["code"]) for f in doc["findings"]}
    where = f"{kv2.mount}/bruin"
    assert (f"{where}/typo", "type", "error", "type-unknown") in found
    assert (f"{where}/pg", "details.port", "note", "value-converted") in found
    assert (f"{where}/pg", "details", "warning", "field-unknown") in found  # sslmode: not a postgres field
    assert (f"{where}/s3", "details.access_key_id", "note", "value-converted") in found
    [typo] = [f for f in doc["findings"] if f["code"] == "type-unknown"]
    assert typo["message"].startswith("unknown connection type 'postgress' (did you mean postgres?)")
    assert doc["connections"] == [{"environment": "default", "name": "pg", "type": "postgres", "source": where},
                                  {"environment": "default", "name": "s3", "type": "s3", "source": where}]
    assert "changes" not in doc and "written" not in doc
    assert "materialize: error:" in proc.stderr  # the text stays on stderr


def test_check_passing_is_ok_and_text_stays_the_default(env: dict[str, str], kv2: Any, run_cli: Any) -> None:
    kv2.put("bruin", "pg", pg())
    proc = run_cli("check", "--format=json")
    assert proc.returncode == 0, proc.stderr
    doc = document(proc.stdout)
    assert doc["ok"] is True and doc["error"] is None and doc["exit_code"] == 0
    assert doc["connections"] == [{"environment": "default", "name": "pg", "type": "postgres",
                                   "source": f"{kv2.mount}/bruin"}]
    proc = run_cli("check")
    assert proc.returncode == 0 and proc.stdout == ""


NO_SOURCE = {"source": None, "old_source": None}  # only a connection read from another path has them


def test_plan_lists_each_change_by_kind_and_field(env: dict[str, str], kv2: Any, run_cli: Any,
                                                  tmp_path: Path) -> None:
    kv2.put("bruin", "pg", pg())
    kv2.put("bruin", "old", pg())
    deployed = tmp_path / "deployed" / "bruin.yml"
    assert run_cli("render", "-o", str(deployed), "-q").returncode == 0
    kv2.put("bruin", "pg", pg(NEW_PASSWORD, sslmode="require"))
    kv2.server.client.secrets.kv.v2.delete_metadata_and_all_versions(mount_point=kv2.mount, path="bruin/old")
    kv2.put("bruin", "new", {"type": "duckdb", "details": {"path": "/data/x.db"}})
    proc = run_cli("plan", "--against", str(deployed), "--format", "json")
    assert proc.returncode == 5, proc.stderr
    doc = document(proc.stdout)
    assert doc["command"] == "plan" and doc["exit_code"] == 5 and doc["ok"] is False and doc["error"] is None
    assert doc["changes"] == [
        {"kind": "added", "environment": "default", "name": "new", "type": "duckdb", "old_type": None, "fields": [],
         **NO_SOURCE},
        {"kind": "removed", "environment": "default", "name": "old", "type": "postgres", "old_type": None,
         "fields": [], **NO_SOURCE},
        {"kind": "changed", "environment": "default", "name": "pg", "type": "postgres", "old_type": None,
         "fields": ["password", "sslmode"], **NO_SOURCE},
    ]
    proc = run_cli("plan", "--against", str(deployed))  # the text, for comparison: the same changes
    assert proc.stdout.splitlines() == ["+ default/new (duckdb)", "- default/old (postgres)",
                                        "~ default/pg (postgres): password, sslmode"]


def test_render_says_where_it_wrote(env: dict[str, str], kv2: Any, run_cli: Any, tmp_path: Path) -> None:
    kv2.put("bruin", "pg", pg())
    out = tmp_path / "out" / "bruin.yml"
    proc = run_cli("render", "-o", str(out), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = document(proc.stdout)
    assert doc["written"] == str(out) and out.is_file()
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    proc = run_cli("render", "--format", "json", "--allow-non-tmpfs", "--runtime-dir", str(runtime))
    assert proc.returncode == 0, proc.stderr
    written = Path(document(proc.stdout)["written"])  # the path is in the document, not printed alone
    assert written.parent.parent == runtime and written.is_file()


def test_a_vault_error_is_a_document_too(env: dict[str, str], run_cli: Any) -> None:
    proc = run_cli("check", "--format", "json", env={"BRUIN_VAULT_PATH": "nothing/here"})
    assert proc.returncode == 3, proc.stderr
    doc = document(proc.stdout)
    assert doc["exit_code"] == 3 and doc["ok"] is False and "nothing/here" in doc["error"]
    assert doc["findings"] == [] and doc["connections"] == []


def test_a_setting_error_is_a_document_too(env: dict[str, str], run_cli: Any) -> None:
    proc = run_cli("plan", "--format", "json", "--kv-version", "7", "--against", "x.yml")
    assert proc.returncode == 2, proc.stderr
    doc = document(proc.stdout)
    assert doc["command"] == "plan" and doc["exit_code"] == 2 and doc["changes"] == []
    assert doc["error"] == proc.stderr.splitlines()[-1].removeprefix("materialize: error: ")
    proc = run_cli("check", "--format=json", env={"BRUIN_VAULT_HOST": None})
    assert proc.returncode == 2 and document(proc.stdout)["error"].startswith("BRUIN_VAULT_HOST")
    proc = run_cli("check", "--kv-version", "7")  # text: nothing on stdout
    assert proc.returncode == 2 and proc.stdout == ""


def test_format_is_refused_where_it_means_nothing(env: dict[str, str], run_cli: Any) -> None:
    assert run_cli("check", "--format", "yaml").returncode == 2
    assert run_cli("exec", "--format", "json", "--", ".").returncode == 2


def test_every_finding_kind_has_its_code() -> None:
    """Each kind of finding validate() reports maps to its own code, none to "other"."""
    secrets = [
        RawSecret("deleted", "kv/p/deleted", None),
        RawSecret("list", "kv/p/list", [1]),
        RawSecret("extra", "kv/p/extra", {"type": "postgres", "details": {}, "x": 1}),
        RawSecret("renamed", "kv/p/renamed", {"type": "postgres", "details": {"name": "other"}}),
        RawSecret("typo", "kv/p/typo", {"type": "postgress", "details": {}}),
        RawSecret("notype", "kv/p/notype", {"details": {}}),
        RawSecret("nodetails", "kv/p/nodetails", {"type": "postgres"}),
        RawSecret("longkey", "kv/p/longkey", {"type": "postgres", "details": {"k" * 2000: 1}}),
        RawSecret("surrogate", "kv/p/surrogate", {"type": "postgres", "details": {"host": "\udc80"}}),
        RawSecret("envref", "kv/p/envref", {"type": "postgres", "details": {"host": "${HOME}"}}),
        RawSecret("unknown", "kv/p/unknown", {"type": "postgres", "details": {"hots": "h"}}),
        RawSecret("converted", "kv/p/converted", {"type": "postgres", "details": {"port": "5432"}}),
        RawSecret("mismatch", "kv/p/mismatch", {"type": "postgres", "details": {"port": "x"}}),
        RawSecret("dup", "kv/p/dup", {"type": "postgres", "details": {}}),
        RawSecret("dup", "kv/q/dup", {"type": "mysql", "details": {}}),
        RawSecret("deep", "kv/p/deep", {"type": "postgres", "details": {"x": json.loads("[" * 34 + "1" + "]" * 34)}}),
    ]
    outcome = validate(secrets, load_snapshot(), Options())
    codes = {p.code for p in outcome.problems}
    # References' findings come from references.py, before validation.
    found = references.find([
        RawSecret("ref", "kv/p/ref", {"type": "postgres", "details": {
            "username": {"$vault": "db/creds/r", "field": "username"},
            "password": {"$vault": "db/creds/r", "field": "pasword"},
            "host": {"$vault": "db/creds/r", "field": "host"}}}),
        RawSecret("bad", "kv/p/bad", {"type": "postgres", "details": {"password": {"$vault": "db/creds/r"}}}),
    ])
    answers = {"db/creds/r": {"username": "u", "password": "p", "host": {"not": "scalar"}}}
    codes |= {p.code for p in found.problems + references.value_problems(found, answers)}
    assert "other" not in codes
    # The pipeline's own (a collision with the base file or between two paths, a path made absolute, a value
    # read per run) come from elsewhere.
    assert codes == set(CODES) - {"base-collision", "path-absolutized", "path-collision", "reference-dynamic"}


def test_the_documented_codes_are_the_codes() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "json-output.md").read_text(encoding="utf-8")
    paragraph = doc[doc.index("Codes: "):doc.index("for anything")]
    assert re.findall(r"`([a-z-]+)`", paragraph) == [*CODES, "other"]
