"""A loopback HTTP forward proxy that records what it was asked: absolute-form requests and CONNECT.

The transport tests point HTTP_PROXY, HTTPS_PROXY, VAULT_PROXY_ADDR or --proxy at it and check that
every request went through it, for the host they named. Host names in `aliases` (a name that does
not resolve, such as `vault.invalid`) are mapped to a loopback address, as a proxy inside a network
resolves names its clients cannot. Any other host is refused unless it is a loopback address, so the
proxy never talks to anything but this machine.

Bounded in time: daemon threads, a timeout on every socket, tunnels closed after IDLE_TIMEOUT of
silence, and `stop()` joins with a timeout.
"""

from __future__ import annotations

import dataclasses
import http.client
import http.server
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

UNRESOLVABLE = "vault.invalid"  # RFC 2606: never resolves
IDLE_TIMEOUT = 20.0
UPSTREAM_TIMEOUT = 10.0
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
                         "transfer-encoding", "upgrade", "content-length"})


@dataclasses.dataclass(frozen=True)
class Seen:
    method: str  # CONNECT for a tunnel
    host: str  # host:port as the client asked for it (the absolute URL's, or CONNECT's authority)
    target: str  # the path and query of a plain request; the authority of a CONNECT
    # As sent to the proxy, names lower-cased. Left out of repr(): they hold the Vault token, and an
    # assertion message showing them would trip the leak guard instead of saying what failed.
    headers: dict[str, str] = dataclasses.field(repr=False)


class ForwardProxy:
    def __init__(self, aliases: Mapping[str, str] | None = None) -> None:
        self.aliases = {name.lower(): addr for name, addr in (aliases or {}).items()}
        # Seconds per byte, to answer a CONNECT a byte at a time, or to pass what the server sends
        # through a tunnel (its TLS handshake first) a byte at a time; 0: at full speed.
        self.trickle_connect = 0.0
        self.trickle_tunnel = 0.0
        self.refuse_connect: int | None = None  # a status to answer every CONNECT with (407: credentials)
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="forward-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2.0)

    def __enter__(self) -> ForwardProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    def _resolve(self, host: str) -> str | None:
        """The loopback address to connect to for `host`, or None: the proxy goes nowhere else."""
        mapped = self.aliases.get(host.lower(), host)
        return mapped if mapped in _LOOPBACK else None


class _Handler(http.server.BaseHTTPRequestHandler):
    owner: ForwardProxy
    protocol_version = "HTTP/1.1"  # keep-alive between the client and the proxy
    timeout = IDLE_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (quiet: requests carry tokens)
        pass

    def _headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def do_CONNECT(self) -> None:  # noqa: N802  (http.server's naming)
        host, _, port = self.path.rpartition(":")
        self.owner._record(Seen("CONNECT", self.path, self.path, self._headers()))
        address = self.owner._resolve(host.strip("[]"))
        if self.owner.refuse_connect is not None:
            self._refuse(self.owner.refuse_connect)
            return
        try:
            if address is None or not port.isdigit():
                raise OSError("not a loopback destination")
            upstream = socket.create_connection((address, int(port)), timeout=UPSTREAM_TIMEOUT)
        except OSError:
            self._refuse(502)
            return
        self.close_connection = True  # the connection is the tunnel's now
        with upstream:
            reply = b"HTTP/1.1 200 Connection established\r\n\r\n"
            try:
                _trickle(self.connection, reply, self.owner.trickle_connect)
            except OSError:
                return
            _relay(self.connection, upstream, self.owner.trickle_tunnel)

    def _forward(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        self.owner._record(Seen(self.command, url.netloc, self.path[len(f"{url.scheme}://{url.netloc}"):],
                                self._headers()))
        address = self.owner._resolve(url.hostname or "") if url.scheme == "http" else None
        if address is None:
            self._refuse(502)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        conn = http.client.HTTPConnection(address, url.port or 80, timeout=UPSTREAM_TIMEOUT)
        try:
            conn.request(self.command, self.path[len(f"{url.scheme}://{url.netloc}"):] or "/", body=body,
                         headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self._refuse(502)
            return
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for name, value in resp.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_LIST = _forward  # noqa: N815

    def _refuse(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _trickle(sock: socket.socket, data: bytes, seconds: float) -> None:
    """Send `data`, one byte every `seconds` if that is not 0; give up after IDLE_TIMEOUT."""
    if not seconds:
        sock.sendall(data)
        return
    deadline = time.monotonic() + IDLE_TIMEOUT
    for i in range(len(data)):
        if time.monotonic() > deadline:
            raise TimeoutError("trickled for long enough")
        time.sleep(seconds)
        sock.sendall(data[i : i + 1])  # OSError once the client has gone


def _relay(client: socket.socket, upstream: socket.socket, trickle: float = 0.0) -> None:
    """Copy bytes both ways until either side closes or nothing moves for IDLE_TIMEOUT.

    With `trickle`, what the server sends reaches the client one byte every `trickle` seconds.
    """
    sockets = [client, upstream]
    while True:
        readable, _, _ = select.select(sockets, [], [], IDLE_TIMEOUT)
        if not readable:
            return
        for sock in readable:
            try:
                data = sock.recv(65536)
                if not data:
                    return
                if sock is client:
                    upstream.sendall(data)
                else:
                    _trickle(client, data, trickle)
            except OSError:
                return


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    """A ForwardProxy mapping `vault.invalid` to 127.0.0.1; stopped after the test."""
    with ForwardProxy({UNRESOLVABLE: "127.0.0.1"}) as proxy:
        yield proxy

