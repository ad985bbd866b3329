"""Hostile surroundings get a clear refusal: closed or broken stdout, special files, odd credentials,
overflowing settings, secrets nested or sized beyond any connection, and text from Vault that
would drive the terminal. Each refusal is one line, the documented exit code, and no file left.

The checks that must come before any Vault call run against an address nothing listens on, with
retries off: reaching the network would be exit 3, so exit 2 proves the order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bruin_materialize.cli import main
from testsupport.harness import use_mount
from testsupport.paths import MATERIALIZE

PASSWORD = "hostile-Passw0rd-value"
DEAD_VAULT = {"BRUIN_VAULT_HOST": "http://127.0.0.1:9", "BRUIN_VAULT_MAX_RETRIES": "0"}


@pytest.fixture
def env(vault_env: dict[str, str], kv2: Any, monkeypatch: pytest.MonkeyPatch, schema_path: Path,
        tmp_path: Path) -> dict[str, str]:
    use_mount(monkeypatch, kv2, tmp_path)
    monkeypatch.setenv("BRUIN_MATERIALIZE_SCHEMA", str(schema_path))
    monkeypatch.setenv("PATH", os.defpath)  # no bruin needed for render and check
    kv2.put("bruin", "pg", {"type": "postgres", "details": {"host": "db", "password": PASSWORD}})
    return vault_env


# --- a path nobody receives ----------------------------------------------------------------------


def render_with_stdout(stdout: str, runtime: Path) -> tuple[int, str]:
    """render without --output, its stdout closed (`>&-`) or a pipe whose reader is gone."""
    argv = [sys.executable, str(MATERIALIZE), "render"]
    if stdout == "closed":
        proc = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *argv], stdin=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=60)
        err = proc.stderr
    else:
        read, write = os.pipe()
        os.close(read)  # nobody will ever read: the write fails with EPIPE
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=write, stderr=subprocess.PIPE, text=True,
                                  timeout=60)
        finally:
            os.close(write)
        err = proc.stderr
    sys.stderr.write(err)
    return proc.returncode, err


def test_render_whose_path_cannot_be_delivered_removes_the_file(env: dict[str, str], tmp_path: Path) -> None:
    code, err = render_with_stdout("broken pipe", tmp_path / "runtime")
    assert code == 2, err
    assert err.splitlines()[-1] == (
        "materialize: error: stdout is closed or nobody reads it, so the path of the rendered file could not be "
        "delivered; the file was removed. Read stdout, or pass --output FILE")
    assert "Traceback" not in err
    assert list((tmp_path / "runtime").iterdir()) == []


def test_render_with_stdout_closed_is_refused_before_vault(env: dict[str, str], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DEAD_VAULT.items():
        monkeypatch.setenv(name, value)
    code, err = render_with_stdout("closed", tmp_path / "runtime")
    assert (code, err) == (2, "materialize: error: stdout is closed, so render without --output could not say where "
                              "it wrote the file; pass --output FILE, or read stdout\n")
    assert list((tmp_path / "runtime").iterdir()) == []


# --- settings checked before any Vault call ------------------------------------------------------


def test_output_problems_are_found_before_vault(env: dict[str, str], run_cli: Any, tmp_path: Path) -> None:
    assert run_cli("render", "-o", str(tmp_path), env=DEAD_VAULT).error(2) == (
        f"the output {tmp_path} is a directory; give a file path")
    assert run_cli("render", "-o", "/dev/stdout", env=DEAD_VAULT).error(2).startswith(
        "the output /dev/stdout is a link to a stream, a device or a directory, not a file")
    assert os.path.islink("/dev/stdout")
    assert run_cli("render", "-o", "/dev/null", env=DEAD_VAULT).error(2) == (
        "the output /dev/null is a character device, not a file; give a file path")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert run_cli("render", "--runtime-dir", str(shared), env=DEAD_VAULT).error(2).startswith(
        f"{shared} can be written by other users (mode 777)")
    assert run_cli("exec", env={**DEAD_VAULT, "BRUIN_MATERIALIZE_RUNTIME_DIR": str(shared),
                                "BRUIN_BIN": sys.executable}).error(2).startswith(
        f"{shared} can be written by other users (mode 777)")
    assert list(shared.iterdir()) == []


def test_a_missing_python_package_is_found_before_vault(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in DEAD_VAULT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(sys.modules, "jinja2", None)  # what an install without it looks like to import
    assert main(["check"]) == 2
    assert capsys.readouterr().err == ("materialize: error: the Python package jinja2 cannot be imported; install "
                                       "requirements.txt (or pip install bruin-materialize) in this environment\n")


@pytest.mark.parametrize("token", ["abc\ndef-" + PASSWORD, "tok\x1b[2Jen-" + PASSWORD, "tökén-" + PASSWORD,
                                   "two words-" + PASSWORD])
@pytest.mark.parametrize("source", ["BRUIN_VAULT_TOKEN", "VAULT_TOKEN", "--token", "BRUIN_VAULT_SECRET_ID"])
def test_credentials_no_token_can_hold_are_refused_unseen(env: dict[str, str], run_cli: Any, leak_guard: Any,
                                                          token: str, source: str) -> None:
    leak_guard.add(token)
    args: list[str] = []
    over = {**DEAD_VAULT, "BRUIN_VAULT_TOKEN": None}
    if source == "--token":
        args = ["--token", token]
    elif source == "BRUIN_VAULT_SECRET_ID":
        over.update({"BRUIN_VAULT_ROLE_ID": "role", "BRUIN_VAULT_SECRET_ID": token})
    else:
        over[source] = token
    message = run_cli("check", *args, env=over).error(2)
    assert message == (f"{source} holds characters no token can hold (control characters, spaces inside or "
                       "non-ASCII); the value is not shown. Check how it was set")


def test_credential_files_must_be_small_regular_files(env: dict[str, str], run_cli: Any, tmp_path: Path,
                                                      leak_guard: Any) -> None:
    fifo = tmp_path / "token.fifo"
    os.mkfifo(fifo)  # nobody writes: reading it would hang for ever
    over = {**DEAD_VAULT, "BRUIN_VAULT_TOKEN": None, "BRUIN_VAULT_TOKEN_FILE": str(fifo)}
    assert run_cli("check", env=over, timeout=20).error(2) == (
        f"{fifo} (BRUIN_VAULT_TOKEN_FILE) is not a regular file (a FIFO)")
    big = tmp_path / "token.big"
    big.write_text("a" * (64 * 1024 + 1))
    assert run_cli("check", env={**over, "BRUIN_VAULT_TOKEN_FILE": str(big)}).error(2) == (
        f"{big} (BRUIN_VAULT_TOKEN_FILE) is larger than 64 KiB; is it the right file?")
    jwt = tmp_path / "jwt"
    jwt.write_text("eyJhbGciOi.\x00" + PASSWORD + "\n")
    leak_guard.add("eyJhbGciOi.\x00" + PASSWORD)
    assert run_cli("check", env={**over, "BRUIN_VAULT_TOKEN_FILE": None, "BRUIN_VAULT_JWT_ROLE": "ci",
                                 "BRUIN_VAULT_JWT_FILE": str(jwt)}).error(2) == (
        f"{jwt} (BRUIN_VAULT_JWT_FILE) holds characters no token can hold (control characters, spaces inside or "
        "non-ASCII); the value is not shown. Check how it was set")
    token = tmp_path / "token"
    token.write_text(f"  s.{PASSWORD}\n")  # surrounding whitespace is not part of it
    leak_guard.add(f"s.{PASSWORD}")
    assert run_cli("check", env={**over, "BRUIN_VAULT_TOKEN_FILE": str(token)}).returncode == 3  # reached Vault


@pytest.mark.parametrize("name, value, message", [
    ("BRUIN_VAULT_TIMEOUT", "9999999999999h", "BRUIN_VAULT_TIMEOUT is longer than the longest duration bruin takes "
                                              "(about 292 years)"),
    ("BRUIN_VAULT_WAIT", "9" * 400 + "s", "BRUIN_VAULT_WAIT is longer than the longest duration bruin takes "
                                          "(about 292 years)"),
    ("BRUIN_VAULT_RETRY_WAIT_MAX", "293y", "BRUIN_VAULT_RETRY_WAIT_MAX must be a duration such as 500ms, 10s or 1m "
                                           "(got an invalid value)"),
    ("BRUIN_VAULT_MAX_RETRIES", "1" + "0" * 30, "BRUIN_VAULT_MAX_RETRIES must be at most 100"),
    ("BRUIN_VAULT_MAX_RETRIES", "9" * 5000, "BRUIN_VAULT_MAX_RETRIES must be a whole number"),
    ("BRUIN_MATERIALIZE_CONCURRENCY", "100000", "BRUIN_MATERIALIZE_CONCURRENCY must be at most 256"),
])
def test_numbers_beyond_their_range_are_setting_errors(env: dict[str, str], run_cli: Any, name: str, value: str,
                                                       message: str) -> None:
    assert run_cli("check", env={**DEAD_VAULT, name: value}).error(2) == message


# --- secrets no connection looks like ------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


@pytest.mark.parametrize("depth", [40, 900])
def test_deeply_nested_secret_is_invalid_and_named(env: dict[str, str], kv2: Any, run_cli: Any, tmp_path: Path,
                                                   depth: int) -> None:
    kv2.put("bruin", "deep", {"type": "postgres", "details": {"host": "db", "extra": nested(depth)}})
    proc = run_cli("render", "-o", str(tmp_path / "out" / "bruin.yml"))
    assert proc.returncode == 4, proc.stderr
    assert [line for line in proc.stderr.splitlines() if "error" in line] == [
        f"materialize: error: {kv2.mount}/bruin/deep: is nested more than 32 levels deep; no bruin connection is",
        "materialize: error: 1 invalid secret field (listed above); nothing was written"]
    assert not (tmp_path / "out").exists()


# --- text from Vault cannot drive the terminal ----------------------------------------------------


def test_names_from_vault_are_escaped_one_message_a_line(env: dict[str, str], kv2: Any, run_cli: Any) -> None:
    forged = "x\nmaterialize: error: forged line"
    kv2.put("bruin", "pg", {"type": "postgres", "details": {"host": "db", "password": PASSWORD,
                                                            "col\x1b[31mour": "red", forged: "1"},
                            "\x1b]0;title\x07": "x"})
    kv2.put("bruin", "odd", {"type": "postgres\x1b[2J", "details": {}})
    proc = run_cli("check")
    assert proc.returncode == 4
    lines = proc.stderr.splitlines()
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert all(line.startswith("materialize: ") for line in lines)
    assert not any(line.startswith("materialize: error: forged") for line in lines)
    m = kv2.mount
    assert f'materialize: error: {m}/bruin/odd: type: unknown connection type "postgres\\u001b[2J"' in proc.stderr
    assert (f'materialize: warning: {m}/bruin/pg: top-level keys other than type/details are ignored: '
            '"\\u001b]0;title\\u0007"') in lines
    assert (f'materialize: warning: {m}/bruin/pg: details: fields unknown to bruin\'s schema (bruin ignores '
            f'them): "col\\u001b[31mour", "x\\nmaterialize: error: forged line"') in lines


def test_console_escapes_whatever_reaches_it(capsys: pytest.CaptureFixture[str]) -> None:
    from bruin_materialize.console import Console

    Console().error("kv/bruin/na\x1b[2Jme\nmaterialize: error: forged\u202e")
    assert capsys.readouterr().err == "materialize: error: kv/bruin/na\\x1b[2Jme\\nmaterialize: error: forged\\u202e\n"


def test_the_base_file_and_tracked_files_are_never_overwritten(env: dict[str, str], run_cli: Any,
                                                               tmp_path: Path) -> None:
    repo = tmp_path / "project"
    repo.mkdir()
    base_text = "default_environment: default\nenvironments:\n  default:\n    connections: {}\n"
    (repo / ".bruin.yml").write_text(base_text)
    (repo / "pipeline.yml").write_text("name: p\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "project"], check=True)
    assert run_cli("render", "--allow-repo", "-o", ".bruin.yml", env=DEAD_VAULT, cwd=repo).error(2) == (
        ".bruin.yml is the base file, which is read, never written; choose another --output")
    assert run_cli("render", "--allow-repo", "--no-base", "-o", "pipeline.yml", env=DEAD_VAULT,
                   cwd=repo).error(2) == (
        f"pipeline.yml is tracked by git in {repo}; the credentials would be committed over it; choose "
        "another --output")
    assert (repo / ".bruin.yml").read_text() == base_text and (repo / "pipeline.yml").read_text() == "name: p\n"


def test_with_stderr_closed_stdout_carries_only_the_path(env: dict[str, str], tmp_path: Path) -> None:
    """print(file=None) writes to stdout: with stderr closed, messages must go nowhere, not there."""
    proc = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh", sys.executable, str(MATERIALIZE), "render", "-v"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    sys.stdout.write(proc.stdout)
    assert proc.returncode == 0
    [line] = proc.stdout.splitlines()
    config_file = Path(line)
    assert config_file.parent.parent == tmp_path / "runtime" and config_file.is_file()


# --- stdout that nobody reads, outputs that name a directory, recipes ------------------------------------


def run_into_a_closed_pipe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """materialize.py ARGS with stdout a pipe whose reader is gone (`... | true`)."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, str(MATERIALIZE), *args], stdin=subprocess.DEVNULL, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60, env={**os.environ, **(env or {})})
    finally:
        os.close(write)
    sys.stderr.write(proc.stderr)
    return proc


