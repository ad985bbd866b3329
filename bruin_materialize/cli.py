"""The entrypoint: settings → Vault (list, read) → validate → render → write → exec.

`main` is the one error boundary: an expected failure (MaterializeError) becomes one line and its
exit code; anything else is a bug, reported by type only (its text could quote a secret) unless
--traceback is given.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bruin_materialize import auth, handover, transport
from bruin_materialize.errors import ExitCode, MaterializeError, usage_error
from bruin_materialize.schema import Schema, load_schema_file, schema_from_bruin
from bruin_materialize.settings import Settings, parse_settings
from bruin_materialize.transport import RetryPolicy, Transport, ssl_context
from bruin_materialize.validate import ERROR, NOTE, WARNING, Options, Outcome, validate
from bruin_materialize.vault import KV, RawSecret, detect_version


class Console:
    """Everything goes to stderr: stdout belongs to whoever runs us (and later to bruin)."""

    def __init__(self, verbosity: int = 0) -> None:
        self.verbosity = verbosity

    def error(self, message: str) -> None:
        print(f"materialize: error: {message}", file=sys.stderr)

    def warning(self, message: str) -> None:
        if self.verbosity >= 0:
            print(f"materialize: warning: {message}", file=sys.stderr)

    def info(self, message: str) -> None:
        if self.verbosity >= 0:
            print(f"materialize: {message}", file=sys.stderr)

    def debug(self, message: str) -> None:
        if self.verbosity >= 1:
            print(f"materialize: {message}", file=sys.stderr)


class Interrupted(BaseException):
    """SIGTERM or SIGINT: unwinds like KeyboardInterrupt, through every cleanup on the way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, _frame: object) -> None:
    transport.abort_all()  # wake the reader threads, stop retrying
    raise Interrupted(signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    console = Console()
    settings: Settings | None = None
    previous = _install_signal_handlers()
    try:
        settings = parse_settings(args, os.environ)
        console.verbosity = settings.verbosity
        return run(settings, os.environ, console)
    except MaterializeError as exc:
        console.error(exc.message)
        return exc.exit_code
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        console.error(f"interrupted by {signal.Signals(signum).name}; nothing was written")
        return 128 + signum
    except Exception as exc:
        if settings is not None and settings.traceback:
            raise
        console.error(f"internal error ({type(exc).__name__}); rerun with --traceback to see where")
        return ExitCode.INTERNAL
    finally:
        _restore_signal_handlers(previous)


def _install_signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread may set handlers (an embedding caller's business then)
    return {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def run(settings: Settings, environ: Mapping[str, str], console: Console) -> int:
    bruin = None
    bruin_env = handover.bruin_environment(environ)
    if settings.command == "exec":
        bruin = handover.find_bruin(settings.bruin_bin, settings.search_path)
        if handover.config_file_flag(settings.bruin_args):
            raise usage_error("--config-file is set by materialize; remove it from the bruin arguments")
        if "BRUIN_CONFIG_FILE_CONTENT" in environ:
            console.warning("BRUIN_CONFIG_FILE_CONTENT is set; it is not passed to bruin, which would use it "
                            "instead of the rendered file")
    _check_destination(settings)
    schema = _schema(settings, bruin, bruin_env, console)
    secrets, source = _read_secrets(settings, console)
    # exec knows bruin's environment exactly; render/check write for a bruin that may run elsewhere.
    env_names = frozenset(bruin_env) if settings.command == "exec" else None
    outcome = validate(secrets, schema, Options(settings.strict, settings.expand_env, env_names))
    _report(outcome, console)
    if outcome.errors:
        n = len(outcome.errors)
        raise MaterializeError(f"{n} invalid secret field{'s' if n > 1 else ''} (listed above); nothing was "
                               "written", ExitCode.INVALID)
    from bruin_materialize.render import render

    text = render(outcome.connections, settings.environment, source)
    console.info(_summary(outcome, settings.environment))
    return _deliver(settings, outcome, text, bruin, bruin_env, console)


def _deliver(settings: Settings, outcome: Outcome, text: str, bruin: str | None,
             bruin_env: dict[str, str], console: Console) -> int:
    from bruin_materialize import write

    if settings.command == "check":
        _verify(text, outcome, settings.environment)
        console.info("check passed: the config would be valid; nothing written")
        return ExitCode.OK
    if settings.command == "render":
        assert settings.output is not None
        write.write_atomic(settings.output, text)
        if not write.is_memory_backed(settings.output.parent):
            console.warning(f"{settings.output} is not on tmpfs: the credentials are on disk; delete it after use")
        console.info(f"wrote {settings.output}")
        return ExitCode.OK
    assert bruin is not None and settings.runtime_dir is not None
    directory = write.make_runtime_dir(settings.runtime_dir, allow_non_tmpfs=settings.allow_non_tmpfs)
    config_file = directory / write.CONFIG_NAME
    try:
        write.write_atomic(config_file, text)
    except BaseException:
        _remove_tree(directory)
        raise
    console.debug(f"wrote {config_file}; exec {bruin} run")
    handover.exec_bruin(handover.bruin_arguments(bruin, config_file, settings.bruin_args), bruin_env)


def _check_destination(settings: Settings) -> None:
    """Fail before any Vault call when the file could not, or should not, be written there."""
    from bruin_materialize import write

    if settings.command == "exec":
        assert settings.runtime_dir is not None
        write.check_runtime_base(settings.runtime_dir, allow_non_tmpfs=settings.allow_non_tmpfs)
    elif settings.command == "render":
        assert settings.output is not None
        write.check_destination(settings.output, allow_repo=settings.allow_repo)


def _schema(settings: Settings, bruin: str | None, bruin_env: dict[str, str], console: Console) -> Schema | None:
    if settings.schema_file is not None:
        return load_schema_file(settings.schema_file)
    if bruin is None:
        try:
            bruin = handover.find_bruin(settings.bruin_bin, settings.search_path)
        except MaterializeError:
            console.warning("no connection schema (bruin not found, no --schema): checking the secrets' shape "
                            "only, not their types and fields")
            return None
    try:
        return schema_from_bruin(bruin, settings.cache_dir, bruin_env)
    except MaterializeError as exc:
        console.warning(f"{exc.message}; checking the secrets' shape only")
        return None


def _read_secrets(settings: Settings, console: Console) -> tuple[list[RawSecret], str]:
    creds = auth.read_credentials(settings.auth)  # a missing credential file is exit 2, before the network
    client = _transport(settings, console)
    started = time.monotonic()
    logged_in = False
    try:
        if settings.wait > 0:
            client.wait_until_reachable(settings.wait, console.info)
        client.set_token(auth.obtain_token(client, creds))
        logged_in = settings.auth.logs_in
        version = settings.kv_version or detect_version(client, settings.mount, settings.path)
        kv = KV(client, settings.mount, version)
        listing = kv.list_secrets(settings.path, recursive=settings.recursive)
        for folder in listing.skipped_folders:
            console.warning(f"{settings.mount}/{settings.path}/{folder}: subfolder not read; pass --recursive to "
                            "read its secrets as connections named FOLDER/NAME")
        secrets = kv.read_all(settings.path, listing.names, concurrency=settings.concurrency)
    finally:
        if logged_in and not client.cancel.is_set() and not auth.revoke(client):
            console.warning("could not revoke the login token; it stays valid until its TTL ends")
        client.close()
    source = f"{settings.mount}/{settings.path}"
    console.debug(f"read {len(secrets)} secrets from {source} (KV v{version}) in "
                  f"{time.monotonic() - started:.2f}s")
    return secrets, f"{source} (KV v{version})"


def _transport(settings: Settings, console: Console) -> Transport:
    context = None
    if settings.address.scheme == "https":
        context = ssl_context(settings.tls)
        if settings.tls.skip_verify:
            console.warning("TLS verification is disabled (VAULT_SKIP_VERIFY): anyone on the network path could "
                            "read these secrets")
    headers = {"X-Vault-Namespace": settings.namespace} if settings.namespace else {}
    policy = RetryPolicy(settings.timeout, settings.max_retries, settings.retry_wait_min, settings.retry_wait_max)
    return Transport(settings.address, policy, ssl_context=context, headers=headers)


def _report(outcome: Outcome, console: Console) -> None:
    for problem in outcome.problems:
        if problem.level == ERROR:
            console.error(problem.line())
        elif problem.level == WARNING:
            console.warning(problem.line())
        elif problem.level == NOTE:
            console.info(problem.line())


def _summary(outcome: Outcome, environment: str) -> str:
    counts: dict[str, int] = {}
    for conn in outcome.connections:
        counts[conn.type] = counts.get(conn.type, 0) + 1
    by_type = ", ".join(f"{t} {n}" for t, n in counts.items())
    n = len(outcome.connections)
    return f"{n} connection{'s' if n != 1 else ''} for environment {environment!r}" + (f": {by_type}" if by_type else "")


def _verify(text: str, outcome: Outcome, environment: str) -> None:
    """Parse the rendered text back with an independent YAML 1.2 parser: same data, same types."""
    from ruamel.yaml import YAML

    from bruin_materialize.render import expected_document

    parsed = YAML(typ="safe", pure=True).load(text)
    if not identical(parsed, expected_document(outcome.connections, environment)):
        raise MaterializeError("the rendered file does not parse back to the secrets' values (a bug; please "
                               "report it, without the secrets)", ExitCode.INTERNAL)


def identical(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1, 1.0 and True are not the same in a config)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _remove_tree(directory: Path) -> None:
    import shutil

    shutil.rmtree(directory, ignore_errors=True)
