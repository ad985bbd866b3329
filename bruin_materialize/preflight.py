"""Checks made before the first Vault call: what would fail after the login and the reads, fails first.

A broken install, an output that could not or should not be written, a stdout nobody can read: each
is exit 2 here, before a token is obtained and every secret read for nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from bruin_materialize.errors import usage_error
from bruin_materialize.settings import Settings

# Imported late, where they are needed (a fast start; the template path never loads ruamel), but
# looked up first, so that a broken install is found before a login is made.
RUNTIME_MODULES = ("hvac", "requests", "urllib3", "pycurl", "jinja2", "markupsafe", "ruamel.yaml")


def check_runtime_modules(modules: Sequence[str] = RUNTIME_MODULES) -> None:
    for name in modules:
        if not _installed(name):
            raise usage_error(f"the Python package {name} cannot be imported; install requirements.txt "
                              "(or pip install bruin-materialize) in this environment")


def _installed(name: str) -> bool:
    """Is `name` on sys.path? PathFinder looks without importing anything, parents included
    (importlib.util.find_spec would import `ruamel` to find `ruamel.yaml`)."""
    from importlib.machinery import PathFinder

    if name in sys.modules:
        return sys.modules[name] is not None  # None: an import that is known to fail
    path: list[str] | None = None
    parts = name.split(".")
    for i in range(len(parts)):
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), path)
        if spec is None:
            return False
        path = list(spec.submodule_search_locations or [])
    return True


def check_destination(settings: Settings) -> None:
    """Fail when the file could not, or should not, be written where the settings say."""
    from bruin_materialize import write

    if settings.command == "render" and settings.output is not None:
        write.check_destination(settings.output, allow_repo=settings.allow_repo, base=settings.base)
    elif settings.command in ("exec", "render"):
        write.check_runtime_base(settings.runtime_dir, allow_non_tmpfs=settings.allow_non_tmpfs)
        if settings.command == "render" and not stdout_open():
            raise usage_error("stdout is closed, so render without --output could not say where it wrote the file; "
                              "pass --output FILE, or read stdout")


def stdout_open() -> bool:
    """Started with stdout closed (`>&-`), Python sets sys.stdout to None. A pipe whose reader left
    early cannot be told apart yet: printing the path finds that out, and removes the file."""
    try:
        return sys.stdout is not None and os.fstat(sys.stdout.fileno()) is not None
    except (OSError, ValueError):
        return False