@pytest.mark.parametrize("args", [("check", "--format", "json"), ("plan", "--no-base", "--format", "json"),
                                  ("check", "--format", "json", "--mount-path", "nothing-there")],
                         ids=["check", "plan", "failing-check"])
def test_a_reader_that_left_ends_the_run_quietly(env: dict[str, str], tmp_path: Path, args: tuple[str, ...]) -> None:
    """`check --format json | true`: no traceback, exit 141 (128 + SIGPIPE), as a shell shows for `head`'s
    writers; what stderr says otherwise stays as it was."""
    proc = run_into_a_closed_pipe(*args)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def test_plan_lines_into_a_closed_pipe_end_quietly(env: dict[str, str], tmp_path: Path) -> None:
    against = tmp_path / "against.yml"
    against.write_text("environments:\n  default:\n    connections: {}\n")
    proc = run_into_a_closed_pipe("plan", "--no-base", "--against", str(against))
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr


def run_with_stdout_closed(*args: str) -> subprocess.CompletedProcess[str]:
    """materialize.py ARGS started with stdout closed (`>&-`): Python's sys.stdout is then None."""
    proc = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, str(MATERIALIZE), *args],
                          stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60)
    sys.stderr.write(proc.stderr)
    return proc


@pytest.mark.parametrize(("args", "code"), [
    (("check",), 0), (("check", "--format", "json"), 0), (("plan", "--no-base", "--against", "{empty}"), 5),
    (("plan", "--no-base", "--against", "{empty}", "--format", "json"), 5),
    (("plan", "--no-base", "--against", "{same}"), 0), (("render", "-o", "{out}"), 0),
    (("render", "-o", "{out}", "--format", "json"), 0), (("completion", "bash"), 2),
    (("import", "{empty}", "--dry-run"), 0), (("import", "{same}", "--path", "elsewhere", "--dry-run"), 5),
], ids=["check", "check-json", "plan-lines", "plan-json", "plan-no-changes", "render-output", "render-json",
        "completion", "import-dry-run-nothing", "import-dry-run-lines"])
