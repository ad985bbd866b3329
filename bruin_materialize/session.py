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
from bruin_materialize.console import Console, Progress
from bruin_materialize.settings import Settings
from bruin_materialize.vault import KV, RawSecret, detect_version, open_client, parallel, wait_until_reachable


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
    token: str | None = None
    try:
        if settings.wait > 0:
            wait_until_reachable(client, settings.wait, console.info)
        client.token = auth.obtain_token(client, creds)
        console.debug(auth.used(creds.auth))
        token = client.token if settings.auth.logs_in else None
        yield client
    finally:
        client.adapter.close()
        if token is not None and keep_login():
            console.info("the login token is left to its TTL: the leases listed above end with it")
        elif token is not None and not _revoke(settings, token):
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
                 client: hvac.Client | None = None) -> tuple[list[list[RawSecret]], str]:
    """Every source's secrets, in order, over one session and one login (the caller's `client`, when
    it keeps the session longer); and where they came from."""
    started = time.monotonic()
    paths = list(dict.fromkeys(path for _, path in sources))  # two environments may share a path
    with contextlib.ExitStack() as own:
        if client is None:
            client = own.enter_context(session(settings, console))
        kv = open_kv(settings, client, paths[0])
        by_path = dict(zip(paths, _read_paths(settings, kv, paths, console), strict=True))
    shown = ", ".join(f"{settings.mount}/{path}" for path in by_path)
    console.debug(f"read {sum(map(len, by_path.values()))} secrets from {shown} (KV v{kv.version}) in "
                  f"{time.monotonic() - started:.2f}s")
    return [by_path[path] for _, path in sources], f"{shown} (KV v{kv.version})"


def _read_paths(settings: Settings, kv: KV, paths: list[str], console: Console) -> list[list[RawSecret]]:
    """Each path's secrets. One pool lists the paths side by side, then one reads every secret of every
    path: a second path does not wait for the first one's slowest secret. The first error stops the rest."""
    listings = parallel(lambda path: kv.list_secrets(path, recursive=settings.recursive), paths,
                        settings.concurrency)
    for path, listing in zip(paths, listings, strict=True):
        for folder in listing.skipped_folders:
            console.warning(f"{settings.mount}/{path}/{folder}: subfolder not read; pass --recursive to "
                            "read its secrets as connections named FOLDER/NAME")
    wanted = [(path, name) for path, listing in zip(paths, listings, strict=True) for name in listing.names]
    where = "from " + ", ".join("/".join(p for p in (settings.mount, path) if p) for path in paths)
    with Progress(console, "read", len(wanted), where) as progress:

        def read(item: tuple[str, str]) -> RawSecret:
            secret = kv.read(*item)
            progress.tick()
            return secret

        found = iter(parallel(read, wanted, settings.concurrency))
        return [[next(found) for _ in listing.names] for listing in listings]
