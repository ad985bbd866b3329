"""The token-lifetime guard's timing, on a clock the test moves: `before` runs on every list and read,
so between the moments it has work it must do nothing, and at them it must not miss it. The long
reads against a real OpenBao (renewal, a fresh login, an expired token) are tests/test_token_lifetime.py."""

from __future__ import annotations

from typing import Any

import pytest

from bruin_materialize.auth import Credentials, Login
from bruin_materialize.lifetime import TokenLifetime
from bruin_materialize.settings import Auth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_given_tokens_ttl_is_looked_up_once_after_a_second_of_reads_and_not_before() -> None:
    clock, asked = Clock(), []

    def look_up() -> Any:
        asked.append(clock.now)
        return {"data": {"ttl": 30, "creation_ttl": 60}}

    guard = TokenLifetime(None, Credentials(Auth("token", "BRUIN_VAULT_TOKEN", token="t"), "t"), None,  # type: ignore[arg-type]
                          look_up, clock=clock)
    for now in (100.0, 100.4, 100.99):
        clock.now = now
        guard.before()
        guard.read_done()
    assert asked == []
    clock.now = 101.0
    guard.before()
    assert asked == [101.0]
    for now in (101.5, 140.0, 1000.0):
        clock.now = now
        guard.before()
    assert asked == [101.0]
    assert guard.reads == 3 and guard.first_ttl == 60.0
    assert guard.expired()  # looked up at 101 with 30 s left


def test_a_login_token_is_left_alone_until_half_its_lease_has_passed() -> None:
    """The client is touched only to renew: None here, so any request before the half-life would fail."""
    clock = Clock()
    creds = Credentials(Auth("approle", "BRUIN_VAULT_ROLE_ID", role="r", secret_id="s"), "s")
    guard = TokenLifetime(None, creds, Login("t", 10.0, True), lambda: None, clock=clock)  # type: ignore[arg-type]
    for step in range(50):
        clock.now = 100.0 + step * 0.099  # up to 104.85: the renewal is due at 105
        guard.before()
    assert not guard.expired()
    clock.now = 105.0  # due: it turns to the client to renew (and, having none here, fails trying)
    with pytest.raises(AttributeError):
        guard.before()
