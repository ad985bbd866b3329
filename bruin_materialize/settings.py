"""Flags and environment, resolved once into one immutable record.

Nothing below `cli.main` reads `os.environ` or argparse: they get a `Settings`.
The Vault variables are bruin's own (`bruin run --secrets-backend vault`), with bruin's defaults and
validation, so a pod spec written for bruin's native backend works unchanged.
"""

from __future__ import annotations

import argparse
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, NoReturn

from bruin_materialize import __version__
from bruin_materialize.errors import usage_error
from bruin_materialize.paths import project_root as find_project_root

BASE_NAME = ".bruin.yml"  # the file bruin reads at a project's root
PREFER = ("vault", "base")
EXEC_MODES = ("child", "replace")  # exec: run bruin as a child and clean up, or become it (execve)


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

    method: str  # "token", "kubernetes", "approle" or "jwt"
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
    relative_paths: str | None  # "absolute" or "keep"; None: a relative path is an error


class Settings(NamedTuple):
    command: str
    address: VaultAddress
    mount: str
    path: str
    auth: Auth
    namespace: str | None
    tls: TLS
    proxy: str | None  # the HTTP proxy to reach Vault through, or None
    timeout: float
    max_retries: int
    retry_wait_min: float
    retry_wait_max: float
    wait: float  # seconds to wait for Vault to become reachable; 0: off
    kv_version: int | None  # None: detect
    concurrency: int
    recursive: bool
    schema_file: Path | None
    strict: bool
    expand_env: bool
    output: Path | None  # render
    runtime_dir: Path | None  # exec: where the private directory is made
    allow_non_tmpfs: bool
    allow_repo: bool
    bruin_bin: str | None  # BRUIN_BIN, or None to look `bruin` up on PATH
    bruin_args: tuple[str, ...]  # exec: what follows `bruin run --config-file FILE`
    search_path: str | None  # PATH, to find bruin
    cache_dir: Path | None  # where the schema from bruin is cached
    verbosity: int  # -1 quiet, 0 normal, 1 verbose
    traceback: bool
    # Several environments in one file: (environment, path) pairs; empty: one environment, from `path`.
    environment_paths: tuple[tuple[str, str], ...] = ()
    default_environment: str | None = None  # --default-environment, as given
    selected_environment: str | None = None  # chosen by bruin's arguments or --environment, if at all
    base: Path | None = None  # the file the connections are merged into; None: the template alone
    prefer: str | None = None  # "vault" or "base": who wins a connection both have; None: an error
    project_root: Path = Path(".")  # where relative paths in connections are resolved
    against: Path | None = None  # plan: the file compared with
    output_format: str = "text"  # check, plan, render: "json" puts one JSON document on stdout
    exec_mode: str = "child"  # exec: "child" (wait, then remove the file) or "replace" (execve)
    importing: ImportJob | None = None  # import: the file and its options

    @property
    def environment(self) -> str:
        """The environment bruin will select when the file does not say otherwise."""
        return self.selected_environment or "default"


