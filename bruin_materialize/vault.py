"""KV engine access through hvac: the session, the engine's version, the listing, every secret read.

One LIST per folder and one GET per secret, the GETs on a bounded thread pool. Every call goes
through hvac's API (`client.secrets.kv.v1/v2`, `client.sys`), sent by adapter.VaultAdapter; each is
wrapped by `call`, which turns hvac's and the transport's exceptions (whose texts carry URLs and
answer bodies) into one line naming the operation.
"""

from __future__ import annotations

import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

import hvac
import hvac.exceptions

from bruin_materialize.adapter import RetryPolicy, TLSOptions, Transport, TransportError, VaultAdapter, origin
from bruin_materialize.errors import ExitCode, MaterializeError, usage_error, vault_error
from bruin_materialize.settings import TLS, Settings
from bruin_materialize.threads import start_daemon
from bruin_materialize.validate import ERROR, name_problems
from bruin_materialize.yamltext import show


class RawSecret(NamedTuple):
    name: str  # the connection name: the key under the path (SUB/NAME when read recursively)
    location: str  # where it lives, for messages: mount/path/name
    data: Any  # the secret's JSON payload; None when the current version is deleted or destroyed


class Listing(NamedTuple):
    names: list[str]  # secrets, relative to the path
    skipped_folders: list[str]  # subfolders not read (without --recursive)


T = TypeVar("T")
R = TypeVar("R")


# --- the session ------------------------------------------------------------------------------------


def open_client(settings: Settings, *, policy: RetryPolicy | None = None, token: str = "",
                note: Callable[[str], None] | None = None) -> hvac.Client:
    """An hvac client for the settings' Vault: every argument given, so hvac reads no environment.

    `note` hears how the transport adapts to rate limiting (for -v)."""
    transport = Transport(
        settings.address,
        policy or RetryPolicy(settings.timeout, settings.max_retries, settings.retry_wait_min, settings.retry_wait_max),
        tls=tls_options(settings.tls) if settings.address.scheme == "https" else None,
        proxy=settings.proxy,
        connections=settings.concurrency,
        note=note,
    )
    url = "http://localhost" if settings.address.scheme == "unix" else settings.address.display()
    return hvac.Client(url=url, token=token, verify=True, cert=None, namespace=settings.namespace or None,
                       adapter=VaultAdapter, transport=transport)


def transport_of(client: hvac.Client) -> Transport:
    adapter = client.adapter
    assert isinstance(adapter, VaultAdapter)
    return adapter.transport


def tls_options(tls: TLS) -> TLSOptions:
    """The system store, or the CAs the settings name; a client certificate when given; each file
    loaded once here, so that a bad one is a usage error before any network call.

    VAULT_CAPATH is read as Vault's own clients read it: every file in the directory, whatever its
    name (OpenSSL's capath would only find files named by subject hash), so the CAs go to libcurl
    as one PEM bundle.
    """
    files = [Path(tls.ca_cert)] if tls.ca_cert else []
    try:
        if tls.ca_path:
            files += [entry for entry in sorted(Path(tls.ca_path).iterdir()) if entry.is_file()]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        bundle = b"".join(_pem(context, entry) for entry in files) if files else None
        if tls.client_cert:
            context.load_cert_chain(tls.client_cert, tls.client_key)
    except (OSError, ssl.SSLError) as exc:
        which = ("the client certificate or key (VAULT_CLIENT_CERT/KEY)" if tls.client_cert and not
                 isinstance(exc, FileNotFoundError) else "the CA certificates (VAULT_CACERT/CAPATH)")
        raise usage_error(f"cannot load {which}: {getattr(exc, 'strerror', None) or exc.__class__.__name__}") from None
    system = ssl.get_default_verify_paths()
    return TLSOptions(bundle, system.cafile, system.capath, tls.client_cert, tls.client_key, not tls.skip_verify)


def _pem(context: ssl.SSLContext, path: Path) -> bytes:
    """The file's text, once OpenSSL has read certificates from it (raises ssl.SSLError if none)."""
    data = path.read_bytes()
    context.load_verify_locations(cafile=str(path))
    return data if data.endswith(b"\n") else data + b"\n"


