"""libcurl's error codes, class by class, as the adapter's one-line messages.

`adapter.failure` is pure: it gets libcurl's code and what libcurl reports beside it (the OS's errno,
the proxy's answer to CONNECT, the certificate check's result), never libcurl's own text, which can
quote a proxy URL with its password. Each class of code must give our line, and say whether retrying
can help (a TransportError ends the operation; anything else is retried by bruin's rules). The
end-to-end proofs of the same messages are in test_transport.py and test_faults.py. Below them, the
answers libcurl must hand back untouched for vault.py to explain: a redirect (never followed) and a
proxy's 407 (to a plain request, or to the CONNECT of a tunnel).
"""

from __future__ import annotations

import errno
import socket
import threading

import pytest

from bruin_materialize.adapter import (
    USER_AGENT,
    RetryPolicy,
    TLSOptions,
    Transport,
    TransportError,
    VaultAdapter,
    failure,
    without_password,
)
from bruin_materialize.settings import VaultAddress
from testsupport.leak import LEAK_GUARD

ADDRESS = VaultAddress("https", "vault.example", 8200)
SOCKET = VaultAddress("unix", "/run/vault.sock", 0)
PASSWORD = "Pr0xy-pa55-not-f0r-output"
PROXY = f"http://bruin:{PASSWORD}@proxy.example:3128"
SHOWN = "https://vault.example:8200"
FINAL, RETRIED = True, False

# (libcurl's code, errno, CONNECT's answer, verify result, address, proxy) → (final?, the message's start)
CASES = [
    (28, 0, 0, 0, ADDRESS, None, RETRIED, f"timed out talking to {SHOWN} (no answer within 3s)"),
    (63, 0, 0, 0, ADDRESS, None, FINAL, "the answer is larger than 32 MiB; is this a Vault server?"),
    (60, 0, 0, 20, ADDRESS, None, FINAL,
     f"TLS verification of {SHOWN} failed (unable to get local issuer certificate); check the CA"),
    (60, 0, 0, 0, ADDRESS, None, FINAL, f"TLS verification of {SHOWN} failed (host name mismatch); "),
    (60, 0, 0, 10, ADDRESS, None, FINAL, f"TLS verification of {SHOWN} failed (certificate has expired); "),
    (60, 0, 0, 47, ADDRESS, None, FINAL, f"TLS verification of {SHOWN} failed (X509 error 47); "),
    (35, 0, 0, 0, ADDRESS, None, FINAL, f"TLS handshake with {SHOWN} failed (handshake error); check the client "),
    (58, 0, 0, 0, ADDRESS, None, FINAL,
     f"TLS handshake with {SHOWN} failed (the client certificate or key was not accepted); "),
    (6, 0, 0, 0, ADDRESS, None, RETRIED, "cannot resolve vault.example; check BRUIN_VAULT_HOST"),
    (7, errno.ECONNREFUSED, 0, 0, ADDRESS, None, RETRIED,
     f"connection refused by {SHOWN}; is Vault running and BRUIN_VAULT_HOST right?"),
    (7, errno.ENOENT, 0, 0, SOCKET, None, RETRIED, "no socket at /run/vault.sock; check BRUIN_VAULT_HOST"),
    (7, errno.ECONNREFUSED, 0, 0, SOCKET, None, RETRIED, "connection refused by unix:///run/vault.sock; "),
    (7, errno.EHOSTUNREACH, 0, 0, ADDRESS, None, RETRIED, f"connection to {SHOWN} failed (host unreachable)"),
    (56, errno.ECONNRESET, 0, 0, ADDRESS, None, RETRIED, f"connection to {SHOWN} failed (reset)"),
    (56, 0, 0, 0, ADDRESS, None, RETRIED, f"connection to {SHOWN} failed (receive error)"),
    (55, errno.EPIPE, 0, 0, ADDRESS, None, RETRIED, f"connection to {SHOWN} failed (broken pipe)"),
    (18, 0, 0, 0, ADDRESS, None, RETRIED, f"the answer from {SHOWN} was cut short"),
    (52, 0, 0, 0, ADDRESS, None, RETRIED, f"connection to {SHOWN} closed without an answer"),
    (8, 0, 0, 0, ADDRESS, None, RETRIED, f"the answer from {SHOWN} is not HTTP; is this a Vault server?"),
    (16, 0, 0, 0, ADDRESS, None, RETRIED, f"connection to {SHOWN} failed (libcurl error 16)"),
    (5, 0, 0, 0, ADDRESS, PROXY, RETRIED,
     "cannot reach Vault through the proxy http://proxy.example:3128 (cannot resolve it); check HTTPS_PROXY"),
    (7, errno.ECONNREFUSED, 0, 0, ADDRESS, PROXY, RETRIED,
     "cannot reach Vault through the proxy http://proxy.example:3128 (connection refused); "),
    (7, 0, 502, 0, ADDRESS, PROXY, RETRIED,
     "cannot reach Vault through the proxy http://proxy.example:3128 (no connection or tunnel); "),
    (56, 0, 403, 0, ADDRESS, PROXY, RETRIED,
     "cannot reach Vault through the proxy http://proxy.example:3128 (no connection or tunnel); "),
    (97, 0, 0, 0, ADDRESS, PROXY, RETRIED,
     "cannot reach Vault through the proxy http://proxy.example:3128 (no connection or tunnel); "),
    # Through a proxy, what happened beyond it is still about Vault.
    (28, 0, 200, 0, ADDRESS, PROXY, RETRIED, f"timed out talking to {SHOWN} "),
    (60, 0, 200, 20, ADDRESS, PROXY, FINAL, f"TLS verification of {SHOWN} failed "),
    (56, errno.ECONNRESET, 200, 0, ADDRESS, PROXY, RETRIED, f"connection to {SHOWN} failed (reset)"),
]


