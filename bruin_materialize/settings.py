"""Flags and environment, resolved once into one immutable record.

Nothing below `cli.main` reads `os.environ` or argparse: they get a `Settings`.
The Vault variables are bruin's own (`bruin run --secrets-backend vault`), with bruin's defaults and
validation, so a pod spec written for bruin's native backend works unchanged.

Each setting is declared once, as an `Option` in the table below: its flags, its variable and the
Vault CLI's and OpenBao's fallbacks, its default, its parser, the commands it applies to and its
help. The environment lookup (`_Reader`) reads it; options.py makes argparse's options, `--help`
and docs/settings.md's settings tables from it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

from bruin_materialize import options as _options
from bruin_materialize.errors import usage_error
from bruin_materialize.options import COMMANDS as COMMANDS
from bruin_materialize.options import GROUPS as GROUPS
from bruin_materialize.options import PROG as PROG
from bruin_materialize.options import Command as Command
from bruin_materialize.options import Option as Option
from bruin_materialize.options import program_name as program_name
from bruin_materialize.paths import project_root as find_project_root

ExecMode = Literal["child", "replace"]  # exec: run bruin as a child and clean up, or become it (execve)
Prefer = Literal["vault", "base"]
OutputFormat = Literal["text", "json"]
RelativePaths = Literal["absolute", "keep"]
AuthMethod = Literal["token", "kubernetes", "approle", "jwt"]
KVVersion = Literal[1, 2]
OnCollision = Literal["error", "last"]  # a connection name in two paths of one environment
Verbosity = Literal[-1, 0, 1]  # quiet, normal, verbose

READING: tuple[Command, ...] = ("render", "check", "exec", "plan")  # the commands that read Vault into a file
EXEC_MODES: tuple[ExecMode, ...] = ("child", "replace")
PREFER: tuple[Prefer, ...] = ("vault", "base")
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("text", "json")
RELATIVE_PATHS: tuple[RelativePaths, ...] = ("absolute", "keep")
ON_COLLISION: tuple[OnCollision, ...] = ("error", "last")

BASE_NAME = ".bruin.yml"  # the file bruin reads at a project's root
K8S_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"


class VaultAddress(NamedTuple):
    scheme: str  # "http", "https" or "unix"
    host: str  # host name, or the socket path for unix
    port: int  # 0 for unix

    def display(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"{self.scheme}://{host}:{self.port}"


class Auth(NamedTuple):
    """How to get a token. Credentials in files are read at run time, before any network call."""

    method: AuthMethod
    source: str  # the setting it came from, named in messages
    token: str | None = None  # method "token", given directly
    token_file: Path | None = None  # method "token" from a file; the JWT file for kubernetes/jwt
    mount: str = ""  # the auth method's mount, for logins
    role: str = ""  # kubernetes/jwt role, or the AppRole role_id
    secret_id: str | None = None  # AppRole
    secret_id_file: Path | None = None  # AppRole

    @property
    def logs_in(self) -> bool:
        return self.method != "token"


class TLS(NamedTuple):
    ca_cert: str | None = None
    ca_path: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    skip_verify: bool = False


class ImportJob(NamedTuple):
    """`import FILE`: what to write into Vault, and how carefully."""

    file: Path
    overwrite: bool  # replace existing secrets that differ
    dry_run: bool  # print what would be written, write nothing
    relative_paths: RelativePaths | None  # None: a relative path is an error


class Settings(NamedTuple):
    command: Command
    address: VaultAddress
    mount: str
    paths: tuple[str, ...]  # read in this order into one environment; empty with environment paths
    auth: Auth
    namespace: str | None
    tls: TLS
    proxy: str | None  # the HTTP proxy to reach Vault through, or None
    timeout: float
    max_retries: int
    retry_wait_min: float
    retry_wait_max: float
    wait: float  # seconds to wait for Vault to become reachable; 0: off
    kv_version: KVVersion | None  # None: detect
    concurrency: int
    recursive: bool
    schema_file: Path | None
    strict: bool
    expand_env: bool
    output: Path | None  # render
    runtime_dir: Path  # exec, render without --output: where the private directory is made
    allow_non_tmpfs: bool
    allow_repo: bool
    bruin_bin: str | None  # BRUIN_BIN, or None to look `bruin` up on PATH
    bruin_args: tuple[str, ...]  # exec: what follows `bruin run --config-file FILE`
    search_path: str | None  # PATH, to find bruin
    cache_dir: Path | None  # where the schema from bruin is cached
    verbosity: Verbosity
    traceback: bool
    # Several environments in one file: (environment, path) pairs, an environment once per path, in the
    # order given; empty: one environment, from `paths`.
    environment_paths: tuple[tuple[str, str], ...] = ()
    on_collision: OnCollision = "error"  # a connection name in two paths of one environment
    default_environment: str | None = None  # --default-environment, as given
    selected_environment: str | None = None  # chosen by bruin's arguments or --environment, if at all
    base: Path | None = None  # the file the connections are merged into; None: the template alone
    prefer: Prefer | None = None  # who wins a connection both have; None: an error
    project_root: Path = Path(".")  # where relative paths in connections are resolved
    against: Path | None = None  # plan: the file compared with
    output_format: OutputFormat = "text"  # check, plan, render: "json" puts one JSON document on stdout
    exec_mode: ExecMode = "child"  # exec: "child" (wait, then remove the file) or "replace" (execve)
    importing: ImportJob | None = None  # import: the file and its options
    proxy_source: str = ""  # the setting that named `proxy` (HTTPS_PROXY, --proxy, ...)

    @property
    def environment(self) -> str:
        """The environment bruin will select when the file does not say otherwise."""
        return self.selected_environment or "default"

    @property
    def path(self) -> str:
        """The first path (import writes into exactly one); "" with environment paths."""
        return self.paths[0] if self.paths else ""


# --- values: each parser takes the text and where it came from, to name it in the message ----------

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# Go's time.Duration is an int64 of nanoseconds: bruin refuses longer ones, and so do Python's
# timeouts (threading, sockets), which raise OverflowError past about the same point.
MAX_DURATION = (2**63 - 1) / 1e9
MAX_RETRIES = 100  # 2**retries feeds the backoff: beyond this the wait is long capped anyway
MAX_CONCURRENCY = 256
C = TypeVar("C", bound=str)
T = TypeVar("T")


def parse_duration(value: str | None, source: str) -> float:
    """Go's time.ParseDuration syntax ("500ms", "1m30s", "0"), in seconds; negatives refused."""
    text = (value or "").strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if not match:
            raise usage_error(f"{source} must be a duration such as 500ms, 10s or 1m (got an invalid value)")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text:
        raise usage_error(f"{source} must be a duration such as 500ms, 10s or 1m (got an empty value)")
    if not total < MAX_DURATION:  # also catches inf, from a number too long for a float
        raise usage_error(f"{source} is longer than the longest duration bruin takes (about 292 years)")
    return total


