"""What references name, read through hvac, and the leases dynamic secrets come with.

`exec`: each referenced path is read once, right before bruin starts; the leases are renewed at
about 2/3 of their TTL while bruin runs (as Vault Agent does) and revoked (sys/leases/revoke) as
soon as it exits, however it exits, before the login token they hang on is revoked. A lease ends
with the token that created it, so that token (a login of ours: the one current after the reads,
which lifetime.py may have replaced) is renewed with them on the same thread; a given token is the
caller's and only said to end first when it does. `render`: the
leases are left to their TTL and listed (path, lease id, expiry; never a value). `check` creates
nothing: it asks sys/capabilities-self whether the token may read each path, and which engine
answers there. docs/dynamic-credentials.md has the policy all of this needs.
"""

from __future__ import annotations

import re
import signal
import threading
import time
import urllib.parse
from types import TracebackType
from typing import Any, NamedTuple

import hvac
import hvac.exceptions

from bruin_materialize import lifetime
from bruin_materialize.adapter import RetryPolicy
from bruin_materialize.auth import is_duration
from bruin_materialize.console import Console
from bruin_materialize.errors import ExitCode, MaterializeError, vault_error
from bruin_materialize.references import NOT_ENGINES
from bruin_materialize.settings import Settings
from bruin_materialize.threads import start_daemon
from bruin_materialize.vault import call, dig, open_client, transport_of, unexpected

DOCS = "docs/dynamic-credentials.md"
POLICY = (f"`read` on the path, and `update` on sys/leases/renew and sys/leases/revoke to renew and revoke "
          f"its lease ({DOCS})")
RENEW_AT = 2 / 3  # of a lease's TTL, as Vault Agent renews
_TOKEN = ""  # the renewal schedule's key for the login token (no lease id is empty)
_STOPPING = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}


class Lease(NamedTuple):
    path: str
    lease_id: str
    renewable: bool
    ttl: int  # seconds, as last granted
    granted: float  # time.monotonic() when it was granted
    expires: float  # time.time() when it ends unless renewed

    def expiry(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expires))

    def describe(self) -> dict[str, Any]:
        """For --format json: never a value."""
        return {"path": self.path, "lease_id": self.lease_id, "expires": self.expiry(), "renewable": self.renewable}


class Answer(NamedTuple):
    data: dict[str, Any]  # the keys a reference picks from (of data.data for a KV v2 path)
    lease: Lease | None  # None for what has no lease (a KV secret)
    refused: str | None = None  # why the answer is not Vault's, though it granted a lease to revoke


class Engine(NamedTuple):
    type: str  # database, kv, aws...
    kv2_data: bool  # a KV v2 path under data/: the secret is in data.data
    mount: str = ""  # where it is mounted, with its namespace: ns1/auth/token/


# Vault's own parts, not secrets engines: references.py refuses sys/, auth/ and identity/ at a path's
# start, but under a namespace (NS/auth/token/lookup-self answers with the token itself) only the
# mount that answers tells them apart from a secret that happens to sit in an `auth` folder.
_VAULT_ITSELF = frozenset({"token", "ns_token", "system", "ns_system", "identity", "ns_identity"})
_AUTH_MOUNT = re.compile(r"(?:^|/)auth/[^/]+/$")


def refuse_vault_itself(path: str, engine: Engine | None) -> None:
    """Exit 4 for a reference whose path Vault serves from itself (a token, its configuration, an auth
    method) rather than from a secrets engine; when the mount is not told (the token may not see it), a
    `sys`, `auth` or `identity` segment anywhere is refused, as it may follow a namespace."""
    if engine is not None:
        itself = engine.type in _VAULT_ITSELF or bool(_AUTH_MOUNT.search(engine.mount))
    else:
        itself = any(segment in NOT_ENGINES for segment in path.split("/"))
    if itself:
        raise MaterializeError(f"$vault {path} is served by Vault itself (a token, its configuration or an auth "
                               "method), not by a secrets engine; references read secrets engines only",
                               ExitCode.INVALID)


