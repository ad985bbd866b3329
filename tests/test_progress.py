"""What a person or a CI log sees during long work: progress lines against a slow Vault (a real
OpenBao behind the fault proxy, answering late), in place on a terminal, silenced by -q; and -v's
timestamped lines when stderr is not a terminal."""

from __future__ import annotations

import calendar
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testsupport.fault_proxy import ALWAYS, FaultProxy
from testsupport.harness import KV, RunCli
from testsupport.paths import MATERIALIZE

PASSWORD = "progress-Passw0rd-value"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def seed(kv: KV, count: int) -> None:
    for i in range(count):
        kv.put("bruin", f"pg{i}", {"type": "postgres", "details": {"host": "db", "port": 5432, "password": PASSWORD}})


@pytest.fixture
def slow_vault(vault_env: dict[str, str], kv2: KV, fault_proxy: FaultProxy, schema_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> KV:
    """Six secrets, each read answered 0.5 s late: a one-at-a-time read takes 3 s."""
    seed(kv2, 6)
    fault_proxy.add_rule("delay", path=f"/{kv2.mount}/data/bruin/", method="GET", times=ALWAYS, seconds=0.5)
    for name, value in {"BRUIN_VAULT_HOST": fault_proxy.addr, "BRUIN_VAULT_MOUNT_PATH": kv2.mount,
                        "BRUIN_VAULT_PATH": "bruin", "BRUIN_MATERIALIZE_SCHEMA": str(schema_path),
                        "BRUIN_MATERIALIZE_CONCURRENCY": "1", "PATH": os.defpath}.items():
        monkeypatch.setenv(name, value)
    return kv2


def test_a_slow_read_says_how_far_it_got(slow_vault: KV, run_cli: RunCli) -> None:
    run = run_cli("check", "--format", "json")
    assert run.returncode == 0, run.stderr
    progress = [line for line in run.all_lines if re.fullmatch(
        rf"materialize: read [1-5]/6 secrets from {slow_vault.mount}/bruin \(\d+s\)", line)]
    assert progress, run.stderr  # the first after 2 s, then at most one each 5 s
    assert len(progress) <= 2 and progress[0] == progress[-1] or progress[0] != progress[-1]
    assert run.stdout.startswith("{")  # --format json: the document alone on stdout, stderr stays human


def test_quiet_silences_progress(slow_vault: KV, run_cli: RunCli) -> None:
    run = run_cli("check", "-q")
    assert run.returncode == 0 and run.stderr == ""


def test_on_a_terminal_progress_is_one_line_updated_in_place(slow_vault: KV) -> None:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, str(MATERIALIZE), "check", "-v"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=follower)
        os.close(follower)
        screen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(leader)
    text = screen.decode()
    sys.stderr.write(text)  # for the leak guard
    updates = re.findall(rf"\rmaterialize: read [1-5]/6 secrets from {slow_vault.mount}/bruin \(\d+s\)\x1b\[K", text)
    assert len(updates) >= 1  # each second after the first two, in place
    assert "\r\x1b[K" in text  # cleared before the next line
    assert not re.search(r"read [1-5]/6 secrets[^\r]*\r?\n", text)  # never left as a line of its own
    assert not re.search(STAMP, text)  # a terminal gets no timestamps, even with -v


def test_verbose_lines_carry_a_timestamp_when_stderr_is_not_a_terminal(vault_env: dict[str, str], kv2: KV,
                                                                       run_cli: RunCli, schema_path: Path) -> None:
    seed(kv2, 2)
    env = {"BRUIN_VAULT_MOUNT_PATH": kv2.mount, "BRUIN_VAULT_PATH": "bruin",
           "BRUIN_MATERIALIZE_SCHEMA": str(schema_path), "PATH": os.defpath}
    before = time.time()
    verbose = run_cli("check", "-v", env=env)
    assert verbose.returncode == 0, verbose.stderr
    assert len(verbose.all_lines) >= 4
    for line in verbose.all_lines:
        match = re.match(rf"({STAMP}) materialize: ", line)
        assert match, line
        stamp = calendar.timegm(time.strptime(match.group(1)[:19], "%Y-%m-%dT%H:%M:%S"))
        assert before - 2 <= stamp <= time.time() + 1  # UTC, now
    assert any(line.endswith("materialize: using the Vault token from BRUIN_VAULT_TOKEN") for line in verbose.all_lines)
    plain = run_cli("check", env=env)
    assert plain.all_lines and not any(re.match(STAMP, line) for line in plain.all_lines)


def test_a_slow_import_says_how_far_its_writes_got(vault_env: dict[str, str], kv2: KV, fault_proxy: FaultProxy,
                                                   schema_path: Path, run_cli: RunCli, tmp_path: Path) -> None:
    connections = "\n".join(f"        - name: pg{i}\n          host: db\n          password: {PASSWORD}"
                            for i in range(5))
    source = tmp_path / ".bruin.yml"
    source.write_text(f"environments:\n  default:\n    connections:\n      postgres:\n{connections}\n",
                      encoding="utf-8")
    fault_proxy.add_rule("delay", path=f"/{kv2.mount}/data/bruin/", method="POST", times=ALWAYS, seconds=0.6)
    run = run_cli("import", str(source), env={
        "BRUIN_VAULT_HOST": fault_proxy.addr, "BRUIN_VAULT_MOUNT_PATH": kv2.mount, "BRUIN_VAULT_PATH": "bruin",
        "BRUIN_MATERIALIZE_SCHEMA": str(schema_path), "BRUIN_MATERIALIZE_CONCURRENCY": "1", "PATH": os.defpath})
    assert run.returncode == 0, run.stderr
    assert [line for line in run.all_lines if " secrets to " in line] == [
        line for line in run.all_lines if re.fullmatch(rf"materialize: wrote [1-4]/5 secrets to {kv2.mount}/bruin "
                                                   r"\(\d+s\)", line)]
    assert len([line for line in run.all_lines if " secrets to " in line]) == 1
    assert not any(line.startswith("materialize: read ") for line in run.all_lines)  # the reads were quick
