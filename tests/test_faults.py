"""Failure behaviour under injected faults: a proxy between the CLI and a real OpenBao server.

Each test runs `materialize.py render` in a child process against a KV v2 mount holding three
secrets, with BRUIN_VAULT_HOST pointing at the fault proxy (testsupport/fault_proxy.py), and checks what a
person running it would see: the exit code, one `materialize: error: ...` line naming the operation
and the path, how long it took, how often it asked Vault, and that the output directory is exactly
as it was (no file, no temp file, a previous file byte for byte) whenever it failed.
docs/reliability.md lists every scenario with the test that proves it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from testsupport.cli import PASSWORD, PG, SLACK, OutputDir, Render, reading, seed_mount
from testsupport.fault_proxy import ALWAYS, FaultProxy
from testsupport.paths import MATERIALIZE
from testsupport.wait import wait_until

GIT = shutil.which("git")


@pytest.fixture
def mount(kv2: Any, vault_env: dict[str, str], fault_proxy: FaultProxy, schema_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> str:
    """A KV v2 mount with SECRETS under bruin/, reached only through the proxy; fast retries."""
    return seed_mount(kv2, monkeypatch, schema_path, fault_proxy.addr)


def since_request(proxy: FaultProxy, path: str) -> float:
    """Seconds from the first request to `path` until now (the child has exited): no start-up in it."""
    return time.monotonic() - proxy.request_times(path)[0]


# --- a transparent proxy ---------------------------------------------------------------------------


def test_proxy_is_transparent_and_keeps_connections_alive(render: Render, out: OutputDir,
                                                           fault_proxy: FaultProxy) -> None:
    result = render(BRUIN_MATERIALIZE_CONCURRENCY="1")
    result.assert_ok()
    out.assert_written()
    # mount inspection, one LIST, three GETs: one request each, all on one keep-alive connection.
    assert fault_proxy.requests() == 5
    assert fault_proxy.requests(PG) == 1
    assert fault_proxy.accepted == 1


# --- slow and silent servers -------------------------------------------------------------------


def test_hanging_vault_fails_within_timeout(render: Render, out: OutputDir, mount: str,
                                            fault_proxy: FaultProxy) -> None:
    out.plant_previous()
    fault_proxy.add_rule("hang", path=PG, times=ALWAYS)
    result = render(BRUIN_VAULT_TIMEOUT="2s")
    result.assert_failed(3, reading(mount), "timed out")
    assert 2.0 <= result.elapsed < 2.0 + 2 * SLACK  # child start-up and listing included
    assert 1.8 <= since_request(fault_proxy, PG) < 2.0 + SLACK  # from the read's arrival to the exit
    assert fault_proxy.requests(PG) == 1  # the one budget was spent waiting: nothing left to retry
    out.assert_untouched()


def test_slow_answer_within_timeout_succeeds(render: Render, out: OutputDir, fault_proxy: FaultProxy) -> None:
    fault_proxy.add_rule("delay", path=PG, seconds=1.0)
    result = render(BRUIN_VAULT_TIMEOUT="5s")
    result.assert_ok()
    out.assert_written()
    assert result.elapsed >= 1.0
    assert fault_proxy.requests(PG) == 1  # slow is not failed: no retry


def test_slow_answer_beyond_timeout_fails(render: Render, out: OutputDir, mount: str,
                                          fault_proxy: FaultProxy) -> None:
    fault_proxy.add_rule("delay", path=PG, times=ALWAYS, seconds=5.0)
    result = render(BRUIN_VAULT_TIMEOUT="1s")
    result.assert_failed(3, reading(mount), "timed out")
    assert since_request(fault_proxy, PG) < 1.0 + SLACK  # the budget covers retries too: no second try
    assert fault_proxy.requests(PG) == 1
    out.assert_untouched()


# --- error statuses -----------------------------------------------------------------------------


def test_503_without_retries_fails_at_once(render: Render, out: OutputDir, mount: str,
                                           fault_proxy: FaultProxy) -> None:
    out.plant_previous()
    fault_proxy.add_rule("status", path=PG, times=ALWAYS, status=503)
    result = render(BRUIN_VAULT_MAX_RETRIES="0")
    result.assert_failed(3, reading(mount), "HTTP 503")
    assert "retr" not in result.lines[0]  # no "(after N retries)" when none were made
    assert fault_proxy.requests(PG) == 1
    out.assert_untouched()


@pytest.mark.parametrize("status", [500, 502, 503, 412])
def test_retryable_status_twice_then_success(render: Render, out: OutputDir, fault_proxy: FaultProxy,
                                             status: int) -> None:
    fault_proxy.add_rule("status", path=PG, times=2, status=status)
    result = render(BRUIN_VAULT_MAX_RETRIES="3")
    result.assert_ok()
    out.assert_written()
    assert fault_proxy.requests(PG) == 3


def test_retryable_status_exhausts_retries(render: Render, out: OutputDir, mount: str,
                                           fault_proxy: FaultProxy) -> None:
    fault_proxy.add_rule("status", path=PG, times=ALWAYS, status=502)
    result = render(BRUIN_VAULT_MAX_RETRIES="2")
    result.assert_failed(3, reading(mount), "HTTP 502", "after 2 retries")
    assert fault_proxy.requests(PG) == 3
    # Three attempts, two waits of at most RETRY_WAIT_MAX each.
    times = fault_proxy.request_times(PG)
    assert times[-1] - times[0] < 2 * 0.2 + 0.3
    out.assert_untouched()


def test_501_is_not_retried(render: Render, out: OutputDir, mount: str, fault_proxy: FaultProxy) -> None:
    fault_proxy.add_rule("status", path=PG, times=ALWAYS, status=501)
    result = render()
    result.assert_failed(3, reading(mount), "HTTP 501")
    assert fault_proxy.requests(PG) == 1
    out.assert_untouched()


def test_429_retry_after_is_waited_for(render: Render, out: OutputDir, fault_proxy: FaultProxy) -> None:
    fault_proxy.add_rule("retry_after", path=PG, seconds=1)
    result = render(BRUIN_VAULT_RETRY_WAIT_MAX="200ms")
    result.assert_ok()
    out.assert_written()
    first, second = fault_proxy.request_times(PG)
    assert second - first >= 0.95  # the server's wait, not the 200 ms backoff cap
    assert second - first < 1.0 + SLACK


def test_429_retry_after_within_wait_max(render: Render, out: OutputDir, fault_proxy: FaultProxy) -> None:
    fault_proxy.add_rule("retry_after", path=PG, seconds=1)
    result = render(BRUIN_VAULT_RETRY_WAIT_MAX="2s")
    result.assert_ok()
    out.assert_written()
    first, second = fault_proxy.request_times(PG)
    assert 0.95 <= second - first < 1.0 + SLACK  # Retry-After, not the 50 ms first backoff


def test_429_does_not_spend_error_retries(render: Render, out: OutputDir, fault_proxy: FaultProxy) -> None:
    # Rate limiting is back-pressure: waited out within the deadline, whatever BRUIN_VAULT_MAX_RETRIES says.
    fault_proxy.add_rule("status", path=PG, status=429, times=5)
    result = render(BRUIN_VAULT_MAX_RETRIES="0")
    result.assert_ok()
    out.assert_written()
    assert fault_proxy.requests(PG) == 6


def test_error_retries_stop_at_max_retries_after_429s(render: Render, out: OutputDir, mount: str,
                                                      fault_proxy: FaultProxy) -> None:
    fault_proxy.add_rule("status", path=PG, status=429, times=3)
    fault_proxy.add_rule("status", path=PG, status=502, times=ALWAYS)
    result = render(BRUIN_VAULT_MAX_RETRIES="2")
    result.assert_failed(3, reading(mount), "HTTP 502", "after 2 retries")
    assert fault_proxy.requests(PG) == 3 + 3  # the 429s, then the first try and two retries
    out.assert_untouched()


def test_403_on_one_secret_is_not_retried(render: Render, out: OutputDir, mount: str,
                                          fault_proxy: FaultProxy) -> None:
    out.plant_previous()
    fault_proxy.add_rule("status", path=PG, times=ALWAYS, status=403)
    result = render()
    result.assert_failed(3, f"permission denied reading {mount}/{PG}: ", "read")
    assert fault_proxy.requests(PG) == 1
    # The other reads run alongside; the first error cancels those not started. None is retried.
    assert fault_proxy.requests("bruin/warehouse") <= 1
    out.assert_untouched()


def test_404_on_one_secret_is_not_retried(render: Render, out: OutputDir, mount: str,
                                          fault_proxy: FaultProxy) -> None:
    fault_proxy.add_rule("status", path=PG, times=ALWAYS, status=404)
    result = render()
    result.assert_failed(3, reading(mount), "not found")
    assert fault_proxy.requests(PG) == 1
    out.assert_untouched()


# --- connections refused and reset ----------------------------------------------------------------


def test_refused_then_available_succeeds(render: Render, out: OutputDir, fault_proxy: FaultProxy) -> None:
    started = time.monotonic()
    fault_proxy.refuse_connections(1.5)
    result = render(BRUIN_VAULT_MAX_RETRIES="30", BRUIN_VAULT_TIMEOUT="10s")
    result.assert_ok()
    out.assert_written()
    assert time.monotonic() - started >= 1.5
    assert fault_proxy.requests() == 5  # refused connections carry no request


def test_refused_without_retries_fails_at_once(render: Render, out: OutputDir, mount: str,
                                               fault_proxy: FaultProxy) -> None:
    out.plant_previous()
    fault_proxy.refuse_connections(30)
    result = render(BRUIN_VAULT_MAX_RETRIES="0")
    result.assert_failed(3, f"inspecting mount {mount}: connection refused by {fault_proxy.addr}")
    assert result.elapsed < 2 * SLACK  # child start-up only: no waiting out the 10 s timeout
    out.assert_untouched()


def test_vault_down_mid_run_recovers(render: Render, out: OutputDir, fault_proxy: FaultProxy) -> None:
    # The read of pg takes Vault down for 1 s: open keep-alive connections are reset, new ones
    # refused; the retries must reconnect once it is back.
    fault_proxy.add_rule("refuse", path=PG, seconds=1.0)
    result = render(BRUIN_VAULT_MAX_RETRIES="30", BRUIN_VAULT_TIMEOUT="10s")
    result.assert_ok()
    out.assert_written()
    first, *_, last = fault_proxy.request_times(PG)
    assert last - first >= 1.0


def test_reset_is_retried(render: Render, out: OutputDir, fault_proxy: FaultProxy) -> None:
    fault_proxy.add_rule("reset", path=PG)
    result = render()
    result.assert_ok()
    out.assert_written()
    assert fault_proxy.requests(PG) == 2


def test_reset_without_retries_fails(render: Render, out: OutputDir, mount: str, fault_proxy: FaultProxy) -> None:
    out.plant_previous()
    fault_proxy.add_rule("reset", path=PG, times="always")
    # One connection, so the read always goes out on a reused keep-alive connection: a reset there
    # looks like a stale connection and is resent once on a fresh one, without spending a retry.
    result = render(BRUIN_VAULT_MAX_RETRIES="0", BRUIN_MATERIALIZE_CONCURRENCY="1")
    result.assert_failed(3, reading(mount), fault_proxy.addr)
    assert fault_proxy.requests(PG) == 2
    out.assert_untouched()


def test_server_closed_keep_alive_connection_is_reopened(render: Render, out: OutputDir,
                                                          fault_proxy: FaultProxy) -> None:
    # One connection for everything; the proxy closes it right after answering the LIST, as a
    # server or load balancer does at its idle timeout. The next GET goes out on a dead connection.
    fault_proxy.add_rule("close", path="?list=true")
    result = render(BRUIN_MATERIALIZE_CONCURRENCY="1", BRUIN_VAULT_MAX_RETRIES="0")
    result.assert_ok()
    out.assert_written()
    assert fault_proxy.accepted == 2
    assert fault_proxy.requests("bruin/") == 3  # each secret asked for once


# --- broken bodies ---------------------------------------------------------------------------------


def test_truncated_json_fails(render: Render, out: OutputDir, mount: str, fault_proxy: FaultProxy) -> None:
    out.plant_previous()
    fault_proxy.add_rule("truncate", path=PG, times=ALWAYS)
    result = render(BRUIN_VAULT_MAX_RETRIES="1")
    result.assert_failed(3, reading(mount))
    assert fault_proxy.requests(PG) == 2  # a body cut short is a broken connection: retried
    out.assert_untouched()


def test_corrupt_json_fails_without_retry(render: Render, out: OutputDir, mount: str,
                                          fault_proxy: FaultProxy) -> None:
    fault_proxy.add_rule("corrupt", path=PG, times=ALWAYS)
    result = render()
    result.assert_failed(3, reading(mount), "not valid JSON")
    assert fault_proxy.requests(PG) == 1
    out.assert_untouched()


# --- answers that are not Vault's ------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_redirect_is_never_followed_and_names_where_it_pointed(render: Render, out: OutputDir, mount: str,
                                                                 fault_proxy: FaultProxy, code: int) -> None:
    """A standby node or a captive portal redirects: exit 3 naming where, without its credentials or query."""
    out.plant_previous()
    location = f"http://user:{PASSWORD}@standby.invalid:8200/v1/{mount}/data/{PG}?token={PASSWORD}#frag"
    fault_proxy.add_rule("answer", path=PG, times=ALWAYS, status=code, headers=(("Location", location),))
    result = render()
    assert result.error(3) == (f"{reading(mount)}Vault answered with a redirect (HTTP {code}) to "
                               f"http://standby.invalid:8200/v1/{mount}/data/{PG}, which is never followed; set "
                               "BRUIN_VAULT_HOST to the active node or the load balancer")
    assert fault_proxy.requests(PG) == 1
    assert fault_proxy.requests("standby") == 0
    out.assert_untouched()


def test_a_redirect_to_an_ipv6_address_names_it_in_brackets(render: Render, mount: str,
                                                            fault_proxy: FaultProxy) -> None:
    location = f"http://[fd00::1]:8200/v1/{mount}/data/{PG}"
    fault_proxy.add_rule("answer", path=PG, times=ALWAYS, status=307, headers=(("Location", location),))
    assert f"(HTTP 307) to {location}, which is never followed" in render().error(3)


@pytest.mark.parametrize("body", [b'{"data": [1, 2, 3]}', b"[1, 2, 3]", b'{"data": {"data": "text"}}', b"{}",
                                  b'"a string"', b"", b'{"data": {"data": null, "metadata": {"version": 1}}}',
                                  b'{"data": {"data": null, "metadata": {"deletion_time": ""}}}'],
                         ids=["data-list", "list", "data-string", "empty-object", "string", "empty", "no-deletion",
                              "empty-deletion-time"])
def test_an_answer_not_shaped_as_vaults_is_an_error_not_a_deleted_secret(render: Render, out: OutputDir, mount: str,
                                                                         fault_proxy: FaultProxy,
                                                                         body: bytes) -> None:
    """Only KV v2's documented deleted or destroyed answer skips a connection; any other shape is exit 3."""
    out.plant_previous()
    fault_proxy.add_rule("answer", path=PG, times=ALWAYS, status=200, body=body,
                         headers=(("Content-Type", "application/json"),))
    assert render().error(3) == (f"{reading(mount)}the answer holds no `data.data` object, as Vault's does; is "
                                 "BRUIN_VAULT_HOST Vault itself, or is a proxy answering in its place?")
    out.assert_untouched()


