"""Write a file so that a reader, or a crash, sees the old content or the new, never half of it.

The one way Reverie writes state: into a temporary file beside the target, flushed and fsynced,
then renamed over it (a rename within one folder is atomic on POSIX file systems).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(path: str | os.PathLike, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces `path` when the block ends without an error.

    On an error the temporary file is removed and `path` keeps its old content. Missing parent
    folders are created. `mode`: the file's permissions (default: the target's, or 0644); the file
    never has wider ones while it is written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private; keep the target's mode, or give a new file the usual 0644
        if mode is None:
            mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes, mode: int | None = None) -> Path:
    """Replace `path` with `data` atomically; returns the path."""
    with atomic_file(path, mode) as handle:
        handle.write(data)
    return Path(path)


def atomic_copy(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy `source` over `target` atomically; returns the target."""
    with open(source, "rb") as src, atomic_file(target) as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    return Path(target)


def replace_folder(staging: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename a finished `staging` folder to `target`; an old `target` is moved aside first and
    removed after, and put back if the rename fails: the one way a saved model folder is replaced."""
    import shutil
    import time

    staging, target = Path(staging), Path(target)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}-old-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
