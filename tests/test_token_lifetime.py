"""A token whose TTL is shorter than the reads, against the real OpenBao of tests/test_auth.py.

A fault proxy delays each secret's read by 0.5 s, so ten secrets read two at a time take about
2.5 s, longer than the 2 s TTL of the roles and tokens made here. A login token is then renewed
(renew-self) or, when Vault will not extend it, replaced by a fresh login with the same
credentials; a given token that runs out is said to have expired, with its TTL; a secret_id that
could be used once cannot log in again, and the line says so.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bruin_materialize.cli import main
from testsupport.auth import MOUNT, SERVICE_ACCOUNT, AuthWorld
from testsupport.fault_proxy import ALWAYS, FaultProxy
from testsupport.harness import clear_vault_env
from testsupport.leak import LEAK_GUARD
from testsupport.runs import PROGRESS
from testsupport.wait import wait_until

SECRETS = 10
DELAY = 0.5
TTL = "2s"


@dataclass
class Slow:
    world: AuthWorld
    proxy: FaultProxy
    path: str
    policy: str
    out: Path

    def role(self, **options: Any) -> tuple[str, str]:
        """An AppRole role with the KV policy (and `default`, which allows renew-self and revoke-self): its
        role_id and a secret_id."""
        client = self.world.bao.client
        name = f"short-{uuid.uuid4().hex[:8]}"
        client.auth.approle.create_or_update_approle(name, token_policies=[self.policy], token_ttl=TTL, **options)
        role_id: str = client.auth.approle.read_role_id(name)["data"]["role_id"]
        return role_id, self.world.secret_id(name)

    def render(self, capsys: pytest.CaptureFixture[str], **env: str) -> tuple[int, list[str]]:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            code = main(["render", "-o", str(self.out), "--concurrency", "2"])
        # What the run said, without the progress lines its slow reads bring (testsupport.runs.PROGRESS).
        return code, [line for line in capsys.readouterr().err.splitlines() if not PROGRESS.fullmatch(line)]

    def logins(self, mount: str) -> int:
        return self.proxy.requests(f"auth/{mount}/login")


@pytest.fixture
def slow(auth_world: AuthWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         schema_path: Path) -> Iterator[Slow]:
    client = auth_world.bao.client
    path = f"lifetime/{uuid.uuid4().hex[:8]}"
    policy = f"read-{path.replace('/', '-')}"
    client.sys.create_or_update_policy(name=policy, policy=(
        f'path "{MOUNT}/metadata/{path}" {{ capabilities = ["list"] }}\n'
        f'path "{MOUNT}/data/{path}/*" {{ capabilities = ["read"] }}\n'))
    for index in range(SECRETS):
        client.secrets.kv.v2.create_or_update_secret(
            path=f"{path}/lake{index}", mount_point=MOUNT,
            secret={"type": "duckdb", "details": {"path": f"/data/lake{index}.db"}})
    proxy = FaultProxy(auth_world.bao.http_addr)
    proxy.start()
    proxy.add_rule("delay", path=f"/v1/{MOUNT}/data/{path}/", times=ALWAYS, seconds=DELAY)
    clear_vault_env(monkeypatch)
    for name in ("home", "cache"):
        (tmp_path / name).mkdir()
    for name, value in {"BRUIN_VAULT_HOST": proxy.addr, "BRUIN_VAULT_MOUNT_PATH": MOUNT, "BRUIN_VAULT_PATH": path,
                        "BRUIN_MATERIALIZE_SCHEMA": str(schema_path), "HOME": str(tmp_path / "home"),
                        "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": os.defpath}.items():
        monkeypatch.setenv(name, value)
    try:
        yield Slow(auth_world, proxy, path, policy, tmp_path / "out" / "bruin.yml")
    finally:
        proxy.stop()


def assert_every_secret_written(slow: Slow) -> None:
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(slow.out.read_text())
    assert len(doc["environments"]["default"]["connections"]["duckdb"]) == SECRETS


def assert_no_login_token_outlives_the_run(world: AuthWorld, before: set[str]) -> None:
    """The last token was revoked; one replaced during the reads runs out on its own, within its TTL."""
    wait_until(lambda: not world.login_tokens_since(before), 5, 0.2, what="the login tokens to be gone")


def test_a_renewable_approle_token_is_renewed_during_long_reads(slow: Slow, capsys: pytest.CaptureFixture[str]) -> None:
    before = slow.world.accessors()
    role_id, secret_id = slow.role(token_max_ttl="1h")
    code, lines = slow.render(capsys, BRUIN_VAULT_ROLE_ID=role_id, BRUIN_VAULT_SECRET_ID=secret_id)
    assert code == 0, lines
    assert_every_secret_written(slow)
    assert slow.proxy.requests("auth/token/renew-self") >= 1
    assert slow.logins("approle") == 1  # renewed, never replaced
    assert_no_login_token_outlives_the_run(slow.world, before)


def test_a_token_vault_will_not_extend_is_replaced_by_a_fresh_login(slow: Slow,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    before = slow.world.accessors()
    role_id, secret_id = slow.role(token_max_ttl=TTL)  # renewable, but never past its first 2 s
    code, lines = slow.render(capsys, BRUIN_VAULT_ROLE_ID=role_id, BRUIN_VAULT_SECRET_ID=secret_id)
    assert code == 0, lines
    assert_every_secret_written(slow)
    assert slow.logins("approle") >= 2
    assert_no_login_token_outlives_the_run(slow.world, before)


def test_a_secret_id_with_one_use_cannot_log_in_again_and_says_so(slow: Slow,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    role_id, secret_id = slow.role(token_max_ttl=TTL, secret_id_num_uses=1)
    code, lines = slow.render(capsys, BRUIN_VAULT_ROLE_ID=role_id, BRUIN_VAULT_SECRET_ID=secret_id)
    assert code == 3, lines
    [line] = lines
    assert line.startswith("materialize: error: the login token runs out during the reads and cannot be renewed; "
                           "logging in again failed: AppRole login (auth/approle, role_id from BRUIN_VAULT_ROLE_ID) "
                           "was refused (HTTP 400)")
    assert line.endswith("; a secret_id with one use left (secret_id_num_uses) was used up by the first login and "
                         "cannot log in again: give one with more uses, or a role whose token_ttl covers the reads")
    assert not slow.out.exists()


def test_a_kubernetes_login_is_renewed_or_replaced_during_long_reads(slow: Slow, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    client = slow.world.bao.client
    namespace, name = SERVICE_ACCOUNT
    jwt_file = tmp_path / "sa-token"
    jwt_file.write_text(slow.world.k8s_jwt)
    for max_ttl, renewed in (("1h", True), (TTL, False)):
        role = f"short-{uuid.uuid4().hex[:8]}"
        client.write_data(f"auth/kubernetes/role/{role}", data={
            "bound_service_account_names": [name], "bound_service_account_namespaces": [namespace],
            "token_policies": [slow.policy], "token_ttl": TTL, "token_max_ttl": max_ttl})
        before = slow.world.accessors()
        logins, renewals = slow.logins("kubernetes"), slow.proxy.requests("auth/token/renew-self")
        code, lines = slow.render(capsys, BRUIN_VAULT_ROLE=role, BRUIN_VAULT_K8S_TOKEN_PATH=str(jwt_file))
        assert code == 0, lines
        assert_every_secret_written(slow)
        if renewed:
            assert slow.proxy.requests("auth/token/renew-self") > renewals
            assert slow.logins("kubernetes") == logins + 1
        else:
            assert slow.logins("kubernetes") >= logins + 2
        assert_no_login_token_outlives_the_run(slow.world, before)


def test_a_given_token_that_expires_says_so_with_its_ttl(slow: Slow, capsys: pytest.CaptureFixture[str]) -> None:
    answer = slow.world.bao.client.auth.token.create(policies=[slow.policy], ttl=TTL)
    token = answer["auth"]["client_token"]
    LEAK_GUARD.add(token)
    slow.world.own_accessors.add(answer["auth"]["accessor"])
    code, lines = slow.render(capsys, BRUIN_VAULT_TOKEN=token)
    assert code == 3, lines
    [line] = lines
    assert re.fullmatch(r"materialize: error: the token expired after \d+ reads; its TTL was 2s \(BRUIN_VAULT_TOKEN\); "
                        r"give a token whose TTL covers the whole run, or log in instead \(BRUIN_VAULT_ROLE, "
                        r"BRUIN_VAULT_ROLE_ID\), which renews", line), line
    assert slow.proxy.requests("auth/token/renew-self") == 0  # someone else's token is never renewed
    assert not slow.out.exists()
