"""Run one command and write its wall time, exit code and peak memory (JSON) to a file.

Usage: python launch.py RESULT_FILE COMMAND [ARGS...]

Why a launcher: on Linux a child's ru_maxrss starts from the memory high-water mark of the
process that forked it (vfork and fork alike carry the old address space's peak across execve).
Spawned straight from the benchmark, which holds every seeded secret, each child would report the
benchmark's own peak. This launcher is a bare interpreter (~9 MB, less than any measured command)
and forks the command itself, so `os.wait4` reports the command's own peak. The clock runs from
just before the fork to the end of the wait: the launcher's own start-up is not counted.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    result_file, command = argv[0], argv[1:]
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(command[0], command)
        finally:
            os._exit(127)  # exec failed; the result shows it
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    result = {"wall": wall, "exit_code": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss,
              "user": usage.ru_utime, "sys": usage.ru_stime}
    with open(result_file, "w", encoding="utf-8") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
