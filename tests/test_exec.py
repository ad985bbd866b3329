"""exec: render onto tmpfs, run `bruin run` with a clean environment and arguments, clean up after it.

These run materialize.py as a process, with the stand-in bruin on PATH that loads the file as bruin
does and records what it got (and, for the signal tests, which signals reached it).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bruin_materialize.schema import SNAPSHOT, SNAPSHOT_FROM, load_snapshot
from testsupport.harness import use_mount
from testsupport.paths import MATERIALIZE
from testsupport.wait import wait_until

PASSWORD = "exec-Secret-Passw0rd"


@pytest.fixture
def env(vault_env: dict[str, str], kv2: Any, monkeypatch: pytest.MonkeyPatch, fake_bruin: Any,
        tmp_path: Path) -> dict[str, str]:
    use_mount(monkeypatch, kv2, tmp_path)
    kv2.put("bruin", "pg", {"type": "postgres", "details": {"host": "db", "port": "5432", "password": PASSWORD}})
    return vault_env


def test_exec_hands_over_to_bruin_run(env: dict[str, str], fake_bruin: Any, run_cli: Any, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRUIN_SECRETS_BACKEND", "vault")
    monkeypatch.setenv("VAULT_ADDR", "http://elsewhere:8200")
    monkeypatch.setenv("BAO_TOKEN", "bao-token-not-for-bruin")
    monkeypatch.setenv("BRUIN_VAULT_ROLE", "r")
    monkeypatch.setenv("UNRELATED", "kept as is")
    proc = run_cli("exec", "--", "--env", "prod", "--secrets-backend", "vault", "pipelines/x", "--workers=2",
                   "--secrets-backend=vault")
    assert proc.returncode == 0, proc.stderr
    record = fake_bruin.record()
    config_file = Path(record["config_file"])
    assert record["argv"] == ["run", "--config-file", str(config_file), "--env", "prod", "pipelines/x",
                              "--workers=2"]
    assert record["environment"] == "prod" and not record.get("ignored_config")
    [pg] = record["config"]["environments"]["prod"]["connections"]["postgres"]
    assert pg == {"name": "pg", "host": "db", "port": 5432, "password": PASSWORD}
    bruin_env = record["env"]
    assert not [k for k in bruin_env if k.startswith(("BRUIN_VAULT_", "VAULT_", "BAO_"))]
    assert "BRUIN_SECRETS_BACKEND" not in bruin_env and bruin_env["UNRELATED"] == "kept as is"
    # A fresh private directory under the runtime dir, as bruin saw it; removed once bruin exited.
    assert config_file.parent.parent == tmp_path / "runtime"
    assert record["config_dir_mode"] == 0o700 and record["config_file_mode"] == 0o600
    assert not config_file.parent.exists() and list((tmp_path / "runtime").iterdir()) == []


def test_bruin_exit_code_is_ours(env: dict[str, str], fake_bruin: Any, run_cli: Any) -> None:
    assert run_cli("exec", env={"FAKE_BRUIN_EXIT": "7"}).returncode == 7


def test_bruin_is_looked_up_before_any_vault_call(env: dict[str, str], run_cli: Any) -> None:
    proc = run_cli("exec", env={"PATH": os.defpath, "BRUIN_VAULT_HOST": "http://127.0.0.1:9"})
    assert proc.returncode == 2
    assert proc.stderr == ("materialize: error: bruin was not found on PATH; install it or set BRUIN_BIN to its "
                           "path\n")
    proc = run_cli("exec", env={"BRUIN_BIN": "/nonexistent/bruin"})
    assert (proc.returncode, proc.stderr) == (2, "materialize: error: BRUIN_BIN=/nonexistent/bruin is not an "
                                                 "executable file\n")


def test_bruin_bin_overrides_path(env: dict[str, str], fake_bruin: Any, run_cli: Any) -> None:
    proc = run_cli("exec", env={"PATH": os.defpath, "BRUIN_BIN": str(fake_bruin.bin)})
    assert proc.returncode == 0, proc.stderr
    assert fake_bruin.record()["argv"][:2] == ["run", "--config-file"]


def test_runtime_dir_must_be_tmpfs_unless_allowed(env: dict[str, str], run_cli: Any, fake_bruin: Any) -> None:
    proc = run_cli("exec", env={"BRUIN_MATERIALIZE_ALLOW_NON_TMPFS": "0"})
    assert proc.returncode == 2
    assert "is not on tmpfs, so credentials would reach a disk" in proc.stderr
    assert not fake_bruin.record_path.exists()


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm")
def test_default_runtime_dir_is_tmpfs(env: dict[str, str], run_cli: Any, fake_bruin: Any) -> None:
    proc = run_cli("exec", env={"BRUIN_MATERIALIZE_RUNTIME_DIR": "", "XDG_RUNTIME_DIR": "",
                                "BRUIN_MATERIALIZE_ALLOW_NON_TMPFS": "0"})
    assert proc.returncode == 0, proc.stderr
    config_file = Path(fake_bruin.record()["config_file"])
    assert config_file.parent.parent == Path("/dev/shm")
    assert not config_file.parent.exists()


def test_config_file_argument_is_refused(env: dict[str, str], run_cli: Any) -> None:
    proc = run_cli("exec", "--", "--config-file", "x.yml")
    assert proc.returncode == 2
    assert "--config-file is set by materialize" in proc.stderr


def test_env_reference_bruin_would_expand_is_refused(env: dict[str, str], kv2: Any, run_cli: Any,
                                                     fake_bruin: Any) -> None:
    kv2.put("bruin", "pg", {"type": "postgres", "details": {"password": "a${MY_VAR}b-" + PASSWORD}})
    proc = run_cli("exec", env={"MY_VAR": "x"})
    assert proc.returncode == 4
    assert f"materialize: error: {kv2.mount}/bruin/pg: details.password: holds ${{...}} naming an environment " \
           "variable" in proc.stderr
    assert not fake_bruin.record_path.exists()
    # Not set in bruin's environment: bruin leaves it alone, and so the value arrives intact.
    proc = run_cli("exec")
    assert proc.returncode == 0, proc.stderr
    [pg] = fake_bruin.record()["config"]["environments"]["default"]["connections"]["postgres"]
    assert pg["password"] == "a${MY_VAR}b-" + PASSWORD
    # Opted in: bruin expands it.
    proc = run_cli("exec", "--expand-env", env={"MY_VAR": "x"})
    assert proc.returncode == 0, proc.stderr
    [pg] = fake_bruin.record()["config"]["environments"]["default"]["connections"]["postgres"]
    assert pg["password"] == "axb-" + PASSWORD


def test_schema_comes_from_bruin_once_per_binary(env: dict[str, str], run_cli: Any, fake_bruin: Any,
                                                 kv2: Any) -> None:
    kv2.put("bruin", "bad", {"type": "postgress", "details": {}})
    for _ in range(2):
        proc = run_cli("exec")
        assert proc.returncode == 4
        assert f"materialize: error: {kv2.mount}/bruin/bad: type: unknown connection type 'postgress' (did you " \
               "mean postgres?)" in proc.stderr
    assert fake_bruin.schema_calls() == 1


def test_without_bruin_or_schema_the_packaged_snapshot_checks(env: dict[str, str], run_cli: Any, kv2: Any,
                                                                 tmp_path: Path) -> None:
    """No bruin on PATH, no --schema: a mistyped type is still caught (exit 4), against the snapshot in the
    package, which is said once; the rendered file's header names it."""
    snapshot_line = (f"materialize: bruin not found and no --schema: checking against {SNAPSHOT_FROM} (the schema "
                     "shipped with bruin-materialize); put bruin on PATH or pass --schema to check against the "
                     "bruin that will run")
    no_bruin = {"PATH": os.defpath, "BRUIN_BIN": None, "BRUIN_MATERIALIZE_SCHEMA": None}
    kv2.put("bruin", "bad", {"type": "postgress", "details": {"host": "db"}})
    proc = run_cli("check", env=no_bruin)
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == snapshot_line and lines.count(snapshot_line) == 1
    assert f"materialize: error: {kv2.mount}/bruin/bad: type: unknown connection type 'postgress' (did you mean " \
           "postgres?); bruin knows 147 types" in lines
    kv2.put("bruin", "bad", {"type": "postgres", "details": {"host": "db", "port": "x"}})
    assert run_cli("check", env=no_bruin).returncode == 4  # field types too, not only the type names
    kv2.put("bruin", "bad", {"type": "postgres", "details": {"host": "db", "port": 5432, "password": PASSWORD}})
    out = tmp_path / "out.yml"
    proc = run_cli("render", "-o", str(out), env=no_bruin)
    assert proc.returncode == 0, proc.stderr
    digest = hashlib.sha256(SNAPSHOT.read_bytes()).hexdigest()[:12]
    assert out.read_text().splitlines()[1] == (f'# Checked against "the schema snapshot shipped with '
                                               f'bruin-materialize ({SNAPSHOT_FROM}), sha256 {digest}".')


