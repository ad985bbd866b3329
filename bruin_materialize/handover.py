"""Handing over to `bruin run`: find the binary, build its environment and arguments on purpose,
then run it as our child (the default) or become it (execve, "replace" mode).

As a child, bruin inherits stdin, stdout and stderr; we forward the signals a supervisor sends,
wait for it, and the caller removes the private directory holding the credentials once it exits.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from bruin_materialize.errors import usage_error
from bruin_materialize.settings import flag_name

# Vault settings are ours, not bruin's: with them bruin would hold a token it does not need, and
# BRUIN_SECRETS_BACKEND=vault would make it ignore the file. BRUIN_CONFIG_FILE_CONTENT would be read
# instead of the file, so it goes too.
_DROP_PREFIXES = ("BRUIN_VAULT_", "VAULT_", "BAO_")
_DROP_NAMES = frozenset({"BRUIN_SECRETS_BACKEND", "BRUIN_CONFIG_FILE_CONTENT"})

# What a supervisor (Kubernetes, systemd, a shell's job control, a terminal resize) sends that bruin
# should see as if it were the process started.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                     signal.SIGUSR2, signal.SIGWINCH)
# Python ignores SIGPIPE and SIGXFSZ; a child must get the defaults back (as subprocess does).
_RESET_IN_CHILD = (signal.SIGPIPE, signal.SIGXFSZ)
_SI_KERNEL = 0x80  # si_code of a signal the kernel sent, e.g. the terminal's ^C to its foreground group


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
    return [bruin, "run", "--config-file", str(config_file), *without_flag(run_args, "secrets-backend")]


def without_flag(args: Sequence[str], name: str) -> list[str]:
    """`args` without flag `name` (a flag taking a value) in any spelling: with it bruin would
    ignore the file. Stops at `--`, after which everything is an argument."""
    kept: list[str] = []
    skip_next = False
    for i, arg in enumerate(args):
        if skip_next:
            skip_next = False
            continue
        if arg == "--":
            kept.extend(args[i:])
            break
        found, value = flag_name(arg)
        if found == name:
            skip_next = value is None
            continue
        kept.append(arg)
    return kept


def has_flag(args: Sequence[str], name: str) -> bool:
    for arg in args:
        if arg == "--":
            return False
        if flag_name(arg)[0] == name:
            return True
    return False


def exec_bruin(argv: list[str], env: dict[str, str]) -> NoReturn:
    """Replace mode: become bruin. Nothing of ours runs afterwards, so nothing removes the file."""
    _flush()
    try:
        os.execve(argv[0], argv, env)
    except OSError as exc:
        raise usage_error(f"cannot run {argv[0]}: {exc.strerror}") from None


def _flush() -> None:
    """What we wrote goes before bruin's. A stream closed when we started is None: bruin inherits it closed."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


def run_bruin(argv: list[str], env: dict[str, str]) -> int:
    """Child mode: run bruin, forward signals to it until it exits, return its exit code
    (128 + N when signal N ended it, as a shell reports it).

    The forwarded signals and SIGCHLD are blocked and taken with sigtimedwait rather than handled,
    so none is lost between the spawn and the wait, and none reaches the caller's handlers (which
    would unwind the stack while bruin still runs). They stay blocked until every pending one is
    consumed: a SIGTERM that came as bruin exited is answered by bruin's exit, not by a traceback.
    """
    _flush()
    waited = {*FORWARDED_SIGNALS, signal.SIGCHLD}
    # Started with SIGCHLD ignored (some launchers do that), the kernel would reap bruin itself and
    # its exit code would be lost: the default disposition for the wait, and for bruin.
    child_disposition = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        try:
            pid = os.posix_spawn(argv[0], argv, env, setsigmask=previous, setsigdef=_RESET_IN_CHILD)
        except OSError as exc:
            raise usage_error(f"cannot run {argv[0]}: {exc.strerror}") from None
        status = _wait_forwarding(pid, waited)
        _drain(waited)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        signal.signal(signal.SIGCHLD, child_disposition)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _wait_forwarding(pid: int, waited: set[signal.Signals]) -> int:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        # A timeout as well as SIGCHLD: signals of one kind coalesce, so a SIGCHLD may be folded away.
        info = signal.sigtimedwait(waited, 0.5)
        if info is not None and info.si_signo != signal.SIGCHLD and _sent_to_us_alone(info):
            try:
                os.kill(pid, info.si_signo)
            except ProcessLookupError:  # exited meanwhile: waitpid says so next
                pass


def _sent_to_us_alone(info: signal.struct_siginfo) -> bool:
    """A terminal's ^C, ^\\, hangup or resize goes to its whole foreground process group, bruin
    included: forwarding it would deliver it twice, and a second ^C makes many programs quit hard."""
    return info.si_code != _SI_KERNEL


def _drain(waited: set[signal.Signals]) -> None:
    while signal.sigtimedwait(waited, 0) is not None:
        pass
