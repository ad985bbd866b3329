"""Settings: bruin's variables, defaults and validation; one line and exit 2 for anything wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from bruin_materialize.errors import ExitCode, MaterializeError
from bruin_materialize.settings import (
    TLS,
    Auth,
    Settings,
    VaultAddress,
    bruin_environment,
    parse_duration,
    parse_settings,
)

BASE = {
    "BRUIN_VAULT_HOST": "http://127.0.0.1:8200",
    "BRUIN_VAULT_MOUNT_PATH": "secret",
    "BRUIN_VAULT_PATH": "bruin/prod",
    "BRUIN_VAULT_TOKEN": "t",
}


def settings(argv: list[str], **env: str) -> Settings:
    environ = {**BASE, **env}
    return parse_settings(argv, {k: v for k, v in environ.items() if v != "<unset>"})


def usage_message(argv: list[str], **env: str) -> str:
    with pytest.raises(MaterializeError) as info:
        settings(argv, **env)
    assert info.value.exit_code == ExitCode.USAGE
    assert "\n" not in info.value.message
    return info.value.message


def test_bruin_defaults() -> None:
    s = settings(["check"])
    assert s.address == VaultAddress("http", "127.0.0.1", 8200)
    assert (s.mount, s.path, s.auth) == ("secret", "bruin/prod", Auth("token", "BRUIN_VAULT_TOKEN", token="t"))
    assert (s.timeout, s.max_retries, s.retry_wait_min, s.retry_wait_max) == (30.0, 3, 0.2, 2.0)
    assert s.namespace is None and s.tls == TLS()
    assert s.kv_version is None and s.environment == "default"


def test_flags_win_over_environment() -> None:
    s = settings(["check", "--path", "/other/", "--timeout", "1m30s", "--max-retries", "0", "--kv-version", "1"])
    assert (s.path, s.timeout, s.max_retries, s.kv_version) == ("other", 90.0, 0, 1)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"BRUIN_VAULT_HOST": "<unset>"}, "BRUIN_VAULT_HOST must be set"),
        ({"BRUIN_VAULT_HOST": "ftp://x"}, "BRUIN_VAULT_HOST must start with http://, https:// or unix://"),
        ({"BRUIN_VAULT_HOST": "https://u:p@vault:8200"}, "BRUIN_VAULT_HOST must not contain user:password"),
        ({"BRUIN_VAULT_HOST": "https://vault?x=1"}, "BRUIN_VAULT_HOST must not contain user:password"),
        ({"BRUIN_VAULT_MOUNT_PATH": "<unset>"}, "BRUIN_VAULT_MOUNT_PATH must be set to a non-empty path"),
        ({"BRUIN_VAULT_PATH": "/"}, "BRUIN_VAULT_PATH must be set to a non-empty path"),
        ({"BRUIN_VAULT_TOKEN": "<unset>"}, "no Vault credentials: set BRUIN_VAULT_TOKEN, BRUIN_VAULT_TOKEN_FILE"),
        ({"BRUIN_VAULT_TOKEN": "<unset>", "BRUIN_VAULT_ROLE_ID": "r"},
         "BRUIN_VAULT_ROLE_ID needs BRUIN_VAULT_SECRET_ID or BRUIN_VAULT_SECRET_ID_FILE"),
        ({"BRUIN_VAULT_TOKEN": "<unset>", "BRUIN_VAULT_JWT_ROLE": "r"},
         "BRUIN_VAULT_JWT_ROLE needs BRUIN_VAULT_JWT_FILE"),
        ({"BRUIN_VAULT_TIMEOUT": "10"}, "BRUIN_VAULT_TIMEOUT must be a duration"),
        ({"BRUIN_VAULT_TIMEOUT": "0s"}, "BRUIN_VAULT_TIMEOUT must be a positive duration"),
        ({"BRUIN_VAULT_MAX_RETRIES": "-1"}, "BRUIN_VAULT_MAX_RETRIES must be at least 0"),
        ({"BRUIN_VAULT_MAX_RETRIES": "three"}, "BRUIN_VAULT_MAX_RETRIES must be a whole number"),
        ({"BRUIN_VAULT_RETRY_WAIT_MIN": "3s"},
         "BRUIN_VAULT_RETRY_WAIT_MAX must be at least BRUIN_VAULT_RETRY_WAIT_MIN"),
        ({"BRUIN_MATERIALIZE_KV_VERSION": "3"}, "BRUIN_MATERIALIZE_KV_VERSION must be auto, 1 or 2"),
        ({"BRUIN_MATERIALIZE_STRICT": "maybe"}, "BRUIN_MATERIALIZE_STRICT must be true or false"),
    ],
)
def test_bad_setting_is_one_line_naming_the_variable(env: dict[str, str], names: str) -> None:
    assert usage_message(["check"], **env).startswith(names)


def test_bad_flag_names_the_flag() -> None:
    assert usage_message(["check", "--timeout", "soon"]).startswith("--timeout must be a duration")


ALL_AUTH = {"BRUIN_VAULT_TOKEN_FILE": "/run/token", "BRUIN_VAULT_ROLE": "k8s-role", "BRUIN_VAULT_ROLE_ID": "rid",
            "BRUIN_VAULT_SECRET_ID": "sid", "BRUIN_VAULT_JWT_ROLE": "jwt-role", "BRUIN_VAULT_JWT_FILE": "/run/jwt",
            "VAULT_TOKEN": "vt"}


@pytest.mark.parametrize(
    ("unset", "expected"),
    [
        ([], Auth("token", "BRUIN_VAULT_TOKEN", token="t")),
        (["BRUIN_VAULT_TOKEN"], Auth("token", "BRUIN_VAULT_TOKEN_FILE", token_file=Path("/run/token"))),
        (["BRUIN_VAULT_TOKEN", "BRUIN_VAULT_TOKEN_FILE"],
         Auth("kubernetes", "BRUIN_VAULT_ROLE", token_file=Path("/var/run/secrets/kubernetes.io/serviceaccount/token"),
              mount="kubernetes", role="k8s-role")),
        (["BRUIN_VAULT_TOKEN", "BRUIN_VAULT_TOKEN_FILE", "BRUIN_VAULT_ROLE"],
         Auth("approle", "BRUIN_VAULT_ROLE_ID", mount="approle", role="rid", secret_id="sid")),
        (["BRUIN_VAULT_TOKEN", "BRUIN_VAULT_TOKEN_FILE", "BRUIN_VAULT_ROLE", "BRUIN_VAULT_ROLE_ID"],
         Auth("jwt", "BRUIN_VAULT_JWT_ROLE", token_file=Path("/run/jwt"), mount="jwt", role="jwt-role")),
        (["BRUIN_VAULT_TOKEN", "BRUIN_VAULT_TOKEN_FILE", "BRUIN_VAULT_ROLE", "BRUIN_VAULT_ROLE_ID",
          "BRUIN_VAULT_JWT_ROLE"], Auth("token", "VAULT_TOKEN", token="vt")),
    ],
)
def test_auth_precedence(unset: list[str], expected: Auth) -> None:
    env = {**ALL_AUTH, **{name: "<unset>" for name in unset}}
    assert settings(["check"], **env).auth == expected


def test_home_vault_token_only_when_nothing_else(tmp_path: Path) -> None:
    (tmp_path / ".vault-token").write_text("home-token\n")
    assert settings(["check"], BRUIN_VAULT_TOKEN="<unset>", HOME=str(tmp_path)).auth == Auth(
        "token", "~/.vault-token", token_file=tmp_path / ".vault-token")
    assert settings(["check"], HOME=str(tmp_path)).auth.source == "BRUIN_VAULT_TOKEN"


def test_vault_fallbacks_and_bruin_variables_winning() -> None:
    s = settings(["check"], BRUIN_VAULT_HOST="<unset>", VAULT_ADDR="https://v:8201", VAULT_NAMESPACE="team",
                 VAULT_CACERT="/ca.pem", VAULT_SKIP_VERIFY="true")
    assert s.address == VaultAddress("https", "v", 8201)
    assert s.namespace == "team" and s.tls == TLS(ca_cert="/ca.pem", skip_verify=True)
    assert settings(["check"], VAULT_ADDR="https://other:1").address.host == "127.0.0.1"
    assert settings(["check"], VAULT_NAMESPACE="a", BRUIN_VAULT_NAMESPACE="b").namespace == "b"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("500ms", 0.5), ("1m30s", 90.0), ("1.5s", 1.5), ("2h", 7200.0), ("250us", 0.00025)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "X") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "-1s", "1 s", "s", "1d"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(MaterializeError):
        parse_duration(text, "X")


def test_addresses() -> None:
    assert settings(["check"], BRUIN_VAULT_HOST="https://vault.example.com").address == VaultAddress(
        "https", "vault.example.com", 443)
    assert settings(["check"], BRUIN_VAULT_HOST="unix:///run/vault.sock").address == VaultAddress(
        "unix", "/run/vault.sock", 0)


def test_exec_arguments_pass_through_in_order() -> None:
    s = settings(["exec", "--strict", "--", "--env", "prod", "pipelines/x", "--secrets-backend", "vault"])
    assert s.strict
    assert s.bruin_args == ("--env", "prod", "pipelines/x", "--secrets-backend", "vault")
    assert s.environment == "prod"


def test_exec_unknown_option_starts_bruin_arguments() -> None:
    s = settings(["exec", "--strict", "-e", "staging", "pipelines/x"])
    assert s.strict and s.bruin_args == ("-e", "staging", "pipelines/x")
    assert s.environment == "staging"


@pytest.mark.parametrize(
    ("args", "env"),
    [([], None), (["--environment", "a"], "a"), (["-e=b"], "b"), (["--env=c", "--env", "d"], "d"),
     (["x", "--", "--env", "e"], None), (["-env", "f"], "f"), (["-environment=g"], "g"), (["--e", "h"], "h"),
     (["-e"], None), (["---env", "i"], None)],
)
def test_environment_from_bruin_arguments(args: list[str], env: str | None) -> None:
    assert bruin_environment(args) == env


@pytest.mark.parametrize(
    ("argv", "ours", "bruins"),
    [(["--full-refresh", "--timeout", "3600", "--verbose", "."], [], ["--full-refresh", "--timeout", "3600",
                                                                     "--verbose", "."]),
     (["--timeout", "5s", "-v", "--strict", "p", "--strict"], ["--timeout", "5s", "-v", "--strict"], ["p", "--strict"]),
     (["--timeout=5s", "--", "--timeout", "9"], ["--timeout=5s"], ["--timeout", "9"]),
     (["--strict=yes", "p"], [], ["--strict=yes", "p"]),  # a switch given a value is not ours
     (["-qv"], [], ["-qv"])],
)
def test_exec_arguments_split_at_the_first_unknown_one(argv: list[str], ours: list[str], bruins: list[str]) -> None:
    from bruin_materialize.settings import _subparser, build_parser, split_exec_arguments

    assert split_exec_arguments(_subparser(build_parser(), "exec"), argv) == (ours, bruins)
    assert settings(["exec", *argv]).bruin_args == tuple(bruins)


def test_exec_mode_is_read_for_exec_only() -> None:
    assert settings(["exec", "--exec-mode", "replace"]).exec_mode == "replace"
    assert settings(["exec"], BRUIN_MATERIALIZE_EXEC_MODE="Replace").exec_mode == "replace"
    assert settings(["check"], BRUIN_MATERIALIZE_EXEC_MODE="bogus").exec_mode == "child"
    assert usage_message(["exec", "--exec-mode", "fork"]) == "--exec-mode must be child or replace"


def test_render_environment_flag_and_output() -> None:
    s = settings(["render", "-o", "out/bruin.yml", "--environment", "prod"])
    assert s.environment == "prod" and s.output == Path("out/bruin.yml")


def test_runtime_dir_default(tmp_path: Path) -> None:
    assert settings(["exec"], XDG_RUNTIME_DIR=str(tmp_path)).runtime_dir == tmp_path
    assert settings(["exec"]).runtime_dir == Path("/dev/shm")
    assert settings(["exec"], BRUIN_MATERIALIZE_RUNTIME_DIR="/run/x").runtime_dir == Path("/run/x")


def test_usage_errors_are_one_line() -> None:
    assert usage_message(["render", "--output"]).endswith("argument --output/-o: expected one argument (see --help)")
    assert "unrecognized arguments: --bogus" in usage_message(["check", "--bogus"])
