"""What a person (or a CI job) sees, and the signals that end a run.

Everything is said on stderr: stdout belongs to whoever runs us (the path `render` prints, plan's
lines, --format json's document) and later to bruin. Each message is one line whatever it quotes:
text from Vault can hold an escape sequence or a newline followed by a forged `materialize:` line,
which visible() shows as escapes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from bruin_materialize.machine import Document
from bruin_materialize.validate import ERROR, NOTE, WARNING, Outcome
from bruin_materialize.yamltext import visible


class Console:
    def __init__(self, verbosity: int = 0) -> None:
        self.verbosity = verbosity
        self.document: Document | None = None  # --format json: stdout gets this document instead of text

    def error(self, message: str) -> None:
        say(f"materialize: error: {message}")

    def warning(self, message: str) -> None:
        if self.verbosity >= 0:
            say(f"materialize: warning: {message}")

    def info(self, message: str) -> None:
        if self.verbosity >= 0:
            say(f"materialize: {message}")

    def debug(self, message: str) -> None:
        if self.verbosity >= 1:
            say(f"materialize: {message}")

    def note(self, environment: str, location: str, field: str | None, code: str, message: str) -> None:
        """A note about one secret or file: a line, and a finding in the JSON document."""
        if self.document is not None:
            self.document.add(environment, location, field, NOTE, code, message)
        self.info(f"{location}: {field}: {message}" if field else f"{location}: {message}")

    def report(self, outcome: Outcome) -> None:
        for problem in outcome.problems:
            {ERROR: self.error, WARNING: self.warning, NOTE: self.info}[problem.level](problem.line())


def say(line: str) -> None:
    if sys.stderr is None:  # started with stderr closed; print(file=None) would write to stdout
        return
    try:
        print(visible(line), file=sys.stderr)
    except (OSError, ValueError):  # stderr closed or a broken pipe: there is nobody to tell
        pass


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