@pytest.mark.parametrize(("code", "os_errno", "connect_code", "verify", "address", "proxy", "final", "start"), CASES)
def test_each_curl_error_class_is_our_message(code: int, os_errno: int, connect_code: int, verify: int,
                                              address: VaultAddress, proxy: str | None, final: bool,
                                              start: str) -> None:
    LEAK_GUARD.add(PASSWORD)
    exc = failure(code, os_errno, connect_code, verify, address, proxy, 3.0)
    text = str(exc)
    assert text.startswith(start), text
    assert "\n" not in text and PASSWORD not in text and "bruin:" not in text
    assert isinstance(exc, TransportError) is final


@pytest.mark.parametrize(("url", "shown"), [
    (PROXY, "http://proxy.example:3128"),
    ("http://user@proxy.example", "http://proxy.example"),
    ("https://a%40b:p%3Ass@[::1]:8080", "https://[::1]:8080"),
    ("http://proxy.example:3128", "http://proxy.example:3128"),
    ("http://[fd00::1]:3128", "http://[fd00::1]:3128"),  # in brackets, else the port reads as part of it
    ("http://proxy.example:port", "http://proxy.example"),  # a port that is no number is left out
    ("http://u:p@[::1", "(a proxy URL that does not parse)"),
])
def test_proxy_is_named_without_its_credentials(url: str, shown: str) -> None:
    assert without_password(url) == shown


# --- answers libcurl must hand back as they came: redirects and a proxy's 407 ----------------------------


class OneAnswer:
    """A loopback server that answers every request, CONNECT included, with `answer`, and keeps each
    request's head. One request per connection; with `keep_alive`, every request a connection sends."""

    def __init__(self, answer: bytes, keep_alive: bool = False) -> None:
        self.answer, self.keep_alive = answer, keep_alive
        self.heads: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def requests(self) -> list[bytes]:
        """Each request's first line."""
        return [head.split(b"\r\n", 1)[0] for head in self.heads]

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            self.heads.append(head)
            if not self.keep_alive:
                conn.sendall(self.answer)
                return
            length = int(head.lower().partition(b"content-length:")[2].split(b"\r\n")[0] or 0)
            while len(data) < length:
                data += conn.recv(65536)
            data = data[length:]
            conn.sendall(self.answer)

    def close(self) -> None:
        self._listener.close()


def _transport(address: VaultAddress, proxy: str | None = None) -> Transport:
    return Transport(address, RetryPolicy(5.0, 0, 0.01, 0.01), proxy=proxy,
                     tls=TLSOptions(None, None, None, None, None, True) if address.scheme == "https" else None)


