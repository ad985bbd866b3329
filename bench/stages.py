"""Reading a cProfile file and `python -X importtime` output into stage times.

cProfile follows the main thread only; `KV.read_all` there is the wall time of the whole thread
pool (the main thread waits for the workers), which is what the stage costs. Profiling slows pure
Python code (validate, render) far more than waiting (reads), so these shares are skewed; the
unprofiled stage times of bench/timed.py are the ones to quote, cProfile says what is inside.
"""

from __future__ import annotations

import pstats
import re
from collections.abc import Iterable
from typing import Any

import timed

_MAIN = ("bruin_materialize.cli", "main")
_IMPORT = ("<frozen importlib._bootstrap>", "_find_and_load")


def _key(stats: dict[Any, Any], module: str, attribute: str) -> Any:
    """cProfile's key of a function: its file and code name (a method's class is not kept)."""
    path, function = module.replace(".", "/") + ".py", attribute.rsplit(".", 1)[-1]
    for key in stats:
        filename, _, name = key
        if name == function and filename.replace("\\", "/").endswith(path):
            return key
    return None


def _imports_inside(stats: dict[Any, Any], key: Any) -> float:
    """Seconds of imports made directly by `key` (lazy imports inside the function)."""
    total = 0.0
    for import_key, entry in stats.items():
        if (import_key[0], import_key[2]) == _IMPORT:
            callers = entry[4]
            if key in callers:
                total += callers[key][3]
    return total


def stage_times(profile_file: str) -> dict[str, Any]:
    """{"total": s, "main": s, "stages": {label: {seconds, imports, calls}}, "top": [...]}."""
    loaded = pstats.Stats(profile_file)
    stats: dict[Any, Any] = loaded.stats  # type: ignore[attr-defined]
    total: float = loaded.total_tt  # type: ignore[attr-defined]
    rows = {}
    for label, _, where in timed.STAGES:
        key = next((k for k in (_key(stats, *w) for w in where) if k is not None), None)
        if key is not None:
            rows[label] = {"seconds": stats[key][3], "imports": _imports_inside(stats, key), "calls": stats[key][1]}
    main_key = _key(stats, *_MAIN)
    main = stats[main_key][3] if main_key is not None else 0.0
    return {"total": total, "main": main, "stages": rows, "top": _top(stats, 15)}


def _top(stats: dict[Any, Any], count: int) -> list[dict[str, Any]]:
    """The functions with the most time of their own (not counting callees)."""
    ordered = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:count]
    return [{"function": _name(key), "calls": entry[1], "own": entry[2], "cumulative": entry[3]}
            for key, entry in ordered]


def _name(key: Any) -> str:
    filename, line, function = key
    if filename == "~":
        return str(function)  # a builtin, e.g. <method 'read' of '_ssl._SSLSocket' objects>
    short = re.sub(r"^.*/(site-packages|lib/python3\.\d+|bruin_materialize)/", r"\1/", filename)
    return f"{short}:{line}({function})"


_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)")


def import_times(stderr_lines: Iterable[str]) -> dict[str, Any]:
    """`-X importtime` output: the total and the slowest top-level imports (cumulative seconds).

    "Top-level" is an import not made by another import: `bruin_materialize.cli` and its whole
    tree when materialize.py starts, and the lazy ones (jinja2 inside render) when they happen.
    """
    top: list[tuple[str, float]] = []
    for line in stderr_lines:
        match = _IMPORTTIME.match(line)
        if match and len(match.group(3)) == 1:  # one space of indent: nobody's child
            top.append((match.group(4), int(match.group(2)) / 1e6))
    top.sort(key=lambda item: item[1], reverse=True)
    return {"total": sum(t for _, t in top), "top": [{"module": m, "seconds": t} for m, t in top[:12]]}
