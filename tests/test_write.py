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
