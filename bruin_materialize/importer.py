"""`import FILE`: a bruin config's connections into Vault, one secret each; render's inverse.

FILE is read as bruin reads it (yaml.v3 into bruin's typed fields: bruinread.py) and every
connection is checked as `check` checks a secret (validate.py), with three checks of its own: the
name must be a path Vault stores as it is, a relative path must be resolved on purpose (bruin
resolved it against FILE's directory), and a `${NAME}` is kept as written, with a note. Only then is
Vault asked anything (and, on KV v2, numbers it would not give back as written are checked:
`as_stored`); nothing is written unless all passed.

Nothing existing is replaced by accident: each secret is read first, one that differs is left alone
without --overwrite, and on KV v2 every write is a check-and-set against the version read (0: the
secret must not exist), so a concurrent writer's secret is never replaced. KV v1 has no
check-and-set: there, a secret written between the read and the write would be replaced.
"""

from __future__ import annotations

import copy
import decimal
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import hvac
import hvac.exceptions

from bruin_materialize import references
from bruin_materialize.bruinread import Unreadable, decode, key_text
from bruin_materialize.console import Console, flush_stdout
from bruin_materialize.errors import ExitCode, usage_error, vault_error
from bruin_materialize.paths import absolutize
from bruin_materialize.plan import changed_fields, identical
from bruin_materialize.schema import Schema
from bruin_materialize.settings import ImportJob, Settings
from bruin_materialize.validate import (
    ERROR,
    NOTE,
    Connection,
    Options,
    Outcome,
    Problem,
    leaves,
    name_problems,
    validate,
)
from bruin_materialize.vault import KV, RawSecret, call, dig, is_deleted_version, parallel, secret_data, unexpected
from bruin_materialize.yamlnodes import Node
from bruin_materialize.yamltext import read_yaml, show

CREATE, UPDATE, SAME, LEAVE, RACED = "create", "update", "same", "leave", "raced"
_ENV_REF = re.compile(r"\$\{[^}]+\}")  # what bruin expands on load (validate.py refuses it in secrets)


class Entry(NamedTuple):
    """One connection of FILE, checked, and where its secret goes."""

    environment: str
    path: str  # the folder under the mount
    conn: Connection
    location: str  # mount/path/name, for messages

    @property
    def secret(self) -> dict[str, Any]:
        details = {k: v for k, v in self.conn.fields.items() if k != "name"}
        return {"type": self.conn.type, "details": details}


class State(NamedTuple):
    """A secret as it is in Vault before the import."""

    exists: bool
    data: Any = None  # its payload; None when absent, or when its current KV v2 version is deleted
    version: int = 0  # KV v2: the current version, the check-and-set value for replacing it


def shown(name: str) -> str:
    """plan.show, and JSON-quoted when not printable: names from FILE are not checked yet, and a control
    character (an ANSI escape) must not reach the terminal raw."""
    return show(name) if name.isprintable() else json.dumps(name)  # every non-ASCII character escaped


# --- FILE ---------------------------------------------------------------------------------------------


def load(file: Path) -> dict[str, Any]:
    """FILE's layout as bruin reads it (yaml.v3: environment and type names are the keys' text); its
    shape is a usage error (exit 2). Each connection stays a node, decoded once the schema gives its
    fields' types (_raw_secrets)."""
    _, root = read_yaml(file, "the file to import")
    try:
        return _layout(root, file)
    except Unreadable as exc:
        raise usage_error(f"{file}: {exc.args[0]}") from None


