"""Writing the file: atomically, 0600, never following a link, never leaving a partial file behind."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from bruin_materialize import files
from bruin_materialize.errors import MaterializeError, usage_error
from bruin_materialize.settings import RUNTIME_DIR

CONFIG_NAME = "bruin.yml"
_MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})


def write_atomic(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, fchmod 0600, rename over `path`.

    mkstemp opens with O_CREAT|O_EXCL|O_NOFOLLOW and rename replaces a link at `path` rather than
    writing through it, so a planted symlink redirects nothing. Any failure removes the temp file
    and leaves an existing `path` as it was.
    """
    _refuse_special_output(path)
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


OUTPUT_SETTING = "--output"
RUNTIME_SETTING = f"{RUNTIME_DIR.variable} ({RUNTIME_DIR.flags[0]})"


def check_destination(path: Path, *, allow_repo: bool, base: Path | None = None) -> None:
    """Refuse places where the file could be swapped, read, committed or sent somewhere else;
    called before any Vault call.

    A parent that does not exist yet is made 0700 by us (make_private_dirs), so only the nearest
    existing one is checked: a Kubernetes emptyDir is 0777, and a subdirectory of it is the way to use it.
    """
    _refuse_special_output(path)
    parent = path.absolute().parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if existing == parent:
        check_directory(parent, OUTPUT_SETTING)
        _refuse_foreign_file_in_shared(parent, path)
    else:
        _refuse_foreign_owner(existing, os.stat(existing), OUTPUT_SETTING)
        _refuse_unwritable(existing, OUTPUT_SETTING)
    if base is not None and _same_file(path, base):
        raise usage_error(f"{path} is the base file, which is read, never written; choose another {OUTPUT_SETTING}")
    repo = git_work_tree(existing)
    if repo is None:
        return
    if not allow_repo:
        raise usage_error(f"{path} is inside the git work tree {repo}, where a credentials file could be "
                          "committed; write it elsewhere (tmpfs) or pass --allow-repo")
    if os.path.lexists(path):
        _refuse_tracked(path, repo)


def check_directory(directory: Path, setting: str) -> None:
    """The one rule for a directory we write into: ours or root's, and writable by no one else
    unless sticky (like /tmp), where others cannot replace what we put there."""
    try:
        st = os.stat(directory)
    except OSError as exc:
        raise usage_error(f"cannot use {directory} ({setting}): {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise usage_error(f"{directory} ({setting}) is not a directory")
    _refuse_foreign_owner(directory, st, setting)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        fix = ("write into a new subdirectory of it, which is created private" if setting == OUTPUT_SETTING
               else f"choose a private one with {setting}")
        raise usage_error(f"{directory} can be written by other users (mode {stat.S_IMODE(st.st_mode):o}), who "
                          f"could replace the file; {fix}")
    _refuse_unwritable(directory, setting)


def _refuse_foreign_owner(directory: Path, st: os.stat_result, setting: str) -> None:
    # root is trusted (it could read the file anyway); anyone else owning it could swap or read it.
    if st.st_uid not in (os.geteuid(), 0):
        raise usage_error(f"{directory} belongs to another user (uid {st.st_uid}), who could read or replace the "
                          f"file; choose a directory of your own with {setting}")


def _refuse_unwritable(directory: Path, setting: str) -> None:
    if not os.access(directory, os.W_OK | os.X_OK):
        raise usage_error(f"cannot write in {directory} ({setting}): permission denied or read-only")


def _refuse_foreign_file_in_shared(directory: Path, path: Path) -> None:
    """In a sticky shared directory a file of someone else's at the path cannot be replaced by us."""
    if not os.stat(directory).st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return
    try:
        owner = path.lstat().st_uid
    except FileNotFoundError:
        return
    if owner != os.geteuid():
        raise usage_error(f"{path} exists and belongs to another user; choose another output path")


_SPECIAL = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
            stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


def _refuse_special_output(path: Path) -> None:
    """The output is a regular file we create: not a device, a pipe, nor a link into /proc
    (/dev/stdout), which the rename would replace, as root, with a credentials file."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise usage_error(f"cannot use the output {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise usage_error(f"the output {path} is a directory; give a file path")
    if stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(path)
        if _through_proc(path) or (os.path.exists(target) and not os.path.isfile(target)):
            raise usage_error(f"the output {path} is a link to a stream, a device or a directory, not a file; give "
                              "a file path (without --output, render prints the path of a private file on stdout)")
        return
    kind = _SPECIAL.get(stat.S_IFMT(st.st_mode))
    if kind is not None:
        raise usage_error(f"the output {path} is {kind}, not a file; give a file path")


def _through_proc(path: Path) -> bool:
    """Does following `path`'s links pass through /proc (/dev/stdout, /dev/fd/N)?"""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        # The directories on the way may be links too (/dev/fd -> /proc/self/fd).
        current = os.path.join(os.path.realpath(os.path.dirname(current)), os.path.basename(current))
        if current.startswith("/proc/"):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return True


def _same_file(path: Path, other: Path) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return os.path.abspath(path) == os.path.abspath(other)


def _refuse_tracked(path: Path, repo: Path) -> None:
    """With --allow-repo, a file git tracks is still never overwritten: the next commit would hold it."""
    import subprocess

    try:
        proc = subprocess.run(["git", "-C", str(repo), "ls-files", "--error-unmatch", "--", os.path.abspath(path)],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        raise usage_error(f"{path} exists in the git work tree {repo} and git cannot tell whether it tracks it; "
                          "choose another --output") from None
    if proc.returncode == 0:
        raise usage_error(f"{path} is tracked by git in {repo}; the credentials would be committed over it; "
                          "choose another --output")


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
    check_directory(base, RUNTIME_SETTING)


def make_runtime_dir(base: Path, *, allow_non_tmpfs: bool) -> Path:
    """A fresh 0700 directory for exec: bruin writes its .gitignore beside the config file.

    Checked and made in the resolved directory: were `base` a link, whoever owns the link could
    point it elsewhere between the check and the mkdir."""
    real = Path(os.path.realpath(base))
    check_runtime_base(real, allow_non_tmpfs=allow_non_tmpfs)
    try:
        return Path(tempfile.mkdtemp(prefix="bruin-materialize-", dir=real))
    except OSError as exc:
        raise usage_error(f"cannot create a directory in {base}: {exc.strerror}") from None


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding `path`, from /proc/self/mountinfo (Linux); None if unknown."""
    try:
        lines = files.read_text(Path("/proc/self/mountinfo"), "/proc/self/mountinfo").splitlines()
    except MaterializeError:  # not Linux, or no /proc
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
