"""One vm-apply at a time per cluster."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from pathlib import Path

from vmtools.errors import TemporaryFailure
from vmtools.model import epoch_to_iso, is_safe_name


class ClusterLock:
    """One vm-apply at a time per cluster: an ``flock`` on ``<state_dir>/apply-<cluster>.lock``."""

    def __init__(self, state_dir: Path, clusters: list[str]):
        self.paths = [state_dir / f"apply-{_file_part(c)}.lock" for c in sorted(set(clusters))]
        self.files: list = []

    def acquire(self) -> None:
        for path in self.paths:
            fh = open(path, "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                fh.close()
                self.release()
                raise TemporaryFailure(f"{path}: another vm-apply is running on this cluster "
                                       f"({holder}); try again when it has finished") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} since {epoch_to_iso(time.time())}\n")
            fh.flush()
            self.files.append(fh)

    def release(self) -> None:
        for fh in self.files:
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()
                fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
        self.files.clear()


def _file_part(text: str) -> str:
    text = text or "default"
    return text if is_safe_name(text) else "c-" + hashlib.sha256(text.encode()).hexdigest()[:16]