def _positive_duration(value: str | None, source: str) -> float:
    seconds = parse_duration(value, source)
    if seconds <= 0:
        raise usage_error(f"{source} must be a positive duration such as 30s")
    return seconds


def parse_int(value: str | None, source: str, *, minimum: int, maximum: int) -> int:
    try:
        number = int((value or "").strip())
    except ValueError:  # also a number of more than 4300 digits, which Python will not read
        raise usage_error(f"{source} must be a whole number") from None
    if number < minimum:
        raise usage_error(f"{source} must be at least {minimum}")
    if number > maximum:
        raise usage_error(f"{source} must be at most {maximum}")
    return number


def _int_between(minimum: int, maximum: int) -> Callable[[str | None, str], int]:
    def parse(value: str | None, source: str) -> int:
        return parse_int(value, source, minimum=minimum, maximum=maximum)

    return parse


def parse_kv_version(value: str | None, source: str) -> KVVersion | None:
    text = (value or "auto").strip().lower()
    if text == "auto":
        return None
    if text in ("1", "v1"):
        return 1
    if text in ("2", "v2"):
        return 2
    raise usage_error(f"{source} must be auto, 1 or 2")


def parse_bool(value: str | None, source: str) -> bool:
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise usage_error(f"{source} must be true or false")


def _pick(choices: tuple[C, ...], text: str) -> C | None:
    """`text` as the one of `choices` it is (typed as the choice), or None."""
    for choice in choices:
        if choice == text:
            return choice
    return None


def _exec_mode(value: str | None, source: str) -> ExecMode:
    mode = _pick(EXEC_MODES, (value or "child").strip().lower())
    if mode is None:
        raise usage_error(f"{source} must be child or replace")
    return mode


def _prefer(value: str | None, source: str) -> Prefer | None:
    if not value:
        return None
    prefer = _pick(PREFER, value.strip().lower())
    if prefer is None:
        raise usage_error(f"{source} must be vault or base")
    return prefer


def _output_format(value: str | None, source: str) -> OutputFormat:
    chosen = _pick(OUTPUT_FORMATS, value or "text")
    if chosen is None:  # argparse checked the choice already
        raise usage_error(f"{source} must be text or json")
    return chosen


def _on_collision(value: str | None, source: str) -> OnCollision:
    chosen = _pick(ON_COLLISION, (value or "error").strip().lower())
    if chosen is None:
        raise usage_error(f"{source} must be error or last")
    return chosen


def _relative_paths(value: str | None, source: str) -> RelativePaths | None:
    return _pick(RELATIVE_PATHS, value) if value else None  # argparse checked the choice already


def _text(value: str | None, source: str) -> str | None:
    """The text as given (an empty flag value stays empty)."""
    return value


def _text_or_none(value: str | None, source: str) -> str | None:
    return value or None


def _path_or_none(value: str | None, source: str) -> Path | None:
    return Path(value) if value else None


def _output_file(value: str | None, source: str) -> Path | None:
    """A file to write: a path ending in `/` (or `.`, `..`) names a directory, which pathlib would drop
    silently, leaving a file named like the directory."""
    if value and (value.endswith("/") or Path(value).name in ("", ".", "..") or value.endswith(("/.", "/.."))):
        raise usage_error(f"{source} names a directory ({value!r} ends in /, . or ..); name the file, such as "
                          "DIR/bruin.yml")
    return _path_or_none(value, source)


def _runtime_dir(value: str | None, source: str) -> Path:
    return Path(value or "/dev/shm")


def _required_path(value: str | None, source: str) -> str:
    if value is None or not value.strip("/"):
        raise usage_error(f"{source} must be set to a non-empty path")
    return check_vault_path(value.strip("/"), source)


