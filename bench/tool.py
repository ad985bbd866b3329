"""What run.py and fleet.py share: copies of the tool, the environment it runs in, and the record of
the machine and the code measured."""

from __future__ import annotations

import datetime
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from testsupport import bao
from testsupport.paths import REPO_DIR, SHARED_SCHEMA, SUBSET_SCHEMA

BENCH = Path(__file__).resolve().parent
TOOL_FILES = ("materialize.py", "bruin_materialize", "templates")


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def schema_file() -> Path:
    """bruin's full schema when the shared copy is there, else the subset the tests keep."""
    return SHARED_SCHEMA if SHARED_SCHEMA.is_file() else SUBSET_SCHEMA


def copy_tool(copy: Path, rev: str | None) -> None:
    """The tool's files as committed at `rev`, or as they are in the work tree; no bytecode."""
    copy.mkdir()
    if rev is not None:
        archive = subprocess.run(["git", "archive", "--format=tar", rev, *TOOL_FILES], cwd=REPO_DIR,
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(copy, filter="data")
        return
    for name in TOOL_FILES:
        source = REPO_DIR / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, copy / name)


def base_env(home: Path) -> dict[str, str]:
    """A small environment built on purpose: nothing of the caller's Vault or Python set-up."""
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}


def tool_env(server: bao.DevServer, mount: str, path: str, run_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    """The tool's environment: base_env, its own cache, the server, the mount and path, and `extra`."""
    env = base_env(run_dir / "home")
    env.update({"XDG_CACHE_HOME": str(run_dir / "cache"), "BRUIN_VAULT_HOST": server.addr,
                "BRUIN_VAULT_TOKEN": server.token, "BRUIN_VAULT_MOUNT_PATH": mount, "BRUIN_VAULT_PATH": path,
                **extra})
    return env


def connections_in(output: Path) -> int:
    """Connections in a rendered file (counted, never shown); 0 when there is no file."""
    try:
        return sum(1 for line in output.read_text(encoding="utf-8").splitlines() if line.startswith("        - {"))
    except OSError:
        return 0


def own_lines(stderr: str) -> list[str]:
    """The tool's own lines: they never hold a value (anything else, a traceback from hvac, could)."""
    return [line for line in stderr.splitlines() if line.startswith("materialize:")]


def machine() -> dict[str, Any]:
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv[1:], "python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": os.cpu_count(), "cpu_model": _cpu_model(), "load_before": os.getloadavg()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def git(rev: str | None) -> dict[str, Any]:
    def run(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    if rev is not None:
        return {"source": f"git archive {rev}", "commit": run("rev-parse", rev)}
    return {"source": "work tree", "commit": run("rev-parse", "HEAD"),
            "uncommitted changes": bool(run("status", "--porcelain", "--", *TOOL_FILES))}


def bao_version(binary: str | None) -> str:
    try:
        found = binary or bao.find_bao()
    except bao.BaoError as exc:
        raise SystemExit(f"bench: {exc}") from None
    return subprocess.run([found, "version"], capture_output=True, text=True, check=False).stdout.strip()


def start_server(workdir: Path, binary: str | None, *args: str) -> bao.DevServer:
    try:
        return bao.start(workdir, bao=binary, args=args)
    except bao.BaoError as exc:
        raise SystemExit(f"bench: {exc}") from None
