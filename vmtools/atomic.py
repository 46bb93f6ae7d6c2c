"""The one atomic write: a whole file or none of it, even on a full disk or a crash.

:func:`write_atomic` writes to a temporary file in the same directory, flushes it to the disk
(``fsync``), gives it the mode a new file would have (or ``mode``), and renames it over the
target. A reader sees the old file or the new one, never half of one; on any error the
temporary file is removed and the old file stays whole. Errors are ``OSError``: each caller
says what could not be written and what to do.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomic(path: str | os.PathLike, data: str | bytes, *, mode: int | None = None) -> None:
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


__all__ = ["write_atomic"]
