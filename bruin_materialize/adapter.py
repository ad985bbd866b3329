"""hvac's HTTP side: an adapter that sends hvac's requests through libcurl (pycurl).

hvac's default adapter goes through requests, which rebuilds each request and rescans the environment
for proxies on every call (docs/performance.md). libcurl does HTTP, TLS, proxies, unix sockets,
keep-alive, reconnecting, a deadline on the whole exchange (`TIMEOUT_MS`, which holds against a
trickling server) and the size cap. This module adds what libcurl does not decide: the proxy, chosen by
the settings and given to libcurl explicitly (it never reads a proxy variable itself); bruin's retry
rules inside one deadline per operation; 429 as back-pressure (Gate); one line per failure, from
libcurl's error codes, never libcurl's own text (it can quote a proxy's password), a token or a body.
Redirects are never followed: a 3xx answer is handed to hvac as it came, as is a proxy's 407.
"""

from __future__ import annotations

import email.utils
import errno
import json
import queue
import random
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, NoReturn

import hvac.adapters
import hvac.exceptions
import hvac.utils
import pycurl
import requests
from requests.structures import CaseInsensitiveDict

from bruin_materialize import __version__
from bruin_materialize.settings import VaultAddress

USER_AGENT = f"bruin-materialize/{__version__}"
MAX_ANSWER = 32 * 1024 * 1024  # Vault's own default max request size; a secrets answer is far smaller
_RETRY_STATUSES = frozenset({412, 429}) | (frozenset(range(500, 600)) - {501})
_MAIN_THREAD_POLL = 0.1  # seconds: how soon the main thread runs a signal's handler during a request


class RetryPolicy(NamedTuple):
    timeout: float  # one budget per operation, retries included
    max_retries: int
    wait_min: float
    wait_max: float


class TLSOptions(NamedTuple):
    ca_pem: bytes | None  # the CAs the settings name, as one PEM bundle; None: the system store
    system_ca_file: str | None  # the system store, as Python's OpenSSL finds it
    system_ca_dir: str | None
    client_cert: str | None
    client_key: str | None
    verify: bool


class TransportError(Exception):
    """Vault could not be asked, or did not answer usably; the text is safe to print, never a body."""


class _Transient(Exception):
    """A failure worth retrying; its text is a safe description."""


class Gate:
    """How many requests may be in flight: additive increase, multiplicative decrease.

    Halved when Vault answers 429 (once per round of requests: the 429s of requests sent before the
    cut do not cut again), raised by one per round of successes, never above the ceiling
    (BRUIN_MATERIALIZE_CONCURRENCY). A fleet of processes throttled by one quota so converges on
    what the quota allows, as TCP flows converge on a link's capacity.

    A request holds one of int(limit) tokens: unthrottled, taking one and giving it back is all, no
    lock; tokens beyond a cut limit are retired as they are next taken.
    """

    def __init__(self, ceiling: int, note: Callable[[str], None]) -> None:
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self._note = note
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._made = self._debt = self._cuts = 0  # _debt: tokens made beyond int(limit)
        self._lock = threading.Lock()  # for everything but taking and giving back a token
        self._follow_limit()

    def acquire(self) -> int:
        """The number of cuts so far, for `release`: a 429 cuts only if no cut came since."""
        self._tokens.get()
        while self._debt and self._retire():
            self._tokens.get()
        return self._cuts

    def release(self, cuts: int, status: int | None) -> None:
        """`status` is the answer's, None when there was none (that says nothing about the quota)."""
        if status == 429 or (status is not None and self.limit < self.ceiling):
            with self._lock:
                self._adapt(cuts, status)
        self._tokens.put(None)

    def _retire(self) -> bool:
        with self._lock:
            if not self._debt:
                return False
            self._debt -= 1
            self._made -= 1
            return True

    def _adapt(self, cuts: int, status: int) -> None:
        before = int(self.limit)
        if status != 429 and self.limit < self.ceiling:
            self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
            if int(self.limit) == self.ceiling > before:
                self._note(f"rate limit eased: back to {self.ceiling} parallel requests")
        elif status == 429 and cuts == self._cuts:
            self.limit = max(1.0, self.limit / 2)
            self._cuts += 1
            if int(self.limit) < before:
                self._note(f"Vault is rate-limiting: {int(self.limit)} parallel request(s), was {before}")
        self._follow_limit()

    def _follow_limit(self) -> None:
        for _ in range(int(self.limit) - self._made):
            self._tokens.put(None)
        self._made = max(self._made, int(self.limit))
        self._debt = self._made - int(self.limit)


