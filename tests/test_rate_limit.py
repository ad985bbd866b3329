"""Rate limits, against OpenBao's own rate-limit quotas (`sys/quotas/rate-limit`), scoped to each
test's mount so that nothing else on the session's server is throttled.

A 429 is back-pressure: the tool waits and retries within the operation's deadline, without spending
BRUIN_VAULT_MAX_RETRIES, and halves its parallel requests while throttled (docs/reliability.md).
OpenBao's quota counts requests per fixed window (`rate` per `interval`) and sends no Retry-After.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from bruin_materialize.adapter import Gate
from testsupport.harness import KV, BaoServer, RunCli
from testsupport.paths import MATERIALIZE

SECRET = {"type": "duckdb", "details": {"path": "/data/lake.db"}}


@pytest.fixture
def throttled_env(kv2: KV, vault_env: dict[str, str], schema_path: Path, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"BRUIN_VAULT_MOUNT_PATH": kv2.mount, "BRUIN_VAULT_PATH": "bruin",
           "BRUIN_MATERIALIZE_SCHEMA": str(schema_path), "PATH": os.defpath}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _seed(kv2: KV, n: int) -> None:
    for i in range(n):
        kv2.put("bruin", f"lake{i:03d}", SECRET)


class Quota:
    def __init__(self, server: BaoServer, mount: str) -> None:
        self._server = server
        self.name = f"q-{mount}"
        self._mount = mount

    def set(self, rate: float, interval: str = "1s") -> None:
        self._server.client.sys.create_or_update_quota(  # type: ignore[no-untyped-call]  # untyped in types-hvac
            self.name, rate, path=f"{self._mount}/", interval=interval)

    def remove(self) -> None:
        self._server.client.sys.delete_quota(self.name)  # type: ignore[no-untyped-call]  # untyped in types-hvac


@pytest.fixture
def quota(bao_server: BaoServer, kv2: KV) -> Iterator[Quota]:
    made = Quota(bao_server, kv2.mount)
    yield made
    made.remove()


def _rendered_names(path: Path) -> int:
    doc = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    return sum(len(conns) for conns in doc["environments"]["default"]["connections"].values())


def test_throttled_run_succeeds_with_defaults(kv2: KV, throttled_env: dict[str, str], quota: Quota,
                                              run_cli: RunCli, tmp_path: Path) -> None:
    _seed(kv2, 60)
    quota.set(20)  # 61 requests at 20 per second: most of them are answered 429 at first
    out = tmp_path / "out" / "bruin.yml"
    started = time.monotonic()
    proc = run_cli("render", "-v", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started >= 2.0  # it was throttled, and waited rather than failed
    assert _rendered_names(out) == 60
    assert "Vault is rate-limiting" in proc.stderr  # and said so under -v


def test_throttling_longer_than_the_deadline_fails_with_one_line(kv2: KV, throttled_env: dict[str, str],
                                                                 quota: Quota, run_cli: RunCli,
                                                                 tmp_path: Path) -> None:
    _seed(kv2, 3)
    quota.set(1, interval="30s")  # the LIST passes; every read after it waits for a 30 s window
    out = tmp_path / "out" / "bruin.yml"
    started = time.monotonic()
    proc = run_cli("render", "--output", str(out), env={"BRUIN_VAULT_TIMEOUT": "2s"})
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr
    lines = proc.lines  # a progress line may come first: the read takes the whole 2 s
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"materialize: error: reading {kv2.mount}/bruin/lake"), lines[0]
    assert "Vault kept rate-limiting (HTTP 429) for 2s; raise BRUIN_VAULT_TIMEOUT" in lines[0]
    assert elapsed < 2.0 + 3.0  # the deadline, plus a child interpreter's start
    assert not out.exists()


def test_concurrency_falls_under_throttling_and_recovers(kv2: KV, throttled_env: dict[str, str], quota: Quota,
                                                         tmp_path: Path) -> None:
    _seed(kv2, 200)
    quota.set(20)
    out = tmp_path / "out" / "bruin.yml"
    proc = subprocess.Popen([sys.executable, str(MATERIALIZE), "render", "-v", "--output", str(out)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    lifted = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if "Vault is rate-limiting" in line and not lifted.is_set():
                quota.set(100000)  # the quota is lifted: the tool must find its way back up
                lifted.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()
    reader.join(timeout=5)
    sys.stderr.write("\n".join(lines) + "\n")  # for the leak guard
    assert proc.returncode == 0, lines
    cuts = [line for line in lines if "Vault is rate-limiting" in line]
    assert cuts and "parallel request(s), was 8" in cuts[0]
    recovered = [i for i, line in enumerate(lines) if "rate limit eased: back to 8 parallel requests" in line]
    assert recovered and recovered[-1] > lines.index(cuts[0])


# --- the Gate alone: how many requests may start, exactly ---------------------------------------------


def _starts_now(gate: Gate) -> threading.Event:
    """Set once an acquire started now on a thread of its own gets through."""
    through = threading.Event()

    def take() -> None:
        gate.acquire()
        through.set()

    threading.Thread(target=take, daemon=True).start()
    return through


def test_gate_after_a_cut_starts_nothing_until_fewer_than_the_limit_are_in_flight() -> None:
    notes: list[str] = []
    gate = Gate(8, notes.append)
    rounds = [gate.acquire() for _ in range(8)]
    gate.release(rounds[0], 429)
    gate.release(rounds[1], 429)  # sent before the cut: it does not cut again
    assert (gate.limit, notes) == (4.0, ["Vault is rate-limiting: 4 parallel request(s), was 8"])
    waiting = _starts_now(gate)
    for cuts in rounds[2:4]:
        gate.release(cuts, None)  # no answer: says nothing about the quota
    assert not waiting.wait(0.2)  # 4 in flight, the limit 4
    gate.release(rounds[4], None)
    assert waiting.wait(5)


def test_gate_recovers_to_its_ceiling_and_then_holds_it() -> None:
    notes: list[str] = []
    gate = Gate(4, notes.append)
    gate.release(gate.acquire(), 429)
    assert gate.limit == 2.0
    for _ in range(50):
        gate.release(gate.acquire(), 200)
    assert gate.limit == 4.0
    assert notes == ["Vault is rate-limiting: 2 parallel request(s), was 4",
                     "rate limit eased: back to 4 parallel requests"]
    for _ in range(4):
        gate.acquire()
    assert not _starts_now(gate).wait(0.2)
