"""The entrypoint: settings → Vault (list, read) → validate → render → write → exec.

Rendering merges into a base file when there is one (merge.py); `plan` compares the rendered text
with a file instead of writing it (plan.py).

`main` is the one error boundary: an expected failure (MaterializeError) becomes one line and its
exit code; anything else is a bug, reported by type only (its text could quote a secret) unless
--traceback is given.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from bruin_materialize import handover, merge
from bruin_materialize.errors import ExitCode, MaterializeError, usage_error
from bruin_materialize.machine import Document
from bruin_materialize.plan import identical as identical  # the comparison `check` and the tests use
from bruin_materialize.schema import SNAPSHOT_FROM, Schema, load_schema_file, load_snapshot, schema_from_bruin
from bruin_materialize.settings import PROG, Settings, parse_settings, program_name
from bruin_materialize.validate import ERROR, NOTE, WARNING, Connection, Options, Outcome, validate
from bruin_materialize.yamltext import load_file, parse, show, visible

if TYPE_CHECKING:
    import hvac

    from bruin_materialize import importer
    from bruin_materialize.vault import KV, RawSecret


class Console:
    """Everything goes to stderr: stdout belongs to whoever runs us (and later to bruin).

    Each message is one line whatever it quotes: text from Vault (a secret's name, a field name) can
    hold an escape sequence or a newline followed by a forged `materialize:` line; visible() shows
    those as escapes.
    """

    def __init__(self, verbosity: int = 0) -> None:
        self.verbosity = verbosity
        self.document: Document | None = None  # --format json: stdout gets this document instead of text

    def error(self, message: str) -> None:
        _say(f"materialize: error: {message}")

    def warning(self, message: str) -> None:
        if self.verbosity >= 0:
            _say(f"materialize: warning: {message}")

    def info(self, message: str) -> None:
        if self.verbosity >= 0:
            _say(f"materialize: {message}")

    def debug(self, message: str) -> None:
        if self.verbosity >= 1:
            _say(f"materialize: {message}")


def _say(line: str) -> None:
    if sys.stderr is None:  # started with stderr closed; print(file=None) would write to stdout
        return
    try:
        print(visible(line), file=sys.stderr)
    except (OSError, ValueError):  # stderr closed or a broken pipe: there is nobody to tell
        pass


class Interrupted(BaseException):
    """SIGTERM or SIGINT: unwinds like KeyboardInterrupt, through every cleanup on the way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, _frame: object) -> None:
    adapter = sys.modules.get("bruin_materialize.adapter")  # loaded once Vault is being talked to
    if adapter is not None:
        adapter.abort_all()  # wake the reader threads, stop retrying
    raise Interrupted(signum)


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
    previous = _install_signal_handlers()
    try:
        # Named as invoked (`bruin-materialize`, `materialize.py`); main([...]) from a test is materialize.py.
        settings = parse_settings(args, os.environ, prog=PROG if argv is not None else program_name(sys.argv[0]))
        console.verbosity = settings.verbosity
        if settings.output_format == "json":
            console.document = Document(settings.command)
        return _emit(console, run(settings, os.environ, console))
    except MaterializeError as exc:
        console.error(exc.message)
        if console.document is None:
            console.document = _document_asked_for(args)  # a setting was wrong: settings never came
        return _emit(console, exc.exit_code, exc.message)
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        # import writes secret by secret: the ones written before the signal stay (a rerun finds them the same)
        done = "secrets written so far stay" if settings and settings.command == "import" else "nothing was written"
        message = f"interrupted by {signal.Signals(signum).name}; {done}"
        console.error(message)
        return _emit(console, 128 + signum, message)
    except Exception as exc:
        if settings.traceback if settings is not None else "--traceback" in args:
            for line in where_it_failed(exc).splitlines():
                _say(line)
            message = f"internal error ({type(exc).__name__}); the traceback above leaves out every message"
        else:
            message = f"internal error ({type(exc).__name__}); rerun with --traceback to see where"
        console.error(message)
        return _emit(console, ExitCode.INTERNAL, message)
    finally:
        _restore_signal_handlers(previous)


