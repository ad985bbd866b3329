"""Authentication and TLS against a real OpenBao server: every way in renders the same file.

The reference is the plain path: BRUIN_VAULT_TOKEN holding a token with only the KV policy, over
HTTP. Each login method, token source, TLS setting, unix socket and namespace must render a file
byte for byte identical to it. Tokens obtained by logging in must be revoked (counted through the
root token's `LIST auth/token/accessors`); given tokens never are. Failures are one line, exit 3
(Vault) or 2 (a missing credential file), and never show a JWT, token or secret_id: the leak guard
holds every one of them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bruin_materialize.cli import main
from testsupport.auth import (
    APPROLE_ROLE,
    JWT_ROLE,
    K8S_ALT_MOUNT,
    K8S_NO_POLICY_ROLE,
    K8S_ROLE,
    MOUNT,
    NAMESPACE,
    PATH,
    AuthWorld,
)
from testsupport.harness import clear_vault_env
from testsupport.leak import LEAK_GUARD
from testsupport.runs import Run
from testsupport.wait import wait_until

SKIP_WARNING = "TLS verification is disabled"
# OpenBao service tokens: "s." and 24 characters (batch tokens "b.", legacy "hvs."/"hvb.").
TOKEN_SHAPE = re.compile(r"\b(?:s|b|hvs|hvb)\.[A-Za-z0-9_-]{20,}")


# --- running the program in-process --------------------------------------------------------------


class Materialize:
    """`main(["render", ...])` with a base environment pointing at the auth test server."""

    def __init__(self, world: AuthWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str]) -> None:
        self.world = world
        self.tmp_path = tmp_path
        self.home = tmp_path / "home"
        self._monkeypatch = monkeypatch
        self._capsys = capsys
        self._runs = 0
        self._reference: bytes | None = None

    def render(self, *flags: str, env: Mapping[str, str | None] | None = None) -> Run:
        self._runs += 1
        out = self.tmp_path / "out" / f"bruin-{self._runs}.yml"
        with self._monkeypatch.context() as patch:
            for name, value in (env or {}).items():
                if value is None:
                    patch.delenv(name, raising=False)
                else:
                    patch.setenv(name, value)
            code = main(["render", "--output", str(out), *flags])
        captured = self._capsys.readouterr()
        # Checked here, as reading the capture takes the text away from the guard's own scan.
        if LEAK_GUARD.find_in(captured.out + captured.err):
            pytest.fail("a registered secret (token, JWT, secret_id or value) was printed", pytrace=False)
        assert captured.out == ""
        return Run(code, captured.out, captured.err, output=out.read_bytes() if out.exists() else None)

    def reference(self) -> bytes:
        """The file the plain token path renders."""
        if self._reference is None:
            run = self.render(env={"BRUIN_VAULT_TOKEN": self.world.policy_token()})
            assert run.returncode == 0 and run.output, run.lines
            self._reference = run.output
        return self._reference

    def assert_same_file(self, run: Run) -> None:
        assert run.returncode == 0, run.lines
        assert run.output == self.reference()

    def write(self, name: str, content: str) -> str:
        path = self.tmp_path / "creds" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(content, encoding="utf-8")
        path.chmod(0o600)
        return str(path)


@pytest.fixture
def mat(auth_world: AuthWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], schema_path: Path) -> Materialize:
    clear_vault_env(monkeypatch)
    for name in ("home", "cache", "out"):
        (tmp_path / name).mkdir()
    base = {
        "BRUIN_VAULT_HOST": auth_world.bao.http_addr,
        "BRUIN_VAULT_MOUNT_PATH": MOUNT,
        "BRUIN_VAULT_PATH": PATH,
        "BRUIN_MATERIALIZE_SCHEMA": str(schema_path),
        "HOME": str(tmp_path / "home"),  # no ~/.vault-token unless a test writes one
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    for name, value in base.items():
        monkeypatch.setenv(name, value)
    return Materialize(auth_world, tmp_path, monkeypatch, capsys)


@pytest.fixture
def revocation(auth_world: AuthWorld) -> Iterator[set[str]]:
    """The live token accessors before the test; afterwards, only those may remain."""
    before = auth_world.accessors()
    yield before
    leftover = auth_world.accessors() - before
    auth_world.revoke_accessors(leftover)  # keep the server clean for the next test


def assert_login_token_revoked(world: AuthWorld, before: set[str], namespace: str | None = None) -> None:
    assert world.login_tokens_since(before, namespace) == set(), "a token obtained by logging in is still live"


# --- each way in renders the same file -----------------------------------------------------------


def test_plain_token_renders_both_secrets(mat: Materialize, auth_world: AuthWorld) -> None:
    token = auth_world.policy_token()
    run = mat.render(env={"BRUIN_VAULT_TOKEN": token})
    mat.assert_same_file(run)
    text = mat.reference().decode("utf-8")
    assert "warehouse" in text and "lake" in text
    assert auth_world.token_is_live(token), "a given token must never be revoked"


@pytest.mark.parametrize("form", ["env", "flag"])
def test_token_file(mat: Materialize, auth_world: AuthWorld, form: str) -> None:
    token = auth_world.policy_token()
    token_file = mat.write("token", token + "\n \t\n")  # as an agent sink or `echo` leaves it
    if form == "env":
        run = mat.render(env={"BRUIN_VAULT_TOKEN_FILE": token_file})
    else:
        run = mat.render("--token-file", token_file)
    mat.assert_same_file(run)
    assert auth_world.token_is_live(token), "a given token must never be revoked"


@pytest.mark.parametrize("form", ["env", "flag"])
def test_kubernetes_login(mat: Materialize, auth_world: AuthWorld, revocation: set[str], form: str) -> None:
    jwt_file = mat.write("sa-token", auth_world.k8s_jwt + "\n")
    reviews = auth_world.tokenreview.reviews
    if form == "env":
        run = mat.render(env={"BRUIN_VAULT_ROLE": K8S_ROLE, "BRUIN_VAULT_K8S_TOKEN_PATH": jwt_file})
    else:
        run = mat.render("--role", K8S_ROLE, "--k8s-token-path", jwt_file)
    mat.assert_same_file(run)
    assert auth_world.tokenreview.reviews > reviews, "OpenBao never asked the TokenReview API"
    assert_login_token_revoked(auth_world, revocation)
    assert not (mat.home / ".vault-token").exists()


@pytest.mark.parametrize("form", ["env", "flag"])
def test_kubernetes_login_at_another_mount(mat: Materialize, auth_world: AuthWorld, revocation: set[str],
                                           form: str) -> None:
    jwt_file = mat.write("sa-token", auth_world.k8s_jwt)
    env = {"BRUIN_VAULT_ROLE": K8S_ROLE, "BRUIN_VAULT_K8S_TOKEN_PATH": jwt_file}
    if form == "env":
        run = mat.render(env={**env, "BRUIN_VAULT_K8S_AUTH_MOUNT": K8S_ALT_MOUNT})
    else:
        run = mat.render("--k8s-auth-mount", K8S_ALT_MOUNT, env=env)
    mat.assert_same_file(run)
    assert_login_token_revoked(auth_world, revocation)


@pytest.mark.parametrize("form", ["env", "flag", "file-env", "file-flag"])
def test_approle_login(mat: Materialize, auth_world: AuthWorld, revocation: set[str], form: str) -> None:
    secret_id = auth_world.secret_id()
    secret_id_file = mat.write("secret-id", secret_id + "\n")
    role_id = auth_world.role_id
    run = {
        "env": lambda: mat.render(env={"BRUIN_VAULT_ROLE_ID": role_id, "BRUIN_VAULT_SECRET_ID": secret_id}),
        "flag": lambda: mat.render("--role-id", role_id, "--secret-id", secret_id),
        "file-env": lambda: mat.render(env={"BRUIN_VAULT_ROLE_ID": role_id,
                                            "BRUIN_VAULT_SECRET_ID_FILE": secret_id_file}),
        "file-flag": lambda: mat.render("--role-id", role_id, "--secret-id-file", secret_id_file),
    }[form]()
    mat.assert_same_file(run)
    assert_login_token_revoked(auth_world, revocation)


def test_rate_limited_login_is_waited_out(mat: Materialize, auth_world: AuthWorld, revocation: set[str]) -> None:
    # One login per 2 s window at auth/approle/login; this test spends the window's one first.
    client = auth_world.bao.client
    client.sys.create_or_update_quota(  # type: ignore[no-untyped-call]  # untyped in types-hvac
        "approle-login", 1, path="auth/approle/login", interval="2s")
    try:
        spent = client.auth.approle.login(auth_world.role_id, auth_world.secret_id(), use_token=False)
        auth_world.revoke_accessors({spent["auth"]["accessor"]})
        started = time.monotonic()
        run = mat.render(env={"BRUIN_VAULT_ROLE_ID": auth_world.role_id, "BRUIN_VAULT_SECRET_ID":
                              auth_world.secret_id(), "BRUIN_VAULT_MAX_RETRIES": "0"})
        waited = time.monotonic() - started
    finally:
        client.sys.delete_quota("approle-login")  # type: ignore[no-untyped-call]  # untyped in types-hvac
    mat.assert_same_file(run)  # a 429 on the login is waited out, without an error retry to spend
    assert waited >= 0.5
    assert_login_token_revoked(auth_world, revocation)


def test_approle_mount_setting_is_used(mat: Materialize, auth_world: AuthWorld) -> None:
    env = {"BRUIN_VAULT_ROLE_ID": auth_world.role_id, "BRUIN_VAULT_SECRET_ID": auth_world.secret_id(),
           "BRUIN_VAULT_APPROLE_MOUNT": "approle-elsewhere"}
    line = mat.render(env=env).error_line()
    assert "auth/approle-elsewhere" in line
    assert "BRUIN_VAULT_APPROLE_MOUNT" in line  # a mount naming nothing is among the likely causes


@pytest.mark.parametrize("form", ["env", "flag"])
def test_jwt_login(mat: Materialize, auth_world: AuthWorld, revocation: set[str], form: str) -> None:
    jwt_file = mat.write("ci.jwt", auth_world.ci_jwt() + "\n")
    if form == "env":
        run = mat.render(env={"BRUIN_VAULT_JWT_ROLE": JWT_ROLE, "BRUIN_VAULT_JWT_FILE": jwt_file})
    else:
        run = mat.render("--jwt-role", JWT_ROLE, "--jwt-file", jwt_file)
    mat.assert_same_file(run)
    assert_login_token_revoked(auth_world, revocation)


def test_jwt_mount_setting_is_used(mat: Materialize, auth_world: AuthWorld) -> None:
    env = {"BRUIN_VAULT_JWT_ROLE": JWT_ROLE, "BRUIN_VAULT_JWT_FILE": mat.write("ci.jwt", auth_world.ci_jwt()),
           "BRUIN_VAULT_JWT_MOUNT": "oidc-elsewhere"}
    line = mat.render(env=env).error_line()
    assert "auth/oidc-elsewhere" in line and JWT_ROLE in line
    assert "BRUIN_VAULT_JWT_MOUNT" in line


def test_kubernetes_mount_naming_nothing_is_named(mat: Materialize, auth_world: AuthWorld) -> None:
    jwt_file = mat.write("sa-token", auth_world.k8s_jwt)
    line = mat.render(env={"BRUIN_VAULT_ROLE": K8S_ROLE, "BRUIN_VAULT_K8S_TOKEN_PATH": jwt_file,
                           "BRUIN_VAULT_K8S_AUTH_MOUNT": "kubernetes-elsewhere"}).error_line()
    assert "auth/kubernetes-elsewhere" in line and "BRUIN_VAULT_K8S_AUTH_MOUNT" in line


def test_vault_token_fallback(mat: Materialize, auth_world: AuthWorld) -> None:
    token = auth_world.policy_token()
    mat.assert_same_file(mat.render(env={"VAULT_TOKEN": token}))
    assert auth_world.token_is_live(token)


def test_home_vault_token_fallback(mat: Materialize, auth_world: AuthWorld) -> None:
    token = auth_world.policy_token()
    (mat.home / ".vault-token").write_text(token + "\n", encoding="utf-8")  # as `bao login` writes it
    mat.assert_same_file(mat.render())
    assert auth_world.token_is_live(token)


def test_no_credentials_at_all_is_a_usage_error(mat: Materialize) -> None:
    line = mat.render().error_line(code=2)
    assert "BRUIN_VAULT_TOKEN" in line


# --- revocation ----------------------------------------------------------------------------------


def test_revocation_failure_is_a_warning(mat: Materialize, auth_world: AuthWorld, revocation: set[str]) -> None:
    # This role's tokens lack the `default` policy, so OpenBao refuses their auth/token/revoke-self.
    env = {"BRUIN_VAULT_ROLE_ID": auth_world.no_revoke_role_id,
           "BRUIN_VAULT_SECRET_ID": auth_world.secret_id("no-default-policy")}
    run = mat.render(env=env)
    mat.assert_same_file(run)
    warnings = [line for line in run.lines if line.startswith("materialize: warning:") and "revoke" in line]
    assert len(warnings) == 1, run.lines
    assert len(auth_world.login_tokens_since(revocation)) == 1, "the unrevoked login token should still be live"


def test_login_token_is_revoked_when_reading_fails(mat: Materialize, auth_world: AuthWorld,
                                                   revocation: set[str]) -> None:
    jwt_file = mat.write("sa-token", auth_world.k8s_jwt)
    run = mat.render(env={"BRUIN_VAULT_ROLE": K8S_NO_POLICY_ROLE, "BRUIN_VAULT_K8S_TOKEN_PATH": jwt_file})
    line = run.error_line()
    assert f"{MOUNT}/{PATH}" in line  # names what the policy must grant
    assert_login_token_revoked(auth_world, revocation)


# --- bad credentials: exit 3, one line, no secret ------------------------------------------------


def test_kubernetes_wrong_role(mat: Materialize, auth_world: AuthWorld) -> None:
    jwt_file = mat.write("sa-token", auth_world.k8s_jwt)
    line = mat.render(env={"BRUIN_VAULT_ROLE": "no-such-role", "BRUIN_VAULT_K8S_TOKEN_PATH": jwt_file}).error_line()
    assert "auth/kubernetes" in line and "no-such-role" in line


def test_kubernetes_jwt_refused_by_token_review(mat: Materialize, auth_world: AuthWorld) -> None:
    jwt_file = mat.write("sa-token", auth_world.new_k8s_jwt(accepted=False))
    line = mat.render(env={"BRUIN_VAULT_ROLE": K8S_ROLE, "BRUIN_VAULT_K8S_TOKEN_PATH": jwt_file}).error_line()
    assert "auth/kubernetes" in line and K8S_ROLE in line


def _bogus_token() -> str:
    token = "s." + secrets.token_urlsafe(18)[:24]
    LEAK_GUARD.add(token)
    return token


def _revoked_token(world: AuthWorld) -> str:
    token = world.policy_token()
    world.bao.client.auth.token.revoke(token)
    return token


def _expired_token(world: AuthWorld) -> str:
    token = world.policy_token(ttl="1s")
    try:
        wait_until(lambda: not world.token_is_live(token), 5, 0.1, what="the token's expiry")
    except TimeoutError:
        pass  # not expired yet: the test's own assertions will say so
    return token


@pytest.mark.parametrize("kind", ["bogus", "revoked", "expired"])
def test_bad_token(mat: Materialize, auth_world: AuthWorld, kind: str) -> None:
    if kind == "bogus":
        token = _bogus_token()
    elif kind == "revoked":
        token = _revoked_token(auth_world)
    else:
        token = _expired_token(auth_world)
    line = mat.render(env={"BRUIN_VAULT_TOKEN": token}).error_line()
    assert MOUNT in line


def test_token_without_the_policy(mat: Materialize, auth_world: AuthWorld) -> None:
    response = auth_world.bao.client.auth.token.create(policies=["default"], ttl="5m")
    token = response["auth"]["client_token"]
    LEAK_GUARD.add(token)
    line = mat.render(env={"BRUIN_VAULT_TOKEN": token}).error_line()
    assert f"{MOUNT}/{PATH}" in line


@pytest.mark.parametrize("bad", ["secret_id", "role_id"])
def test_approle_bad_credentials(mat: Materialize, auth_world: AuthWorld, bad: str) -> None:
    secret_id = auth_world.secret_id()
    role_id = auth_world.role_id
    if bad == "secret_id":
        secret_id = secrets.token_hex(18)
        LEAK_GUARD.add(secret_id)
    else:
        role_id = "6f1d2f4e-0000-4000-8000-" + secrets.token_hex(6)
    line = mat.render(env={"BRUIN_VAULT_ROLE_ID": role_id, "BRUIN_VAULT_SECRET_ID": secret_id}).error_line()
    assert "auth/approle" in line


@pytest.mark.parametrize("problem", ["other-key", "expired", "wrong-audience"])
def test_jwt_refused(mat: Materialize, auth_world: AuthWorld, problem: str) -> None:
    now = int(time.time())
    jwt = {
        "other-key": lambda: auth_world.ci_jwt(key=auth_world.other_key),
        "expired": lambda: auth_world.ci_jwt(iat=now - 7200, nbf=now - 7200, exp=now - 3600),
        "wrong-audience": lambda: auth_world.ci_jwt(aud=["someone-else"]),
    }[problem]()
    jwt_file = mat.write("ci.jwt", jwt)
    line = mat.render(env={"BRUIN_VAULT_JWT_ROLE": JWT_ROLE, "BRUIN_VAULT_JWT_FILE": jwt_file}).error_line()
    assert "auth/jwt" in line and JWT_ROLE in line


def test_jwt_role_that_does_not_exist(mat: Materialize, auth_world: AuthWorld) -> None:
    jwt_file = mat.write("ci.jwt", auth_world.ci_jwt())
    line = mat.render(env={"BRUIN_VAULT_JWT_ROLE": "no-such-ci", "BRUIN_VAULT_JWT_FILE": jwt_file}).error_line()
    assert "auth/jwt" in line and "no-such-ci" in line


# The credential files: missing is a setting error (exit 2) naming the setting, before any login.
_MISSING_FILE_CASES = {
    "token-file": ("BRUIN_VAULT_TOKEN_FILE", {}),
    "k8s-token": ("BRUIN_VAULT_K8S_TOKEN_PATH", {"BRUIN_VAULT_ROLE": K8S_ROLE}),
    "secret-id-file": ("BRUIN_VAULT_SECRET_ID_FILE", {"BRUIN_VAULT_ROLE_ID": "role-id-irrelevant"}),
    "jwt-file": ("BRUIN_VAULT_JWT_FILE", {"BRUIN_VAULT_JWT_ROLE": JWT_ROLE}),
}


@pytest.mark.parametrize("case", list(_MISSING_FILE_CASES))
def test_missing_credential_file(mat: Materialize, case: str) -> None:
    setting, env = _MISSING_FILE_CASES[case]
    missing = str(mat.tmp_path / "nowhere" / "credential")
    line = mat.render(env={**env, setting: missing}).error_line(code=2)
    assert setting in line


def test_missing_default_kubernetes_token(mat: Materialize) -> None:
    default = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    if default.exists():
        pytest.skip("this machine has a service-account token at the default path")
    line = mat.render(env={"BRUIN_VAULT_ROLE": K8S_ROLE}).error_line(code=2)
    assert "BRUIN_VAULT_K8S_TOKEN_PATH" in line or str(default) in line


# --- precedence ----------------------------------------------------------------------------------

# Highest first. Each setting set alone selects its way in; the companions a login needs (the JWT
# file, the secret_id) are always given and valid, so only the selecting setting differs.
ORDER = ["BRUIN_VAULT_TOKEN", "BRUIN_VAULT_TOKEN_FILE", "BRUIN_VAULT_ROLE", "BRUIN_VAULT_ROLE_ID",
         "BRUIN_VAULT_JWT_ROLE", "VAULT_TOKEN", "~/.vault-token"]
_NAMED_IN_ERROR = {"BRUIN_VAULT_ROLE": "auth/kubernetes", "BRUIN_VAULT_ROLE_ID": "auth/approle",
                   "BRUIN_VAULT_JWT_ROLE": "auth/jwt"}


def _credential(mat: Materialize, setting: str, good: bool) -> dict[str, str]:
    """The environment that selects `setting`, valid or not; writes ~/.vault-token for that one."""
    world = mat.world
    token = world.policy_token() if good else _bogus_token()
    if setting in ("BRUIN_VAULT_TOKEN", "VAULT_TOKEN"):
        return {setting: token}
    if setting == "BRUIN_VAULT_TOKEN_FILE":
        return {setting: mat.write("token-file", token)}
    if setting == "~/.vault-token":
        (mat.home / ".vault-token").write_text(token, encoding="utf-8")
        return {}
    if setting == "BRUIN_VAULT_ROLE":
        return {setting: K8S_ROLE if good else "no-such-role",
                "BRUIN_VAULT_K8S_TOKEN_PATH": mat.write("sa-token", world.k8s_jwt)}
    if setting == "BRUIN_VAULT_ROLE_ID":
        return {setting: world.role_id if good else "6f1d2f4e-0000-4000-8000-000000000000",
                "BRUIN_VAULT_SECRET_ID": world.secret_id()}
    assert setting == "BRUIN_VAULT_JWT_ROLE"
    return {setting: JWT_ROLE if good else "no-such-ci", "BRUIN_VAULT_JWT_FILE": mat.write("ci.jwt", world.ci_jwt())}


@pytest.mark.parametrize("winner", ORDER[:-1])
def test_precedence_winner_is_used(mat: Materialize, revocation: set[str], winner: str) -> None:
    # The winner is valid and every setting below it is not: success means none of them was used.
    env: dict[str, str] = {}
    for setting in ORDER[ORDER.index(winner) + 1:]:
        env.update(_credential(mat, setting, good=False))
    env.update(_credential(mat, winner, good=True))
    mat.assert_same_file(mat.render(env=env))


@pytest.mark.parametrize("winner", ORDER[:-1])
def test_precedence_no_fallback_past_a_failing_winner(mat: Materialize, revocation: set[str],
                                                      winner: str) -> None:
    # The winner is invalid and every setting below it is valid: it fails, naming the winner's login.
    env: dict[str, str] = {}
    for setting in ORDER[ORDER.index(winner) + 1:]:
        env.update(_credential(mat, setting, good=True))
    env.update(_credential(mat, winner, good=False))
    line = mat.render(env=env).error_line()
    if winner in _NAMED_IN_ERROR:
        assert _NAMED_IN_ERROR[winner] in line


def _flag_over_env_case(mat: Materialize, flag: str) -> tuple[dict[str, str], str]:
    """(environment with a bad value, the flag's good value) for one setting."""
    world = mat.world
    good, bad = world.policy_token(), _bogus_token()
    k8s = {"BRUIN_VAULT_K8S_TOKEN_PATH": mat.write("sa-token", world.k8s_jwt)}
    return {
        "--token": ({"BRUIN_VAULT_TOKEN": bad}, good),
        "--token-file": ({"BRUIN_VAULT_TOKEN_FILE": mat.write("bad", bad)}, mat.write("good", good)),
        "--role": ({"BRUIN_VAULT_ROLE": "no-such-role", **k8s}, K8S_ROLE),
        "--secret-id": ({"BRUIN_VAULT_ROLE_ID": world.role_id, "BRUIN_VAULT_SECRET_ID": _bogus_token()},
                        world.secret_id()),
        "--jwt-role": ({"BRUIN_VAULT_JWT_ROLE": "no-such-ci",
                        "BRUIN_VAULT_JWT_FILE": mat.write("ci.jwt", world.ci_jwt())}, JWT_ROLE),
        "--vault-host": ({"BRUIN_VAULT_HOST": "http://127.0.0.1:9", "BRUIN_VAULT_TOKEN": good},
                         world.bao.http_addr),
        "--ca-cert": ({"BRUIN_VAULT_HOST": world.bao.https_addr, "BRUIN_VAULT_TOKEN": good,
                       "VAULT_CACERT": str(world.bao.pki.other_ca_cert)}, str(world.bao.pki.ca_cert)),
    }[flag]


@pytest.mark.parametrize("flag", ["--token", "--token-file", "--role", "--secret-id", "--jwt-role",
                                  "--vault-host", "--ca-cert"])
def test_flag_wins_over_its_environment_variable(mat: Materialize, revocation: set[str], flag: str) -> None:
    env, value = _flag_over_env_case(mat, flag)
    mat.assert_same_file(mat.render(flag, value, env=env))


def test_bruin_vault_host_wins_over_vault_addr(mat: Materialize, auth_world: AuthWorld) -> None:
    token = auth_world.policy_token()
    mat.assert_same_file(mat.render(env={"BRUIN_VAULT_TOKEN": token, "VAULT_ADDR": "http://127.0.0.1:9"}))


def test_vault_addr_is_the_fallback(mat: Materialize, auth_world: AuthWorld) -> None:
    env = {"BRUIN_VAULT_TOKEN": auth_world.policy_token(), "BRUIN_VAULT_HOST": None,
           "VAULT_ADDR": auth_world.bao.https_addr, "VAULT_CACERT": str(auth_world.bao.pki.ca_cert)}
    mat.assert_same_file(mat.render(env=env))


# --- VAULT_* and BAO_* fallbacks ------------------------------------------------------------------

# Each connection setting read from the Vault CLI's VAULT_* and OpenBao's BAO_* variables when the
# BRUIN_* one is not set (settings._FALLBACKS; the token: VAULT_TOKEN, BAO_TOKEN). The proxy's are
# in tests/test_transport.py, where a proxy runs.
FALLBACK_SETTINGS = ["ADDR", "TOKEN", "NAMESPACE", "CACERT", "CAPATH", "CLIENT_CERT", "SKIP_VERIFY"]
_BRUIN_NAMES = {"ADDR": "BRUIN_VAULT_HOST", "TOKEN": "BRUIN_VAULT_TOKEN"}


def _variable(prefix: str, suffix: str) -> str:
    if prefix == "BRUIN":
        return _BRUIN_NAMES.get(suffix, f"BRUIN_VAULT_{suffix}")
    return f"{prefix}_{suffix}"


@dataclasses.dataclass
class FallbackCase:
    base: Mapping[str, str | None]  # everything else the run needs
    good: dict[str, str]  # by variable suffix: values that work
    bad: dict[str, str]  # values that make the run fail

    def env(self, **values_by_prefix: dict[str, str]) -> dict[str, str | None]:
        env = dict(self.base)
        for prefix, values in values_by_prefix.items():
            env.update({_variable(prefix, suffix): value for suffix, value in values.items()})
        return env


def _fallback_case(mat: Materialize, setting: str) -> FallbackCase:
    world, pki = mat.world, mat.world.bao.pki
    tls = {"BRUIN_VAULT_HOST": world.bao.https_addr, "BRUIN_VAULT_TOKEN": world.policy_token()}
    if setting == "ADDR":
        return FallbackCase({"BRUIN_VAULT_HOST": None, "BRUIN_VAULT_TOKEN": world.policy_token()},
                            {"ADDR": world.bao.http_addr}, {"ADDR": "http://127.0.0.1:9"})
    if setting == "TOKEN":
        return FallbackCase({}, {"TOKEN": world.policy_token()}, {"TOKEN": _bogus_token()})
    if setting == "NAMESPACE":
        return FallbackCase({"BRUIN_VAULT_TOKEN": world.policy_token(namespace=NAMESPACE)},
                            {"NAMESPACE": NAMESPACE}, {"NAMESPACE": "no-such-namespace"})
    if setting == "CACERT":
        return FallbackCase(tls, {"CACERT": str(pki.ca_cert)}, {"CACERT": str(pki.other_ca_cert)})
    if setting == "CAPATH":
        other = mat.tmp_path / "other-ca.d"
        other.mkdir(exist_ok=True)
        (other / "unrelated.pem").write_bytes(pki.other_ca_cert.read_bytes())
        return FallbackCase(tls, {"CAPATH": str(pki.ca_dir)}, {"CAPATH": str(other)})
    if setting == "CLIENT_CERT":
        missing = str(mat.tmp_path / "nowhere.pem")
        return FallbackCase({**tls, "BRUIN_VAULT_HOST": world.bao.mtls_addr, "BRUIN_VAULT_CACERT": str(pki.ca_cert)},
                            {"CLIENT_CERT": str(pki.client_cert), "CLIENT_KEY": str(pki.client_key)},
                            {"CLIENT_CERT": missing, "CLIENT_KEY": missing})
    assert setting == "SKIP_VERIFY"  # the server's CA is not trusted: only skipping verification works
    return FallbackCase(tls, {"SKIP_VERIFY": "true"}, {"SKIP_VERIFY": "false"})


@pytest.mark.parametrize("setting", FALLBACK_SETTINGS)
@pytest.mark.parametrize("prefix", ["VAULT", "BAO"])
def test_fallback_variable_is_read(mat: Materialize, prefix: str, setting: str) -> None:
    case = _fallback_case(mat, setting)
    mat.assert_same_file(mat.render(env=case.env(**{prefix: case.good})))
    # And its value is used, not ignored: a bad one fails (exit 2 for a certificate file not there).
    mat.render(env=case.env(**{prefix: case.bad})).error_line(code=2 if setting == "CLIENT_CERT" else 3)


@pytest.mark.parametrize("setting", FALLBACK_SETTINGS)
@pytest.mark.parametrize("winner", ["BRUIN", "VAULT"])
def test_fallback_precedence(mat: Materialize, winner: str, setting: str) -> None:
    # BRUIN_* over VAULT_* over BAO_*: the winner is good, everything below it bad.
    case = _fallback_case(mat, setting)
    losers = ["VAULT", "BAO"] if winner == "BRUIN" else ["BAO"]
    mat.assert_same_file(mat.render(env=case.env(**{loser: case.bad for loser in losers}, **{winner: case.good})))


# --- namespaces ----------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["VAULT_NAMESPACE", "BRUIN_VAULT_NAMESPACE", "--namespace"])
def test_namespace_header_is_sent(mat: Materialize, auth_world: AuthWorld, form: str) -> None:
    # The token lives in the namespace only: outside it, OpenBao knows no such token.
    token = auth_world.policy_token(namespace=NAMESPACE)
    if form == "--namespace":
        run = mat.render("--namespace", NAMESPACE, env={"BRUIN_VAULT_TOKEN": token})
    else:
        run = mat.render(env={"BRUIN_VAULT_TOKEN": token, form: NAMESPACE})
    mat.assert_same_file(run)


def test_namespace_token_without_the_namespace_fails(mat: Materialize, auth_world: AuthWorld) -> None:
    token = auth_world.policy_token(namespace=NAMESPACE)
    mat.render(env={"BRUIN_VAULT_TOKEN": token}).error_line()


def test_bruin_namespace_wins_over_vault_namespace(mat: Materialize, auth_world: AuthWorld) -> None:
    token = auth_world.policy_token(namespace=NAMESPACE)
    env = {"BRUIN_VAULT_TOKEN": token, "BRUIN_VAULT_NAMESPACE": NAMESPACE, "VAULT_NAMESPACE": "no-such-namespace"}
    mat.assert_same_file(mat.render(env=env))


def test_approle_login_in_a_namespace(mat: Materialize, auth_world: AuthWorld) -> None:
    before = auth_world.accessors(NAMESPACE)
    env = {"VAULT_NAMESPACE": NAMESPACE, "BRUIN_VAULT_ROLE_ID": auth_world.namespace_role_id,
           "BRUIN_VAULT_SECRET_ID": auth_world.secret_id(APPROLE_ROLE, namespace=NAMESPACE)}
    mat.assert_same_file(mat.render(env=env))
    assert_login_token_revoked(auth_world, before, NAMESPACE)


# --- TLS and the unix socket ---------------------------------------------------------------------


def _tls_env(world: AuthWorld, **settings: str | None) -> dict[str, str | None]:
    return {"BRUIN_VAULT_TOKEN": world.policy_token(), "BRUIN_VAULT_HOST": world.bao.https_addr, **settings}


@pytest.mark.parametrize("form", ["VAULT_CACERT", "--ca-cert", "VAULT_CAPATH", "--ca-path"])
def test_tls_with_a_trusted_ca(mat: Materialize, auth_world: AuthWorld, form: str) -> None:
    pki = auth_world.bao.pki
    # A CA directory as the Vault CLI reads it: every PEM file in it, whatever its name.
    value = str(pki.ca_cert if form in ("VAULT_CACERT", "--ca-cert") else pki.ca_dir)
    if form.startswith("--"):
        run = mat.render(form, value, env=_tls_env(auth_world))
    else:
        run = mat.render(env=_tls_env(auth_world, **{form: value}))
    mat.assert_same_file(run)
    assert not any(SKIP_WARNING in line for line in run.lines)


def test_bruin_cacert_wins_over_vault_cacert(mat: Materialize, auth_world: AuthWorld) -> None:
    pki = auth_world.bao.pki
    env = _tls_env(auth_world, BRUIN_VAULT_CACERT=str(pki.ca_cert), VAULT_CACERT=str(pki.other_ca_cert))
    mat.assert_same_file(mat.render(env=env))


@pytest.mark.parametrize("trust", ["system-store", "other-ca", "skip-verify-false"])
def test_tls_with_an_untrusted_certificate(mat: Materialize, auth_world: AuthWorld, trust: str) -> None:
    settings = {"system-store": {}, "other-ca": {"VAULT_CACERT": str(auth_world.bao.pki.other_ca_cert)},
                "skip-verify-false": {"VAULT_SKIP_VERIFY": "false"}}[trust]
    line = mat.render(env=_tls_env(auth_world, **settings)).error_line()
    assert "127.0.0.1" in line and ("TLS" in line or "certificate" in line)


@pytest.mark.parametrize("form", ["VAULT_SKIP_VERIFY=1", "VAULT_SKIP_VERIFY=true", "--tls-skip-verify"])
def test_tls_skip_verify_works_with_a_warning(mat: Materialize, auth_world: AuthWorld, form: str) -> None:
    if form.startswith("--"):
        run = mat.render(form, env=_tls_env(auth_world))
    else:
        name, value = form.split("=")
        run = mat.render(env=_tls_env(auth_world, **{name: value}))
    mat.assert_same_file(run)
    assert len([line for line in run.lines if SKIP_WARNING in line]) == 1, run.lines


@pytest.mark.parametrize("form", ["env", "flag"])
def test_tls_client_certificate(mat: Materialize, auth_world: AuthWorld, form: str) -> None:
    pki = auth_world.bao.pki
    env = _tls_env(auth_world, BRUIN_VAULT_HOST=auth_world.bao.mtls_addr, VAULT_CACERT=str(pki.ca_cert))
    if form == "env":
        run = mat.render(env={**env, "VAULT_CLIENT_CERT": str(pki.client_cert),
                              "VAULT_CLIENT_KEY": str(pki.client_key)})
    else:
        run = mat.render("--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key), env=env)
    mat.assert_same_file(run)


def test_tls_client_certificate_missing(mat: Materialize, auth_world: AuthWorld) -> None:
    env = _tls_env(auth_world, BRUIN_VAULT_HOST=auth_world.bao.mtls_addr,
                   VAULT_CACERT=str(auth_world.bao.pki.ca_cert))
    mat.render(env=env).error_line()


def test_kubernetes_login_over_tls(mat: Materialize, auth_world: AuthWorld, revocation: set[str]) -> None:
    env = {"BRUIN_VAULT_HOST": auth_world.bao.https_addr, "VAULT_CACERT": str(auth_world.bao.pki.ca_cert),
           "BRUIN_VAULT_ROLE": K8S_ROLE, "BRUIN_VAULT_K8S_TOKEN_PATH": mat.write("sa-token", auth_world.k8s_jwt)}
    mat.assert_same_file(mat.render(env=env))
    assert_login_token_revoked(auth_world, revocation)


def test_unix_socket(mat: Materialize, auth_world: AuthWorld) -> None:
    run = mat.render(env={"BRUIN_VAULT_HOST": auth_world.bao.unix_addr,
                          "BRUIN_VAULT_TOKEN": auth_world.policy_token()})
    mat.assert_same_file(run)


def test_approle_login_over_the_unix_socket(mat: Materialize, auth_world: AuthWorld, revocation: set[str]) -> None:
    env = {"BRUIN_VAULT_HOST": auth_world.bao.unix_addr, "BRUIN_VAULT_ROLE_ID": auth_world.role_id,
           "BRUIN_VAULT_SECRET_ID": auth_world.secret_id()}
    mat.assert_same_file(mat.render(env=env))
    assert_login_token_revoked(auth_world, revocation)


# --- exec: no credential reaches bruin or a disk -------------------------------------------------


def _files_under(directory: Path) -> Iterator[Path]:
    return (path for path in directory.rglob("*") if path.is_file() and not path.is_symlink())


@pytest.mark.parametrize("how", ["token", "approle"])
def test_exec_hands_bruin_no_credential(mat: Materialize, auth_world: AuthWorld, run_cli: Any, fake_bruin: Any,
                                        revocation: set[str], how: str) -> None:
    reference = mat.reference()
    runtime = mat.tmp_path / "runtime"
    runtime.mkdir()
    given = auth_world.policy_token()
    secret_id = auth_world.secret_id()
    env = {"BRUIN_MATERIALIZE_RUNTIME_DIR": str(runtime), "BRUIN_MATERIALIZE_ALLOW_NON_TMPFS": "1"}
    if how == "token":
        env["BRUIN_VAULT_TOKEN"] = given
    else:
        env.update({"BRUIN_VAULT_ROLE_ID": auth_world.role_id, "BRUIN_VAULT_SECRET_ID": secret_id})
    proc = run_cli("exec", env=env, cwd=mat.tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = fake_bruin.record()
    assert record["config_text"].encode() == reference
    assert not Path(record["config_file"]).exists()
    for name, value in record["env"].items():
        assert not name.startswith(("BRUIN_VAULT_", "VAULT_", "BAO_")), name
        assert given not in value and secret_id not in value, name
        assert not TOKEN_SHAPE.search(value), f"{name} holds something shaped like a Vault token"
    if how == "approle":
        assert_login_token_revoked(auth_world, revocation)
    else:
        assert auth_world.token_is_live(given)
    # Nothing under the test's directory (home, runtime dir, cwd, the record) holds a token.
    for path in _files_under(mat.tmp_path):
        text = path.read_text(encoding="utf-8", errors="replace")
        assert given not in text and secret_id not in text, path
        assert not TOKEN_SHAPE.search(text), f"{path} holds something shaped like a Vault token"



def test_login_token_is_revoked_when_the_run_is_interrupted(mat: Materialize, auth_world: AuthWorld,
                                                             revocation: set[str], tmp_path: Path) -> None:
    # Logged in, then SIGTERM while a read hangs: the token must not outlive the run.
    import signal
    import subprocess
    import sys

    from testsupport.fault_proxy import ALWAYS, FaultProxy
    from testsupport.paths import MATERIALIZE

    proxy = FaultProxy(auth_world.bao.http_addr)
    proxy.start()
    try:
        proxy.add_rule("hang", path=f"{MOUNT}/data/", times=ALWAYS)
        env = {**os.environ, "BRUIN_VAULT_HOST": proxy.addr, "BRUIN_VAULT_ROLE_ID": auth_world.role_id,
               "BRUIN_VAULT_SECRET_ID": auth_world.secret_id()}
        proc = subprocess.Popen([sys.executable, str(MATERIALIZE), "render", "--output", str(tmp_path / "o.yml")],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            wait_until(lambda: proxy.requests(f"{MOUNT}/data/") >= 1, 15, 0.05, what="a read to hang")
            live_before_signal = auth_world.login_tokens_since(revocation)
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        proxy.stop()
    sys.stdout.write(stdout)  # where the leak guard looks
    sys.stderr.write(stderr)
    assert live_before_signal, "the run had not logged in before the signal"
    assert proc.returncode == 143, stderr
    assert_login_token_revoked(auth_world, revocation)


def test_verbose_names_the_credential_used_never_its_value(mat: Materialize, auth_world: AuthWorld,
                                                           revocation: set[str]) -> None:
    secret_id_file = mat.write("secret-id", auth_world.secret_id() + "\n")
    run = mat.render("-v", env={"BRUIN_VAULT_ROLE_ID": auth_world.role_id,
                                "BRUIN_VAULT_SECRET_ID_FILE": secret_id_file})
    assert run.returncode == 0, run.lines
    [line] = [line for line in run.lines if "logged in with" in line]
    assert line.endswith("materialize: logged in with AppRole login (auth/approle, role_id from BRUIN_VAULT_ROLE_ID) "
                         f"and the secret_id file {secret_id_file}")
    assert not TOKEN_SHAPE.search(run.stderr) and auth_world.role_id not in run.stderr
    token = auth_world.policy_token()
    run = mat.render("-v", env={"BRUIN_VAULT_TOKEN": token})
    [line] = [line for line in run.lines if "Vault token" in line]
    assert line.endswith("materialize: using the Vault token from BRUIN_VAULT_TOKEN")
    assert_login_token_revoked(auth_world, revocation)
