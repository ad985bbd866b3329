"""Writing the file: atomically, 0600, never following a link, never leaving a partial file behind."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from bruin_materialize.errors import usage_error

CONFIG_NAME = "bruin.yml"
_MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})


def write_atomic(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, fchmod 0600, rename over `path`.

    mkstemp opens with O_CREAT|O_EXCL|O_NOFOLLOW and rename replaces a link at `path` rather than
    writing through it, so a planted symlink redirects nothing. Any failure removes the temp file
    and leaves an existing `path` as it was.
    """
    if path.is_dir():
        raise usage_error(f"the output {path} is a directory; give a file path")
    make_private_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise usage_error(f"cannot write in {path.parent}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        _unlink_quietly(tmp)
        if isinstance(exc, OSError):
            raise usage_error(f"cannot write {path}: {exc.strerror}") from None
        raise
    _fsync_dir(path.parent)


def check_destination(path: Path, *, allow_repo: bool) -> None:
    """Refuse places where the file could be swapped or committed; called before any Vault call.

    A parent that does not exist yet is made 0700 by us (make_private_dirs), so only an existing
    one is checked: a Kubernetes emptyDir is 0777, and a subdirectory of it is the way to use it.
    """
    parent = path.absolute().parent
    if parent.exists():
        _refuse_shared_directory(parent, path)
    if not allow_repo:
        existing = parent
        while not existing.exists():
            existing = existing.parent
        repo = git_work_tree(existing)
        if repo is not None:
            raise usage_error(f"{path} is inside the git work tree {repo}, where a credentials file could be "
                              "committed; write it elsewhere (tmpfs) or pass --allow-repo")


def _refuse_shared_directory(directory: Path, path: Path) -> None:
    """Others who can write the directory could replace the file; sticky dirs (/tmp) stop them."""
    st = directory.stat()
    if not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return
    if st.st_mode & stat.S_ISVTX:
        try:
            owner = path.lstat().st_uid
        except FileNotFoundError:
            return
        if owner == os.geteuid():
            return
        raise usage_error(f"{path} exists and belongs to another user; choose another output path")
    raise usage_error(f"{directory} can be written by other users (mode {stat.S_IMODE(st.st_mode):o}), who could "
                      "replace the file; write into a new subdirectory of it, which is created private")


def git_work_tree(directory: Path) -> Path | None:
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def make_private_dirs(directory: Path) -> None:
    """Create the missing directories, each 0700 (os.makedirs applies its mode to the last only)."""
    missing: list[Path] = []
    current = directory.absolute()
    while not current.exists():
        missing.append(current)
        current = current.parent
    for new in reversed(missing):
        try:
            new.mkdir(mode=0o700)
            os.chmod(new, 0o700)  # mkdir's mode is filtered by the umask
        except FileExistsError:  # made meanwhile, maybe by someone else: it must be ours and private
            _refuse_foreign_directory(new)
        except OSError as exc:
            raise usage_error(f"cannot create {new}: {exc.strerror}") from None


def _refuse_foreign_directory(directory: Path) -> None:
    st = directory.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise usage_error(f"{directory} appeared while it was being created and is not a private directory of ours")


def check_runtime_base(base: Path, *, allow_non_tmpfs: bool) -> None:
    """exec's checks, made before any Vault call so a misconfigured pod fails at once."""
    if not base.is_dir():
        raise usage_error(f"the runtime directory {base} does not exist; set BRUIN_MATERIALIZE_RUNTIME_DIR")
    if not allow_non_tmpfs and not is_memory_backed(base):
        raise usage_error(
            f"{base} is not on tmpfs, so credentials would reach a disk; mount a tmpfs there, choose another "
            "with BRUIN_MATERIALIZE_RUNTIME_DIR, or set BRUIN_MATERIALIZE_ALLOW_NON_TMPFS=1"
        )


def make_runtime_dir(base: Path, *, allow_non_tmpfs: bool) -> Path:
    """A fresh 0700 directory for exec: bruin writes its .gitignore beside the config file."""
    check_runtime_base(base, allow_non_tmpfs=allow_non_tmpfs)
    try:
        return Path(tempfile.mkdtemp(prefix="bruin-materialize-", dir=base))
    except OSError as exc:
        raise usage_error(f"cannot create a directory in {base}: {exc.strerror}") from None


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding `path`, from /proc/self/mountinfo (Linux); None if unknown."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, best_type = "", None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or not rest:
            continue
        mount_point = fields[4].encode().decode("unicode_escape")  # octal escapes such as \040
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, rest[0]
    return best_type


def is_memory_backed(path: Path) -> bool:
    return filesystem_type(path) in _MEMORY_FILESYSTEMS


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