def _layout(root: Node | None, file: Path) -> dict[str, Any]:
    top = _pairs(root)
    environments = top.get("environments")
    if environments is None or environments.kind != "mapping":
        raise usage_error(f"{file} must be a bruin config: a mapping with `environments`, like a .bruin.yml")
    default = top.get("default_environment")
    if default is not None and default.kind != "scalar":
        raise usage_error(f"{file}: `default_environment` must be a string")
    default_name = decode(default, {"type": "string"}, None)
    envs: dict[str, Any] = {}
    for name, env in _pairs(environments).items():
        where = f"{file}: environment {shown(name)}"
        if env.kind != "mapping" and not _is_null(env):
            raise usage_error(f"{where} must be a mapping")
        connections = _pairs(env).get("connections") if env.kind == "mapping" else None
        if connections is not None and connections.kind != "mapping" and not _is_null(connections):
            raise usage_error(f"{where}: `connections` must be a mapping of type to a list")
        types: dict[str, list[Node]] = {}
        for conn_type, entries in (_pairs(connections) if connections is not None else {}).items():
            if entries.kind != "sequence" and not _is_null(entries):
                raise usage_error(f"{where}: connections.{shown(conn_type)} must be a list")
            types[conn_type] = list(entries.value) if entries.kind == "sequence" else []
        envs[name] = {"connections": types}
    return {"default_environment": default_name, "environments": envs}


def _pairs(node: Node | None) -> dict[str, Node]:
    """A mapping node's entries by their keys' text (bruin decodes these keys into Go strings)."""
    if node is None or node.kind != "mapping":
        return {}
    found: dict[str, Node] = {}
    for key, value in node.value:
        text = key_text(key)
        if text in found:
            raise Unreadable(f"line {key.line}: the key {shown(text)} comes twice, which bruin's parser refuses")
        found[text] = value
    return found


def _is_null(node: Node) -> bool:
    return node.plain and node.value in ("", "~", "null", "Null", "NULL")


def sources(doc: dict[str, Any], settings: Settings) -> list[tuple[str, str]]:
    """(environment of FILE, Vault path) pairs to import: each environment path, or the one environment
    bruin would select (--environment, else FILE's default_environment, else "default") into --path."""
    file = _job(settings).file
    selected = settings.selected_environment
    if settings.environment_paths:
        pairs = [p for p in settings.environment_paths if selected in (None, p[0])]
        if not pairs:
            raise usage_error(f"--environment {selected} is not one of the environment paths")
    else:
        pairs = [(selected or doc.get("default_environment") or "default", settings.path)]
    names = list(doc["environments"])
    for env, _ in pairs:
        if env not in names:
            known = ", ".join(map(shown, names)) or "none"
            raise usage_error(f"{file} has no environment {shown(env)} (it has {known})")
    return pairs


def not_imported(doc: dict[str, Any], pairs: list[tuple[str, str]]) -> list[str]:
    chosen = {env for env, _ in pairs}
    return [name for name in doc["environments"] if name not in chosen]


def _job(settings: Settings) -> ImportJob:
    assert settings.importing is not None
    return settings.importing


# --- checking ------------------------------------------------------------------------------------------


def check(doc: dict[str, Any], pairs: list[tuple[str, str]], schema: Schema | None,
          settings: Settings) -> tuple[list[tuple[str, Outcome]], list[Entry]]:
    """Every selected environment's connections checked, as validate() checks secrets, plus the
    import's own checks; and the entries to write (only meaningful when no problem is an error)."""
    job = _job(settings)
    # ${NAME} is allowed here: bruin expanded it when it loaded FILE, so it was written to be.
    options = Options(settings.strict, expand_env=True)
    outcomes: list[tuple[str, Outcome]] = []
    entries: list[Entry] = []
    for env, path in pairs:
        raw, problems = _raw_secrets(doc["environments"][env], env, job.file, schema)
        problems.extend(_reference_shaped(raw))
        outcome = validate(raw, schema, options)
        problems.extend(_unconverted(outcome.problems))
        locations = {s.name: s.location for s in raw}
        for conn in outcome.connections:
            where = locations[conn.name]
            problems.extend(name_problems(conn.name, where))
            problems.extend(_relative_paths(conn, job, where))
            problems.extend(_env_references(conn, where))
            location = "/".join(p for p in (settings.mount, path, conn.name) if p)
            entries.append(Entry(env, path, conn, location))
        outcomes.append((env, Outcome(outcome.connections, problems)))
    entries, clashes = _shared_paths(entries)
    if clashes:
        outcomes.append(("", Outcome([], clashes)))
    return outcomes, entries