def _emit(console: Console, exit_code: int, error: str | None = None) -> int:
    """--format json: the one document on stdout, whatever happened; stderr has the text lines as ever."""
    if console.document is not None:
        print(console.document.to_json(int(exit_code), error), flush=True)
    return exit_code


def _document_asked_for(args: Sequence[str]) -> Document | None:
    """--format json on a command line whose settings could not be resolved: the document still comes,
    so a CI job gets its exit code and error line in the form it asked for."""
    command = args[0] if args else ""
    options = list(args[1:args.index("--")] if "--" in args else args[1:])
    asked = any(a == "--format=json" for a in options) or any(
        a == "--format" and b == "json" for a, b in zip(options, options[1:]))
    return Document(command) if command in ("check", "plan", "render") and asked else None


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


# Until bruin runs, a signal that would end us by default ends the run through the same cleanup as
# SIGTERM (no file left); a supervisor's SIGUSR1/SIGUSR2 is meant for bruin, which is not running
# yet: noted, not fatal. Handled, not ignored: an ignored signal would stay ignored in bruin.
_STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
_FOR_BRUIN = (signal.SIGUSR1, signal.SIGUSR2)


def _install_signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread may set handlers (an embedding caller's business then)
    previous: dict[int, Any] = {sig: signal.signal(sig, _on_signal) for sig in _STOPPING}
    previous.update({sig: signal.signal(sig, _not_yet) for sig in _FOR_BRUIN})
    return previous


def _not_yet(_signum: int, _frame: object) -> None:
    pass


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)




class Provenance(NamedTuple):
    source: str  # where the connections were read
    schema: str  # which connection schema they were checked against


class Built(NamedTuple):
    text: str  # the file
    reads_back: Callable[[Any], bool]  # does a parse of the text hold what was read? (check)


# Imported late, where they are needed (a fast start; the template path never loads ruamel), but
# looked up first, so that a broken install is found before a login is made and the secrets are
# read for nothing. The Vault client's own package belongs here too, once it has one.
RUNTIME_MODULES = ("hvac", "requests", "urllib3", "jinja2", "markupsafe", "ruamel.yaml")


def check_runtime_modules(modules: Sequence[str] = RUNTIME_MODULES) -> None:
    for name in modules:
        if not _installed(name):
            raise usage_error(f"the Python package {name} cannot be imported; install requirements.txt "
                              "(or pip install bruin-materialize) in this environment")


def _installed(name: str) -> bool:
    """Is `name` on sys.path? PathFinder looks without importing anything, parents included
    (importlib.util.find_spec would import `ruamel` to find `ruamel.yaml`)."""
    from importlib.machinery import PathFinder

    if name in sys.modules:
        return sys.modules[name] is not None  # None: an import that is known to fail
    path: list[str] | None = None
    parts = name.split(".")
    for i in range(len(parts)):
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), path)
        if spec is None:
            return False
        path = list(spec.submodule_search_locations or [])
    return True


def run(settings: Settings, environ: Mapping[str, str], console: Console) -> int:
    check_runtime_modules()
    if settings.command == "import":
        return _import(settings, environ, console)
    bruin = None
    bruin_env = handover.bruin_environment(environ)
    if settings.command == "exec":
        bruin = handover.find_bruin(settings.bruin_bin, settings.search_path)
        if handover.has_flag(settings.bruin_args, "config-file"):
            raise usage_error("--config-file is set by materialize; remove it from the bruin arguments")
        if "BRUIN_CONFIG_FILE_CONTENT" in environ:
            console.warning("BRUIN_CONFIG_FILE_CONTENT is set; it is not passed to bruin, which would use it "
                            "instead of the rendered file")
    _check_destination(settings)
    # Every local file is read and every environment name checked before the first Vault call.
    base = _load_base(settings, console)
    sources = _vault_sources(settings, base)
    default_environment = _default_environment(settings, sources, base)
    _check_environments(settings, sources, base, default_environment)
    against = _load_against(settings, base) if settings.command == "plan" else None
    schema = _schema(settings, bruin, bruin_env, console)
    if console.document is not None:
        console.document.schema = schema.describe()
    secrets, source = _read_secrets(settings, sources, console)
    # exec knows bruin's environment exactly; render/check write for a bruin that may run elsewhere.
    env_names = frozenset(bruin_env) if settings.command == "exec" else None
    options = Options(settings.strict, settings.expand_env, env_names)
    # Pure, so once per environment: a name is unique within its environment only.
    outcomes = [(env, validate(found, schema, options)) for (env, _), found in zip(sources, secrets)]
    if console.document is not None:
        console.document.add_outcomes(outcomes)
    _report_all(outcomes, console)
    _absolutize_secrets(settings, outcomes, secrets, console)
    built = _build(settings, outcomes, default_environment, base, Provenance(source, schema.describe()), console)
    for env, outcome in outcomes:
        console.info(_summary(outcome, env))
    if settings.command == "plan":
        assert against is not None
        return _plan(built, against, console)
    return _deliver(settings, built, bruin, bruin_env, console)


