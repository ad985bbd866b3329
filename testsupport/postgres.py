"""A real PostgreSQL server for the dynamic-credential tests, and OpenBao's database engine on it.

`initdb` + `pg_ctl` in a temporary directory, listening on loopback only, on a free port, run as an
ordinary user (initdb refuses root; as root the tests create a system user for it, as
tests/test_unprivileged.py does). Skipped, saying why, only where PostgreSQL's programs are absent:
CI (.ci/run) installs Debian's `postgresql` package, so they run there.

Each test then mounts a database secrets engine of its own (`postgresql-database-plugin`, built into
OpenBao) with roles whose users exist only while a lease holds them.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testsupport.bao import free_port
from testsupport.harness import BaoServer
from testsupport.leak import LEAK_GUARD

PROGRAMS = ("initdb", "pg_ctl", "psql")
SUPERUSER = "bm_admin"
RUN_AS = "bm-test-postgres"  # the system user the server runs as when the tests run as root
_DEBIAN = "/usr/lib/postgresql/*/bin"


def find_programs() -> dict[str, str] | None:
    """initdb, pg_ctl and psql: on PATH, else in Debian's versioned directory (not on PATH there)."""
    found: dict[str, str] = {}
    versioned = sorted(glob.glob(_DEBIAN), key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    for name in PROGRAMS:
        path = shutil.which(name) or next((f"{d}/{name}" for d in reversed(versioned)
                                           if os.access(f"{d}/{name}", os.X_OK)), None)
        if path is None:
            return None
        found[name] = path
    return found


@dataclasses.dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    superuser: str
    password: str  # the superuser's: the database engine logs in with it to create users
    psql: str
    workdir: Path

    def query(self, sql: str) -> str:
        """One query as the superuser; its output, unaligned and without headers."""
        proc = subprocess.run([self.psql, "-h", self.host, "-p", str(self.port), "-U", self.superuser, "-d",
                               "postgres", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                              env={**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "5"},
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def role_exists(self, name: str) -> bool:
        escaped = name.replace("'", "''")
        return self.query(f"SELECT count(*) FROM pg_roles WHERE rolname = '{escaped}'") == "1"

    def login_roles(self) -> set[str]:
        """The users the database engine created (named v-...), which exist only while leased."""
        return set(self.query("SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-%'").split())


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the server as: a system user when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(RUN_AS)
    except KeyError:
        # Parallel test workers may both get here: whichever useradd loses finds the user made.
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", RUN_AS], capture_output=True)
        entry = pwd.getpwnam(RUN_AS)
    return entry.pw_uid, entry.pw_gid


def _as_owner(owner: tuple[int, int] | None, argv: list[str], log: Path) -> None:
    ids: dict[str, Any] = {} if owner is None else {"user": owner[0], "group": owner[1], "extra_groups": []}
    with log.open("ab") as out:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                              env={"PATH": os.defpath, "LC_ALL": "C", "TZ": "UTC"}, timeout=120, **ids)
    if proc.returncode != 0:
        pytest.fail(f"{Path(argv[0]).name} failed with {proc.returncode}; see {log}", pytrace=False)


def start(programs: dict[str, str]) -> Postgres:
    owner = _run_as()
    workdir = Path(tempfile.mkdtemp(prefix="bm-postgres-"))
    if owner is not None:
        os.chown(workdir, *owner)
    password = "pg-admin-" + secrets.token_hex(12)
    LEAK_GUARD.add(password, persistent=True)
    pwfile = workdir / "pwfile"
    pwfile.write_text(password + "\n", encoding="utf-8")
    pwfile.chmod(0o600)
    if owner is not None:
        os.chown(pwfile, *owner)
    data, log, port = workdir / "data", workdir / "setup.log", free_port()
    _as_owner(owner, [programs["initdb"], "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                      "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync"], log)
    pwfile.unlink()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {workdir} -c fsync=off"
    # The server writes its own log, as its user; the tools' output goes to the setup log.
    _as_owner(owner, [programs["pg_ctl"], "-D", str(data), "-l", str(data / "server.log"), "-o", options, "-w",
                      "-t", "60", "start"], log)
    return Postgres("127.0.0.1", port, SUPERUSER, password, programs["psql"], workdir)


def stop(server: Postgres, programs: dict[str, str]) -> None:
    data = server.workdir / "data"
    owner = _run_as()
    try:
        _as_owner(owner, [programs["pg_ctl"], "-D", str(data), "-m", "immediate", "-w", "stop"],
                  server.workdir / "setup.log")
    finally:
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    from testsupport.skips import postgresql, require

    require(postgresql())
    programs = find_programs()
    assert programs is not None
    server = start(programs)
    try:
        yield server
    finally:
        stop(server, programs)


# --- OpenBao's database secrets engine on it -------------------------------------------------------


CREATE = ("CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; "
          "GRANT CONNECT ON DATABASE postgres TO \"{{name}}\";")


@dataclasses.dataclass(frozen=True)
class DatabaseEngine:
    """A database secrets engine mounted for one test, connected to the session's PostgreSQL."""

    client: Any  # hvac.Client with the root token
    mount: str
    postgres: Postgres

    def role(self, name: str, *, ttl: str = "1h", max_ttl: str = "24h") -> str:
        """A role whose credentials are `{mount}/creds/{name}`; returns that path."""
        self.client.secrets.database.create_role(name=name, db_name="pg", creation_statements=[CREATE],
                                                 default_ttl=ttl, max_ttl=max_ttl, mount_point=self.mount)
        return f"{self.mount}/creds/{name}"

    def leases(self) -> list[str]:
        """Every lease of this mount's credentials, as lease ids (sys/leases/lookup lists them)."""
        found: list[str] = []
        pending = [f"{self.mount}/creds/"]
        while pending:
            prefix = pending.pop()
            try:
                keys = self.client.sys.list_leases(prefix)["data"]["keys"]
            except Exception:  # hvac's InvalidPath: nothing under the prefix
                continue
            for key in keys:
                (pending.append(prefix + key) if key.endswith("/") else found.append(prefix + key))
        return sorted(found)


def enable_database_engine(client: Any, postgres: Postgres, mount: str) -> DatabaseEngine:
    client.sys.enable_secrets_engine("database", path=mount)
    client.secrets.database.configure(
        name="pg", plugin_name="postgresql-database-plugin", mount_point=mount, allowed_roles=["*"],
        connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@{postgres.host}:{postgres.port}/postgres"
                       "?sslmode=disable",
        username=postgres.superuser, password=postgres.password, verify_connection=True)
    return DatabaseEngine(client, mount, postgres)


@pytest.fixture
def database(postgres: Postgres, bao_server: BaoServer) -> Iterator[DatabaseEngine]:
    """A database engine of this test's own, on the session's PostgreSQL; unmounted after (which
    revokes whatever leases the test left, and with them their users)."""
    mount = f"database-{secrets.token_hex(4)}"
    engine = enable_database_engine(bao_server.client, postgres, mount)
    try:
        yield engine
    finally:
        bao_server.client.sys.disable_secrets_engine(path=mount)  # type: ignore[no-untyped-call]
