"""A stand-in for the `bruin` CLI, for tests (bruin itself is not installed where they run).

It loads the config file the way bruin's pkg/config (LoadFromFileOrEnv) does, records what it was
given in $FAKE_BRUIN_RECORD (JSON) and exits with $FAKE_BRUIN_EXIT (default 0).

    bruin internal connections      print the connections JSON Schema ($FAKE_BRUIN_SCHEMA)
    bruin --version | version       print a fake version
    bruin run [flags] [PATH]        load the config, write the record

With $FAKE_BRUIN_LOGIN set (`before`, or `before,after`), `run` logs in to every postgres
connection of the selected environment with `psql`, using exactly what the file gives (host, port,
username, password, database), before waiting and/or after; the record's `logins` and
`logins_after` say, per connection, whether it worked and as which user.

With $FAKE_BRUIN_ECHO set, `run` copies its stdin to its stdout. For the signal tests, it then waits
$FAKE_BRUIN_SLEEP seconds (when set), having written the file
$FAKE_BRUIN_READY; each signal it gets is appended by name to $FAKE_BRUIN_SIGNALS. USR1, USR2 and
WINCH are only recorded; TERM, INT, HUP and QUIT then end it the default way (dying of the signal),
as a Go program without handlers does.

Errors are one line on stderr and exit 1. Nothing here ever prints a config value: the files it
reads are full of secrets. Set FAKE_BRUIN_TRACEBACK=1 to see tracebacks of bugs in the fake itself.

Where real bruin (Go's yaml.v3) is more lenient, this fake is stricter on purpose: it rejects an
integer in a string field and `yes`/`no` in a boolean field, which yaml.v3 would coerce.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

VERSION = "bruin v0.0.0-fake"
DEFAULT_SCHEMA = Path(__file__).resolve().parent.parent / "data" / "connections-schema-subset.json"

# `bruin run` flags that take a value, and the record key each one sets.
_RUN_FLAGS = {
    "--config-file": "config_file",
    "--environment": "environment",
    "--env": "environment",
    "-e": "environment",
    "--secrets-backend": "secrets_backend",
}

# Connection fields that bruin makes absolute against the config file's directory (pkg/config).
# `always` means even an empty value is joined (duckdb's loop has no "if empty, skip").
_RELATIVE_PATH_FIELDS: dict[str, tuple[tuple[str, ...], bool]] = {
    "duckdb": (("path",), True),
    "google_cloud_platform": (("service_account_file",), False),
    "google_sheets": (("service_account_file",), False),
    "snowflake": (("private_key_path",), False),
    "mysql": (("ssl_ca_path", "ssl_cert_path", "ssl_key_path"), False),
    "doris": (("ssl_ca_path", "ssl_cert_path", "ssl_key_path"), False),
    "vitess": (("ssl_ca_path", "ssl_cert_path", "ssl_key_path"), False),
}

# bruin replaces ${NAME} only when NAME is set; there is no escape syntax.
_ENV_REF = re.compile(r"\$\{([^}]+)\}")


class FakeBruinError(Exception):
    """A user-facing error: printed as one line, exit code 1."""


# --- entry point ---------------------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    try:
        return _dispatch(list(argv))
    except FakeBruinError as exc:
        print(f"bruin: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug in the fake: its message could quote config values
        if os.environ.get("FAKE_BRUIN_TRACEBACK"):
            raise
        print(f"bruin: error: fake bruin crashed ({type(exc).__name__})", file=sys.stderr)
        return 1


def _dispatch(args: list[str]) -> int:
    if args in (["--version"], ["version"]):
        print(VERSION)
        return 0
    if args[:2] == ["internal", "connections"]:
        return _internal_connections()
    if args[:1] == ["run"]:
        return _run(args[1:])
    raise FakeBruinError(f"fake bruin does not implement {' '.join(args[:2])!r}")


def _internal_connections() -> int:
    calls = os.environ.get("FAKE_BRUIN_SCHEMA_CALLS")
    if calls:
        with open(calls, "a", encoding="utf-8") as log:
            log.write("internal connections\n")
    try:
        sys.stdout.write(_schema_path().read_text(encoding="utf-8"))
    except OSError as exc:
        raise FakeBruinError(f"cannot read {_schema_path()}: {exc.strerror}") from None
    return 0


def _run(args: list[str]) -> int:
    flags = _parse_run_flags(args)
    config_file = flags.get("config_file") or os.environ.get("BRUIN_CONFIG_FILE")
    if not config_file:
        raise FakeBruinError("no --config-file given (the fake does not look for .bruin.yml)")
    backend = flags.get("secrets_backend") or os.environ.get("BRUIN_SECRETS_BACKEND") or None
    record: dict[str, Any] = {
        "argv": sys.argv[1:],
        "env": dict(os.environ),
        "config_file": config_file,
        "environment": None,
        "config": None,
        "secrets_backend": backend,
        "ignored_config": backend == "vault",
        "cwd": os.getcwd(),
        "config_text": _text(config_file),  # the file is removed once bruin exits: kept for the tests
        "config_file_mode": _mode(config_file),
        "config_dir_mode": _mode(os.path.dirname(os.path.abspath(config_file))),
    }
    if backend != "vault":  # with the vault backend, bruin ignores the file's connections
        config = load_config(config_file)
        record["environment"] = _select_environment(config, flags.get("environment"))
        record["config"] = config
        _ensure_gitignored(Path(os.path.abspath(config_file)))
    login = os.environ.get("FAKE_BRUIN_LOGIN", "").split(",")
    if "before" in login and record["config"] is not None:
        record["logins"] = _log_in(record["config"], record["environment"])
    _write_record(record)
    if os.environ.get("FAKE_BRUIN_ECHO"):  # shows that stdin and stdout are the caller's own
        sys.stdout.write(sys.stdin.read())
        sys.stdout.flush()
        print("bruin: stderr is the caller's too", file=sys.stderr)
    _linger()
    if "after" in login and record["config"] is not None:
        record["logins_after"] = _log_in(record["config"], record["environment"])
        _write_record(record)
    return int(os.environ.get("FAKE_BRUIN_EXIT", "0"))


def _log_in(config: dict[str, Any], environment: str) -> list[dict[str, Any]]:
    """Log in to each postgres connection as bruin's driver would, with what the file holds."""
    import subprocess

    results = []
    for conn in config["environments"][environment]["connections"].get("postgres") or []:
        argv = ["psql", "-h", str(conn.get("host")), "-p", str(conn.get("port") or 5432), "-U",
                str(conn.get("username")), "-d", str(conn.get("database") or "postgres"), "-X", "-A", "-t", "-w",
                "-c", "SELECT current_user"]
        env = {**os.environ, "PGPASSWORD": str(conn.get("password") or ""), "PGCONNECT_TIMEOUT": "5"}
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        results.append({"name": conn.get("name"), "ok": proc.returncode == 0, "user": proc.stdout.strip()})
    return results


