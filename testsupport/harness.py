"""The fixtures most tests use: a real OpenBao dev server, KV mounts, the environment pointing at
it, `materialize.py` as a child process, and the stand-in bruin.

No mocks of Vault (STYLE.md, tests): `bao server -dev` runs once per session on a free loopback
port; each test gets its own KV mount. Everything a test writes as a secret is registered with the
leak guard (testsupport.leak).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest

from testsupport import bao
from testsupport.leak import LEAK_GUARD, register_secret_values
from testsupport.paths import FAKE_BRUIN_DIR, MATERIALIZE, PACKAGED_SCHEMA, SHARED_SCHEMA
from testsupport.runs import Run, run_process
from testsupport.wait import wait_until

# Environment variables that would point the code under test at another Vault, token or config.
CLEARED_PREFIXES = ("BRUIN_VAULT_", "VAULT_", "BAO_", "BRUIN_MATERIALIZE_")
CLEARED_NAMES = (
    "BRUIN_SECRETS_BACKEND", "BRUIN_CONFIG_FILE", "BRUIN_CONFIG_FILE_CONTENT", "BRUIN_BIN",
)
_PROBE = "harness-probe"


def clear_vault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset every variable that would point the program at another Vault, token or config."""
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES) or name in CLEARED_NAMES:
            monkeypatch.delenv(name)


def start_bao(workdir: Path, *args: str) -> bao.DevServer:
    """A dev server for a session fixture; a test failure (not an error) when it will not start."""
    try:
        server = bao.start(workdir, args=args)
    except bao.BaoError as exc:
        pytest.fail(str(exc), pytrace=False)
    LEAK_GUARD.add(server.token, persistent=True)
    return server


def wait_until_kv2_writable(client: hvac.Client, mount: str, path: str, secret: dict[str, Any]) -> None:
    """Write `secret`; a new KV v2 mount "upgrades" in the background and refuses writes until done."""

    def written() -> bool:
        try:
            client.secrets.kv.v2.create_or_update_secret(mount_point=mount, path=path, secret=secret)
        except hvac.exceptions.VaultError:
            return False
        return True

    wait_until(written, 5, what=f"KV v2 mount {mount} writable")


# --- the OpenBao dev server ----------------------------------------------------------------------