def _import(settings: Settings, environ: Mapping[str, str], console: Console) -> int:
    """render's inverse: FILE's connections, checked as `check` checks secrets, into Vault (importer.py)."""
    from bruin_materialize import importer
    from bruin_materialize.vault import KV, detect_version

    job = settings.importing
    assert job is not None
    doc = importer.load(job.file)  # every local file and name is checked before the first Vault call
    sources = importer.sources(doc, settings)
    for env in importer.not_imported(doc, sources):
        console.info(f"{job.file}: environment {importer.shown(env)} not imported (pass --environment-path "
                     f"{importer.shown(env)}=SUBPATH to import it)")
    schema = _schema(settings, None, handover.bruin_environment(environ), console)
    outcomes, entries = importer.check(doc, sources, schema, settings)
    _report_all(outcomes, console)
    with _session(settings, console) as client:
        version = settings.kv_version or detect_version(client, settings.mount, sources[0][1])
        kv = KV(client, settings.mount, version)
        if version == 2:  # numbers KV v2 would change; reported before anything is read or written
            _report_all([("", Outcome([], importer.kv2_problems(entries)))], console)
        states = importer.current_states(kv, entries, settings.concurrency)
        if job.dry_run:
            return _import_plan(entries, states, job.overwrite, version, console)
        results = importer.write_all(kv, entries, states, job.overwrite, settings.concurrency)
    shown = ", ".join(dict.fromkeys("/".join(p for p in (settings.mount, path) if p) for _, path in sources))
    return _import_report(entries, states, results, version, f"{shown} (KV v{version})", console)


def _import_plan(entries: list[importer.Entry], states: list[importer.State], overwrite: bool, version: int,
                 console: Console) -> int:
    from bruin_materialize import importer

    todo = [importer.action(e, s, overwrite, version) for e, s in zip(entries, states)]
    lines = [line for e, s, t in zip(entries, states, todo)
             if (line := importer.plan_line(e, s, t, version)) is not None]
    for line in lines:
        print(line)
    sys.stdout.flush()
    console.info(f"import --dry-run: {_counts(todo, dry_run=True)}; nothing written")
    return ExitCode.CHANGES if lines else ExitCode.OK  # as plan: Vault differs from the file


def _import_report(entries: list[importer.Entry], states: list[importer.State], results: list[str], version: int,
                   where: str, console: Console) -> int:
    from bruin_materialize import importer

    for entry, state, result in zip(entries, states, results):
        kind = f"{entry.location} ({importer.shown(entry.conn.type)})"
        if result in (importer.CREATE, importer.UPDATE):
            console.info(f"{'created' if result == importer.CREATE else 'replaced'} {kind}")
        elif result == importer.LEAVE:
            differs = importer.differences(entry, state, version)
            console.warning(f"{kind} exists and differs ({differs}); left alone: pass --overwrite to replace it")
        elif result == importer.RACED:
            console.warning(f"{kind} was {'changed' if state.exists else 'created'} meanwhile by someone else; "
                            "left alone")
    console.info(f"import into {where}: {_counts(results)}")
    left = sum(r in (importer.LEAVE, importer.RACED) for r in results)
    return ExitCode.CHANGES if left else ExitCode.OK  # Vault still differs from the file, as plan's 5


