"""What a person (or a CI job) sees, and the signals that end a run.

Everything is said on stderr: stdout belongs to whoever runs us (the path `render` prints, plan's
lines, --format json's document) and later to bruin. Each message is one line whatever it quotes:
text from Vault can hold an escape sequence or a newline followed by a forged `materialize:` line,
which visible() shows as escapes.

Log lines for CI: with -v, when stderr is not a terminal (a CI job, a pod's log), every line starts
with its time, RFC 3339 in UTC to the millisecond (`2026-12-03T18:10:00.123Z materialize: ...`), so
a log collector can order and file them; a terminal, or a run without -v, gets the lines alone.
Long work (reading or importing many secrets) says how far it got: see Progress.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
import threading
import time
from types import TracebackType
from typing import Any

from bruin_materialize.machine import Document
from bruin_materialize.threads import start_daemon
from bruin_materialize.validate import ERROR, NOTE, WARNING, Outcome
from bruin_materialize.yamltext import visible


class Console:
    def __init__(self, verbosity: int = 0) -> None:
        self.verbosity = verbosity
        self.document: Document | None = None  # --format json: stdout gets this document instead of text
        self.timestamps = False  # -v with stderr not a terminal: each line starts with its time

    def set_verbosity(self, verbosity: int) -> None:
        self.verbosity = verbosity
        self.timestamps = verbosity >= 1 and not stderr_is_terminal()

    def error(self, message: str) -> None:
        self._say(f"materialize: error: {message}")

    def warning(self, message: str) -> None:
        if self.verbosity >= 0:
            self._say(f"materialize: warning: {message}")

    def info(self, message: str) -> None:
        if self.verbosity >= 0:
            self._say(f"materialize: {message}")

    def debug(self, message: str) -> None:
        if self.verbosity >= 1:
            self._say(f"materialize: {message}")

    def _say(self, line: str) -> None:
        say(f"{timestamp()} {line}" if self.timestamps else line)

    def note(self, environment: str, location: str, field: str | None, code: str, message: str) -> None:
        """A note about one secret or file: a line, and a finding in the JSON document."""
        if self.document is not None:
            self.document.add(environment, location, field, NOTE, code, message)
        self.info(f"{location}: {field}: {message}" if field else f"{location}: {message}")

    def finding(self, environment: str, location: str, level: str, code: str, where: str, message: str) -> None:
        """One line, an error or (else) a note by `level`, and its finding in the JSON document."""
        if self.document is not None:
            self.document.add(environment, location, None, level, code, message)
        (self.error if level == ERROR else self.info)(f"{where} {message}")

    def report(self, outcome: Outcome) -> None:
        for problem in outcome.problems:
            {ERROR: self.error, WARNING: self.warning, NOTE: self.info}[problem.level](problem.line())


def say(line: str) -> None:
    with _STDERR:
        _write("\r\x1b[K" if _LIVE[0] else "")  # a progress line in place on a terminal goes first
        _LIVE[0] = False
        _write(visible(line) + "\n")


def timestamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (OSError, ValueError):  # closed
        return False


_STDERR = threading.Lock()  # one line at a time, from the main thread and the progress thread
_LIVE = [False]  # a progress line is on the terminal, without its newline


def _write(text: str) -> None:
    if sys.stderr is None or not text:  # started with stderr closed; print(file=None) would write to stdout
        return
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed or a broken pipe: there is nobody to tell
        pass


class Progress:
    """`read N/M secrets from WHERE (Ts)` while long work goes on: nothing for the first FIRST_AFTER
    seconds (most runs end before), then a line at least every EVERY seconds; on a terminal, one line
    updated in place each second instead. -q silences it. A helper thread says it, so a read stuck on
    a slow Vault still shows where it stands; `tick` counts an item done, from any thread."""

    FIRST_AFTER = 2.0
    EVERY = 5.0
    IN_PLACE_EVERY = 1.0

    def __init__(self, console: Console, verb: str, total: int, where: str) -> None:
        self.console, self.verb, self.total, self.where = console, verb, total, where
        self.done = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._in_place = stderr_is_terminal()

    def tick(self) -> None:
        with self._lock:
            self.done += 1

    def line(self) -> str:
        return (f"{self.verb} {self.done}/{self.total} secrets {self.where} "
                f"({time.monotonic() - self._started:.0f}s)")

    def __enter__(self) -> Progress:
        if self.console.verbosity >= 0 and self.total > 1:
            self._thread = start_daemon(self._run, "progress")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        with _STDERR:
            if _LIVE[0]:
                _write("\r\x1b[K")
                _LIVE[0] = False

    def _run(self) -> None:
        wait = self.FIRST_AFTER
        while not self._stop.wait(wait):
            if self._in_place:
                with _STDERR:
                    _write(f"\r{visible('materialize: ' + self.line())}\x1b[K")
                    _LIVE[0] = True
            else:
                self.console.info(self.line())
            wait = self.IN_PLACE_EVERY if self._in_place else self.EVERY


def flush_stdout() -> None:
    """Lines printed on stdout, out now. Started with stdout closed (`>&-`), Python's sys.stdout is
    None and print() wrote nowhere, as into /dev/null: the exit code still says what was found."""
    if sys.stdout is not None:
        sys.stdout.flush()


def silence_stdout() -> None:
    """After a write to stdout failed (its reader left): Python flushes stdout again at exit, which
    would fail the same way and print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass


def where_it_failed(exc: BaseException) -> str:
    """A traceback without the exceptions' messages or any variable: a message can quote a token
    (http.client's "Invalid header value ...") or a secret (a KeyError), so it shows only what the
    source already holds: files, lines, functions, the code on them and the exception types."""
    import traceback

    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts: list[str] = []
    for failure in reversed(chain):
        if parts:
            parts.append("\nwhile handling it, or because of it:\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_list(traceback.extract_tb(failure.__traceback__)))
        parts.append(f"{type(failure).__module__}.{type(failure).__qualname__} (message left out)\n")
    return "".join(parts).rstrip("\n")


# --- signals -----------------------------------------------------------------------------------------


class Interrupted(BaseException):
    """SIGTERM, SIGINT, SIGHUP or SIGQUIT: unwinds like KeyboardInterrupt, through every cleanup."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# Until bruin runs, a signal that would end us by default ends the run through the same cleanup as
# SIGTERM (no file left); a supervisor's SIGUSR1/SIGUSR2 is meant for bruin, which is not running
# yet: noted, not fatal. Handled, not ignored: an ignored signal would stay ignored in bruin.
_STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
_FOR_BRUIN = (signal.SIGUSR1, signal.SIGUSR2)


def install_signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread may set handlers (an embedding caller's business then)
    previous: dict[int, Any] = {sig: signal.signal(sig, _on_signal) for sig in _STOPPING}
    previous.update({sig: signal.signal(sig, _not_yet) for sig in _FOR_BRUIN})
    return previous


def restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _on_signal(signum: int, _frame: object) -> None:
    adapter = sys.modules.get("bruin_materialize.adapter")  # loaded once Vault is being talked to
    if adapter is not None:
        adapter.abort_all()  # wake the reader threads, stop retrying
    raise Interrupted(signum)


def _not_yet(_signum: int, _frame: object) -> None:
    pass
