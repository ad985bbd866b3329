"""The permission rules, proven as ordinary users: every other test runs as root, which may read
and write anything and so hides permission bugs.

A session fixture creates two users (reused when they exist, as in a CI container run twice):
alice runs materialize.py, bob attacks her. Each check runs the real CLI as a child process under
`setpriv` with alice's uid and gid (and no supplementary groups). Checks that must refuse before
any Vault call use an address nothing listens on: exit 2, never 3. Creating users needs root; CI
(.ci/run) runs as root, so these run there; elsewhere they are skipped, saying why.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from testsupport.paths import FAKE_BRUIN_DIR, MATERIALIZE, PACKAGED_SCHEMA, REPO_DIR
from testsupport.runs import Run, run_process
from testsupport.skips import other_users

pytestmark = pytest.mark.skipif(other_users() is not None, reason=other_users() or "")

PASSWORD = "unprivileged-Passw0rd-value"
DEAD_VAULT = {"BRUIN_VAULT_HOST": "http://127.0.0.1:9", "BRUIN_VAULT_MAX_RETRIES": "0"}


def _site_packages() -> str:
    import sysconfig

    return os.pathsep.join(dict.fromkeys((sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])))


class User(NamedTuple):
    name: str
    uid: int
    gid: int


# The users are the machine's, so creating them is serialised machine-wide: two test workers (or two
# runs) would otherwise both find a user missing and the second useradd fail, or fail to lock /etc/passwd.
USERS_LOCK = Path(tempfile.gettempdir()) / "bruin-materialize-test-users.lock"


def _ensure_user(name: str) -> User:
    """The user, created once (a system account: no home, no login shell)."""
    with USERS_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
            entry = pwd.getpwnam(name)
    return User(name, entry.pw_uid, entry.pw_gid)


@pytest.fixture(scope="module")
def users() -> tuple[User, User]:
    return _ensure_user("bm-test-alice"), _ensure_user("bm-test-bob")


@pytest.fixture
def area(users: tuple[User, User]) -> Iterator[Path]:
    """A directory both users can enter (pytest's tmp_path is root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="bm-unprivileged-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_dir(path: Path, owner: User | None, mode: int) -> Path:
    path.mkdir()
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)
    path.chmod(mode)
    return path