def _counts(results: list[str], *, dry_run: bool = False) -> str:
    from bruin_materialize import importer

    words = {importer.CREATE: "to create" if dry_run else "created",
             importer.UPDATE: "to replace" if dry_run else "replaced",
             importer.SAME: "already the same",
             importer.LEAVE: "to leave alone" if dry_run else "left alone",
             importer.RACED: "written meanwhile by someone else"}
    return ", ".join(f"{results.count(k)} {w}" for k, w in words.items() if results.count(k)) or "no connections"


def _vault_sources(settings: Settings, base: merge.Base | None) -> list[tuple[str, str]]:
    """(environment, path) to read. With one path, the environment is the one bruin will select:
    its arguments or --environment, else the base's default_environment, else "default"."""
    if settings.environment_paths:
        return list(settings.environment_paths)
    environment = settings.selected_environment or (base.default_environment if base else None) or "default"
    return [(environment, settings.path)]


def _default_environment(settings: Settings, sources: list[tuple[str, str]], base: merge.Base | None) -> str:
    if settings.default_environment:
        return settings.default_environment
    if base is not None and base.default_environment:
        return base.default_environment
    names = [env for env, _ in sources]
    return settings.selected_environment if settings.selected_environment in names else names[0]


def _check_environments(settings: Settings, sources: list[tuple[str, str]], base: merge.Base | None,
                        default_environment: str) -> None:
    names = merge.environment_names([env for env, _ in sources], base)
    shown = ", ".join(repr(n) for n in names)
    if default_environment not in names:
        raise usage_error(f"the default environment {default_environment!r} would not be in the file, which "
                          f"has {shown}; bruin could not load it")
    selected = settings.selected_environment
    if settings.command == "exec" and selected is not None and selected not in names:
        raise usage_error(f"bruin's arguments select environment {selected!r}, which the file would not have (it "
                          f"has {shown}); read it with --environment-path {selected}=SUBPATH")


def _load_base(settings: Settings, console: Console) -> merge.Base | None:
    if settings.base is None:
        return None
    from bruin_materialize.paths import absolutize_document

    base = merge.load_base(settings.base)
    for rw in absolutize_document(base.doc, settings.base.parent):
        if console.document is not None:
            console.document.add(rw.environment, f"{settings.base}: {rw.name}", rw.field, NOTE, "path-absolutized",
                                 f"relative path made absolute against {settings.base.parent}, the base file's "
                                 "directory")
        console.info(f"{settings.base}: {show(rw.environment)}/{show(rw.name)} ({show(rw.conn_type)}): "
                     f"{show(rw.field)}: relative path made absolute against {settings.base.parent}, the base file's "
                     "directory")
    console.debug(f"merging into {settings.base} (environments: {', '.join(map(show, base.environments)) or 'none'})")
    return base


def _load_against(settings: Settings, base: merge.Base | None) -> Any:
    """The file `plan` compares with, parsed as bruin would see it: its relative paths resolved."""
    from bruin_materialize.paths import absolutize_document

    path = settings.against or (base.path if base is not None else None)
    if path is None:
        raise usage_error("plan needs a file to compare with: pass --against FILE or --base FILE (or keep a "
                          ".bruin.yml at the project root)")
    doc = load_file(path)
    absolutize_document(doc, path.parent)
    return doc


def _report_all(outcomes: list[tuple[str, Outcome]], console: Console) -> None:
    for _, outcome in outcomes:
        _report(outcome, console)
    n = sum(len(outcome.errors) for _, outcome in outcomes)
    if n:
        raise MaterializeError(f"{n} invalid secret field{'s' if n > 1 else ''} (listed above); nothing was "
                               "written", ExitCode.INVALID)


