"""A fault-injecting HTTP/1.1 proxy in front of the test OpenBao server.

The tests point BRUIN_VAULT_HOST at it and tell it, request by request, to misbehave the ways a
real Vault, load balancer or network does: refuse connections for a while, reset a connection,
close an idle keep-alive connection, answer late or never, answer 5xx/412/429 (with Retry-After),
cut a JSON body short or garble it, trickle an answer a byte at a time, answer with a body past
any sane size, or refuse one secret with 403/404. Everything else is
forwarded to the real server, so a test sees the product's real requests and answers. It counts
requests per path, and keeps each request's headers, so that tests can assert how often the
product retried and what it sent.

Bounded in time by construction: every thread is a daemon, every socket has a timeout, a hang
gives up after HANG_LIMIT, and `stop()` joins each thread with a timeout. It listens on 127.0.0.1
only and talks only to the loopback server it fronts.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple

import pytest

from testsupport.harness import BaoServer

ACTIONS = frozenset({"refuse", "reset", "close", "delay", "hang", "status", "retry_after", "truncate", "corrupt",
                     "trickle_head", "trickle_body", "trickle_body_close", "oversize_length", "oversize_chunked",
                     "oversize_unframed", "answer"})
ALWAYS: Literal["always"] = "always"

IDLE_TIMEOUT = 30.0  # a keep-alive client connection left idle this long is closed
HANG_LIMIT = 60.0  # a "hang" or a trickle ends after this even if the client never gives up
OVERSIZE = 64 * 2**20  # what an oversize answer claims (Content-Length) or streams at most (chunked, unframed)
UPSTREAM_TIMEOUT = 10.0
JOIN_TIMEOUT = 2.0
_POLL = 0.05  # how often blocked loops look at the stop flag
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"})
_MAX_LINE = 65536
_BLOCK = 65536
# An answer no JSON parser accepts, of any length: NUL and 0xFF bytes are never valid JSON text.
_GARBAGE = b"\x00\xff<html>garbled by the fault proxy</html>\xfe"


@dataclasses.dataclass
class Rule:
    """What to do to requests whose path contains `path` (and whose method is `method`)."""

    action: str
    path: str | None
    method: str | None
    remaining: int | None  # None: every matching request, for ever
    seconds: float
    status: int
    sent: int = 0  # body bytes an oversize answer got out before the client stopped reading
    headers: tuple[tuple[str, str], ...] = ()  # answer: its headers
    body: bytes = b""  # answer: its body

    def matches(self, method: str, target: str) -> bool:
        if self.remaining == 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or self.path in target


class Request(NamedTuple):
    method: str
    target: str  # path and query, as sent: /v1/kv2-1-ab12cd/data/bruin/pg
    headers: list[tuple[str, str]]
    body: bytes
    keep_alive: bool


class Record(NamedTuple):
    at: float  # time.monotonic() when the request was read
    method: str
    target: str
    headers: list[tuple[str, str]]  # as received


class Answer(NamedTuple):
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        url = urllib.parse.urlsplit(upstream)
        if url.scheme != "http" or url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the fault proxy fronts a plain-HTTP loopback server only")
        self._upstream = (url.hostname, url.port or 80)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._rules: list[Rule] = []
        self._log: list[Record] = []
        self._clients: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._refuse_until = 0.0
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self.port = 0
        self.accepted = 0  # connections accepted: fewer than requests means keep-alive was used

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- what tests call ---------------------------------------------------------------------

    def start(self) -> None:
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept_loop, name="fault-proxy-accept", daemon=True)
        self._accept_thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            _shutdown(self._listener)
            for client in self._clients:
                _shutdown(client)
            threads = [t for t in (self._accept_thread, *self._threads) if t is not None]
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None

    def add_rule(
        self,
        action: str,
        *,
        path: str | None = None,
        method: str | None = None,
        times: int | Literal["always"] = 1,
        seconds: float = 0.0,
        status: int = 503,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> Rule:
        """Misbehave on the next `times` matching requests (or "always").

        refuse: reset this connection, then refuse all connections for `seconds`;
        reset: read the request, then close with an RST (SO_LINGER 0);
        close: forward and answer, then close the connection as a server's idle timeout does
            (a FIN, and no `Connection: close` header to warn the client);
        delay: forward the request after `seconds`;
        hang: never answer, until the client closes the connection;
        status: answer `status` (a Vault-shaped JSON error body) instead of forwarding;
        answer: answer `status` with `headers` and `body` as given (a redirect, a proxy's 407, a body
            that is JSON but not Vault's), instead of forwarding;
        retry_after: answer 429 with `Retry-After: seconds`;
        truncate: forward, answer with the real Content-Length but only half the body, then close;
        corrupt: forward, answer with the real status and Content-Length but garbage bytes;
        trickle_head: forward, then send the real answer one byte every `seconds`, head first;
        trickle_body: forward, send the real head at once (keep-alive, as Vault answers), then the
            body one byte every `seconds`;
        trickle_body_close: the same with `Connection: close` in the head, as a server or proxy
            that does not keep connections alive sends;
        oversize_length: answer 200 with `Content-Length: OVERSIZE`, send 1 MiB of it, then nothing;
        oversize_chunked: answer 200 chunked, and stream up to OVERSIZE body bytes, then nothing;
        oversize_unframed: answer 200 with neither length nor chunks (the body ends at close), and
            stream up to OVERSIZE body bytes, then nothing.
        The oversize answers never end by themselves: a client reading to the end waits until its
        timeout. `Rule.sent` counts the body bytes the client took.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; one of {sorted(ACTIONS)}")
        if times != ALWAYS and (not isinstance(times, int) or times < 1):
            raise ValueError("times must be a positive count or 'always'")
        rule = Rule(action, path, method, None if times == ALWAYS else int(times), seconds, status, 0, headers, body)
        with self._lock:
            self._rules.append(rule)
        return rule

    def refuse_connections(self, seconds: float) -> None:
        """Stop listening now (connects get ECONNREFUSED) and drop open connections, for `seconds`."""
        with self._lock:
            self._refuse_until = time.monotonic() + seconds
            # shutdown() stops a listening socket at once and wakes the accept loop, which closes
            # it and re-opens the same port once the time is up.
            _shutdown(self._listener)
            for client in self._clients:
                _reset(client)

    def requests(self, path_substring: str = "", method: str | None = None) -> int:
        """How many requests whose path contains `path_substring` reached the proxy."""
        return len(self.request_times(path_substring, method))

    def request_times(self, path_substring: str = "", method: str | None = None) -> list[float]:
        """When (time.monotonic()) each matching request was read, oldest first."""
        with self._lock:
            return [r.at for r in self._log
                    if path_substring in r.target and (method is None or r.method.upper() == method.upper())]

    def log(self) -> list[Record]:
        with self._lock:
            return list(self._log)

    # --- listening ---------------------------------------------------------------------------

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.settimeout(_POLL)
        return listener

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            listener = self._current_listener()
            if listener is None:
                self._stopped.wait(_POLL / 5)
                continue
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # shut down by refuse_connections() or stop()
                self._drop_listener(listener)
                continue
            self._spawn(client)

    def _current_listener(self) -> socket.socket | None:
        with self._lock:
            if self._listener is None and time.monotonic() >= self._refuse_until and not self._stopped.is_set():
                self._listener = self._listen(self.port)
            return self._listener

    def _drop_listener(self, listener: socket.socket) -> None:
        with self._lock:
            if self._listener is listener:
                self._listener = None
        listener.close()

    def _spawn(self, client: socket.socket) -> None:
        client.settimeout(IDLE_TIMEOUT)
        thread = threading.Thread(target=self._serve_client, args=(client,), name="fault-proxy-client", daemon=True)
        with self._lock:
            if self._stopped.is_set():
                client.close()
                return
            self.accepted += 1
            self._clients.add(client)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    # --- one client connection ---------------------------------------------------------------

    def _serve_client(self, client: socket.socket) -> None:
        upstream = _Upstream(*self._upstream)
        reader = client.makefile("rb")
        try:
            keep_alive = True
            while keep_alive and not self._stopped.is_set():
                request = _read_request(reader)
                if request is None:
                    break
                rule = self._record_and_match(request)
                keep_alive = self._answer(client, request, rule, upstream)
        except (OSError, ValueError, http.client.HTTPException):
            pass  # the client went away, sent garbage, or a fault closed the connection
        finally:
            with self._lock:
                self._clients.discard(client)
            reader.close()
            client.close()
            upstream.close()

    def _record_and_match(self, request: Request) -> Rule | None:
        with self._lock:
            self._log.append(Record(time.monotonic(), request.method, request.target, request.headers))
            for rule in self._rules:
                if rule.matches(request.method, request.target):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule
        return None

    def _answer(self, client: socket.socket, request: Request, rule: Rule | None, upstream: _Upstream) -> bool:
        """Answer one request; False when the connection must not be used again."""
        action = rule.action if rule else None
        if rule is None or action == "delay":
            if rule is not None and self._stopped.wait(rule.seconds):
                return False
            return _send(client, upstream.forward(request), request.keep_alive)
        assert rule is not None
        if action == "close":
            _send(client, upstream.forward(request), keep_alive=True)  # promise keep-alive, then break it
            client.shutdown(socket.SHUT_WR)
            return False
        if action == "hang":
            self._hang(client)
            return False
        if action == "reset":
            _reset(client)
            return False
        if action == "refuse":
            _reset(client)
            self.refuse_connections(rule.seconds)
            return False
        if action == "status":
            return _send(client, _vault_error(rule.status), request.keep_alive)
        if action == "answer":
            reason = http.client.responses.get(rule.status, "Other")
            return _send(client, Answer(rule.status, reason, list(rule.headers), rule.body), request.keep_alive)
        if action == "retry_after":
            answer = _vault_error(429, [("Retry-After", f"{rule.seconds:g}")])
            return _send(client, answer, request.keep_alive)
        if rule.action.startswith("oversize"):
            self._oversize(client, rule)
            return False
        real = upstream.forward(request)
        if action == "truncate":
            _send_truncated(client, real)
            return False
        if action == "trickle_head":
            self._trickle(client, _head(real, len(real.body), keep_alive=False) + real.body, rule.seconds)
            return False
        if action in ("trickle_body", "trickle_body_close"):
            client.sendall(_head(real, len(real.body), keep_alive=action == "trickle_body"))
            self._trickle(client, real.body, rule.seconds)
            return False
        return _send(client, real._replace(body=_garbage(len(real.body))), request.keep_alive)

    def _trickle(self, client: socket.socket, data: bytes, seconds: float) -> None:
        """One byte every `seconds`, until all is sent, the client goes away or time runs out."""
        deadline = time.monotonic() + HANG_LIMIT
        for i in range(len(data)):
            if self._stopped.wait(seconds) or time.monotonic() > deadline:
                return
            client.sendall(data[i : i + 1])  # OSError once the client has closed: the thread ends

    def _oversize(self, client: socket.socket, rule: Rule) -> None:
        """A 200 answer whose body is too large for any Vault answer, and which never ends."""
        framing = rule.action.removeprefix("oversize_")
        head = ["HTTP/1.1 200 OK", "Content-Type: application/json"]
        head += {"length": [f"Content-Length: {OVERSIZE}"], "chunked": ["Transfer-Encoding: chunked"],
                 "unframed": ["Connection: close"]}[framing]
        client.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        block = b'{"data": ' + b" " * (_BLOCK - 9)
        limit = 2**20 if framing == "length" else OVERSIZE
        while rule.sent < limit and not self._stopped.is_set():
            client.sendall(b"%x\r\n%s\r\n" % (len(block), block) if framing == "chunked" else block)
            with self._lock:
                rule.sent += len(block)
        self._hang(client)

    def _hang(self, client: socket.socket) -> None:
        """Read and drop whatever comes, never answer, until the client closes or time runs out."""
        client.settimeout(_POLL)
        deadline = time.monotonic() + HANG_LIMIT
        while not self._stopped.is_set() and time.monotonic() < deadline:
            try:
                if not client.recv(4096):
                    return
            except TimeoutError:
                continue
            except OSError:
                return


class _Upstream:
    """One keep-alive connection to the real server, re-opened when it goes stale."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._conn: http.client.HTTPConnection | None = None

    def forward(self, request: Request) -> Answer:
        headers = {k: v for k, v in request.headers if k.lower() not in _HOP_BY_HOP}
        for attempt in (1, 2):
            conn = self._conn or http.client.HTTPConnection(self._host, self._port, timeout=UPSTREAM_TIMEOUT)
            self._conn = conn
            try:
                conn.request(request.method, request.target, body=request.body or None, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    return _vault_error(502)
                continue
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
            return Answer(resp.status, resp.reason, kept, body)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _read_request(reader: Any) -> Request | None:
    """One request from a keep-alive connection; None when the client closed it between requests."""
    line = reader.readline(_MAX_LINE)
    if not line:
        return None
    method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: list[tuple[str, str]] = []
    while True:
        raw = reader.readline(_MAX_LINE)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    fields = {k.lower(): v for k, v in headers}
    length = int(fields.get("content-length", "0") or "0")
    body = reader.read(length) if length else b""
    connection = fields.get("connection", "").lower()
    keep_alive = version == "HTTP/1.1" and connection != "close"
    return Request(method, target, headers, body, keep_alive)


def _vault_error(status: int, extra: list[tuple[str, str]] | None = None) -> Answer:
    """An answer shaped like Vault's own errors: {"errors": [...]}."""
    messages = {403: ["permission denied"], 404: [], 429: ["request rate limited"],
                503: ["Vault is sealed"]}.get(status, [f"fault proxy: injected {status}"])
    body = json.dumps({"errors": messages}).encode()
    headers = [("Content-Type", "application/json"), *(extra or [])]
    return Answer(status, http.client.responses.get(status, "Error"), headers, body)


def _head(answer: Answer, length: int, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {answer.status} {answer.reason}"]
    lines += [f"{k}: {v}" for k, v in answer.headers]
    lines += [f"Content-Length: {length}", f"Connection: {'keep-alive' if keep_alive else 'close'}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _send(client: socket.socket, answer: Answer, keep_alive: bool) -> bool:
    client.sendall(_head(answer, len(answer.body), keep_alive) + answer.body)
    return keep_alive


def _send_truncated(client: socket.socket, answer: Answer) -> None:
    """Promise the whole body, send half of it, then close (FIN, not RST: the half must arrive)."""
    half = answer.body[: len(answer.body) // 2]
    client.sendall(_head(answer, len(answer.body), keep_alive=True) + half)
    client.shutdown(socket.SHUT_WR)


def _garbage(length: int) -> bytes:
    return (_GARBAGE * (length // len(_GARBAGE) + 1))[: max(length, 1)]


def _reset(sock: socket.socket | None) -> None:
    """Abort a connection: with SO_LINGER 0 its close() (by its handler thread) sends an RST.

    shutdown(SHUT_RD) sends nothing on Linux but wakes a handler blocked in recv(), so that the
    thread closes the socket now; SHUT_WR or SHUT_RDWR would send a polite FIN first.
    """
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass


def _shutdown(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@pytest.fixture(name="fault_proxy")
def fault_proxy_fixture(bao_server: BaoServer) -> Iterator[FaultProxy]:
    """A started FaultProxy in front of the session's OpenBao server; stopped after the test."""
    proxy = FaultProxy(bao_server.addr)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
