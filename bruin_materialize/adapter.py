"""hvac's HTTP side: an adapter that sends hvac's requests over urllib3 keep-alive pools.

hvac's API (`client.secrets.kv`, `client.auth`, `client.sys`) builds every request and raises its
exceptions; this adapter, handed to `hvac.Client`, sends them. hvac's default adapter goes through
requests, which rebuilds each request and rescans the environment for proxies on every call: about
1 ms of CPU per secret under the GIL (docs/performance.md). urllib3, the library requests itself
sends with, does the HTTP, TLS, proxies and keep-alive here. This module adds what neither does:

- bruin's retry rules (connection errors, 412, 5xx but 501; exponential backoff with jitter;
  `Retry-After`), inside one deadline per operation. urllib3's `Retry` has no overall deadline and
  its waits cannot be cut short by a signal.
- 429 as back-pressure: waited out until the deadline without spending an error retry, and the
  number of parallel requests adapted to it (Gate).
- a deadline that also holds against a server trickling its answer: a socket timeout bounds each
  read, not their sum, so a watchdog shuts the socket of a request still running at its deadline.
- a GET that fails on a reused keep-alive connection before any answer is resent once on a fresh
  one without spending a retry, as Go's HTTP client does.

Nothing here puts a URL's query, a token, a request body or a response body into an exception text.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, NoReturn

import hvac.adapters
import hvac.exceptions
import hvac.utils
import requests
import urllib3
import urllib3.connection
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict

from bruin_materialize import __version__
from bruin_materialize.settings import VaultAddress
from bruin_materialize.threads import start_daemon

USER_AGENT = f"bruin-materialize/{__version__}"
MAX_ANSWER = 32 * 1024 * 1024  # Vault's own default max request size; a secrets answer is far smaller
_RETRY_STATUSES = frozenset({412, 429}) | (frozenset(range(500, 600)) - {501})
_IDEMPOTENT = frozenset({"GET", "HEAD"})


class RetryPolicy(NamedTuple):
    timeout: float  # one budget per operation, retries included
    max_retries: int
    wait_min: float
    wait_max: float


class TransportError(Exception):
    """Vault could not be asked, or did not answer usably; the text is safe to print, never a body.
    `status` is a proxy's answer to a CONNECT it refused, when known (vault.call explains a 407)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _Transient(Exception):
    """A failure worth retrying; its text is a safe description."""


# --- the deadline watchdog ------------------------------------------------------------------------