@dataclasses.dataclass
class BaoServer:
    addr: str
    root_token: str
    client: hvac.Client
    _counter: Iterator[int] = dataclasses.field(
        default_factory=itertools.count, init=False, repr=False
    )

    def new_kv(self, version: int) -> str:
        """Enable a fresh `kv` mount of `version` (1 or 2) and return its name (no slash)."""
        if version not in (1, 2):
            raise ValueError(f"KV version must be 1 or 2, not {version!r}")
        mount = self._unique(f"kv{version}")
        self.client.sys.enable_secrets_engine("kv", path=mount, options={"version": str(version)})
        if version == 2:
            # Probe with a write, then remove the probe so that listing the mount shows only test data.
            wait_until_kv2_writable(self.client, mount, _PROBE, {"ok": "1"})
            self.client.secrets.kv.v2.delete_metadata_and_all_versions(mount_point=mount, path=_PROBE)
        return mount

    def put(self, mount: str, path: str, name: str, secret: dict[str, Any], version: int) -> None:
        """Write `secret` at `{path}/{name}` and register its secret-looking values."""
        full_path = "/".join(part for part in (path.strip("/"), name) if part)
        register_secret_values(secret)
        engine = self.client.secrets.kv.v2 if version == 2 else self.client.secrets.kv.v1
        engine.create_or_update_secret(mount_point=mount, path=full_path, secret=secret)

    def token(self, policy_hcl: str) -> str:
        """A token holding only a new policy made of `policy_hcl` (not even `default`)."""
        policy = self._unique("policy")
        self.client.sys.create_or_update_policy(name=policy, policy=policy_hcl)
        response = self.client.auth.token.create(
            policies=[policy], no_default_policy=True, ttl="1h"
        )
        token: str = response["auth"]["client_token"]
        LEAK_GUARD.add(token)
        return token

    def disable(self, mount: str) -> None:
        self.client.sys.disable_secrets_engine(path=mount)  # type: ignore[no-untyped-call]  # untyped in types-hvac

    def _unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self._counter)}-{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def bao_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = start_bao(tmp_path_factory.mktemp("bao"))
    try:
        yield BaoServer(addr=server.addr, root_token=server.token,
                        client=hvac.Client(url=server.addr, token=server.token))
    finally:
        bao.stop(server)


# --- KV mounts -----------------------------------------------------------------------------------


@dataclasses.dataclass
class KV:
    """A fresh KV mount of one version, for one test."""

    server: BaoServer
    mount: str
    version: int

    def put(self, path: str, name: str, secret: dict[str, Any]) -> None:
        self.server.put(self.mount, path, name, secret, self.version)


def _kv_mount(server: BaoServer, version: int) -> Iterator[KV]:
    kv = KV(server, server.new_kv(version), version)
    yield kv
    server.disable(kv.mount)  # keeps the session's server small; each test has its own mount


@pytest.fixture(params=[1, 2], ids=["kv1", "kv2"])
def kv(request: pytest.FixtureRequest, bao_server: BaoServer) -> Iterator[KV]:
    yield from _kv_mount(bao_server, request.param)


@pytest.fixture
def kv1(bao_server: BaoServer) -> Iterator[KV]:
    yield from _kv_mount(bao_server, 1)


@pytest.fixture
def kv2(bao_server: BaoServer) -> Iterator[KV]:
    yield from _kv_mount(bao_server, 2)


# --- the environment and the CLI -----------------------------------------------------------------


@pytest.fixture
def vault_env(
    bao_server: BaoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    """os.environ pointing at the test server with the root token, and nothing else Vault-ish."""
    clear_vault_env(monkeypatch)
    settings = {
        "BRUIN_VAULT_HOST": bao_server.addr,
        "BRUIN_VAULT_TOKEN": bao_server.root_token,
        "HOME": str(tmp_path / "home"),  # no ~/.vault-token to fall back on
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    for name in ("home", "cache"):
        (tmp_path / name).mkdir()
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return settings


def use_mount(monkeypatch: pytest.MonkeyPatch, kv: KV, tmp_path: Path, path: str = "bruin") -> Path:
    """Point the program at `kv`'s `path`, with a runtime dir under `tmp_path` (returned) that it may use
    although it is on disk."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("BRUIN_VAULT_MOUNT_PATH", kv.mount)
    monkeypatch.setenv("BRUIN_VAULT_PATH", path)
    monkeypatch.setenv("BRUIN_MATERIALIZE_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("BRUIN_MATERIALIZE_ALLOW_NON_TMPFS", "1")  # pytest's tmp_path is on disk here
    return runtime


RunCli = Callable[..., Run]


def run_materialize(*args: str, env: Mapping[str, str | None] | None = None, timeout: float = 60,
                    cwd: Path | str | None = None) -> Run:
    """materialize.py ARGS in a child process with os.environ updated by `env` (None unsets)."""
    return run_process([sys.executable, str(MATERIALIZE), *args], env=env, cwd=cwd, timeout=timeout)


@pytest.fixture
def run_cli() -> RunCli:
    """Run materialize.py in a child process: `run_cli(*args, env=None, timeout=60, cwd=None)`.

    The child gets os.environ (as monkeypatched) updated by `env`, where None unsets a name. Its
    output is echoed to this test's stdout/stderr so that the leak guard scans it.
    """
    return run_materialize


# --- the fake bruin ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def schema_path() -> Path:
    """bruin's connections JSON Schema: the shared full copy, else the package's snapshot."""
    # The package's snapshot is a full copy too, so the tests check against bruin's whole schema
    # even where ../shared is absent.
    return SHARED_SCHEMA if SHARED_SCHEMA.is_file() else PACKAGED_SCHEMA


@dataclasses.dataclass
class FakeBruin:
    bin: Path
    record_path: Path
    schema_calls_path: Path

    def record(self) -> dict[str, Any]:
        """What the last `bruin run` saw: argv, env, config_file, environment, config, ..."""
        if not self.record_path.exists():
            pytest.fail("the fake bruin did not run, or failed before writing its record",
                        pytrace=False)
        loaded: dict[str, Any] = json.loads(self.record_path.read_text(encoding="utf-8"))
        return loaded

    def schema_calls(self) -> int:
        """How many times `bruin internal connections` ran."""
        if not self.schema_calls_path.exists():
            return 0
        return len(self.schema_calls_path.read_text(encoding="utf-8").splitlines())


@pytest.fixture
def fake_bruin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schema_path: Path) -> FakeBruin:
    """`bruin` on PATH is tests/fake_bruin/bruin, recording each run under tmp_path."""
    fake = FakeBruin(
        bin=FAKE_BRUIN_DIR / "bruin",
        record_path=tmp_path / "bruin-record.json",
        schema_calls_path=tmp_path / "bruin-schema-calls.log",
    )
    monkeypatch.setenv("PATH", f"{FAKE_BRUIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_BRUIN_PYTHON", sys.executable)  # the interpreter that has ruamel.yaml
    monkeypatch.setenv("FAKE_BRUIN_RECORD", str(fake.record_path))
    monkeypatch.setenv("FAKE_BRUIN_SCHEMA", str(schema_path))
    monkeypatch.setenv("FAKE_BRUIN_SCHEMA_CALLS", str(fake.schema_calls_path))
    return fake