def _absolutize_secrets(settings: Settings, outcomes: list[tuple[str, Outcome]], secrets: list[list[RawSecret]],
                        console: Console) -> None:
    """Relative paths in secrets meant the project: the file itself lives on tmpfs (paths.py)."""
    from bruin_materialize.paths import absolutize

    root = settings.project_root
    for (env, outcome), found in zip(outcomes, secrets):
        locations = {s.name: s.location for s in found}
        for conn in outcome.connections:
            for field in absolutize(conn.type, conn.fields, root):
                if console.document is not None:
                    console.document.add(env, locations.get(conn.name, conn.name), f"details.{field}", NOTE,
                                         "path-absolutized", f"relative path made absolute against the project "
                                         f"root {root}")
                console.info(f"{locations.get(conn.name, conn.name)}: details.{field}: relative path made "
                             f"absolute against the project root {root}")


def _build(settings: Settings, outcomes: list[tuple[str, Outcome]], default_environment: str,
           base: merge.Base | None, origin: Provenance, console: Console) -> Built:
    from bruin_materialize.render import expected_documents, header, render_environments

    vault = [(env, outcome.connections) for env, outcome in outcomes]
    if base is None:
        text = render_environments(vault, default_environment, origin.source, origin.schema)
        expected = expected_documents(vault, default_environment)
        return Built(text, lambda parsed: identical(parsed, expected))
    merged = merge.merge(base, vault, default_environment, settings.prefer)
    _report_collisions(merged.collisions, settings.prefer, base, console)
    text = merge.dump(merged.doc, header(f"{origin.source} and {base.path}", origin.schema))
    names = merge.environment_names([env for env, _ in vault], base)
    return Built(text, lambda parsed: _holds(parsed, merged.written, names, default_environment))


def _report_collisions(collisions: list[merge.Collision], prefer: str | None, base: merge.Base,
                       console: Console) -> None:
    for c in collisions:
        types = show(c.vault_type)
        if c.vault_type != c.base_type:
            types = f"{types} in Vault, {show(c.base_type)} in the base"
        where = f"environment {c.environment!r}: connection {c.name!r} ({types})"
        if prefer is None:
            message = f"is both in Vault and in {base.path}; remove one, or pass --prefer vault|base"
            console.error(f"{where} {message}")
        else:
            message = f"is both in Vault and in {base.path}; {prefer}'s is kept (--prefer {prefer})"
            console.info(f"{where} {message}")
        if console.document is not None:
            console.document.add(c.environment, f"connection {c.name!r} ({types})", None,
                                 ERROR if prefer is None else NOTE, "base-collision", message)
    if collisions and prefer is None:
        n = len(collisions)
        raise MaterializeError(f"{n} connection name{'s' if n > 1 else ''} in both Vault and the base file (listed "
                               "above); nothing was written", ExitCode.INVALID)


def _holds(parsed: Any, written: list[tuple[str, Connection]], environments: list[str], default: str) -> bool:
    """The merged file parses to the base's environments plus Vault's, and holds each Vault value exactly."""
    if not isinstance(parsed, dict) or parsed.get("default_environment") != default:
        return False
    envs = parsed.get("environments")
    if not isinstance(envs, dict) or list(envs) != environments:
        return False
    for env, conn in written:
        entries = ((envs[env] or {}).get("connections") or {}).get(conn.type) or []
        if sum(1 for e in entries if identical(e, conn.fields)) != 1:
            return False
    return True


def _plan(built: Built, against: Any, console: Console) -> int:
    from bruin_materialize.plan import changes

    found = changes(parse(built.text), against)
    lines = [change.line() for change in found]
    if console.document is not None:
        console.document.changes = found
    else:
        for line in lines:
            print(line)
        sys.stdout.flush()
    n = len(lines)
    console.info(f"plan: {n} difference{'s' if n != 1 else ''}" if n else "plan: no changes")
    return ExitCode.CHANGES if lines else ExitCode.OK