def test_a_bruin_on_path_wins_over_the_snapshot(env: dict[str, str], run_cli: Any, fake_bruin: Any, kv2: Any,
                                                tmp_path: Path) -> None:
    kv2.put("bruin", "pg", {"type": "postgres", "details": {"host": "db", "password": PASSWORD}})
    out = tmp_path / "out.yml"
    proc = run_cli("render", "-o", str(out), env={"BRUIN_MATERIALIZE_SCHEMA": None})
    assert proc.returncode == 0, proc.stderr
    assert "snapshot" not in proc.stderr and fake_bruin.schema_calls() == 1
    header = out.read_text().splitlines()[1]
    assert header.startswith(f'# Checked against "`{fake_bruin.bin} internal connections`, sha256 ')


def test_snapshot_is_bruins_schema_and_says_where_it_came_from() -> None:
    schema = load_snapshot()
    assert len(schema.types) == 147 and {"postgres", "google_sheets", "iceberg"} <= set(schema.types)
    provenance = (SNAPSHOT.parent / "connections-schema.md").read_text(encoding="utf-8")
    assert hashlib.sha256(SNAPSHOT.read_bytes()).hexdigest() in provenance


def test_internal_error_prints_its_type_only(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A bug's exception text could quote a value: the boundary prints the type, no traceback."""
    from bruin_materialize import cli

    def bug(*_: Any) -> int:
        raise KeyError(PASSWORD)

    monkeypatch.setattr(cli, "run", bug)
    assert cli.main(["check"]) == 1
    assert capsys.readouterr().err == ("materialize: error: internal error (KeyError); rerun with --traceback to "
                                       "see where\n")


def test_traceback_shows_where_but_no_message(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--traceback: files, lines and types, never a message, which may quote a token or a value
    (http.client's "Invalid header value ..." does), and no variables."""
    from bruin_materialize import cli

    token = env["BRUIN_VAULT_TOKEN"]

    def send(header: str) -> None:
        raise ValueError(f"Invalid header value {header!r}")

    def bug(*_: Any) -> int:
        try:
            send(token)
        except ValueError as exc:
            raise RuntimeError(f"request failed: {exc} {PASSWORD}") from exc
        return 0

    monkeypatch.setattr(cli, "run", bug)
    assert cli.main(["check", "--traceback"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert "builtins.ValueError (message left out)" in err and "builtins.RuntimeError (message left out)" in err
    assert any(line.strip() == "send(token)" for line in err)  # the code on the line, not the value
    assert err[-1] == "materialize: error: internal error (RuntimeError); the traceback above leaves out every message"


# --- cleaning up after bruin ---------------------------------------------------------------------


def leftovers(runtime: Path) -> list[str]:
    return sorted(p.name for p in runtime.iterdir())


@pytest.mark.parametrize("bruin_exit", ["0", "7"])
def test_private_directory_is_removed_when_bruin_exits(env: dict[str, str], run_cli: Any, fake_bruin: Any,
                                                       tmp_path: Path, bruin_exit: str) -> None:
    proc = run_cli("exec", env={"FAKE_BRUIN_EXIT": bruin_exit})
    assert proc.returncode == int(bruin_exit), proc.stderr
    assert Path(fake_bruin.record()["config_file"]).parent.parent == tmp_path / "runtime"
    assert leftovers(tmp_path / "runtime") == []


@pytest.mark.parametrize("mode", ["child", "replace"])
def test_exec_started_with_stdout_closed_runs_bruin(env: dict[str, str], fake_bruin: Any, tmp_path: Path,
                                                    mode: str) -> None:
    """`exec ... >&-`: Python's sys.stdout is then None; bruin inherits the closed stdout as it is."""
    proc = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, str(MATERIALIZE), "exec",
                           "--exec-mode", mode], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=60, env={**os.environ, "FAKE_BRUIN_EXIT": "7"})
    sys.stderr.write(proc.stderr)
    assert proc.returncode == 7, proc.stderr
    assert "internal error" not in proc.stderr
    assert fake_bruin.record()["argv"][:1] == ["run"]
    if mode == "child":
        assert leftovers(tmp_path / "runtime") == []


@pytest.mark.parametrize("mode", ["child", "replace"])
def test_private_directory_is_removed_when_bruin_cannot_start(env: dict[str, str], run_cli: Any,
                                                              tmp_path: Path, schema_path: Path, mode: str) -> None:
    broken = tmp_path / "bruin"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    proc = run_cli("exec", env={"BRUIN_BIN": str(broken), "BRUIN_MATERIALIZE_SCHEMA": str(schema_path),
                                "BRUIN_MATERIALIZE_EXEC_MODE": mode})
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == f"materialize: error: cannot run {broken}: No such file or directory"
    assert leftovers(tmp_path / "runtime") == []


@pytest.mark.parametrize("how", [["--exec-mode", "replace"], ["--exec-mode=replace"], []])
def test_replace_mode_becomes_bruin_and_leaves_the_file(env: dict[str, str], run_cli: Any, fake_bruin: Any,
                                                        tmp_path: Path, how: list[str]) -> None:
    proc = run_cli("exec", *how, env={"BRUIN_MATERIALIZE_EXEC_MODE": "replace" if not how else "child"})
    assert proc.returncode == 0, proc.stderr
    record = fake_bruin.record()
    config_file = Path(record["config_file"])
    assert config_file.is_file()  # nothing of ours ran after bruin: the tmpfs is meant to die with the container
    assert record["argv"] == ["run", "--config-file", str(config_file)]


def test_exec_mode_is_checked(env: dict[str, str], run_cli: Any, fake_bruin: Any) -> None:
    proc = run_cli("exec", env={"BRUIN_MATERIALIZE_EXEC_MODE": "fork"})
    assert (proc.returncode, proc.stderr) == (2, "materialize: error: BRUIN_MATERIALIZE_EXEC_MODE must be child or "
                                                 "replace\n")


def start_exec(tmp_path: Path, fake_bruin: Any, *args: str) -> subprocess.Popen[str]:
    """materialize.py exec with a bruin that waits, recording signals; returns once bruin is running."""
    env = {**os.environ, "FAKE_BRUIN_SLEEP": "30", "FAKE_BRUIN_READY": str(tmp_path / "ready"),
           "FAKE_BRUIN_SIGNALS": str(tmp_path / "signals")}
    proc = subprocess.Popen([sys.executable, str(MATERIALIZE), "exec", *args], env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_bruin(proc, tmp_path)
    return proc


def wait_for_bruin(proc: subprocess.Popen[str], tmp_path: Path) -> None:
    """Until the waiting bruin says it runs; materialize.py must not have exited meanwhile."""

    def ready() -> bool:
        assert proc.poll() is None, proc.communicate()
        return (tmp_path / "ready").exists()

    wait_until(ready, 30, what="bruin started")


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=10)
    sys.stdout.write(out)
    sys.stderr.write(err)  # for the leak guard
    return proc.returncode, err


def pending(pid: int) -> set[signal.Signals]:
    """The signals waiting for process `pid` to take them (blocked ones stay there until it does)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(status.partition("ShdPnd:")[2].split()[0], 16)
    return {sig for sig in signal.Signals if mask >> (sig - 1) & 1}


def received(tmp_path: Path) -> list[str]:
    path = tmp_path / "signals"
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("last", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT])
def test_signals_are_forwarded_and_the_directory_goes_when_bruin_dies(env: dict[str, str], fake_bruin: Any,
                                                                      tmp_path: Path, last: signal.Signals) -> None:
    proc = start_exec(tmp_path, fake_bruin)
    config_dir = Path(fake_bruin.record()["config_file"]).parent
    assert config_dir.is_dir()
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH):
        proc.send_signal(sig)
        def forwarded(name: str = sig.name) -> bool:
            return name in received(tmp_path)

        wait_until(forwarded, 5, 0.02, what=f"{sig.name} forwarded")
    assert proc.poll() is None  # those do not end anything
    proc.send_signal(last)
    code, err = finish(proc)
    assert code == 128 + last  # bruin died of it; we say so as a shell would
    assert received(tmp_path) == ["SIGUSR1", "SIGUSR2", "SIGWINCH", last.name]
    assert not config_dir.exists() and leftovers(tmp_path / "runtime") == []
    assert "Traceback" not in err


def test_bruins_exit_code_after_a_forwarded_signal_is_ours(env: dict[str, str], fake_bruin: Any,
                                                           tmp_path: Path) -> None:
    """A bruin that handles SIGTERM and exits 0 by itself: that is the code, and the directory goes."""
    proc = start_exec(tmp_path, fake_bruin)
    proc.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    os.kill(int((tmp_path / "ready").read_text()), signal.SIGKILL)  # bruin dies, not us
    code, _ = finish(proc)
    assert code == 128 + signal.SIGKILL
    assert leftovers(tmp_path / "runtime") == []


# --- bruin's arguments ---------------------------------------------------------------------------


def bruin_argv(fake_bruin: Any) -> list[str]:
    argv: list[str] = fake_bruin.record()["argv"]
    assert argv[:2] == ["run", "--config-file"]
    return argv[3:]


def test_first_unknown_argument_starts_bruins_even_when_names_are_shared(env: dict[str, str], run_cli: Any,
                                                                         fake_bruin: Any) -> None:
    proc = run_cli("exec", "--full-refresh", "--timeout", "3600", "--verbose", ".")
    assert proc.returncode == 0, proc.stderr
    assert bruin_argv(fake_bruin) == ["--full-refresh", "--timeout", "3600", "--verbose", "."]
    assert "when it exits" not in proc.stderr  # our --verbose would print that step: it stayed bruin's
    # Ours first, then bruin's; `--` makes the split explicit and is not passed on.
    proc = run_cli("exec", "--timeout", "5s", "-q", "--", "--timeout", "10", "-v")
    assert proc.returncode == 0, proc.stderr
    assert bruin_argv(fake_bruin) == ["--timeout", "10", "-v"]
    proc = run_cli("exec", "--timeout=5s", "pipelines/x", "--strict")
    assert proc.returncode == 0, proc.stderr
    assert bruin_argv(fake_bruin) == ["pipelines/x", "--strict"]


@pytest.mark.parametrize("spelling", [["--secrets-backend", "vault"], ["--secrets-backend=vault"],
                                      ["-secrets-backend", "vault"], ["-secrets-backend=vault"]])
def test_secrets_backend_is_removed_in_every_spelling(env: dict[str, str], run_cli: Any, fake_bruin: Any,
                                                      spelling: list[str]) -> None:
    proc = run_cli("exec", "--", "--workers", "2", *spelling, "p")
    assert proc.returncode == 0, proc.stderr
    assert bruin_argv(fake_bruin) == ["--workers", "2", "p"]
    assert not fake_bruin.record()["ignored_config"]


@pytest.mark.parametrize("spelling", [["--config-file", "x.yml"], ["--config-file=x.yml"], ["-config-file", "x"],
                                      ["-config-file=x.yml"]])
def test_config_file_is_refused_in_every_spelling(env: dict[str, str], run_cli: Any, fake_bruin: Any,
                                                  spelling: list[str]) -> None:
    proc = run_cli("exec", "--full-refresh", *spelling)
    assert proc.returncode == 2
    assert proc.stderr == "materialize: error: --config-file is set by materialize; remove it from the bruin " \
                          "arguments\n"
    assert not fake_bruin.record_path.exists()


@pytest.mark.parametrize("spelling", [["-env", "prod"], ["-environment=prod"], ["--e", "prod"], ["-e=prod"],
                                      ["--env=prod"], ["--environment", "prod"]])
def test_environment_is_read_from_bruins_arguments_in_every_spelling(env: dict[str, str], run_cli: Any,
                                                                     fake_bruin: Any, spelling: list[str]) -> None:
    proc = run_cli("exec", *spelling, "p")
    assert proc.returncode == 0, proc.stderr
    assert bruin_argv(fake_bruin) == [*spelling, "p"]
    assert list(fake_bruin.record()["config"]["environments"]) == ["prod"]


def test_bruin_inherits_stdin_stdout_and_stderr(env: dict[str, str], fake_bruin: Any) -> None:
    proc = subprocess.run([sys.executable, str(MATERIALIZE), "exec", "-q"], input="rows from a pipe\n",
                          env={**os.environ, "FAKE_BRUIN_ECHO": "1"}, capture_output=True, text=True, timeout=60)
    sys.stderr.write(proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "rows from a pipe\n"
    assert proc.stderr.splitlines()[-1] == "bruin: stderr is the caller's too"


def test_a_terminal_signal_reaches_bruin_once(env: dict[str, str], fake_bruin: Any, tmp_path: Path) -> None:
    """A terminal sends SIGWINCH (or ^C's SIGINT) to its whole foreground process group, bruin
    included: forwarding it as well would deliver it twice. Sent to us alone, it is forwarded."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()

    def take_terminal() -> None:  # in the child: a session of its own, with this terminal as its own
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env_ = {**os.environ, "FAKE_BRUIN_SLEEP": "30", "FAKE_BRUIN_READY": str(tmp_path / "ready"),
            "FAKE_BRUIN_SIGNALS": str(tmp_path / "signals")}
    proc = subprocess.Popen([sys.executable, str(MATERIALIZE), "exec"], env=env_, text=True, stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=take_terminal)
    os.close(slave)
    try:
        wait_for_bruin(proc, tmp_path)
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))  # the window is resized
        # Taken by us before the next one is sent: two pending at once would be merged into one.
        wait_until(lambda: signal.SIGWINCH not in pending(proc.pid), 5, 0.02, what="our SIGWINCH taken")
        time.sleep(0.5)  # time for a wrong forward to arrive
        assert received(tmp_path) == ["SIGWINCH"]
        proc.send_signal(signal.SIGWINCH)  # from a supervisor, to us alone
        wait_until(lambda: received(tmp_path) == ["SIGWINCH", "SIGWINCH"], 5, 0.02,
                   what="the second SIGWINCH forwarded")
        proc.send_signal(signal.SIGTERM)
        code, _ = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        os.close(master)
    assert code == 128 + signal.SIGTERM
    assert leftovers(tmp_path / "runtime") == []


_SIGNALS_AFTER_A_READ = """
import os, signal, sys
from bruin_materialize.cli import main
assert main(["check", "-q"]) == 0
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH, signal.SIGUSR1})  # as exec holds them
lost = 0
for _ in range(200):
    for sig in (signal.SIGWINCH, signal.SIGUSR1):
        os.kill(os.getpid(), sig)
        lost += signal.sigtimedwait({sig}, 1) is None
print(lost)
"""


def test_threads_left_from_reading_take_no_signal(env: dict[str, str], kv2: Any) -> None:
    """exec holds the forwarded signals blocked while bruin runs and takes them with sigtimedwait. A
    thread that outlived the reads without blocking them (a reader, libcurl's resolver, a helper of
    ours) would be handed some of them by the kernel (a few in a hundred), and would drop a SIGWINCH
    or die of a SIGUSR1. Vault is named `localhost`, so libcurl resolves a name on the reading threads."""
    for name in ("a", "b", "c"):  # more than one: the reads run on worker threads
        kv2.put("bruin", name, {"type": "postgres", "details": {"host": "db", "password": PASSWORD}})
    host = env["BRUIN_VAULT_HOST"].replace("127.0.0.1", "localhost")
    proc = subprocess.run([sys.executable, "-c", _SIGNALS_AFTER_A_READ], capture_output=True, text=True,
                          timeout=60, cwd=MATERIALIZE.parent, env={**os.environ, "BRUIN_VAULT_HOST": host})
    sys.stderr.write(proc.stderr)
    assert (proc.returncode, proc.stdout) == (0, "0\n")


def test_only_signals_sent_to_us_alone_are_forwarded() -> None:
    """The rule behind the test above, which cannot always tell: two equal signals arriving together
    are merged by the kernel. SI_KERNEL (0x80) marks a terminal's signal to its process group."""
    from bruin_materialize.handover import _sent_to_us_alone

    def info(code: int) -> signal.struct_siginfo:
        return signal.struct_siginfo((signal.SIGINT, code, 0, 1234, 0, 0, 0))

    assert not _sent_to_us_alone(info(0x80))
    assert _sent_to_us_alone(info(0))  # SI_USER: kill(2), a supervisor
    assert _sent_to_us_alone(info(-1))  # SI_QUEUE: sigqueue(3)
    assert _sent_to_us_alone(info(-6))  # SI_TKILL: tgkill(2)


def test_bruins_exit_code_survives_an_inherited_ignored_sigchld(env: dict[str, str], fake_bruin: Any) -> None:
    """With SIGCHLD ignored, as some launchers leave it, the kernel reaps children itself."""
    proc = subprocess.run([sys.executable, str(MATERIALIZE), "exec"], env={**os.environ, "FAKE_BRUIN_EXIT": "7"},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    sys.stderr.write(proc.stderr)
    assert proc.returncode == 7, proc.stderr
