"""A token's lifetime during the reads: a login token renewed, or replaced by a fresh login, before
it runs out; a given token that runs out explained as such, not as a policy that lacks `read`.

Checked before each list and read (vault.KV calls `before`), by up to `--concurrency` threads at
once: one lock, so one thread renews or logs in while the others wait, then all read with the new
token. Between those moments `before` costs one comparison: it takes the lock only once the next
thing to do (the look-up, the renewal) may be due, a time kept under the lock. Every call goes
through hvac's API (`auth/token/renew-self`, the login, `lookup-self`).

- A login token (ours) is renewed once half its lease has passed, while Vault extends it to what it
  was first given; when it is not renewable, or Vault grants less (its max TTL is near), the same
  credentials log in again, once per token. The session revokes the token current at its end; a
  replaced one runs out on its own. Once the reads are done, exec's leases hang on the current one:
  leases.Held renews it while bruin runs (`now`, `renewed`), never logging in again.
- A given token (someone else's) is never renewed. Its TTL is asked once (`lookup-self`, which the
  `default` policy allows) when the reads outlast `_LOOKUP_AFTER`, so a short run makes no extra
  request; a 403 once it has run out says so: "the token expired after N reads; its TTL was ...".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import hvac
import hvac.exceptions

from bruin_materialize import auth
from bruin_materialize.errors import MaterializeError, vault_error
from bruin_materialize.vault import call, dig


class Token(NamedTuple):
    ours: bool  # a login of this run's; a given token is the caller's, never renewed here
    ttl: float  # seconds last granted (a login's; 0: unknown or it never expires)
    renewable: bool
    left: float | None  # seconds until it ends; None: it never does, or Vault would not say
    source: str  # the setting a given token came from, for messages


_LOOKUP_AFTER = 1.0  # seconds of listing and reading before a given token's TTL is worth one request
_ATTRIBUTE = "_bruin_materialize_lifetime"


class TokenLifetime:
    def __init__(self, client: hvac.Client, creds: auth.Credentials, login: auth.Login | None,
                 look_up: Callable[[], Any], clock: Callable[[], float] = time.monotonic) -> None:
        """`look_up`: lookup-self for a given token, on a client of its own with a short timeout and no
        retries: a Vault that misbehaves must not spend the reads' time budget on it."""
        self._client, self._creds, self._clock, self._look_up_self = client, creds, clock, look_up
        self._lock = threading.Lock()
        self._started: float | None = None  # the first list or read: waiting for Vault before it is not reading
        self.reads = 0
        self._looked_up = login is not None
        self._lease = 0.0  # seconds the current token was granted; 0: unknown or never expires
        self._renewable = False
        self._expires: float | None = None
        self.first_ttl: float | None = None  # the TTL messages name
        if login is not None:
            self._granted(login.ttl, login.renewable)
        self._quiet_until = float("-inf")  # before this moment `before` has nothing to do (see _plan)

    # --- called by the readers -------------------------------------------------------------------

    def before(self) -> None:
        if self._clock() < self._quiet_until:  # read without the lock: it is only ever set under it
            return
        with self._lock:
            if self._started is None:
                self._started = self._clock()
            if not self._looked_up and self._clock() - self._started >= _LOOKUP_AFTER:
                self._look_up()
            if self._creds.auth.logs_in and self._expires is not None and self._due():
                if not (self._renewable and self._renew()):
                    self._log_in_again()
            self._quiet_until = self._plan()

    def read_done(self) -> None:
        with self._lock:
            self.reads += 1

    def expired(self) -> bool:
        """Has the current token run out (nothing left to revoke)?"""
        with self._lock:
            return self._expires is not None and self._clock() >= self._expires

    def forbidden(self) -> MaterializeError | None:
        """Why a 403 came, when it is the token's end rather than its policy; None otherwise."""
        with self._lock:
            if self._expires is None or self._clock() < self._expires or self.first_ttl is None:
                return None
            ttl = _duration(self.first_ttl)
            if self._creds.auth.logs_in:
                return vault_error(f"the login token expired after {self.reads} reads, before it could be renewed "
                                   f"(its TTL was {ttl}); a Vault this slow needs a role with a longer token_ttl")
            return vault_error(f"the token expired after {self.reads} reads; its TTL was {ttl} "
                               f"({self._creds.auth.source}); give a token whose TTL covers the whole run, or log "
                               "in instead (BRUIN_VAULT_ROLE, BRUIN_VAULT_ROLE_ID), which renews")

    # --- while bruin runs (leases.Held) -----------------------------------------------------------

    def now(self) -> Token:
        """The current token as the leases created with it depend on it. A given token's TTL is looked
        up first if the reads were too short to need it (one bounded request)."""
        with self._lock:
            if not self._looked_up:
                self._look_up()
            left = None if self._expires is None else max(0.0, self._expires - self._clock())
            return Token(self._creds.auth.logs_in, self._lease, self._renewable, left, self._creds.auth.source)

    def renewed(self, ttl: float, renewable: bool) -> None:
        """Held renewed the token: `expired()` (and with it the session's revoke) must know."""
        with self._lock:
            self._granted(ttl, renewable)

    # --- the token's state ---------------------------------------------------------------------------

    def _granted(self, ttl: float, renewable: bool) -> None:
        self._lease, self._renewable = ttl, renewable
        self._expires = self._clock() + ttl if ttl > 0 else None
        if self.first_ttl is None and ttl > 0:
            self.first_ttl = ttl

    def _plan(self) -> float:
        """When `before` may next have something to do: the look-up of a given token's TTL, or the
        renewal of a login token (`_due`), whichever comes first; -inf (every call looks) when a
        state this does not foresee holds."""
        assert self._started is not None
        moments = [float("inf")]
        if not self._looked_up:
            moments.append(self._started + _LOOKUP_AFTER)
        if self._creds.auth.logs_in and self._expires is not None:
            moments.append(self._expires - self._lease / 2)
        return min(moments)

    def _due(self) -> bool:
        assert self._expires is not None
        return self._expires - self._clock() <= self._lease / 2

    def _renew(self) -> bool:
        """renew-self; False when Vault refuses or no longer extends it (its max TTL is reached)."""
        remaining = (self._expires or 0.0) - self._clock()
        try:
            answer = call("renewing the login token", self._client.auth.token.renew_self)
        except (MaterializeError, hvac.exceptions.VaultError):
            return False
        ttl = dig(answer, "auth", "lease_duration")
        # Less than it was first given: its max TTL is near, and each renewal would grant less (a second
        # more than what was left, in whole seconds, until nothing is): a fresh login lasts. A TTL no Vault
        # gives (past Go's durations) is no extension either.
        if not auth.is_duration(ttl) or ttl <= remaining or (self.first_ttl is not None and ttl < self.first_ttl):
            return False
        self._granted(float(ttl), bool(dig(answer, "auth", "renewable")))
        return True

    def _log_in_again(self) -> None:
        try:
            login = auth.log_in(self._client, self._creds)
        except MaterializeError as exc:
            raise vault_error(f"the login token runs out during the reads and cannot be renewed; logging in again "
                              f"failed: {exc.message}{_used_up(self._creds)}") from None
        self._client.token = login.token  # the readers' next requests carry it; those under way keep the old
        self._granted(login.ttl, login.renewable)

    def _look_up(self) -> None:
        """A given token's TTL, once: `ttl` is what is left, `creation_ttl` what it was given."""
        self._looked_up = True
        try:
            answer = self._look_up_self()
        except (MaterializeError, hvac.exceptions.VaultError):
            return  # its policy may not allow it: a 403 then stays the policy's message
        left, given = dig(answer, "data", "ttl"), dig(answer, "data", "creation_ttl")
        if auth.is_duration(left) and auth.is_duration(given) and given > 0 and left >= 0:  # 0, 0: never expires
            self._expires = self._clock() + left  # whole seconds, rounded down: it may end up to 1 s later
            self.first_ttl = float(given)


def _used_up(creds: auth.Credentials) -> str:
    if creds.auth.method != "approle":
        return ""
    return ("; a secret_id with one use left (secret_id_num_uses) was used up by the first login and cannot log in "
            "again: give one with more uses, or a role whose token_ttl covers the reads")


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 120:
        return f"{whole}s"
    return f"{whole // 60}m{whole % 60}s" if whole < 7200 else f"{whole // 3600}h{whole % 3600 // 60}m"


def attach(client: hvac.Client, lifetime: TokenLifetime) -> None:
    """The session hands hvac's client to the steps that read; its token's lifetime goes with it."""
    setattr(client, _ATTRIBUTE, lifetime)


def attached(client: hvac.Client) -> Any:
    return getattr(client, _ATTRIBUTE, None)