def _deliver(settings: Settings, built: Built, bruin: str | None, bruin_env: dict[str, str],
             console: Console) -> int:
    from bruin_materialize import write

    text = built.text
    if settings.command == "check":
        _verify(text, built)
        console.info("check passed: the config would be valid; nothing written")
        return ExitCode.OK
    if settings.command == "render" and settings.output is not None:
        write.write_atomic(settings.output, text)
        if console.document is not None:
            console.document.written = str(settings.output)
        if not write.is_memory_backed(settings.output.parent):
            console.warning(f"{settings.output} is not on tmpfs: the credentials are on disk; delete it after use")
        console.info(f"wrote {settings.output}")
        return ExitCode.OK
    assert settings.runtime_dir is not None
    config_file = _write_private(settings.runtime_dir, text, settings.allow_non_tmpfs)
    if settings.command == "render":
        console.info(f"wrote {config_file}; delete it when done: rm -r {config_file.parent}")
        if console.document is not None:
            console.document.written = str(config_file)
        else:
            _print_path(config_file)
        return ExitCode.OK
    assert bruin is not None
    try:
        return _hand_over(settings, bruin, config_file, bruin_env, console)
    finally:  # bruin exited, or could not start, or we were interrupted before it did
        if settings.exec_mode != "replace" or sys.exc_info()[0] is not None:
            _remove_tree(config_file.parent)


def _hand_over(settings: Settings, bruin: str, config_file: Path, bruin_env: dict[str, str],
               console: Console) -> int:
    argv = handover.bruin_arguments(bruin, config_file, settings.bruin_args)
    if settings.exec_mode == "replace":
        console.debug(f"wrote {config_file}; exec {bruin} run (replace mode: the file stays)")
        handover.exec_bruin(argv, bruin_env)
    console.debug(f"wrote {config_file}; running {bruin} run, removing the file when it exits")
    return handover.run_bruin(argv, bruin_env)


def _print_path(config_file: Path) -> None:
    """The path on stdout, for `export BRUIN_CONFIG_FILE=$(materialize.py render)`. A path nobody
    receives leaves credentials nobody knows to delete: then the file goes, and it is an error."""
    try:
        if sys.stdout is None:  # started with stdout closed
            raise OSError("closed")
        print(config_file, file=sys.stdout, flush=True)
    except (OSError, ValueError):  # EPIPE, EBADF, a closed stream
        _remove_tree(config_file.parent)
        _silence_stdout()
        raise usage_error("stdout is closed or nobody reads it, so the path of the rendered file could not be "
                          "delivered; the file was removed. Read stdout, or pass --output FILE") from None


def _silence_stdout() -> None:
    """Python flushes stdout again at exit, which would fail the same way and print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass


def _write_private(runtime_dir: Path, text: str, allow_non_tmpfs: bool) -> Path:
    """The file in a fresh 0700 directory of its own (bruin writes a .gitignore beside it)."""
    from bruin_materialize import write

    directory = write.make_runtime_dir(runtime_dir, allow_non_tmpfs=allow_non_tmpfs)
    config_file = directory / write.CONFIG_NAME
    try:
        write.write_atomic(config_file, text)
    except BaseException:
        _remove_tree(directory)
        raise
    return config_file


def _check_destination(settings: Settings) -> None:
    """Fail before any Vault call when the file could not, or should not, be written there."""
    from bruin_materialize import write

    if settings.command == "render" and settings.output is not None:
        write.check_destination(settings.output, allow_repo=settings.allow_repo, base=settings.base)
    elif settings.command in ("exec", "render"):
        assert settings.runtime_dir is not None
        write.check_runtime_base(settings.runtime_dir, allow_non_tmpfs=settings.allow_non_tmpfs)
        if settings.command == "render" and not _stdout_open():
            raise usage_error("stdout is closed, so render without --output could not say where it wrote the file; "
                              "pass --output FILE, or read stdout")


def _stdout_open() -> bool:
    """Started with stdout closed (`>&-`), Python sets sys.stdout to None. A pipe whose reader left
    early cannot be told apart yet: _print_path finds that out, and removes the file."""
    try:
        return sys.stdout is not None and os.fstat(sys.stdout.fileno()) is not None
    except (OSError, ValueError):
        return False


def _schema(settings: Settings, bruin: str | None, bruin_env: dict[str, str], console: Console) -> Schema:
    """--schema, else the bruin that will run, else the snapshot in the package (said once: it may be
    older or newer than the bruin that runs the file)."""
    if settings.schema_file is not None:
        return load_schema_file(settings.schema_file)
    if bruin is None:
        try:
            bruin = handover.find_bruin(settings.bruin_bin, settings.search_path)
        except MaterializeError:
            console.info(f"bruin not found and no --schema: checking against {SNAPSHOT_FROM} (the schema "
                         "shipped with bruin-materialize); put bruin on PATH or pass --schema to check against "
                         "the bruin that will run")
            return load_snapshot()
    try:
        return schema_from_bruin(bruin, settings.cache_dir, bruin_env)
    except MaterializeError as exc:
        console.warning(f"{exc.message}; checking against {SNAPSHOT_FROM} (the schema shipped with "
                        "bruin-materialize) instead")
        return load_snapshot()


def _read_secrets(settings: Settings, sources: list[tuple[str, str]],
                  console: Console) -> tuple[list[list[RawSecret]], str]:
    """Every source's secrets, in order, over one Vault session and one login."""
    from bruin_materialize.vault import KV, detect_version

    started = time.monotonic()
    with _session(settings, console) as client:
        version = settings.kv_version or detect_version(client, settings.mount, sources[0][1])
        kv = KV(client, settings.mount, version)
        by_path: dict[str, list[RawSecret]] = {}
        for _, path in sources:
            if path not in by_path:  # two environments may share a path
                by_path[path] = _read_path(settings, kv, path, console)
    shown = ", ".join(f"{settings.mount}/{path}" for path in by_path)
    console.debug(f"read {sum(map(len, by_path.values()))} secrets from {shown} (KV v{version}) in "
                  f"{time.monotonic() - started:.2f}s")
    return [by_path[path] for _, path in sources], f"{shown} (KV v{version})"


