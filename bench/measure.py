"""The two ways of timing: the floor in-process, and whole commands as processes (time + peak memory)."""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import tool

from testsupport.bao import DevServer

LAUNCHER = Path(__file__).resolve().parent / "launch.py"


class Sample(NamedTuple):
    wall: float  # seconds
    peak_mb: float  # the process's own peak resident memory (ru_maxrss), MiB
    cpu: float  # user + system seconds of the process


def floor(server: DevServer, mount: str, path: str, threads: int, expected: int) -> float:
    """Seconds to LIST and GET (and JSON-decode) every secret with bare keep-alive http.client.

    Each thread has its own connection; the LIST goes first, on the first one. Connecting and
    starting the threads count; Python's start-up does not (this runs in-process).
    """
    host, port = server.host_port
    headers = {"X-Vault-Token": server.token}
    started = time.perf_counter()
    first = http.client.HTTPConnection(host, port, timeout=30)
    keys = _get(first, f"/v1/{mount}/metadata/{path}?list=true", headers)["data"]["keys"]
    conns = [first] + [http.client.HTTPConnection(host, port, timeout=30) for _ in range(threads - 1)]
    counts = [0] * threads
    errors: list[BaseException] = []

    def read(slot: int) -> None:
        try:
            for key in keys[slot::threads]:
                if _get(conns[slot], f"/v1/{mount}/data/{path}/{key}", headers)["data"]["data"]:
                    counts[slot] += 1
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    if threads == 1:
        read(0)
    else:
        workers = [threading.Thread(target=read, args=(slot,)) for slot in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    if errors or sum(counts) != expected:
        raise SystemExit(f"bench: the floor read {sum(counts)} of {expected} secrets "
                         f"({type(errors[0]).__name__ if errors else 'no error'})")
    return elapsed


def _get(conn: http.client.HTTPConnection, url: str, headers: Mapping[str, str]) -> Any:
    conn.request("GET", url, headers=dict(headers))
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}")
    return json.loads(body)


def run_process(command: Sequence[str], env: Mapping[str, str], cwd: Path, log_dir: Path) -> Sample:
    """Run `command` through the launcher; if it fails, stop with the tool's last own line only."""
    fd, result_name = tempfile.mkstemp(suffix=".json", dir=log_dir)
    os.close(fd)
    result_file = Path(result_name)
    stdout, stderr = log_dir / "last.stdout", log_dir / "last.stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        subprocess.run([sys.executable, str(LAUNCHER), str(result_file), *command], env=dict(env), cwd=cwd,
                       stdin=subprocess.DEVNULL, stdout=out, stderr=err, check=True)
    result = json.loads(result_file.read_text(encoding="utf-8"))
    result_file.unlink()
    if result["exit_code"] != 0:
        # Anything but the tool's own lines stays in the log: rerun with --keep to read it.
        own = tool.own_lines(stderr.read_text(errors="replace"))
        raise SystemExit(f"bench: {' '.join(command[1:3])} exited with {result['exit_code']} "
                         f"({own[-1] if own else 'see ' + str(stderr) + ' with --keep'})")
    return Sample(result["wall"], result["maxrss_kb"] / 1024, result["user"] + result["sys"])


def summary(values: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1], "samples": list(values)}
