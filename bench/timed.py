"""Run the tool in-process with a stopwatch around each stage, without a profiler.

    python bench/timed.py RESULT.json TOOL_DIR materialize.py-ARGS...

The stage functions are wrapped where cli.py finds them (module attributes and class methods), so
the pipeline runs exactly as `python materialize.py` would; a stage whose function is not there
(renamed, or another command) is left out. Seconds are wall time, nested stages included in their
parent. `started_at` and `ended_at` are perf_counter readings (one clock for every process):
bench/run.py sets them against bench/launch.py's to get the interpreter's start-up before this
file runs and its exit after it.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

STARTED = time.perf_counter()

# (label, nested, where): in the order cli.run calls them. `where` lists (module, attribute) in order
# of preference: the first that exists is timed (the code moves; the bench should not break).
# Nested stages run inside the top-level stage above them and are not added to the total.
STAGES: tuple[tuple[str, bool, tuple[tuple[str, str], ...]], ...] = (
    ("settings", False, (("bruin_materialize.settings", "parse_settings"),)),
    ("destination check", False, (("bruin_materialize.cli", "_check_destination"),
                                  ("bruin_materialize.write", "check_destination"))),
    ("schema", False, (("bruin_materialize.cli", "_schema"),)),
    ("Vault: log in, list, read", False, (("bruin_materialize.cli", "_read_secrets"),)),
    ("auth (login; none with a token)", True, (("bruin_materialize.auth", "obtain_token"),)),
    ("KV version (1st request)", True, (("bruin_materialize.vault", "detect_version"),)),
    ("list", True, (("bruin_materialize.vault", "KV.list_secrets"), ("bruin_materialize.vault", "KV.list"))),
    ("reads", True, (("bruin_materialize.vault", "KV.read_all"),)),
    ("validate", False, (("bruin_materialize.validate", "validate"),)),
    ("report problems", False, (("bruin_materialize.cli", "_report_all"), ("bruin_materialize.cli", "_report"))),
    ("render (incl. importing jinja2)", False, (("bruin_materialize.cli", "_build"),
                                                ("bruin_materialize.render", "render_environments"),
                                                ("bruin_materialize.render", "render"))),
    ("check: parse back", False, (("bruin_materialize.cli", "_verify"),)),
    ("write", False, (("bruin_materialize.write", "write_atomic"),)),
    ("tmpfs check", False, (("bruin_materialize.write", "is_memory_backed"),)),
)


def _resolve(module_name: str, attribute: str) -> tuple[Any, str, Any]:
    """(owner, name, function) for `module:attribute`, or (None, name, None) when missing."""
    owner: Any = importlib.import_module(module_name)
    *parents, name = attribute.split(".")
    for parent in parents:
        owner = getattr(owner, parent, None)
    return owner, name, getattr(owner, name, None) if owner is not None else None


_spent: dict[str, float] = {}


def _timed(label: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            _spent[label] = _spent.get(label, 0.0) + time.perf_counter() - started

    return wrapper


def _install(label: str, where: tuple[tuple[str, str], ...]) -> None:
    for module_name, attribute in where:
        owner, name, original = _resolve(module_name, attribute)
        if original is not None:
            break
    else:
        return
    wrapped = _timed(label, original)
    setattr(owner, name, wrapped)
    cli = sys.modules["bruin_materialize.cli"]
    for alias, value in list(vars(cli).items()):  # `from module import name` in cli.py
        if value is original:
            setattr(cli, alias, wrapped)


def main(argv: list[str]) -> int:
    result_file, tool_dir, args = argv[0], argv[1], argv[2:]
    sys.path.insert(0, tool_dir)
    started = time.perf_counter()
    cli = importlib.import_module("bruin_materialize.cli")
    imported = time.perf_counter() - started
    for label, _, where in STAGES:
        _install(label, where)
    started = time.perf_counter()
    code: int = cli.main(args)
    total = time.perf_counter() - started
    top = sum(_spent.get(label, 0.0) for label, nested, _ in STAGES if not nested)
    result = {"exit_code": code, "import bruin_materialize.cli": imported, "main": total,
              "rest of cli.main": total - top, "started_at": STARTED, "ended_at": time.perf_counter(),
              "stages": _spent}
    with open(result_file, "w", encoding="utf-8") as out:
        json.dump(result, out)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
