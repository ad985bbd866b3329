"""Settings that are not text, and Vault paths that are not paths: exit 2 naming the setting, before
any Vault call (the tests point at an address nothing listens on: a call would be exit 3)."""

from __future__ import annotations

import pytest

from bruin_materialize.cli import main
from testsupport.harness import RunCli, clear_vault_env

DEAD = "http://127.0.0.1:9"  # the discard port: nothing answers
NOT_UTF8 = "is not UTF-8 text (it holds bytes no text encoding gives); the value is not shown. Set it as UTF-8"


@pytest.fixture(autouse=True)
def settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_vault_env(monkeypatch)
    for name, value in {"BRUIN_VAULT_HOST": DEAD, "BRUIN_VAULT_MOUNT_PATH": "kv", "BRUIN_VAULT_PATH": "bruin",
                        "BRUIN_VAULT_TOKEN": "s.not-a-real-token", "BRUIN_VAULT_MAX_RETRIES": "0"}.items():
        monkeypatch.setenv(name, value)


def test_bytes_that_are_not_utf8_in_argv_are_refused_at_once(run_cli: RunCli) -> None:
    """The real thing: a child process given the byte 0xff, which Python holds as a lone surrogate."""
    run = run_cli("check", "--path", "bru\udcffin")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.splitlines() == [f"materialize: error: --path {NOT_UTF8}"]
    run = run_cli("exec", "--", "-e", "pr\udcffod", ".", env={"PATH": "/nonexistent"})
    assert run.returncode == 2
    assert run.stderr.splitlines() == [f"materialize: error: bruin's --environment argument {NOT_UTF8}"]


@pytest.mark.parametrize(("argv", "variable", "source"), [
    (["check", "--mount-path", "k\udcffv"], None, "--mount-path"),
    (["render", "-e", "pr\udcffod", "-o", "out.yml"], None, "--environment"),
    (["check", "--role", "r\udcff"], ("BRUIN_VAULT_TOKEN", ""), "--role"),
    (["check"], ("BRUIN_VAULT_PATH", "bru\udcffin"), "BRUIN_VAULT_PATH"),
    (["check"], ("BRUIN_VAULT_NAMESPACE", "ns\udcff"), "BRUIN_VAULT_NAMESPACE"),
    (["check"], ("BRUIN_MATERIALIZE_ENVIRONMENT_PATHS", "prod=bru\udcffin"), "BRUIN_MATERIALIZE_ENVIRONMENT_PATHS"),
    (["check", "--environment-path", "pr\udcffod=bruin"], None, "--environment-path"),
    (["plan", "--against", "x\udcff.yml"], None, "--against"),
    (["exec", "--", "--env=pr\udcffod"], None, "bruin's --environment argument"),
])
def test_every_setting_is_checked_to_be_text(argv: list[str], variable: tuple[str, str] | None, source: str,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    if variable is not None:
        monkeypatch.setenv(*variable)
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [f"materialize: error: {source} {NOT_UTF8}"]


@pytest.mark.parametrize(("argv", "message"), [
    (["check", "--path", "bruin?list=true"], "--path is not a valid Vault path: it holds `?`, `#`, `%`, a backslash "
                                             "or a control character"),
    (["check", "--path", "bru#in"], "--path is not a valid Vault path: it holds `?`"),
    (["check", "--path", "bruin/%2e%2e"], "--path is not a valid Vault path: it holds `?`"),
    (["check", "--path", "bru\nin"], "--path is not a valid Vault path: it holds `?`"),
    (["check", "--path", "bruin/../admin"], "--path is not a valid Vault path: it has an empty, `.` or `..` segment"),
    (["check", "--path", "bruin//prod"], "--path is not a valid Vault path: it has an empty"),
    (["check", "--mount-path", "kv/./x"], "--mount-path is not a valid Vault path: it has an empty"),
    (["check", "--environment-path", "prod=a/../b"], "--environment-path (prod) is not a valid Vault path: it has"),
    (["check", "--role", "r", "--k8s-auth-mount", "kube?x"], "--k8s-auth-mount is not a valid Vault path"),
])
def test_a_vault_path_must_be_a_path(argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("BRUIN_VAULT_TOKEN")  # so that a login's settings are read
    assert main(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"materialize: error: {message}")


@pytest.mark.parametrize(("variables", "source"), [
    ({"HTTP_PROXY": "http://pro\udcffxy:3128"}, "HTTP_PROXY"),
    ({"http_proxy": "pro\udcffxy:3128"}, "http_proxy"),
    ({"HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "vault.invalid,\udcff"}, "NO_PROXY"),
    ({"HTTP_PROXY": "http://127.0.0.1:9", "no_proxy": "\udcff.invalid"}, "no_proxy"),
])
def test_the_proxy_variables_a_non_loopback_host_reads_are_checked_to_be_text(
        variables: dict[str, str], source: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Read only when the host is not loopback (as Go reads them), and then checked as every setting."""
    monkeypatch.setenv("BRUIN_VAULT_HOST", "http://vault.invalid:9")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert main(["check"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"materialize: error: {source} {NOT_UTF8}"]
