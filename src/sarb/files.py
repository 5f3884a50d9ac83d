"""Atomic file writes: the one way this package writes a file that a reader may see half done."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sarb.errors import SarbError

Content = bytes | str | Callable[[BinaryIO], None]


def atomic_write(path: str | os.PathLike, content: Content, fsync: bool = True) -> Path:
    """Write ``content`` to ``path`` through a temporary file in the same folder, then rename.

    ``content``: bytes, text (UTF-8), or a function that writes into the open binary file
    (``torch.save``, ``np.savez``, ``fig.savefig``). A reader sees the old file or the new one,
    never half of one; a crash leaves no partial file at ``path``. ``fsync`` makes the new
    content durable before the rename (checkpoints); caches and reports may skip it. The parent
    folder is created. Any OS error is a one-line SarbError naming ``path``.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise SarbError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path