def engine_at(client: hvac.Client, path: str) -> Engine | None:
    """The secrets engine mounted at `path`, from sys/internal/ui/mounts (what `bao read` asks as well);
    None when it does not answer (the token may have no capability there)."""
    quoted = urllib.parse.quote(path, safe="/")
    try:
        body = call(f"inspecting the mount of {path}",
                    lambda: client.adapter.get("/v1/sys/internal/ui/mounts/" + quoted))
    except hvac.exceptions.VaultError:
        return None
    kind, mount, options = dig(body, "data", "type"), dig(body, "data", "path"), dig(body, "data", "options")
    if not isinstance(kind, str) or not isinstance(mount, str):
        return None
    version = options.get("version") if isinstance(options, dict) else None
    inside = path[len(mount):] if path.startswith(mount) else ""
    return Engine(kind, kind in ("kv", "generic") and str(version) == "2" and inside.startswith("data/"), mount)


def read(client: hvac.Client, path: str) -> Answer:
    """One GET of `path` (hvac's `read`, as `bao read PATH`), and the lease it came with."""
    engine = engine_at(client, path)
    refuse_vault_itself(path, engine)
    what = f"reading {path}"
    try:
        body = call(what, lambda: client.read(path))
    except hvac.exceptions.Forbidden:
        raise vault_error(f"permission denied reading {path}: the token's policy needs {POLICY}") from None
    except hvac.exceptions.VaultError as exc:
        raise unexpected(what, exc) from None
    if body is None:  # hvac's answer to a 404
        raise vault_error(f"{what}: not found; check the path (and, for database/creds/ROLE, that the role exists)")
    if not isinstance(body, dict):
        raise vault_error(f"{what}: the answer is not a JSON object")
    data = dig(body, "data", "data") if engine is not None and engine.kv2_data else dig(body, "data")
    if not isinstance(data, dict):
        raise vault_error(f"{what}: the answer holds no data object (a deleted KV version, or not a secret)")
    lease_id, ttl = body.get("lease_id"), body.get("lease_duration")
    if not isinstance(lease_id, str) or not lease_id:
        return Answer(data, None)
    ttl = ttl if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl >= 0 else 0
    renewable = body.get("renewable") is True
    if not is_duration(ttl):  # held, so that it is revoked, but no time can be made of it
        return Answer(data, Lease(path, lease_id, False, 0, time.monotonic(), time.time()),
                      f"{what}: the answer's lease_duration is longer than any duration Vault gives (Go's limit, "
                      "about 292 years); is BRUIN_VAULT_HOST Vault itself?")
    return Answer(data, Lease(path, lease_id, renewable, ttl, time.monotonic(), time.time() + ttl))