def test_every_command_started_with_stdout_closed_ends_with_its_own_exit_code(
        env: dict[str, str], tmp_path: Path, args: tuple[str, ...], code: int) -> None:
    """What goes to stdout goes nowhere, as into /dev/null; the exit code still says how it went. Only
    what exists to be read there (render's path, a completion script) is an error."""
    empty, same, out = tmp_path / "empty.yml", tmp_path / "same.yml", tmp_path / "out" / "bruin.yml"
    empty.write_text("environments:\n  default:\n    connections: {}\n")
    assert main(["render", "-q", "-o", str(same)]) == 0
    proc = run_with_stdout_closed(*(a.format(empty=empty, same=same, out=out) for a in args))
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    if args[0] == "completion":
        assert proc.stderr == "materialize: error: could not write the completion script to stdout\n"


@pytest.mark.parametrize("output", ["{dir}/new/", "{dir}/new/.", "{dir}/new/..", "{dir}/", "./"])
def test_an_output_naming_a_directory_is_refused_before_vault(env: dict[str, str], run_cli: Any, tmp_path: Path,
                                                               output: str) -> None:
    path = output.format(dir=tmp_path)
    message = run_cli("render", "-o", path, env=DEAD_VAULT).error(2)
    assert message == (f"--output names a directory ({path!r} ends in /, . or ..); name the file, such as "
                       "DIR/bruin.yml")
    assert not (tmp_path / "new").exists()


def test_the_documented_local_recipes_never_write_to_a_bare_runtime_variable() -> None:
    """With XDG_RUNTIME_DIR unset, `"$XDG_RUNTIME_DIR/bruin"` is `/bruin`, on disk: recipes use `${VAR:?}`."""
    docs = [MATERIALIZE.parent / "README.md", *sorted((MATERIALIZE.parent / "docs").glob("*.md"))]
    bare = [f"{doc.name}:{n}" for doc in docs for n, line in enumerate(doc.read_text().splitlines(), 1)
            if "$XDG_RUNTIME_DIR/" in line]
    assert bare == []
