"""One Vault session per run: credentials read, a client opened (and logged in), closed, and a token
we logged in for revoked after, however the run ends; and every path's secrets read over it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import hvac

from bruin_materialize import auth
from bruin_materialize.adapter import RetryPolicy
from bruin_materialize.console import Console
from bruin_materialize.settings import Settings
from bruin_materialize.vault import KV, RawSecret, detect_version, open_client, wait_until_reachable


@contextlib.contextmanager
def session(settings: Settings, console: Console) -> Iterator[hvac.Client]:
    """An hvac client holding the token (logged in if need be); closed, and a login token revoked, after."""
    creds = auth.read_credentials(settings.auth)  # a missing credential file is exit 2, before the network
    if settings.tls.skip_verify and settings.address.scheme == "https":
        console.warning("TLS verification is disabled (VAULT_SKIP_VERIFY): anyone on the network path could "
                        "read these secrets")
    client = open_client(settings, note=console.debug)
    token: str | None = None
    try:
        if settings.wait > 0:
            wait_until_reachable(client, settings.wait, console.info)
        client.token = auth.obtain_token(client, creds)
        token = client.token if settings.auth.logs_in else None
        yield client
    finally:
        client.adapter.close()
        if token is not None and not _revoke(settings, token):
            console.warning("could not revoke the login token; it stays valid until its TTL ends")


def _revoke(settings: Settings, token: str) -> bool:
    """Revoke our login token on a session of its own: the reading one may have been aborted by a signal."""
    policy = RetryPolicy(min(settings.timeout, 5.0), 1, settings.retry_wait_min, settings.retry_wait_max)
    client = open_client(settings, policy=policy, token=token)
    try:
        return auth.revoke(client)
    finally:
        client.adapter.close()


def open_kv(settings: Settings, client: hvac.Client, path: str) -> KV:
    """The KV engine at the settings' mount, its version given or detected (with `path` to probe)."""
    return KV(client, settings.mount, settings.kv_version or detect_version(client, settings.mount, path))


def read_secrets(settings: Settings, sources: list[tuple[str, str]], console: Console,
                 each: Callable[[RawSecret], None] | None = None) -> tuple[list[list[RawSecret]], str]:
    """Every source's secrets, in order, over one session and one login; and where they came from.
    `each` is called with every secret as it arrives, on the thread that read it."""
    started = time.monotonic()
    with session(settings, console) as client:
        kv = open_kv(settings, client, sources[0][1])
        by_path: dict[str, list[RawSecret]] = {}
        for _, path in sources:
            if path not in by_path:  # two environments may share a path
                by_path[path] = _read_path(settings, kv, path, console, each)
    shown = ", ".join(f"{settings.mount}/{path}" for path in by_path)
    console.debug(f"read {sum(map(len, by_path.values()))} secrets from {shown} (KV v{kv.version}) in "
                  f"{time.monotonic() - started:.2f}s")
    return [by_path[path] for _, path in sources], f"{shown} (KV v{kv.version})"


def _read_path(settings: Settings, kv: KV, path: str, console: Console,
               each: Callable[[RawSecret], None] | None) -> list[RawSecret]:
    listing = kv.list_secrets(path, recursive=settings.recursive)
    for folder in listing.skipped_folders:
        console.warning(f"{settings.mount}/{path}/{folder}: subfolder not read; pass --recursive to "
                        "read its secrets as connections named FOLDER/NAME")
    return kv.read_all(path, listing.names, concurrency=settings.concurrency, each=each)
