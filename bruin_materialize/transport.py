"""A small keep-alive HTTP client for Vault's JSON API, with bruin's retry rules.

Why not hvac: importing it (and requests) costs ~0.23 s, most of a 20-secret run, and reading
1,000 secrets through it is several times slower than the wire allows (docs/performance.md).
This client keeps one connection per worker thread, retries the way bruin's Vault client does
(connection errors, 412, 429, 5xx but 501; exponential backoff with jitter; `Retry-After`), and
bounds every operation, retries included, by one deadline.

Nothing here ever puts a response body, a token or a request body into an exception message.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from bruin_materialize.errors import usage_error, vault_error
from bruin_materialize.settings import TLS, VaultAddress


class Response(NamedTuple):
    status: int
    body: Any  # decoded JSON, or None when the body was empty


class RetryPolicy(NamedTuple):
    timeout: float  # one budget per operation, retries included
    max_retries: int
    wait_min: float
    wait_max: float


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class TransientError(Exception):
    """A failure worth retrying; its text is a safe description, never a body."""


# Transports in use, for abort_all() from a signal handler.
_ACTIVE: set[Transport] = set()


def abort_all() -> None:
    for transport in list(_ACTIVE):
        transport.abort()


_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_RETRY_STATUSES = frozenset({412, 429}) | (frozenset(range(500, 600)) - {501})


class Transport:
    def __init__(
        self,
        address: VaultAddress,
        policy: RetryPolicy,
        *,
        ssl_context: ssl.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self._address = address
        self._policy = policy
        self._ssl_context = ssl_context
        self._headers = dict(headers or {})
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.cancel = cancel or threading.Event()
        _ACTIVE.add(self)

    def set_token(self, token: str) -> None:
        self._headers["X-Vault-Token"] = token

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        _ACTIVE.discard(self)

    def abort(self) -> None:
        """From a signal handler: stop retrying and wake every thread blocked on a socket."""
        self.cancel.set()
        with self._lock:
            conns = list(self._all)
        for conn in conns:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # close() alone does not wake a blocked recv
                except OSError:
                    pass

    def wait_until_reachable(self, budget: float, progress: Callable[[str], None], every: float = 5.0) -> None:
        """For init-containers started before Vault's agent or the mesh: poll until Vault answers."""
        started = time.monotonic()
        deadline, next_note = started + budget, started  # the first failure says it is waiting
        while True:
            try:
                self._send("GET", "sys/health?standbyok=true&sealedcode=200&uninitcode=200", None,
                           max(0.1, min(2.0, deadline - time.monotonic())))
                return  # any HTTP answer: reachable; sealed or standby shows in the real requests
            except TransientError as exc:
                now = time.monotonic()
                if now >= deadline:
                    raise vault_error(f"Vault is still unreachable after waiting {budget:g}s "
                                      f"(BRUIN_VAULT_WAIT): {exc}") from None
                if now >= next_note:
                    progress(f"waiting for Vault at {self._address.display()} ({now - started:.0f}s of "
                             f"{budget:g}s): {exc}")
                    next_note = now + every
                if self.cancel.wait(min(0.5, max(0.0, deadline - now))):
                    raise vault_error("interrupted while waiting for Vault") from None

    def request(self, method: str, path: str, payload: Any = None, *, what: str) -> Response:
        """One Vault operation: `what` names it in errors ("listing kv/metadata/team")."""
        deadline = time.monotonic() + self._policy.timeout
        body = None if payload is None else json.dumps(payload).encode()
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TransientError(f"no answer within {self._policy.timeout:g}s")
                status, raw, retry_after = self._send(method, path, body, remaining)
                if status not in _RETRY_STATUSES:
                    return Response(status, _decode(raw, status, what))
                last = TransientError(_status_text(status))
            except TransientError as exc:
                last = exc
                retry_after = None
            if attempt >= self._policy.max_retries or self.cancel.is_set():
                break
            wait = self._backoff(attempt, retry_after)
            if time.monotonic() + wait >= deadline:
                break
            if self.cancel.wait(wait):
                break
            attempt += 1
        raise vault_error(f"{what}: {last}{_retry_note(attempt)}")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(retry_after, 0.0)  # as long as asked: request() gives up if that passes the deadline
        ceiling = min(self._policy.wait_max, self._policy.wait_min * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)

    def _send(self, method: str, path: str, body: bytes | None, timeout: float) -> tuple[int, bytes, float | None]:
        conn = self._connection()
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        reused = conn.sock is not None
        try:
            try:
                conn.request(method, "/v1/" + path, body=body, headers=headers)
                resp = conn.getresponse()
            except _STALE if reused and method == "GET" else ():
                # The server closed the idle keep-alive connection: nothing was processed, so send
                # again on a fresh one without spending a retry (as Go's HTTP client does).
                conn.close()
                conn.request(method, "/v1/" + path, body=body, headers=headers)
                resp = conn.getresponse()
            raw = resp.read()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise vault_error(
                f"TLS verification of {self._address.display()} failed ({exc.verify_message}); "
                "check the CA (VAULT_CACERT or VAULT_CAPATH) or the host name"
            ) from None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
            conn.close()  # the peer went away mid-handshake: as transient as a reset
            raise TransientError(_connection_text(exc, self._address)) from None
        except ssl.SSLError as exc:
            conn.close()  # a refused handshake does not get better by retrying
            raise vault_error(
                f"TLS handshake with {self._address.display()} failed ({exc.reason or type(exc).__name__}); "
                "check the client certificate (VAULT_CLIENT_CERT/KEY) and the server's TLS settings"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TransientError(_connection_text(exc, self._address)) from None
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
        return resp.status, raw, _retry_after(resp.getheader("Retry-After"))

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._new_connection()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _new_connection(self) -> http.client.HTTPConnection:
        addr = self._address
        timeout = self._policy.timeout
        if addr.scheme == "unix":
            return _UnixConnection(addr.host, timeout)
        if addr.scheme == "https":
            return http.client.HTTPSConnection(addr.host, addr.port, timeout=timeout, context=self._ssl_context)
        return http.client.HTTPConnection(addr.host, addr.port, timeout=timeout)


def ssl_context(tls: TLS) -> ssl.SSLContext:
    """The system store, or the CAs the settings name; a client certificate when given.

    VAULT_CAPATH is read as Vault's own clients read it: every file in the directory, whatever its
    name (OpenSSL's capath would only find files named by subject hash).
    """
    try:
        context = ssl.create_default_context(cafile=tls.ca_cert)
        if tls.ca_path:
            for entry in sorted(Path(tls.ca_path).iterdir()):
                if entry.is_file():
                    context.load_verify_locations(cafile=str(entry))
        if tls.client_cert:
            context.load_cert_chain(tls.client_cert, tls.client_key)
    except (OSError, ssl.SSLError) as exc:
        which = ("the client certificate or key (VAULT_CLIENT_CERT/KEY)" if tls.client_cert and not
                 isinstance(exc, FileNotFoundError) else "the CA certificates (VAULT_CACERT/CAPATH)")
        raise usage_error(f"cannot load {which}: {getattr(exc, 'strerror', None) or exc.__class__.__name__}") from None
    if tls.skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def quote_path(*segments: str) -> str:
    """Join path segments, each URL-quoted: secret names may hold spaces, `?`, `#` or `%`."""
    parts: list[str] = []
    for segment in segments:
        parts.extend(urllib.parse.quote(p, safe="") for p in segment.split("/") if p)
    return "/".join(parts)


def dig(body: Any, *keys: str) -> Any:
    """body[k1][k2]... of a decoded answer, or None where the shape is not what Vault documents."""
    for key in keys:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


def _decode(raw: bytes, status: int, what: str) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        # A proxy's HTML error page, or a truncated body: say so without quoting it.
        if status >= 400:
            return None
        raise vault_error(f"{what}: the answer (HTTP {status}) is not valid JSON; is this a Vault server?") from None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _status_text(status: int) -> str:
    if status == 503:
        return "HTTP 503: Vault is sealed, in standby or unavailable"
    if status == 429:
        return "HTTP 429: rate limited"
    return f"HTTP {status}"


def _connection_text(exc: BaseException, address: VaultAddress) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timed out talking to {address.display()}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {address.display()}; is Vault running and BRUIN_VAULT_HOST right?"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {address.host}; check BRUIN_VAULT_HOST"
    if isinstance(exc, FileNotFoundError):
        return f"no socket at {address.host}; check BRUIN_VAULT_HOST"
    if isinstance(exc, http.client.IncompleteRead):
        return f"the answer from {address.display()} was cut short"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error with {address.display()} ({exc.reason or type(exc).__name__})"
    return f"connection to {address.display()} failed ({type(exc).__name__})"


def _retry_note(retries: int) -> str:
    return f" (after {retries} retr{'y' if retries == 1 else 'ies'})" if retries else ""