@pytest.mark.parametrize("code", [200, 404])
def test_the_documented_deleted_answer_skips_the_connection(render: Render, out: OutputDir, mount: str,
                                                            fault_proxy: FaultProxy, code: int) -> None:
    body = b'{"data": {"data": null, "metadata": {"version": 2, "deletion_time": "2026-01-01T00:00:00Z"}}}'
    fault_proxy.add_rule("answer", path=PG, times=ALWAYS, status=code, body=body,
                         headers=(("Content-Type", "application/json"),))
    result = render()
    assert result.returncode == 0, result.stderr
    assert f"{mount}/{PG}" in result.stderr and "deleted" in result.stderr


@pytest.mark.parametrize("name", ["../x", "a/../../b", "", "/abs", "a//b", ".", "ctl\u001b[31m", "../"])
def test_listed_names_that_leave_the_path_stop_the_run_before_any_read(render: Render, out: OutputDir, mount: str,
                                                                       fault_proxy: FaultProxy, name: str) -> None:
    out.plant_previous()
    listed = json.dumps({"data": {"keys": ["pg", name]}}).encode()
    fault_proxy.add_rule("answer", path="metadata/bruin", times=ALWAYS, status=200, body=listed,
                         headers=(("Content-Type", "application/json"),))
    message = render(BRUIN_MATERIALIZE_CONCURRENCY="1").error(3)
    assert message.startswith(f"listing {mount}/bruin: the answer lists "), message
    assert "which is no name of a secret under it" in message
    assert "\x1b" not in message
    assert fault_proxy.requests("/data/") == 0  # nothing was read, not even the valid name
    out.assert_untouched()