@pytest.mark.parametrize("status", [301, 307, 308])
def test_a_redirect_is_handed_back_not_followed(status: int) -> None:
    server = OneAnswer(f"HTTP/1.1 {status} Moved\r\nLocation: http://elsewhere.invalid/v1/x\r\n"
                       "Content-Length: 0\r\n\r\n".encode())
    transport = _transport(VaultAddress("http", "127.0.0.1", server.port))
    try:
        reply = transport.send("GET", "/v1/kv/data/x", None, [])
    finally:
        transport.close()
        server.close()
    assert (reply.status, reply.headers["location"]) == (status, "http://elsewhere.invalid/v1/x")
    assert server.requests == [b"GET /v1/kv/data/x HTTP/1.1"]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxys_407_is_handed_back_as_an_answer(scheme: str) -> None:
    # For https the 407 answers the CONNECT: libcurl reports it as CURLINFO_HTTP_CONNECTCODE, not as
    # the answer's status; the adapter hands it back as a 407 answer all the same, headers and all.
    proxy = OneAnswer(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"p\"\r\n"
                      b"Content-Length: 0\r\n\r\n")
    transport = _transport(VaultAddress(scheme, "vault.invalid", 8200), f"http://127.0.0.1:{proxy.port}")
    try:
        reply = transport.send("GET", "/v1/kv/data/x", None, [])
    finally:
        transport.close()
        proxy.close()
    assert (reply.status, reply.headers["proxy-authenticate"]) == (407, 'Basic realm="p"')
    expected = b"CONNECT vault.invalid:8200 HTTP/1.1" if scheme == "https" else \
        b"GET http://vault.invalid:8200/v1/kv/data/x HTTP/1.1"
    assert proxy.requests == [expected]


def test_head_waits_for_no_body_and_the_handle_serves_a_get_after_it() -> None:
    # A HEAD answer announces a body it does not send; libcurl must not wait for it (NOBODY), and the
    # reused handle must send the next GET as a GET, body and all.
    server = OneAnswer(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
                       b"Connection: close\r\n\r\n")
    transport = _transport(VaultAddress("http", "127.0.0.1", server.port))
    try:
        head = transport.send("HEAD", "/v1/sys/health", None, [])
        server.answer += b'{"ok":true}'
        get = transport.send("GET", "/v1/sys/health", None, [])
    finally:
        transport.close()
        server.close()
    assert (head.status, head.body, get.status, get.body) == (200, b"", 200, b'{"ok":true}')
    assert server.requests == [b"HEAD /v1/sys/health HTTP/1.1", b"GET /v1/sys/health HTTP/1.1"]



def test_a_get_after_any_request_with_a_body_is_sent_as_a_get() -> None:
    # A handle keeps what its last request set; a body set by POSTFIELDS turns libcurl's request into a
    # POST, which the next request on the handle must undo, whatever the method the body came with.
    server = OneAnswer(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
    transport = _transport(VaultAddress("http", "127.0.0.1", server.port))
    try:
        for method, body in [("GET", b"{}"), ("GET", None), ("PUT", b"{}"), ("GET", None), ("DELETE", None),
                             ("GET", None), ("POST", None), ("GET", None)]:
            assert transport.send(method, "/v1/x", body, []).status == 204
    finally:
        transport.close()
        server.close()
    assert [line.split(b" ")[0] for line in server.requests] == [b"GET", b"GET", b"PUT", b"GET", b"DELETE", b"GET",
                                                                b"POST", b"GET"]

def test_header_lines_follow_the_token_and_namespace_and_a_body() -> None:
    # The adapter keeps its header lines from one request to the next: a new token or namespace, or a
    # body, must change them at once, on the same reused handle.
    server = OneAnswer(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                       keep_alive=True)
    transport = _transport(VaultAddress("http", "127.0.0.1", server.port))
    adapter = VaultAdapter(transport=transport, base_uri=f"http://127.0.0.1:{server.port}", token="tok-1")
    try:
        adapter.get("/v1/kv/data/x")
        adapter.get("/v1/kv/data/x")
        adapter.token = "tok-2"
        adapter.get("/v1/kv/data/x")
        adapter.namespace = "team"
        adapter.get("/v1/kv/data/x")
        adapter.post("/v1/kv/data/x", json={"data": {}})
        adapter.get("/v1/kv/data/x")
    finally:
        adapter.close()
        server.close()
    heads = [{line.partition(b":")[0].lower(): line.partition(b":")[2].strip() for line in head.split(b"\r\n")[1:]
              if line} for head in server.heads]
    assert [h.get(b"x-vault-token") for h in heads] == [b"tok-1"] * 2 + [b"tok-2"] * 4
    assert [h.get(b"x-vault-namespace") for h in heads] == [None] * 3 + [b"team"] * 3
    assert [h.get(b"content-type") for h in heads] == [None] * 4 + [b"application/json", None]
    assert [h.get(b"user-agent") for h in heads] == [USER_AGENT.encode()] * 6
    assert b"expect" not in heads[4]
    assert [head.split(b" ", 1)[0] for head in server.heads] == [b"GET"] * 4 + [b"POST", b"GET"]
