"""How the program is started: `python -m bruin_materialize`, and the completion scripts made from the
settings table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bruin_materialize import __version__
from bruin_materialize.cli import main
from bruin_materialize.options import COMMAND_NAME, COMMANDS
from bruin_materialize.settings import OPTIONS
from testsupport.harness import KV
from testsupport.paths import MATERIALIZE, REPO_DIR
from testsupport.runs import run_process

PASSWORD = "entrypoint-Passw0rd-value"


def completion(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["completion", shell]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def test_python_m_runs_the_same_program_as_the_script(vault_env: dict[str, str], kv2: KV, tmp_path: Path) -> None:
    kv2.put("bruin", "pg", {"type": "postgres", "details": {"host": "db", "port": 5432, "password": PASSWORD}})
    env = {"BRUIN_VAULT_MOUNT_PATH": kv2.mount, "BRUIN_VAULT_PATH": "bruin", "PATH": os.defpath}
    as_module = run_process([sys.executable, "-m", "bruin_materialize", "check"], env=env, cwd=REPO_DIR)
    as_script = run_process([sys.executable, str(MATERIALIZE), "check"], env=env, cwd=REPO_DIR)
    as_module.assert_ok()
    assert as_module.stderr == as_script.stderr
    assert "1 connection" in as_module.stderr
    version = run_process([sys.executable, "-m", "bruin_materialize", "--version"], cwd=REPO_DIR)
    assert version.stdout == f"bruin-materialize {__version__}\n"


def test_python_m_names_itself_so_in_usage_errors() -> None:
    run = run_process([sys.executable, "-m", "bruin_materialize", "check", "--bogus"], cwd=REPO_DIR)
    assert run.error(2) == "python -m bruin_materialize: unrecognized arguments: --bogus (see --help)"


def test_every_flag_of_every_command_is_completed(capsys: pytest.CaptureFixture[str]) -> None:
    for shell in ("bash", "zsh", "fish"):
        script = completion(shell, capsys)
        assert COMMAND_NAME in script
        for command in (*COMMANDS, "completion"):
            assert command in script, (shell, command)
        for flag in (f for option in OPTIONS for f in option.flags):
            # fish names them `-l LONG` and `-s S`
            spelled = (f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}") if shell == "fish" else flag
            assert spelled in script, (shell, flag)


def _bash_complete(script: Path, words: list[str]) -> list[str]:
    """What bash offers after `words` (the last one being typed), with the script loaded."""
    line = " ".join(words)
    program = (f'source "{script}"; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE="{line}"; '
               f'COMP_POINT=${{#COMP_LINE}}; _shtab_bruin_materialize; printf "%s\\n" "${{COMPREPLY[@]}}"')
    proc = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, text=True, check=True, timeout=30)
    return proc.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_options_and_choices(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    script = tmp_path / "completion.bash"
    script.write_text(completion("bash", capsys), encoding="utf-8")
    assert _bash_complete(script, [COMMAND_NAME, "pl"]) == ["plan"]
    assert _bash_complete(script, [COMMAND_NAME, "check", "--vault-h"]) == ["--vault-host"]
    assert _bash_complete(script, [COMMAND_NAME, "render", "--exec-m"]) == []  # exec's option only
    assert _bash_complete(script, [COMMAND_NAME, "exec", "--exec-mode", "r"]) == ["replace"]
    assert sorted(_bash_complete(script, [COMMAND_NAME, "check", "--kv-version", ""])) == ["1", "2", "auto"]
    assert _bash_complete(script, [COMMAND_NAME, "completion", "fi"]) == ["fish"]


def test_a_shell_without_a_script_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "ksh"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("materialize: error: materialize.py completion: argument shell: invalid choice: 'ksh'")


# What a run that never talks to Vault or renders must not pay for: importing the Vault client, libcurl
# or the template and YAML stacks (each costs tens of milliseconds at start-up).
HEAVY = ("hvac", "pycurl", "requests", "urllib3", "jinja2", "ruamel")
_LOADED = ("import contextlib, io, sys\n"
           "from bruin_materialize.cli import main\n"
           "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
           "    try:\n"
           "        code = main(sys.argv[1:])\n"
           "    except SystemExit as exit:  # argparse's --help and --version\n"
           "        code = exit.code\n"
           "print(code, ' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n")


@pytest.mark.parametrize(("argv", "code"), [
    (["--help"], 0), (["render", "--help"], 0), (["exec", "--help"], 0), (["--version"], 0),
    (["completion", "bash"], 0),
    (["check"], 2),  # no Vault settings: a usage error before any Vault call
    (["render", "--path", "a", "--path", "a"], 2),
])
def test_a_run_that_needs_no_vault_imports_no_vault_client(argv: list[str], code: int) -> None:
    run = run_process([sys.executable, "-c", _LOADED, *argv], cwd=REPO_DIR,
                      base_env={"PATH": os.defpath, "BRUIN_VAULT_HOST": "http://127.0.0.1:1",
                                "BRUIN_VAULT_MOUNT_PATH": "secret", "BRUIN_VAULT_TOKEN": "t"} if argv[0] == "render"
                      else {"PATH": os.defpath})
    returned, _, modules = run.stdout.strip().partition(" ")
    assert int(returned) == code, run.stderr
    assert not set(HEAVY) & set(modules.split()), modules