def call(what: str, operation: Callable[[], T]) -> T:
    """Run one hvac call; a failure to get an answer at all becomes one line naming `what`.

    hvac's status exceptions pass through for the caller to explain (403 on a LIST means something
    else than 403 on a login); their texts (URLs, Vault's error strings) are never printed. Answers
    Vault never gives are refused here, whatever the call: a redirect (never followed: it could lead
    the token elsewhere) and a proxy's 407.
    """
    try:
        result = operation()
    except TransportError as exc:
        raise vault_error(f"{what}: {exc}") from None
    except hvac.exceptions.VaultError as exc:
        if status(exc) == 407:  # a plain proxy's answer, or its refusal of an https tunnel (adapter.py)
            raise ProxyAuthRequired(f"{what}: the proxy asks for credentials (HTTP 407)") from None
        raise
    code = getattr(result, "status_code", None)
    if isinstance(code, int) and 300 <= code < 400:
        raise vault_error(f"{what}: Vault answered with a redirect (HTTP {code}){_where_to(result)}, which is never "
                          "followed; set BRUIN_VAULT_HOST to the active node or the load balancer") from None
    return result


class ProxyAuthRequired(MaterializeError):
    """A proxy answered 407; the session, which knows which setting named the proxy, completes the line."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.VAULT)


def _where_to(response: Any) -> str:
    """ to URL, without credentials, query or fragment (a redirect can carry a token in them)."""
    location = response.headers.get("Location") if getattr(response, "headers", None) is not None else None
    if not isinstance(location, str) or not location.strip():
        return " without a Location"
    try:
        parts = urllib.parse.urlsplit(location.strip())
    except ValueError:  # an IPv6 address without its `]`, ...
        return " to an address that is not a URL"
    return f" to {origin(parts) if parts.scheme and parts.hostname else ''}{parts.path or '/'}"


def documented(what: str, body: Any, *path: str) -> Any:
    """body[path...] where Vault documents an object; anything else (a list, a string, an answer with no
    such key) is not Vault's answer: exit 3 naming `what`."""
    value = dig(body, *path)
    if not isinstance(value, dict):
        shown = ".".join(path)
        raise vault_error(f"{what}: the answer holds no `{shown}` object, as Vault's does; is BRUIN_VAULT_HOST "
                          "Vault itself, or is a proxy answering in its place?")
    return value


def status(exc: BaseException) -> int | None:
    """The HTTP status behind one of hvac's exceptions; None when hvac does not say."""
    code = getattr(exc, "status_code", None)  # set by VaultAdapter
    return code if isinstance(code, int) else None


def unexpected(what: str, exc: hvac.exceptions.VaultError) -> MaterializeError:
    code = status(exc)
    hints = {
        400: "Vault rejected the request",
        401: "the token is missing or invalid",
        403: "permission denied; check the token and its policy",
        404: "not found",
    }
    shown = f"HTTP {code}" if code else "an unexpected answer"
    return vault_error(f"{what}: {shown}: {hints.get(code or 0, 'unexpected answer')}")


def wait_until_reachable(client: hvac.Client, budget: float, progress: Callable[[str], None],
                         every: float = 5.0) -> None:
    """For init-containers started before Vault's agent or the mesh: poll until Vault answers."""
    transport = transport_of(client)
    policy = transport.policy
    started = time.monotonic()
    deadline, next_note = started + budget, started  # the first failure says it is waiting
    try:
        while True:
            transport.policy = policy._replace(timeout=max(0.1, min(2.0, deadline - time.monotonic())),
                                               max_retries=0)
            try:
                # Any HTTP answer means reachable; sealed or standby shows in the real requests.
                client.sys.read_health_status(method="GET", standby_ok=True, sealed_code=200, uninit_code=200)
                return
            except hvac.exceptions.VaultError:
                return  # an error status is an answer too: the real requests explain it
            except TransportError as exc:
                now = time.monotonic()
                if now >= deadline:
                    raise vault_error(f"Vault is still unreachable after waiting {budget:g}s "
                                      f"(BRUIN_VAULT_WAIT): {exc}") from None
                if now >= next_note:
                    progress(f"waiting for Vault at {transport.address.display()} ({now - started:.0f}s of "
                             f"{budget:g}s): {exc}")
                    next_note = now + every
                if transport.cancel.wait(min(0.5, max(0.0, deadline - now))):
                    raise vault_error("interrupted while waiting for Vault") from None
    finally:
        transport.policy = policy


# --- the KV engine ------------------------------------------------------------------------------------


class ReadGuard(Protocol):
    """Keeps the token alive around the reads (lifetime.TokenLifetime): called from every reading thread."""

    def before(self) -> None: ...

    def read_done(self) -> None: ...

    def forbidden(self) -> MaterializeError | None: ...