def _raw_secrets(env: Any, environment: str, file: Path,
                 schema: Schema | None) -> tuple[list[RawSecret], list[Problem]]:
    """The environment's connections as the secrets they will be: {type, details}, named by `name`,
    every value as bruin's yaml.v3 decodes it into its field (bruinread.py)."""
    raw: list[RawSecret] = []
    problems: list[Problem] = []
    for conn_type, items in env["connections"].items():
        spec = schema.types.get(conn_type) if schema is not None else None
        props = (spec or {}).get("properties") or {}
        for i, item in enumerate(items):
            where = f"{file}: {shown(environment)}: connections.{shown(conn_type)}[{i}] (line {item.line})"
            fields, unreadable = _fields(item, props, schema)
            name = (fields or {}).get("name")
            if not isinstance(name, str):
                problems.append(Problem(ERROR, where, "must be a mapping with a string `name`"))
                continue
            location = f"{file}: {shown(environment)}/{shown(name)}"
            problems.extend(Problem(ERROR, f"{location}: {field}", message, location, field, "field-unreadable")
                            for field, message in unreadable)
            details = {k: v for k, v in (fields or {}).items() if k != "name"}
            raw.append(RawSecret(name, location, {"type": conn_type, "details": details}))
    return raw, problems


def _fields(item: Node, props: dict[str, Any], schema: Schema | None) -> tuple[dict[str, Any] | None,
                                                                               list[tuple[str, str]]]:
    """One connection's fields decoded by their types, and (field, why) for each bruin would read
    otherwise than Vault could hold."""
    if item.kind != "mapping":
        return None, []
    fields: dict[str, Any] = {}
    unreadable: list[tuple[str, str]] = []
    for key, value in item.value:
        text = str(key.value) if key.kind == "scalar" else "(a key that is a list or a mapping)"
        field = "name" if text == "name" else f"details.{shown(text)}"
        try:
            name = key_text(key)
            if name in fields:
                raise Unreadable("comes twice, which bruin's parser refuses")
            fields[name] = decode(value, props.get(name), schema)
        except Unreadable as exc:
            unreadable.append((f"{field} (line {key.line})", str(exc.args[0])))
    return fields, unreadable


def _unconverted(problems: list[Problem]) -> list[Problem]:
    """Values are decoded as bruin decodes them, so a conversion validate() would make means bruin
    and Vault would disagree: an error, never a note."""
    return [p._replace(level=ERROR, message=f"{p.message}, which import never does: write it as bruin "
                       "should read it") if p.code == "value-converted" else p for p in problems]


def _relative_paths(conn: Connection, job: ImportJob, where: str) -> list[Problem]:
    """bruin resolved these against FILE's directory; in Vault they would mean the project root."""
    folder = job.file.parent
    fields = absolutize(conn.type, copy.deepcopy(conn.fields), folder)  # which, without changing them
    if job.relative_paths == "absolute":
        absolutize(conn.type, conn.fields, folder)
        return [Problem(NOTE, f"{where}: details.{f}", f"relative path made absolute against {folder}")
                for f in fields]
    if job.relative_paths == "keep":
        return [Problem(NOTE, f"{where}: details.{f}", "relative path kept as it is; render resolves it against the "
                        "project root") for f in fields]
    return [Problem(ERROR, f"{where}: details.{f}", f"is a relative path, which bruin resolves against {folder}; pass "
                    "--relative-paths absolute (resolve it there) or keep (leave it to render, which resolves it "
                    "against the project root)") for f in fields]


