"""Every local file the tool reads is bounded before it is read: a regular file under a size cap, and
YAML whose aliases and nesting stay within what bruin's own parser accepts.

`import FILE`, `--base`, `plan --against` and `--schema` are each given a FIFO nobody writes to,
/dev/zero, a directory, a sparse file far past the cap and an alias bomb. Each must end at once with
exit 2 and one line naming the file, before any Vault call (Vault here is an address nothing listens
on, with retries off: reaching the network would be exit 3), in a child whose address space is
limited, so that reading the whole of /dev/zero or the sparse file would fail with exit 1 instead.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bruin_materialize import files
from bruin_materialize.errors import MaterializeError
from bruin_materialize.yamlnodes import TooComplex, compose
from testsupport.paths import MATERIALIZE
from testsupport.runs import Run, child_env

DEAD_VAULT = {"BRUIN_VAULT_HOST": "http://127.0.0.1:9", "BRUIN_VAULT_MAX_RETRIES": "0",
              "BRUIN_VAULT_TOKEN": "s.not-a-real-token", "BRUIN_VAULT_MOUNT_PATH": "kv", "BRUIN_VAULT_PATH": "bruin"}
MEMORY = 1024 * 2**20  # the child's address space: enough to run, far too little to hold /dev/zero's stream
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9))


def run_bounded(args: list[str], cwd: Path, timeout: float = 20) -> Run:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))

    env = child_env(os.environ, {**DEAD_VAULT, "HOME": str(cwd), "PATH": os.defpath})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(MATERIALIZE), *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


@pytest.fixture
def special(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Files no config can be, and how the refusal ends."""
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)  # nobody ever writes: opening or reading it the usual way blocks for ever
    sparse = tmp_path / "sparse.yml"
    with sparse.open("wb") as handle:
        handle.truncate(4 * 2**30)  # 4 GiB of NULs, none of it on disk
    folder = tmp_path / "folder"
    folder.mkdir()
    bomb = tmp_path / "bomb.yml"
    bomb.write_text(BOMB)
    return {"fifo": (fifo, "is not a regular file (a FIFO)"),
            "zero": (Path("/dev/zero"), "is not a regular file (a character device)"),
            "directory": (folder, "is not a regular file (a directory)"),
            "sparse": (sparse, "is larger than 8 MiB; is it the right file?"),
            "bomb": (bomb, "expands its aliases (*NAME) beyond what bruin's YAML parser accepts")}


KINDS = ["fifo", "zero", "directory", "sparse", "bomb"]
# How each command names the file it was given.
COMMANDS: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "import": (lambda f: ["import", str(f)], "the file to import "),
    "base": (lambda f: ["check", "--base", str(f)], "the base file "),
    "against": (lambda f: ["plan", "--no-base", "--against", str(f)], ""),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_special_huge_or_aliased_files_are_refused_at_once(tmp_path: Path, special: dict[str, tuple[Path, str]],
                                                           command: str, kind: str) -> None:
    path, problem = special[kind]
    args, role = COMMANDS[command]
    run = run_bounded(args(path), tmp_path)
    message = run.error(2)
    assert message.startswith(f"{role}{path}"), message
    assert problem in message
    assert run.elapsed < 15


@pytest.mark.parametrize("kind", ["fifo", "zero", "directory", "sparse"])
def test_a_schema_file_that_is_not_a_small_regular_file_is_refused(tmp_path: Path,
                                                                    special: dict[str, tuple[Path, str]],
                                                                    kind: str) -> None:
    path, problem = special[kind]
    run = run_bounded(["check", "--schema", str(path)], tmp_path)
    assert run.error(2) == f"the schema file {path} {problem}"


def test_a_schema_file_nested_past_pythons_recursion_limit_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"$defs": ' + "[" * 100_000 + "]" * 100_000 + "}")
    run = run_bounded(["check", "--schema", str(deep)], tmp_path)
    assert run.error(2) == f"the schema file {deep} is not valid JSON, or is nested deeper than any schema"


def test_the_reader_stops_one_byte_past_the_limit(tmp_path: Path) -> None:
    exact = tmp_path / "exact"
    exact.write_bytes(b"x" * 1024)
    assert files.read_bytes(exact, "f", limit=1024) == b"x" * 1024
    with pytest.raises(MaterializeError, match="^f is larger than 1023 bytes"):
        files.read_bytes(exact, "f", limit=1023)


def test_alias_bounds_follow_yaml_v3() -> None:
    with pytest.raises(TooComplex):
        compose(BOMB)
    fine = "a: &a {k: v}\n" + "".join(f"b{i}: *a\n" for i in range(2000))  # many small aliases, as real files
    assert compose(fine) is not None
    with pytest.raises(TooComplex):
        compose("[" * 65 + "]" * 65)
    assert compose("[" * 64 + "]" * 64) is not None


def test_nested_too_deep_for_ruamels_composer_is_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yml"
    deep.write_text("environments: " + "[" * 5000 + "]" * 5000 + "\n")
    for args in (["check", "--base", str(deep)], ["import", str(deep)], ["plan", "--no-base", "--against", str(deep)]):
        assert run_bounded(args, tmp_path).error(2).endswith("is nested more than 64 levels deep")



@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_reading_of_a_large_file_at_once(tmp_path: Path, sig: signal.Signals) -> None:
    """Just under the cap, a file takes seconds to read as YAML: a signal ends that at once (128 + N)."""
    big = tmp_path / "big.yml"
    entries = "".join(f"        - name: c{i}\n          value: v{i}\n" for i in range(160_000))
    big.write_text(f"environments:\n  default:\n    connections:\n      generic:\n{entries}")
    assert 5 * 2**20 < big.stat().st_size < files.MAX_CONFIG_FILE
    env = child_env(os.environ, {**DEAD_VAULT, "PATH": os.defpath})
    proc = subprocess.Popen([sys.executable, str(MATERIALIZE), "import", str(big)], cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # started, and inside the file
    signalled = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    sys.stderr.write(err)
    assert proc.returncode == 128 + sig, err
    assert time.monotonic() - signalled < 2
    assert "Traceback" not in err
