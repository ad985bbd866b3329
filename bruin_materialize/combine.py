"""Several paths into one environment: its secrets in path order, each name once, and the rule for a
name found in two of its paths (a shared path and a team's, say): an error, or the later path's wins.

`combine` is pure; `report` says what it found and stops the run (exit 4) when that is an error.
Names are compared as Vault lists them, before any secret is checked: a collision is a fact about
the paths, whatever the secrets hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from bruin_materialize.console import Console
from bruin_materialize.errors import ExitCode, MaterializeError
from bruin_materialize.settings import OnCollision
from bruin_materialize.validate import ERROR, NOTE
from bruin_materialize.vault import RawSecret
from bruin_materialize.yamltext import show

CODE = "path-collision"  # the findings' code in --format json


class Collision(NamedTuple):
    environment: str
    name: str
    earlier: str  # the secret (mount/path/name) in the path listed first
    later: str  # the one in the path listed after it


class Environment(NamedTuple):
    name: str
    secrets: list[RawSecret]  # each connection name once, in the order first read
    sources: dict[str, str]  # connection name -> the mount/path its secret was read from
    collisions: list[Collision]


def combine(sources: Sequence[tuple[str, str]], secrets: Sequence[list[RawSecret]], mount: str) -> list[Environment]:
    """Each environment (in the order first named) with its paths' secrets; a name read again replaces
    the earlier secret, in its place, and is a collision."""
    found: dict[str, Environment] = {}
    for (environment, path), read in zip(sources, secrets, strict=True):
        env = found.setdefault(environment, Environment(environment, [], {}, []))
        source = "/".join(p for p in (mount, path) if p)
        kept = {secret.name: index for index, secret in enumerate(env.secrets)}
        for secret in read:
            index = kept.get(secret.name)
            if index is None:
                kept[secret.name] = len(env.secrets)
                env.secrets.append(secret)
            else:
                env.collisions.append(Collision(environment, secret.name, env.secrets[index].location,
                                                secret.location))
                env.secrets[index] = secret
            env.sources[secret.name] = source
    return list(found.values())


def report(environments: list[Environment], on_collision: OnCollision, console: Console) -> None:
    """One line per collision: an error (then exit 4, before anything is written), or with `last` a
    note naming the secret that won and the one it replaced."""
    collisions = [c for env in environments for c in env.collisions]
    for c in collisions:
        where = f"environment {_quoted(c.environment)}: connection {_quoted(c.name)}"
        if on_collision == "error":
            message = (f"is in two paths, at {c.earlier} and at {c.later}; remove one, or pass --on-collision "
                       "last to let the later path win")
        else:
            message = f"is in two paths: {c.later} replaces {c.earlier} (--on-collision last)"
        console.finding(c.environment, f"connection {_quoted(c.name)}", ERROR if on_collision == "error" else NOTE,
                        CODE, where, message)
    if collisions and on_collision == "error":
        n = len(collisions)
        raise MaterializeError(f"{n} connection name{'s' if n > 1 else ''} in two paths of one environment "
                               "(listed above); nothing was written", ExitCode.INVALID)


def _quoted(name: str) -> str:
    shown = show(name)
    return f"'{name}'" if shown == name else shown
