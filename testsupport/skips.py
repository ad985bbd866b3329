"""What this machine lacks for some tests, said once at the start of a run (the report header) and
used by those tests to skip: a skip is then never a surprise at the end. CI (.ci/run) installs Go,
yaml.v3, PostgreSQL and kubectl and runs as root, so nothing here skips there, and the tests that need
Go, PostgreSQL or kubectl fail in CI instead of skipping."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

GOPATH = Path("/usr/share/gocode")  # where Debian's golang-gopkg-*-dev packages put the sources


def go_yaml_v3() -> str | None:
    if shutil.which("go") is None or not (GOPATH / "src" / "gopkg.in" / "yaml.v3").is_dir():
        return "needs Go and yaml.v3 (apt-get install golang-go golang-gopkg-yaml.v3-dev)"
    return None


def other_users() -> str | None:
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"):
        return "needs root with useradd and setpriv, to create the users and run as them (CI runs as root)"
    return None


def kubectl() -> str | None:
    return "needs kubectl for its kustomize (CI installs it)" if shutil.which("kubectl") is None else None


def postgresql() -> str | None:
    from testsupport.postgres import find_programs

    if find_programs() is None:
        return "needs PostgreSQL's initdb, pg_ctl and psql (apt-get install postgresql)"
    return None


def tmpfs_shm() -> str | None:
    from bruin_materialize.write import is_memory_backed

    return None if is_memory_backed(Path("/dev/shm")) else "needs /dev/shm on tmpfs, as in a container"


# The tests each need touches, for the header.
NEEDS = {
    "tests/test_yaml_v3.py (bruin's YAML parser)": go_yaml_v3,
    "tests/test_unprivileged.py (file rules as other users)": other_users,
    "tests/test_dynamic.py (leases on a real database)": postgresql,
    "tests/test_deploy.py (the kustomize overlay)": kubectl,
    "tests/test_deploy.py (the image's entrypoint on /dev/shm)": tmpfs_shm,
}


def require(missing: str | None) -> None:
    """Skip the test when something it needs is `missing` (the reason); in CI, which installs all of
    it, fail instead, so that a broken install step cannot turn into silently skipped tests."""
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)


def header() -> list[str]:
    missing = [(tests, why) for tests, need in NEEDS.items() if (why := need()) is not None]
    if not missing:
        return ["skips: none; every test that needs a tool or root can run here"]
    return ["skips: these will be skipped here (they run in CI):",
            *(f"  {tests}: {why}" for tests, why in missing)]
