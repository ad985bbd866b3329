"""Filling the benchmark's OpenBao dev server fast: 16 threads, a keep-alive http.client connection each.

The server itself is testsupport.bao's, the one the tests start.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import threading
from typing import Any

import shapes

from testsupport.bao import DevServer
from testsupport.wait import wait_until

# One keep-alive connection per seeding thread.
_local = threading.local()


def _connection(server: DevServer) -> http.client.HTTPConnection:
    conn: http.client.HTTPConnection | None = getattr(_local, "conn", None)
    if conn is None or getattr(_local, "addr", None) != server.addr:
        conn = http.client.HTTPConnection(*server.host_port, timeout=30)
        _local.conn, _local.addr = conn, server.addr
    return conn


def request(server: DevServer, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
    conn = _connection(server)
    body = None if payload is None else json.dumps(payload).encode()
    headers = {"X-Vault-Token": server.token, "Content-Type": "application/json"}
    try:
        conn.request(method, "/v1/" + path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    except (OSError, http.client.HTTPException):
        conn.close()
        raise
    return resp.status, (json.loads(raw) if raw.strip() else None)


def enable_kv2(server: DevServer, mount: str) -> None:
    status, _ = request(server, "POST", f"sys/mounts/{mount}", {"type": "kv", "options": {"version": "2"}})
    if status not in (200, 204):
        raise SystemExit(f"bench: enabling the KV v2 mount {mount} failed (HTTP {status})")
    # A new v2 mount upgrades in the background and refuses writes until it is done.
    wait_until(lambda: request(server, "GET", f"{mount}/config")[0] == 200, 10,
               what=f"bench: the KV v2 mount {mount} usable")


def seed(server: DevServer, mount: str, path: str, count: int, threads: int = 16) -> int:
    """Write `count` secrets under mount/path; returns the bytes of secret JSON written."""

    def put(index: int) -> int:
        name, secret = shapes.secret_for(index)

        def written() -> bool:  # the mount may still be upgrading for a moment
            return request(server, "POST", f"{mount}/data/{path}/{name}", {"data": secret})[0] in (200, 204)

        wait_until(written, 5, 0.1, what=f"bench: writing {mount}/{path}/{name}")
        return len(json.dumps(secret))

    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(pool.map(put, range(count)))
