"""Settings: bruin's variables, defaults and validation; one line and exit 2 for anything wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


# --- each setting declared once: the table, docs/settings.md, --help -------------------------------------

SETTINGS_DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def doc_section(start: str, end: str) -> str:
    text = SETTINGS_DOC.read_text(encoding="utf-8")
    begin = text.index("\n", text.index(start)) + 1
    return text[begin:text.index(end, begin)]


def test_settings_doc_table_is_the_generated_one() -> None:
    from bruin_materialize.settings import settings_table_markdown

    # To update: replace docs/settings.md's part between the two markers with settings_table_markdown().
    assert doc_section("<!-- settings-table:", "<!-- /settings-table -->").strip() == (
        settings_table_markdown().strip())


def test_settings_doc_names_every_variable_and_flag() -> None:
    from bruin_materialize.settings import OPTIONS

    readme = SETTINGS_DOC.read_text(encoding="utf-8")
    for option in OPTIONS:
        for name in (*option.variables, *option.flags):
            assert f"`{name}" in readme, name


def test_settings_doc_authentication_tables_agree_with_the_options() -> None:
    import re

    from bruin_materialize.settings import OPTIONS

    by_variable = {o.variable: o for o in OPTIONS if o.variable}
    section = doc_section("## Authentication", "\n## ")
    pairs = re.findall(r"`(BRUIN_VAULT_\w+)` \(`(--[\w-]+)`", section)
    assert len(pairs) >= 8
    for variable, flag in pairs:
        assert flag in by_variable[variable].flags, variable
    defaults = re.findall(r"\$?(BRUIN_VAULT_\w+)` \(default `([^`]+)`\)", section)
    assert len(defaults) == 4
    for variable, default in defaults:
        assert by_variable[variable].default == default, variable
    for row in (line for line in section.splitlines() if line.startswith("| `BRUIN_VAULT_")):
        names, fallbacks = row.split(" | ")[:2]
        shortened = re.findall(r"`(BRUIN_VAULT_\w+|_[A-Z_]+)`", names)  # `_CLIENT_KEY`: BRUIN_VAULT_CLIENT_KEY
        options = [by_variable[name if name.startswith("BRUIN") else "BRUIN_VAULT" + name] for name in shortened]
        declared = {name for o in options for name in o.fallbacks}
        assert set(re.findall(r"\b(?:VAULT|BAO)_[A-Z_]+\b", fallbacks)) <= declared, row
        assert {o.fallbacks[0] for o in options} <= set(re.findall(r"\bVAULT_[A-Z_]+\b", fallbacks)), row


def test_the_table_is_consistent() -> None:
    import re

    from bruin_materialize.settings import COMMANDS, GROUPS, OPTIONS

    keys = [o.key for o in OPTIONS]
    flags = [f for o in OPTIONS for f in o.flags]
    variables = [v for o in OPTIONS for v in o.variables]
    assert len(set(keys)) == len(keys) and len(set(flags)) == len(flags) and len(set(variables)) == len(variables)
    for option in OPTIONS:
        assert option.group in GROUPS and set(option.commands) <= set(COMMANDS) and option.commands
        assert option.flags or option.variable, option.key
        if option.variable is not None:
            assert re.fullmatch(r"BRUIN_(VAULT|MATERIALIZE)_[A-Z0-9_]+|BRUIN_BIN", option.variable)
        if option.fallbacks and option.variable and option.variable.startswith("BRUIN_VAULT_"):
            vault, bao = option.fallbacks
            assert vault.startswith("VAULT_") and bao == "BAO_" + vault.removeprefix("VAULT_")
        assert (option.metavar is None) == (option.parse.__name__ == "parse_bool"), option.key
        assert option.metavar is None or not option.metavar.startswith("BRUIN_"), option.key


def test_every_flag_parses_for_its_commands_and_only_those() -> None:
    from bruin_materialize.settings import COMMANDS, OPTIONS, build_parser

    parser = build_parser()
    for option in (o for o in OPTIONS if o.flags):
        value = [] if option.switch else [option.choices[0] if option.choices else "x"]
        for command in COMMANDS:
            argv = [command, *(["FILE"] if command == "import" else []), option.flags[-1], *value]
            if command not in option.commands:
                with pytest.raises(MaterializeError, match="unrecognized arguments"):
                    parser.parse_args(argv)
                continue
            given = getattr(parser.parse_args(argv), option.key)
            assert given == (True if option.switch else (value if option.repeat else value[0])), (option, command)


def test_flag_then_variables_in_order_then_default() -> None:
    from bruin_materialize.settings import COMMANDS, OPTIONS, _Reader, build_parser

    parser = build_parser()
    for option in OPTIONS:
        command = option.commands[0]
        bare = parser.parse_args([command, *(["FILE"] if command == "import" else [])])
        names = option.variables
        for i, name in enumerate(names):
            environ = {later: f"value of {later}" for later in names[i:]}
            environ.update({earlier: "" for earlier in names[:i]})  # an empty variable counts as unset
            assert _Reader(bare, environ, command).raw(option) == (f"value of {name}", name)
        assert _Reader(bare, {}, command).raw(option) == (option.default, option.source)
        if option.flags and not option.switch and not option.repeat:
            given = option.choices[0] if option.choices else "given"
            flagged = parser.parse_args([command, *(["FILE"] if command == "import" else []), option.flags[0], given])
            everything = {name: "set" for name in names}
            assert _Reader(flagged, everything, command).raw(option) == (given, option.flags[0])
        others = [c for c in COMMANDS if c not in option.commands]
        for other in others:  # a command it does not apply to does not read its variables
            assert _Reader(bare, {name: "set" for name in names}, other).raw(option) == (option.default, option.source)


def help_text(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    from bruin_materialize.cli import main

    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["render", "check", "exec", "plan", "import"])
def test_help_names_every_option_its_variables_and_value_names(command: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import re

    from bruin_materialize.settings import GROUPS, OPTIONS

    text = help_text(command, capsys=capsys)
    flat = " ".join(text.split())  # argparse wraps lines
    assert text.startswith(f"usage: materialize.py {command} ")
    listed = {spelling.split()[0] for line in text.splitlines() if line.startswith("  -")
              for spelling in line.strip().split("  ")[0].split(", ")}
    assert listed == {"-h", "--help"} | {f for o in OPTIONS if command in o.commands for f in o.flags}
    for option in OPTIONS:
        shown = command in option.commands and not (command in option.once_in and not option.flags)
        for name in option.variables:
            assert (name in flat) == shown, (command, name)
        if shown and option.metavar:
            assert f"{option.flags[0]} {option.metavar}" in flat if option.flags else f"{option.variable}:" in flat
    for option in (o for o in OPTIONS if o.flags and not o.switch):  # value names, not variable names
        assert not re.search(rf"{option.flags[0]} BRUIN_", flat), option.key
    titles = [title for key, (title, _) in GROUPS.items() if any(o.group == key and command in o.commands
                                                                  for o in OPTIONS)]
    positions = [text.index(f"\n{title}:\n") for title in titles]
    assert positions == sorted(positions) and len(titles) >= 7


def test_help_groups_per_command(capsys: pytest.CaptureFixture[str]) -> None:
    check = help_text("check", capsys=capsys)
    assert "\noutput file:\n" not in check and "\nimport:\n" not in check and "--allow-repo" not in check
    exec_ = help_text("exec", capsys=capsys)
    assert "\noutput file:\n" in exec_ and "--exec-mode {child,replace}" in exec_ and "--format" not in exec_
    assert "usage: materialize.py exec [OPTIONS] [--] [BRUIN_RUN_ARGS...]" in exec_
    render = help_text("render", capsys=capsys)
    assert "--output PATH, -o PATH" in render and "--timeout DURATION" in render and "--concurrency N" in render
    assert "--vault-host URL BRUIN_VAULT_HOST, VAULT_ADDR, BAO_ADDR; required" in " ".join(render.split())
    assert "--timeout DURATION BRUIN_VAULT_TIMEOUT; default 30s" in " ".join(render.split())
    assert "VAULT_TOKEN, BAO_TOKEN" in " ".join(render.split())  # the authentication group's order
    assert "BRUIN_BIN: the bruin binary" in " ".join(render.split())  # a setting without a flag
    import_ = help_text("import", capsys=capsys)
    assert "\nimport:\n" in import_ and "FILE" in import_ and "--relative-paths {absolute,keep}" in import_
    # import writes into one path: --path is not offered as repeatable there, nor the variable for more paths
    assert "--path PATH BRUIN_VAULT_PATH; required " in " ".join(import_.split()) + " "
    assert "BRUIN_MATERIALIZE_EXTRA_PATHS" not in import_ and "BRUIN_MATERIALIZE_EXTRA_PATHS" in render
    assert "--path PATH BRUIN_VAULT_PATH; required; repeatable" in " ".join(render.split())


@pytest.mark.parametrize("command", ["render", "check", "exec", "plan", "import", "completion"])
def test_help_is_short_one_line_per_option(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bruin_materialize.settings import OPTIONS

    lines = help_text(command, capsys=capsys).splitlines()
    assert len(lines) <= 80  # the full reference is docs/settings.md, which it names
    assert max(map(len, lines)) <= 100
    for option in (o for o in OPTIONS if o.flags and command in o.commands):
        [line] = [line for line in lines if line.split()[:1] == [option.flags[0].rstrip(",")]
                  or line.startswith(f"  {option.flags[0]},")]
        assert len(line.split(None, 1 + (not option.switch))) > 1 + (not option.switch), line  # its help beside it
    if command != "completion":
        assert "In full: docs/settings.md." in " ".join(lines)


@pytest.mark.parametrize("argv", [[], ["render"], ["check"], ["exec"], ["plan"], ["import"]])
def test_help_ends_with_the_exit_codes(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(*argv, capsys=capsys)
    codes = text[text.index("\nexit codes:\n"):].splitlines()[2:]
    assert [line.split()[0] for line in codes] == ["0", "1", "2", "3", "4", "5", "128+N"]
    assert "plan, import" in codes[5]


def test_help_names_the_program_as_invoked(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from bruin_materialize.cli import main
    from bruin_materialize.settings import program_name

    assert program_name("/usr/local/bin/bruin-materialize") == "bruin-materialize"
    assert program_name("./materialize.py") == "materialize.py" and program_name("") == "materialize.py"
    monkeypatch.setattr("sys.argv", ["/venv/bin/bruin-materialize", "check", "--help"])
    with pytest.raises(SystemExit):
        main()
    assert capsys.readouterr().out.startswith("usage: bruin-materialize check ")
    monkeypatch.setattr("sys.argv", ["/opt/app/materialize.py", "check", "--timeout"])
    assert main() == 2
    assert capsys.readouterr().err == ("materialize: error: materialize.py check: argument --timeout: expected one "
                                       "argument (see --help)\n")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from bruin_materialize import __version__
    from bruin_materialize.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"bruin-materialize {__version__}\n"


def test_settings_types() -> None:
    s = settings(["check"], BRUIN_MATERIALIZE_RUNTIME_DIR="/run/x", BRUIN_MATERIALIZE_ALLOW_REPO="maybe")
    assert s.runtime_dir == Path("/dev/shm") and not s.allow_repo  # not read for check: neither applies to it
    s = settings(["render", "--format", "json", "--prefer", "Base"], XDG_RUNTIME_DIR="/run/user/1")
    assert (s.command, s.output_format, s.prefer, s.runtime_dir) == ("render", "json", "base", Path("/run/user/1"))
    assert settings(["check"]).output_format == "text" and settings(["check"]).prefer is None


FALLBACK_CASES = [
    ("check", ("BRUIN_VAULT_HOST", "VAULT_ADDR", "BAO_ADDR"), lambda s: s.address.host, "http://{}:1", "{}"),
    ("check", ("BRUIN_VAULT_NAMESPACE", "VAULT_NAMESPACE", "BAO_NAMESPACE"), lambda s: s.namespace, "{}", "{}"),
    ("check", ("BRUIN_VAULT_CACERT", "VAULT_CACERT", "BAO_CACERT"), lambda s: s.tls.ca_cert, "{}", "{}"),
    ("check", ("BRUIN_VAULT_CAPATH", "VAULT_CAPATH", "BAO_CAPATH"), lambda s: s.tls.ca_path, "{}", "{}"),
    ("check", ("BRUIN_VAULT_CLIENT_CERT", "VAULT_CLIENT_CERT", "BAO_CLIENT_CERT"), lambda s: s.tls.client_cert, "{}",
     "{}"),
    ("check", ("BRUIN_VAULT_CLIENT_KEY", "VAULT_CLIENT_KEY", "BAO_CLIENT_KEY"), lambda s: s.tls.client_key, "{}", "{}"),
    ("check", ("BRUIN_VAULT_PROXY_ADDR", "VAULT_PROXY_ADDR", "BAO_PROXY_ADDR"), lambda s: s.proxy, "http://{}:3128",
     "http://{}:3128"),
    ("exec", ("BRUIN_MATERIALIZE_RUNTIME_DIR", "XDG_RUNTIME_DIR"), lambda s: str(s.runtime_dir), "/run/{}", "/run/{}"),
]


@pytest.mark.parametrize(("command", "names", "get", "given", "expected"), FALLBACK_CASES,
                         ids=[names[0] for _, names, *_ in FALLBACK_CASES])
def test_each_fallback_is_read_in_order(command: str, names: tuple[str, ...], get: Any, given: str,
                                        expected: str) -> None:
    from bruin_materialize.settings import OPTIONS

    assert next(o for o in OPTIONS if o.variable == names[0]).variables == names
    for i, name in enumerate(names):
        env = {**{earlier: "<unset>" for earlier in names[:i]},
               **{later: given.format(later.lower().replace("_", "-")) for later in names[i:]}}
        assert get(settings([command], **env)) == expected.format(name.lower().replace("_", "-")), name
    skip = {name: ("false" if name.startswith("BRUIN") else "true") for name in
            ("BRUIN_VAULT_SKIP_VERIFY", "VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY")}
    assert not settings(["check"], **skip).tls.skip_verify  # the first one set decides, even when it says false
    assert settings(["check"], BAO_SKIP_VERIFY="1").tls.skip_verify


def test_vault_cli_tokens_come_after_every_bruin_credential_vault_before_bao() -> None:
    env = {"BRUIN_VAULT_TOKEN": "<unset>", "VAULT_TOKEN": "vt", "BAO_TOKEN": "bt"}
    assert settings(["check"], **env).auth == Auth("token", "VAULT_TOKEN", token="vt")
    assert settings(["check"], **{**env, "VAULT_TOKEN": ""}).auth == Auth("token", "BAO_TOKEN", token="bt")
