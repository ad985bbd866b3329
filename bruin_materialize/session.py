"""One Vault session per run: credentials read, a client opened (and logged in), closed, and a token
we logged in for revoked after, however the run ends; and every path's secrets read over it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import hvac

from bruin_materialize import auth, lifetime
from bruin_materialize.adapter import RetryPolicy
from bruin_materialize.console import Console
from bruin_materialize.errors import vault_error
from bruin_materialize.settings import Settings
from bruin_materialize.vault import KV, RawSecret, call, detect_version, open_client, wait_until_reachable
from bruin_materialize.yamltext import show


@contextlib.contextmanager
def session(settings: Settings, console: Console) -> Iterator[hvac.Client]:
    """An hvac client holding the token (logged in if need be); closed, and a login token revoked, after."""
    creds = auth.read_credentials(settings.auth)  # a missing credential file is exit 2, before the network
    if settings.tls.skip_verify and settings.address.scheme == "https":
        console.warning("TLS verification is disabled (VAULT_SKIP_VERIFY): anyone on the network path could "
                        "read these secrets")
    client = open_client(settings, note=console.debug)
    logged_in = False
    kept: lifetime.TokenLifetime | None = None
    try:
        if settings.wait > 0:
            wait_until_reachable(client, settings.wait, console.info)
        login = auth.log_in(client, creds) if settings.auth.logs_in else None
        client.token = login.token if login is not None else creds.secret
        logged_in = login is not None
        # Renewed during the reads, or its end explained (lifetime.py).
        kept = lifetime.TokenLifetime(client, creds, login, lambda: _look_up(settings, client.token))
        lifetime.attach(client, kept)
        yield client
    finally:
        client.adapter.close()
        # The token current now: a login during the reads may have replaced the first (lifetime.py).
        if logged_in and not (kept is not None and kept.expired()) and not _revoke(settings, client.token):
            console.warning("could not revoke the login token; it stays valid until its TTL ends")


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


def read_secrets(settings: Settings, sources: list[tuple[str, str]],
                 console: Console) -> tuple[list[list[RawSecret]], str]:
    """Every source's secrets, in order, over one session and one login; and where they came from."""
    started = time.monotonic()
    with session(settings, console) as client:
        kv = open_kv(settings, client, sources[0][1])
        by_path: dict[str, list[RawSecret]] = {}
        for _, path in sources:
            if path not in by_path:  # two environments may share a path
                by_path[path] = _read_path(settings, kv, path, console)
    shown = ", ".join(f"{settings.mount}/{path}" for path in by_path)
    console.debug(f"read {sum(map(len, by_path.values()))} secrets from {shown} (KV v{kv.version}) in "
                  f"{time.monotonic() - started:.2f}s")
    return [by_path[path] for _, path in sources], f"{shown} (KV v{kv.version})"


def _read_path(settings: Settings, kv: KV, path: str, console: Console) -> list[RawSecret]:
    listing = kv.list_secrets(path, recursive=settings.recursive)
    if not listing.names and listing.skipped_folders:  # 0 connections would pass, and bruin find none
        shown = ", ".join(show(folder) for folder in listing.skipped_folders[:3])
        more = ", ..." if len(listing.skipped_folders) > 3 else ""
        raise vault_error(f"no secrets at {settings.mount}/{path}, only subfolders ({shown}{more}); pass --recursive "
                          "to read them as connections named FOLDER/NAME, or a --path that holds the secrets")
    for folder in listing.skipped_folders:
        console.warning(f"{settings.mount}/{path}/{folder}: subfolder not read; pass --recursive to "
                        "read its secrets as connections named FOLDER/NAME")
    return kv.read_all(path, listing.names, concurrency=settings.concurrency)
