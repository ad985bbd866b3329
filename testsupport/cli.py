"""Running `materialize.py render` in a child process against a seeded KV v2 mount, and judging the run.

Shared by the fault tests (tests/test_faults.py) and the transport tests (tests/test_transport.py):
the three secrets every run reads, the output directory and its before/after comparison, and the
`materialize` and `render` fixtures, which return a testsupport.runs.Run. A test module provides the
`mount` fixture, usually by calling `seed_mount` with the address the CLI should talk to.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from testsupport.harness import RunCli
from testsupport.runs import Run

PASSWORD = "fault-Pa55word-n0t-f0r-output"
SECRETS: dict[str, dict[str, Any]] = {
    "pg": {"type": "postgres", "details": {"host": "db.internal", "port": 5432, "username": "app",
                                           "password": PASSWORD, "database": "analytics"}},
    "warehouse": {"type": "postgres", "details": {"host": "wh.internal", "port": 5433, "username": "etl",
                                                  "password": PASSWORD + "-wh", "database": "dwh"}},
    "lake": {"type": "duckdb", "details": {"path": "/data/lake.db"}},
}
PG = "bruin/pg"  # the request path that names one secret, and only that one

# Upper bounds allow for a child interpreter's start (~0.3 s) and a busy 2-core machine.
SLACK = 1.2
PREVIOUS = b"# the previous run's file\ndefault_environment: default\n"


class OutputDir:
    """The directory `render` writes into, and a record of what it held before the run."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "out"
        self.dir.mkdir(mode=0o700)
        self.file = self.dir / "bruin.yml"
        self._before = self.snapshot()

    def plant_previous(self) -> None:
        """A file from an earlier run, which a failed run must leave byte for byte."""
        self.file.write_bytes(PREVIOUS)
        self._before = self.snapshot()

    def snapshot(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.dir.iterdir()}

    def assert_untouched(self) -> None:
        # Covers "no output file", "no temp file left" and "previous file unchanged" at once.
        assert self.snapshot() == self._before

    def assert_written(self) -> None:
        assert [p.name for p in self.dir.iterdir()] == ["bruin.yml"]  # no temp file left beside it
        assert stat.S_IMODE(self.file.lstat().st_mode) == 0o600
        doc = YAML(typ="safe", pure=True).load(self.file.read_text(encoding="utf-8"))
        names = {c["name"] for conns in doc["environments"]["default"]["connections"].values() for c in conns}
        assert names == set(SECRETS)


Render = Callable[..., Run]


def seed_mount(kv2: Any, monkeypatch: pytest.MonkeyPatch, schema_path: Path, host: str) -> str:
    """Put SECRETS under bruin/ in `kv2` and point the environment at it through `host`; fast retries."""
    for name, secret in SECRETS.items():
        kv2.put("bruin", name, secret)
    settings = {
        "BRUIN_VAULT_HOST": host,
        "BRUIN_VAULT_MOUNT_PATH": kv2.mount,
        "BRUIN_VAULT_PATH": "bruin",
        "BRUIN_VAULT_TIMEOUT": "10s",
        "BRUIN_VAULT_MAX_RETRIES": "3",
        "BRUIN_VAULT_RETRY_WAIT_MIN": "50ms",
        "BRUIN_VAULT_RETRY_WAIT_MAX": "200ms",
        "BRUIN_MATERIALIZE_SCHEMA": str(schema_path),
        "PATH": os.defpath,  # no bruin: render must not need one
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    mount_name: str = kv2.mount
    return mount_name


@pytest.fixture
def out(tmp_path: Path) -> OutputDir:
    return OutputDir(tmp_path)


@pytest.fixture
def materialize(run_cli: RunCli, mount: str) -> Render:
    """`materialize(*args, timeout=60, **env)`: run `materialize.py ARGS...`; an env value of None unsets it."""

    def run(*args: str, timeout: float = 60, **env: str | None) -> Run:
        return run_cli(*args, env=env, timeout=timeout)

    return run


@pytest.fixture
def render(materialize: Render, out: OutputDir) -> Render:
    """`render(*flags, **env)`: run `materialize.py render --output OUT`; an env value of None unsets it."""

    def run(*flags: str, timeout: float = 60, **env: str | None) -> Run:
        return materialize("render", "--output", str(out.file), *flags, timeout=timeout, **env)

    return run


def reading(mount: str) -> str:
    return f"reading {mount}/{PG}: "
