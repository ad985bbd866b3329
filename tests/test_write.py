"""Writing: atomic, 0600, no link followed, nothing partial left, no place others could swap it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bruin_materialize.errors import ExitCode, MaterializeError
from bruin_materialize.write import check_destination, filesystem_type, make_runtime_dir, write_atomic


def refused(fn: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(MaterializeError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    assert info.value.exit_code == ExitCode.USAGE
    return info.value.message


def test_write_replaces_a_planted_symlink_instead_of_following_it(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("keep me\n")
    out = tmp_path / "out" / "bruin.yml"
    out.parent.mkdir()
    out.symlink_to(target)
    write_atomic(out, "new: 1\n")
    assert target.read_text() == "keep me\n"
    assert not out.is_symlink() and out.read_text() == "new: 1\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    out = tmp_path / "bruin.yml"
    out.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(out, "bad \ud800 text")
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["bruin.yml"]


def test_output_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    assert refused(write_atomic, tmp_path, "x") == f"the output {tmp_path} is a directory; give a file path"


def test_directory_others_can_write_is_refused_but_a_new_subdirectory_is_fine(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # a Kubernetes emptyDir
    assert refused(check_destination, shared / "bruin.yml", allow_repo=False) == (
        f"{shared} can be written by other users (mode 777), who could replace the file; write into a new "
        "subdirectory of it, which is created private")
    out = shared / "run" / "bruin.yml"
    check_destination(out, allow_repo=False)
    write_atomic(out, "a: 1\n")
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700


def test_sticky_directory_is_fine_when_the_file_is_ours(tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp
    check_destination(sticky / "bruin.yml", allow_repo=False)
    (sticky / "bruin.yml").write_text("ours")
    check_destination(sticky / "bruin.yml", allow_repo=False)


def test_git_work_tree_is_refused_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    out = tmp_path / "repo" / "conf" / "bruin.yml"
    assert refused(check_destination, out, allow_repo=False).startswith(
        f"{out} is inside the git work tree {tmp_path / 'repo'}, where a credentials file could be committed")
    check_destination(out, allow_repo=True)


def test_runtime_dir_is_fresh_and_private(tmp_path: Path) -> None:
    first = make_runtime_dir(tmp_path, allow_non_tmpfs=True)
    second = make_runtime_dir(tmp_path, allow_non_tmpfs=True)
    assert first != second and first.parent == tmp_path
    assert stat.S_IMODE(first.stat().st_mode) == 0o700


@pytest.mark.skipif(not os.path.isdir("/dev/shm") or filesystem_type(Path("/dev/shm")) is None,
                    reason="needs /proc/self/mountinfo and /dev/shm")
def test_tmpfs_is_recognised() -> None:
    assert filesystem_type(Path("/dev/shm")) == "tmpfs"
    assert refused(make_runtime_dir, Path("/"), allow_non_tmpfs=False).startswith("/ is not on tmpfs")


# --- one rule for every directory written into ---------------------------------------------------


def test_runtime_dir_others_can_write_is_refused_unless_sticky(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert refused(make_runtime_dir, shared, allow_non_tmpfs=True) == (
        f"{shared} can be written by other users (mode 777), who could replace the file; choose a private one "
        "with BRUIN_MATERIALIZE_RUNTIME_DIR (--runtime-dir)")
    assert list(shared.iterdir()) == []
    shared.chmod(0o1777)  # like /tmp and /dev/shm: a directory of our own inside it is safe
    assert make_runtime_dir(shared, allow_non_tmpfs=True).parent == shared


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root; "
                    "tests/test_unprivileged.py covers the same as two ordinary users")
@pytest.mark.parametrize("mode", [0o700, 0o1777])
def test_directory_of_another_user_is_refused_even_as_root(tmp_path: Path, mode: int) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    foreign.chmod(mode)
    os.chown(foreign, 4242, 4242)
    assert refused(make_runtime_dir, foreign, allow_non_tmpfs=True) == (
        f"{foreign} belongs to another user (uid 4242), who could read or replace the file; choose a directory "
        "of your own with BRUIN_MATERIALIZE_RUNTIME_DIR (--runtime-dir)")
    assert refused(check_destination, foreign / "bruin.yml", allow_repo=False) == (
        f"{foreign} belongs to another user (uid 4242), who could read or replace the file; choose a directory "
        "of your own with --output")
    assert refused(check_destination, foreign / "new" / "bruin.yml", allow_repo=False).startswith(
        f"{foreign} belongs to another user (uid 4242)")
    assert list(foreign.iterdir()) == []


def test_special_files_are_refused_as_outputs(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert refused(check_destination, fifo, allow_repo=False) == f"the output {fifo} is a FIFO, not a file; give " \
                                                                  "a file path"
    assert refused(write_atomic, fifo, "x") == f"the output {fifo} is a FIFO, not a file; give a file path"
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    link = tmp_path / "to-null"
    link.symlink_to("/dev/null")
    to_dir = tmp_path / "to-dir"
    to_dir.symlink_to(tmp_path)
    for output in (link, to_dir, Path("/dev/stdout"), Path("/dev/fd/2")):
        assert refused(check_destination, output, allow_repo=False) == (
            f"the output {output} is a link to a stream, a device or a directory, not a file; give a file path "
            "(without --output, render prints the path of a private file on stdout)")
    assert link.is_symlink() and os.path.islink("/dev/stdout")
    assert refused(check_destination, Path("/dev/null"), allow_repo=False) == (
        "the output /dev/null is a character device, not a file; give a file path")
    assert refused(check_destination, tmp_path, allow_repo=False) == (
        f"the output {tmp_path} is a directory; give a file path")


def test_base_file_and_files_git_tracks_are_never_written(tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".bruin.yml").write_text("environments: {}\n")
    (repo / "tracked.yml").write_text("x: 1\n")
    (repo / "untracked.yml").write_text("x: 1\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", ".bruin.yml", "tracked.yml"], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    assert refused(check_destination, repo / ".bruin.yml", allow_repo=True, base=repo / ".bruin.yml") == (
        f"{repo / '.bruin.yml'} is the base file, which is read, never written; choose another --output")
    assert refused(check_destination, repo / "tracked.yml", allow_repo=True) == (
        f"{repo / 'tracked.yml'} is tracked by git in {repo}; the credentials would be committed over it; choose "
        "another --output")
    check_destination(repo / "untracked.yml", allow_repo=True)
    check_destination(repo / "new.yml", allow_repo=True)
