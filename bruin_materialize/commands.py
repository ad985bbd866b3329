"""The five commands, each a short story over the shared steps (pipeline.py).

Each checks what it can before the first Vault call (preflight.py, environments.py), then builds
the file and does its own thing with it: `check` parses it back, `render` writes it, `exec` writes
it privately and runs bruin on it, `plan` compares it; `import` goes the other way (importer.py).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from bruin_materialize import handover, pipeline, preflight, write
from bruin_materialize.console import Console, Progress, flush_stdout, silence_stdout
from bruin_materialize.environments import layout, load_against
from bruin_materialize.errors import ExitCode, usage_error
from bruin_materialize.settings import Settings
from bruin_materialize.validate import Outcome


def check(settings: Settings, environ: Mapping[str, str], console: Console) -> int:
    built = pipeline.build(settings, layout(settings, console), console, bruin=None,
                           bruin_env=handover.bruin_environment(environ))
    pipeline.verify(built)
    console.info("check passed: the config would be valid; nothing written")
    return ExitCode.OK


def render(settings: Settings, environ: Mapping[str, str], console: Console) -> int:
    preflight.check_destination(settings)
    with contextlib.ExitStack() as hold:  # leases for references: left to their TTL once the file is written
        built = pipeline.build(settings, layout(settings, console), console, bruin=None,
                               bruin_env=handover.bruin_environment(environ), hold=hold)
        if settings.output is None:
            return _render_private(settings, built.text, console)
        write.write_atomic(settings.output, built.text)
        if console.document is not None:
            console.document.written = str(settings.output)
        if not write.is_memory_backed(settings.output.parent):
            console.warning(f"{settings.output} is not on tmpfs: the credentials are on disk; delete it after use")
        console.info(f"wrote {settings.output}")
    return ExitCode.OK


def plan(settings: Settings, environ: Mapping[str, str], console: Console) -> int:
    from bruin_materialize.plan import changes
    from bruin_materialize.references import without_dynamic
    from bruin_materialize.render import read_sources
    from bruin_materialize.yamltext import parse

    files = layout(settings, console)
    against, against_sources = load_against(settings, files.base)  # read before the first Vault call
    built = pipeline.build(settings, files, console, bruin=None, bruin_env=handover.bruin_environment(environ))
    found = without_dynamic(changes(parse(built.text), against, read_sources(built.text), against_sources),
                            built.dynamic)
    if console.document is not None:
        console.document.changes = found
    else:
        for change in found:
            print(change.line())
        flush_stdout()
    n = len(found)
    console.info(f"plan: {n} difference{'s' if n != 1 else ''}" if n else "plan: no changes")
    return ExitCode.CHANGES if found else ExitCode.OK


def exec_(settings: Settings, environ: Mapping[str, str], console: Console) -> int:
    bruin = handover.find_bruin(settings.bruin_bin, settings.search_path)
    if handover.has_flag(settings.bruin_args, "config-file"):
        raise usage_error("--config-file is set by materialize; remove it from the bruin arguments")
    if "BRUIN_CONFIG_FILE_CONTENT" in environ:
        console.warning("BRUIN_CONFIG_FILE_CONTENT is set; it is not passed to bruin, which would use it "
                        "instead of the rendered file")
    preflight.check_destination(settings)
    bruin_env = handover.bruin_environment(environ)
    config_file: Path | None = None
    try:
        with contextlib.ExitStack() as hold:  # leases for references: revoked as soon as bruin exits
            built = pipeline.build(settings, layout(settings, console), console, bruin=bruin, bruin_env=bruin_env,
                                   hold=hold)
            config_file = _write_private(settings, built.text)
            argv = handover.bruin_arguments(bruin, config_file, settings.bruin_args)
            if settings.exec_mode == "replace":
                if built.leases is not None:
                    built.leases.leave()  # nothing of ours runs after bruin to renew or revoke them
                console.debug(f"wrote {config_file}; exec {bruin} run (replace mode: the file stays)")
                handover.exec_bruin(argv, bruin_env)
            console.debug(f"wrote {config_file}; running {bruin} run, removing the file when it exits")
            return handover.run_bruin(argv, bruin_env)
    finally:  # bruin exited, or could not start, or we were interrupted before it did; leases revoked first
        if config_file is not None and (settings.exec_mode != "replace" or sys.exc_info()[0] is not None):
            shutil.rmtree(config_file.parent, ignore_errors=True)


def import_(settings: Settings, environ: Mapping[str, str], console: Console) -> int:
    """render's inverse: FILE's connections, checked as `check` checks secrets, into Vault (importer.py)."""
    from bruin_materialize import importer  # only import reads YAML the way bruin does
    from bruin_materialize.schema import choose
    from bruin_materialize.session import open_kv, session

    job = settings.importing
    assert job is not None
    doc = importer.load(job.file)  # every local file and name is checked before the first Vault call
    sources = importer.sources(doc, settings)
    for env in importer.not_imported(doc, sources):
        console.info(f"{job.file}: environment {importer.shown(env)} not imported (pass --environment-path "
                     f"{importer.shown(env)}=SUBPATH to import it)")
    found = choose(settings, None, handover.bruin_environment(environ), console.info, console.warning)
    outcomes, entries = importer.check(doc, sources, found, settings)
    pipeline.report_all(outcomes, console)
    with session(settings, console) as client:
        kv = open_kv(settings, client, sources[0][1])
        if kv.version == 2:  # numbers KV v2 would change; reported before anything is read or written
            pipeline.report_all([("", Outcome([], importer.kv2_problems(entries, found)))], console)
        shown = ", ".join(dict.fromkeys("/".join(p for p in (settings.mount, path) if p) for _, path in sources))
        with Progress(console, "read", len(entries), f"from {shown}") as progress:
            states = importer.current_states(kv, entries, settings.concurrency, progress.tick)
        if job.dry_run:
            return importer.show_plan(entries, states, job.overwrite, kv.version, console)
        with Progress(console, "wrote", len(entries), f"to {shown}") as progress:
            results = importer.write_all(kv, entries, states, job.overwrite, settings.concurrency, progress.tick)
    return importer.report(entries, states, results, kv.version, f"{shown} (KV v{kv.version})", console)


def _render_private(settings: Settings, text: str, console: Console) -> int:
    """render without --output: a fresh private file on tmpfs, its path on stdout."""
    config_file = _write_private(settings, text)
    console.info(f"wrote {config_file}; delete it when done: rm -r {config_file.parent}")
    if console.document is not None:
        console.document.written = str(config_file)
    else:
        _print_path(config_file)
    return ExitCode.OK


def _write_private(settings: Settings, text: str) -> Path:
    """The file in a fresh 0700 directory of its own (bruin writes a .gitignore beside it)."""
    directory = write.make_runtime_dir(settings.runtime_dir, allow_non_tmpfs=settings.allow_non_tmpfs)
    config_file = directory / write.CONFIG_NAME
    try:
        write.write_atomic(config_file, text)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return config_file


def _print_path(config_file: Path) -> None:
    """The path on stdout, for `export BRUIN_CONFIG_FILE=$(materialize.py render)`. A path nobody
    receives leaves credentials nobody knows to delete: then the file goes, and it is an error."""
    try:
        if sys.stdout is None:  # started with stdout closed
            raise OSError("closed")
        print(config_file, file=sys.stdout, flush=True)
    except (OSError, ValueError):  # EPIPE, EBADF, a closed stream
        shutil.rmtree(config_file.parent, ignore_errors=True)
        silence_stdout()
        raise usage_error("stdout is closed or nobody reads it, so the path of the rendered file could not be "
                          "delivered; the file was removed. Read stdout, or pass --output FILE") from None


COMMANDS = {"check": check, "render": render, "plan": plan, "exec": exec_, "import": import_}