class Reply(NamedTuple):
    status: int
    body: bytes
    header_lines: list[bytes]  # as libcurl saw them: every block (a proxy's CONNECT answer first)

    @property
    def headers(self) -> CaseInsensitiveDict[str]:
        """The last block's headers (the answer's own): parsed only when asked for, on errors."""
        found: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        for raw in self.header_lines:
            line = raw.decode("latin-1").rstrip("\r\n")
            if line.startswith("HTTP/"):
                found = CaseInsensitiveDict()
            elif ":" in line:
                name, _, value = line.partition(":")
                found[name.strip()] = value.strip()
        return found


_ACTIVE: set[Transport] = set()


def abort_all() -> None:
    """From a signal handler: stop retrying (a request on the main thread stops at the handler)."""
    for transport in list(_ACTIVE):
        transport.cancel.set()


class Transport:
    """libcurl handles to one Vault address (directly, through a proxy, or over a unix socket), one per
    thread at a time, kept alive in a pool (not per thread: a later round of reading threads reuses them)."""

    def __init__(self, address: VaultAddress, policy: RetryPolicy, *, tls: TLSOptions | None = None,
                 proxy: str | None = None, connections: int = 8, note: Callable[[str], None] | None = None) -> None:
        self.address = address
        self.policy = policy
        self.proxy = proxy
        self.cancel = threading.Event()
        self.gate = Gate(connections, note or (lambda _: None))
        self._tls = tls
        self._base = "http://localhost" if address.scheme == "unix" else address.display()
        self._idle: list[_Handle] = []  # no lock: list.append and list.pop are atomic (Python's FAQ)
        self._closed = False
        self._multi: pycurl.CurlMulti | None = None  # the main thread's (see _perform_interruptibly)
        self._main_thread = threading.main_thread().ident
        _ACTIVE.add(self)

    def close(self) -> None:
        """Close the idle handles; one still busy on a thread a signal left behind, when it comes back."""
        _ACTIVE.discard(self)
        self._closed = True
        self._close_idle()
        if self._multi is not None:
            self._multi.close()
            self._multi = None

    def _close_idle(self) -> None:
        try:
            while True:
                self._idle.pop().curl.close()
        except IndexError:
            pass

    def send(self, method: str, target: str, body: bytes | None, headers: list[str]) -> Reply:
        """One operation, retried by bruin's rules until it succeeds or its deadline passes; a 429 is
        waited out until the deadline without spending the error retries."""
        deadline = time.monotonic() + self.policy.timeout
        errors = throttled = 0
        while True:
            retry_after = None
            try:
                reply = self._attempt(method, target, body, headers, deadline)
                if reply.status not in _RETRY_STATUSES:
                    return reply
                last = _STATUS_TEXTS.get(reply.status) or f"HTTP {reply.status}"
                retry_after = _retry_after(reply.headers.get("Retry-After"))
            except _Transient as exc:
                last = str(exc)
                reply = None
            if reply is not None and reply.status == 429:
                # Never less than our own backoff: quotas that count whole seconds say `Retry-After: 0`.
                wait = max(retry_after or 0.0, self._backoff(min(throttled, 16), 0.0))
                throttled += 1
                if self.cancel.is_set() or time.monotonic() + wait >= deadline or self.cancel.wait(wait):
                    raise TransportError(f"Vault kept rate-limiting (HTTP 429) for {self.policy.timeout:g}s; raise "
                                         "BRUIN_VAULT_TIMEOUT, or lower BRUIN_MATERIALIZE_CONCURRENCY")
                continue
            if errors >= self.policy.max_retries or self.cancel.is_set():
                break
            wait = retry_after if retry_after is not None else self._backoff(errors, 0.5)
            if time.monotonic() + wait >= deadline or self.cancel.wait(wait):
                break
            errors += 1
        raise TransportError(last + (f" (after {errors} retr{'y' if errors == 1 else 'ies'})" if errors else ""))

    def _attempt(self, method: str, target: str, body: bytes | None, headers: list[str], deadline: float) -> Reply:
        cuts = self.gate.acquire()
        reply = None
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timed_out(self.address, self.policy.timeout)
            try:
                handle = self._idle.pop()
            except IndexError:
                handle = _Handle(self.address, self.proxy, self._tls)
            try:
                handle.prepare(method, self._base + target, body, headers, remaining)
                reply = self._exchange(handle, deadline)
            finally:
                handle.reset(method, body)
                self._idle.append(handle)
                if self._closed:  # meanwhile
                    self._close_idle()
            return reply
        finally:
            self.gate.release(cuts, None if reply is None else reply.status)

    def _exchange(self, handle: _Handle, deadline: float) -> Reply:
        curl = handle.curl
        if threading.get_ident() == self._main_thread:
            code = self._perform_interruptibly(curl)
        else:
            try:
                curl.perform()
                code = 0
            except pycurl.error as exc:  # its text is libcurl's, never shown: the code says enough
                code = int(exc.args[0])
        if not code:
            return Reply(curl.getinfo(pycurl.RESPONSE_CODE), b"".join(handle.chunks), handle.lines[:])
        connect_code = curl.getinfo(pycurl.HTTP_CONNECTCODE)
        if connect_code == 407:  # the proxy refused the tunnel: its answer, as a plain proxy's
            return Reply(407, b"", handle.lines[:])
        if time.monotonic() >= deadline:
            raise _timed_out(self.address, self.policy.timeout)
        raise failure(code, curl.getinfo(pycurl.OS_ERRNO), connect_code, curl.getinfo(pycurl.SSL_VERIFYRESULT),
                      self.address, self.proxy, self.policy.timeout)

    def _perform_interruptibly(self, handle: pycurl.Curl) -> int:
        """The main thread never blocks inside libcurl: a signal's handler must run within moments
        (it raises Interrupted, which unwinds from here). So the request goes through a multi handle
        whose wait is Python's, cut into short slices; its connections stay in the multi handle."""
        if self._multi is None:
            self._multi = pycurl.CurlMulti()
        multi = self._multi
        multi.add_handle(handle)
        try:
            while True:
                multi.perform()  # never CURLM_CALL_MULTI_PERFORM since libcurl 7.20
                _, done, failed = multi.info_read()
                if done:
                    return 0
                if failed:
                    return int(failed[0][1])
                wait = multi.timeout()
                multi.select(_MAIN_THREAD_POLL if wait < 0 else min(wait / 1000, _MAIN_THREAD_POLL))
        finally:
            multi.remove_handle(handle)

    def _backoff(self, attempt: int, floor: float) -> float:
        """Exponential with jitter: between half and all of it as bruin's client (go-retryablehttp) waits
        between error retries (floor 0.5); anywhere up to it for a 429 (floor 0), so that throttled clients
        of a fleet spread out (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/)."""
        ceiling = min(self.policy.wait_max, self.policy.wait_min * (2**attempt))
        return random.uniform(ceiling * floor, ceiling)


