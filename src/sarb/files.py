"""Atomic file writes: the one way this package writes a file that a reader may see half done;
and :func:`held`, for files that several processes rewrite in turn."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from sarb.errors import SarbError

Content = bytes | str | Callable[[BinaryIO], None]


TEMP_SUFFIX = ".tmp"
"""Temporary files of :func:`atomic_write` are ``.<name>.<random>.tmp`` beside the target."""


def atomic_write(path: str | os.PathLike, content: Content, fsync: bool = True) -> Path:
    """Write ``content`` to ``path`` through a temporary file in the same folder, then rename.

    ``content``: bytes, text (UTF-8), or a function that writes into the open binary file
    (``torch.save``, ``np.savez``, ``fig.savefig``). A reader sees the old file or the new one,
    never half of one; a failure (a full disk included: ``torch.save`` reports it as a
    RuntimeError) leaves no partial file at ``path`` and no temporary file. Concurrent writers
    of one path each use their own temporary file; the last rename wins. ``fsync`` makes the new
    content durable before the rename (checkpoints); caches and reports may skip it. The parent
    folder is created. An OS or write error is a one-line SarbError naming ``path``.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, str):
                f.write(content.encode("utf-8"))
            elif isinstance(content, bytes):
                f.write(content)
            else:
                content(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise SarbError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except RuntimeError as exc:  # torch.save's report of a failed write (a full disk)
        raise SarbError(f"{path}: cannot write ({first_line(exc)})") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def writable_folder(folder: str | os.PathLike) -> Path:
    """``folder``, created if needed, once a test file could be written in it: a cache or
    output folder that cannot take files fails up front, not after the work that fills it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise SarbError(f"{folder}: cannot write ({exc.strerror or exc})") from None
    return folder


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most ``limit`` characters (its type when
    the message is empty): enough to say what failed, without a library's whole report."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def remove_stale_temps(folder: str | os.PathLike, older_than_s: float = 0.0) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` leaves when its process is killed
    (``kill -9``, a power cut) in ``folder``, unchanged for ``older_than_s`` seconds; returns
    them. With 0, the caller must know that nobody else writes there (a locked run directory);
    a shared cache waits for its writers to be long gone."""
    removed = []
    now = time.time()
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        try:
            if now - tmp.stat().st_mtime >= older_than_s:
                tmp.unlink()
                removed.append(tmp)
        except OSError:  # gone already, or not ours to delete
            continue
    return removed


def try_lock(fd: int, path: str | os.PathLike) -> bool:
    """Take the kernel's exclusive lock (``flock``) on the open file ``fd`` without waiting:
    False when another process holds it; any other failure is a SarbError naming ``path``.
    The lock ends when ``fd`` is closed or its process ends, however it ends."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise SarbError(f"{path}: cannot lock ({exc.strerror or exc})") from None
    return True


@contextlib.contextmanager
def held(lock_file: str | os.PathLike) -> Iterator[None]:
    """Hold the kernel's exclusive lock on ``lock_file`` (created; ``flock``) while the block
    runs, waiting for another holder to finish: processes that read, then rewrite, shared files
    (two sweeps into one folder) take turns. The lock ends with its process, however it ends."""
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise SarbError(f"{lock_file}: cannot write ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