class KV:
    def __init__(self, client: hvac.Client, mount: str, version: int, guard: ReadGuard | None = None) -> None:
        self.client = client
        self.mount = mount
        self.version = version
        self.guard = guard

    def list_secrets(self, path: str, *, recursive: bool) -> Listing:
        """Every secret under `path`; folders are read only with `recursive`."""
        names: list[str] = []
        skipped: list[str] = []
        pending = [""]
        while pending:
            folder = pending.pop()
            listed = "/".join(p for p in (self.mount, path, folder.rstrip("/")) if p)
            keys = self._list_keys(path, folder, top=(folder == ""))
            _check_listing(keys, listed, folder, "/".join(p for p in (self.mount, path) if p))
            for key in keys:
                _check_listed(key, listed)
                if not key.endswith("/"):
                    names.append(folder + key)
                elif recursive:
                    pending.append(folder + key)
                else:
                    skipped.append(folder + key)
        return Listing(sorted(names), sorted(skipped))

    def _list_keys(self, path: str, folder: str, *, top: bool) -> list[str]:
        shown = "/".join(p for p in (self.mount, path, folder.rstrip("/")) if p)
        what = f"listing {shown}"
        if self.guard is not None:
            self.guard.before()
        try:
            body = call(what, lambda: self._engine().list_secrets(path=_join(path, folder), mount_point=self.mount))
        except hvac.exceptions.InvalidPath:
            if top:
                raise vault_error(f"no secrets at {shown} (KV v{self.version}): the path is empty or does not "
                                  "exist") from None
            return []
        except hvac.exceptions.Forbidden:
            self._token_expired()
            listed = "/".join(p for p in (path, folder.rstrip("/")) if p)
            raise vault_error(f"permission denied listing {shown}: the token's policy needs the `list` capability "
                              f"on {_policy_path(self.mount, self.version, 'metadata', listed)}") from None
        except hvac.exceptions.VaultError as exc:
            raise unexpected(what, exc) from None
        keys = dig(body, "data", "keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise vault_error(f"{what}: the answer has no list of keys; is {self.mount} a KV engine?")
        return keys

    def read(self, path: str, name: str) -> RawSecret:
        location = "/".join(p for p in (self.mount, path, name) if p)
        what = f"reading {location}"
        if self.guard is not None:
            self.guard.before()
        try:
            body = call(what, lambda: self._read(_join(path, name)))
        except hvac.exceptions.Forbidden:
            self._token_expired()
            raise vault_error(f"permission denied reading {location}: the token's policy needs the `read` "
                              f"capability on {_policy_path(self.mount, self.version, 'data', path)}/*") from None
        except hvac.exceptions.InvalidPath as exc:
            if self.version == 2 and is_deleted_version(exc.json):
                return RawSecret(name, location, None)
            raise vault_error(f"{what}: not found, though it was listed; was it removed meanwhile?") from None
        except hvac.exceptions.VaultError as exc:
            raise unexpected(what, exc) from None
        if self.guard is not None:
            self.guard.read_done()
        data = dig(body, "data", "data") if self.version == 2 else dig(body, "data")
        if isinstance(data, dict):  # the usual answer: a current version, in the shape Vault documents
            return RawSecret(name, location, data)
        if self.version == 2 and is_deleted_version(body):
            return RawSecret(name, location, None)
        return RawSecret(name, location, secret_data(what, body, self.version))

    def _token_expired(self) -> None:
        """A 403 from a token that has run out is that, not a policy without the capability."""
        problem = self.guard.forbidden() if self.guard is not None else None
        if problem is not None:
            raise problem from None

    def _engine(self) -> Any:
        return self.client.secrets.kv.v2 if self.version == 2 else self.client.secrets.kv.v1

    def _read(self, secret_path: str) -> Any:
        if self.version == 2:
            # A deleted or destroyed current version is an error to hvac; to us, a skipped connection.
            return self.client.secrets.kv.v2.read_secret_version(path=secret_path, mount_point=self.mount,
                                                                 raise_on_deleted_version=True)
        return self.client.secrets.kv.v1.read_secret(path=secret_path, mount_point=self.mount)


MAX_FOLDER_DEPTH = 64  # no layout nests deeper; a server whose every folder holds another would never end


def _check_listing(keys: list[str], listed: str, folder: str, top: str) -> None:
    """Vault lists each name once, and its folders end: a name twice, or folders nested past any layout
    (a folder that lists itself), is no answer of Vault's."""
    twice = _first_repeated(keys)
    if twice is not None:
        raise vault_error(f"listing {listed}: the answer lists {show(twice) if twice else 'an empty name'} twice; "
                          "is BRUIN_VAULT_HOST Vault itself?")
    if folder.count("/") >= MAX_FOLDER_DEPTH and any(k.endswith("/") for k in keys):
        nested = "/".join(folder.split("/")[:3])
        raise vault_error(f"listing {top}: folders nest more than {MAX_FOLDER_DEPTH} levels deep under it "
                          f"({show(nested)}/...); is BRUIN_VAULT_HOST Vault itself?")


def _first_repeated(keys: list[str]) -> str | None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    return None


def _check_listed(key: str, listed: str) -> None:
    """A listed name is read as mount/path/NAME: one that is empty, absolute, holds `.`, `..` or empty
    segments or control characters would read elsewhere than the path (or be no name Vault stores), so
    it stops the run before anything is read. The rules are import's, for the names it writes."""
    name = key[:-1] if key.endswith("/") else key
    if any(p.level == ERROR for p in name_problems(name, "")):
        raise vault_error(f"listing {listed}: the answer lists {show(key) if key else 'an empty name'}, which is "
                          "no name of a secret under it (empty, absolute, `.`, `..`, `//` or a control character); "
                          "is BRUIN_VAULT_HOST Vault itself?")


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
    # Every thread is started before any begins: a thread starts only once it got the GIL, which the
    # ones already reading would hold for milliseconds in all.
    go = threading.Event()

    def worker() -> None:
        go.wait()
        while not errors:
            with lock:
                job = next(pending, None)
            if job is None:
                return
            try:
                results[job[0]] = work(job[1])
            except BaseException as exc:  # handed to the caller, which raises it
                errors.append(exc)

    threads = [start_daemon(worker, f"vault-read-{index}") for index in range(min(workers, len(items)))]
    go.set()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]  # every slot was filled: no error


