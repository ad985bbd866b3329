"""The steps every command but import shares: read every secret, check them all, build the file.

settings → layout (environments.py, local only) → schema → read (session.py) → validate (pure) →
relative paths made absolute → the file's text, from the template (render.py) or merged into the
base file (merge.py). Each command (commands.py) then does its own thing with the text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from bruin_materialize import merge, schema
from bruin_materialize.console import Console
from bruin_materialize.environments import Layout
from bruin_materialize.errors import ExitCode, MaterializeError
from bruin_materialize.plan import identical
from bruin_materialize.session import read_secrets
from bruin_materialize.settings import Settings
from bruin_materialize.validate import ERROR, NOTE, Checked, Connection, Options, Outcome, check_secret, combine
from bruin_materialize.vault import RawSecret
from bruin_materialize.yamltext import parse, show


class Built(NamedTuple):
    text: str  # the file
    reads_back: Callable[[Any], bool]  # does a parse of the text hold what was read? (check)


def build(settings: Settings, layout: Layout, console: Console, *, bruin: str | None,
          bruin_env: Mapping[str, str]) -> Built:
    """The file for the layout's environments, from every secret read and checked; exit 4 on any error."""
    checked_against = schema.choose(settings, bruin, bruin_env, console.info, console.warning)
    if console.document is not None:
        console.document.schema = checked_against.describe()
    # exec knows bruin's environment exactly; render/check write for a bruin that may run elsewhere.
    env_names = frozenset(bruin_env) if settings.command == "exec" else None
    options = Options(settings.strict, settings.expand_env, env_names)
    # Each secret is checked on its reading thread as it arrives, while others are on the wire (the
    # reads wait for Vault more than they use the CPU); its location (mount/path/name) is unique.
    checked: dict[str, Checked] = {}

    def check(secret: RawSecret) -> None:
        checked[secret.location] = check_secret(secret, checked_against, options)

    secrets, source = read_secrets(settings, layout.sources, console, each=check)
    # Then once per environment: a name is unique within its environment only.
    outcomes = [(env, combine(checked[s.location] for s in found))
                for (env, _), found in zip(layout.sources, secrets, strict=True)]
    if console.document is not None:
        console.document.add_outcomes(outcomes)
    report_all(outcomes, console)
    _absolutize_secrets(settings, outcomes, secrets, console)
    built = _text(settings, outcomes, layout, f"{source}", checked_against.describe(), console)
    for env, outcome in outcomes:
        console.info(_summary(outcome, env))
    return built


def report_all(outcomes: list[tuple[str, Outcome]], console: Console) -> None:
    for _, outcome in outcomes:
        console.report(outcome)
    n = sum(len(outcome.errors) for _, outcome in outcomes)
    if n:
        raise MaterializeError(f"{n} invalid secret field{'s' if n > 1 else ''} (listed above); nothing was "
                               "written", ExitCode.INVALID)


def verify(built: Built) -> None:
    """Parse the rendered text back (ruamel.yaml's YAML 1.2 loader) and compare: same data, same types.
    Independent of the template, which writes JSON literals through jinja2; for a merged base file it
    is ruamel reading what ruamel wrote, and tests/test_yaml_v3.py reads both with bruin's own parser."""
    if not built.reads_back(parse(built.text)):
        raise MaterializeError("the rendered file does not parse back to the secrets' values (a bug; please "
                               "report it, without the secrets)", ExitCode.INTERNAL)


def _absolutize_secrets(settings: Settings, outcomes: list[tuple[str, Outcome]], secrets: list[list[RawSecret]],
                        console: Console) -> None:
    """Relative paths in secrets meant the project: the file itself lives on tmpfs (paths.py)."""
    from bruin_materialize.paths import absolutize

    root = settings.project_root
    for (env, outcome), found in zip(outcomes, secrets, strict=True):
        locations = {s.name: s.location for s in found}
        for conn in outcome.connections:
            for field in absolutize(conn.type, conn.fields, root):
                console.note(env, locations.get(conn.name, conn.name), f"details.{field}", "path-absolutized",
                             f"relative path made absolute against the project root {root}")


def _text(settings: Settings, outcomes: list[tuple[str, Outcome]], layout: Layout, source: str,
          schema_used: str, console: Console) -> Built:
    from bruin_materialize.render import expected_documents, header, render_environments

    vault = [(env, outcome.connections) for env, outcome in outcomes]
    default, base = layout.default_environment, layout.base
    if base is None:
        text = render_environments(vault, default, source, schema_used)
        expected = expected_documents(vault, default)
        return Built(text, lambda parsed: identical(parsed, expected))
    merged = merge.merge(base, vault, default, settings.prefer)
    _report_collisions(merged.collisions, settings.prefer, base, console)
    text = merge.dump(merged.doc, header(f"{source} and {base.path}", schema_used))
    names = merge.environment_names([env for env, _ in vault], base)
    return Built(text, lambda parsed: _holds(parsed, merged.written, names, default))


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


def _summary(outcome: Outcome, environment: str) -> str:
    counts: dict[str, int] = {}
    for conn in outcome.connections:
        counts[conn.type] = counts.get(conn.type, 0) + 1
    by_type = ", ".join(f"{t} {n}" for t, n in counts.items())
    n = len(outcome.connections)
    return f"{n} connection{'s' if n != 1 else ''} for environment {environment!r}" + (f": {by_type}" * bool(by_type))
