"""The steps every command but import shares: read every secret, check them all, build the file.

settings → layout (environments.py, local only) → schema → read (session.py) → validate (pure) →
relative paths made absolute → the file's text, from the template (render.py) or merged into the
base file (merge.py). Each command (commands.py) then does its own thing with the text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from bruin_materialize import combine, merge, schema
from bruin_materialize.console import Console
from bruin_materialize.environments import Layout
from bruin_materialize.errors import ExitCode, MaterializeError
from bruin_materialize.leases import Held, check_readable
from bruin_materialize.plan import identical
from bruin_materialize.resolve import resolve_references
from bruin_materialize.session import read_secrets, session
from bruin_materialize.settings import PROJECT_ROOT, Settings
from bruin_materialize.validate import ERROR, NOTE, Checked, Connection, Options, Outcome, check_secret
from bruin_materialize.validate import combine as combine_checked
from bruin_materialize.vault import RawSecret
from bruin_materialize.yamltext import parse, show


class Built(NamedTuple):
    text: str  # the file
    reads_back: Callable[[Any], bool]  # does a parse of the text hold what was read? (check)
    leases: Held | None = None  # leases the file's credentials hang on, held on the caller's stack
    dynamic: frozenset[tuple[str, str, str]] = frozenset()  # (environment, connection, field) read per run


def build(settings: Settings, layout: Layout, console: Console, *, bruin: str | None,
          bruin_env: Mapping[str, str], hold: contextlib.ExitStack | None = None) -> Built:
    """The file for the layout's environments, from every secret read and checked; exit 4 on any error.

    Leases created for references (exec, render) are held on `hold` with the session they hang on,
    so that they outlive the build and end when the caller is done (leases.py)."""
    checked_against = schema.choose(settings, bruin, bruin_env, console.info, console.warning)
    if console.document is not None:
        console.document.schema = checked_against.describe()
    # exec knows bruin's environment exactly; render/check write for a bruin that may run elsewhere.
    env_names = frozenset(bruin_env) if settings.command == "exec" else None
    options = Options(settings.strict, settings.expand_env, env_names)
    # Each secret is checked on its reading thread as it arrives, while others are on the wire (the
    # reads wait for Vault more than they use the CPU); its location (mount/path/name) is unique.
    arrived: dict[str, tuple[RawSecret, Checked]] = {}

    def check(secret: RawSecret) -> None:
        arrived[secret.location] = (secret, check_secret(secret, checked_against, options))

    def checked(secret: RawSecret) -> Checked:
        """As it arrived; a secret whose references were resolved since is checked as it is now."""
        first, result = arrived.get(secret.location, (None, None))
        return result if first is secret and result is not None else check_secret(secret, checked_against, options)

    held = Held(settings, console)
    environments, source, dynamic = _read(settings, layout, checked_against, console, held, hold, check)
    # Then once per environment: a name is unique within its environment only.
    outcomes = [(env.name, combine_checked(checked(s) for s in env.secrets)) for env in environments]
    sources = {env.name: env.sources for env in environments}
    if console.document is not None:
        console.document.add_outcomes(outcomes, sources)
    report_all(outcomes, console)
    _absolutize_secrets(settings, outcomes, [env.secrets for env in environments], console)
    built, written = _text(settings, outcomes, layout, f"{source}", checked_against.describe(), console, sources)
    for env, outcome in outcomes:
        console.info(_summary([conn for where, conn in written if where == env], len(outcome.connections), env))
    return built._replace(leases=held if held.leases else None, dynamic=dynamic)


def _read(settings: Settings, layout: Layout, against: schema.Schema, console: Console, held: Held,
          hold: contextlib.ExitStack | None, each: Callable[[RawSecret], None],
          ) -> tuple[list[combine.Environment], str, frozenset[tuple[str, str, str]]]:
    """Every environment's secrets (its paths combined, a collision stopping the run before anything is
    leased), their references resolved, over one session; closed at the end unless leases were created:
    then the session and the leases go onto `hold` (the leases end first, then the login)."""
    with contextlib.ExitStack() as reading:
        client = reading.enter_context(session(settings, console, keep_login=held.keeps_login))
        read, source = read_secrets(settings, layout.sources, console, client, each)
        environments = combine.combine(layout.sources, read, settings.mount)  # an environment's paths, in order
        combine.report(environments, settings.on_collision, console)
        secrets, dynamic = resolve_references(settings, [env.name for env in environments],
                                              [env.secrets for env in environments], against, console,
                                              lambda paths: reading.enter_context(held).read_all(client, paths),
                                              lambda paths: check_readable(client, paths),
                                              _kept_by_base(settings, layout, environments))
        if held.leases and hold is not None:
            hold.enter_context(reading.pop_all())
    return [env._replace(secrets=s) for env, s in zip(environments, secrets, strict=True)], source, dynamic


def _kept_by_base(settings: Settings, layout: Layout,
                  environments: list[combine.Environment]) -> frozenset[tuple[str, str]]:
    """(environment, location) of each secret whose connection the base file keeps (--prefer base): it
    is not written, so its references are not read (no credential is created for a file that drops it)."""
    if layout.base is None or settings.prefer != "base":
        return frozenset()
    kept = {env.name: merge.kept_names(layout.base, env.name) for env in environments}
    return frozenset((env.name, s.location) for env in environments for s in env.secrets if s.name in kept[env.name])


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
    made_absolute = 0
    for (env, outcome), found in zip(outcomes, secrets, strict=True):
        locations = {s.name: s.location for s in found}
        for conn in outcome.connections:
            for field in absolutize(conn.type, conn.fields, root):
                made_absolute += 1
                console.note(env, locations.get(conn.name, conn.name), f"details.{field}", "path-absolutized",
                             f"relative path made absolute against the project root {root}")
    if made_absolute and root == Path(root.anchor):
        # An init container without a checkout runs in /: the project is in another container.
        console.warning(f"{made_absolute} relative path{'s' if made_absolute > 1 else ''} in the secrets made "
                        f"absolute against the project root {root}, the filesystem's root; is that the project? Set "
                        f"{PROJECT_ROOT.variable} to the project's path where bruin runs (e.g. /workspace)")


def _text(settings: Settings, outcomes: list[tuple[str, Outcome]], layout: Layout, source: str,
          schema_used: str, console: Console,
          sources: Mapping[str, Mapping[str, str]]) -> tuple[Built, list[tuple[str, Connection]]]:
    """The file, and the Vault connections it holds (with --prefer base, not every one read)."""
    from bruin_materialize.render import expected_documents, header, render_environments

    vault = [(env, outcome.connections) for env, outcome in outcomes]
    default, base = layout.default_environment, layout.base
    if base is None:
        written = [(env, conn) for env, connections in vault for conn in connections]
        text = render_environments(vault, default, source, schema_used) + _trailer(outcomes, written, sources)
        expected = expected_documents(vault, default)
        return Built(text, lambda parsed: identical(parsed, expected)), written
    merged = merge.merge(base, vault, default, settings.prefer)
    _report_collisions(merged.collisions, settings.prefer, base, console)
    text = (merge.dump(merged.doc, header(f"{source} and {base.path}", schema_used))
            + _trailer(outcomes, merged.written, sources))
    names = merge.environment_names([env for env, _ in vault], base)
    return Built(text, lambda parsed: _holds(parsed, merged.written, names, default)), merged.written


def _trailer(outcomes: list[tuple[str, Outcome]], written: list[tuple[str, Connection]],
             sources: Mapping[str, Mapping[str, str]]) -> str:
    """The file's last line: where each connection it holds from Vault came from (plan tells a moved
    connection by it); with --prefer base, a name the base file kept is not Vault's."""
    from bruin_materialize.render import sources_comment

    held: dict[str, dict[str, str]] = {env: {} for env, _ in outcomes}
    for env, conn in written:
        held[env][conn.name] = sources[env][conn.name]
    return sources_comment(held)