class _Watchdog:
    """Shuts the socket of any request still running at its operation's deadline.

    One daemon thread for all requests. Each request is armed with (deadline, socket) once it is sent
    and disarmed when its body has been read (the socket, not the connection: with `Connection:
    close` http.client hands the socket over to the response); `abort` shuts every armed one at once (signals).
    The thread is woken only when it sleeps with nothing armed: a later request's deadline is never
    earlier than one it already sleeps towards (every operation has the same budget), and a thread
    switch per request would cost more than the request's own work.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, socket.socket]] = {}
        self._idle = False
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, sock: socket.socket) -> None:
        with self._cond:
            self._armed[threading.get_ident()] = (deadline, sock)
            if self._thread is None:
                self._thread = start_daemon(self._run, "vault-deadlines")
            elif self._idle:
                self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._armed.pop(threading.get_ident(), None)

    def abort(self) -> None:
        with self._cond:
            socks = [sock for _, sock in self._armed.values()]
        for sock in socks:
            _shut(sock)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for key in [key for key, (deadline, _) in self._armed.items() if deadline <= now]:
                    _shut(self._armed.pop(key)[1])
                nearest = min((deadline for deadline, _ in self._armed.values()), default=None)
                self._idle = nearest is None
                self._cond.wait(None if nearest is None else nearest - now)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # close() alone does not wake a thread blocked in recv
    except OSError:
        pass


_WATCHDOG = _Watchdog()
_current = threading.local()  # per thread: the operation's deadline, and whether its connection was reused


class _Watched:
    """Mixed into urllib3's connection classes: arms the watchdog and notes connection reuse."""

    sock: socket.socket | None
    sent = 0  # requests sent since this connection (re)connected

    def connect(self) -> None:
        self.sent = 0
        super().connect()  # type: ignore[misc]

    def _new_conn(self) -> socket.socket:
        # Watched from the moment the socket exists: a proxy's CONNECT answer and the TLS handshake
        # come before request(), and could be trickled too.
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        _WATCHDOG.arm(_current.deadline, sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _current.reused = self.sock is not None and self.sent > 0
        super().request(*args, **kwargs)  # type: ignore[misc]  # connects first if need be
        self.sent += 1
        if self.sock is not None:  # sent: from here on the answer is awaited
            _WATCHDOG.arm(_current.deadline, self.sock)


class _HTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _UnixConnection(_Watched, urllib3.connection.HTTPConnection):
    """HTTP over a unix socket (`unix:///path.sock`): urllib3's connection, another socket family."""

    def __init__(self, *args: Any, socket_path: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sent = 0
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        _WATCHDOG.arm(_current.deadline, sock)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _UnixPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _UnixConnection


# --- the transport ----------------------------------------------------------------------------------


class Gate:
    """How many requests may be in flight: additive increase, multiplicative decrease.

    Halved when Vault answers 429 (once per round of requests: the 429s of requests sent before the
    cut do not cut again), raised by one per round of successes, never above the ceiling
    (BRUIN_MATERIALIZE_CONCURRENCY). A fleet of processes throttled by one quota so converges on
    what the quota allows, as TCP flows converge on a link's capacity.
    """

    def __init__(self, ceiling: int, note: Callable[[str], None]) -> None:
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self._note = note
        self._in_flight = 0
        self._last_cut = 0.0
        self._cond = threading.Condition()

    def acquire(self) -> float:
        with self._cond:
            while self._in_flight >= int(self.limit):
                self._cond.wait()
            self._in_flight += 1
            return time.monotonic()

    def release(self, started: float, status: int | None) -> None:
        """`status` is the answer's, None when there was none (that says nothing about the quota)."""
        with self._cond:
            self._in_flight -= 1
            before = int(self.limit)
            if status == 429 and started >= self._last_cut:
                self.limit = max(1.0, self.limit / 2)
                self._last_cut = time.monotonic()
                if int(self.limit) < before:
                    self._note(f"Vault is rate-limiting: {int(self.limit)} parallel request(s), was {before}")
            elif status is not None and status != 429 and self.limit < self.ceiling:
                self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
                if int(self.limit) == self.ceiling > before:
                    self._note(f"rate limit eased: back to {self.ceiling} parallel requests")
            self._cond.notify_all()


class Reply(NamedTuple):
    status: int
    body: bytes
    headers: Any  # urllib3's HTTPHeaderDict (case-insensitive)


_ACTIVE: set[Transport] = set()


def abort_all() -> None:
    """From a signal handler: stop retrying and wake every thread blocked on a socket."""
    for transport in list(_ACTIVE):
        transport.cancel.set()
    _WATCHDOG.abort()


class Transport:
    """urllib3 pools to one Vault address (directly, through a proxy, or over a unix socket)."""

    def __init__(self, address: VaultAddress, policy: RetryPolicy, *, tls: ssl.SSLContext | None = None,
                 proxy: str | None = None, connections: int = 8, note: Callable[[str], None] | None = None) -> None:
        self.address = address
        self.policy = policy
        self.proxy = proxy
        self.cancel = threading.Event()
        self.gate = Gate(connections, note or (lambda _: None))
        self._http, self._base = _opener(address, tls, proxy, connections)
        _ACTIVE.add(self)

    def close(self) -> None:
        self._http.clear() if isinstance(self._http, urllib3.PoolManager) else self._http.close()
        _ACTIVE.discard(self)

    def send(self, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> Reply:
        """One operation: retried by bruin's rules until it succeeds or its deadline passes.

        A 429 is back-pressure, not a failure: it is waited out (Retry-After, else backoff with full
        jitter) for as long as the deadline allows, without spending the error retries.
        """
        deadline = time.monotonic() + self.policy.timeout
        errors = throttled = 0
        while True:
            retry_after = None
            try:
                reply = self._gated(method, target, body, headers, deadline)
                if reply.status not in _RETRY_STATUSES:
                    return reply
                last = _status_text(reply.status)
                retry_after = _retry_after(reply.headers.get("Retry-After"))
            except _Transient as exc:
                last = str(exc)
                reply = None
            if reply is not None and reply.status == 429:
                # Never less than our own backoff: quotas that count whole seconds say `Retry-After: 0`.
                wait = max(retry_after or 0.0, self._full_jitter(throttled))
                throttled += 1
                if self.cancel.is_set() or time.monotonic() + wait >= deadline or self.cancel.wait(wait):
                    raise TransportError(f"Vault kept rate-limiting (HTTP 429) for {self.policy.timeout:g}s; raise "
                                         "BRUIN_VAULT_TIMEOUT, or lower BRUIN_MATERIALIZE_CONCURRENCY")
                continue
            if errors >= self.policy.max_retries or self.cancel.is_set():
                break
            wait = retry_after if retry_after is not None else self._backoff(errors)
            if time.monotonic() + wait >= deadline or self.cancel.wait(wait):
                break
            errors += 1
        raise TransportError(last + _retry_note(errors))

    def _gated(self, method: str, target: str, body: bytes | None, headers: dict[str, str],
               deadline: float) -> Reply:
        started = self.gate.acquire()
        status = None
        try:
            reply = self._attempt(method, target, body, headers, deadline)
            status = reply.status
            return reply
        finally:
            self.gate.release(started, status)

    def _attempt(self, method: str, target: str, body: bytes | None, headers: dict[str, str],
                 deadline: float) -> Reply:
        try:
            return self._exchange(method, target, body, headers, deadline)
        except _Transient:
            if not (getattr(_current, "stale", False) and method in _IDEMPOTENT):
                raise
        # The server closed the idle keep-alive connection: nothing was processed, so send again on
        # a fresh connection without spending a retry.
        return self._exchange(method, target, body, headers, deadline)

    def _exchange(self, method: str, target: str, body: bytes | None, headers: dict[str, str],
                  deadline: float) -> Reply:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timed_out()
        _current.deadline, _current.reused, _current.stale = deadline, False, False
        timeout = urllib3.Timeout(connect=remaining, read=remaining)
        try:
            try:
                resp = self._http.urlopen(method, self._base + target, body=body, headers=headers, retries=False,
                                          redirect=False, timeout=timeout, preload_content=False)
            except _FAILURES as exc:
                _current.stale = _current.reused and _is_stale(exc)  # nothing was answered yet
                raise self._failure(exc, deadline) from None
            try:
                return Reply(resp.status, _read_bounded(resp), resp.headers)
            except _FAILURES as exc:
                raise self._failure(exc, deadline) from None
            finally:
                resp.release_conn()
        finally:
            _WATCHDOG.disarm()

    def _failure(self, exc: BaseException, deadline: float) -> Exception:
        """Our text for a failed exchange: TransportError when retrying cannot help, else _Transient."""
        chain = _chain(exc)
        shown = self._shown()
        cert = _first(chain, ssl.SSLCertVerificationError)
        if cert is not None:
            reason = getattr(cert, "verify_message", None) or "host name mismatch"
            return TransportError(f"TLS verification of {shown} failed ({reason}); check the CA (VAULT_CACERT or "
                                  "VAULT_CAPATH) or the host name")
        tls = _first(chain, ssl.SSLError)
        if tls is not None and not isinstance(tls, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            reason = getattr(tls, "reason", None) or type(tls).__name__
            return TransportError(f"TLS handshake with {shown} failed ({reason}); check the client certificate "
                                  "(VAULT_CLIENT_CERT/KEY) and the server's TLS settings")
        if time.monotonic() >= deadline or _first(chain, TimeoutError, socket.timeout) is not None:
            return self._timed_out()
        if self.proxy and _first(chain, urllib3.exceptions.ProxyError) is not None:
            if _tunnel_status(chain) == 407:  # no retry can help: it wants credentials
                return TransportError(f"the proxy {_without_password(self.proxy)} refused the tunnel", status=407)
            refused = _first(chain, ConnectionRefusedError) is not None
            return _Transient(f"cannot reach Vault through the proxy {_without_password(self.proxy)} "
                              f"({'connection refused' if refused else 'no connection or tunnel'}); check "
                              "HTTPS_PROXY/HTTP_PROXY/NO_PROXY or VAULT_PROXY_ADDR")
        return _Transient(_connection_text(chain, shown))

    def _timed_out(self) -> _Transient:
        return _Transient(f"timed out talking to {self._shown()} (no answer within {self.policy.timeout:g}s)")

    def _shown(self) -> str:
        return self.address.display()

    def _backoff(self, attempt: int) -> float:
        """Exponential, with jitter, as bruin's client (go-retryablehttp) waits between error retries."""
        ceiling = min(self.policy.wait_max, self.policy.wait_min * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)

    def _full_jitter(self, attempt: int) -> float:
        """Anywhere up to the exponential ceiling: throttled clients of a fleet spread out instead of
        coming back together (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/)."""
        return random.uniform(0, min(self.policy.wait_max, self.policy.wait_min * (2 ** min(attempt, 16))))


def _opener(address: VaultAddress, tls: ssl.SSLContext | None, proxy: str | None,
            connections: int) -> tuple[urllib3.PoolManager | urllib3.HTTPConnectionPool, str]:
    """What sends the requests, and the prefix their paths need: a keep-alive pool holding a
    connection per reading thread, or, through a proxy, urllib3's ProxyManager and absolute URLs."""
    if address.scheme == "unix":
        return _UnixPool("localhost", maxsize=connections, socket_path=address.host), ""
    kwargs: dict[str, Any] = {"maxsize": connections}
    if tls is not None:
        kwargs.update(ssl_context=tls, cert_reqs=tls.verify_mode, assert_hostname=None if tls.check_hostname else False)
        if tls.verify_mode == ssl.CERT_NONE:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # we print our own warning
    if not proxy:
        pool = _HTTPSPool if address.scheme == "https" else _HTTPPool
        return pool(address.host, address.port, **kwargs), ""
    manager = urllib3.ProxyManager(proxy, proxy_headers=_proxy_headers(proxy), **kwargs)
    manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    return manager, address.display()


def _proxy_headers(proxy: str) -> dict[str, str] | None:
    auth = urllib3.util.parse_url(proxy).auth
    return urllib3.make_headers(proxy_basic_auth=urllib.parse.unquote(auth)) if auth else None


def _without_password(url: str) -> str:
    parts = urllib3.util.parse_url(url)
    return parts._replace(auth=None).url if parts.auth else url


_FAILURES = (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException)


def _read_bounded(resp: Any) -> bytes:
    """The whole body, refusing one past MAX_ANSWER before holding it all in memory."""
    length = resp.headers.get("Content-Length", "")
    too_large = length.isdigit() and int(length) > MAX_ANSWER
    data: bytes = b"" if too_large else resp.read(MAX_ANSWER + 1)
    if too_large or len(data) > MAX_ANSWER:
        resp.close()  # the rest stays unread: the connection cannot be reused
        raise TransportError(f"the answer is larger than {MAX_ANSWER // 2**20} MiB; is this a Vault server?")
    return data


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps: urllib3 nests the OS error in causes and in args."""
    found: list[BaseException] = []
    pending = [exc]
    while pending:
        current = pending.pop()
        if any(current is seen for seen in found):
            continue
        found.append(current)
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return found


def _tunnel_status(chain: list[BaseException]) -> int | None:
    """The status of a refused CONNECT: http.client says `Tunnel connection failed: 407 ...`."""
    for exc in chain:
        found = re.search(r"Tunnel connection failed: (\d{3})", str(exc)) if isinstance(exc, OSError) else None
        if found:
            return int(found.group(1))
    return None


def _first(chain: list[BaseException], *types: type[BaseException]) -> BaseException | None:
    return next((e for e in chain if isinstance(e, types)), None)


def _is_stale(exc: BaseException) -> bool:
    """The connection died before any answer: a server or balancer closed it while it was idle."""
    chain = _chain(exc)
    died = _first(chain, http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
    return died is not None and _first(chain, http.client.IncompleteRead, urllib3.exceptions.IncompleteRead) is None


def _connection_text(chain: list[BaseException], shown: str) -> str:
    if _first(chain, ConnectionRefusedError) is not None:
        return f"connection refused by {shown}; is Vault running and BRUIN_VAULT_HOST right?"
    if _first(chain, socket.gaierror, urllib3.exceptions.NameResolutionError) is not None:
        return f"cannot resolve {urllib3.util.parse_url(shown).host}; check BRUIN_VAULT_HOST"
    if _first(chain, FileNotFoundError) is not None:
        return f"no socket at {shown.removeprefix('unix://')}; check BRUIN_VAULT_HOST"
    if _first(chain, http.client.IncompleteRead, urllib3.exceptions.IncompleteRead) is not None:
        return f"the answer from {shown} was cut short"
    tls = _first(chain, ssl.SSLError)
    if tls is not None:
        return f"TLS error with {shown} ({getattr(tls, 'reason', None) or type(tls).__name__})"
    root = chain[-1] if chain else None
    return f"connection to {shown} failed ({type(root).__name__})"


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


def _retry_note(retries: int) -> str:
    return f" (after {retries} retr{'y' if retries == 1 else 'ies'})" if retries else ""


# --- the hvac adapter --------------------------------------------------------------------------------


class VaultAdapter(hvac.adapters.JSONAdapter):
    """hvac's JSONAdapter, sending through a Transport instead of a requests session.

    As JSONAdapter: a 200 answer is returned as its decoded JSON, another success as a response,
    an error raised as hvac's exception for its status (`hvac.exceptions.Forbidden`, ...). hvac's
    `verify`, `cert`, `proxies` and `timeout` are not used: the Transport was built from the
    settings (hvac would otherwise fill them from VAULT_* variables it read at import).
    """

    def __init__(self, *, transport: Transport, **hvac_kwargs: Any) -> None:
        super().__init__(strict_http=True, **hvac_kwargs)  # LIST as GET ?list=true: proxies know GET
        self.transport = transport

    def close(self) -> None:
        self.transport.close()
        super().close()

    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None, raise_exception: bool = True,
                **kwargs: Any) -> Any:
        method = method.upper()
        if method == "LIST":
            method, kwargs["params"] = "GET", {**(kwargs.get("params") or {}), "list": "true"}
        target = _target(url, kwargs.get("params"))
        body = None if kwargs.get("json") is None else json.dumps(kwargs["json"]).encode()
        reply = self.transport.send(method, target, body, self._headers(headers, body is not None))
        if reply.status == 200:
            return _decode(reply)
        if reply.status >= 400 and raise_exception and not self.ignore_exceptions:
            _raise_for_status(method, target.partition("?")[0], reply)
        return _response(reply)

    def _headers(self, extra: Mapping[str, str] | None, has_body: bool) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "X-Vault-Request": "true", **(extra or {})}
        if self.token:
            headers["X-Vault-Token"] = self.token
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers


def _target(url: str, params: dict[str, Any] | None) -> str:
    while "//" in url:  # as hvac's adapter: Vault reads `//` as `/`
        url = url.replace("//", "/")
    query = urllib.parse.urlencode({k: _param(v) for k, v in params.items()}) if params else ""
    return "/" + url.lstrip("/") + ("?" + query if query else "")


def _param(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _decode(reply: Reply) -> Any:
    if not reply.body.strip():
        return {}
    try:
        return json.loads(reply.body)
    except ValueError:
        # A proxy's HTML page, or a truncated body: say so without quoting it.
        raise TransportError(f"the answer (HTTP {reply.status}) is not valid JSON; is this a Vault server?") from None


def _raise_for_status(method: str, path: str, reply: Reply) -> NoReturn:
    """hvac's exception for the status, as its own adapter raises it, and the status kept on it."""
    text = reply.body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text) if text.strip() else None
    except ValueError:
        parsed = None
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    try:
        hvac.utils.raise_for_error(method, path, reply.status, None if errors else text, errors=errors, text=text,
                                   json=parsed)
    except hvac.exceptions.VaultError as exc:
        exc.status_code = reply.status  # type: ignore[attr-defined]  # hvac's exceptions do not keep it
        raise
    raise AssertionError("hvac.utils.raise_for_error returned")  # it always raises


def _response(reply: Reply) -> requests.Response:
    """The requests.Response hvac's error handling reads (status, headers, text, json)."""
    response = requests.Response()
    response.status_code = reply.status
    response.headers = CaseInsensitiveDict(reply.headers)
    response._content = reply.body
    response.encoding = "utf-8"
    return response