# --- libcurl's handles ----------------------------------------------------------------------------------


class _Handle:
    """An Easy handle set up for one Vault, and what its last request left set: the next sets only what differs."""

    __slots__ = ("curl", "chunks", "lines", "headers", "method")

    def __init__(self, address: VaultAddress, proxy: str | None, tls: TLSOptions | None) -> None:
        self.curl = curl = pycurl.Curl()
        self.chunks: list[bytes] = []
        self.lines: list[bytes] = []
        self.headers: list[str] | None = None
        self.method = "GET"  # libcurl's default
        curl.setopt(pycurl.WRITEFUNCTION, self.chunks.append)
        curl.setopt(pycurl.HEADERFUNCTION, self.lines.append)
        curl.setopt(pycurl.NOSIGNAL, 1)  # no SIGALRM for DNS timeouts: threads, and our own handlers
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)  # what Vault's clients speak
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.MAXFILESIZE_LARGE, MAX_ANSWER)
        curl.setopt(pycurl.NOPROGRESS, 1)
        if address.scheme == "unix":
            curl.setopt(pycurl.UNIX_SOCKET_PATH, address.host)
        _set_proxy(curl, proxy)
        if tls is not None:
            _set_tls(curl, tls)

    def prepare(self, method: str, url: str, body: bytes | None, headers: list[str], remaining: float) -> None:
        curl = self.curl
        curl.setopt(pycurl.URL, url)
        if headers != self.headers:
            curl.setopt(pycurl.HTTPHEADER, headers)
            self.headers = headers[:]
        if method != "GET" or self.method != "GET":
            _set_method(curl, method, body)
        self.method = method
        ms = max(1, int(remaining * 1000))
        curl.setopt(pycurl.TIMEOUT_MS, ms)  # the whole exchange: connect, TLS, proxy, head and body
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, ms)

    def reset(self, method: str, body: bytes | None) -> None:
        """After a request: let go of the answer and of the request body."""
        self.chunks.clear()
        self.lines.clear()
        if body:
            self.curl.setopt(pycurl.POSTFIELDS, b"")
            self.method = "POST"  # what POSTFIELDS makes of any request, even a GET's
        if method == "HEAD":
            self.curl.setopt(pycurl.NOBODY, 0)  # else a later POST would be sent as a HEAD


