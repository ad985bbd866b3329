"""One run of the tool as a process under cProfile, and reading its profile and `-X importtime` output.

    python bench/profiling.py PROFILE_FILE materialize.py ARGS...

runs materialize.py as `__main__` under cProfile and writes the profile, also when the program
ends with os._exit (it does, to skip the interpreter's teardown; `python -m cProfile -o` would then
write nothing). The tool is reached only as a program: nothing here names its functions.

cProfile follows the main thread only (the readers' wait shows up as the main thread waiting on
the pool), and it slows pure Python code (validate, render) far more than waiting (reads): it says
what is inside a run, the process times of bench/run.py say how long it takes.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import re
import runpy
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

_PACKAGE = "/bruin_materialize/"


def summary(profile_file: str, count: int = 15) -> dict[str, Any]:
    """{"total": s, "package": [...], "top": [...]}: bruin_materialize's functions by cumulative
    time (its modules' import left out: -X importtime says that), and every function by time of
    its own (callees not counted)."""
    loaded = pstats.Stats(profile_file)
    stats: dict[Any, Any] = loaded.stats  # type: ignore[attr-defined]
    total: float = loaded.total_tt  # type: ignore[attr-defined]
    package = [(key, entry) for key, entry in stats.items()
               if _PACKAGE in key[0].replace("\\", "/") and key[2] != "<module>"]  # calls, not imports
    by_cumulative = sorted(package, key=lambda item: item[1][3], reverse=True)[:count]
    by_own = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:count]
    return {"total": total, "package": [_row(key, entry) for key, entry in by_cumulative],
            "top": [_row(key, entry) for key, entry in by_own]}


def _row(key: Any, entry: Any) -> dict[str, Any]:
    return {"function": _name(key), "calls": entry[1], "own": entry[2], "cumulative": entry[3]}


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


def main(argv: list[str]) -> None:
    out, program = argv[0], argv[1:]
    del sys.path[0]  # bench/: the program puts its own directory first
    sys.argv = program
    profiler = cProfile.Profile()
    real_exit = os._exit

    def dump_then_exit(status: int) -> NoReturn:
        profiler.disable()
        profiler.dump_stats(out)
        real_exit(status)

    os._exit = dump_then_exit
    profiler.enable()
    try:
        runpy.run_path(program[0], run_name="__main__")
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main(sys.argv[1:])
