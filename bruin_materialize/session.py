"""One Vault session per run: credentials read, a client opened (and logged in), closed, and a token
we logged in for revoked after, however the run ends; and every path's secrets read over it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import hvac

from bruin_materialize import auth, lifetime
from bruin_materialize.adapter import RetryPolicy, without_password
from bruin_materialize.console import Console, Progress
from bruin_materialize.errors import vault_error
from bruin_materialize.settings import Settings
from bruin_materialize.vault import (
    KV,
    Listing,
    ProxyAuthRequired,
    RawSecret,
    call,
    detect_version,
    open_client,
    parallel,
    wait_until_reachable,
)
from bruin_materialize.yamltext import show


@contextlib.contextmanager
def session(settings: Settings, console: Console,
            keep_login: Callable[[], bool] = lambda: False) -> Iterator[hvac.Client]:
    """An hvac client holding the token (logged in if need be); closed, and a login token revoked, after
    (unless `keep_login()` says leases created with it were left to their TTL: they would end with it)."""
    creds = auth.read_credentials(settings.auth)  # a missing credential file is exit 2, before the network
    if settings.tls.skip_verify and settings.address.scheme == "https":
        console.warning("TLS verification is disabled (VAULT_SKIP_VERIFY): anyone on the network path could "
                        "read these secrets")
    client = open_client(settings, note=console.debug)
    logged_in = batch = False
    kept: lifetime.TokenLifetime | None = None
    try:
        if settings.wait > 0:
            wait_until_reachable(client, settings.wait, console.info)
        login = auth.log_in(client, creds) if settings.auth.logs_in else None
        client.token = login.token if login is not None else creds.secret
        console.debug(auth.used(creds.auth))
        logged_in, batch = login is not None, login is not None and login.batch
        # Renewed during the reads, or its end explained (lifetime.py).
        kept = lifetime.TokenLifetime(client, creds, login, lambda: _look_up(settings, client.token))
        lifetime.attach(client, kept)
        yield client
    except ProxyAuthRequired as exc:
        raise vault_error(_proxy_auth_line(exc.message, settings)) from None
    finally:
        client.adapter.close()
        # The token current now: a login during the reads may have replaced the first (lifetime.py); one
        # that has run out needs no revoking.
        if logged_in and not (kept is not None and kept.expired()):
            if keep_login():
                console.info("the login token is left to its TTL: the leases listed above end with it")
            elif batch:
                console.debug("the login token is a batch token, which Vault cannot revoke: it ends with its TTL")
            elif not _revoke(settings, client.token):
                console.warning("could not revoke the login token; it stays valid until its TTL ends")


def _proxy_auth_line(message: str, settings: Settings) -> str:
    if settings.proxy is None:
        return (f"{message}, though no proxy is set: something between here and Vault wants credentials; set "
                "HTTPS_PROXY/HTTP_PROXY or VAULT_PROXY_ADDR to it, with user:password@")
    source = settings.proxy_source
    return (f"{message} from {without_password(settings.proxy)} ({source}); put user:password@ in {source}'s URL, "
            "or check the ones there")


def _revoke(settings: Settings, token: str) -> bool:
    """Revoke our login token on a session of its own: the reading one may have been aborted by a signal."""
    policy = RetryPolicy(min(settings.timeout, 5.0), 1, settings.retry_wait_min, settings.retry_wait_max)
    client = open_client(settings, policy=policy, token=token)
    try:
        return auth.revoke(client)
    finally:
        client.adapter.close()


def _look_up(settings: Settings, token: str) -> Any:
    """lookup-self for a given token's TTL, once, bounded: 2 s at most, no retry."""
    policy = RetryPolicy(min(settings.timeout, 2.0), 0, settings.retry_wait_min, settings.retry_wait_max)
    client = open_client(settings, policy=policy, token=token)
    try:
        return call("looking up the token", client.auth.token.lookup_self)
    finally:
        client.adapter.close()


def open_kv(settings: Settings, client: hvac.Client, path: str) -> KV:
    """The KV engine at the settings' mount, its version given or detected (with `path` to probe)."""
    version = settings.kv_version or detect_version(client, settings.mount, path)
    return KV(client, settings.mount, version, guard=lifetime.attached(client))


def read_secrets(settings: Settings, sources: list[tuple[str, str]], console: Console,
                 client: hvac.Client | None = None,
                 each: Callable[[RawSecret], None] | None = None) -> tuple[list[list[RawSecret]], str]:
    """Every source's secrets, in order, over one session and one login (the caller's `client`, when
    it keeps the session longer); and where they came from. `each` is called with every secret as it
    arrives, on the thread that read it."""
    started = time.monotonic()
    paths = list(dict.fromkeys(path for _, path in sources))  # two environments may share a path
    with contextlib.ExitStack() as own:
        if client is None:
            client = own.enter_context(session(settings, console))
        kv = open_kv(settings, client, paths[0])
        by_path = dict(zip(paths, _read_paths(settings, kv, paths, console, each), strict=True))
    shown = ", ".join(f"{settings.mount}/{path}" for path in by_path)
    console.debug(f"read {sum(map(len, by_path.values()))} secrets from {shown} (KV v{kv.version}) in "
                  f"{time.monotonic() - started:.2f}s")
    return [by_path[path] for _, path in sources], f"{shown} (KV v{kv.version})"


def _read_paths(settings: Settings, kv: KV, paths: list[str], console: Console,
                each: Callable[[RawSecret], None] | None) -> list[list[RawSecret]]:
    """Each path's secrets. One pool lists the paths side by side, then one reads every secret of every
    path: a second path does not wait for the first one's slowest secret. The first error stops the rest."""
    listings = parallel(lambda path: kv.list_secrets(path, recursive=settings.recursive), paths,
                        settings.concurrency)
    for path, listing in zip(paths, listings, strict=True):
        _check_listing(settings, path, listing, console)
    wanted = [(path, name) for path, listing in zip(paths, listings, strict=True) for name in listing.names]
    where = "from " + ", ".join("/".join(p for p in (settings.mount, path) if p) for path in paths)
    with Progress(console, "read", len(wanted), where) as progress:

        def read(item: tuple[str, str]) -> RawSecret:
            secret = kv.read(*item)
            if each is not None:
                each(secret)
            progress.tick()
            return secret

        found = iter(parallel(read, wanted, settings.concurrency))
        return [[next(found) for _ in listing.names] for listing in listings]


def _check_listing(settings: Settings, path: str, listing: Listing, console: Console) -> None:
    """A path holding only subfolders is an error (0 connections would pass, and bruin find none); other
    subfolders not read are a warning each."""
    if not listing.names and listing.skipped_folders:
        shown = ", ".join(show(folder) for folder in listing.skipped_folders[:3])
        more = ", ..." if len(listing.skipped_folders) > 3 else ""
        raise vault_error(f"no secrets at {settings.mount}/{path}, only subfolders ({shown}{more}); pass --recursive "
                          "to read them as connections named FOLDER/NAME, or a --path that holds the secrets")
    for folder in listing.skipped_folders:
        console.warning(f"{settings.mount}/{path}/{folder}: subfolder not read; pass --recursive to "
                        "read its secrets as connections named FOLDER/NAME")