class Held:
    """The leases of one run: created by `read_all`, renewed while bruin runs (exec), and when the
    run is over revoked (exec, or any failure) or left to their TTL (a render that wrote its file).

    A context manager entered after the session it uses, so that it closes first: the login token
    is revoked after the leases it holds, never before (revoking it would end them too)."""

    def __init__(self, settings: Settings, console: Console) -> None:
        self.settings = settings
        self.console = console
        self.client: hvac.Client | None = None
        self.leases: list[Lease] = []
        self.kept = False  # left to their TTL: the login token must then stay too
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._renewing: hvac.Client | None = None  # the renewals' own client
        self._token_due: float | None = None  # when to renew the login token next (monotonic)
        self._lock = threading.Lock()
        self._token: lifetime.Token | None = None  # the token the leases were created with (exec)
        self._token_ends = 0.0  # time.time() when it ends unless renewed

    def keeps_login(self) -> bool:
        return self.kept

    def read_all(self, client: hvac.Client, paths: list[str]) -> dict[str, dict[str, Any]]:
        """Each path read once; each lease held from the moment it is granted."""
        self.client = client
        answers: dict[str, dict[str, Any]] = {}
        for path in paths:
            answer = read(client, path)
            if answer.lease is not None:
                with self._lock:
                    self.leases.append(answer.lease)
                if answer.refused is None:
                    self._say_created(answer.lease)
            if answer.refused is not None:
                raise vault_error(answer.refused)
            answers[path] = answer.data
        token_due = self._hold_token(client) if self.settings.command == "exec" and self.leases else None
        if token_due is not None or (self.settings.command == "exec"
                                     and any(lease.renewable and lease.ttl > 0 for lease in self.leases)):
            self._renewing = self._short_client()
            self._token_due = token_due
            self._renewer = start_daemon(self._renew_while_running, "lease-renewal")
        return answers

    def _short_client(self) -> hvac.Client:
        """A client of its own, with a short budget: stopping the renewals, or revoking after a signal
        aborted the session's client, never waits out the whole BRUIN_VAULT_TIMEOUT."""
        assert self.client is not None
        policy = RetryPolicy(min(self.settings.timeout, 5.0), 1, self.settings.retry_wait_min,
                             self.settings.retry_wait_max)
        return open_client(self.settings, policy=policy, token=self.client.token)

    def leave(self) -> None:
        """Leave the leases to their TTL (render, exec's replace mode), saying which and until when."""
        self.kept = True
        self._stop_renewing()
        for lease in self.leases:
            self.console.info(f"lease {lease.lease_id} ({lease.path}) ends at {lease.expiry()} unless renewed; "
                              f"end it early with `bao lease revoke {lease.lease_id}`")
            if self.console.document is not None:
                self.console.document.leases.append(lease.describe())

    def __enter__(self) -> Held:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None and self.settings.command == "render":
            self.leave()
        elif kind is not None or not self.kept:  # a failure after leave(): bruin never got them
            self.kept = False
            self._stop_renewing()
            self._revoke_all()

    # --- ending them ---------------------------------------------------------------------------------

    def _stop_renewing(self) -> None:
        self._stop.set()
        if self._renewing is not None:
            transport_of(self._renewing).cancel.set()  # a renewal under way gives up rather than retry
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        if self._renewing is not None:
            self._renewing.adapter.close()
            self._renewing = None

    def _revoke_all(self) -> None:
        """Revoke every lease on a client of its own (a signal aborts the reading one), with the
        stopping signals held back until done: a second SIGTERM must not leave a user behind."""
        if not self.leases or self.client is None:
            return
        if self._token is not None and time.time() >= self._token_ends:  # Vault revoked them with it
            self.console.info(f"the leases ended with the token that created them, at {self._token_expiry()}: "
                              "nothing left to revoke")
            return
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
        try:
            client = self._short_client()
            try:
                for lease in self.leases:
                    self._revoke(client, lease)
            finally:
                client.adapter.close()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def _revoke(self, client: hvac.Client, lease: Lease) -> None:
        try:
            call(f"revoking the lease of {lease.path}",
                 lambda: client.sys.revoke_lease(lease_id=lease.lease_id))  # type: ignore[no-untyped-call]
        except (MaterializeError, hvac.exceptions.VaultError) as exc:
            why = exc.message if isinstance(exc, MaterializeError) else _refusal(exc)
            self.console.warning(f"could not revoke lease {lease.lease_id} ({lease.path}): {why}; it ends at "
                                 f"{lease.expiry()} (its TTL)")
            return
        self.console.debug(f"revoked lease {lease.lease_id} ({lease.path})")

    # --- renewing them ------------------------------------------------------------------------------

    def _renew_while_running(self) -> None:
        # A lease without a TTL does not end by itself: nothing to renew.
        due = {lease.lease_id: lease.granted + lease.ttl * RENEW_AT for lease in self.leases
               if lease.renewable and lease.ttl > 0}
        if self._token_due is not None:  # the token they were created with: they end with it
            due[_TOKEN] = self._token_due
        while due:
            lease_id, when = min(due.items(), key=lambda item: item[1])
            if self._stop.wait(max(0.0, when - time.monotonic())):
                return
            following = self._renew_token() if lease_id == _TOKEN else self._renew(lease_id)
            if following is None:
                del due[lease_id]
            else:
                due[lease_id] = following

    def _renew(self, lease_id: str) -> float | None:
        """Renew one lease; when to renew it next (monotonic), or None to stop trying."""
        index = next(i for i, lease in enumerate(self.leases) if lease.lease_id == lease_id)
        lease = self.leases[index]
        client = self._renewing
        assert client is not None
        try:
            body = call(f"renewing the lease of {lease.path}",
                        lambda: client.sys.renew_lease(  # type: ignore[no-untyped-call]
                            lease_id=lease.lease_id, increment=lease.ttl))
        except (MaterializeError, hvac.exceptions.VaultError) as exc:
            return None if self._stop.is_set() else self._renewal_failed(lease, exc)  # stopped: bruin is done
        granted = body.get("lease_duration") if isinstance(body, dict) else None
        if not is_duration(granted) or granted < 0:
            return self._renewal_failed(lease, vault_error("the answer holds no lease_duration Vault could give"))
        now = time.monotonic()
        renewed = lease._replace(granted=now, expires=time.time() + granted, ttl=max(granted, lease.ttl))
        with self._lock:
            self.leases[index] = renewed
        if granted < lease.ttl or granted == 0:  # less than asked: the lease is at its max TTL
            self.console.warning(f"lease {lease.lease_id} ({lease.path}) reached its max TTL and ends at "
                                 f"{renewed.expiry()}; bruin loses these credentials then if it still runs")
            return None
        self.console.debug(f"renewed lease {lease.lease_id} ({lease.path}): ends at {renewed.expiry()}")
        return now + max(1.0, granted * RENEW_AT)

    def _renewal_failed(self, lease: Lease, exc: BaseException) -> float | None:
        why = exc.message if isinstance(exc, MaterializeError) else _refusal(exc)
        left = lease.expires - time.time()
        if left <= 1:
            self.console.warning(f"could not renew lease {lease.lease_id} ({lease.path}): {why}; it has expired")
            return None
        self.console.warning(f"could not renew lease {lease.lease_id} ({lease.path}): {why}; it ends at "
                             f"{lease.expiry()} unless a retry succeeds")
        return time.monotonic() + max(1.0, left / 3)

    # --- the token the leases hang on ---------------------------------------------------------------

    def _hold_token(self, client: hvac.Client) -> float | None:
        """The token current after the reads (a fresh login may have replaced the first) created the
        leases, and they end with it: when to renew it (monotonic; a login of ours, renewable), or
        None, having said when the leases end if it ends first."""
        kept = lifetime.attached(client)
        if not isinstance(kept, lifetime.TokenLifetime):
            return None
        token = kept.now()
        if token.left is None:  # it never expires (or Vault would not say): nothing to keep alive
            return None
        self._token, self._token_ends = token, time.time() + token.left
        if not token.ours:
            self._say_given_token_ends(token)
            return None
        if not token.renewable or token.ttl <= 0:
            self.console.warning(f"the login token is not renewable: it ends at {self._token_expiry()}, and the "
                                 "leases created with it end then, even if bruin still runs; give the role a "
                                 f"token_ttl longer than the run, or a period ({DOCS})")
            return None
        return time.monotonic() + max(0.0, token.left - token.ttl * (1 - RENEW_AT))

    def _say_given_token_ends(self, token: lifetime.Token) -> None:
        """Someone else's token is never renewed here; when it ends before its leases, say so once."""
        assert token.left is not None
        if token.left < max(lease.ttl for lease in self.leases):
            self.console.warning(f"the token from {token.source} ends at {self._token_expiry()}, before its leases "
                                 "would, and they end with it (a given token is never renewed); give one whose TTL "
                                 f"covers the run, or log in instead, which renews ({DOCS})")

    def _token_expiry(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._token_ends))

    def _renew_token(self) -> float | None:
        """renew-self of the login token the leases were created with; when to renew it next, or None."""
        client, token = self._renewing, self._token
        assert client is not None and token is not None and self.client is not None
        try:
            answer = call("renewing the login token", client.auth.token.renew_self)
        except (MaterializeError, hvac.exceptions.VaultError) as exc:
            return None if self._stop.is_set() else self._token_renewal_failed(exc)
        granted = dig(answer, "auth", "lease_duration")
        if not isinstance(granted, int) or isinstance(granted, bool) or granted < 0:
            return self._token_renewal_failed(vault_error("the answer holds no auth.lease_duration"))
        renewable = dig(answer, "auth", "renewable") is True
        self._token, self._token_ends = token._replace(left=float(granted)), time.time() + granted
        kept = lifetime.attached(self.client)
        if isinstance(kept, lifetime.TokenLifetime):
            kept.renewed(float(granted), renewable)  # so that the session revokes it after, not "expired"
        if granted < token.ttl or not renewable:  # less than before: its max TTL is reached
            self.console.warning(f"the login token reached its max TTL and ends at {self._token_expiry()}; the "
                                 "leases created with it end then, and bruin loses these credentials if it still "
                                 f"runs; raise the role's token_max_ttl, or give it a period ({DOCS})")
            return None
        self.console.debug(f"renewed the login token: it ends at {self._token_expiry()}")
        return time.monotonic() + max(1.0, granted * RENEW_AT)

    def _token_renewal_failed(self, exc: BaseException) -> float | None:
        if isinstance(exc, MaterializeError):
            why = exc.message
        elif getattr(exc, "status_code", None) == 403:
            why = "permission denied; renew-self needs the `default` policy (`update` on auth/token/renew-self)"
        else:
            why = _refusal(exc)
        left = self._token_ends - time.time()
        if left <= 0:
            self.console.warning(f"could not renew the login token: {why}; it has expired, and the leases created "
                                 "with it have ended")
            return None
        self.console.warning(f"could not renew the login token: {why}; it ends at {self._token_expiry()}, and the "
                             "leases created with it then, unless a retry succeeds")
        return time.monotonic() + max(1.0, left / 3)

    def _say_created(self, lease: Lease) -> None:
        self.console.debug(f"leased {lease.path}: lease {lease.lease_id}, ends at {lease.expiry()}")
        if not lease.renewable and self.settings.command == "exec":
            self.console.warning(f"lease {lease.lease_id} ({lease.path}) is not renewable: it ends at "
                                 f"{lease.expiry()}, before its max TTL, even if bruin still runs")