def _set_proxy(handle: pycurl.Curl, proxy: str | None) -> None:
    """The settings' proxy, or none; never libcurl's own reading of http_proxy, ALL_PROXY or NO_PROXY
    (it ignores HTTP_PROXY in capitals, which Go and so Vault's CLI and bruin read)."""
    handle.setopt(pycurl.NOPROXY, "")  # "": NO_PROXY is not read (the settings applied it)
    if not proxy:
        handle.setopt(pycurl.PROXY, "")  # "": no proxy, whatever the environment says
        return
    parts = urllib.parse.urlsplit(proxy)
    handle.setopt(pycurl.PROXY, origin(parts))
    if parts.username is not None:
        handle.setopt(pycurl.PROXYUSERNAME, urllib.parse.unquote(parts.username))
        handle.setopt(pycurl.PROXYPASSWORD, urllib.parse.unquote(parts.password or ""))
    system = ssl.get_default_verify_paths()
    _set_cas(handle, (pycurl.PROXY_CAINFO, system.cafile), (pycurl.PROXY_CAPATH, system.capath))


def _set_tls(handle: pycurl.Curl, tls: TLSOptions) -> None:
    handle.setopt(pycurl.SSL_VERIFYPEER, 1 if tls.verify else 0)
    handle.setopt(pycurl.SSL_VERIFYHOST, 2 if tls.verify else 0)
    if tls.ca_pem is not None:
        handle.setopt(pycurl.CAINFO_BLOB, tls.ca_pem)
        handle.setopt(pycurl.CAPATH, None)
    else:
        _set_cas(handle, (pycurl.CAINFO, tls.system_ca_file), (pycurl.CAPATH, tls.system_ca_dir))
    if tls.client_cert:
        handle.setopt(pycurl.SSLCERT, tls.client_cert)
        handle.setopt(pycurl.SSLKEY, tls.client_key or tls.client_cert)


def _set_cas(handle: pycurl.Curl, *options: tuple[int, str | None]) -> None:
    """The system's CAs where this machine keeps them: the wheel's libcurl was built elsewhere."""
    for option, value in options:
        if value:
            handle.setopt(option, value)


def _set_method(handle: pycurl.Curl, method: str, body: bytes | None) -> None:
    if method == "GET":
        handle.setopt(pycurl.HTTPGET, 1)
        handle.setopt(pycurl.CUSTOMREQUEST, None)
    elif method == "HEAD":  # an answer without a body: libcurl must not wait for one
        handle.setopt(pycurl.CUSTOMREQUEST, None)
        handle.setopt(pycurl.NOBODY, 1)
    elif body is None and method == "DELETE":
        handle.setopt(pycurl.HTTPGET, 1)
        handle.setopt(pycurl.CUSTOMREQUEST, method)
    else:
        handle.setopt(pycurl.POSTFIELDS, body or b"")
        handle.setopt(pycurl.CUSTOMREQUEST, None if method == "POST" else method)


# --- libcurl's error codes, as our one-line messages -----------------------------------------------------

