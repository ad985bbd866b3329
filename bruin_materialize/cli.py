"""The entrypoint: arguments → settings → the command → an exit code.

`main` is the one error boundary: an expected failure (MaterializeError) becomes one line and its
exit code; anything else is a bug, reported by type only (its text could quote a secret), with a
traceback of frames but no message under --traceback. The commands live in commands.py, each a
short story over the steps they share (pipeline.py); docs/architecture.md has the map.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from bruin_materialize.console import (
    Console,
    Interrupted,
    install_signal_handlers,
    restore_signal_handlers,
    say,
    silence_stdout,
    where_it_failed,
)
from bruin_materialize.errors import ExitCode, MaterializeError
from bruin_materialize.machine import Document
from bruin_materialize.plan import identical as identical  # the comparison `check` and the tests use
from bruin_materialize.preflight import check_runtime_modules
from bruin_materialize.settings import PROG, Settings, parse_settings, program_name


def entrypoint() -> NoReturn:
    """`python materialize.py` and the `bruin-materialize` command."""
    code = main()
    # Skip the interpreter's teardown, which only frees memory the OS reclaims anyway: it costs
    # 0.04 s at 20 secrets and 0.25 s at 5,000 (docs/performance.md). Nothing of ours runs at exit.
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # closed or a broken pipe: nothing more can be said there
            pass
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    console = Console()
    settings: Settings | None = None
    previous = install_signal_handlers()
    try:
        if args[:1] == ["completion"]:  # needs no Vault setting, so it never reaches parse_settings
            from bruin_materialize.completion import run as completion

            return completion(args, PROG if argv is not None else program_name(sys.argv[0]))
        # Named as invoked (`bruin-materialize`, `materialize.py`); main([...]) from a test is materialize.py.
        settings = parse_settings(args, os.environ, prog=PROG if argv is not None else program_name(sys.argv[0]))
        console.set_verbosity(settings.verbosity)
        if settings.output_format == "json":
            console.document = Document(settings.command)
        return _emit(console, run(settings, os.environ, console))
    except MaterializeError as exc:
        console.error(exc.message)
        if console.document is None:
            console.document = _document_asked_for(args)  # a setting was wrong: settings never came
        return _emit(console, exc.exit_code, exc.message)
    except BrokenPipeError:  # stdout's reader left (`check --format json | true`): nobody to tell
        return stdout_gone()
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        # import writes secret by secret: the ones written before the signal stay (a rerun finds them the same)
        done = "secrets written so far stay" if settings and settings.command == "import" else "nothing was written"
        return _fail(console, 128 + signum, f"interrupted by {signal.Signals(signum).name}; {done}")
    except Exception as exc:
        if settings.traceback if settings is not None else "--traceback" in args:
            for line in where_it_failed(exc).splitlines():
                say(line)
            return _fail(console, ExitCode.INTERNAL, f"internal error ({type(exc).__name__}); the traceback above "
                         "leaves out every message")
        return _fail(console, ExitCode.INTERNAL, f"internal error ({type(exc).__name__}); rerun with --traceback "
                     "to see where")
    finally:
        restore_signal_handlers(previous)


def run(settings: Settings, environ: Mapping[str, str], console: Console) -> int:
    """The command the settings name. Its modules load the Vault client and the YAML libraries, so
    they are imported once those are known to be installed (a clear exit 2, not an ImportError)."""
    check_runtime_modules()
    from bruin_materialize.commands import COMMANDS

    return COMMANDS[settings.command](settings, environ, console)


def _fail(console: Console, exit_code: int, message: str) -> int:
    console.error(message)
    return _emit(console, exit_code, message)


def _emit(console: Console, exit_code: int, error: str | None = None) -> int:
    """--format json: the one document on stdout, whatever happened; stderr has the text lines as ever."""
    if console.document is not None:
        try:
            print(console.document.to_json(int(exit_code), error), flush=True)
        except BrokenPipeError:
            return stdout_gone()
    return exit_code


# A write to stdout met a reader that had left: the run ends quietly with the code a shell shows for a
# process SIGPIPE ended, as `head` expects of any writer (Python ignores SIGPIPE, so it is ours to say).
STDOUT_GONE = 128 + signal.SIGPIPE


def stdout_gone() -> int:
    silence_stdout()
    return STDOUT_GONE


def _document_asked_for(args: Sequence[str]) -> Document | None:
    """--format json on a command line whose settings could not be resolved: the document still comes,
    so a CI job gets its exit code and error line in the form it asked for."""
    command = args[0] if args else ""
    options = list(args[1:args.index("--")] if "--" in args else args[1:])
    asked = any(a == "--format=json" for a in options) or any(
        a == "--format" and b == "json" for a, b in zip(options, options[1:], strict=False))
    return Document(command) if command in ("check", "plan", "render") and asked else None