_RECORDED_ONLY = ("SIGUSR1", "SIGUSR2", "SIGWINCH")
_FATAL = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")


def _linger() -> None:
    """Wait, taking each signal with sigtimedwait: a Python handler would fold two that come close
    together into one call, and the tests count them."""
    seconds = float(os.environ.get("FAKE_BRUIN_SLEEP") or 0)
    if not seconds:
        return
    signals = {getattr(signal, name) for name in _RECORDED_ONLY + _FATAL}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    ready = os.environ.get("FAKE_BRUIN_READY")
    if ready:
        Path(ready).write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        info = signal.sigtimedwait(signals, left)
        if info is None:
            break
        _record_signal(info.si_signo)


def _record_signal(signum: int) -> None:
    name = signal.Signals(signum).name
    log = os.environ.get("FAKE_BRUIN_SIGNALS")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(name + "\n")
    if name in _FATAL:  # die of it, as a program without a handler does
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        os.kill(os.getpid(), signum)


def _parse_run_flags(args: list[str]) -> dict[str, str]:
    """The flags the fake cares about, in `--flag VALUE` or `--flag=VALUE` form; others are kept
    only in the record's argv (the fake cannot know which of them take a value)."""
    found: dict[str, str] = {}
    i = 0
    while i < len(args):
        flag, has_value, value = args[i].partition("=")
        if flag in _RUN_FLAGS:
            if not has_value:
                if i + 1 >= len(args):
                    raise FakeBruinError(f"flag needs an argument: {flag}")
                i += 1
                value = args[i]
            found[_RUN_FLAGS[flag]] = value
        i += 1
    return found


def _text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return None


def _write_record(record: dict[str, Any]) -> None:
    path = os.environ.get("FAKE_BRUIN_RECORD")
    if path:
        # default=str: a YAML timestamp loads as a datetime, which JSON cannot hold.
        Path(path).write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")


# --- loading the config (pkg/config LoadFromFileOrEnv) -------------------------------------------


def load_config(config_file: str) -> dict[str, Any]:
    """Parse, expand ${NAME}, type-check and absolutize paths, in bruin's order."""
    config: dict[str, Any] = _expand_env(_parse_yaml(_read_document(config_file)))
    environments = config.get("environments") or {}
    if not isinstance(environments, dict):
        raise FakeBruinError("config: 'environments' must be a mapping")
    problems = list(_environment_type_problems(environments, _load_schema()))
    if problems:
        raise FakeBruinError("config type mismatch: " + "; ".join(problems))
    for env_name, env in environments.items():
        if not isinstance(env, dict) or env.get("connections") is None:
            raise FakeBruinError(f"environment '{env_name}' has no connections defined")
        _absolutize_paths(env["connections"], Path(os.path.abspath(config_file)).parent)
    return config