def _reference_shaped(raw: list[RawSecret]) -> list[Problem]:
    """bruin knows no `$vault`: it read such a mapping as it is. In Vault, render would read it as a
    reference and give bruin another secret's value instead, so it is refused, well-formed or not."""
    found = references.find(raw)
    where = [(r.location, r.field) for r in found.references] + [(p.location, p.field) for p in found.problems]
    return [Problem(ERROR, f"{location}: {field}", "is a mapping with a `$vault` key, which render would read as a "
                    "reference to another Vault secret, not as this mapping bruin read; import writes no reference",
                    location, field, "reference-imported") for location, field in where]


def _env_references(conn: Connection, where: str) -> list[Problem]:
    return [Problem(NOTE, f"{where}: {field}", "holds ${...}: kept as written; bruin expands it on load, so "
                    "render needs --expand-env") for field, value in leaves(conn.fields, "details")
            if isinstance(value, str) and _ENV_REF.search(value) and field != "details.name"]


def _shared_paths(entries: list[Entry]) -> tuple[list[Entry], list[Problem]]:
    """Environments sharing a Vault path share its secrets: one secret each, and it must be the same."""
    first: dict[str, Entry] = {}
    problems: list[Problem] = []
    for entry in entries:
        seen = first.setdefault(entry.location, entry)
        if seen is not entry and not identical(seen.secret, entry.secret):
            problems.append(Problem(ERROR, entry.location, f"environments {shown(seen.environment)} and "
                                    f"{shown(entry.environment)} both import it, with different values"))
    return list(first.values()), problems


# --- Vault -----------------------------------------------------------------------------------------------


def as_stored(value: Any, version: int) -> Any:
    """`value` as the KV engine gives it back. KV v1 keeps the JSON as sent; KV v2 (OpenBao 2.7, checked
    against a server) decodes every number to a float64: 1.0 and 1e16 come back as integers, -0.0 as 0,
    and an integer beyond 2**53 rounded."""
    if version != 2 or isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, dict):
        return {k: as_stored(v, version) for k, v in value.items()}
    if isinstance(value, list):
        return [as_stored(v, version) for v in value]
    number = float(value)
    if number.is_integer() and abs(number) < 1e21:
        # Go writes such a float64 as an integer of its shortest round-trip digits: 2**63 - 1 comes
        # back as 9223372036854775800, not 9223372036854775808.
        return int(decimal.Decimal(repr(number)))
    return number


def kv2_problems(entries: list[Entry], schema: Schema | None) -> list[Problem]:
    """Numbers KV v2 would not give back as written: a rounded integer is an error; a float that comes
    back without its `.0` is a note in a number field (bruin reads an integer there alike), and an error
    anywhere else (bruin would get an integer where the file has a float)."""
    problems: list[Problem] = []
    for entry in entries:
        props = ((schema.types.get(entry.conn.type) if schema else None) or {}).get("properties") or {}
        for key, top in entry.secret["details"].items():
            number_field = isinstance(props.get(key), dict) and schema is not None and \
                schema.resolve(props[key]).get("type") == "number"
            for field, value in leaves(top, f"details.{shown(key)}"):
                problem = _kv2_problem(value, number_field and field == f"details.{shown(key)}")
                if problem is not None:
                    problems.append(problem._replace(where=f"{entry.location}: {field}"))
    return problems


def _kv2_problem(value: Any, number_field: bool) -> Problem | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or as_stored(value, 2) == value and \
            type(as_stored(value, 2)) is type(value):
        return None
    if isinstance(value, int):
        return Problem(ERROR, "", "is an integer beyond 2**53, which KV v2 stores rounded (as a float64); use a KV "
                       "v1 mount, or a string if the field takes one")
    if number_field and not (value == 0 and math.copysign(1.0, value) < 0):  # -0.0 would come back as 0
        return Problem(NOTE, "", "KV v2 stores this number as an integer (without its `.0`); bruin reads it alike "
                       "into a number field")
    return Problem(ERROR, "", "is a whole float that KV v2 gives back as an integer, so bruin would read an integer "
                   "here; write it without its fraction if an integer is meant, or use a KV v1 mount")