# One row per setting: flag, environment variable, help. Flags win over the environment.
_VAULT_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("--vault-host", "BRUIN_VAULT_HOST", "Vault address: http(s)://host[:port] or unix:///path.sock"),
    ("--mount-path", "BRUIN_VAULT_MOUNT_PATH", "path of the KV secrets engine, e.g. secret"),
    ("--path", "BRUIN_VAULT_PATH", "subpath in the engine that holds one secret per connection"),
    ("--token", "BRUIN_VAULT_TOKEN", "Vault token (prefer the environment variable: argv is visible)"),
    ("--token-file", "BRUIN_VAULT_TOKEN_FILE", "file holding a Vault token (a Vault Agent sink)"),
    ("--role", "BRUIN_VAULT_ROLE", "Kubernetes auth role"),
    ("--k8s-auth-mount", "BRUIN_VAULT_K8S_AUTH_MOUNT", "Kubernetes auth mount (default: kubernetes)"),
    ("--k8s-token-path", "BRUIN_VAULT_K8S_TOKEN_PATH", "service account token file"),
    ("--role-id", "BRUIN_VAULT_ROLE_ID", "AppRole role_id"),
    ("--secret-id", "BRUIN_VAULT_SECRET_ID", "AppRole secret_id (prefer a file)"),
    ("--secret-id-file", "BRUIN_VAULT_SECRET_ID_FILE", "file holding the AppRole secret_id"),
    ("--approle-mount", "BRUIN_VAULT_APPROLE_MOUNT", "AppRole auth mount (default: approle)"),
    ("--jwt-role", "BRUIN_VAULT_JWT_ROLE", "JWT/OIDC auth role"),
    ("--jwt-file", "BRUIN_VAULT_JWT_FILE", "file holding the JWT (a CI runner's OIDC token)"),
    ("--jwt-mount", "BRUIN_VAULT_JWT_MOUNT", "JWT auth mount (default: jwt)"),
    ("--namespace", "BRUIN_VAULT_NAMESPACE", "Vault namespace [fallback VAULT_NAMESPACE]"),
    ("--ca-cert", "BRUIN_VAULT_CACERT", "CA bundle to verify Vault's certificate [fallback VAULT_CACERT]"),
    ("--ca-path", "BRUIN_VAULT_CAPATH", "directory of CA certificates [fallback VAULT_CAPATH]"),
    ("--client-cert", "BRUIN_VAULT_CLIENT_CERT", "TLS client certificate [fallback VAULT_CLIENT_CERT]"),
    ("--client-key", "BRUIN_VAULT_CLIENT_KEY", "TLS client key [fallback VAULT_CLIENT_KEY]"),
    ("--proxy", "BRUIN_VAULT_PROXY_ADDR", "HTTP proxy to reach Vault through [fallback VAULT_PROXY_ADDR; "
     "else HTTPS_PROXY/HTTP_PROXY and NO_PROXY]"),
    ("--timeout", "BRUIN_VAULT_TIMEOUT", "budget per Vault operation, retries included (default 30s)"),
    ("--max-retries", "BRUIN_VAULT_MAX_RETRIES", "retries per operation, 0 disables (default 3)"),
    ("--retry-wait-min", "BRUIN_VAULT_RETRY_WAIT_MIN", "first backoff wait (default 200ms)"),
    ("--retry-wait-max", "BRUIN_VAULT_RETRY_WAIT_MAX", "longest backoff wait (default 2s)"),
    ("--wait", "BRUIN_VAULT_WAIT", "wait this long for Vault to become reachable (e.g. 2m; default off)"),
    ("--kv-version", "BRUIN_MATERIALIZE_KV_VERSION", "KV engine version: auto, 1 or 2 (default auto)"),
    ("--concurrency", "BRUIN_MATERIALIZE_CONCURRENCY", "parallel reads (default 8)"),
    ("--schema", "BRUIN_MATERIALIZE_SCHEMA", "connections JSON Schema file (default: ask bruin)"),
)
_FLAG_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("--recursive", "BRUIN_MATERIALIZE_RECURSIVE", "read subfolders too, as connections named SUB/NAME"),
    ("--strict", "BRUIN_MATERIALIZE_STRICT", "unknown fields, missing required fields and deleted secrets are errors"),
    ("--expand-env", "BRUIN_MATERIALIZE_EXPAND_ENV", "let bruin expand ${NAME} inside secret values"),
    ("--allow-non-tmpfs", "BRUIN_MATERIALIZE_ALLOW_NON_TMPFS",
     "exec, render without --output: allow a runtime directory that is not tmpfs"),
    ("--allow-repo", "BRUIN_MATERIALIZE_ALLOW_REPO", "render: allow an output inside a git work tree"),
    ("--tls-skip-verify", "BRUIN_VAULT_SKIP_VERIFY", "do not verify Vault's certificate [fallback VAULT_SKIP_VERIFY]"),
)
_FILE_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("--default-environment", "BRUIN_MATERIALIZE_DEFAULT_ENVIRONMENT",
     "default_environment of the file (default: the base's, else the selected one if read, else the first)"),
    ("--base", "BRUIN_MATERIALIZE_BASE", "bruin config file to merge the connections into (default: "
     f"{BASE_NAME} at the project root, if there is one)"),
    ("--prefer", "BRUIN_MATERIALIZE_PREFER", "vault or base: who wins a connection name both have "
     "(default: neither, it is an error)"),
    ("--project-root", "BRUIN_MATERIALIZE_PROJECT_ROOT", "relative paths in connections are resolved here "
     "(default: the git root of the current directory, else the current directory)"),
)
# The Vault CLI's variables, then OpenBao's, used when the BRUIN_* one is not set.
_FALLBACKS = {
    f"BRUIN_VAULT_{name}": (f"VAULT_{cli}", f"BAO_{cli}")
    for name, cli in (("HOST", "ADDR"), ("NAMESPACE", "NAMESPACE"), ("CACERT", "CACERT"), ("CAPATH", "CAPATH"),
                      ("CLIENT_CERT", "CLIENT_CERT"), ("CLIENT_KEY", "CLIENT_KEY"),
                      ("SKIP_VERIFY", "SKIP_VERIFY"), ("PROXY_ADDR", "PROXY_ADDR"))
}
K8S_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
_DEFAULTS = {
    "BRUIN_VAULT_K8S_AUTH_MOUNT": "kubernetes",
    "BRUIN_VAULT_K8S_TOKEN_PATH": K8S_TOKEN_PATH,
    "BRUIN_VAULT_APPROLE_MOUNT": "approle",
    "BRUIN_VAULT_JWT_MOUNT": "jwt",
    "BRUIN_VAULT_TIMEOUT": "30s",
    "BRUIN_VAULT_MAX_RETRIES": "3",
    "BRUIN_VAULT_RETRY_WAIT_MIN": "200ms",
    "BRUIN_VAULT_RETRY_WAIT_MAX": "2s",
    "BRUIN_VAULT_WAIT": "0",
    "BRUIN_MATERIALIZE_KV_VERSION": "auto",
    "BRUIN_MATERIALIZE_CONCURRENCY": "8",
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is our one-line error (exit 2), not a usage block."""

    def error(self, message: str) -> NoReturn:
        raise usage_error(f"{self.prog}: {message} (see --help)")


def _common_parser() -> _Parser:
    common = _Parser(add_help=False, allow_abbrev=False)
    vault = common.add_argument_group("Vault (flags win over the environment)")
    for flag, env, help_text in _VAULT_OPTIONS:
        vault.add_argument(flag, dest=_dest(flag), metavar=env, help=f"{help_text} [{env}]")
    for flag, env, help_text in _FLAG_OPTIONS:
        vault.add_argument(flag, dest=_dest(flag), action="store_true", default=None, help=f"{help_text} [{env}]")
    files = common.add_argument_group("environments and base file")
    files.add_argument("--environment-path", dest="environment_path", action="append", metavar="ENV=SUBPATH",
                       help="read SUBPATH under the mount into environment ENV; repeat for each environment "
                       "[BRUIN_MATERIALIZE_ENVIRONMENT_PATHS=ENV=SUBPATH,...]; replaces BRUIN_VAULT_PATH")
    for flag, env, help_text in _FILE_OPTIONS:
        files.add_argument(flag, dest=_dest(flag), metavar=env.removeprefix("BRUIN_MATERIALIZE_"),
                           help=f"{help_text} [{env}]")
    files.add_argument("--no-base", dest="no_base", action="store_true", default=None,
                       help=f"do not merge into {BASE_NAME} [BRUIN_MATERIALIZE_NO_BASE]")
    out = common.add_argument_group("output")
    out.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    out.add_argument("-v", "--verbose", action="store_true", help="print each step")
    out.add_argument("--traceback", action="store_true", help="show a traceback on internal errors")
    return common


_ENVIRONMENT_HELP = ("bruin environment the connections go into (default: the base file's default_environment, "
                     "else default); with environment paths, the default one if it is read")


def build_parser() -> argparse.ArgumentParser:
    common = _common_parser()
    parser = _Parser(
        prog="materialize.py",
        description="Read every bruin connection secret from a Vault KV engine, check them, and render "
        "a bruin config file (or exec `bruin run` on it).",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"bruin-materialize {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{render,check,exec,plan,import}")
    render = sub.add_parser("render", parents=[common], allow_abbrev=False, help="write the config file",
                            description="Read, check and write the bruin config file (mode 0600). Without "
                            "--output: into a fresh private directory on tmpfs, and print the file's path.")
    render.add_argument("--output", "-o", metavar="PATH", help="file to write (default: a new file on tmpfs, "
                        "its path printed on stdout)")
    render.add_argument("--runtime-dir", metavar="DIR", help="without --output: where the private directory is "
                        "made [BRUIN_MATERIALIZE_RUNTIME_DIR] (default: $XDG_RUNTIME_DIR, else /dev/shm)")
    render.add_argument("--environment", "-e", metavar="NAME", help=_ENVIRONMENT_HELP)
    check = sub.add_parser("check", parents=[common], allow_abbrev=False, help="read and check, write nothing",
                           description="Read and check every secret; exit 0 only if the config would be valid.")
    check.add_argument("--environment", "-e", metavar="NAME", help=_ENVIRONMENT_HELP)
    exec_ = sub.add_parser(
        "exec", parents=[common], allow_abbrev=False, help="render onto tmpfs, then become `bruin run`",
        usage="%(prog)s [OPTIONS] [--] [BRUIN_RUN_ARGS...]",
        description="Render into a fresh private directory on tmpfs, run "
        "`bruin run --config-file FILE BRUIN_RUN_ARGS...`, and remove the directory when bruin exits. "
        "Options of this tool come first: the first argument it does not know, or `--`, starts bruin's "
        "arguments, which are passed on verbatim.",
    )
    exec_.add_argument("--runtime-dir", metavar="DIR",
                       help="where the private directory is made [BRUIN_MATERIALIZE_RUNTIME_DIR] "
                       "(default: $XDG_RUNTIME_DIR, else /dev/shm)")
    exec_.add_argument("--exec-mode", metavar="child|replace",
                       help="child: run bruin as a child, forward signals, remove the file when it exits "
                       "(default); replace: become bruin (execve), the file stays [BRUIN_MATERIALIZE_EXEC_MODE]")
    plan = sub.add_parser(
        "plan", parents=[common], allow_abbrev=False, help="show what a render would change in a file",
        description="Read and check as `check` does, then compare the file that would be rendered with FILE: "
        "one line per connection added (+), removed (-) or changed (~, naming the fields), never a value. "
        "Exit 0: no change; 5: changes; 1-4: an error, as for the other commands.",
    )
    plan.add_argument("--against", metavar="FILE", help="the file to compare with (default: the base file)")
    plan.add_argument("--environment", "-e", metavar="NAME", help=_ENVIRONMENT_HELP)
    for reporting in (render, check, plan):
        _add_format(reporting)
    _add_import_parser(sub, common)
    return parser


def _add_format(parser: argparse.ArgumentParser) -> None:
    # Not -o/--output (render's file); bruin's own `-o json` would collide with it.
    parser.add_argument("--format", choices=("text", "json"), default=None,
                        help="json: one JSON document on stdout (findings, connections, changes; never a value); "
                        "stderr keeps the text (default: text)")


RELATIVE_PATHS = ("absolute", "keep")


def _add_import_parser(sub: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    parser = sub.add_parser(
        "import", parents=[common], allow_abbrev=False, help="write a .bruin.yml's connections into Vault",
        description="Check every connection of FILE as `check` does, then write each as one secret "
        "{type, details} at MOUNT/PATH/NAME. An existing secret is left alone unless --overwrite.",
    )
    parser.add_argument("file", metavar="FILE", help="the bruin config file to import (a .bruin.yml)")
    parser.add_argument("--environment", "-e", metavar="NAME", help="the environment of FILE to import (default: "
                        "its default_environment, else default); with environment paths, one of them only")
    parser.add_argument("--overwrite", action="store_true", help="replace existing secrets that differ")
    parser.add_argument("--dry-run", dest="dry_run", action="store_true",
                        help="print what would be created, changed or left alone; write nothing")
    parser.add_argument("--relative-paths", dest="relative_paths", choices=RELATIVE_PATHS,
                        help="relative path fields: made absolute against FILE's directory, or kept as they are "
                        "(default: they are an error)")


def _import_job(ns: argparse.Namespace, cwd: Path) -> ImportJob | None:
    if ns.command != "import":
        return None
    file = _absolute(ns.file, cwd)
    if file is None:
        raise usage_error("import needs FILE, the bruin config file to import")
    return ImportJob(file, ns.overwrite, ns.dry_run, ns.relative_paths)


def parse_settings(argv: Sequence[str], environ: Mapping[str, str], cwd: Path | None = None) -> Settings:
    parser = build_parser()
    args = list(argv)
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


def _lookup(ns: argparse.Namespace, flag: str, env: str, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """The value and where it came from (for the message when it is malformed)."""
    value = getattr(ns, _dest(flag), None)
    if value is not None:
        return str(value), flag
    for name in (env, *_FALLBACKS.get(env, ())):
        if environ.get(name):
            return environ[name], name
    return _DEFAULTS.get(env), env


def _resolve(ns: argparse.Namespace, bruin_args: list[str], environ: Mapping[str, str], cwd: Path) -> Settings:
    def get(flag: str, env: str) -> tuple[str | None, str]:
        return _lookup(ns, flag, env, environ)

    def flag_on(flag: str, env: str) -> bool:
        if getattr(ns, _dest(flag)):
            return True
        for name in (env, *_FALLBACKS.get(env, ())):
            if environ.get(name):
                return parse_bool(environ[name], name)
        return False

    address = parse_address(*get("--vault-host", "BRUIN_VAULT_HOST"))
    mount = _required_path(*get("--mount-path", "BRUIN_VAULT_MOUNT_PATH"))
    environment_paths = _environment_paths(ns, environ)
    path_value, path_source = get("--path", "BRUIN_VAULT_PATH")
    # With environment paths, BRUIN_VAULT_PATH (still set for bruin's own backend, maybe) is not read.
    path = (path_value or "").strip("/") if environment_paths else _required_path(path_value, path_source)
    retry_min = parse_duration(*get("--retry-wait-min", "BRUIN_VAULT_RETRY_WAIT_MIN"))
    retry_max_raw, retry_max_src = get("--retry-wait-max", "BRUIN_VAULT_RETRY_WAIT_MAX")
    retry_max = parse_duration(retry_max_raw, retry_max_src)
    if retry_max < retry_min:
        raise usage_error(f"{retry_max_src} must be at least BRUIN_VAULT_RETRY_WAIT_MIN")
    timeout_raw, timeout_src = get("--timeout", "BRUIN_VAULT_TIMEOUT")
    timeout = parse_duration(timeout_raw, timeout_src)
    if timeout <= 0:
        raise usage_error(f"{timeout_src} must be a positive duration such as 30s")
    runtime_dir = getattr(ns, "runtime_dir", None) or environ.get("BRUIN_MATERIALIZE_RUNTIME_DIR")
    output = getattr(ns, "output", None)
    schema, _ = get("--schema", "BRUIN_MATERIALIZE_SCHEMA")
    auth = _auth(get, environ)
    root = _project_root(get("--project-root", "BRUIN_MATERIALIZE_PROJECT_ROOT")[0], cwd)
    return Settings(
        command=ns.command,
        address=address,
        mount=mount,
        path=path,
        auth=auth,
        namespace=get("--namespace", "BRUIN_VAULT_NAMESPACE")[0] or None,
        tls=TLS(
            ca_cert=get("--ca-cert", "BRUIN_VAULT_CACERT")[0],
            ca_path=get("--ca-path", "BRUIN_VAULT_CAPATH")[0],
            client_cert=get("--client-cert", "BRUIN_VAULT_CLIENT_CERT")[0],
            client_key=get("--client-key", "BRUIN_VAULT_CLIENT_KEY")[0],
            skip_verify=flag_on("--tls-skip-verify", "BRUIN_VAULT_SKIP_VERIFY"),
        ),
        proxy=_proxy(address, *get("--proxy", "BRUIN_VAULT_PROXY_ADDR"), environ),
        timeout=timeout,
        max_retries=parse_int(*get("--max-retries", "BRUIN_VAULT_MAX_RETRIES"), minimum=0, maximum=MAX_RETRIES),
        retry_wait_min=retry_min,
        retry_wait_max=retry_max,
        wait=parse_duration(*get("--wait", "BRUIN_VAULT_WAIT")),
        kv_version=parse_kv_version(*get("--kv-version", "BRUIN_MATERIALIZE_KV_VERSION")),
        concurrency=parse_int(*get("--concurrency", "BRUIN_MATERIALIZE_CONCURRENCY"), minimum=1,
                              maximum=MAX_CONCURRENCY),
        recursive=flag_on("--recursive", "BRUIN_MATERIALIZE_RECURSIVE"),
        schema_file=Path(schema) if schema else None,
        strict=flag_on("--strict", "BRUIN_MATERIALIZE_STRICT"),
        expand_env=flag_on("--expand-env", "BRUIN_MATERIALIZE_EXPAND_ENV"),
        output=Path(output) if output else None,
        runtime_dir=Path(runtime_dir) if runtime_dir else _default_runtime_dir(environ),
        allow_repo=flag_on("--allow-repo", "BRUIN_MATERIALIZE_ALLOW_REPO"),
        allow_non_tmpfs=flag_on("--allow-non-tmpfs", "BRUIN_MATERIALIZE_ALLOW_NON_TMPFS"),
        bruin_bin=environ.get("BRUIN_BIN") or None,
        bruin_args=tuple(bruin_args),
        search_path=environ.get("PATH"),
        cache_dir=_cache_dir(environ),
        verbosity=-1 if ns.quiet else (1 if ns.verbose else 0),
        traceback=ns.traceback,
        environment_paths=environment_paths,
        default_environment=get("--default-environment", "BRUIN_MATERIALIZE_DEFAULT_ENVIRONMENT")[0] or None,
        selected_environment=_selected_environment(ns, bruin_args),
        base=_base(get("--base", "BRUIN_MATERIALIZE_BASE")[0], flag_on("--no-base", "BRUIN_MATERIALIZE_NO_BASE"),
                   root, cwd),
        prefer=_prefer(*get("--prefer", "BRUIN_MATERIALIZE_PREFER")),
        project_root=root,
        against=_absolute(getattr(ns, "against", None), cwd),
        output_format=getattr(ns, "format", None) or "text",
        exec_mode=_exec_mode(*get("--exec-mode", "BRUIN_MATERIALIZE_EXEC_MODE")) if ns.command == "exec" else "child",
        importing=_import_job(ns, cwd),
    )


_Getter = Callable[[str, str], "tuple[str | None, str]"]


def _auth(get: _Getter, environ: Mapping[str, str]) -> Auth:
    """The first credential set wins: bruin's variables, then the Vault CLI's, then ~/.vault-token."""
    token, source = get("--token", "BRUIN_VAULT_TOKEN")
    if token:
        return Auth("token", source, token=check_credential(token, source))
    token_file, source = get("--token-file", "BRUIN_VAULT_TOKEN_FILE")
    if token_file:
        return Auth("token", source, token_file=Path(token_file))
    role, source = get("--role", "BRUIN_VAULT_ROLE")
    if role:
        jwt_path = get("--k8s-token-path", "BRUIN_VAULT_K8S_TOKEN_PATH")[0] or K8S_TOKEN_PATH
        mount = _required_path(*get("--k8s-auth-mount", "BRUIN_VAULT_K8S_AUTH_MOUNT"))
        return Auth("kubernetes", source, token_file=Path(jwt_path), mount=mount, role=role)
    role_id, source = get("--role-id", "BRUIN_VAULT_ROLE_ID")
    if role_id:
        secret_id = get("--secret-id", "BRUIN_VAULT_SECRET_ID")[0]
        secret_id_file = get("--secret-id-file", "BRUIN_VAULT_SECRET_ID_FILE")[0]
        if not secret_id and not secret_id_file:
            raise usage_error(f"{source} needs BRUIN_VAULT_SECRET_ID or BRUIN_VAULT_SECRET_ID_FILE")
        mount = _required_path(*get("--approle-mount", "BRUIN_VAULT_APPROLE_MOUNT"))
        if secret_id:
            secret_id = check_credential(secret_id, "BRUIN_VAULT_SECRET_ID")
        return Auth("approle", source, mount=mount, role=role_id, secret_id=secret_id,
                    secret_id_file=Path(secret_id_file) if secret_id_file and not secret_id else None)
    jwt_role, source = get("--jwt-role", "BRUIN_VAULT_JWT_ROLE")
    if jwt_role:
        jwt_file, _ = get("--jwt-file", "BRUIN_VAULT_JWT_FILE")
        if not jwt_file:
            raise usage_error(f"{source} needs BRUIN_VAULT_JWT_FILE, the file holding the JWT")
        mount = _required_path(*get("--jwt-mount", "BRUIN_VAULT_JWT_MOUNT"))
        return Auth("jwt", source, token_file=Path(jwt_file), mount=mount, role=jwt_role)
    for name in ("VAULT_TOKEN", "BAO_TOKEN"):
        if environ.get(name):
            return Auth("token", name, token=check_credential(environ[name], name))
    home_token = Path(environ["HOME"]) / ".vault-token" if environ.get("HOME") else None
    if home_token is not None and home_token.is_file():
        return Auth("token", "~/.vault-token", token_file=home_token)
    raise usage_error("no Vault credentials: set BRUIN_VAULT_TOKEN, BRUIN_VAULT_TOKEN_FILE, BRUIN_VAULT_ROLE, "
                      "BRUIN_VAULT_ROLE_ID or BRUIN_VAULT_JWT_ROLE")


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


def _required_path(value: str | None, source: str) -> str:
    if value is None or not value.strip("/"):
        raise usage_error(f"{source} must be set to a non-empty path")
    return value.strip("/")


def _cache_dir(environ: Mapping[str, str]) -> Path | None:
    base = environ.get("XDG_CACHE_HOME") or (str(Path(environ["HOME"]) / ".cache") if environ.get("HOME") else "")
    return Path(base) / "bruin-materialize" if base else None


def _default_runtime_dir(environ: Mapping[str, str]) -> Path:
    xdg = environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) if xdg else Path("/dev/shm")


def _selected_environment(ns: argparse.Namespace, bruin_args: Sequence[str]) -> str | None:
    chosen = bruin_environment(bruin_args)
    if chosen is not None:
        return chosen
    explicit: str | None = getattr(ns, "environment", None)
    return explicit or None


def _environment_paths(ns: argparse.Namespace, environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """--environment-path ENV=SUBPATH (repeated), else BRUIN_MATERIALIZE_ENVIRONMENT_PATHS=ENV=SUBPATH,..."""
    flags: list[str] | None = getattr(ns, "environment_path", None)
    if flags:
        items, source = flags, "--environment-path"
    else:
        text = environ.get("BRUIN_MATERIALIZE_ENVIRONMENT_PATHS", "")
        items, source = [i for i in text.split(",") if i.strip()], "BRUIN_MATERIALIZE_ENVIRONMENT_PATHS"
    pairs: list[tuple[str, str]] = []
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not name or not path.strip().strip("/"):
            raise usage_error(f"{source} takes ENV=SUBPATH, e.g. prod=bruin/prod (got an item without both)")
        if name in (n for n, _ in pairs):
            raise usage_error(f"{source} names environment {name!r} twice")
        pairs.append((name, path.strip().strip("/")))
    return tuple(pairs)


def _project_root(explicit: str | None, cwd: Path) -> Path:
    if explicit:
        root = _absolute(explicit, cwd)
        assert root is not None
        return root
    return find_project_root(cwd)


def _base(explicit: str | None, no_base: bool, root: Path, cwd: Path) -> Path | None:
    """--base wins; else the project's own .bruin.yml when there is one (a missing --base is an error later)."""
    if no_base:
        return None
    if explicit:
        return _absolute(explicit, cwd)
    default = root / BASE_NAME
    return default if default.is_file() else None


def _exec_mode(value: str | None, source: str) -> str:
    mode = (value or "child").strip().lower()
    if mode not in EXEC_MODES:
        raise usage_error(f"{source} must be child or replace")
    return mode


def _prefer(value: str | None, source: str) -> str | None:
    if not value:
        return None
    if value.strip().lower() not in PREFER:
        raise usage_error(f"{source} must be vault or base")
    return value.strip().lower()


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
        socket_path = url.netloc + url.path
        if not socket_path:
            raise usage_error(f"{source} must name a socket path, e.g. unix:///run/vault.sock")
        return VaultAddress("unix", socket_path, 0)
    if not url.hostname:
        raise usage_error(f"{source} has no host name")
    if url.path.strip("/"):
        raise usage_error(f"{source} must not have a path; give the server address only")
    default_port = 443 if url.scheme == "https" else 80
    return VaultAddress(url.scheme, url.hostname, port or default_port)


def _proxy(address: VaultAddress, value: str | None, source: str, environ: Mapping[str, str]) -> str | None:
    """The proxy for Vault's address, chosen as the Vault CLI (Go's ProxyFromEnvironment) chooses it.

    VAULT_PROXY_ADDR (or ours) is used for every request; otherwise HTTPS_PROXY or HTTP_PROXY by the
    address's scheme, unless NO_PROXY matches the host. Loopback hosts and unix sockets are never proxied.
    """
    if address.scheme == "unix":
        return None
    if not value:
        variable = "HTTPS_PROXY" if address.scheme == "https" else "HTTP_PROXY"
        value, source = _either_case(variable, environ)
        if not value or _bypasses_proxy(address, _either_case("NO_PROXY", environ)[0] or ""):
            return None
    url = value if "://" in value else "http://" + value
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        raise usage_error(f"{source} is not a valid proxy URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise usage_error(f"{source} must be an http:// or https:// proxy URL")
    return url


def _either_case(name: str, environ: Mapping[str, str]) -> tuple[str | None, str]:
    for variable in (name, name.lower()):
        if environ.get(variable):
            return environ[variable], variable
    return None, name


def _bypasses_proxy(address: VaultAddress, no_proxy: str) -> bool:
    """NO_PROXY as Go reads it: `*`, IP addresses, CIDR ranges, and domains (with their subdomains)."""
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


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


# Go's time.Duration is an int64 of nanoseconds: bruin refuses longer ones, and so do Python's
# timeouts (threading, sockets), which raise OverflowError past about the same point.
MAX_DURATION = (2**63 - 1) / 1e9
MAX_RETRIES = 100  # 2**retries feeds the backoff: beyond this the wait is long capped anyway
MAX_CONCURRENCY = 256


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


def parse_kv_version(value: str | None, source: str) -> int | None:
    text = (value or "auto").strip().lower()
    if text == "auto":
        return None
    if text in ("1", "2", "v1", "v2"):
        return int(text[-1])
    raise usage_error(f"{source} must be auto, 1 or 2")


def parse_bool(value: str, source: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise usage_error(f"{source} must be true or false")