def check_text(value: str, source: str) -> str:
    """A value from argv or the environment as text: bytes that are not UTF-8 reach Python as lone
    surrogates, which no request, file or message can carry. Exit 2 naming the setting, not the value."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise usage_error(f"{source} is not UTF-8 text (it holds bytes no text encoding gives); the value is "
                          "not shown. Set it as UTF-8") from None
    return value


# What would change a request's meaning if it stood in a Vault path: URL syntax (`?` starts a query,
# `#` a fragment, `%` an escape), control characters, and `.`/`..` segments, which HTTP clients and
# servers resolve away, so another path would be read than the one named.
_PATH_BREAKING = re.compile(r"[?#%\\\x00-\x1f\x7f-\x9f]")


def check_vault_path(value: str, source: str) -> str:
    """A mount or a path under it, without its outer slashes: text, segments that name something."""
    check_text(value, source)
    if _PATH_BREAKING.search(value):
        raise usage_error(f"{source} is not a valid Vault path: it holds `?`, `#`, `%`, a backslash or a control "
                          "character")
    if any(segment in ("", ".", "..") for segment in value.split("/")):
        raise usage_error(f"{source} is not a valid Vault path: it has an empty, `.` or `..` segment")
    return value


# Vault tokens, AppRole secret_ids and JWTs are printable ASCII without spaces. Anything else would
# go into an HTTP header or body where it breaks the request, and the error raised there quotes it.
_CREDENTIAL = re.compile(r"[\x21-\x7e]+")


def check_credential(value: str, source: str) -> str:
    """The credential without surrounding whitespace; exit 2 naming the setting, never showing the value."""
    text = value.strip()
    if not text:
        raise usage_error(f"{source} is empty")
    if not _CREDENTIAL.fullmatch(text):
        raise usage_error(f"{source} holds characters no token can hold (control characters, spaces inside or "
                          "non-ASCII); the value is not shown. Check how it was set")
    return text


def parse_address(value: str | None, source: str) -> VaultAddress:
    """bruin accepts http, https and unix URLs without credentials, query or fragment."""
    if not value:
        raise usage_error(f"{source} must be set to the Vault address, e.g. https://vault.example.com:8200")
    try:
        url = urllib.parse.urlsplit(value)
        port = url.port
    except ValueError:
        raise usage_error(f"{source} is not a valid URL") from None
    if url.scheme not in ("http", "https", "unix"):
        raise usage_error(f"{source} must start with http://, https:// or unix://")
    if url.username is not None or url.password is not None or url.query or url.fragment:
        raise usage_error(f"{source} must not contain user:password, a query or a fragment")
    if url.scheme == "unix":
        return _unix_address(url, source)
    if not url.hostname:
        raise usage_error(f"{source} has no host name")
    if url.path.strip("/"):
        raise usage_error(f"{source} must not have a path; give the server address only")
    default_port = 443 if url.scheme == "https" else 80
    return VaultAddress(url.scheme, url.hostname, port or default_port)


def _unix_address(url: urllib.parse.SplitResult, source: str) -> VaultAddress:
    socket_path = url.netloc + url.path
    if not socket_path:
        raise usage_error(f"{source} must name a socket path, e.g. unix:///run/vault.sock")
    return VaultAddress("unix", socket_path, 0)


# --- the settings: one entry each, in the order --help and docs/settings.md show them ------------------

_DECLARED: list[Option[Any]] = []


def _declare(option: Option[T]) -> Option[T]:
    _DECLARED.append(option)
    return option


def _vault_cli(name: str) -> tuple[str, str]:
    """The Vault CLI's variable, then OpenBao's: the fallbacks of bruin's BRUIN_VAULT_* ones."""
    return f"VAULT_{name}", f"BAO_{name}"


VAULT_HOST = _declare(Option(
    "vault_host", ("--vault-host",), "BRUIN_VAULT_HOST", "vault", "`http(s)://host[:port]` or `unix:///path.sock`; "
    "no user:password, query or fragment", parse_address, "URL", fallbacks=_vault_cli("ADDR"),
    shown_default="required"))
MOUNT_PATH = _declare(Option(
    "mount_path", ("--mount-path",), "BRUIN_VAULT_MOUNT_PATH", "vault", "the KV engine's mount, e.g. `secret`",
    _required_path, "MOUNT", shown_default="required"))
VAULT_PATH = _declare(Option(  # read by _vault_paths: the flag repeats, bruin's variable holds one path
    "path", ("--path",), "BRUIN_VAULT_PATH", "vault", "the folder under the mount holding one secret per connection; "
    "several go into one environment, in order (docs/paths.md)",
    _text, "PATH", shown_default="required (unless environment paths are given)", repeat=True,
    once_in=("import",)))
EXTRA_PATHS = _declare(Option(
    "extra_paths", (), "BRUIN_MATERIALIZE_EXTRA_PATHS", "vault", "more paths, read after `BRUIN_VAULT_PATH` (which "
    "bruin's own backend reads alone): `bruin/team-a,bruin/team-b`, or a JSON list",
    _text, "PATHS", shown_default="none", once_in=("import",)))
NAMESPACE = _declare(Option(
    "namespace", ("--namespace",), "BRUIN_VAULT_NAMESPACE", "vault", "Vault namespace, sent as the "
    "`X-Vault-Namespace` header", _text_or_none, "NAME", fallbacks=_vault_cli("NAMESPACE")))
PROXY = _declare(Option(
    "proxy", ("--proxy",), "BRUIN_VAULT_PROXY_ADDR", "vault", "an HTTP(S) proxy for every Vault request, loopback "
    "and `NO_PROXY` hosts too; a `user:password@` in it is sent as proxy authentication, never printed", _text, "URL",
    fallbacks=_vault_cli("PROXY_ADDR"), shown_default="`HTTPS_PROXY` (https) or `HTTP_PROXY` (http), unless "
    "`NO_PROXY` matches the host; never for loopback hosts and unix sockets"))
WAIT = _declare(Option(
    "wait", ("--wait",), "BRUIN_VAULT_WAIT", "vault", "wait this long for an unreachable Vault (init-containers "
    "starting before Vault's agent or the mesh), a progress line every 5 s", parse_duration, "DURATION", "0",
    shown_default="off"))

TOKEN = _declare(Option(
    "token", ("--token",), "BRUIN_VAULT_TOKEN", "auth", "a Vault token, used as is (prefer the variable: argv is "
    "visible to other users)", _text, "TOKEN"))
TOKEN_FILE = _declare(Option(
    "token_file", ("--token-file",), "BRUIN_VAULT_TOKEN_FILE", "auth", "a file holding a Vault token (a Vault "
    "Agent sink, a projected secret)", _text, "PATH"))
ROLE = _declare(Option(
    "role", ("--role",), "BRUIN_VAULT_ROLE", "auth", "Kubernetes auth role: log in with the service account token",
    _text, "ROLE"))
K8S_AUTH_MOUNT = _declare(Option(
    "k8s_auth_mount", ("--k8s-auth-mount",), "BRUIN_VAULT_K8S_AUTH_MOUNT", "auth", "the Kubernetes auth method's "
    "mount", _required_path, "MOUNT", "kubernetes"))
K8S_TOKEN_PATH_OPTION = _declare(Option(
    "k8s_token_path", ("--k8s-token-path",), "BRUIN_VAULT_K8S_TOKEN_PATH", "auth", "the service account token file "
    "for the Kubernetes login", _text, "PATH", K8S_TOKEN_PATH))