def _report_collisions(collisions: list[merge.Collision], prefer: str | None, base: merge.Base,
                       console: Console) -> None:
    for c in collisions:
        types = show(c.vault_type)
        if c.vault_type != c.base_type:
            types = f"{types} in Vault, {show(c.base_type)} in the base"
        where = f"environment {c.environment!r}: connection {c.name!r} ({types})"
        if prefer is None:
            message = f"is both in Vault and in {base.path}; remove one, or pass --prefer vault|base"
        else:
            message = f"is both in Vault and in {base.path}; {prefer}'s is kept (--prefer {prefer})"
        console.finding(c.environment, f"connection {c.name!r} ({types})", ERROR if prefer is None else NOTE,
                        "base-collision", where, message)
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


def _summary(written: list[Connection], read: int, environment: str) -> str:
    """What the file holds from Vault for one environment; and how many read were left out for the base's."""
    counts: dict[str, int] = {}
    for conn in written:
        counts[conn.type] = counts.get(conn.type, 0) + 1
    by_type = ", ".join(f"{t} {n}" for t, n in counts.items())
    n = len(written)
    line = f"{n} connection{'s' if n != 1 else ''} for environment {environment!r}" + (f": {by_type}" * bool(by_type))
    kept = read - n
    return line + (f" ({kept} more in Vault, not written: the base file's kept, --prefer base)" if kept else "")