# --- waiting for Vault at start (BRUIN_VAULT_WAIT / --wait) --------------------------------------


@pytest.mark.parametrize("how", ["env", "flag"])
def test_wait_for_vault_at_start(render: Render, out: OutputDir, fault_proxy: FaultProxy, how: str) -> None:
    started = time.monotonic()
    fault_proxy.refuse_connections(2.0)
    if how == "env":
        result = render(BRUIN_VAULT_WAIT="5s", BRUIN_VAULT_MAX_RETRIES="0")
    else:
        result = render("--wait", "5s", BRUIN_VAULT_MAX_RETRIES="0")
    result.assert_ok()
    out.assert_written()
    assert 2.0 <= time.monotonic() - started < 2.0 + SLACK + 0.5  # noticed soon after Vault is back
    waiting = [line for line in result.lines if line.startswith("materialize: waiting for Vault")]
    assert len(waiting) <= 1  # at most one progress line every few seconds


def test_wait_reports_progress(render: Render, out: OutputDir, fault_proxy: FaultProxy) -> None:
    fault_proxy.refuse_connections(2.0)
    result = render(BRUIN_VAULT_WAIT="5s", BRUIN_VAULT_MAX_RETRIES="0")
    result.assert_ok()
    progress = f"materialize: waiting for Vault at {fault_proxy.addr}"
    waiting = [line for line in result.lines if line.startswith(progress)]
    assert len(waiting) == 1  # says why it stalls, at once; not a line per probe


