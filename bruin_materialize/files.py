"""Every local file the tool reads, read one way: a regular file, under a size cap, never blocking.

A FIFO would block the open or the read until someone writes to it, a device such as /dev/zero never
ends, and a directory is nobody's config: each is refused (exit 2) naming the file and the setting
that named it, before a byte is read. The file is opened with O_NONBLOCK and checked with fstat on
the open descriptor, so a FIFO swapped in after a check cannot hang the open either. It is read in
chunks, at most `limit` bytes, so SIGTERM and SIGINT are honoured between chunks and memory stays
bounded even where st_size lies (/proc files say 0).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MIB = 2**20
MAX_CONFIG_FILE = 8 * MIB  # a .bruin.yml of thousands of connections is a few MiB; bruin's schema is 200 KiB
_CHUNK = MIB

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def read_bytes(path: Path, shown: str, limit: int = MAX_CONFIG_FILE) -> bytes:
    """The bytes of `path`, a regular file of at most `limit` bytes; exit 2 otherwise, with the file named
    as `shown` says (its role or setting with it: "the base file PATH", "PATH (BRUIN_VAULT_TOKEN_FILE)")."""
    from bruin_materialize.errors import usage_error

    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise usage_error(f"cannot read {shown}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((f" ({name})" for test, name in _KINDS if test(mode)), "")
            raise usage_error(f"{shown} is not a regular file{kind}")
        data = _read_at_most(fd, limit, shown)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise usage_error(f"{shown} is larger than {_size(limit)}; is it the right file?")
    return data


def read_text(path: Path, shown: str, limit: int = MAX_CONFIG_FILE) -> str:
    """read_bytes as UTF-8 text."""
    from bruin_materialize.errors import usage_error

    try:
        return read_bytes(path, shown, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise usage_error(f"{shown} is not UTF-8") from None


def _read_at_most(fd: int, limit: int, shown: str) -> bytes:
    from bruin_materialize.errors import usage_error

    chunks: list[bytes] = []
    size = 0
    while size <= limit:  # one byte past the limit tells "too large" from "exactly the limit"
        try:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
        except BlockingIOError:  # a regular file never says EAGAIN; a special file slipped in would
            raise usage_error(f"{shown} cannot be read without waiting; is it a regular file?") from None
        except OSError as exc:
            raise usage_error(f"cannot read {shown}: {exc.strerror}") from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _size(limit: int) -> str:
    if limit % MIB == 0:
        return f"{limit // MIB} MiB"
    return f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"
