"""Which environments the file will have, where each one's connections are read from, and the base
file they are merged into: all decided from local files and settings, before the first Vault call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from bruin_materialize import merge
from bruin_materialize.console import Console
from bruin_materialize.errors import usage_error
from bruin_materialize.settings import Settings
from bruin_materialize.yamltext import load_file, parse, show


class Layout(NamedTuple):
    base: merge.Base | None  # the file the connections are merged into, loaded
    # (environment, path under the mount) to read, in order; an environment once per path it reads
    sources: list[tuple[str, str]]
    default_environment: str  # the file's default_environment


def layout(settings: Settings, console: Console) -> Layout:
    base = _load_base(settings.base, console) if settings.base is not None else None
    sources = _vault_sources(settings, base)
    default = _default_environment(settings, sources, base)
    _check_environments(settings, sources, base, default)
    return Layout(base, sources, default)


def _vault_sources(settings: Settings, base: merge.Base | None) -> list[tuple[str, str]]:
    """(environment, path) to read. Without environment paths, every path goes into the environment
    bruin will select: its arguments or --environment, else the base's default_environment, else "default"."""
    if settings.environment_paths:
        return list(settings.environment_paths)
    environment = settings.selected_environment or (base.default_environment if base else None) or "default"
    return [(environment, path) for path in settings.paths]


def _default_environment(settings: Settings, sources: list[tuple[str, str]], base: merge.Base | None) -> str:
    if settings.default_environment:
        return settings.default_environment
    if base is not None and base.default_environment:
        return base.default_environment
    names = list(dict.fromkeys(env for env, _ in sources))
    return settings.selected_environment if settings.selected_environment in names else names[0]


def _check_environments(settings: Settings, sources: list[tuple[str, str]], base: merge.Base | None,
                        default_environment: str) -> None:
    names = merge.environment_names(list(dict.fromkeys(env for env, _ in sources)), base)
    shown = ", ".join(repr(n) for n in names)
    if default_environment not in names:
        raise usage_error(f"the default environment {default_environment!r} would not be in the file, which "
                          f"has {shown}; bruin could not load it")
    selected = settings.selected_environment
    if settings.command == "exec" and selected is not None and selected not in names:
        raise usage_error(f"bruin's arguments select environment {selected!r}, which the file would not have (it "
                          f"has {shown}); read it with --environment-path {selected}=SUBPATH")


def _load_base(path: Path, console: Console) -> merge.Base:
    from bruin_materialize.paths import absolutize_document

    base = merge.load_base(path)
    for rw in absolutize_document(base.doc, path.parent):
        console.note(rw.environment, f"{path}: {show(rw.environment)}/{show(rw.name)} ({show(rw.conn_type)})",
                     show(rw.field), "path-absolutized",
                     f"relative path made absolute against {path.parent}, the base file's directory")
    console.debug(f"merging into {path} (environments: {', '.join(map(show, base.environments)) or 'none'})")
    return base


def load_against(settings: Settings, base: merge.Base | None) -> tuple[Any, dict[str, dict[str, str]] | None]:
    """The file `plan` compares with, parsed as bruin would see it (its relative paths resolved), and where
    its connections were read from when this tool rendered it (render.read_sources), else None."""
    from bruin_materialize.paths import absolutize_document

    path = settings.against or (base.path if base is not None else None)
    if path is None:
        raise usage_error("plan needs a file to compare with: pass --against FILE or --base FILE (or keep a "
                          ".bruin.yml at the project root)")
    doc, sources = load_file(path, load=lambda text: (parse(text), _sources(text, path)))
    merge.check_config(doc, path, "the file to compare with")  # a wrong file is misconfiguration, not drift
    absolutize_document(doc, path.parent)
    return doc, sources


def _sources(text: str, path: Path) -> dict[str, dict[str, str]] | None:
    from bruin_materialize.render import SOURCES_PREFIX, read_sources

    try:
        return read_sources(text)
    except ValueError:
        raise usage_error(f"{path}: its {SOURCES_PREFIX[2:-2]!r} line is damaged; render the file again, or "
                          "remove the line") from None