ROLE_ID = _declare(Option(
    "role_id", ("--role-id",), "BRUIN_VAULT_ROLE_ID", "auth", "AppRole role_id: log in with it and a secret_id",
    _text, "ID"))
SECRET_ID = _declare(Option(
    "secret_id", ("--secret-id",), "BRUIN_VAULT_SECRET_ID", "auth", "AppRole secret_id (prefer a file)", _text,
    "SECRET_ID"))
SECRET_ID_FILE = _declare(Option(
    "secret_id_file", ("--secret-id-file",), "BRUIN_VAULT_SECRET_ID_FILE", "auth", "a file holding the AppRole "
    "secret_id", _text, "PATH"))
APPROLE_MOUNT = _declare(Option(
    "approle_mount", ("--approle-mount",), "BRUIN_VAULT_APPROLE_MOUNT", "auth", "the AppRole auth method's mount",
    _required_path, "MOUNT", "approle"))
JWT_ROLE = _declare(Option(
    "jwt_role", ("--jwt-role",), "BRUIN_VAULT_JWT_ROLE", "auth", "JWT/OIDC auth role: log in with the JWT file's "
    "token, for CI runners holding an OIDC token", _text, "ROLE"))
JWT_FILE = _declare(Option(
    "jwt_file", ("--jwt-file",), "BRUIN_VAULT_JWT_FILE", "auth", "a file holding the JWT (a CI runner's OIDC token)",
    _text, "PATH"))
JWT_MOUNT = _declare(Option(
    "jwt_mount", ("--jwt-mount",), "BRUIN_VAULT_JWT_MOUNT", "auth", "the JWT auth method's mount", _required_path,
    "MOUNT", "jwt"))

CA_CERT = _declare(Option(
    "ca_cert", ("--ca-cert",), "BRUIN_VAULT_CACERT", "tls", "CA bundle to verify an https Vault's certificate",
    _text, "PATH", fallbacks=_vault_cli("CACERT"), shown_default="the system store"))
CA_PATH = _declare(Option(
    "ca_path", ("--ca-path",), "BRUIN_VAULT_CAPATH", "tls", "directory of CA certificates", _text, "DIR",
    fallbacks=_vault_cli("CAPATH")))
CLIENT_CERT = _declare(Option(
    "client_cert", ("--client-cert",), "BRUIN_VAULT_CLIENT_CERT", "tls", "TLS client certificate", _text, "PATH",
    fallbacks=_vault_cli("CLIENT_CERT")))
CLIENT_KEY = _declare(Option(
    "client_key", ("--client-key",), "BRUIN_VAULT_CLIENT_KEY", "tls", "TLS client key", _text, "PATH",
    fallbacks=_vault_cli("CLIENT_KEY")))
SKIP_VERIFY = _declare(Option(
    "tls_skip_verify", ("--tls-skip-verify",), "BRUIN_VAULT_SKIP_VERIFY", "tls", "do not verify Vault's "
    "certificate (with a loud warning)", parse_bool, fallbacks=_vault_cli("SKIP_VERIFY")))

TIMEOUT = _declare(Option(
    "timeout", ("--timeout",), "BRUIN_VAULT_TIMEOUT", "retries", "one budget per Vault operation, retries included "
    "(a Go duration: `500ms`, `1m30s`)", _positive_duration, "DURATION", "30s"))
MAX_RETRIES_OPTION = _declare(Option(
    "max_retries", ("--max-retries",), "BRUIN_VAULT_MAX_RETRIES", "retries", "retries of connection errors, 412 and "
    f"5xx (not 501); 0 disables; at most {MAX_RETRIES}. A 429 (rate limited) is waited out within the timeout "
    "instead, and does not count", _int_between(0, MAX_RETRIES), "N", "3"))
RETRY_WAIT_MIN = _declare(Option(
    "retry_wait_min", ("--retry-wait-min",), "BRUIN_VAULT_RETRY_WAIT_MIN", "retries", "first backoff; doubles each "
    "retry, with jitter; `Retry-After` honoured", parse_duration, "DURATION", "200ms"))
RETRY_WAIT_MAX = _declare(Option(
    "retry_wait_max", ("--retry-wait-max",), "BRUIN_VAULT_RETRY_WAIT_MAX", "retries", "longest backoff; must be >= "
    "the minimum", parse_duration, "DURATION", "2s"))

KV_VERSION = _declare(Option(
    "kv_version", ("--kv-version",), "BRUIN_MATERIALIZE_KV_VERSION", "reading", "the KV engine's version: `1`, `2` "
    "or `auto` (detected)", parse_kv_version, "{auto,1,2}", "auto"))
CONCURRENCY = _declare(Option(
    "concurrency", ("--concurrency",), "BRUIN_MATERIALIZE_CONCURRENCY", "reading", f"parallel secret reads at most "
    f"(up to {MAX_CONCURRENCY}); halved while Vault answers 429, raised again as reads succeed",
    _int_between(1, MAX_CONCURRENCY), "N", "8"))
SCHEMA = _declare(Option(
    "schema", ("--schema",), "BRUIN_MATERIALIZE_SCHEMA", "reading", "a `bruin internal connections` JSON Schema "
    "file to check against", _path_or_none, "PATH", shown_default="ask bruin, else the snapshot in the package"))
RECURSIVE = _declare(Option(
    "recursive", ("--recursive",), "BRUIN_MATERIALIZE_RECURSIVE", "reading", "read subfolders as connections named "
    "`FOLDER/NAME`", parse_bool, commands=READING))
ON_COLLISION_OPTION = _declare(Option(
    "on_collision", ("--on-collision",), "BRUIN_MATERIALIZE_ON_COLLISION", "reading", "a connection name in two paths "
    "of one environment: `error` (exit 4) or `last` (the later path wins, with a note)", _on_collision,
    "{error,last}", "error", commands=READING))