def current_states(kv: KV, entries: list[Entry], concurrency: int,
                   done: Callable[[], None] = lambda: None) -> list[State]:
    """Each secret as it is now, read before anything is written: a refused read stops the import.
    `done` hears each one read."""

    def read(entry: Entry) -> State:
        state = read_state(kv, entry)
        done()
        return state

    return parallel(read, entries, concurrency)


def read_state(kv: KV, entry: Entry) -> State:
    what = f"reading {entry.location}"
    secret_path = _secret_path(entry)
    try:
        if kv.version == 2:
            body = call(what, lambda: kv.client.secrets.kv.v2.read_secret_version(
                path=secret_path, mount_point=kv.mount, raise_on_deleted_version=True))
            if is_deleted_version(body):
                return State(True, None, _version(body))
            return State(True, secret_data(what, body, 2), _version(body))
        return State(True, secret_data(what, call(what, lambda: kv.client.secrets.kv.v1.read_secret(
            path=secret_path, mount_point=kv.mount)), 1))
    except hvac.exceptions.InvalidPath as exc:
        deleted = kv.version == 2 and is_deleted_version(exc.json)
        return State(True, None, _version(exc.json)) if deleted else State(False)
    except hvac.exceptions.Forbidden:
        raise vault_error(f"permission denied reading {entry.location}: import reads each secret first, to leave "
                          f"existing ones alone; the token's policy needs `read` on {_policy_path(kv, entry)}/*"
                          ) from None
    except hvac.exceptions.VaultError as exc:
        raise unexpected(what, exc) from None


def _version(body: Any) -> int:
    version = dig(body, "data", "metadata", "version")
    return version if isinstance(version, int) else 0


def action(entry: Entry, state: State, overwrite: bool, version: int) -> str:
    """What the import does with this secret: create, update, same (nothing to do) or leave (alone)."""
    if not state.exists:
        return CREATE
    if identical(state.data, as_stored(entry.secret, version)):
        return SAME
    return UPDATE if overwrite else LEAVE


def write_all(kv: KV, entries: list[Entry], states: list[State], overwrite: bool, concurrency: int,
              done: Callable[[], None] = lambda: None) -> list[str]:
    """What became of each secret: create, update, same, leave, or raced (someone else wrote it meanwhile).
    `done` hears each one dealt with."""

    def one(job: tuple[Entry, State]) -> str:
        result = _write_one(kv, job[0], job[1], action(job[0], job[1], overwrite, kv.version))
        done()
        return result

    return parallel(one, list(zip(entries, states, strict=True)), concurrency)


def _write_one(kv: KV, entry: Entry, state: State, todo: str) -> str:
    if todo not in (CREATE, UPDATE):
        return todo
    if write(kv, entry, state.version if state.exists else 0):
        return todo
    # Check-and-set refused: written meanwhile, by another import or by our own write, which the
    # transport retried after a lost answer. The same secret then is no conflict.
    return SAME if identical(read_state(kv, entry).data, as_stored(entry.secret, kv.version)) else RACED


def write(kv: KV, entry: Entry, cas: int) -> bool:
    """Write the entry's secret; False when KV v2's check-and-set finds another version than `cas`."""
    what = f"writing {entry.location}"
    secret_path = _secret_path(entry)
    try:
        if kv.version == 2:
            call(what, lambda: kv.client.secrets.kv.v2.create_or_update_secret(
                path=secret_path, secret=entry.secret, cas=cas, mount_point=kv.mount))
        else:  # PUT: hvac would otherwise read the secret first to choose between POST and PUT
            call(what, lambda: kv.client.secrets.kv.v1.create_or_update_secret(
                path=secret_path, secret=entry.secret, method="PUT", mount_point=kv.mount))
    except hvac.exceptions.InvalidRequest as exc:
        if kv.version == 2 and any("check-and-set" in str(e) for e in (exc.errors or ())):
            return False
        raise unexpected(what, exc) from None
    except hvac.exceptions.Forbidden:
        raise vault_error(f"permission denied writing {entry.location}: the token's policy needs `create` (and "
                          f"`update` to replace secrets) on {_policy_path(kv, entry)}/*") from None
    except hvac.exceptions.VaultError as exc:
        raise unexpected(what, exc) from None
    return True