_RESOLVE_PROXY, _CONNECT, _PROXY_HANDSHAKE = 5, 7, 97
_TLS_HANDSHAKE = {35: "handshake error", 58: "the client certificate or key was not accepted",
                  59: "no cipher in common", 77: "the CA bundle was not accepted",
                  98: "the server asks for a client certificate"}
# OpenSSL's X509_V_ERR_* numbers, as libcurl reports them (CURLINFO_SSL_VERIFYRESULT).
_X509_REASONS = {2: "unable to get issuer certificate", 9: "certificate is not yet valid",
                 10: "certificate has expired", 18: "self-signed certificate",
                 19: "self-signed certificate in certificate chain", 20: "unable to get local issuer certificate",
                 21: "unable to verify the first certificate", 62: "host name mismatch"}
_CONNECTION_TEXTS = {6: "cannot resolve {host}; check BRUIN_VAULT_HOST", 18: "the answer from {shown} was cut short",
                     52: "connection to {shown} closed without an answer",
                     8: "the answer from {shown} is not HTTP; is this a Vault server?"}
# Connect, send and receive errors: what the OS said, else which of them it was.
_SOCKET_WORDS = {_CONNECT: "cannot connect", 55: "send error", 56: "receive error"}
_ERRNO_WORDS = {errno.ECONNRESET: "reset", errno.EPIPE: "broken pipe", errno.ECONNREFUSED: "refused",
                errno.ENETUNREACH: "network unreachable", errno.EHOSTUNREACH: "host unreachable",
                errno.ECONNABORTED: "aborted"}


def failure(code: int, os_errno: int, connect_code: int, verify_result: int, address: VaultAddress,
            proxy: str | None, timeout: float) -> Exception:
    """Our text for libcurl's error `code`: TransportError when retrying cannot help, else _Transient.

    Pure, from what libcurl reports beside the code (the OS's errno, the proxy's answer to CONNECT,
    the certificate check's result); libcurl's own message is never used."""
    shown = address.display()
    if code == 28:
        return _timed_out(address, timeout)
    if code == 63:
        return TransportError(f"the answer is larger than {MAX_ANSWER // 2**20} MiB; is this a Vault server?")
    if code in (51, 60):
        reason = _X509_REASONS.get(verify_result, f"X509 error {verify_result}" if verify_result else
                                   "host name mismatch")
        return TransportError(f"TLS verification of {shown} failed ({reason}); check the CA (VAULT_CACERT or "
                              "VAULT_CAPATH) or the host name")
    if code in _TLS_HANDSHAKE:
        return TransportError(f"TLS handshake with {shown} failed ({_TLS_HANDSHAKE[code]}); check the client "
                              "certificate (VAULT_CLIENT_CERT/KEY) and the server's TLS settings")
    if proxy and (code in (_RESOLVE_PROXY, _CONNECT, _PROXY_HANDSHAKE) or connect_code not in (0, 200)):
        refused = code == _CONNECT and os_errno == errno.ECONNREFUSED
        why = "cannot resolve it" if code == _RESOLVE_PROXY else "connection refused" if refused else \
            "no connection or tunnel"
        return _Transient(f"cannot reach Vault through the proxy {without_password(proxy)} ({why}); check "
                          "HTTPS_PROXY/HTTP_PROXY/NO_PROXY or VAULT_PROXY_ADDR")
    return _Transient(_connection_text(code, os_errno, address))


def _connection_text(code: int, os_errno: int, address: VaultAddress) -> str:
    shown = address.display()
    if code == _CONNECT and address.scheme == "unix" and os_errno in (errno.ENOENT, errno.ENOTDIR):
        return f"no socket at {address.host}; check BRUIN_VAULT_HOST"
    if code == _CONNECT and os_errno == errno.ECONNREFUSED:
        return f"connection refused by {shown}; is Vault running and BRUIN_VAULT_HOST right?"
    if code in _CONNECTION_TEXTS:
        return _CONNECTION_TEXTS[code].format(host=address.host, shown=shown)
    how = _ERRNO_WORDS.get(os_errno, _SOCKET_WORDS[code]) if code in _SOCKET_WORDS else f"libcurl error {code}"
    return f"connection to {shown} failed ({how})"