STRICT = _declare(Option(
    "strict", ("--strict",), "BRUIN_MATERIALIZE_STRICT", "reading", "schema hints (unknown fields, missing "
    "required ones) and deleted secrets become errors", parse_bool))
EXPAND_ENV = _declare(Option(
    "expand_env", ("--expand-env",), "BRUIN_MATERIALIZE_EXPAND_ENV", "reading", "allow `${NAME}` in values, for "
    "bruin to expand", parse_bool, commands=READING))
BRUIN_BIN = _declare(Option(
    "bruin_bin", (), "BRUIN_BIN", "reading", "the bruin binary for `exec` and for the schema", _text_or_none,
    "PATH", shown_default="`bruin` on PATH"))

OUTPUT = _declare(Option(
    "output", ("--output", "-o"), None, "file", "the file to write (mode 0600; missing directories are made 0700)",
    _output_file, "PATH", commands=("render",), shown_default="a new private directory on tmpfs, the file's path "
    "printed on stdout"))
RUNTIME_DIR = _declare(Option(
    "runtime_dir", ("--runtime-dir",), "BRUIN_MATERIALIZE_RUNTIME_DIR", "file", "where exec's (and `render` "
    "without `--output`'s) private directory is made", _runtime_dir, "DIR", "/dev/shm", ("XDG_RUNTIME_DIR",),
    ("render", "exec")))
ALLOW_NON_TMPFS = _declare(Option(
    "allow_non_tmpfs", ("--allow-non-tmpfs",), "BRUIN_MATERIALIZE_ALLOW_NON_TMPFS", "file", "let exec (and `render` "
    "without `--output`) write to a disk-backed directory", parse_bool, commands=("render", "exec")))
ALLOW_REPO = _declare(Option(
    "allow_repo", ("--allow-repo",), "BRUIN_MATERIALIZE_ALLOW_REPO", "file", "let render write inside a git work "
    "tree (never a file git tracks)", parse_bool, commands=("render",)))
EXEC_MODE = _declare(Option(
    "exec_mode", ("--exec-mode",), "BRUIN_MATERIALIZE_EXEC_MODE", "file", "`child`: run bruin as a child, forward "
    "signals, remove the file when it exits; `replace`: become bruin (`execve`), the file stays", _exec_mode,
    "{child,replace}", "child", commands=("exec",)))

ENVIRONMENT = _declare(Option(
    "environment", ("--environment", "-e"), None, "environments", "the bruin environment the connections go into "
    "(with environment paths: the default one, if read); for exec, bruin's own `--environment/-e/--env` argument "
    "decides; for import, the environment of FILE to import", _text_or_none, "NAME",
    commands=("render", "check", "plan", "import"), shown_default="the base file's `default_environment`, else "
    "`default`"))
ENVIRONMENT_PATH = _declare(Option(  # read by _Reader.items: a list, not one text
    "environment_path", ("--environment-path",), "BRUIN_MATERIALIZE_ENVIRONMENT_PATHS", "environments", "read "
    "SUBPATH under the mount into environment ENV; an ENV given again reads another path into it, in order (the "
    "variable: `prod=bruin/shared,prod=bruin/prod,staging=bruin/staging`, or a JSON list); replaces "
    "`BRUIN_VAULT_PATH`", _text, "ENV=SUBPATH", repeat=True))
DEFAULT_ENVIRONMENT = _declare(Option(
    "default_environment", ("--default-environment",), "BRUIN_MATERIALIZE_DEFAULT_ENVIRONMENT", "environments",
    "the file's `default_environment`", _text_or_none, "NAME", commands=READING, shown_default="the base file's, "
    "else the selected environment if read, else the first"))
BASE = _declare(Option(
    "base", ("--base",), "BRUIN_MATERIALIZE_BASE", "environments", "a bruin config to merge the connections into; "
    "never written", _text, "PATH", commands=READING, shown_default=f"`{BASE_NAME}` at the project root, if any"))
NO_BASE = _declare(Option(
    "no_base", ("--no-base",), "BRUIN_MATERIALIZE_NO_BASE", "environments", f"do not merge into the project's "
    f"`{BASE_NAME}`: render the connections alone", parse_bool, commands=READING))
PREFER_OPTION = _declare(Option(
    "prefer", ("--prefer",), "BRUIN_MATERIALIZE_PREFER", "environments", "who wins a connection name both Vault "
    "and the base have", _prefer, "{vault,base}", commands=READING, shown_default="neither: an error"))
PROJECT_ROOT = _declare(Option(
    "project_root", ("--project-root",), "BRUIN_MATERIALIZE_PROJECT_ROOT", "environments", "where relative paths "
    "in secrets are resolved", _text, "DIR", commands=READING, shown_default="the git root of the current "
    "directory, else it"))
AGAINST = _declare(Option(
    "against", ("--against",), None, "environments", "the file `plan` compares with", _text, "PATH",
    commands=("plan",), shown_default="the base file"))

OVERWRITE = _declare(Option(
    "overwrite", ("--overwrite",), None, "import", "replace existing secrets that differ", parse_bool,
    commands=("import",)))
DRY_RUN = _declare(Option(
    "dry_run", ("--dry-run",), None, "import", "print what would be created, replaced or left alone; write nothing",
    parse_bool, commands=("import",)))
RELATIVE_PATHS_OPTION = _declare(Option(
    "relative_paths", ("--relative-paths",), None, "import", "relative path fields: made absolute against FILE's "
    "directory, or kept as they are", _relative_paths, "{absolute,keep}", commands=("import",),
    shown_default="an error", choices=RELATIVE_PATHS))

FORMAT = _declare(Option(
    "format", ("--format",), None, "output", "`json`: one JSON document on stdout (findings, connections, changes; "
    "never a value), see docs/json-output.md; stderr keeps the text", _output_format, "{text,json}", "text",
    commands=("render", "check", "plan"), choices=OUTPUT_FORMATS, summary="json: one JSON document on stdout"))
