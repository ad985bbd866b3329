"""Dynamic credentials: `{"$vault": PATH, "field": KEY}` in a connection's details, read per run.

Real parts: OpenBao's database secrets engine (`postgresql-database-plugin`) creates a PostgreSQL
user per lease on a real server (testsupport/postgres.py), and the stand-in bruin logs in with
`psql` using what the file gave it. No value is known before the run: each one bruin saw is
registered with the leak guard once the test has it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bruin_materialize import references
from bruin_materialize.schema import load_snapshot
from bruin_materialize.vault import RawSecret
from testsupport.fault_proxy import ALWAYS
from testsupport.harness import use_mount
from testsupport.leak import LEAK_GUARD
from testsupport.paths import MATERIALIZE
from testsupport.values import examples, text, values
from testsupport.wait import wait_until

KV_PASSWORD = "shared-Kv-Passw0rd-for-a-reference"


def ref(path: str, field: str) -> dict[str, str]:
    return {"$vault": path, "field": field}


def put_raw(kv: Any, path: str, secret: dict[str, Any]) -> None:
    """Write a secret without registering its strings: references hold paths and field names, which
    the messages name on purpose."""
    engine = kv.server.client.secrets.kv.v2 if kv.version == 2 else kv.server.client.secrets.kv.v1
    engine.create_or_update_secret(mount_point=kv.mount, path=path, secret=secret)


def put_pg(kv: Any, name: str, database: Any, creds: str, **details: Any) -> None:
    pg = database.postgres
    put_raw(kv, f"bruin/{name}", {"type": "postgres", "details": {
        "host": pg.host, "port": pg.port, "database": "postgres",
        "username": ref(creds, "username"), "password": ref(creds, "password"), **details}})


def connections(record: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = record["config"]["environments"]["default"]["connections"]["postgres"]
    for conn in found:
        LEAK_GUARD.add(conn["password"])  # the run is over: from here on, it must not be seen
    return found


@pytest.fixture
def env(vault_env: dict[str, str], kv2: Any, monkeypatch: pytest.MonkeyPatch, fake_bruin: Any,
        tmp_path: Path) -> dict[str, str]:
    use_mount(monkeypatch, kv2, tmp_path)
    return vault_env


# --- exec: leased right before bruin, revoked right after ------------------------------------------


def test_bruin_logs_in_and_the_user_is_gone_after(env: dict[str, str], kv2: Any, database: Any, run_cli: Any,
                                                  fake_bruin: Any) -> None:
    put_pg(kv2, "pg", database, database.role("reporting"))
    proc = run_cli("exec", "-v", env={"FAKE_BRUIN_LOGIN": "before"})
    assert proc.returncode == 0, proc.stderr
    record = fake_bruin.record()
    [conn] = connections(record)
    [login] = record["logins"]
    assert login == {"name": "pg", "ok": True, "user": conn["username"]} and conn["username"].startswith("v-")
    assert database.leases() == []  # revoked, not left to its TTL (the token is not ours: never revoked)
    assert not database.postgres.role_exists(conn["username"])
    [lease_line] = [line for line in proc.lines if "revoked lease" in line]
    assert lease_line.startswith(f"materialize: revoked lease {database.mount}/creds/reporting/")


def start_exec(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """materialize.py exec with a bruin that waits; returns once bruin runs."""
    full = {**os.environ, "FAKE_BRUIN_SLEEP": "30", "FAKE_BRUIN_READY": str(tmp_path / "ready"), **env}
    proc = subprocess.Popen([sys.executable, str(MATERIALIZE), "exec", *args], env=full, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def ready() -> bool:
        assert proc.poll() is None, proc.communicate()
        return (tmp_path / "ready").exists()

    wait_until(ready, 30, what="bruin started")
    return proc


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=30)
    sys.stdout.write(out)
    sys.stderr.write(err)  # for the leak guard
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_bruin_still_revokes(env: dict[str, str], kv2: Any, database: Any, fake_bruin: Any,
                                             tmp_path: Path, sig: signal.Signals) -> None:
    put_pg(kv2, "pg", database, database.role("reporting"))
    proc = start_exec(tmp_path, "-v")
    try:
        [conn] = connections(fake_bruin.record())
        assert len(database.leases()) == 1 and database.postgres.role_exists(conn["username"])
        proc.send_signal(sig)
        code, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 128 + sig  # bruin died of it
    assert database.leases() == [] and not database.postgres.role_exists(conn["username"])
    assert not any((tmp_path / "runtime").iterdir())
    # The leases went first, then the directory (the order of the cleanup in commands.exec_).
    assert "Traceback" not in err and "revoked lease" in err


def test_a_signal_before_bruin_starts_revokes_what_was_leased(env: dict[str, str], kv2: Any, database: Any,
                                                               fake_bruin: Any, fault_proxy: Any) -> None:
    """SIGTERM while the second referenced path hangs, the first one's lease granted: exit 143, the
    lease revoked (over a client of its own: the signal aborted the reading one), bruin never run."""
    put_pg(kv2, "pg", database, database.role("reporting"))
    put_raw(kv2, "shared/slow", {"value": "slow-Value-of-a-reference"})
    put_raw(kv2, "bruin/zz", {"type": "generic", "details": {"value": ref(f"{kv2.mount}/data/shared/slow",
                                                                          "value")}})
    fault_proxy.add_rule("hang", path="shared/slow", times=ALWAYS)
    proc = subprocess.Popen([sys.executable, str(MATERIALIZE), "exec"], text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, "BRUIN_VAULT_HOST": fault_proxy.addr},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: fault_proxy.requests("shared/slow") > 0, 30, what="the second path asked for")
        assert len(database.leases()) == 1
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (code, err.splitlines()[-1]) == (143, "materialize: error: interrupted by SIGTERM; nothing was written")
    assert database.leases() == [] and database.postgres.login_roles() == set()
    assert not fake_bruin.record_path.exists()


def test_a_short_lease_is_renewed_while_bruin_runs(env: dict[str, str], kv2: Any, database: Any, run_cli: Any,
                                                   fake_bruin: Any) -> None:
    """A 3 s lease, a 7 s run: without renewal Vault would revoke it (and drop the user) at 3 s."""
    put_pg(kv2, "pg", database, database.role("short", ttl="3s", max_ttl="1h"))
    proc = run_cli("exec", "-v", env={"FAKE_BRUIN_LOGIN": "before,after", "FAKE_BRUIN_SLEEP": "7"})
    assert proc.returncode == 0, proc.stderr
    record = fake_bruin.record()
    [conn] = connections(record)
    assert [login["ok"] for login in record["logins"] + record["logins_after"]] == [True, True]
    assert len([line for line in proc.lines if "materialize: renewed lease" in line]) >= 2
    assert database.leases() == [] and not database.postgres.role_exists(conn["username"])


def test_a_lease_at_its_max_ttl_is_reported(env: dict[str, str], kv2: Any, database: Any, run_cli: Any,
                                            fake_bruin: Any) -> None:
    put_pg(kv2, "pg", database, database.role("capped", ttl="3s", max_ttl="4s"))
    proc = run_cli("exec", env={"FAKE_BRUIN_SLEEP": "3"})
    assert proc.returncode == 0, proc.stderr
    connections(fake_bruin.record())
    [line] = [line for line in proc.lines if "max TTL" in line]
    assert line.startswith(f"materialize: warning: lease {database.mount}/creds/capped/")
    assert "reached its max TTL and ends at " in line and "bruin loses these credentials then" in line


def test_replace_mode_leaves_the_leases_to_their_ttl(env: dict[str, str], kv2: Any, database: Any, run_cli: Any,
                                                     fake_bruin: Any) -> None:
    """Becoming bruin leaves nothing of ours to revoke them: they are listed, as render lists them."""
    creds = database.role("reporting")
    put_pg(kv2, "pg", database, creds)
    proc = run_cli("exec", "--exec-mode", "replace", env={"FAKE_BRUIN_LOGIN": "before"})
    assert proc.returncode == 0, proc.stderr
    assert [login["ok"] for login in fake_bruin.record()["logins"]] == [True]
    connections(fake_bruin.record())
    [lease_id] = database.leases()
    assert any(line.startswith(f"materialize: lease {lease_id} ({creds}) ends at ") for line in proc.lines)


def test_two_connections_on_one_role_share_one_lease(env: dict[str, str], kv2: Any, database: Any, run_cli: Any,
                                                     fake_bruin: Any, tmp_path: Path) -> None:
    creds = database.role("shared")
    put_pg(kv2, "a", database, creds)
    put_pg(kv2, "b", database, creds)
    proc = run_cli("exec", env={"FAKE_BRUIN_LOGIN": "before"})
    assert proc.returncode == 0, proc.stderr
    record = fake_bruin.record()
    a, b = connections(record)
    assert (a["username"], a["password"]) == (b["username"], b["password"])
    assert [login["ok"] for login in record["logins"]] == [True, True]
    # render leaves it to its TTL: still one lease, listed (never a value) on stderr and in the document.
    out = tmp_path / "out.yml"
    proc = run_cli("render", "-o", str(out), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    [lease_id] = database.leases()
    doc = json.loads(proc.stdout)
    [lease] = doc["leases"]
    assert lease["lease_id"] == lease_id and lease["path"] == creds and lease["renewable"] is True
    assert lease["expires"].endswith("Z")
    assert f"materialize: lease {lease_id} ({creds}) ends at {lease['expires']} unless renewed; end it early with " \
           f"`bao lease revoke {lease_id}`" in proc.lines


def test_a_failed_run_revokes_what_it_leased(env: dict[str, str], kv2: Any, database: Any, run_cli: Any,
                                             fake_bruin: Any) -> None:
    """A wrong field: exit 4 naming the secret, the field and the path; the lease read for it goes."""
    creds = database.role("reporting")
    put_raw(kv2, "bruin/pg", {"type": "postgres", "details": {"username": ref(creds, "username"),
                                                              "password": ref(creds, "pasword")}})
    for command in ("exec", "render"):
        proc = run_cli(command)
        assert proc.returncode == 4, proc.stderr
        assert f"materialize: error: {kv2.mount}/bruin/pg: details.password: {creds} has no field 'pasword' (it " \
               "has: password, username)" in proc.lines
        assert database.leases() == [] and database.postgres.login_roles() == set()
    # The references resolve, but another secret is invalid: the leases are revoked all the same.
    put_pg(kv2, "pg", database, creds)
    put_raw(kv2, "bruin/typo", {"type": "postgress", "details": {}})
    for command in ("exec", "render"):
        proc = run_cli(command)
        assert proc.returncode == 4, proc.stderr
        assert "unknown connection type 'postgress'" in proc.stderr
        assert database.leases() == [] and database.postgres.login_roles() == set()
    assert not fake_bruin.record_path.exists()


# --- check and plan: nothing created ------------------------------------------------------------------


def test_check_creates_nothing_and_says_what_would_be_leased(env: dict[str, str], kv2: Any, database: Any,
                                                              run_cli: Any) -> None:
    creds = database.role("reporting")
    put_pg(kv2, "pg", database, creds)
    proc = run_cli("check", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert database.leases() == [] and database.postgres.login_roles() == set()
    assert f"materialize: {creds}: readable (database engine): read anew at each render or exec, " \
           "with a lease where the engine grants one" in proc.lines
    assert json.loads(proc.stdout)["references"] == [{"path": creds, "engine": "database", "dynamic": True}]
    assert f"materialize: {kv2.mount}/bruin/pg: details.password: dynamic: read from {creds} (field 'password') at " \
           "each render or exec" in proc.lines


def test_plan_calls_a_referenced_value_dynamic(env: dict[str, str], kv2: Any, database: Any, run_cli: Any,
                                               tmp_path: Path) -> None:
    put_pg(kv2, "pg", database, database.role("reporting"))
    out = tmp_path / "out.yml"
    assert run_cli("render", "-o", str(out)).returncode == 0
    LEAK_GUARD.add(out.read_text().split('"password": ')[1].split('"')[1])
    proc = run_cli("plan", "--against", str(out))
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr  # nothing to compare: not a difference
    assert "materialize: plan: no changes" in proc.lines
    assert any(line.endswith("details.password: dynamic: read from " + database.mount + "/creds/reporting (field "
                             "'password') at each render or exec") for line in proc.lines)
    assert len(database.leases()) == 1  # render's, left to its TTL; plan created none
    put_pg(kv2, "pg", database, database.role("reporting"), sslmode="require")
    proc = run_cli("plan", "--against", str(out))
    assert proc.returncode == 5 and proc.stdout == "~ default/pg (postgres): sslmode\n"


def test_the_documented_policy_is_enough_and_its_absence_is_named(env: dict[str, str], kv2: Any, database: Any,
                                                                   run_cli: Any, bao_server: Any,
                                                                   fake_bruin: Any) -> None:
    creds = database.role("reporting")
    put_pg(kv2, "pg", database, creds)
    kv_policy = f'path "{kv2.mount}/metadata/bruin" {{ capabilities = ["list"] }}\n' \
                f'path "{kv2.mount}/data/bruin/*" {{ capabilities = ["read"] }}\n'
    # docs/dynamic-credentials.md's policy, for this mount and role.
    leases = f'path "{creds}" {{ capabilities = ["read"] }}\n' \
             'path "sys/leases/renew" { capabilities = ["update"] }\n' \
             'path "sys/leases/revoke" { capabilities = ["update"] }\n'
    token = bao_server.token(kv_policy + leases)
    proc = run_cli("exec", env={"BRUIN_VAULT_TOKEN": token, "FAKE_BRUIN_LOGIN": "before"})
    assert proc.returncode == 0, proc.stderr
    assert [login["ok"] for login in fake_bruin.record()["logins"]] == [True]
    connections(fake_bruin.record())
    assert database.leases() == []
    # check asks sys/capabilities-self too, which Vault's default policy grants.
    token = bao_server.token(kv_policy + leases + 'path "sys/capabilities-self" { capabilities = ["update"] }\n')
    proc = run_cli("check", env={"BRUIN_VAULT_TOKEN": token})
    assert proc.returncode == 0, proc.stderr
    assert f"materialize: {creds}: readable (database engine): read anew at each render or exec, with a lease " \
           "where the engine grants one" in proc.lines
    token = bao_server.token(kv_policy)
    proc = run_cli("exec", env={"BRUIN_VAULT_TOKEN": token})
    assert proc.error(3) == (f"permission denied reading {creds}: the token's policy needs `read` on the path, and "
                             "`update` on sys/leases/renew and sys/leases/revoke to renew and revoke its lease "
                             "(docs/dynamic-credentials.md)")
    token = bao_server.token(kv_policy + 'path "sys/capabilities-self" { capabilities = ["update"] }\n')
    proc = run_cli("check", env={"BRUIN_VAULT_TOKEN": token})
    assert proc.error(3).startswith(f"permission denied: the token cannot read {creds}; its policy needs `read`")


# --- other engines: KV v1 and v2 references -----------------------------------------------------------


def test_kv_references(env: dict[str, str], kv2: Any, kv1: Any, run_cli: Any, tmp_path: Path) -> None:
    """A KV v2 path as `bao read` takes it (MOUNT/data/...: the key is one of data.data), and KV v1."""
    kv2.put("shared", "x", {"password": KV_PASSWORD, "port": 5433})
    kv1.put("shared", "y", {"token": KV_PASSWORD + "-v1"})
    put_raw(kv2, "bruin/pg", {"type": "postgres", "details": {
        "host": "db", "password": ref(f"{kv2.mount}/data/shared/x", "password"),
        "port": ref(f"{kv2.mount}/data/shared/x", "port")}})
    put_raw(kv2, "bruin/dbt", {"type": "databricks", "details": {
        "token": ref(f"{kv1.mount}/shared/y", "token"), "host": "h"}})
    out = tmp_path / "out.yml"
    proc = run_cli("render", "-o", str(out), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["leases"] == []  # KV secrets have no lease
    from ruamel.yaml import YAML

    doc = YAML(typ="safe", pure=True).load(out.read_text())["environments"]["default"]["connections"]
    assert doc["postgres"] == [{"name": "pg", "host": "db", "password": KV_PASSWORD, "port": 5433}]
    assert doc["databricks"] == [{"name": "dbt", "token": KV_PASSWORD + "-v1", "host": "h"}]
    proc = run_cli("check")
    assert proc.returncode == 0, proc.stderr
    assert f"materialize: {kv2.mount}/data/shared/x: readable (kv engine): a stored value, no lease" in proc.lines


@pytest.mark.parametrize(("value", "code", "message"), [
    ({"nested": {"a": 1}}, "reference-not-scalar", "field 'pick' of {path} is an object, not a value bruin can take"),
    ({"nested": [1]}, "reference-not-scalar", "field 'pick' of {path} is an array, not a value bruin can take"),
    ({"other": "x"}, "reference-field-missing", "{path} has no field 'pick' (it has: other)"),
])
def test_a_reference_that_gives_no_value_is_exit_4(env: dict[str, str], kv2: Any, run_cli: Any, value: Any,
                                                   code: str, message: str, tmp_path: Path) -> None:
    if "nested" in value:
        value = {"pick": value["nested"]}
    put_raw(kv2, "shared/x", value)
    path = f"{kv2.mount}/data/shared/x"
    put_raw(kv2, "bruin/pg", {"type": "postgres", "details": {"password": ref(path, "pick")}})
    proc = run_cli("render", "-o", str(tmp_path / "out.yml"), "--format", "json")
    assert proc.returncode == 4, proc.stderr
    assert not (tmp_path / "out.yml").exists()
    line = f"materialize: error: {kv2.mount}/bruin/pg: details.password: {message.format(path=path)}"
    assert line in proc.lines
    [finding] = [f for f in json.loads(proc.stdout)["findings"] if f["level"] == "error"]
    assert (finding["field"], finding["code"]) == ("details.password", code)


def test_a_reference_is_not_followed_again(env: dict[str, str], kv2: Any, run_cli: Any, tmp_path: Path) -> None:
    """A value that is itself a reference is an object like any other: no cycle can form."""
    path = f"{kv2.mount}/data/shared/x"
    put_raw(kv2, "shared/x", {"pick": ref(path, "pick")})
    put_raw(kv2, "bruin/pg", {"type": "postgres", "details": {"password": ref(path, "pick")}})
    proc = run_cli("render", "-o", str(tmp_path / "out.yml"))
    assert proc.returncode == 4
    assert f"materialize: error: {kv2.mount}/bruin/pg: details.password: field 'pick' of {path} is an object, not " \
           "a value bruin can take" in proc.lines


@pytest.mark.parametrize("token", ["root", "policy"])
def test_vault_itself_under_a_namespace_is_refused(env: dict[str, str], kv2: Any, bao_server: Any, run_cli: Any,
                                                   tmp_path: Path, token: str) -> None:
    """NS/auth/token/lookup-self answers with the token itself, to any token, past the auth/ rule on the
    path's start: the mount that answers (ns_token) refuses it; where the token cannot see the mount,
    the `auth` segment does. A KV secret in an `auth` folder is still read."""
    namespace = f"ns-{kv2.mount}"
    bao_server.client.adapter.post(f"/v1/sys/namespaces/{namespace}")
    itself = f"{namespace}/auth/token/lookup-self"
    put_raw(kv2, "bruin/pg", {"type": "postgres", "details": {"host": "db", "password": ref(itself, "id")}})
    run_env = {} if token == "root" else {"BRUIN_VAULT_TOKEN": bao_server.token(
        f'path "{kv2.mount}/metadata/bruin" {{ capabilities = ["list"] }}\n'
        f'path "{kv2.mount}/data/bruin/*" {{ capabilities = ["read"] }}\n'
        'path "sys/capabilities-self" { capabilities = ["update"] }\n')}
    for command in ("render", "check"):
        proc = run_cli(command, "-o", str(tmp_path / "out.yml"), env=run_env) if command == "render" else \
            run_cli(command, env=run_env)
        assert proc.error(4) == (f"$vault {itself} is served by Vault itself (a token, its configuration or an auth "
                                 "method), not by a secrets engine; references read secrets engines only")
    assert not (tmp_path / "out.yml").exists()
    if token == "root":
        kv2.put("team/auth", "x", {"password": KV_PASSWORD})
        put_raw(kv2, "bruin/pg", {"type": "postgres", "details": {
            "host": "db", "password": ref(f"{kv2.mount}/data/team/auth/x", "password")}})
        assert run_cli("render", "-o", str(tmp_path / "out.yml")).returncode == 0


# --- the reference's own shape (pure) -------------------------------------------------------------------


@pytest.mark.parametrize(("value", "message"), [
    ({"$vault": "db/creds/r"}, 'a reference must be exactly {"$vault": PATH, "field": KEY} (missing field)'),
    ({"$vault": "db/creds/r", "field": "password", "ttl": "1h"},
     "a reference must be exactly {\"$vault\": PATH, \"field\": KEY} (unknown key 'ttl')"),
    ({"$vault": "db/creds/r", "key": "password"},
     "a reference must be exactly {\"$vault\": PATH, \"field\": KEY} (unknown key 'key'; missing field)"),
    ({"$vault": ["db/creds/r"], "field": "password"}, "a reference's $vault and field must be non-empty strings"),
    ({"$vault": "db/creds/r", "field": ""}, "a reference's $vault and field must be non-empty strings"),
    ({"$vault": "/db/creds/r", "field": "x"}, "$vault is not a Vault API path as `bao read` takes it"),
    ({"$vault": "db//creds", "field": "x"}, "$vault is not a Vault API path as `bao read` takes it"),
    ({"$vault": "db/../sys/x", "field": "x"}, "$vault is not a Vault API path as `bao read` takes it"),
    ({"$vault": "db/creds/r?x=1", "field": "x"}, "$vault is not a Vault API path as `bao read` takes it"),
    ({"$vault": "db/creds/r\u00e9", "field": "x"}, "$vault is not a Vault API path as `bao read` takes it"),
    ({"$vault": "db/creds/r x", "field": "x"}, "is not a Vault API path"),
    ({"$vault": "s3cret-Passw0rd-in-the-wrong-place", "field": "x"}, "is not a path of a secrets engine"),
    ({"$vault": "auth/token/lookup-self", "field": "id"}, "$vault is under auth/, which is not a secrets engine; "
                                                          "references read secrets engines only"),
    ({"$vault": "sys/config/state/sanitized", "field": "x"}, "$vault is under sys/, which is not a secrets engine"),
])
def test_an_object_with_vault_must_be_exactly_a_reference(value: dict[str, Any], message: str) -> None:
    secret = RawSecret("pg", "kv/bruin/pg", {"type": "postgres", "details": {"hosts": [{"password": value}]}})
    found = references.find([secret])
    assert found.references == []
    [problem] = found.problems
    assert (problem.location, problem.field, problem.code) == ("kv/bruin/pg", "details.hosts[0].password",
                                                               "reference-invalid")
    assert message in problem.message
    assert "s3cret" not in problem.message and (" " not in value["$vault"] or "r x" not in problem.message)
    assert references.resolve([secret], found, lambda _data, _ref: "x") == []  # nothing is built from it


def test_references_are_replaced_where_they_stand_and_nothing_else_changes() -> None:
    details = {"host": "db", "password": ref("db/creds/r", "password"), "username": ref("db/creds/r", "username"),
               "extra": {"deep": [0, ref("kv/data/x", "k")]}}
    secret = RawSecret("pg", "kv/bruin/pg", {"type": "postgres", "details": details})
    found = references.find([secret])
    assert found.paths() == ["db/creds/r", "kv/data/x"]
    assert [(r.field, r.key) for r in found.references] == [
        ("details.password", "password"), ("details.username", "username"), ("details.extra.deep[1]", "k")]
    [done] = references.resolve([secret], found, lambda _data, r: f"<{r.path}#{r.key}>")
    assert done.data["details"] == {"host": "db", "password": "<db/creds/r#password>",
                                    "username": "<db/creds/r#username>", "extra": {"deep": [0, "<kv/data/x#k>"]}}
    assert secret.data["details"] is details and details["password"] == ref("db/creds/r", "password")  # untouched


_reference_like = st.fixed_dictionaries({"$vault": st.sampled_from(["db/creds/r", "kv/data/x", "sys/x", "/a", 1])},
                                        optional={"field": text | st.integers(), "extra": text})
_details = st.recursive(values | _reference_like, lambda inner: st.lists(inner, max_size=4) |
                        st.dictionaries(text, inner, max_size=4), max_leaves=12)


@settings(max_examples=examples(0.25, 50))
@given(details=st.dictionaries(text, _details, max_size=5))
def test_any_details_are_read_for_references_without_a_crash(details: dict[str, Any]) -> None:
    """Whatever a secret holds: every object with $vault is a reference or a finding, never a crash;
    what is resolved holds no reference any more, and the secret read is left as it was."""
    import copy

    before = copy.deepcopy(details)
    secret = RawSecret("x", "kv/p/x", {"type": "postgres", "details": details})
    found = references.find([secret])
    assert len(found.references) + len(found.problems) == _count_vault_objects(details)
    resolved = references.resolve([secret], found, lambda _data, _ref: "value")
    assert details == before
    if not found.problems:
        [done] = resolved
        assert _count_vault_objects(done.data["details"]) == 0


def _count_vault_objects(value: Any) -> int:
    if isinstance(value, dict):
        return 1 if "$vault" in value else sum(_count_vault_objects(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_vault_objects(v) for v in value)
    return 0


def test_a_stand_in_has_the_type_the_field_takes() -> None:
    """check and plan read nothing: the stand-in must pass the schema as a real value would."""
    schema = load_snapshot()
    data = {"type": "postgres", "details": {}}

    def stand_in(*steps: str | int) -> Any:
        return references.placeholder(schema, data, references.Reference("l", "f", steps, "p", "k"))

    assert stand_in("port") == 0 and stand_in("password") == "(dynamic)" and stand_in("nope") == "(dynamic)"


# --- what the lifecycle needs of the token ---------------------------------------------------------------


def test_a_failed_renewal_is_logged(env: dict[str, str], kv2: Any, database: Any, run_cli: Any, bao_server: Any,
                                    fake_bruin: Any) -> None:
    """A token that may not renew: each attempt is a warning naming the lease and the policy; the
    run goes on, and the lease is still revoked after."""
    creds = database.role("short", ttl="6s", max_ttl="1h")  # renewed at 4 s: 2 s left for the warning to say so
    put_pg(kv2, "pg", database, creds)
    token = bao_server.token(f'path "{kv2.mount}/*" {{ capabilities = ["read", "list"] }}\n'
                             f'path "{creds}" {{ capabilities = ["read"] }}\n'
                             'path "sys/leases/revoke" { capabilities = ["update"] }\n')
    proc = run_cli("exec", env={"BRUIN_VAULT_TOKEN": token, "FAKE_BRUIN_SLEEP": "5"})
    assert proc.returncode == 0, proc.stderr
    connections(fake_bruin.record())
    failed = [line for line in proc.lines if "could not renew" in line]
    assert failed and failed[0].startswith(f"materialize: warning: could not renew lease {creds}/")
    assert "permission denied; the token's policy needs `read` on the path, and `update` on sys/leases/renew" in \
           failed[0] and "unless a retry succeeds" in failed[0]
    assert database.leases() == [] and database.postgres.login_roles() == set()


def make_approle(bao_server: Any, *, denied: str = "", **options: Any) -> dict[str, Any]:
    """An AppRole login of the caller's own, whose tokens may do anything (but `denied`): the settings
    to use it (`_policy` names the tokens' policy, for live_tokens)."""
    client = bao_server.client
    mount, policy = f"approle-{os.urandom(3).hex()}", f"everything-{os.urandom(3).hex()}"
    deny = f'path "{denied}" {{ capabilities = ["deny"] }}\n' if denied else ""
    client.sys.create_or_update_policy(name=policy, policy='path "*" { capabilities = ["create", "read", "update", '
                                                          '"delete", "list", "sudo"] }\n' + deny)
    client.sys.enable_auth_method("approle", path=mount)
    client.auth.approle.create_or_update_approle("bruin", token_policies=[policy], mount_point=mount,
                                                 **{"token_ttl": "10m", **options})
    role_id = client.auth.approle.read_role_id("bruin", mount_point=mount)["data"]["role_id"]
    secret_id = client.auth.approle.generate_secret_id("bruin", mount_point=mount)["data"]["secret_id"]
    LEAK_GUARD.add(secret_id)
    return {"BRUIN_VAULT_TOKEN": None, "BRUIN_VAULT_ROLE_ID": role_id, "BRUIN_VAULT_SECRET_ID": secret_id,
            "BRUIN_VAULT_APPROLE_MOUNT": mount, "_policy": policy}


def login_settings(approle: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in approle.items() if not k.startswith("_")}


@pytest.fixture
def approle(bao_server: Any) -> dict[str, Any]:
    return make_approle(bao_server)


def live_tokens(bao_server: Any, policy: str) -> int:
    client = bao_server.client
    accessors = client.auth.token.list_accessors()["data"]["keys"]
    return sum(policy in client.auth.token.lookup_accessor(a)["data"]["policies"] for a in accessors)


def test_a_login_token_outlives_the_leases_it_holds(env: dict[str, str], kv2: Any, database: Any, run_cli: Any,
                                                    bao_server: Any, fake_bruin: Any, approle: dict[str, str],
                                                    tmp_path: Path) -> None:
    """Revoking a token revokes its leases: exec revokes the leases, then the token; render leaves
    both to their TTL (the file's user must outlive the run)."""
    put_pg(kv2, "pg", database, database.role("reporting"))
    settings = {k: v for k, v in approle.items() if not k.startswith("_")}
    proc = run_cli("exec", env={**settings, "FAKE_BRUIN_LOGIN": "before"})
    assert proc.returncode == 0, proc.stderr
    assert [login["ok"] for login in fake_bruin.record()["logins"]] == [True]
    connections(fake_bruin.record())
    assert database.leases() == [] and live_tokens(bao_server, approle["_policy"]) == 0
    proc = run_cli("render", "-o", str(tmp_path / "out.yml"), env=settings)
    assert proc.returncode == 0, proc.stderr
    LEAK_GUARD.add((tmp_path / "out.yml").read_text().split('"password": ')[1].split('"')[1])
    assert len(database.leases()) == 1 and live_tokens(bao_server, approle["_policy"]) == 1
    assert "materialize: the login token is left to its TTL: the leases listed above end with it" in proc.lines


def test_a_totp_code_is_read_like_any_other_engine(env: dict[str, str], kv2: Any, bao_server: Any, run_cli: Any,
                                                   tmp_path: Path) -> None:
    """OpenBao's TOTP engine (built in, offline): a GET of totp/code/NAME answers a fresh code, no lease."""
    import base64

    client, mount = bao_server.client, f"totp-{os.urandom(3).hex()}"
    client.sys.enable_secrets_engine("totp", path=mount)
    key = base64.b32encode(os.urandom(20)).decode()
    LEAK_GUARD.add(key)
    client.write_data(f"{mount}/keys/bruin", data={"key": key, "generate": False})
    put_raw(kv2, "bruin/api", {"type": "generic", "details": {"value": ref(f"{mount}/code/bruin", "code")}})
    out = tmp_path / "out.yml"
    proc = run_cli("render", "-o", str(out), "--format", "json")
    try:
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["leases"] == []
        from ruamel.yaml import YAML

        [api] = YAML(typ="safe", pure=True).load(out.read_text())["environments"]["default"]["connections"]["generic"]
        assert set(api) == {"name", "value"} and len(api["value"]) == 6 and api["value"].isdigit()
        proc = run_cli("check")
        assert proc.returncode == 0, proc.stderr
        assert f"materialize: {mount}/code/bruin: readable (totp engine): read anew at each render or exec, " \
               "with a lease where the engine grants one" in proc.lines
    finally:
        client.sys.disable_secrets_engine(path=mount)


def test_leases_go_before_the_file_and_the_login_token(env: dict[str, str], kv2: Any, database: Any,
                                                        bao_server: Any, fake_bruin: Any, approle: dict[str, str],
                                                        fault_proxy: Any, tmp_path: Path) -> None:
    """The order once bruin exits: the leases are revoked while the private directory and the login
    token still exist (the revocation is held up 2 s at the fault proxy to look), then both go."""
    put_pg(kv2, "pg", database, database.role("reporting"))
    fault_proxy.add_rule("delay", path="sys/leases/revoke", seconds=2.0)
    settings = {k: v for k, v in approle.items() if not k.startswith("_")}
    full = {**os.environ, "BRUIN_VAULT_HOST": fault_proxy.addr, **settings}
    proc = subprocess.Popen([sys.executable, str(MATERIALIZE), "exec"], text=True, stdin=subprocess.DEVNULL,
                            env={k: v for k, v in full.items() if v is not None},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: fault_proxy.requests("sys/leases/revoke") > 0, 30, what="the lease's revocation sent")
        assert [p.name for p in (tmp_path / "runtime").iterdir()] != []  # the file's directory is still there
        assert live_tokens(bao_server, approle["_policy"]) == 1
        code, _ = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 0
    connections(fake_bruin.record())
    assert database.leases() == [] and list((tmp_path / "runtime").iterdir()) == []
    assert live_tokens(bao_server, approle["_policy"]) == 0


# --- the login token the leases hang on, kept alive with them ---------------------------------------------


def test_a_short_login_token_is_renewed_while_bruin_runs(env: dict[str, str], kv2: Any, database: Any, run_cli: Any,
                                                         bao_server: Any, fake_bruin: Any) -> None:
    """A lease ends with the token that created it. A 3 s AppRole token, a lease of an hour, an 8 s run
    that logs in at its end: without renewing the token, Vault would revoke it at 3 s, the lease and
    the user with it."""
    approle = make_approle(bao_server, token_ttl="3s", token_max_ttl="1h")
    put_pg(kv2, "pg", database, database.role("reporting"))
    proc = run_cli("exec", "-v", env={**login_settings(approle), "FAKE_BRUIN_LOGIN": "after",
                                      "FAKE_BRUIN_SLEEP": "8"})
    assert proc.returncode == 0, proc.stderr
    record = fake_bruin.record()
    [conn] = connections(record)
    assert [login["ok"] for login in record["logins_after"]] == [True]
    assert len([line for line in proc.lines if line.startswith("materialize: renewed the login token: it ends at ")
                ]) >= 3
    assert not [line for line in proc.lines if "warning" in line], proc.stderr
    assert database.leases() == [] and not database.postgres.role_exists(conn["username"])
    assert live_tokens(bao_server, approle["_policy"]) == 0  # revoked after the leases, not left as "expired"


def test_a_login_token_that_is_not_renewable_says_when_the_leases_end(env: dict[str, str], kv2: Any, database: Any,
                                                                      run_cli: Any, bao_server: Any,
                                                                      fake_bruin: Any) -> None:
    """A batch token (AppRole's token_type=batch) is never renewable: one warning line with the time the
    leases end with it, no attempt to renew it; the run goes on and its lease is still revoked."""
    approle = make_approle(bao_server, token_type="batch", token_ttl="1m")
    put_pg(kv2, "pg", database, database.role("reporting"))
    proc = run_cli("exec", "-v", env={**login_settings(approle), "FAKE_BRUIN_LOGIN": "before"})
    assert proc.returncode == 0, proc.stderr
    connections(fake_bruin.record())
    [line] = [line for line in proc.lines if "not renewable" in line]
    assert re.fullmatch(r"materialize: warning: the login token is not renewable: it ends at \d{4}-\d\d-\d\dT"
                        r"\d\d:\d\d:\d\dZ, and the leases created with it end then, even if bruin still runs; give "
                        r"the role a token_ttl longer than the run, or a period \(docs/dynamic-credentials.md\)", line)
    assert not [line for line in proc.lines if "renewed the login token" in line]
    assert database.leases() == []


def test_a_batch_login_token_is_left_to_its_ttl_without_a_warning(env: dict[str, str], kv2: Any, run_cli: Any,
                                                                   bao_server: Any) -> None:
    """Vault cannot revoke a batch token: the run says so under -v instead of warning that revoking failed;
    a service token is revoked as ever."""
    kv2.put("bruin", "pg", {"type": "postgres", "details": {"host": "db", "port": 5432, "username": "u",
                                                             "password": "batch-token-test-pw", "database": "d"}})
    for token_type, said in (("batch", "the login token is a batch token, which Vault cannot revoke: it ends with "
                                       "its TTL"), ("service", None)):
        approle = make_approle(bao_server, token_type=token_type)
        proc = run_cli("check", "-v", env=login_settings(approle))
        assert proc.returncode == 0, proc.stderr
        assert not [line for line in proc.lines if "could not revoke" in line], proc.stderr
        assert (f"materialize: {said}" in proc.lines) if said else not [line for line in proc.lines if "batch" in line]
        assert live_tokens(bao_server, approle["_policy"]) == 0 or token_type == "batch"


def test_a_login_token_at_its_max_ttl_is_reported(env: dict[str, str], kv2: Any, database: Any, run_cli: Any,
                                                  bao_server: Any, fake_bruin: Any) -> None:
    approle = make_approle(bao_server, token_ttl="3s", token_max_ttl="4s")
    put_pg(kv2, "pg", database, database.role("reporting"))
    proc = run_cli("exec", env={**login_settings(approle), "FAKE_BRUIN_SLEEP": "2.5"})
    connections(fake_bruin.record())
    [line] = [line for line in proc.lines if "max TTL" in line]
    assert line.startswith("materialize: warning: the login token reached its max TTL and ends at ")
    assert line.endswith("; the leases created with it end then, and bruin loses these credentials if it still runs; "
                         "raise the role's token_max_ttl, or give it a period (docs/dynamic-credentials.md)")
    assert database.leases() == []


def test_a_failed_login_token_renewal_is_logged(env: dict[str, str], kv2: Any, database: Any, run_cli: Any,
                                                bao_server: Any, fake_bruin: Any) -> None:
    """renew-self refused (the policy denies it): a warning naming why and when the token and its leases
    end, retried until it has; bruin goes on; after, the lease is gone with the token, and nothing is
    said to fail in revoking what Vault already revoked."""
    approle = make_approle(bao_server, denied="auth/token/renew-self", token_ttl="3s", token_max_ttl="1h")
    put_pg(kv2, "pg", database, database.role("reporting"))
    proc = run_cli("exec", env={**login_settings(approle), "FAKE_BRUIN_SLEEP": "4"})
    assert proc.returncode == 0, proc.stderr
    connections(fake_bruin.record())
    failed = [line for line in proc.lines if "could not renew the login token" in line]
    assert failed and re.fullmatch(
        r"materialize: warning: could not renew the login token: permission denied; renew-self needs the `default` "
        r"policy \(`update` on auth/token/renew-self\); it ends at \S+Z, and the leases created with it then, unless "
        r"a retry succeeds", failed[0]), failed
    assert failed[-1].endswith("; it has expired, and the leases created with it have ended")
    assert not [line for line in proc.lines if "could not revoke" in line], proc.stderr
    assert any(line.startswith("materialize: the leases ended with the token that created them, at ")
               for line in proc.lines)
    wait_until(lambda: database.leases() == [] and database.postgres.login_roles() == set(), 10, 0.2,
               what="the lease to end")


def test_a_given_token_shorter_than_its_leases_says_so_once(env: dict[str, str], kv2: Any, database: Any,
                                                            run_cli: Any, bao_server: Any, fake_bruin: Any) -> None:
    """Someone else's token is never renewed; ending before the leases' TTL, it is named with its end."""
    put_pg(kv2, "pg", database, database.role("reporting"))
    answer = bao_server.client.auth.token.create(policies=["root"], ttl="5m", renewable=True)
    token = answer["auth"]["client_token"]
    LEAK_GUARD.add(token)
    proc = run_cli("exec", env={"BRUIN_VAULT_TOKEN": token, "FAKE_BRUIN_LOGIN": "before"})
    assert proc.returncode == 0, proc.stderr
    connections(fake_bruin.record())
    [line] = [line for line in proc.lines if "given token" in line]
    assert line.startswith("materialize: warning: the token from BRUIN_VAULT_TOKEN ends at ")
    assert line.endswith(", before its leases would, and they end with it (a given token is never renewed); give one "
                         "whose TTL covers the run, or log in instead, which renews (docs/dynamic-credentials.md)")
    assert database.leases() == []
    assert bao_server.client.auth.token.lookup(token)["data"]["ttl"] <= 300  # never renewed by us
    bao_server.client.auth.token.revoke(token)


def test_leases_hang_on_the_token_of_a_fresh_login_and_are_renewed_and_revoked_with_it(
        env: dict[str, str], kv2: Any, database: Any, bao_server: Any, fake_bruin: Any, fault_proxy: Any,
        run_cli: Any) -> None:
    """The reads outlast a 4 s token Vault will not extend, so a fresh login replaces it during them
    (lifetime.py). The leases are created after the reads with the token current then, and every
    renewal and revocation after that carries that token: none is stranded on the first one."""
    approle = make_approle(bao_server, token_ttl="4s", token_max_ttl="4s")
    put_pg(kv2, "pg", database, database.role("reporting"))
    for index in range(7):
        put_raw(kv2, f"bruin/lake{index}", {"type": "duckdb", "details": {"path": f"/data/lake{index}.db"}})
    fault_proxy.add_rule("delay", path=f"/v1/{kv2.mount}/data/bruin/", times=ALWAYS, seconds=0.5)
    proc = run_cli("exec", "--concurrency", "1", env={**login_settings(approle), "BRUIN_VAULT_HOST": fault_proxy.addr,
                                                      "FAKE_BRUIN_LOGIN": "before"})
    assert proc.returncode == 0, proc.stderr
    assert [login["ok"] for login in fake_bruin.record()["logins"]] == [True]
    connections(fake_bruin.record())
    assert fault_proxy.requests(f"auth/{approle['BRUIN_VAULT_APPROLE_MOUNT']}/login") >= 2
    carried = [(record.target, _token_of(record)) for record in fault_proxy.log()]
    start = [target for target, _ in carried].index(f"/v1/{database.mount}/creds/reporting")
    leased, after = carried[start][1], carried[start:]
    assert leased != carried[0][1]  # not the first login's token
    assert {"/v1/sys/leases/revoke", "/v1/auth/token/revoke-self"} <= {target for target, _ in after}
    assert [target for target, token in after if token != leased] == []
    assert database.leases() == [] and database.postgres.login_roles() == set()
    wait_until(lambda: live_tokens(bao_server, approle["_policy"]) == 0, 6, 0.2, what="the replaced token to end")


def _token_of(record: Any) -> int:
    """Which token a request carried, as a number (the tokens themselves are never compared in the open)."""
    token = dict((k.lower(), v) for k, v in record.headers).get("x-vault-token", "")
    return hash(token)


# --- several paths: a collision is found before anything is leased ----------------------------------------


def test_a_collision_between_paths_leases_nothing(env: dict[str, str], kv2: Any, database: Any, run_cli: Any,
                                                  fake_bruin: Any, fault_proxy: Any, tmp_path: Path) -> None:
    """A name in two paths of one environment is exit 4, found before the references are resolved: no
    lease, no database user, not even one created and revoked (the proxy saw no read of either role).
    With --on-collision last, only the winning secret's references are read."""
    put_pg(kv2, "pg", database, database.role("shared"))
    put_raw(kv2, "team/pg", {"type": "postgres", "details": {
        "host": database.postgres.host, "port": database.postgres.port, "database": "postgres",
        "username": ref(database.role("team"), "username"), "password": ref(database.role("team"), "password")}})
    through = {"BRUIN_VAULT_HOST": fault_proxy.addr}
    for command in ("exec", "render"):
        proc = run_cli(command, "--path", "bruin", "--path", "team", env={**through, "FAKE_BRUIN_LOGIN": "before"})
        assert proc.returncode == 4, proc.stderr
        assert any("remove one, or pass --on-collision last" in line for line in proc.lines)
        assert fault_proxy.requests("/creds/") == 0
        assert database.leases() == [] and database.postgres.login_roles() == set()
    assert not fake_bruin.record_path.exists()
    out = tmp_path / "out.yml"
    proc = run_cli("render", "-o", str(out), "--path", "bruin", "--path", "team", "--on-collision", "last", env=through)
    assert proc.returncode == 0, proc.stderr
    LEAK_GUARD.add(out.read_text().split('"password": ')[1].split('"')[1])
    reads = [fault_proxy.requests(f"/v1/{database.mount}/creds/{role}") for role in ("team", "shared")]
    assert reads == [1, 0]
    [lease_id] = database.leases()
    assert lease_id.startswith(f"{database.mount}/creds/team/")


def test_a_connection_the_base_file_keeps_has_its_references_left_unread(env: dict[str, str], kv2: Any,
                                                                        run_cli: Any, fault_proxy: Any,
                                                                        tmp_path: Path) -> None:
    """--prefer base: Vault's connection of a name the base file holds is not written, so its references are
    not read (for a database role, no user would be created for a file that drops it); check lists only
    what render reads."""
    kv2.put("shared", "x", {"password": KV_PASSWORD})
    kv2.put("shared", "y", {"password": KV_PASSWORD + "-y"})
    for name, path in (("pg", "shared/x"), ("other", "shared/y")):
        put_raw(kv2, f"bruin/{name}", {"type": "postgres", "details": {
            "host": "db", "password": ref(f"{kv2.mount}/data/{path}", "password")}})
    base = tmp_path / "base.yml"
    base.write_text("environments:\n  default:\n    connections:\n      postgres:\n        - name: pg\n"
                    "          host: base-host\n")
    through = {"BRUIN_VAULT_HOST": fault_proxy.addr}
    out = tmp_path / "out.yml"
    proc = run_cli("render", "-o", str(out), "--base", str(base), "--prefer", "base", "-v", env=through)
    assert proc.returncode == 0, proc.stderr
    assert [fault_proxy.requests(f"/v1/{kv2.mount}/data/shared/{n}") for n in ("x", "y")] == [0, 1]
    assert any(line.endswith(f"materialize: {kv2.mount}/bruin/pg: details.password not read: the base file's "
                             "connection is kept (--prefer base)") for line in proc.lines)
    from ruamel.yaml import YAML

    doc = YAML(typ="safe", pure=True).load(out.read_text())["environments"]["default"]["connections"]
    assert doc["postgres"] == [{"name": "pg", "host": "base-host"},
                               {"name": "other", "host": "db", "password": KV_PASSWORD + "-y"}]
    proc = run_cli("check", "--base", str(base), "--prefer", "base", env=through)
    assert proc.returncode == 0, proc.stderr
    readable = [line for line in proc.lines if ": readable (" in line]
    assert readable == [f"materialize: {kv2.mount}/data/shared/y: readable (kv engine): a stored value, no lease"]