def _read_document(config_file: str) -> str:
    content = os.environ.get("BRUIN_CONFIG_FILE_CONTENT")
    if content:  # Go checks != "": an empty variable means "use the file"
        return content
    try:
        return Path(config_file).read_text(encoding="utf-8")
    except OSError as exc:
        raise FakeBruinError(f"failed to read file {config_file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise FakeBruinError(f"failed to read file {config_file}: not UTF-8") from None


def _parse_yaml(text: str) -> dict[str, Any]:
    try:
        document = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        # Only the line: ruamel's messages quote the document (e.g. a duplicate key's value).
        mark = exc.problem_mark if isinstance(exc, MarkedYAMLError) else None
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise FakeBruinError(f"cannot parse the config as YAML{where}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise FakeBruinError("config: the document must be a mapping")
    return document


def _expand_env(node: Any) -> Any:
    """Replace ${NAME} in every string scalar (not keys) with $NAME, when NAME is set."""
    if isinstance(node, str):
        return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), m.group(0)), node)
    if isinstance(node, dict):
        return {key: _expand_env(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_expand_env(item) for item in node]
    return node


def _select_environment(config: dict[str, Any], requested: str | None) -> str:
    name = requested or config.get("default_environment") or "default"
    if name not in (config.get("environments") or {}):
        raise FakeBruinError(f"environment '{name}' not found in the configuration file")
    return str(name)


def _absolutize_paths(connections: Any, base: Path) -> None:
    if not isinstance(connections, dict):
        return
    for conn_type, (fields, always) in _RELATIVE_PATH_FIELDS.items():
        entries = connections.get(conn_type)
        for conn in entries if isinstance(entries, list) else []:
            for field in fields if isinstance(conn, dict) else ():
                value = conn.get(field)
                if isinstance(value, str) and (value or always) and not os.path.isabs(value):
                    conn[field] = os.path.normpath(os.path.join(base, value))  # like filepath.Join


def _ensure_gitignored(config_file: Path) -> None:
    """bruin lists the config file's name in a .gitignore next to it, and fails if it cannot."""
    gitignore = config_file.parent / ".gitignore"
    try:
        existing = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
        if config_file.name in (line.strip() for line in existing.splitlines()):
            return
        separator = "\n" if existing and not existing.endswith("\n") else ""
        with gitignore.open("a", encoding="utf-8") as out:
            out.write(f"{separator}{config_file.name}\n")
    except OSError as exc:
        message = f"failed to add {config_file.name} to {gitignore}: {exc.strerror}"
        raise FakeBruinError(message) from None


# --- type checking against the connections schema ------------------------------------------------


def _schema_path() -> Path:
    return Path(os.environ.get("FAKE_BRUIN_SCHEMA") or DEFAULT_SCHEMA)


def _load_schema() -> dict[str, Any]:
    try:
        schema: dict[str, Any] = json.loads(_schema_path().read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FakeBruinError(f"cannot load the schema {_schema_path()}: {exc}") from None
    return schema


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].removeprefix("#/$defs/")]
    return node


def _environment_type_problems(
    environments: dict[str, Any], schema: dict[str, Any]
) -> Iterator[str]:
    """Go decodes the whole document, so a mismatch in any environment fails the load."""
    types = _resolve(schema, schema)["properties"]
    for env_name, env in environments.items():
        connections = env.get("connections") if isinstance(env, dict) else None
        if connections is None:
            continue  # reported as "no connections defined" afterwards
        if not isinstance(connections, dict):
            yield f"environment '{env_name}': connections must be a mapping"
            continue
        for conn_type, entries in connections.items():
            if conn_type in types and entries is not None:  # unknown types are ignored, like Go
                where = f"environment '{env_name}', {conn_type}"
                yield from _connection_list_problems(entries, types[conn_type], schema, where)


def _connection_list_problems(
    entries: Any, list_schema: dict[str, Any], schema: dict[str, Any], where: str
) -> Iterator[str]:
    if not isinstance(entries, list):
        yield f"{where}: expected a list of connections, got {_kind(entries)}"
        return
    for index, conn in enumerate(entries):
        if not isinstance(conn, dict):
            yield f"{where}[{index}]: expected a mapping, got {_kind(conn)}"
            continue
        name = conn.get("name")
        label = f"connection '{name}'" if isinstance(name, str) else f"connection #{index}"
        yield from _value_problems(conn, list_schema["items"], schema, f"{where} {label}", "")


def _value_problems(
    value: Any, node: dict[str, Any], schema: dict[str, Any], where: str, field: str
) -> Iterator[str]:
    node = _resolve(schema, node)
    if value is None:
        return  # Go decodes null into any field as its zero value
    expected = node.get("type")
    check = _TYPE_CHECKS.get(expected) if isinstance(expected, str) else None
    if check is not None and not check(value):
        yield f"{where} field '{field}': expected {expected}, got {_kind(value)}"
        return
    if isinstance(value, list) and "items" in node:
        for index, item in enumerate(value):
            yield from _value_problems(item, node["items"], schema, where, f"{field}[{index}]")
    if isinstance(value, dict):
        properties = node.get("properties", {})
        extra = node.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:  # unknown fields are ignored silently, like Go
                path = f"{field}.{key}" if field else str(key)
                yield from _value_problems(item, sub, schema, where, path)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": _is_int,
    "number": lambda v: _is_int(v) or isinstance(v, float),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _kind(value: Any) -> str:
    """The YAML/JSON kind of a value, for messages: never the value itself."""
    for kind, check in _TYPE_CHECKS.items():
        if check(value):
            return kind
    return "null" if value is None else type(value).__name__


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