QUIET = _declare(Option("quiet", ("-q", "--quiet"), None, "output", "print errors only", parse_bool))
VERBOSE = _declare(Option("verbose", ("-v", "--verbose"), None, "output", "print each step", parse_bool))
TRACEBACK = _declare(Option(
    "traceback", ("--traceback",), None, "output", "for internal errors, a traceback of files, lines and exception "
    "types, without any message (a message can quote a token or a value)", parse_bool,
    summary="for internal errors, where they happened"))

OPTIONS: tuple[Option[Any], ...] = tuple(_DECLARED)




def build_parser(prog: str = PROG, only: str | None = None) -> argparse.ArgumentParser:
    return _options.build_parser(OPTIONS, prog, only)


def settings_table_markdown() -> str:
    """docs/settings.md's settings tables (tests/test_settings.py checks docs/settings.md holds them)."""
    return _options.markdown_tables(OPTIONS)


# --- resolving: flags and environment into Settings ------------------------------------------------


def parse_settings(argv: Sequence[str], environ: Mapping[str, str], cwd: Path | None = None,
                   prog: str = PROG) -> Settings:
    args = list(argv)
    parser = build_parser(prog, only=args[0] if args[:1] and args[0] in COMMANDS else None)
    bruin_args: list[str] = []
    if args[:1] == ["exec"]:
        ours, bruin_args = split_exec_arguments(_subparser(parser, "exec"), args[1:])
        args = ["exec", *ours]
    ns = parser.parse_args(args)
    return _resolve(ns, bruin_args, environ, cwd or Path.cwd())


def split_exec_arguments(parser: argparse.ArgumentParser, args: Sequence[str]) -> tuple[list[str], list[str]]:
    """(ours, bruin's): our options come first; the first argument we do not know, or `--`, starts
    bruin's, which are then passed on verbatim, whatever names bruin's flags share with ours
    (`exec --full-refresh --timeout 3600 .` gives bruin its own --timeout)."""
    takes_value = {flag: action.nargs != 0 for action in parser._actions for flag in action.option_strings}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return list(args[:i]), list(args[i + 1:])
        flag, sep, _ = arg.partition("=")
        if flag not in takes_value or (sep and not takes_value[flag]):
            break
        i += 2 if takes_value[flag] and not sep else 1
    return list(args[:i]), list(args[i:])


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise KeyError(name)


class _Reader:
    """Each option's value for one command: the flag, else its variables in order, else its default."""

    def __init__(self, ns: argparse.Namespace, environ: Mapping[str, str], command: Command) -> None:
        self.ns, self.environ, self.command = ns, environ, command

    def __call__(self, option: Option[T]) -> T:
        return option.parse(*self.raw(option))

    def raw(self, option: Option[Any]) -> tuple[str | None, str]:
        """The text and where it came from (for the message when it is malformed)."""
        if self.command in option.commands:
            given = getattr(self.ns, option.key, None)
            if given is not None:
                return check_text(str(given), option.flags[0]), option.flags[0]
            for name in option.variables:
                if self.environ.get(name):
                    return check_text(self.environ[name], name), name
        return option.default, option.source

    def items(self, option: Option[Any]) -> tuple[list[str], str]:
        """A repeatable option: each flag's value, else the variable's items (`list_items`)."""
        given = self.given(option)
        if given:
            return [check_text(item, option.flags[0]) for item in given], option.flags[0]
        text, source = self.raw(option)
        return list_items(text, source), source

    def given(self, option: Option[Any]) -> list[str] | None:
        """A repeatable option's flag values, as given; None when the flag is not."""
        found: list[str] | None = getattr(self.ns, option.key, None) if self.command in option.commands else None
        return found


def list_items(text: str | None, source: str) -> list[str]:
    """A variable holding a list: comma-separated items (each stripped of spaces; an empty item is an
    error, as a template whose variable was empty would leave one, and a path would go unread), or, for
    items holding a comma, a JSON list of strings (text starting with `[`), taken as written."""
    text = (text or "").strip()
    if not text:
        return []
    if not text.startswith("["):
        parts = [item.strip() for item in text.split(",")]
        if "" in parts:
            raise usage_error(f"{source} has an empty item (item {parts.index('') + 1} of {len(parts)}); remove "
                              "the extra comma, or fill in what belongs there")
        return parts
    try:
        items = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: a list nested thousands deep
        items = None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise usage_error(f"{source} starts with [ but is not a JSON list of strings, e.g. [\"bruin/a\", \"bruin/b\"]")
    return items


def _command(name: str) -> Command:
    command = _pick(COMMANDS, name)
    if command is None:  # argparse only takes the commands it was given
        raise usage_error(f"unknown command {name!r}")
    return command


def _resolve(ns: argparse.Namespace, bruin_args: list[str], environ: Mapping[str, str], cwd: Path) -> Settings:
    command = _command(ns.command)
    v = _Reader(ns, environ, command)
    address = v(VAULT_HOST)
    mount = v(MOUNT_PATH)
    environment_paths = _environment_paths(*v.items(ENVIRONMENT_PATH))
    paths = _vault_paths(v, environment_paths)
    if command == "import":
        _one_path_each(paths, environment_paths)
    retry_min, retry_max = _retry_waits(v)
    timeout = v(TIMEOUT)
    auth = _auth(v, environ)
    root = _project_root(v(PROJECT_ROOT), cwd)
    proxy, proxy_source = _proxy(address, *v.raw(PROXY), environ)
    return Settings(
        command=command, address=address, mount=mount, paths=paths, auth=auth, namespace=v(NAMESPACE),
        tls=TLS(v(CA_CERT), v(CA_PATH), v(CLIENT_CERT), v(CLIENT_KEY), v(SKIP_VERIFY)),
        proxy=proxy, proxy_source=proxy_source, timeout=timeout, max_retries=v(MAX_RETRIES_OPTION),
        retry_wait_min=retry_min, retry_wait_max=retry_max, wait=v(WAIT), kv_version=v(KV_VERSION),
        concurrency=v(CONCURRENCY), recursive=v(RECURSIVE), schema_file=v(SCHEMA), strict=v(STRICT),
        expand_env=v(EXPAND_ENV), output=v(OUTPUT), runtime_dir=v(RUNTIME_DIR), allow_repo=v(ALLOW_REPO),
        allow_non_tmpfs=v(ALLOW_NON_TMPFS), bruin_bin=v(BRUIN_BIN), bruin_args=tuple(bruin_args),
        search_path=environ.get("PATH"), cache_dir=_cache_dir(environ),
        verbosity=-1 if v(QUIET) else (1 if v(VERBOSE) else 0), traceback=v(TRACEBACK),
        environment_paths=environment_paths, on_collision=v(ON_COLLISION_OPTION),
        default_environment=v(DEFAULT_ENVIRONMENT),
        selected_environment=_selected_environment(bruin_args, v(ENVIRONMENT)),
        base=_base(v(BASE), v(NO_BASE), root, cwd), prefer=v(PREFER_OPTION), project_root=root,
        against=_absolute(v(AGAINST), cwd), output_format=v(FORMAT), exec_mode=v(EXEC_MODE),
        importing=_import_job(ns, v, cwd) if command == "import" else None,
    )


