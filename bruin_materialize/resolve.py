"""The step between reading the secrets and validating them: each `{"$vault": PATH, "field": KEY}`
(references.py, pure) replaced by what Vault answers there (leases.py), or by a stand-in where
nothing may be created (check, plan). Every finding is reported like validation's, exit 4.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bruin_materialize import references
from bruin_materialize.console import Console
from bruin_materialize.errors import ExitCode, MaterializeError
from bruin_materialize.leases import Readable, describe_readable
from bruin_materialize.schema import Schema
from bruin_materialize.settings import Settings
from bruin_materialize.validate import Outcome, Problem
from bruin_materialize.vault import RawSecret

Reads = Callable[[list[str]], dict[str, dict[str, Any]]]


def resolve_references(settings: Settings, envs: list[str], secrets: list[list[RawSecret]], against: Schema,
                       console: Console, lease: Reads, readable: Callable[[list[str]], list[Readable]],
                       dropped: frozenset[tuple[str, str]] = frozenset(),
                       ) -> tuple[list[list[RawSecret]], frozenset[tuple[str, str, str]]]:
    """Each `{"$vault": PATH, "field": KEY}` in the secrets of `envs` replaced before validation: by
    the value `lease` read (exec and render, one read per path) or, where nothing may be created
    (check, plan) or the file will not hold the secret (`dropped`: (environment, location)), by a
    stand-in; and (environment, connection, field) of each, for plan."""
    found = [references.find(s) for s in secrets]
    if not any(f.references or f.problems for f in found):
        return secrets, frozenset()
    _fail_on([(env, f.problems) for env, f in zip(envs, found, strict=True)], console)
    creates = settings.command in ("exec", "render")
    # What is read: with stand-ins for the dropped secrets' references, each environment's `Found`.
    read = [f._replace(references=[ref for ref in f.references if (env, ref.location) not in dropped])
            for env, f in zip(envs, found, strict=True)]
    paths = list(dict.fromkeys(p for f in read for p in f.paths()))
    answers: dict[str, dict[str, Any]] = {}
    if creates:
        answers = lease(paths) if paths else {}
        _fail_on([(env, references.value_problems(f, answers)) for env, f in zip(envs, read, strict=True)], console)
    elif settings.command == "check":
        _report_readable(readable(paths), console)

    def value_of(env: str) -> Callable[[Any, references.Reference], Any]:
        def value(data: Any, ref: references.Reference) -> Any:
            if creates and (env, ref.location) not in dropped:
                return answers[ref.path][ref.key]
            return references.placeholder(against, data, ref)
        return value

    _note_dynamic(settings, envs, found, dropped, console)
    dynamic = frozenset((env, s.name, references.compared_field(ref)) for env, f, found_secrets
                        in zip(envs, found, secrets, strict=True) for s in found_secrets
                        for ref in f.references if ref.location == s.location)
    return [references.resolve(s, f, value_of(env)) for env, s, f in zip(envs, secrets, found, strict=True)], dynamic


def _fail_on(problems: list[tuple[str, list[Problem]]], console: Console) -> None:
    """Reference problems: reported as every other finding; exit 4 before anything is built."""
    outcomes = [(env, Outcome([], found)) for env, found in problems]
    if any(found for _, found in problems):
        if console.document is not None:
            console.document.add_outcomes(outcomes)
        for _, outcome in outcomes:
            console.report(outcome)
        n = sum(len(found) for _, found in problems)
        raise MaterializeError(f"{n} invalid secret field{'s' if n > 1 else ''} (listed above); nothing was "
                               "written", ExitCode.INVALID)


def _report_readable(found: list[Readable], console: Console) -> None:
    for readable in found:
        what = ("read anew at each render or exec, with a lease where the engine grants one" if readable.dynamic
                else "a stored value, no lease")
        console.info(f"{readable.path}: readable ({readable.engine} engine): {what}")
        if console.document is not None:
            console.document.references.append(describe_readable(readable))


def _note_dynamic(settings: Settings, envs: list[str], found: list[references.Found],
                  dropped: frozenset[tuple[str, str]], console: Console) -> None:
    for env, f in zip(envs, found, strict=True):
        for ref in f.references:
            if (env, ref.location) in dropped:
                console.debug(f"{ref.location}: {ref.field} not read: the base file's connection is kept "
                              "(--prefer base)")
            elif settings.command in ("check", "plan"):
                console.note(env, ref.location, ref.field, "reference-dynamic",
                             f"dynamic: read from {ref.describe().partition(' from ')[2]} at each render or exec")
            else:
                console.debug(f"{ref.location}: {ref.describe()}")