@contextlib.contextmanager
def _session(settings: Settings, console: Console) -> Iterator[hvac.Client]:
    """An hvac client holding the token (logged in if need be); closed, and a login token revoked, after."""
    from bruin_materialize import auth
    from bruin_materialize.vault import open_client, wait_until_reachable

    creds = auth.read_credentials(settings.auth)  # a missing credential file is exit 2, before the network
    if settings.tls.skip_verify and settings.address.scheme == "https":
        console.warning("TLS verification is disabled (VAULT_SKIP_VERIFY): anyone on the network path could "
                        "read these secrets")
    client = open_client(settings, note=console.debug)
    token: str | None = None
    try:
        if settings.wait > 0:
            wait_until_reachable(client, settings.wait, console.info)
        client.token = auth.obtain_token(client, creds)
        token = client.token if settings.auth.logs_in else None
        yield client
    finally:
        client.adapter.close()
        if token is not None and not _revoke(settings, token):
            console.warning("could not revoke the login token; it stays valid until its TTL ends")


def _revoke(settings: Settings, token: str) -> bool:
    """Revoke our login token on a session of its own: the reading one may have been aborted by a signal."""
    from bruin_materialize import auth
    from bruin_materialize.adapter import RetryPolicy
    from bruin_materialize.vault import open_client

    policy = RetryPolicy(min(settings.timeout, 5.0), 1, settings.retry_wait_min, settings.retry_wait_max)
    client = open_client(settings, policy=policy, token=token)
    try:
        return auth.revoke(client)
    finally:
        client.adapter.close()


def _read_path(settings: Settings, kv: KV, path: str, console: Console) -> list[RawSecret]:
    listing = kv.list_secrets(path, recursive=settings.recursive)
    for folder in listing.skipped_folders:
        console.warning(f"{settings.mount}/{path}/{folder}: subfolder not read; pass --recursive to "
                        "read its secrets as connections named FOLDER/NAME")
    return kv.read_all(path, listing.names, concurrency=settings.concurrency)


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


def _verify(text: str, built: Built) -> None:
    """Parse the rendered text back with an independent YAML 1.2 parser: same data, same types."""
    if not built.reads_back(parse(text)):
        raise MaterializeError("the rendered file does not parse back to the secrets' values (a bug; please "
                               "report it, without the secrets)", ExitCode.INTERNAL)


def _remove_tree(directory: Path) -> None:
    import shutil

    shutil.rmtree(directory, ignore_errors=True)