def _vault_paths(v: _Reader, environment_paths: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """--path (repeated), else BRUIN_VAULT_PATH then BRUIN_MATERIALIZE_EXTRA_PATHS; none with environment paths."""
    flags = v.given(VAULT_PATH)
    extra, extra_source = v.raw(EXTRA_PATHS)
    if environment_paths:
        # BRUIN_VAULT_PATH may still be set for bruin's own backend: not read. Ours would be lost: refused.
        for given, source in ((flags, VAULT_PATH.flags[0]), (list_items(extra, extra_source), extra_source)):
            if given:
                raise usage_error(f"{source} and {ENVIRONMENT_PATH.flags[0]} do not mix: give each environment "
                                  "its paths as ENV=PATH items")
        return ()
    if flags:
        items = [(_required_path(path, _which(VAULT_PATH.flags[0], i, len(flags))), VAULT_PATH.flags[0])
                 for i, path in enumerate(flags)]
    else:
        extras = list_items(extra, extra_source)
        items = [(_required_path(*v.raw(VAULT_PATH)), VAULT_PATH.source)]
        items += [(_required_path(path, _which(extra_source, i, len(extras))), extra_source)
                  for i, path in enumerate(extras)]
    seen: set[str] = set()
    for path, source in items:
        if path in seen:
            raise usage_error(f"{source} names path {path!r} twice")
        seen.add(path)
    return tuple(path for path, _ in items)


def _which(source: str, index: int, count: int) -> str:
    """The setting, and which of its several values a message is about (values are never shown)."""
    return source if count == 1 else f"{source} (item {index + 1} of {count})"


def _one_path_each(paths: tuple[str, ...], environment_paths: tuple[tuple[str, str], ...]) -> None:
    """import writes each environment's connections into one path: several would leave the choice to us."""
    names = [env for env, _ in environment_paths]
    repeated = next((env for env in names if names.count(env) > 1), None)
    if len(paths) > 1 or repeated is not None:
        which = f"environment {repeated!r}" if repeated is not None else "the environment"
        raise usage_error(f"import writes {which} into one path, and several are given; give one per environment")


def _retry_waits(v: _Reader) -> tuple[float, float]:
    retry_min, retry_max = v(RETRY_WAIT_MIN), v(RETRY_WAIT_MAX)
    if retry_max < retry_min:
        raise usage_error(f"{v.raw(RETRY_WAIT_MAX)[1]} must be at least {RETRY_WAIT_MIN.variable}")
    return retry_min, retry_max


def _selected_environment(bruin_args: Sequence[str], explicit: str | None) -> str | None:
    chosen = bruin_environment(bruin_args)
    if chosen is not None:
        return check_text(chosen, "bruin's --environment argument")  # it names an environment of the file
    return explicit


def _import_job(ns: argparse.Namespace, v: _Reader, cwd: Path) -> ImportJob:
    file = _absolute(check_text(ns.file, "FILE") if ns.file else None, cwd)
    if file is None:
        raise usage_error("import needs FILE, the bruin config file to import")
    return ImportJob(file, v(OVERWRITE), v(DRY_RUN), v(RELATIVE_PATHS_OPTION))


def _auth(v: _Reader, environ: Mapping[str, str]) -> Auth:
    """The first credential set wins: bruin's variables, then the Vault CLI's, then ~/.vault-token."""
    token, source = v.raw(TOKEN)
    if token:
        return Auth("token", source, token=check_credential(token, source))
    token_file, source = v.raw(TOKEN_FILE)
    if token_file:
        return Auth("token", source, token_file=Path(token_file))
    role, source = v.raw(ROLE)
    if role:
        jwt_path = v(K8S_TOKEN_PATH_OPTION) or K8S_TOKEN_PATH
        return Auth("kubernetes", source, token_file=Path(jwt_path), mount=v(K8S_AUTH_MOUNT), role=role)
    role_id, source = v.raw(ROLE_ID)
    if role_id:
        return _approle(v, role_id, source)
    jwt_role, source = v.raw(JWT_ROLE)
    if jwt_role:
        jwt_file = v(JWT_FILE)
        if not jwt_file:
            raise usage_error(f"{source} needs {JWT_FILE.variable}, the file holding the JWT")
        return Auth("jwt", source, token_file=Path(jwt_file), mount=v(JWT_MOUNT), role=jwt_role)
    return _vault_cli_token(environ)


def _approle(v: _Reader, role_id: str, source: str) -> Auth:
    secret_id, secret_id_file = v(SECRET_ID), v(SECRET_ID_FILE)
    if not secret_id and not secret_id_file:
        raise usage_error(f"{source} needs {SECRET_ID.variable} or {SECRET_ID_FILE.variable}")
    mount = v(APPROLE_MOUNT)
    if secret_id:
        secret_id = check_credential(secret_id, SECRET_ID.source)
    return Auth("approle", source, mount=mount, role=role_id, secret_id=secret_id,
                secret_id_file=Path(secret_id_file) if secret_id_file and not secret_id else None)


def _vault_cli_token(environ: Mapping[str, str]) -> Auth:
    """After bruin's settings: the Vault CLI's token, OpenBao's, then the file `vault login` writes."""
    for name in _vault_cli("TOKEN"):
        if environ.get(name):
            return Auth("token", name, token=check_credential(environ[name], name))
    home_token = Path(environ["HOME"]) / ".vault-token" if environ.get("HOME") else None
    if home_token is not None and home_token.is_file():
        return Auth("token", "~/.vault-token", token_file=home_token)
    first = ", ".join(str(o.variable) for o in (TOKEN, TOKEN_FILE, ROLE, ROLE_ID))
    raise usage_error(f"no Vault credentials: set {first} or {JWT_ROLE.variable}")


def _cache_dir(environ: Mapping[str, str]) -> Path | None:
    base = environ.get("XDG_CACHE_HOME") or (str(Path(environ["HOME"]) / ".cache") if environ.get("HOME") else "")
    return Path(base) / "bruin-materialize" if base else None


def _environment_paths(items: list[str], source: str) -> tuple[tuple[str, str], ...]:
    """--environment-path ENV=SUBPATH (repeated), else BRUIN_MATERIALIZE_ENVIRONMENT_PATHS=ENV=SUBPATH,...
    An environment named again gets another path, read after the ones before."""
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not name or not path.strip().strip("/"):
            raise usage_error(f"{_which(source, index, len(items))} takes ENV=SUBPATH, e.g. prod=bruin/prod (got an "
                              "item without both)")
        pair = (name, check_vault_path(path.strip().strip("/"), f"{source} ({name})"))
        if pair in pairs:
            raise usage_error(f"{source} names path {pair[1]!r} twice for environment {name!r}")
        pairs.append(pair)
    return tuple(pairs)


def _project_root(explicit: str | None, cwd: Path) -> Path:
    if explicit:
        return Path(os.path.normpath(cwd / explicit))
    return find_project_root(cwd)


def _base(explicit: str | None, no_base: bool, root: Path, cwd: Path) -> Path | None:
    """--base wins; else the project's own .bruin.yml when there is one (a missing --base is an error later)."""
    if no_base:
        return None
    if explicit:
        return _absolute(explicit, cwd)
    default = root / BASE_NAME
    return default if default.is_file() else None


def _absolute(value: str | None, cwd: Path) -> Path | None:
    if not value:
        return None
    return Path(os.path.normpath(cwd / value))


def flag_name(arg: str) -> tuple[str | None, str | None]:
    """(name, inline value) of a flag as bruin's parser (urfave/cli, Go's flag package) reads it:
    `-x`, `--x`, `-x=V` and `--x=V` are all the flag `x`. (None, None) for anything else."""
    if not arg.startswith("-") or arg in ("-", "--") or arg.startswith("---"):
        return None, None
    name, sep, value = arg.lstrip("-").partition("=")
    return name, (value if sep else None)


_ENV_FLAGS = frozenset({"environment", "e", "env"})  # bruin run's --environment and its aliases


def bruin_environment(args: Sequence[str]) -> str | None:
    """The last --environment/-e/--env value in bruin's arguments, in every spelling bruin's flag
    parser takes (`-e X`, `--env=X`, `-environment X`, ...); none after `--`."""
    found = None
    i = 0
    while i < len(args):
        if args[i] == "--":
            break
        name, value = flag_name(args[i])
        if name in _ENV_FLAGS:
            if value is None and i + 1 < len(args):
                value = args[i + 1]
                i += 1
            found = value if value is not None else found
        i += 1
    return found


def _proxy(address: VaultAddress, value: str | None, source: str,
           environ: Mapping[str, str]) -> tuple[str | None, str]:
    """The proxy for Vault's address, chosen as the Vault CLI (Go's ProxyFromEnvironment) chooses it, and
    the setting that named it (for messages: a proxy asking for credentials names where to put them).

    VAULT_PROXY_ADDR (or ours) is used for every request; otherwise HTTPS_PROXY or HTTP_PROXY by the
    address's scheme, unless NO_PROXY matches the host. Loopback hosts and unix sockets are never proxied.
    """
    if address.scheme == "unix":
        return None, ""
    if not value:
        variable = "HTTPS_PROXY" if address.scheme == "https" else "HTTP_PROXY"
        value, source = _either_case(variable, environ)
        if not value:
            return None, ""
        no_proxy, no_proxy_source = _either_case("NO_PROXY", environ)
        if _bypasses_proxy(address, check_text(no_proxy or "", no_proxy_source)):
            return None, ""
        check_text(value, source)  # ours were checked as they were read; these only when they count
    url = value if "://" in value else "http://" + value
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        raise usage_error(f"{source} is not a valid proxy URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise usage_error(f"{source} must be an http:// or https:// proxy URL")
    return url, source


def _either_case(name: str, environ: Mapping[str, str]) -> tuple[str | None, str]:
    for variable in (name, name.lower()):
        if environ.get(variable):
            return environ[variable], variable
    return None, name


def _bypasses_proxy(address: VaultAddress, no_proxy: str) -> bool:
    """NO_PROXY as Go reads it: `*`, IP addresses, CIDR ranges, and domains (with their subdomains).

    Not urllib.request.proxy_bypass_environment or requests.utils.should_bypass_proxies: the first
    knows no CIDR ranges and neither exempts loopback as Go does; both read os.environ themselves."""
    import ipaddress

    host = address.host.lower().rstrip(".")
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if host == "localhost" or (ip is not None and ip.is_loopback):
        return True
    for entry in filter(None, (e.strip().lower() for e in no_proxy.split(","))):
        if entry == "*":
            return True
        name, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if port and port != str(address.port):
            continue
        if ip is not None and "/" in name:
            try:
                if ip in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.strip("[]").removeprefix("*")
        if (host == name and not name.startswith(".")) or host.endswith("." + name.lstrip(".")):
            return True
    return False