def detect_version(client: hvac.Client, mount: str, path: str) -> int:
    """The KV version of `mount`, asking as little as a least-privilege token may.

    `sys/internal/ui/mounts/MOUNT` answers any token with a capability under the mount (it is what
    the Vault UI and CLI use; hvac has no wrapper, so its adapter asks); when it is refused, a LIST on
    the v2 metadata path decides, then one on the v1 path.
    """
    what = f"inspecting mount {mount}"
    statuses: list[int | None] = []
    probes: list[Callable[[], Any]] = [
        lambda: client.adapter.get("/v1/sys/internal/ui/mounts/" + urllib.parse.quote(mount, safe="")),
        lambda: client.secrets.kv.v2.list_secrets(path=path, mount_point=mount),
        lambda: client.secrets.kv.v1.list_secrets(path=path, mount_point=mount),
    ]
    for index, probe in enumerate(probes):
        try:
            body = call(what, probe)
        except hvac.exceptions.VaultError as exc:
            statuses.append(status(exc))
            continue
        return _version_from_mount_info(body, mount) if index == 0 else (2 if index == 1 else 1)
    if 403 in statuses and 404 not in statuses[1:]:
        raise vault_error(f"permission denied on mount {mount}: the token is invalid or its policy grants nothing "
                          f"under {mount}/{path}; check the token, or set BRUIN_MATERIALIZE_KV_VERSION")
    raise vault_error(f"no secrets at {mount}/{path}: the mount or path is empty or does not exist")


def _version_from_mount_info(body: Any, mount: str) -> int:
    data = documented(f"inspecting mount {mount}", body, "data")
    engine = data.get("type")
    if engine not in ("kv", "generic"):
        shown = engine if isinstance(engine, str) and engine else "unknown"
        raise vault_error(f"mount {mount} is not a KV secrets engine (it is {shown})")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise vault_error(f"inspecting mount {mount}: the answer's `data.options` is not an object, as Vault's is")
    return 2 if str(options.get("version", "1")) == "2" else 1


def is_deleted_version(body: Any) -> bool:
    """KV v2's documented answer for a deleted or destroyed current version: its metadata, saying so
    (a deletion_time, or destroyed), and no data. Nothing else counts as deleted."""
    metadata = dig(body, "data", "metadata")
    if not isinstance(metadata, dict) or dig(body, "data", "data") is not None:
        return False
    deleted = metadata.get("deletion_time")
    return (isinstance(deleted, str) and deleted != "") or metadata.get("destroyed") is True


def secret_data(what: str, body: Any, version: int) -> dict[str, Any]:
    """A read's payload, in the shape Vault documents: KV v2's `data.data`, KV v1's `data`, an object."""
    data: dict[str, Any] = documented(what, body, "data", "data") if version == 2 else documented(what, body, "data")
    return data


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def dig(body: Any, *keys: str) -> Any:
    """body[k1][k2]... of a decoded answer, or None where the shape is not what Vault documents."""
    for key in keys:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


def _policy_path(mount: str, version: int, kind: str, path: str) -> str:
    return "/".join(p for p in (mount, kind if version == 2 else "", path) if p)