def _secret_path(entry: Entry) -> str:
    return "/".join(p for p in (entry.path, entry.conn.name) if p)


def _policy_path(kv: KV, entry: Entry) -> str:
    return "/".join(p for p in (kv.mount, "data" if kv.version == 2 else "", entry.path) if p)


# --- what is shown ---------------------------------------------------------------------------------------


def plan_line(entry: Entry, state: State, todo: str, version: int) -> str | None:
    """`--dry-run`'s line for one secret, in plan's format; None when it is already as FILE has it."""
    where = f"{shown(entry.environment)}/{shown(entry.conn.name)} ({shown(entry.conn.type)})"
    if todo == CREATE:
        return f"+ {where}"
    if todo == SAME:
        return None
    change = differences(entry, state, version)
    return f"~ {where}: {change}" if todo == UPDATE else f"! {where}: {change} (exists; left alone without --overwrite)"


def differences(entry: Entry, state: State, version: int) -> str:
    """How the secret in Vault differs from FILE's connection: field names, never values."""
    data = state.data
    if data is None:
        return "its current version is deleted"
    old_type, old_details = (data.get("type"), data.get("details")) if isinstance(data, dict) else (None, None)
    if not isinstance(old_type, str) or not isinstance(old_details, dict):
        return "replaces a secret that is not a connection"
    if old_type != entry.conn.type:
        return f"type changed from {shown(old_type)}"
    fields = changed_fields(as_stored(entry.secret["details"], version), old_details) or ["top-level keys"]
    return ", ".join(shown(f) for f in fields)


def show_plan(entries: list[Entry], states: list[State], overwrite: bool, version: int, console: Console) -> int:
    """--dry-run: a line per connection that would change, as plan's; exit 5 when any would."""
    todo = [action(e, s, overwrite, version) for e, s in zip(entries, states, strict=True)]
    lines = [line for e, s, t in zip(entries, states, todo, strict=True)
             if (line := plan_line(e, s, t, version)) is not None]
    for line in lines:
        print(line)
    flush_stdout()
    console.info(f"import --dry-run: {_counts(todo, dry_run=True)}; nothing written")
    return ExitCode.CHANGES if lines else ExitCode.OK  # as plan: Vault differs from the file


def report(entries: list[Entry], states: list[State], results: list[str], version: int, where: str,
           console: Console) -> int:
    """A line per connection not simply created; exit 5 when Vault still differs from the file."""
    for entry, state, result in zip(entries, states, results, strict=True):
        kind = f"{entry.location} ({shown(entry.conn.type)})"
        if result in (CREATE, UPDATE):
            console.info(f"{'created' if result == CREATE else 'replaced'} {kind}")
        elif result == LEAVE:
            differs = differences(entry, state, version)
            console.warning(f"{kind} exists and differs ({differs}); left alone: pass --overwrite to replace it")
        elif result == RACED:
            console.warning(f"{kind} was {'changed' if state.exists else 'created'} meanwhile by someone else; "
                            "left alone")
    console.info(f"import into {where}: {_counts(results)}")
    left = sum(r in (LEAVE, RACED) for r in results)
    return ExitCode.CHANGES if left else ExitCode.OK  # Vault still differs from the file, as plan's 5


def _counts(results: list[str], *, dry_run: bool = False) -> str:
    words = {CREATE: "to create" if dry_run else "created",
             UPDATE: "to replace" if dry_run else "replaced",
             SAME: "already the same",
             LEAVE: "to leave alone" if dry_run else "left alone",
             RACED: "written meanwhile by someone else"}
    return ", ".join(f"{results.count(k)} {w}" for k, w in words.items() if results.count(k)) or "no connections"