def as_user(user: User, argv: list[str], env: Mapping[str, str | None], cwd: Path = REPO_DIR,
            timeout: float = 120) -> Run:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BRUIN_", "VAULT_", "BAO_"))}
    return run_process(["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--", *argv],
                       env=env, base_env=base, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def python(users: tuple[User, User]) -> tuple[str, dict[str, str]]:
    """An interpreter the users may run, and the environment giving it this virtualenv's packages.

    The virtualenv's own python may be a link into a directory they cannot enter (a pyenv build under
    /root, 0700); then a system python of the same version runs the same packages via PYTHONPATH.
    """
    env = {"PYTHONPATH": _site_packages()}
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    probe = "import sys, bruin_materialize.cli, jinja2, markupsafe, ruamel.yaml, hvac, pytest; print(sys.version)"
    tried = []
    for candidate in (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        # Through sh's exec, as the fake bruin starts its interpreter: it must run as a plain exec does.
        proc = as_user(users[0], ["sh", "-c", 'exec "$0" -c "$1"', candidate, probe], env)
        if proc.returncode == 0:
            return candidate, env
        tried.append(f"{candidate}: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    pytest.fail(f"{users[0].name} can run no python {version} with the test packages from {REPO_DIR}: "
                f"{'; '.join(tried)}", pytrace=False)


@pytest.fixture
def alice_env(users: tuple[User, User], area: Path, bao_server: Any, kv2: Any) -> dict[str, str]:
    alice = users[0]
    home = make_dir(area / "alice-home", alice, 0o700)
    kv2.put("bruin", "pg", {"type": "postgres", "details": {"host": "db", "port": 5432, "password": PASSWORD}})
    return {"HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"), "XDG_RUNTIME_DIR": "",
            "BRUIN_VAULT_HOST": bao_server.addr, "BRUIN_VAULT_TOKEN": bao_server.root_token,
            "BRUIN_VAULT_MOUNT_PATH": kv2.mount, "BRUIN_VAULT_PATH": "bruin",
            "BRUIN_MATERIALIZE_SCHEMA": str(PACKAGED_SCHEMA), "BRUIN_MATERIALIZE_ALLOW_NON_TMPFS": "1",
            "PATH": os.defpath}


@pytest.fixture
def materialize(python: tuple[str, dict[str, str]]) -> Any:
    def run(user: User, env: Mapping[str, str | None], *args: str) -> Run:
        return as_user(user, [python[0], str(MATERIALIZE), *args], {**python[1], **env})

    return run


def test_an_ordinary_user_can_read_the_code_and_the_packages(users: tuple[User, User],
                                                            python: tuple[str, dict[str, str]]) -> None:
    proc = as_user(users[0], [python[0], "-c", "import bruin_materialize.cli, jinja2, ruamel.yaml; print('ok')"],
                   python[1])
    assert proc.stdout == "ok\n", proc.stderr


def test_the_write_rules_hold_for_an_ordinary_user(users: tuple[User, User], area: Path,
                                                   python: tuple[str, dict[str, str]]) -> None:
    """tests/test_write.py, run as alice: sticky and shared directories, runtime dirs, special files."""
    alice = users[0]
    home = make_dir(area / "pytest", alice, 0o700)
    proc = as_user(alice, [python[0], "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={home / 't'}",
                           "tests/test_write.py"], {**python[1], "HOME": str(home)})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " passed" in proc.stdout and "as two ordinary users" in proc.stdout  # the root-only test said why


@pytest.mark.parametrize("mode", [0o755, 0o700, 0o1777, 0o777])
def test_a_runtime_dir_of_another_user_is_refused(users: tuple[User, User], area: Path, alice_env: dict[str, str],
                                                  mode: int, materialize: Any) -> None:
    alice, bob = users
    bobs = make_dir(area / "bobs", bob, mode)
    env = {**alice_env, **DEAD_VAULT}
    for args, over in ((["render", "--runtime-dir", str(bobs)], {}),
                       (["render"], {"BRUIN_MATERIALIZE_RUNTIME_DIR": str(bobs)}),
                       (["render"], {"XDG_RUNTIME_DIR": str(bobs)})):
        message = materialize(alice, {**env, **over}, *args).error(2)
        if mode & 0o005:  # alice can look inside: she is told whose it is
            assert message == (f"{bobs} belongs to another user (uid {bob.uid}), who could read or replace the "
                               "file; choose a directory of your own with BRUIN_MATERIALIZE_RUNTIME_DIR "
                               "(--runtime-dir)")
        else:
            assert message.startswith(f"{bobs} belongs to another user (uid {bob.uid})")
    assert list(bobs.iterdir()) == []


def test_a_shared_directory_is_refused_unless_sticky(users: tuple[User, User], area: Path,
                                                     alice_env: dict[str, str], materialize: Any) -> None:
    alice, bob = users
    shared = make_dir(area / "shared", None, 0o777)  # root's, like an emptyDir: bob may write in it
    env = {**alice_env, **DEAD_VAULT}
    assert materialize(alice, env, "render", "--runtime-dir", str(shared)).error(2) == (
        f"{shared} can be written by other users (mode 777), who could replace the file; choose a private one with "
        "BRUIN_MATERIALIZE_RUNTIME_DIR (--runtime-dir)")
    assert materialize(alice, env, "render", "-o", str(shared / "bruin.yml")).error(2) == (
        f"{shared} can be written by other users (mode 777), who could replace the file; write into a new "
        "subdirectory of it, which is created private")
    # Sticky and root's, like /tmp: bob cannot touch what alice makes there, but a file he planted is his.
    sticky = make_dir(area / "sticky", None, 0o1777)
    planted = sticky / "bruin.yml"
    as_user(bob, ["sh", "-c", f"echo bob > {planted}"], {})
    assert planted.stat().st_uid == bob.uid
    assert materialize(alice, env, "render", "-o", str(planted)).error(2) == (
        f"{planted} exists and belongs to another user; choose another output path")
    assert planted.read_text() == "bob\n"


def test_an_output_alice_cannot_write_is_found_before_vault(users: tuple[User, User], area: Path,
                                                           alice_env: dict[str, str], materialize: Any) -> None:
    alice = users[0]
    roots = make_dir(area / "roots", None, 0o755)
    env = {**alice_env, **DEAD_VAULT}
    for output in (roots / "bruin.yml", roots / "new" / "bruin.yml"):
        assert materialize(alice, env, "render", "-o", str(output)).error(2) == (
            f"cannot write in {roots} (--output): permission denied or read-only")
    assert list(roots.iterdir()) == []


def test_a_credential_file_alice_cannot_read_is_a_setting_error(users: tuple[User, User], area: Path,
                                                                alice_env: dict[str, str], materialize: Any) -> None:
    alice, bob = users
    token = area / "bobs-token"
    token.write_text("s.bobs-token-value\n")
    os.chown(token, bob.uid, bob.gid)
    token.chmod(0o600)
    env = {**alice_env, **DEAD_VAULT, "BRUIN_VAULT_TOKEN": None, "BRUIN_VAULT_TOKEN_FILE": str(token)}
    assert materialize(alice, env, "check").error(2) == (
        f"cannot read {token} (BRUIN_VAULT_TOKEN_FILE): Permission denied")


def test_alice_renders_and_runs_bruin_in_her_own_places(users: tuple[User, User], area: Path,
                                                        alice_env: dict[str, str], materialize: Any,
                                                        python: tuple[str, dict[str, str]]) -> None:
    alice = users[0]
    runtime = make_dir(area / "alice-runtime", alice, 0o700)
    out = area / "alice-home" / "out" / "bruin.yml"
    proc = materialize(alice, alice_env, "render", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    st = out.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode), stat.S_IMODE(out.parent.stat().st_mode)) == (alice.uid, 0o600, 0o700)
    record = area / "alice-home" / "record.json"
    bruin_env = {**alice_env, "BRUIN_MATERIALIZE_RUNTIME_DIR": str(runtime), "PATH": f"{FAKE_BRUIN_DIR}:{os.defpath}",
                 "FAKE_BRUIN_PYTHON": python[0], "FAKE_BRUIN_RECORD": str(record)}
    proc = materialize(alice, bruin_env, "exec", "--", "--env", "default", ".")
    assert proc.returncode == 0, proc.stderr
    assert record.exists() and list(runtime.iterdir()) == []  # bruin ran; the private directory is gone
    if os.path.isdir("/dev/shm"):  # the default place, root's and sticky, is fine for her too
        before = set(os.listdir("/dev/shm"))
        proc = materialize(alice, {**bruin_env, "BRUIN_MATERIALIZE_RUNTIME_DIR": None,
                                   "BRUIN_MATERIALIZE_ALLOW_NON_TMPFS": None}, "exec")
        assert proc.returncode == 0, proc.stderr
        assert not [n for n in set(os.listdir("/dev/shm")) - before if n.startswith("bruin-materialize-")]