def _timed_out(address: VaultAddress, timeout: float) -> _Transient:
    return _Transient(f"timed out talking to {address.display()} (no answer within {timeout:g}s)")


def origin(parts: urllib.parse.SplitResult) -> str:
    """scheme://host:port of a URL: never its user or password, nor a port that is not a number; an IPv6
    host in brackets, so that its port stays apart from it."""
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://[{host}]{port}" if ":" in host else f"{parts.scheme}://{host}{port}"


def without_password(url: str) -> str:
    """A proxy URL as messages show it (its origin)."""
    try:
        return origin(urllib.parse.urlsplit(url))
    except ValueError:  # an IPv6 address without its `]`, ...
        return "(a proxy URL that does not parse)"


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, or as an HTTP date; None when absent or neither."""
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


_STATUS_TEXTS = {503: "HTTP 503: Vault is sealed, in standby or unavailable", 429: "HTTP 429: rate limited"}


# --- the hvac adapter --------------------------------------------------------------------------------


class VaultAdapter(hvac.adapters.JSONAdapter):
    """hvac's JSONAdapter (a 200 as its JSON, another answer as a response, an error as hvac's exception),
    sending through a Transport built from the settings: hvac's `verify`, `cert`, `proxies` and `timeout`,
    which it would fill from the VAULT_* variables it read at import, are not used."""

    def __init__(self, *, transport: Transport, **hvac_kwargs: Any) -> None:
        super().__init__(strict_http=True, **hvac_kwargs)  # LIST as GET ?list=true: proxies know GET
        self.transport = transport
        self._last_headers: tuple[tuple[str | None, str | None, bool], list[str]] | None = None

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
        reply = self.transport.send(method, target, body, self._headers(headers, body))
        if reply.status == 200:
            return _decode(reply)
        if reply.status >= 400 and raise_exception and not self.ignore_exceptions:
            _raise_for_status(method, target.partition("?")[0], reply)
        return _response(reply)

    def _headers(self, extra: Mapping[str, str] | None, body: bytes | None) -> list[str]:
        """The request's header lines; without extra headers, the last ones while token and namespace
        stay (one tuple swapped at once: threads share it)."""
        key = token, namespace, _ = self.token, self.namespace, bool(body)
        last = self._last_headers
        if extra or last is None or last[0] != key:
            headers = {"User-Agent": USER_AGENT, "X-Vault-Request": "true", **(extra or {})}
            if token:
                headers["X-Vault-Token"] = token
            if namespace:
                headers["X-Vault-Namespace"] = namespace
            # libcurl would add its own: a form type to a POST, and `Expect: 100-continue` to a large one.
            headers["Content-Type"] = "application/json" if body else ""
            headers["Expect"] = ""
            lines = [f"{name}: {value}" if value else f"{name}:" for name, value in headers.items()]
            if extra:
                return lines
            last = self._last_headers = (key, lines)
        return last[1]


def _target(url: str, params: dict[str, Any] | None) -> str:
    while "//" in url:  # as hvac's adapter: Vault reads `//` as `/`
        url = url.replace("//", "/")
    query = urllib.parse.urlencode({k: _param(v) for k, v in params.items()}) if params else ""
    return "/" + url.lstrip("/") + ("?" + query if query else "")


def _param(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _decode(reply: Reply) -> Any:
    try:
        return json.loads(reply.body)
    except ValueError:
        if not reply.body.strip():
            return {}
        # A proxy's HTML page, or a truncated body: say so without quoting it.
        raise TransportError(f"the answer (HTTP {reply.status}) is not valid JSON; is this a Vault server?") from None
    except RecursionError:  # arrays or objects nested about a thousand deep: no answer of Vault's is
        raise TransportError(f"the answer (HTTP {reply.status}) is JSON nested deeper than any of Vault's; is this a "
                             "Vault server?") from None


def _raise_for_status(method: str, path: str, reply: Reply) -> NoReturn:
    """hvac's exception for the status, as its own adapter raises it, and the status kept on it."""
    text = reply.body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text) if text.strip() else None
    except (ValueError, RecursionError):  # not Vault's errors: the status alone speaks
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
    response.headers = reply.headers
    response._content = reply.body
    response.encoding = "utf-8"
    return response