# --- signals while blocked -----------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129),
                                             (signal.SIGQUIT, 131)], ids=["TERM", "INT", "HUP", "QUIT"])
def test_signal_while_blocked_exits_promptly(mount: str, out: OutputDir, fault_proxy: FaultProxy,
                                             signum: signal.Signals, code: int) -> None:
    out.plant_previous()
    fault_proxy.add_rule("hang", path=PG, times=ALWAYS)
    proc = subprocess.Popen(
        [sys.executable, str(MATERIALIZE), "render", "--output", str(out.file)],
        env={**os.environ, "BRUIN_VAULT_TIMEOUT": "30s"},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_until(lambda: fault_proxy.requests(PG) >= 1, 15.0, 0.02, what="the read of pg reaching the proxy")
        time.sleep(0.2)  # the read of pg is now blocked in recv()
        sent = time.monotonic()
        proc.send_signal(signum)
        try:
            stdout, stderr = proc.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 1 s after {signum.name}")
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    sys.stdout.write(stdout)  # where the leak guard looks
    sys.stderr.write(stderr)
    assert proc.returncode == code, stderr
    assert elapsed < 1.0
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("materialize: "), stderr
    assert "Traceback" not in stderr
    out.assert_untouched()


def test_signal_while_the_main_thread_waits_for_vault_exits_promptly(mount: str, out: OutputDir,
                                                                     fault_proxy: FaultProxy) -> None:
    # The mount inspection is sent by the main thread itself, which runs the signal handlers: it must
    # not sit inside libcurl until the 30 s deadline.
    out.plant_previous()
    fault_proxy.add_rule("hang", path="sys/internal/ui/mounts", times=ALWAYS)
    proc = subprocess.Popen(
        [sys.executable, str(MATERIALIZE), "render", "--output", str(out.file)],
        env={**os.environ, "BRUIN_VAULT_TIMEOUT": "30s"},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_until(lambda: fault_proxy.requests("sys/internal/ui/mounts") >= 1, 15.0, 0.02,
                   what="the mount inspection reaching the proxy")
        time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            pytest.fail("still running 1 s after SIGTERM")
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    assert proc.returncode == 143, stderr
    assert elapsed < 1.0
    assert stderr.splitlines() == ["materialize: error: interrupted by SIGTERM; nothing was written"], stderr
    out.assert_untouched()


# --- output path safety -------------------------------------------------------------------------


@pytest.mark.parametrize("target_exists", [True, False], ids=["existing-target", "dangling"])
def test_symlink_at_output_is_replaced_not_followed(render: Render, out: OutputDir, tmp_path: Path,
                                                    target_exists: bool) -> None:
    target = tmp_path / "elsewhere" / "precious.txt"
    target.parent.mkdir()
    if target_exists:
        target.write_bytes(b"not yours to overwrite\n")
    out.file.symlink_to(target)
    result = render()
    result.assert_ok()
    assert not out.file.is_symlink()
    out.assert_written()
    if target_exists:
        assert target.read_bytes() == b"not yours to overwrite\n"
    else:
        assert not target.exists()


def test_world_writable_output_dir_is_refused(render: Render, out: OutputDir) -> None:
    os.chmod(out.dir, 0o777)  # writable by all, no sticky bit: anyone could swap the file
    out.plant_previous()
    result = render()
    result.assert_failed(2, "")
    out.assert_untouched()


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_output_in_git_work_tree_is_refused_unless_allowed(mount: str, tmp_path: Path, run_cli: Any) -> None:
    assert GIT is not None
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run([GIT, "init", "-q", str(repo)], check=True, capture_output=True, timeout=30)
    target = repo / "config" / "bruin.yml"
    refused = run_cli("render", "--output", str(target), timeout=60)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("materialize: error: "), refused.stderr
    assert not target.exists()
    allowed = run_cli("render", "--output", str(target), "--allow-repo", timeout=60)
    assert allowed.returncode == 0, allowed.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGUSR2], ids=["USR1", "USR2"])
def test_usr_signal_before_bruin_runs_is_not_fatal(mount: str, out: OutputDir, fault_proxy: FaultProxy,
                                                  signum: signal.Signals) -> None:
    """SIGUSR1/2 are for bruin (forwarded once it runs); before that, their default action would end
    the run without any cleanup."""
    fault_proxy.add_rule("delay", path=PG, seconds=1.0)
    proc = subprocess.Popen(
        [sys.executable, str(MATERIALIZE), "render", "--output", str(out.file)],
        env={**os.environ, "BRUIN_VAULT_TIMEOUT": "10s"},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_until(lambda: fault_proxy.requests(PG) >= 1, 15.0, 0.02, what="the read of pg reaching the proxy")
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    assert proc.returncode == 0, stderr
    out.assert_written()
