"""Becoming `bruin run`: find the binary, build its environment and arguments on purpose, execve."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from bruin_materialize.errors import usage_error

# Vault settings are ours, not bruin's: with them bruin would hold a token it does not need, and
# BRUIN_SECRETS_BACKEND=vault would make it ignore the file. BRUIN_CONFIG_FILE_CONTENT would be read
# instead of the file, so it goes too.
_DROP_PREFIXES = ("BRUIN_VAULT_", "VAULT_", "BAO_")
_DROP_NAMES = frozenset({"BRUIN_SECRETS_BACKEND", "BRUIN_CONFIG_FILE_CONTENT"})


def find_bruin(bruin_bin: str | None, path_env: str | None) -> str:
    """The bruin to run, resolved before any Vault call so a broken image fails fast."""
    if bruin_bin:
        if os.path.isfile(bruin_bin) and os.access(bruin_bin, os.X_OK):
            return bruin_bin
        raise usage_error(f"BRUIN_BIN={bruin_bin} is not an executable file")
    import shutil  # only exec and the schema lookup need it

    found = shutil.which("bruin", path=path_env)
    if not found:
        raise usage_error("bruin was not found on PATH; install it or set BRUIN_BIN to its path")
    return found


def bruin_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not (k.startswith(_DROP_PREFIXES) or k in _DROP_NAMES)}


def bruin_arguments(bruin: str, config_file: Path, run_args: Sequence[str]) -> list[str]:
    return [bruin, "run", "--config-file", str(config_file), *without_secrets_backend(run_args)]


def without_secrets_backend(args: Sequence[str]) -> list[str]:
    """Drop `--secrets-backend X` and `--secrets-backend=X`: with it bruin would ignore the file."""
    kept: list[str] = []
    skip_next = False
    for i, arg in enumerate(args):
        if skip_next:
            skip_next = False
            continue
        if arg == "--":
            kept.extend(args[i:])
            break
        if arg == "--secrets-backend":
            skip_next = True
            continue
        if arg.startswith("--secrets-backend="):
            continue
        kept.append(arg)
    return kept


def config_file_flag(args: Sequence[str]) -> bool:
    return any(a == "--config-file" or a.startswith("--config-file=") for a in args)


def exec_bruin(argv: list[str], env: dict[str, str]) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, env)
    except OSError as exc:
        raise usage_error(f"cannot run {argv[0]}: {exc.strerror}") from None
