"""One finished run of the program, as a child process or in-process, and how to judge it."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ERROR = "materialize: error: "
# Where long work stands (console.Progress): said on the side of whatever else a run says, so the
# judgements below, about what a run said, leave these lines out; `all_lines` has them.
PROGRESS = re.compile(r"materialize: (?:read|wrote) \d+/\d+ secrets (?:from|to) .* \(\d+s\)")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z ")  # console.timestamp() and a space: -v off a terminal


@dataclasses.dataclass(frozen=True)
class Run:
    """Exit code, output, how long it took and, for `render`, the file it wrote (if any).

    The names are subprocess.CompletedProcess's, so that a test reads either the same way.
    """

    returncode: int
    stdout: str
    stderr: str
    elapsed: float = 0.0
    output: bytes | None = None

    @property
    def all_lines(self) -> list[str]:
        """stderr, a line each."""
        return self.stderr.splitlines()

    @property
    def lines(self) -> list[str]:
        """stderr, a line each, as said: without the progress lines, and without the time that -v lines
        start with when stderr is not a terminal."""
        said = (TIMESTAMP.sub("", line, count=1) for line in self.all_lines)
        return [line for line in said if not PROGRESS.fullmatch(line)]

    def assert_ok(self) -> None:
        assert self.returncode == 0, self.stderr
        assert self.stdout == ""
        assert not any(line.startswith(ERROR) for line in self.lines)

    def assert_failed(self, code: int, prefix: str, *fragments: str) -> None:
        """Exit `code`, nothing on stdout, and stderr is exactly one error line starting with `prefix`."""
        assert self.returncode == code, self.stderr
        assert self.stdout == ""
        assert "Traceback" not in self.stderr
        assert len(self.lines) == 1, self.stderr
        line = self.lines[0]
        assert line.startswith(f"{ERROR}{prefix}"), line
        for fragment in fragments:
            assert fragment in line, line

    def error_line(self, code: int = 3) -> str:
        """The one line a failure prints; asserts the exit code and that nothing else was said."""
        assert self.returncode == code, self.stderr
        assert len(self.lines) == 1 and self.lines[0].startswith(ERROR), self.stderr
        return self.lines[0]

    def error(self, code: int) -> str:
        """The one error line's message, without its `materialize: error: ` prefix."""
        return self.error_line(code).removeprefix(ERROR)


def child_env(base: Mapping[str, str], changes: Mapping[str, str | None] | None) -> dict[str, str]:
    """`base` updated by `changes`, where None unsets a name."""
    env = dict(base)
    for name, value in (changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_process(argv: Sequence[str], *, env: Mapping[str, str | None] | None = None,
                base_env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
                timeout: float = 60) -> Run:
    """Run `argv` (stdin from /dev/null) with `base_env` (default os.environ) updated by `env`.

    Its output is echoed to this process's stdout and stderr: inside a test, that is where the
    leak guard looks.
    """
    started = time.monotonic()
    proc = subprocess.run(list(argv), env=child_env(os.environ if base_env is None else base_env, env), cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - started
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return Run(proc.returncode, proc.stdout, proc.stderr, elapsed)