def _refusal(exc: BaseException) -> str:
    code = getattr(exc, "status_code", None)
    if code == 403:
        return f"permission denied; the token's policy needs {POLICY}"
    return f"HTTP {code}" if isinstance(code, int) else "an unexpected answer"


# --- check: nothing created -----------------------------------------------------------------------


class Readable(NamedTuple):
    path: str
    engine: str  # the engine's type: database, kv...
    dynamic: bool  # read anew at each render or exec, with a lease where the engine grants one (not KV)


def check_readable(client: hvac.Client, paths: list[str]) -> list[Readable]:
    """Whether the token may read each path (sys/capabilities-self), and the engine that answers
    there; nothing is read, so nothing is created. Exit 3 for the first path that fails."""
    what = "asking the token's capabilities (sys/capabilities-self)"
    try:
        body = call(what, lambda: client.sys.get_capabilities(paths))  # type: ignore[no-untyped-call]
    except hvac.exceptions.Forbidden:
        raise vault_error(f"permission denied {what}: the token's policy needs `update` on "
                          f"sys/capabilities-self (Vault's default policy grants it; {DOCS})") from None
    except hvac.exceptions.VaultError as exc:
        raise unexpected(what, exc) from None
    found: list[Readable] = []
    for path in paths:
        engine = engine_at(client, path)
        refuse_vault_itself(path, engine)
        capabilities = dig(body, "data", path)
        if isinstance(capabilities, list) and not all(isinstance(c, str) for c in capabilities):
            raise vault_error(f"{what}: the answer for {path} is not a list of capability names; is "
                              "BRUIN_VAULT_HOST Vault itself?")
        if not isinstance(capabilities, list) or not {"read", "root"} & set(capabilities):
            raise vault_error(f"permission denied: the token cannot read {path}; its policy needs {POLICY}")
        if engine is None:
            raise vault_error(f"no secrets engine answers at {path}; check the path and that its engine is mounted")
        found.append(Readable(path, engine.type, engine.type not in ("kv", "generic", "cubbyhole")))
    return found


def describe_readable(readable: Readable) -> dict[str, Any]:
    return {"path": readable.path, "engine": readable.engine, "dynamic": readable.dynamic}

