"""KV engine access: find its version, list the connection secrets under a path, read them all.

One LIST per folder and one GET per secret, the GETs on a bounded thread pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from bruin_materialize.errors import vault_error
from bruin_materialize.transport import Response, Transport, dig, quote_path


class RawSecret(NamedTuple):
    name: str  # the connection name: the key under the path (SUB/NAME when read recursively)
    location: str  # where it lives, for messages: mount/path/name
    data: Any  # the secret's JSON payload; None when the current version is deleted or destroyed


class Listing(NamedTuple):
    names: list[str]  # secrets, relative to the path
    skipped_folders: list[str]  # subfolders not read (without --recursive)


class KV:
    def __init__(self, transport: Transport, mount: str, version: int) -> None:
        self.transport = transport
        self.mount = mount
        self.version = version

    def _api(self, kind: str, *segments: str) -> str:
        if self.version == 2:
            return quote_path(self.mount, kind, *segments)
        return quote_path(self.mount, *segments)

    def list_secrets(self, path: str, *, recursive: bool) -> Listing:
        """Every secret under `path`; folders are read only with `recursive`."""
        names: list[str] = []
        skipped: list[str] = []
        pending = [""]
        while pending:
            folder = pending.pop()
            for key in self._list_keys(path, folder, top=(folder == "")):
                if not key.endswith("/"):
                    names.append(folder + key)
                elif recursive:
                    pending.append(folder + key)
                else:
                    skipped.append(folder + key)
        return Listing(sorted(names), sorted(skipped))

    def _list_keys(self, path: str, folder: str, *, top: bool) -> list[str]:
        shown = "/".join(p for p in (self.mount, path, folder.rstrip("/")) if p)
        api = self._api("metadata", path, folder)
        resp = self.transport.request("GET", api + "?list=true", what=f"listing {shown}")
        if resp.status == 404:
            if top:
                raise vault_error(f"no secrets at {shown} (KV v{self.version}): the path is empty or does not exist")
            return []
        if resp.status == 403:
            listed = "/".join(p for p in (path, folder.rstrip("/")) if p)
            raise vault_error(f"permission denied listing {shown}: the token's policy needs the `list` "
                              f"capability on {_policy_path(self.mount, self.version, 'metadata', listed)}")
        _expect_ok(resp, f"listing {shown}")
        keys = dig(resp.body, "data", "keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise vault_error(f"listing {shown}: the answer has no list of keys; is {self.mount} a KV engine?")
        return keys

    def read(self, path: str, name: str, *, prefix: str | None = None) -> RawSecret:
        location = "/".join(p for p in (self.mount, path, name) if p)
        api = (prefix or self._api("data", path) + "/") + quote_path(name)
        resp = self.transport.request("GET", api, what=f"reading {location}")
        if resp.status == 403:
            raise vault_error(f"permission denied reading {location}: the token's policy needs the `read` "
                              f"capability on {_policy_path(self.mount, self.version, 'data', path)}/*")
        if self.version == 2 and _is_deleted_version(resp):
            return RawSecret(name, location, None)
        if resp.status == 404:
            raise vault_error(f"reading {location}: not found, though it was listed; was it removed meanwhile?")
        _expect_ok(resp, f"reading {location}")
        data = dig(resp.body, "data", "data") if self.version == 2 else dig(resp.body, "data")
        return RawSecret(name, location, data)

    def read_all(self, path: str, names: list[str], *, concurrency: int) -> list[RawSecret]:
        """Read every secret, in order; the first Vault error stops the rest."""
        prefix = self._api("data", path) + "/"  # quoted once, not per secret
        return parallel(lambda name: self.read(path, name, prefix=prefix), names, concurrency)


T = TypeVar("T")
R = TypeVar("R")


def parallel(work: Callable[[T], R], items: list[T], workers: int) -> list[R]:
    """`work` over `items` on up to `workers` daemon threads, results in order.

    Daemon threads, not a ThreadPoolExecutor: on SIGTERM the main thread must be able to leave while
    a worker is still stuck in connect(), instead of joining it at exit.
    """
    if workers <= 1 or len(items) <= 1:
        return [work(item) for item in items]
    results: list[R | None] = [None] * len(items)
    errors: list[BaseException] = []
    pending = iter(enumerate(items))
    lock = threading.Lock()

    def worker() -> None:
        while not errors:
            with lock:
                job = next(pending, None)
            if job is None:
                return
            try:
                results[job[0]] = work(job[1])
            except BaseException as exc:  # handed to the caller, which raises it
                errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(workers, len(items)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]  # every slot was filled: no error


def detect_version(transport: Transport, mount: str, path: str) -> int:
    """The KV version of `mount`, asking as little as a least-privilege token may.

    `sys/internal/ui/mounts/MOUNT` answers any token with a capability under the mount (it is what
    the Vault UI and CLI use); when it is refused, a LIST on the v2 metadata path decides.
    """
    resp = transport.request("GET", "sys/internal/ui/mounts/" + quote_path(mount), what=f"inspecting mount {mount}")
    if resp.status == 200:
        return _version_from_mount_info(resp.body, mount)
    probe = transport.request("GET", quote_path(mount, "metadata", path) + "?list=true",
                              what=f"inspecting mount {mount}")
    if probe.status == 200:
        return 2
    plain = transport.request("GET", quote_path(mount, path) + "?list=true", what=f"inspecting mount {mount}")
    if plain.status == 200:
        return 1
    if 403 in (resp.status, probe.status, plain.status) and 404 not in (probe.status, plain.status):
        raise vault_error(f"permission denied on mount {mount}: the token is invalid or its policy grants nothing "
                          f"under {mount}/{path}; check the token, or set BRUIN_MATERIALIZE_KV_VERSION")
    raise vault_error(f"no secrets at {mount}/{path}: the mount or path is empty or does not exist")


def _version_from_mount_info(body: Any, mount: str) -> int:
    data = dig(body, "data") or {}
    engine = data.get("type") if isinstance(data, dict) else None
    if engine not in ("kv", "generic"):
        raise vault_error(f"mount {mount} is not a KV secrets engine (it is {engine or 'unknown'})")
    options = data.get("options") or {}
    return 2 if str(options.get("version", "1")) == "2" else 1


def _is_deleted_version(resp: Response) -> bool:
    """KV v2 answers a deleted or destroyed current version with 404 and its metadata."""
    if resp.status not in (200, 404):
        return False
    meta = dig(resp.body, "data", "metadata")
    return isinstance(meta, dict) and dig(resp.body, "data", "data") is None


def _expect_ok(resp: Response, what: str) -> None:
    if resp.status == 200:
        return
    hints = {
        400: "Vault rejected the request",
        401: "the token is missing or invalid",
        404: "not found",
        405: "method not allowed; is this path a KV engine?",
    }
    hint = hints.get(resp.status, "unexpected answer")
    if resp.status == 403:
        hint = "permission denied; check the token and its policy"
    raise vault_error(f"{what}: HTTP {resp.status}: {hint}")


def _policy_path(mount: str, version: int, kind: str, path: str) -> str:
    return "/".join(p for p in (mount, kind if version == 2 else "", path) if p)
